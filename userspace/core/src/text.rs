//! The human-readable timeline (`?format=text`): relative times, the gap since the previous
//! step, and problems marked with `!` so they stand out in a terminal. One renderer for the
//! agent's served timelines and the engine's own; control characters from argv, comm or
//! names are escaped (`terminal`).

use crate::kernel_event::ConnOutcome;
use crate::lifecycle::{ExitReason, LifecycleKind as K, Source};
use crate::terminal::write_line;
use crate::termination::Outcome;
use crate::timeline::{Timeline, TimelineEvent};

fn is_problem(k: &K) -> bool {
    match k {
        K::ContainerExited { reason, .. } => *reason != ExitReason::Completed,
        K::ExecFinished {
            exit_code,
            timed_out,
            ..
        } => *timed_out || *exit_code != Some(0),
        K::PreStopFinished {
            exit_code,
            killed_at_grace,
            connection,
            ..
        } => {
            *killed_at_grace
                || exit_code.is_some_and(|c| c != 0)
                || connection.is_some_and(|c| c != ConnOutcome::Closed)
        }
        K::ProbeFailed { .. }
        | K::ProbeUnhealthy { .. }
        | K::StopSignalIgnored { .. }
        | K::GracePeriodOverrun { .. }
        | K::OomKill { .. }
        | K::ProcessCrashed { .. }
        | K::AgentGap { .. }
        | K::EventsLost { .. } => true,
        // Refused before anything listened is a probe or client too early; later, it is lost traffic.
        K::ConnectionsRefused { phase, .. } => *phase != crate::lifecycle::ConnPhase::Starting,
        _ => false,
    }
}

/// `readiness http` / `tcp`: the probe's type when the spec names it, and its kind.
fn kind_of(probe: &Option<String>, kind: crate::lifecycle::ProbeKind) -> String {
    match probe {
        Some(p) => format!("{p} {}", kind.as_str()),
        None => kind.as_str().to_string(),
    }
}

/// `after 1 failure`, `after 4 failures`.
fn plural(n: u32, what: &str) -> String {
    format!("after {n} {what}{}", if n == 1 { "" } else { "s" })
}

/// 1st, 2nd, 3rd, 4th, 11th, 21st ...
fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn duration(ns: i128) -> String {
    let ms = ns as f64 / 1e6;
    if ms.abs() < 1000.0 {
        format!("{ms:.1}ms")
    } else {
        format!("{:.3}s", ms / 1000.0)
    }
}

/// Bytes as MiB, with a decimal when not whole.
fn mib(b: u64) -> String {
    if b.is_multiple_of(1 << 20) {
        format!("{}MiB", b >> 20)
    } else {
        format!("{:.1}MiB", b as f64 / f64::from(1 << 20))
    }
}

