/* memhog [--child] [step_mib] [interval_ms]
 * Allocates memory in steps of step_mib (default 4), touching every page, one step every
 * interval_ms (default 20), until the OOM killer comes. With --child, a forked child does the
 * allocating while the parent (the container init) waits for it, reports how it ended and stays
 * up until SIGTERM. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static void on_term(int sig) { (void)sig; _exit(0); }

static void hog(long step_mib, long interval_ms) {
    struct timespec pause = {interval_ms / 1000, (interval_ms % 1000) * 1000000L};
    long total = 0;
    for (;;) {
        size_t n = (size_t)step_mib << 20;
        char *p = malloc(n);
        if (!p) {
            nanosleep(&pause, 0);
            continue;
        }
        memset(p, 0xa5, n);
        total += step_mib;
        printf("memhog: %ld MiB\n", total);
        fflush(stdout);
        nanosleep(&pause, 0);
    }
}

int main(int argc, char **argv) {
    int child = argc > 1 && strcmp(argv[1], "--child") == 0;
    if (child) { argv++; argc--; }
    long step = argc > 1 ? atol(argv[1]) : 4;
    long interval = argc > 2 ? atol(argv[2]) : 20;
    if (step <= 0) step = 4;
    if (interval < 0) interval = 20;
    if (!child) hog(step, interval);

    signal(SIGTERM, on_term);
    pid_t pid = fork();
    if (pid < 0) { perror("fork"); return 1; }
    if (pid == 0) hog(step, interval);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0) {}
    if (WIFSIGNALED(status))
        printf("memhog: child %d killed by signal %d, parent stays\n", pid, WTERMSIG(status));
    else
        printf("memhog: child %d exited %d, parent stays\n", pid, WEXITSTATUS(status));
    fflush(stdout);
    for (;;) pause();
}
