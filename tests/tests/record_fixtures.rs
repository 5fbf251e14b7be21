//! Not a test: the recorder of the engine's replay fixtures (userspace/core/tests/fixtures/
//! `cri_*.jsonl`). Real pods of this harness's containerd, driven through the CRI as the kubelet
//! drives them, while `podlife record` writes the kernel events. Run (root), after a release
//! build of the agent:
//!
//!     cd tests && cargo test -p podlife-e2e --release --test record_fixtures -- --ignored
//!
//! `PODLIFE_FIXTURES` names another output directory (default: the core crate's fixtures).
//! Only the events of this run's pods and runtime processes are kept: other pods on the node
//! (parallel test runs) would be in the recording too.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podlife_cri::v1::ContainerState;
use podlife_e2e::agent::agent_bin;
use podlife_e2e::{CtrOpts, Kubelet, PodOpts};
use serde_json::Value;

#[test]
#[ignore = "writes the replay fixtures; run by hand (see the module doc)"]
fn record_replay_fixtures() {
    let out = std::env::var_os("PODLIFE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../userspace/core/tests/fixtures")
        });
    let mut k = Kubelet::start();
    record(&mut k, &out, "cri_lifecycle", lifecycle);
    record(&mut k, &out, "cri_graceful", graceful);
    record(&mut k, &out, "cri_oom", oom);
    record(&mut k, &out, "cri_restart", restart);
}

/// Pod with an init container (exits 0) then an app that ignores SIGTERM; ExecSync exits 0,
/// 1, 1 (a failing probe); StopContainer with a 2 s timeout (SIGTERM ignored, SIGKILL when it
/// runs out); the pod removed.
fn lifecycle(k: &mut Kubelet) -> Vec<String> {
    let pod = k.run_pod("life", PodOpts::default());
    let init = k.run_container(&pod, "init", &["sh", "-c", "sleep 0.2"], CtrOpts::default());
    assert_eq!(k.cri.wait_exited(&init.id).exit_code, 0);
    let app = k.run_container(
        &pod,
        "app",
        &[
            "sh",
            "-c",
            "trap '' TERM; echo trapped; while true; do sleep 1; done",
        ],
        CtrOpts {
            grace_s: Some(2),
            ..CtrOpts::default()
        },
    );
    wait_log(k, &pod, &app, "trapped");
    for code in [0, 1, 1] {
        let cmd = format!("exit {code}");
        assert_eq!(
            k.cri.exec_sync(&app.id, &["sh", "-c", &cmd], 5).ok(),
            Some(code)
        );
    }
    k.cri.stop_container(&app.id, 2);
    assert_eq!(k.cri.wait_exited(&app.id).exit_code, 137);
    k.remove_pod(&pod);
    vec![pod.uid]
}

/// An init with a SIGTERM handler stopped by StopContainer: exits 0 at once; the pod removed.
fn graceful(k: &mut Kubelet) -> Vec<String> {
    let pod = k.run_pod("graceful", PodOpts::default());
    let app = k.run_container(
        &pod,
        "app",
        &[
            "sh",
            "-c",
            "trap 'exit 0' TERM; echo trapped; sleep 1000 & wait",
        ],
        CtrOpts::default(),
    );
    wait_log(k, &pod, &app, "trapped");
    k.cri.stop_container(&app.id, 10);
    assert_eq!(k.cri.wait_exited(&app.id).exit_code, 0);
    k.remove_pod(&pod);
    vec![pod.uid]
}

/// Under 32 MiB limits (memhog image): a child OOM-killed while its init survives, then an
/// OOM-killed init; the pod removed.
fn oom(k: &mut Kubelet) -> Vec<String> {
    let limited = || CtrOpts {
        memory_limit: Some(32 << 20),
        ..CtrOpts::image("memhog")
    };
    let pod = k.run_pod("hungry", PodOpts::default());
    let child = k.run_container(
        &pod,
        "child-hog",
        &["/memhog", "--child", "4", "20"],
        limited(),
    );
    // memhog --child says so once its child is gone (see tests/images/memhog.c).
    wait_log(k, &pod, &child, "killed by signal 9");
    let hog = k.run_container(&pod, "hog", &["/memhog", "4", "20"], limited());
    let status = k.cri.wait_exited(&hog.id);
    assert_eq!(
        (status.exit_code, status.reason.as_str()),
        (137, "OOMKilled")
    );
    let s = k.cri.container_status(&child.id);
    assert_eq!(s.state, ContainerState::ContainerRunning as i32, "{s:?}");
    k.remove_pod(&pod);
    vec![pod.uid]
}