/// What matters about an event, in a few words (`label=value`, in a fixed order).
fn detail(e: &TimelineEvent) -> String {
    let mut d: Vec<String> = Vec::new();
    let mut push = |label: &str, v: Option<String>| {
        if let Some(v) = v {
            d.push(if label.is_empty() {
                v
            } else {
                format!("{label}={v}")
            });
        }
    };
    let some = |v: &dyn std::fmt::Display| Some(v.to_string());
    let secs = |label: &str, v: f64, digits: usize| (label.to_string(), format!("{v:.digits$}s"));
    push("", e.container.clone());
    let k = &e.kind;
    if let K::ListenerOpened { port, .. }
    | K::ListenerClosed { port, .. }
    | K::ConnectionsRefused { port, .. } = k
    {
        push("", Some(format!(":{port}")));
    }
    if let K::ContainerStarted { argv, .. }
    | K::ExecStarted { argv, .. }
    | K::ExecFinished { argv, .. }
    | K::ProbeFailed { argv, .. }
    | K::PreStopStarted {
        argv: Some(argv), ..
    } = k
    {
        // A network probe has no command line.
        if !argv.is_empty() {
            push("", Some(format!("`{}`", argv.join(" "))));
        }
    }
    if let K::ProbeFailed {
        probe,
        probe_kind,
        port: Some(port),
        reason,
        consecutive_failures,
        ..
    } = k
    {
        push(
            "",
            Some(format!(
                "{} :{port} {} ({} in a row)",
                kind_of(probe, *probe_kind),
                reason.as_str().replace('_', " "),
                ordinal(*consecutive_failures)
            )),
        );
    }
    if let K::ProbeSucceeded {
        probe,
        probe_kind,
        port,
        first,
        after_failures,
    } = k
    {
        let port = port.map_or(String::new(), |p| format!(" :{p}"));
        let when = if *after_failures > 0 {
            plural(*after_failures, "failure")
        } else if *first {
            "first".into()
        } else {
            String::new()
        };
        push(
            "",
            Some(
                format!("{}{port} {when}", kind_of(probe, *probe_kind))
                    .trim_end()
                    .into(),
            ),
        );
    }
    if let K::ProbeUnhealthy {
        probe,
        message,
        count,
    } = k
    {
        // The probe type is said once: the kubelet's prefix repeats it.
        let detail = crate::probe_message::split_probe(message).1;
        let probe = probe.as_deref().map_or(String::new(), |p| format!("{p}: "));
        let times = if *count > 1 {
            format!(" (×{count})")
        } else {
            String::new()
        };
        push("", Some(format!("{probe}{detail}{times}")));
    }
    if let K::PreStopStarted { handler, .. } | K::PreStopFinished { handler, .. } = k {
        push("handler", some(handler));
    }
    if let K::PreStopStarted {
        port,
        path: Some(path),
        ..
    } = k
    {
        let port = port.map_or("?".into(), |p| p.to_string());
        push("", Some(format!("GET :{port}{path}")));
    }
    let pid = match k {
        K::SandboxStarted { pid }
        | K::ContainerStarted { pid, .. }
        | K::ExecStarted { pid, .. }
        | K::ExecFinished { pid, .. }
        | K::PreStopStarted { pid: Some(pid), .. }
        | K::StopRequested { pid, .. }
        | K::StopSignalIgnored { pid, .. }
        | K::OomKill { pid, .. }
        | K::ProcessCrashed { pid, .. }
        | K::ContainerExited { pid, .. }
        | K::SandboxStopped { pid, .. }
        | K::ListenerOpened { pid, .. }
        | K::ListenerClosed { pid, .. } => Some(*pid),
        _ => None,
    };
    push("pid", pid.map(|p| p.to_string()));
    if let K::ListenerOpened { comm, address, .. } = k {
        push("comm", Some(comm.clone()));
        push("on", some(address));
    }
    if let K::ListenerClosed {
        comm,
        open_s,
        after_stop_s,
        ..
    } = k
    {
        push("comm", Some(comm.clone()));
        push("", open_s.map(|s| format!("open {s:.3}s")));
        push("", after_stop_s.map(|s| format!("{s:.3}s after stop")));
    }
    let exit = match k {
        K::ExecFinished { exit_code, .. }
        | K::ProbeFailed { exit_code, .. }
        | K::PreStopFinished { exit_code, .. }
        | K::ContainerExited { exit_code, .. }
        | K::SandboxStopped { exit_code, .. } => *exit_code,
        _ => None,
    };
    push("exit", exit.map(|c| c.to_string()));
    let signal = match k {
        K::ExecFinished { signal, .. }
        | K::ContainerExited { signal, .. }
        | K::SandboxStopped { signal, .. } => signal.clone(),
        K::StopRequested { signal, .. }
        | K::StopSignalIgnored { signal, .. }
        | K::ProcessCrashed { signal, .. } => Some(signal.clone()),
        _ => None,
    };
    push("signal", signal);
    if let K::ContainerExited {
        reason, killed_by, ..
    } = k
    {
        push("reason", some(reason));
        push("killed_by", killed_by.map(|b| b.to_string()));
    }
    if let K::ProcessCrashed { comm, .. } = k {
        push("comm", Some(comm.clone()));
    }
    if let K::ConnectionsRefused { count, phase, .. } = k {
        push("", Some(format!("×{count} while {phase}")));
    }
    if let K::EventsLost { lost, first, last } = k {
        push("lost", some(lost));
        push("", Some(format!("between {first} and {last}")));
    }
    if let K::ExecFinished { duration_ms, .. } | K::PreStopFinished { duration_ms, .. } = k {
        push("", Some(format!("took {duration_ms:.1}ms")));
    }
    if let K::PreStopFinished {
        connection: Some(c),
        ..
    } = k
    {
        push("connection", Some(c.as_str().into()));
    }
    if let K::PreStopFinished {
        grace_used,
        killed_at_grace,
        ..
    } = k
    {
        push(
            "",
            grace_used.map(|g| format!("{:.0}% of the grace", g * 100.0)),
        );
        if *killed_at_grace {
            push("", Some("KILLED AT GRACE".into()));
        }
    }
    if let K::ExecFinished {
        timed_out: true, ..
    }
    | K::ProbeFailed {
        timed_out: true,
        port: None,
        ..
    } = k
    {
        push("", Some("TIMED OUT".into()));
    }
    if let K::GracePeriodOverrun {
        observed_grace_s,
        configured_grace_s,
    } = k
    {
        let (l, v) = secs("grace", *observed_grace_s, 1);
        push(&l, Some(v));
        if let Some(c) = configured_grace_s {
            let (l, v) = secs("configured", *c, 0);
            push(&l, Some(v));
        }
    }
    if let K::DeletionRequested {
        grace_period_s: Some(g),
    } = k
    {
        let (l, v) = secs("grace_period", *g, 0);
        push(&l, Some(v));
    }
    if e.source == Source::Api {
        push("", Some("(API server)".into()));
    }
    if let K::OomKill {
        pid,
        comm,
        limit_scope,
        anon_rss_bytes,
        victim_is_init,
        group_kill,
        killed_with,
        killed_with_more,
        group_first_victim,
        trigger,
        usage_bytes,
        limit_bytes,
        ..
    } = k
    {
        push("comm", comm.clone());
        let limit = limit_bytes.map_or(String::new(), |b| format!(" {}", mib(b)));
        push("limit", Some(format!("{limit_scope}{limit}")));
        push("usage", usage_bytes.map(mib));
        push(
            "",
            anon_rss_bytes.map(|b| format!("anon_rss={}MiB", b >> 20)),
        );
        let by = trigger.as_ref().filter(|t| t.pid != *pid);
        let by_text = |t: &crate::lifecycle::Sender| format!("{}({})", t.comm, t.pid);
        if let Some(first) = group_first_victim {
            let whose = by.map_or(format!("pid {first}"), by_text);
            push(
                "",
                Some(format!("killed with the group kill of {whose}'s OOM")),
            );
        } else {
            push("", by.map(|t| format!("triggered by {}", by_text(t))));
        }
        if *group_kill && group_first_victim.is_none() {
            let n = 1 + killed_with.len() + *killed_with_more as usize;
            push("", Some(format!("group kill: {n} processes")));
        }
        if !victim_is_init && !group_kill {
            push("", Some("child process (container survives)".into()));
        }
    }
    if let K::ContainerRestarted {
        attempt,
        backoff_s,
        crash_loop,
        cause,
    } = k
    {
        push("attempt", some(attempt));
        push("cause", cause.map(|c| c.to_string()));
        let (l, v) = secs("backoff", *backoff_s, 1);
        push(&l, Some(v));
        if *crash_loop {
            push("", Some("(CrashLoopBackOff)".into()));
        }
    }
    let sender = match k {
        K::StopRequested { sender, .. } => Some(sender),
        K::ContainerExited { sender, .. } => sender.as_ref(),
        _ => None,
    };
    let oom = matches!(
        k,
        K::ContainerExited {
            reason: ExitReason::OomKilled,
            ..
        }
    );
    push(
        "",
        sender.map(|s| match oom {
            true => format!("killed with the group kill of {}({})'s OOM", s.comm, s.pid),
            false => format!("from {}({})", s.comm, s.pid),
        }),
    );
    if let K::AgentGap { down_s, .. } = k {
        let (l, v) = secs("down", *down_s, 1);
        push(&l, Some(v));
    }
    d.join("  ")
}

