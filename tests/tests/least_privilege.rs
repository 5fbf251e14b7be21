//! Least privilege, proven: the agent runs with exactly the DaemonSet's capabilities and
//! tells the whole story of a pod that existed before it started (bootstrap from /proc and
//! cgroupfs) and of one that starts after; dropping each capability in turn shows which
//! ones it cannot work without (it stops with its message) and which degrade nothing here.

use podlife_e2e::agent::{events, events_of, Agent};
use podlife_e2e::{CtrOpts, Kubelet, PodOpts, WAIT};

/// deploy/daemonset.yaml's `capabilities.add` (with `drop: [ALL]`).
fn daemonset_caps() -> Vec<String> {
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/daemonset.yaml"
    ))
    .expect("deploy/daemonset.yaml");
    let start = yaml
        .find("capabilities:")
        .expect("capabilities in the DaemonSet");
    let block = &yaml[start..];
    let add = &block[block.find("add:").expect("capabilities.add")..];
    let caps: Vec<String> = add
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .take_while(|l| l.starts_with("- "))
        .map(|l| l.trim_start_matches("- ").trim().to_string())
        .collect();
    assert!(caps.contains(&"BPF".to_string()), "{caps:?}");
    caps
}

/// Whether this process's bounding set has `cap` (a capability outside it cannot be given).
fn held(cap: &str) -> bool {
    let bit = match cap {
        "DAC_READ_SEARCH" => 2,
        "SYS_PTRACE" => 19,
        "SYS_RESOURCE" => 24,
        "PERFMON" => 38,
        "BPF" => 39,
        other => panic!("unknown capability {other}: add its number"),
    };
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let bnd = status
        .lines()
        .find_map(|l| l.strip_prefix("CapBnd:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("CapBnd");
    bnd & (1 << bit) != 0
}

/// Start the agent with `caps` against `k`'s runtime.
fn agent(k: &Kubelet, caps: &[String]) -> Result<Agent, String> {
    let socket = k.containerd.socket.to_string_lossy().to_string();
    let caps: Vec<&str> = caps.iter().map(String::as_str).collect();
    Agent::try_start_with_caps(&k.containerd.state, &["--cri-socket", &socket], &caps)
}

#[test]
fn the_daemonsets_capabilities_are_enough_and_each_one_is_accounted_for() {
    let caps = daemonset_caps();
    // A pod running before the agent starts: found by the bootstrap.
    let mut kubelet = Kubelet::start();
    let k = &mut kubelet;
    let before = k.run_pod("before", PodOpts::default());
    let old = k.run_container(
        &before,
        "app",
        &["sh", "-c", "sleep 1000"],
        CtrOpts::default(),
    );

    let a = agent(k, &caps).unwrap_or_else(|log| {
        panic!("the agent does not start with the DaemonSet's capabilities {caps:?}:\n{log}")
    });
    let m = a.metrics();
    assert!(
        !m.lines()
            .any(|l| l.starts_with("podlife_feature_enabled") && l.ends_with(" 0")),
        "a feature is off with the DaemonSet's capabilities:\n{m}"
    );
    let t = a.wait_for(&before.uid, "the bootstrapped pod's names", WAIT, |t| {
        t["name"] == "before"
    });
    assert_eq!(t["namespace"], "e2e", "{t}");
    // A pod started under the agent: the kernel path, argv and exit code.
    let after = k.run_pod("after", PodOpts::default());
    let app = k.run_container(&after, "app", &["sh", "-c", "exit 3"], CtrOpts::default());
    let t = a.wait_for(&after.uid, "the app's exit", WAIT, |t| {
        !events_of(t, "ContainerExited", &app.id).is_empty()
    });
    assert_eq!(
        events_of(&t, "ContainerStarted", &app.id)[0]["argv"],
        serde_json::json!(["sh", "-c", "exit 3"]),
        "{t}"
    );
    assert_eq!(events_of(&t, "ContainerExited", &app.id)[0]["exit_code"], 3);
    assert_eq!(events(&t, "PodAdmitted").len(), 1, "{t}");
    drop(a);

    // Each capability dropped in turn: the ones the kernel demands stop the agent with a
    // message that names them; the others change nothing on this node (root-owned files and
    // processes, kernel >= 5.11), and the report says so.
    let mut report = Vec::new();
    for cap in &caps {
        if !held(cap) {
            // A sandbox (this CI machine has no CAP_SYS_RESOURCE) cannot hand it out.
            report.push(format!(
                "{cap}: not held by this test's own process, not checked"
            ));
            continue;
        }
        let fewer: Vec<String> = caps.iter().filter(|c| *c != cap).cloned().collect();
        match agent(k, &fewer) {
            Err(log) => {
                assert!(
                    matches!(cap.as_str(), "BPF" | "PERFMON"),
                    "without {cap} the agent stops, but the DaemonSet documents it as optional:\n{log}"
                );
                assert!(
                    log.contains("CAP_BPF") || log.contains("no tracepoint could be attached"),
                    "without {cap} the agent stops without saying what to do:\n{log}"
                );
                report.push(format!("{cap}: needed (the agent stops and says so)"));
            }
            Ok(a) => {
                assert!(
                    !matches!(cap.as_str(), "BPF" | "PERFMON"),
                    "the agent started without {cap}: the kernel should refuse bpf()/perf_event_open()"
                );
                // The pre-existing pod is still told whole without it.
                let t = a.wait_for(&before.uid, "the bootstrapped pod", WAIT, |t| {
                    t["name"] == "before" && !events_of(t, "ContainerStarted", &old.id).is_empty()
                });
                assert!(
                    events_of(&t, "ContainerStarted", &old.id)[0]["argv"]
                        .as_array()
                        .is_some_and(|a| !a.is_empty()),
                    "without {cap} the bootstrapped container has no argv: {t}"
                );
                report.push(format!("{cap}: not needed on this node"));
            }
        }
    }
    eprintln!("capabilities: {}", report.join("; "));
}