/// A container whose child dies of SIGSEGV and which then exits 3, restarted twice the
/// kubelet's way (attempt 1, 2) after growing delays; the pod removed.
fn restart(k: &mut Kubelet) -> Vec<String> {
    let pod = k.run_pod("flaky", PodOpts::default());
    for (attempt, delay) in [(0u32, 0.0f64), (1, 0.5), (2, 1.2)] {
        std::thread::sleep(Duration::from_secs_f64(delay));
        let opts = CtrOpts {
            attempt,
            ..CtrOpts::default()
        };
        let cmd = ["sh", "-c", "sh -c 'kill -SEGV $$'; exit 3"];
        let c = k.run_container(&pod, "app", &cmd, opts);
        assert_eq!(k.cri.wait_exited(&c.id).exit_code, 3);
    }
    k.remove_pod(&pod);
    vec![pod.uid]
}

fn wait_log(k: &Kubelet, pod: &podlife_e2e::Pod, c: &podlife_e2e::Container, needle: &str) {
    let t = Instant::now();
    while !k.container_log(pod, c).contains(needle) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{} never logged {needle:?}: {}",
            c.name,
            k.container_log(pod, c)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `podlife record` around one scenario, then only this run's lines into `<out>/<name>.jsonl`.
fn record(k: &mut Kubelet, out: &Path, name: &str, scenario: fn(&mut Kubelet) -> Vec<String>) {
    let raw = std::env::temp_dir().join(format!(
        "podlife-record-{}-{name}.jsonl",
        std::process::id()
    ));
    let log = raw.with_extension("log");
    let mut rec = Recorder::start(&raw, &log);
    let uids = scenario(k);
    rec.stop();
    let text = std::fs::read_to_string(&raw).unwrap_or_else(|e| panic!("{}: {e}", raw.display()));
    let recorder_log = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&raw);
    let _ = std::fs::remove_file(&log);
    assert!(
        recorder_log.contains(" lost=0"),
        "the recording lost events; record again on a quieter node:\n{recorder_log}"
    );
    let ours = Ours::new(&k.containerd.dir.to_string_lossy(), &uids);
    let kept = ours.filter(&text);
    assert!(
        !kept.is_empty(),
        "nothing of {uids:?} recorded:\n{recorder_log}"
    );
    let path = out.join(format!("{name}.jsonl"));
    let mut f = std::fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for l in &kept {
        writeln!(f, "{l}").expect("write fixture");
    }
    eprintln!(
        "{}: {} of {} events",
        path.display(),
        kept.len(),
        text.lines().count()
    );
}

struct Recorder(Child);

impl Recorder {
    /// Started and recording: its programs are attached once it logs so.
    fn start(out: &Path, log: &Path) -> Self {
        let child = Command::new(agent_bin())
            .arg("record")
            .arg("-o")
            .arg(out)
            .env("PODLIFE_LOG_LEVEL", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("recorder log"))
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", agent_bin().display()));
        let mut rec = Self(child);
        let t = Instant::now();
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("recording kernel events") {
                return rec;
            }
            if let Ok(Some(status)) = rec.0.try_wait() {
                panic!("podlife record exited ({status}):\n{text}");
            }
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "podlife record not recording after 30 s:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT: it drains what is left, writes its summary and exits.
    fn stop(&mut self) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("pid");
        // SAFETY: kill has no memory preconditions; our own child, not yet waited for.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let status = self.0.wait().expect("wait for podlife record");
        assert!(status.success(), "podlife record: {status}");
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The lines of this run: cgroup events of its pods, and events of its runtime processes
/// (shims and runc name the run's directory in their argv) and of everything they fork.
struct Ours {
    dir: String,
    uids: Vec<String>,
}

impl Ours {
    fn new(dir: &str, uids: &[String]) -> Self {
        Self {
            dir: dir.to_string(),
            uids: uids.to_vec(),
        }
    }

    fn filter(&self, text: &str) -> Vec<String> {
        let mut tgids: HashSet<u64> = HashSet::new();
        let mut kept = Vec::new();
        for line in text.lines() {
            let Ok(ev) = serde_json::from_str::<Value>(line) else {
                panic!("not a recorded event: {line}");
            };
            let tgid = ev["tgid"].as_u64().unwrap_or(0);
            let path = ev["path"].as_str().unwrap_or("");
            let of_our_pod = self.uids.iter().any(|u| path.contains(u.as_str()));
            let ours_now = match ev["event"].as_str() {
                Some("exec") => {
                    let argv = ev["argv"].to_string();
                    if argv.contains(&self.dir) {
                        tgids.insert(tgid);
                    }
                    tgids.contains(&tgid)
                }
                Some("cgroup_attach") if of_our_pod => {
                    tgids.extend(ev["pid"].as_u64());
                    true
                }
                _ => of_our_pod || tgids.contains(&tgid),
            };
            if !ours_now {
                continue;
            }
            match ev["event"].as_str() {
                Some("fork") => {
                    tgids.extend(ev["child_tgid"].as_u64());
                }
                Some("exit") if ev["tid"] == ev["tgid"] => {
                    tgids.remove(&tgid);
                }
                _ => {}
            }
            kept.push(line.to_string());
        }
        kept
    }
}
