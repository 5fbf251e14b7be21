//! The real podlife agent under test, and polling of its HTTP API.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub struct Agent {
    child: Child,
    pub port: u16,
    state: PathBuf,
    log: PathBuf,
    runtime_state: PathBuf,
    extra: Vec<String>,
    /// Capabilities the agent runs with (None: all of root's).
    caps: Option<Vec<String>>,
    /// Sent as `Authorization: Bearer` by `get` (an agent started with --api-token-file).
    token: Option<String>,
    /// A command the agent is exec'd from (`sh -c '... exec "$0" "$@"'`), empty for none.
    wrapper: Vec<String>,
}

/// The agent's command, under exactly `caps` when given: setpriv limits the bounding set, and a
/// root process gets no capability outside it, as a container with `drop: [ALL]` + `add`.
fn command(caps: Option<&[String]>, wrapper: &[String]) -> Command {
    match caps {
        None if !wrapper.is_empty() => {
            let mut c = Command::new(&wrapper[0]);
            c.args(&wrapper[1..]).arg(agent_bin());
            c
        }
        None => Command::new(agent_bin()),
        Some(caps) => {
            let set: String = std::iter::once("-all".to_string())
                .chain(caps.iter().map(|c| format!("+{}", c.to_lowercase())))
                .collect::<Vec<_>>()
                .join(",");
            let mut c = Command::new("setpriv");
            c.arg(format!("--bounding-set={set}"))
                .arg("--")
                .arg(agent_bin());
            c
        }
    }
}

fn spawn(
    port: u16,
    state: &Path,
    runtime_state: &Path,
    log: &Path,
    extra: &[String],
    caps: Option<&[String]>,
    wrapper: &[String],
) -> Child {
    command(caps, wrapper)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--state-dir"])
        .arg(state)
        .arg("--runtime-state")
        .arg(runtime_state)
        .args(extra)
        .env("PODLIFE_LOG_LEVEL", "info")
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .expect("agent log"),
        )
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", agent_bin().display()))
}

pub fn agent_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PODLIFE_BIN") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "PODLIFE_BIN={} does not exist", p.display());
        return p;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for profile in ["release", "debug"] {
        let p = root.join("target").join(profile).join("podlife");
        if p.exists() {
            return p;
        }
    }
    panic!("no podlife binary under target/release or target/debug: build it with `cargo build --release -p podlife` or set PODLIFE_BIN")
}

