//! `--otlp-endpoint`: lifecycle events as OpenTelemetry log records, decoded by a receiver
//! written with the official protobuf definitions (tests/otlp/receiver.py, opentelemetry-proto
//! from PyPI). The receiver goes down and comes back, the agent is SIGKILLed and restarted:
//! every event of the pod in the agent's log reaches the receiver, none twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use podlife_e2e::agent::{events_of, metric};
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::Env;
use serde_json::Value;

struct Receiver {
    child: Child,
    port: u16,
    out: PathBuf,
}

fn python() -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".work/otlp-venv/bin/python");
    assert!(
        p.is_file(),
        "{} is missing: run `bash tests/setup.sh` (it installs opentelemetry-proto)",
        p.display()
    );
    p
}

impl Receiver {
    fn start(port: u16, out: &Path) -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("otlp/receiver.py");
        let child = Command::new(python())
            .arg(script)
            .arg(port.to_string())
            .arg(out)
            .spawn()
            .expect("start the OTLP receiver");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "receiver not listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Self {
            child,
            port,
            out: out.to_path_buf(),
        }
    }

    fn stop(mut self) -> (u16, PathBuf) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        (self.port, self.out.clone())
    }

    /// Every record received so far.
    fn records(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        let recs: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        for r in &recs {
            assert!(
                r.get("error").is_none(),
                "the receiver could not decode: {r}"
            );
        }
        recs
    }

    /// Wait until a record satisfies `done`.
    fn wait(&self, what: &str, done: impl Fn(&Value) -> bool) {
        let t = Instant::now();
        while !self.records().iter().any(&done) {
            assert!(
                t.elapsed() < Duration::from_secs(40),
                "no record of {what}: {:?}",
                self.records()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn exited(id: &str) -> impl Fn(&Value) -> bool + '_ {
    move |r| {
        r["event_name"] == "podlife.ContainerExited"
            && r["attributes"]["podlife.container_id"] == id
    }
}

#[test]
fn events_reach_an_otlp_receiver_across_its_outage_and_an_agent_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::env::temp_dir().join(format!("podlife-otlp-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let receiver = Receiver::start(port, &out);
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut env =
        Env::start_with_agent_args(&["--otlp-endpoint", &endpoint, "--node-name", "node-a"]);
    let pod = env.run_pod_in("shop", "otlp", PodOpts::default());
    let first = env.run_container(&pod, "first", &["sh", "-c", "exit 3"], CtrOpts::default());
    receiver.wait("the first exit", exited(&first.id));
    let r = receiver
        .records()
        .into_iter()
        .find(|r| exited(&first.id)(r))
        .unwrap();
    assert_eq!(r["resource"]["k8s.node.name"], "node-a");
    assert_eq!(r["resource"]["k8s.namespace.name"], "shop");
    assert_eq!(r["resource"]["k8s.pod.name"], "otlp");
    assert_eq!(r["resource"]["k8s.pod.uid"], pod.uid.as_str());
    assert_eq!(r["resource"]["k8s.container.name"], "first");
    assert_eq!(r["attributes"]["podlife.exit_code"], 3);
    assert_eq!(r["scope"], "podlife");
    let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["type"], "ContainerExited");

    // The receiver is down while a container runs and exits: sent when it is back.
    let (port, out) = receiver.stop();
    let second = env.run_container(&pod, "second", &["sh", "-c", "exit 4"], CtrOpts::default());
    env.agent
        .wait_for(&pod.uid, "the second exit", Duration::from_secs(20), |t| {
            !events_of(t, "ContainerExited", &second.id).is_empty()
        });
    // Long enough for failed attempts and back-off.
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        metric(
            &env.agent.metrics(),
            "podlife_otlp_export_failures_total",
            &[]
        ) >= 1.0,
        "the outage was noticed"
    );
    let receiver = Receiver::start(port, &out);
    receiver.wait("the exit during the outage", exited(&second.id));

    // The agent is SIGKILLed and restarted: it resumes from its cursor.
    env.agent.crash_and_restart();
    let third = env.run_container(&pod, "third", &["sh", "-c", "exit 5"], CtrOpts::default());
    receiver.wait("the exit after the restart", exited(&third.id));
    std::thread::sleep(Duration::from_secs(1));

    let got = receiver.records();
    let mut ids: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got {
        *ids.entry(r["attributes"]["podlife.id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    let timeline = env.agent.timeline(&pod.uid);
    let missing: Vec<&Value> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !ids.contains_key(e["id"].as_str().unwrap()))
        .collect();
    assert!(
        missing.is_empty(),
        "in the agent's log, never received: {missing:?}"
    );
    let _ = std::fs::remove_file(&out);
}
