//! Results: the serial console of a VM parsed into a report, the host's features probed, and
//! the matrix summary.

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use super::cache;
use crate::setup::output;

/// The host's features, from the same agent binary serving /metrics for a moment.
pub(super) fn probe_host(agent: &Path) -> Report {
    let mut r = Report {
        series: "host".into(),
        release: output(Command::new("uname").arg("-r"))
            .unwrap_or_default()
            .trim()
            .to_string(),
        cgroup: host_cgroup_mode(),
        accel: "-".into(),
        ..Report::default()
    };
    let t = Instant::now();
    if let Err(e) = probe_features(agent, &mut r) {
        r.problems.push(format!("feature probe: {e:#}"));
    }
    r.wall = t.elapsed();
    r
}

fn host_cgroup_mode() -> String {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let fstype_at = |mp: &str| {
        info.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (left.split(' ').nth(4)? == mp).then(|| right.split(' ').next().unwrap_or(""))
        })
    };
    match fstype_at("/sys/fs/cgroup") {
        Some("cgroup2") => "v2".into(),
        _ if fstype_at("/sys/fs/cgroup/unified").is_some() => "hybrid".into(),
        _ => "v1".into(),
    }
}

fn probe_features(agent: &Path, r: &mut Report) -> Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let state = cache().join("host-probe-state");
    let logpath = cache().join("host-probe-agent.log");
    let mut child = Command::new(agent)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--state-dir")
        .arg(&state)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&logpath)?)
        .spawn()
        .with_context(|| format!("starting {}", agent.display()))?;
    let mut metrics = None;
    for _ in 0..150 {
        if let Ok(m) = http_get(port, "/metrics") {
            metrics = Some(m);
            break;
        }
        if child.try_wait()?.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = fs::remove_dir_all(&state);
    let log = fs::read_to_string(&logpath).unwrap_or_default();
    r.warnings = log
        .lines()
        .filter(|l| l.contains("WARN"))
        .map(String::from)
        .collect();
    let metrics = metrics.with_context(|| format!("the agent never served /metrics:\n{log}"))?;
    r.features = parse_features(&metrics);
    Ok(())
}

fn http_get(port: u16, path: &str) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    if !body.starts_with("HTTP/1.1 200") {
        bail!("GET {path}: {}", body.lines().next().unwrap_or(""));
    }
    Ok(body)
}

/// `podlife_feature_enabled{feature="exec"} 1` lines.
fn parse_features(metrics: &str) -> Vec<(String, bool)> {
    metrics
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("podlife_feature_enabled{feature=\"")?;
            let (name, value) = rest.split_once("\"} ")?;
            Some((name.to_string(), value.trim() == "1"))
        })
        .collect()
}

/// One test binary's outcome in a VM.
#[derive(Debug, Default, Clone, PartialEq)]
struct TestRun {
    name: String,
    rc: Option<i32>,
    passed: u32,
    failed: u32,
    ignored: u32,
    secs: Option<u32>,
    /// Names of failed tests.
    failures: Vec<String>,
}

#[derive(Default, Debug)]
pub(super) struct Report {
    pub series: String,
    release: String,
    cgroup: String,
    features: Vec<(String, bool)>,
    /// Agent log lines that explain a degraded feature.
    warnings: Vec<String>,
    tests: Vec<TestRun>,
    problems: Vec<String>,
    pub wall: Duration,
    pub log: PathBuf,
    pub accel: String,
}

/// `test result: ok. 5 passed; 0 failed; 1 ignored; ...` → (5, 0, 1)
fn libtest_counts(line: &str) -> Option<(u32, u32, u32)> {
    let rest = line.strip_prefix("test result: ")?;
    let num = |what: &str| -> Option<u32> {
        let i = rest.find(what)?;
        rest[..i].trim_end().rsplit([' ', '.']).next()?.parse().ok()
    };
    Some((num(" passed")?, num(" failed")?, num(" ignored")?))
}

pub(super) fn parse_console(out: &str, expected: &[String]) -> Report {
    let mut r = Report::default();
    let mut cur = TestRun::default();
    let mut done = false;
    for line in out.lines() {
        if let Some((p, f, i)) = libtest_counts(line) {
            (cur.passed, cur.failed, cur.ignored) = (p, f, i);
        }
        if let Some(name) = line
            .strip_prefix("test ")
            .and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            cur.failures.push(name.to_string());
        }
        if let Some(agent) = line.strip_prefix("agent: ") {
            if agent.contains("WARN") {
                r.warnings.push(agent.to_string());
            }
        }
        let Some(rest) = line.strip_prefix("PODLIFE-VM ") else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        match w.as_slice() {
            ["KERNEL", rel, cg] => (r.release, r.cgroup) = (rel.to_string(), cg.to_string()),
            ["FEATURE", name, on] => r.features.push((name.to_string(), *on == "1")),
            ["AGENT-FAILED"] => r.problems.push("the agent did not serve /metrics".into()),
            ["BEGIN", _] => cur = TestRun::default(),
            ["RESULT", name, rc, more @ ..] => {
                cur.name = name.to_string();
                cur.rc = rc.strip_prefix("rc=").and_then(|v| v.parse().ok());
                cur.secs = more
                    .iter()
                    .find_map(|m| m.strip_prefix("secs=").and_then(|v| v.parse().ok()));
                r.tests.push(std::mem::take(&mut cur));
            }
            ["DONE"] => done = true,
            ["TIMEOUT", ..] => r.problems.push(rest.to_lowercase()),
            ["KVM-ERROR"] => r.problems.push(
                "KVM internal error (the accelerator cannot run this kernel; try --accel tcg)"
                    .into(),
            ),
            _ => {}
        }
    }
    if r.release.is_empty() {
        r.problems.push("the VM never reached /init".into());
    }
    if r.features.is_empty() {
        r.problems.push("no feature was reported".into());
    }
    for name in expected {
        match r.tests.iter().find(|t| &t.name == name) {
            None => r.problems.push(format!("{name}: no result")),
            Some(t) if t.rc != Some(0) || t.failed > 0 => r.problems.push(format!(
                "{name}: rc={:?}, {} failed {:?}",
                t.rc, t.failed, t.failures
            )),
            Some(t) if t.passed == 0 => r.problems.push(format!("{name}: no test ran")),
            // The suite never skips: an ignored test is a test that did not run.
            Some(t) if t.ignored > 0 => r.problems.push(format!("{name}: {} ignored", t.ignored)),
            _ => {}
        }
    }
    if !done && r.problems.is_empty() {
        r.problems.push("the VM did not finish".into());
    }
    r
}