/// The termination summary of each container that stopped, and the shutdown order.
fn shutdown_block(t: &Timeline, out: &mut String) {
    let stopped: Vec<_> = t
        .containers
        .iter()
        .filter_map(|c| c.termination.as_ref().map(|term| (c, term)))
        .collect();
    if stopped.is_empty() {
        return;
    }
    out.push('\n');
    let verdict = match t.sidecars_outlived_apps {
        Some(false) => "  ! a sidecar exited before the app containers",
        _ => "",
    };
    write_line(
        out,
        format_args!("shutdown order: {}{verdict}", t.shutdown_order.join(", ")),
    );
    let s = |v: Option<f64>| v.map_or("?".to_string(), |v| format!("{v:.3}s"));
    for (c, term) in stopped {
        let outcome = term.outcome.map_or("stopping", |o| o.as_str());
        let mark = if matches!(term.outcome, None | Some(Outcome::Clean)) {
            ' '
        } else {
            '!'
        };
        let mut d = vec![format!("requested {}", term.requested_at)];
        if let Some(p) = term.prestop_s {
            d.push(format!("preStop {p:.3}s"));
        }
        if term.stop_signal_at.is_some() {
            d.push(format!(
                "exited {} after the stop signal",
                s(term.exited_after_s)
            ));
        }
        d.push(format!(
            "grace used {} of {}",
            s(term.observed_grace_s),
            s(term.configured_grace_s)
        ));
        write_line(
            out,
            format_args!(
                "{mark} {:<12} {outcome:<22} {}",
                c.name.as_deref().unwrap_or(&c.id),
                d.join("  ")
            ),
        );
    }
}

