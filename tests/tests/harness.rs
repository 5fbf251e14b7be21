//! The harness itself, without the agent: real pods start from the local images, ExecSync
//! works and times out, the OOM killer really fires (containerd says OOMKilled) and a child's
//! OOM leaves its container running, the crasher really faults, a PID 1 without a handler
//! really ignores SIGTERM, and dropping the environment leaves nothing behind.

use std::path::Path;
use std::time::{Duration, Instant};

use podlife_cri::v1::ContainerState;
use podlife_e2e::containerd::processes_mentioning;
use podlife_e2e::kubelet::hierarchies;
use podlife_e2e::{CtrOpts, Kubelet, PodOpts};

fn running(k: &mut Kubelet, id: &str) -> bool {
    k.cri.container_status(id).state == ContainerState::ContainerRunning as i32
}

#[test]
fn pods_run_exec_oom_crash_stop_and_leave_nothing_behind() {
    let mut k = Kubelet::start();
    let dir = k.containerd.dir.clone();
    let (network, bridge) = (k.containerd.network.clone(), k.containerd.bridge.clone());

    let pod = k.run_pod("harness", PodOpts::default());
    let app = k.run_container(&pod, "app", &["sleep", "1000"], CtrOpts::default());
    assert!(running(&mut k, &app.id));
    assert_eq!(
        k.cri
            .exec_sync(&app.id, &["sh", "-c", "exit 0"], 5)
            .unwrap(),
        0
    );
    assert_eq!(
        k.cri
            .exec_sync(&app.id, &["sh", "-c", "exit 1"], 5)
            .unwrap(),
        1
    );
    let t = Instant::now();
    let timeout = k.cri.exec_sync(&app.id, &["sleep", "5"], 1);
    assert_eq!(
        timeout.as_ref().map_err(|s| s.code()),
        Err(tonic::Code::DeadlineExceeded),
        "{timeout:?}"
    );
    // The 1 s timeout ended it, not the 5 s sleep.
    assert!(t.elapsed() < Duration::from_millis(4500));

    // PID 1 with SIG_DFL for TERM: the kernel drops SIGTERM, the stop takes the whole timeout.
    let t = Instant::now();
    k.cri.stop_container(&app.id, 2);
    let took = t.elapsed().as_secs_f64();
    assert!((1.9..3.5).contains(&took), "stop took {took} s");
    let s = k.cri.wait_exited(&app.id);
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "Error"));

    let limit = CtrOpts {
        memory_limit: Some(32 << 20),
        ..CtrOpts::image("memhog")
    };
    let hog = k.run_container(&pod, "hog", &["/memhog"], limit.clone());
    let s = k.cri.wait_exited(&hog.id);
    assert_eq!((s.exit_code, s.reason.as_str()), (137, "OOMKilled"));

    let parent = k.run_container(&pod, "parent", &["/memhog", "--child"], limit);
    let t = Instant::now();
    while !k
        .container_log(&pod, &parent)
        .contains("killed by signal 9, parent stays")
    {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the child was not OOM-killed: {}",
            k.container_log(&pod, &parent)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(running(&mut k, &parent.id), "the parent survives");

    let crasher = k.run_container(&pod, "crasher", &["/crasher"], CtrOpts::image("crasher"));
    let s = k.cri.wait_exited(&crasher.id);
    assert_eq!(s.exit_code, 139, "SIGSEGV: {s:?}");

    let hostnet = k.run_pod(
        "hostnet",
        PodOpts {
            host_network: true,
            share_pid: true,
        },
    );
    let h = k.run_container(&hostnet, "app", &["sh", "-c", "exit 4"], CtrOpts::default());
    assert_eq!(k.cri.wait_exited(&h.id).exit_code, 4);

    let uids = [pod.uid.clone(), hostnet.uid.clone()];
    k.remove_pod(&pod);
    assert_eq!(k.cri.list_pod_sandboxes(), vec![hostnet.sandbox_id.clone()]);
    // The other pod is left to the drop guard, as a failing test would leave it.
    drop(k);

    assert!(!dir.exists(), "{} remains", dir.display());
    let left = processes_mentioning(&dir.to_string_lossy());
    assert!(left.is_empty(), "processes remain: {left:?}");
    for uid in &uids {
        for h in hierarchies() {
            let p = h.join(format!("kubepods/burstable/pod{uid}"));
            assert!(!p.exists(), "{} remains", p.display());
        }
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(dir.to_string_lossy().as_ref()), "{mounts}");
    assert!(!Path::new("/sys/class/net").join(&bridge).exists());
    assert!(!Path::new("/var/lib/cni/networks").join(&network).exists());
    let results: Vec<_> = std::fs::read_dir("/var/lib/cni/results")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&network))
        .collect();
    assert!(results.is_empty(), "{results:?}");
}

#[test]
fn a_test_that_panics_still_cleans_up() {
    let mut seen = None;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut k = Kubelet::start();
        let pod = k.run_pod("doomed", PodOpts::default());
        let app = k.run_container(&pod, "app", &["sleep", "1000"], CtrOpts::default());
        seen = Some((k.containerd.dir.clone(), pod.uid.clone()));
        assert!(running(&mut k, &app.id));
        panic!("a failing assertion with a pod running");
    }));
    assert!(result.is_err());
    let (dir, uid) = seen.expect("the pod ran");
    assert!(!dir.exists(), "{} remains", dir.display());
    let left = processes_mentioning(&dir.to_string_lossy());
    assert!(left.is_empty(), "processes remain: {left:?}");
    for h in hierarchies() {
        let p = h.join(format!("kubepods/burstable/pod{uid}"));
        assert!(!p.exists(), "{} remains", p.display());
    }
}