/// Where agent logs go: kept there when the test fails (CI can upload them), removed otherwise.
fn log_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-logs");
    let _ = std::fs::create_dir_all(&d);
    d
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Agent {
    pub fn start(runtime_state: &Path) -> Self {
        Self::start_with(runtime_state, None)
    }

    /// Start on a given state dir (restart tests reuse one).
    pub fn start_with(runtime_state: &Path, state: Option<PathBuf>) -> Self {
        Self::start_args(runtime_state, state, &[])
    }

    /// Start with extra agent flags.
    pub fn start_args(runtime_state: &Path, state: Option<PathBuf>, extra: &[&str]) -> Self {
        let mut a = Self::spawn_args(runtime_state, state, extra, None, Vec::new());
        a.wait_ready();
        a
    }

    /// The agent with exactly the capabilities `caps` (e.g. the DaemonSet's): Ok when it gets
    /// ready, Err(its log) when it exits first.
    pub fn try_start_with_caps(
        runtime_state: &Path,
        extra: &[&str],
        caps: &[&str],
    ) -> Result<Self, String> {
        let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        let mut a = Self::spawn_args(runtime_state, None, extra, Some(caps), Vec::new());
        let t = Instant::now();
        while a.get("/readyz").0 != 200 {
            if let Ok(Some(_)) = a.child.try_wait() {
                return Err(a.log_tail());
            }
            if t.elapsed() > Duration::from_secs(20) {
                panic!("agent not ready after 20 s; log:\n{}", a.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(a)
    }

    /// Start without waiting for readiness, exec'd from `wrapper` (e.g. a shell that first
    /// moves itself into a memory cgroup): the caller watches the start itself.
    pub fn spawn_wrapped(
        runtime_state: &Path,
        state: Option<PathBuf>,
        extra: &[&str],
        wrapper: &[&str],
    ) -> Self {
        let wrapper = wrapper.iter().map(|s| s.to_string()).collect();
        Self::spawn_args(runtime_state, state, extra, None, wrapper)
    }

    fn spawn_args(
        runtime_state: &Path,
        state: Option<PathBuf>,
        extra: &[&str],
        caps: Option<Vec<String>>,
        wrapper: Vec<String>,
    ) -> Self {
        let port = free_port();
        let state =
            state.unwrap_or_else(|| PathBuf::from(format!("/tmp/podlife-e2e-agent-{port}")));
        let log = log_dir().join(format!("agent-{port}.log"));
        let _ = std::fs::remove_file(&log);
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let child = spawn(
            port,
            &state,
            runtime_state,
            &log,
            &extra,
            caps.as_deref(),
            &wrapper,
        );
        Self {
            child,
            port,
            state,
            log,
            runtime_state: runtime_state.to_path_buf(),
            extra,
            caps,
            token: None,
            wrapper,
        }
    }

    /// The exit status when the agent has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The whole agent log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn wait_ready(&mut self) {
        let t = Instant::now();
        while self.get("/readyz").0 != 200 {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "{} exited before it was ready ({status}); log:\n{}",
                    agent_bin().display(),
                    self.log_tail()
                );
            }
            if t.elapsed() > Duration::from_secs(20) {
                panic!("agent not ready after 20 s; log:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL the agent (no chance to flush) and start it again on the same port and state.
    pub fn crash_and_restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = spawn(
            self.port,
            &self.state,
            &self.runtime_state,
            &self.log,
            &self.extra,
            self.caps.as_deref(),
            &self.wrapper,
        );
        self.wait_ready();
    }

    /// SIGSTOP the agent: nothing drains its ring buffer (nor answers HTTP) until `resume`,
    /// so a process storm fills the buffer and every later record is lost, for certain.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after `pause`.
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill has no memory preconditions; the pid is our own child, not yet waited.
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        );
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The token `get` sends from now on.
    pub fn set_token(&mut self, token: &str) {
        self.token = Some(token.to_string());
    }

    /// (status, body) of a GET on the agent.
    pub fn get(&self, path: &str) -> (u16, String) {
        match &self.token {
            Some(t) => http_get_with(self.port, path, &format!("Authorization: Bearer {t}\r\n")),
            None => http_get(self.port, path),
        }
    }

    pub fn json(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("GET {path} → {status}: not JSON ({e}): {body}"))
    }

    pub fn timeline(&self, uid: &str) -> Value {
        self.json(&format!("/pods/{uid}/timeline"))
    }

    /// One container of the pod's summary (`/pods/<uid>`), by id.
    pub fn container_summary(&self, uid: &str, id: &str) -> Value {
        let summary = self.json(&format!("/pods/{uid}"));
        (summary["containers"].as_array())
            .and_then(|cs| cs.iter().find(|c| c["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no container {id} in {summary}"))
    }

    /// GET /pods: the pod summaries.
    pub fn pods(&self) -> Vec<Value> {
        self.json("/pods")["pods"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub fn metrics(&self) -> String {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "GET /metrics: {body}");
        body
    }

    /// Poll `done` every 50 ms for up to `limit`; on timeout panic with `what` and the log.
    pub fn wait_until(&self, what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
        let t = Instant::now();
        while !done() {
            assert!(
                t.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; log:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Poll the timeline until `done` holds; on timeout panic with the timeline and the log.
    pub fn wait_for(
        &self,
        uid: &str,
        what: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let t = Instant::now();
        loop {
            let (status, body) = self.get(&format!("/pods/{uid}/timeline"));
            if status == 200 {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                if done(&v) {
                    return v;
                }
            }
            if t.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what} on pod {uid}\ntimeline ({status}): {}\ntext:\n{}\nagent log ({}):\n{}",
                    body,
                    self.get(&format!("/pods/{uid}/timeline?format=text")).1,
                    self.log.display(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// (status, body) of an HTTP/1.1 GET on a loopback port; (0, "") when nothing listens.
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    http_get_with(port, path, "")
}

/// The same with extra header lines (each ending in CRLF).
pub fn http_get_with(port: u16, path: &str, headers: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n"
    );
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or(("", ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

pub fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.state);
        // Keep the log of a failing test for the person reading CI output.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Events of a timeline of one type.
pub fn events<'a>(t: &'a Value, ty: &str) -> Vec<&'a Value> {
    t["events"]
        .as_array()
        .map(|a| a.iter().filter(|e| e["type"] == ty).collect())
        .unwrap_or_default()
}

/// Events of a type for one container id.
pub fn events_of<'a>(t: &'a Value, ty: &str, container_id: &str) -> Vec<&'a Value> {
    events(t, ty)
        .into_iter()
        .filter(|e| e["container_id"] == container_id)
        .collect()
}

/// Values of a metric's samples whose label set contains every `labels` pair.
fn samples(text: &str, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .collect()
}

/// Sum of a metric's samples whose label set contains every `labels` pair. Panics when there is
/// no such sample: an absent series (misnamed, or never created) is not a 0; say so with
/// `series_absent`.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let v = samples(text, name, labels);
    assert!(
        !v.is_empty(),
        "no series {name} with labels {labels:?} in /metrics:\n{text}"
    );
    v.iter().sum()
}

/// Whether no sample of the metric has every `labels` pair.
pub fn series_absent(text: &str, name: &str, labels: &[(&str, &str)]) -> bool {
    samples(text, name, labels).is_empty()
}

/// Whether the timeline has an event of a type for one container id.
pub fn has(t: &Value, ty: &str, container_id: &str) -> bool {
    !events_of(t, ty, container_id).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP podlife_container_restarts_total Container restarts\n\
        # TYPE podlife_container_restarts_total counter\n\
        podlife_container_restarts_total{container=\"app\",uid=\"a\"} 0\n\
        podlife_container_restarts_total{container=\"app\",uid=\"b\"} 2\n\
        podlife_container_restarts_total_other{uid=\"c\"} 5\n";

    #[test]
    fn metric_tells_an_absent_series_from_zero() {
        let name = "podlife_container_restarts_total";
        assert_eq!(metric(TEXT, name, &[("uid", "a")]), 0.0);
        assert_eq!(metric(TEXT, name, &[]), 2.0);
        assert!(!series_absent(TEXT, name, &[("uid", "a")]));
        assert!(
            series_absent(TEXT, name, &[("uid", "c")]),
            "a longer name is another metric"
        );
        assert!(series_absent(TEXT, "podlife_container_restart_total", &[]));
        let absent = std::panic::catch_unwind(|| metric(TEXT, name, &[("uid", "c")]));
        assert!(absent.is_err(), "an absent series read as {absent:?}");
    }
}
