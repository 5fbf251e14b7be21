//! Human-readable rendering of a timeline (`?format=text`): a header, the containers, then one
//! aligned line per event with the time since the first event, the step since the previous
//! one, and `!` in front of problems.

use crate::lifecycle::LifecycleKind as K;
use crate::terminal::write_line;
use crate::timeline::{Timeline, TimelineEvent};

fn is_problem(k: &K) -> bool {
    match k {
        K::ContainerExited { reason, .. } => *reason != crate::lifecycle::ExitReason::Completed,
        K::ExecFinished {
            exit_code,
            timed_out,
            ..
        } => *timed_out || *exit_code != Some(0),
        K::ProbeFailed { .. }
        | K::StopSignalIgnored { .. }
        | K::GracePeriodOverrun { .. }
        | K::OomKill { .. }
        | K::ProcessCrashed { .. }
        | K::AgentGap { .. }
        | K::EventsLost { .. } => true,
        _ => false,
    }
}

fn secs(ns: u64) -> String {
    let s = ns as f64 / 1e9;
    if s < 1.0 {
        format!("{:.3}ms", s * 1e3)
    } else {
        format!("{s:.3}s")
    }
}

fn details(k: &K) -> String {
    let argv = |a: &[String]| {
        let s = a.join(" ");
        if s.chars().count() > 60 {
            format!("{}…", s.chars().take(60).collect::<String>())
        } else {
            s
        }
    };
    let opt = |v: Option<i32>| v.map_or("?".to_string(), |c| c.to_string());
    match k {
        K::SandboxStarted { pid } => format!("pid {pid}"),
        K::ContainerStarted { pid, argv: a, .. } => format!("pid {pid}: {}", argv(a)),
        K::ExecStarted { pid, argv: a } => format!("pid {pid}: {}", argv(a)),
        K::ExecFinished {
            argv: a,
            exit_code,
            duration_ms,
            timed_out,
            probe,
            ..
        } => format!(
            "{} → exit {} in {duration_ms:.1}ms{}{}",
            argv(a),
            opt(*exit_code),
            if *timed_out { " (timed out)" } else { "" },
            probe.as_ref().map_or(String::new(), |p| format!(" [{p}]")),
        ),
        K::ProbeFailed {
            probe,
            consecutive_failures,
            ..
        } => format!(
            "{} failed {consecutive_failures}× in a row",
            probe.as_deref().unwrap_or("probe")
        ),
        K::StopRequested { signal, sender, .. } => {
            format!("{signal} from {}[{}]", sender.comm, sender.pid)
        }
        K::StopSignalIgnored { signal, pid } => {
            format!("{signal} ignored by pid {pid} (no handler)")
        }
        K::GracePeriodOverrun {
            observed_grace_s,
            configured_grace_s,
        } => format!(
            "SIGKILL after {observed_grace_s:.1}s (configured {})",
            configured_grace_s.map_or("?".into(), |g| format!("{g:.0}s"))
        ),
        K::OomKill {
            pid,
            comm,
            victim_is_init,
            limit_scope,
            anon_rss_bytes,
            ..
        } => format!(
            "{}[{pid}] {} limit {limit_scope}, anon rss {}",
            comm.as_deref().unwrap_or("?"),
            if *victim_is_init {
                "(init)"
            } else {
                "(child: container survives)"
            },
            anon_rss_bytes.map_or("?".into(), |b| format!("{} MiB", b / (1024 * 1024)))
        ),
        K::ProcessCrashed {
            pid, comm, signal, ..
        } => format!("{comm}[{pid}] {signal}"),
        K::ContainerExited {
            exit_code,
            reason,
            killed_by,
            ..
        } => format!(
            "{reason}, exit {}{}",
            opt(*exit_code),
            killed_by
                .as_ref()
                .map_or(String::new(), |k| format!(", killed by {k}"))
        ),
        K::ContainerRestarted {
            attempt,
            backoff_s,
            crash_loop,
        } => format!(
            "attempt {attempt} after {backoff_s:.1}s{}",
            if *crash_loop {
                " (CrashLoopBackOff)"
            } else {
                ""
            }
        ),
        K::SandboxStopped { exit_code, .. } => format!("exit {}", opt(*exit_code)),
        K::DeletionRequested { grace_period_s } => format!(
            "deleted through the API, grace period {}",
            grace_period_s.map_or("?".into(), |g| format!("{g:.0}s"))
        ),
        K::AgentGap { down_s, .. } => {
            format!("agent down for {}", secs((*down_s * 1e9) as u64))
        }
        _ => String::new(),
    }
}

fn container_label(e: &TimelineEvent) -> String {
    e.container
        .clone()
        .or_else(|| {
            e.container_id
                .as_ref()
                .map(|id| id.chars().take(12).collect())
        })
        .unwrap_or_default()
}