/// Render a timeline as aligned text. Times are relative to the first event, from `ts_ns`
/// (one clock for all events of a timeline: differences only).
pub fn to_text(t: &Timeline) -> String {
    let mut out = String::new();
    let name = match (&t.namespace, &t.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        _ => "(name unknown)".into(),
    };
    let owner = t
        .owner
        .as_ref()
        .map_or(String::new(), |o| format!("  owner {}/{}", o.kind, o.name));
    write_line(
        &mut out,
        format_args!(
            "pod {name}  uid {}  qos {}  state {}{owner}",
            t.uid,
            t.qos.map_or("-", |q| q.as_str()),
            t.state
        ),
    );
    if !t.containers.is_empty() {
        let list: Vec<String> = t
            .containers
            .iter()
            .map(|c| {
                let fallback = if c.kind.as_deref() == Some("sandbox") {
                    "(sandbox)"
                } else {
                    "?"
                };
                let listen = c
                    .time_to_listen_s
                    .map_or(String::new(), |s| format!(", listening after {s:.3}s"));
                let probed = c
                    .time_to_first_probe_success_s
                    .map_or(String::new(), |s| format!(", probe ok after {s:.3}s"));
                format!(
                    "{} ({}, {}, restarts {}{listen}{probed})",
                    c.name.as_deref().unwrap_or(fallback),
                    c.kind.as_deref().unwrap_or("?"),
                    c.state,
                    c.restarts
                )
            })
            .collect();
        write_line(&mut out, format_args!("containers: {}", list.join(", ")));
    }
    // Our own blank lines are pushed as is; write_line would escape them.
    out.push('\n');
    write_line(
        &mut out,
        format_args!("  {:>10}  {:>10}  {:<19} details", "at", "after", "event"),
    );
    let first = t.events.first().map(|e| i128::from(e.ts_ns));
    let mut prev = first;
    for e in &t.events {
        let ts = i128::from(e.ts_ns);
        let at = first.map_or("?".into(), |f| format!("+{}", duration(ts - f)));
        let after = match prev {
            Some(p) if p != ts => format!("+{}", duration(ts - p)),
            _ => String::new(),
        };
        prev = Some(ts);
        let mark = if is_problem(&e.kind) { '!' } else { ' ' };
        write_line(
            &mut out,
            format_args!(
                "{mark} {at:>10}  {after:>10}  {:<19} {}",
                e.kind.name(),
                detail(e)
            ),
        );
    }
    shutdown_block(t, &mut out);
    if let Some(e) = t.events.first() {
        out.push('\n');
        write_line(
            &mut out,
            format_args!("times are relative to {}; ! marks a problem", e.time),
        );
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
            shutdown_order: Vec::new(),
            sidecars_outlived_apps: None,
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
        assert!(
            deletion.contains("grace_period=30s  (API server)"),
            "{deletion}"
        );
        let ignored = text
            .lines()
            .find(|l| l.contains("StopSignalIgnored"))
            .unwrap();
        assert!(ignored.contains("+100.0ms"), "{ignored}");
        assert!(ignored.starts_with('!'), "a problem: {ignored}");
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
            shutdown_order: Vec::new(),
            sidecars_outlived_apps: None,
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
        assert_eq!(text.lines().count(), 7, "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        assert!(text.contains("web\\x1b[2J"), "{text}");
        assert!(text.contains("echo \\x1b]0;x\\x07\\nFAKE"), "{text}");
        assert!(text.contains("comm=evil\\x1b[1A\\u{9b}"), "{text}");
        assert!(!text.lines().any(|l| l.starts_with("FAKE")), "{text}");
    }

    #[test]
    fn aligned_with_relative_times_marks_and_the_agent_s_own_events() {
        let t = Timeline {
            uid: "u".into(),
            namespace: Some("default".into()),
            name: Some("web".into()),
            qos: Some(crate::cgroup_path::Qos::Burstable),
            owner: None,
            node: None,
            state: "Running".into(),
            containers: vec![crate::timeline::TimelineContainer {
                name: Some("app".into()),
                id: "c1".into(),
                kind: Some("app".into()),
                restarts: 0,
                state: "Exited".into(),
                time_to_listen_s: None,
                time_to_first_probe_success_s: None,
                last_probe_message: None,
                termination: None,
            }],
            shutdown_order: Vec::new(),
            sidecars_outlived_apps: None,
            events: vec![
                event(0, Source::Kernel, K::PodAdmitted),
                event(
                    250_000_000,
                    Source::Kernel,
                    K::ContainerStarted {
                        pid: 7,
                        argv: vec!["sh".into(), "-c".into(), "exit 3".into()],
                        kind: None,
                    },
                ),
                event(
                    2_250_000_000,
                    Source::Kernel,
                    K::StopSignalIgnored {
                        signal: "SIGTERM".into(),
                        pid: 7,
                    },
                ),
                event(
                    4_250_000_000,
                    Source::Kernel,
                    K::ContainerExited {
                        pid: 7,
                        exit_code: Some(3),
                        signal: None,
                        reason: ExitReason::Error,
                        killed_by: Some(crate::lifecycle::KilledBy::RuntimeStop),
                        sender: None,
                        termination_s: None,
                    },
                ),
                event(
                    5_000_000_000,
                    Source::Agent,
                    K::EventsLost {
                        lost: 12,
                        first: "A".into(),
                        last: "B".into(),
                    },
                ),
                event(
                    6_000_000_000,
                    Source::Agent,
                    K::AgentGap {
                        down_from: "A".into(),
                        down_until: "B".into(),
                        down_s: 42.0,
                    },
                ),
            ],
        };
        let text = to_text(&t);
        assert!(
            text.starts_with("pod default/web  uid u  qos burstable  state Running\n"),
            "{text}"
        );
        assert!(
            text.contains("containers: app (app, Exited, restarts 0)"),
            "{text}"
        );
        let line = |ty: &str| {
            text.lines()
                .find(|l| l.contains(ty))
                .unwrap_or_else(|| panic!("no {ty}:\n{text}"))
        };
        let started = line("ContainerStarted");
        assert!(started.starts_with(' '), "{started}");
        assert!(
            started.contains("+250.0ms") && started.contains("app  `sh -c exit 3`  pid=7"),
            "{started}"
        );
        let ignored = line("StopSignalIgnored");
        assert!(ignored.starts_with('!'), "{ignored}");
        assert!(
            ignored.contains("+2.250s") && ignored.contains("+2.000s"),
            "{ignored}"
        );
        let exited = line("ContainerExited");
        assert!(exited.starts_with('!'), "not Completed: {exited}");
        assert!(
            exited.contains("exit=3  reason=Error  killed_by=runtime_stop"),
            "{exited}"
        );
        let lost = line("EventsLost");
        assert!(
            lost.starts_with('!') && lost.contains("lost=12  between A and B"),
            "{lost}"
        );
        let gap = line("AgentGap");
        assert!(gap.starts_with('!') && gap.contains("down=42.0s"), "{gap}");
        assert!(!text.contains("owner"), "unknown owner is left out: {text}");
        assert!(
            text.ends_with("times are relative to ; ! marks a problem\n"),
            "{text}"
        );
    }
}
