//! Real SIGSEGV faults (a write through a null pointer, the crasher image), not kill(): of the
//! container init, which ends the container (exit 139), and of a child, which leaves the
//! container running. Both are ProcessCrashed.

use podlife_cri::v1::ContainerState;
use podlife_e2e::agent::{events_of, has, metric};
use podlife_e2e::{CtrOpts, Env, PodOpts, WAIT};

#[test]
fn sigsegv_of_the_init_and_of_a_child() {
    let mut env = Env::start();
    let pod = env.run_pod("crashy", PodOpts::default());
    let init = env.run_container(&pod, "init-crash", &["/crasher"], CtrOpts::image("crasher"));
    let child = env.run_container(
        &pod,
        "child-crash",
        &["/crasher", "--child"],
        CtrOpts::image("crasher"),
    );
    assert_eq!(
        env.cri.wait_exited(&init.id).exit_code,
        139,
        "the runtime saw SIGSEGV"
    );

    let t = env.agent.wait_for(&pod.uid, "both crashes", WAIT, |t| {
        has(t, "ProcessCrashed", &child.id) && has(t, "ContainerExited", &init.id)
    });
    let crash = &events_of(&t, "ProcessCrashed", &init.id)[0];
    assert_eq!(crash["signal"], "SIGSEGV", "{t}");
    assert_eq!(crash["is_init"], true);
    assert_eq!(crash["comm"], "crasher");
    assert_eq!(
        crash["pid"],
        events_of(&t, "ContainerStarted", &init.id)[0]["pid"]
    );
    let exit = &events_of(&t, "ContainerExited", &init.id)[0];
    assert_eq!(exit["signal"], "SIGSEGV", "{exit}");
    assert_eq!(exit["exit_code"], 139);
    assert_eq!(exit["reason"], "Signaled");
    assert!(
        exit["killed_by"] == "kernel" || exit["killed_by"] == "self",
        "a fault is the kernel's signal in the task's own context: {exit}"
    );

    let crash = &events_of(&t, "ProcessCrashed", &child.id)[0];
    assert_eq!(crash["signal"], "SIGSEGV", "{t}");
    assert_eq!(crash["is_init"], false);
    assert_eq!(crash["comm"], "crasher");
    assert!(
        events_of(&t, "ContainerExited", &child.id).is_empty(),
        "{t}"
    );
    let status = env.cri.container_status(&child.id);
    assert_eq!(status.state, ContainerState::ContainerRunning as i32);

    let m = env.agent.metrics();
    let segv = [("uid", pod.uid.as_str()), ("signal", "SIGSEGV")];
    assert_eq!(
        metric(&m, "podlife_process_crashes_total", &segv),
        2.0,
        "{m}"
    );
}