/// Render a timeline as aligned text.
pub fn to_text(t: &Timeline) -> String {
    let mut out = String::new();
    write_line(
        &mut out,
        format_args!(
            "pod {}/{}  uid {}  qos {}  node {}  state {}{}",
            t.namespace.as_deref().unwrap_or("?"),
            t.name.as_deref().unwrap_or("?"),
            t.uid,
            t.qos.map_or("?", |q| q.as_str()),
            t.node.as_deref().unwrap_or("?"),
            t.state,
            t.owner
                .as_ref()
                .map_or(String::new(), |o| format!("  owner {}/{}", o.kind, o.name))
        ),
    );
    for c in &t.containers {
        write_line(
            &mut out,
            format_args!(
                "  container {:<16} {:<8} {:<8} restarts {}  {}",
                c.name.as_deref().unwrap_or("?"),
                c.kind.as_deref().unwrap_or("?"),
                c.state,
                c.restarts,
                c.id.chars().take(12).collect::<String>()
            ),
        );
    }
    let first = t.events.first().map_or(0, |e| e.ts_ns);
    let mut prev = first;
    for e in &t.events {
        write_line(
            &mut out,
            format_args!(
                "{} {:>12} {:>12}  {:<30}  {:<20} {:<16} {}",
                if is_problem(&e.kind) { "!" } else { " " },
                format!("+{}", secs(e.ts_ns.saturating_sub(first))),
                format!("(+{})", secs(e.ts_ns.saturating_sub(prev))),
                e.time,
                e.kind.name(),
                container_label(e),
                details(&e.kind)
            ),
        );
        prev = e.ts_ns;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Owner;
    use crate::lifecycle::Source;
    use crate::timeline::Timeline;

    fn event(ts_ns: u64, source: Source, kind: K) -> TimelineEvent {
        TimelineEvent {
            time: String::new(),
            ts_ns,
            source,
            container: Some("app".into()),
            container_id: None,
            kind,
        }
    }

    #[test]
    fn owner_in_the_header_and_the_deletion_before_the_stop() {
        let t = Timeline {
            uid: "u".into(),
            namespace: Some("default".into()),
            name: Some("web-5d4f-x2".into()),
            qos: None,
            owner: Some(Owner {
                kind: "ReplicaSet".into(),
                name: "web-5d4f".into(),
            }),
            node: Some("node-1".into()),
            state: "Terminating".into(),
            containers: vec![],
            events: vec![
                event(
                    1_000_000_000,
                    Source::Api,
                    K::DeletionRequested {
                        grace_period_s: Some(30.0),
                    },
                ),
                event(
                    1_100_000_000,
                    Source::Kernel,
                    K::StopSignalIgnored {
                        signal: "SIGTERM".into(),
                        pid: 7,
                    },
                ),
            ],
        };
        let text = to_text(&t);
        let mut lines = text.lines();
        let header = lines.next().unwrap();
        assert!(
            header.ends_with("state Terminating  owner ReplicaSet/web-5d4f"),
            "{header}"
        );
        let deletion = text
            .lines()
            .find(|l| l.contains("DeletionRequested"))
            .unwrap();
        assert!(deletion.starts_with(' '), "not a problem: {deletion}");
        assert!(deletion.contains("grace period 30s"), "{deletion}");
        let ignored = text
            .lines()
            .find(|l| l.contains("StopSignalIgnored"))
            .unwrap();
        assert!(ignored.contains("(+100.000ms)"), "{ignored}");
        let no_owner = to_text(&Timeline { owner: None, ..t });
        assert!(!no_owner.lines().next().unwrap().contains("owner"));
    }

    #[test]
    fn control_characters_from_argv_and_comm_are_escaped() {
        let t = Timeline {
            uid: "u".into(),
            namespace: Some("default".into()),
            name: Some("web\x1b[2J".into()),
            qos: None,
            owner: None,
            node: None,
            state: "Running".into(),
            containers: vec![],
            events: vec![
                event(
                    1,
                    Source::Kernel,
                    K::ExecStarted {
                        pid: 7,
                        argv: vec!["sh".into(), "-c".into(), "echo \x1b]0;x\x07\nFAKE".into()],
                    },
                ),
                event(
                    2,
                    Source::Kernel,
                    K::ProcessCrashed {
                        pid: 7,
                        comm: "evil\x1b[1A\u{9b}".into(),
                        signal: "SIGSEGV".into(),
                        core_dumped: false,
                        is_init: true,
                    },
                ),
            ],
        };
        let text = to_text(&t);
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("web\\x1b[2J"), "{text}");
        assert!(text.contains("echo \\x1b]0;x\\x07\\nFAKE"), "{text}");
        assert!(text.contains("evil\\x1b[1A\\u{9b}[7]"), "{text}");
    }
}
