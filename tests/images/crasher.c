/* crasher [--child]
 * Dies of a real SIGSEGV (a write through a null pointer, a fault the kernel signals, not a
 * kill()). With --child, a forked child crashes while the parent (the container init) stays up
 * until SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

static void crash(void) {
    volatile int *p = 0;
    *p = 42;
}

int main(int argc, char **argv) {
    if (!(argc > 1 && strcmp(argv[1], "--child") == 0)) {
        crash();
        return 1;
    }
    signal(SIGTERM, on_term);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) { crash(); _exit(1); }
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {}
    printf("crasher: child %d ended with status 0x%x, parent stays\n", pid, status);
    fflush(stdout);
    for (;;) pause();
}