pub(super) fn summarize(host: Option<&Report>, reports: &[Report]) -> usize {
    println!("\nkernel matrix:");
    let mut failed = 0;
    for r in host.into_iter().chain(reports) {
        let (p, f) = r
            .tests
            .iter()
            .fold((0, 0), |(p, f), t| (p + t.passed, f + t.failed));
        let status = if !r.problems.is_empty() {
            "FAILED".to_string()
        } else if r.series == "host" {
            "features probed; tests: the kernel suite".to_string()
        } else {
            format!("ok: {p} passed, {f} failed")
        };
        println!(
            "  {:<5} {:<32} {:<6} {:<4} {status} ({:.1} s)",
            r.series,
            r.release,
            r.cgroup,
            r.accel,
            r.wall.as_secs_f64()
        );
        let on: Vec<&str> = r
            .features
            .iter()
            .filter(|f| f.1)
            .map(|f| f.0.as_str())
            .collect();
        let off: Vec<&str> = r
            .features
            .iter()
            .filter(|f| !f.1)
            .map(|f| f.0.as_str())
            .collect();
        println!("        features on: {}", on.join(" "));
        println!(
            "        features OFF: {}",
            if off.is_empty() {
                "none".into()
            } else {
                off.join(" ")
            }
        );
        for w in &r.warnings {
            println!("        {w}");
        }
        for t in &r.tests {
            println!(
                "        {}: {} passed, {} failed, {} ignored, rc {:?}, {} s",
                t.name,
                t.passed,
                t.failed,
                t.ignored,
                t.rc,
                t.secs.map_or("?".into(), |s| s.to_string())
            );
        }
        for problem in &r.problems {
            println!("        problem: {problem}");
        }
        if !r.problems.is_empty() {
            failed += 1;
            if r.series != "host" {
                println!("        console: {}", r.log.display());
            }
        }
    }
    failed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libtest_summary_is_parsed() {
        let l = "test result: FAILED. 7 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 3.01s";
        assert_eq!(libtest_counts(l), Some((7, 2, 0)));
        assert_eq!(
            libtest_counts("test result: ok. 12 passed; 0 failed; 3 ignored"),
            Some((12, 0, 3))
        );
    }

    const OK: &str = "PODLIFE-VM KERNEL 6.1.0 hybrid\nPODLIFE-VM FEATURE exec 1\n\
        PODLIFE-VM FEATURE oom 0\nPODLIFE-VM BEGIN kernel_a\ntest x ... ok\n\
        test result: ok. 3 passed; 0 failed; 0 ignored\nPODLIFE-VM RESULT kernel_a rc=0 secs=4\n\
        PODLIFE-VM DONE\n";

    #[test]
    fn console_with_a_missing_binary_fails() {
        let ok = parse_console(OK, &["kernel_a".into()]);
        assert!(ok.problems.is_empty(), "{:?}", ok.problems);
        assert_eq!(
            ok.features,
            vec![("exec".to_string(), true), ("oom".to_string(), false)]
        );
        assert_eq!(ok.tests[0].secs, Some(4));
        let missing = parse_console(OK, &["kernel_a".into(), "kernel_b".into()]);
        assert_eq!(missing.problems, vec!["kernel_b: no result".to_string()]);
    }

    #[test]
    fn failed_ignored_and_unfinished_runs_fail() {
        let failed = OK
            .replace("test x ... ok", "test x ... FAILED")
            .replace("ok. 3 passed; 0 failed", "FAILED. 2 passed; 1 failed")
            .replace("rc=0", "rc=101");
        let r = parse_console(&failed, &["kernel_a".into()]);
        assert_eq!(
            r.problems,
            vec!["kernel_a: rc=Some(101), 1 failed [\"x\"]".to_string()]
        );
        let ignored = OK.replace("0 ignored", "1 ignored");
        let r = parse_console(&ignored, &["kernel_a".into()]);
        assert_eq!(r.problems, vec!["kernel_a: 1 ignored".to_string()]);
        let cut = OK.replace("PODLIFE-VM DONE\n", "");
        let r = parse_console(&cut, &["kernel_a".into()]);
        assert_eq!(r.problems, vec!["the VM did not finish".to_string()]);
        let r = parse_console("PODLIFE-VM TIMEOUT after 300s\n", &[]);
        assert!(r
            .problems
            .contains(&"the VM never reached /init".to_string()));
        assert!(r.problems.contains(&"timeout after 300s".to_string()));
    }

    #[test]
    fn features_come_from_the_metrics_text() {
        let m = "# HELP podlife_feature_enabled x\npodlife_feature_enabled{feature=\"exec\"} 1\n\
                 podlife_feature_enabled{feature=\"oom\"} 0\npodlife_up 1\n";
        assert_eq!(
            parse_features(m),
            vec![("exec".to_string(), true), ("oom".to_string(), false)]
        );
    }
}
