//! Which served events become Kubernetes Events: the kernel-only findings, those the kubelet
//! never reports (a child's OOM kill, a SIGTERM PID 1 dropped, a grace-period overrun, a probe
//! killed at its timeout, a crashed child process). Pure: typed served event in, finding out.

use podlife_core::char_boundary::floor_char_boundary;
use podlife_core::timeline::format_rfc3339;
use podlife_core::{LifecycleKind, ProbeKind, ServedEvent};

/// One finding about a pod, ready to be recorded as an Event on it.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub uid: String,
    pub namespace: String,
    pub pod: String,
    /// Container name, when known (the Event's `regarding.fieldPath`).
    pub container: Option<String>,
    /// The Event's reason (UpperCamelCase, stable: alerting and exporters match on it).
    pub reason: &'static str,
    /// Human-readable, at most `MAX_NOTE` bytes.
    pub note: String,
    /// RFC 3339 time of the finding (the served event's `time`).
    pub time: String,
}

/// events.k8s.io/v1 rejects a longer note.
pub const MAX_NOTE: usize = 1024;

fn truncate(mut note: String) -> String {
    if note.len() > MAX_NOTE {
        note.truncate(floor_char_boundary(&note, MAX_NOTE - 3));
        note.push_str("...");
    }
    note
}

/// The finding in a served event, if it is one. Events of pods without a known namespace and
/// name cannot be attached to a Pod and give none.
pub fn finding(e: &ServedEvent) -> Option<Finding> {
    let c = e
        .container
        .as_deref()
        .map_or_else(|| "a container".to_string(), |n| format!("container {n}"));
    let (reason, note) = match &e.kind {
        // A group kill takes the container with the child: the kubelet reports that one.
        LifecycleKind::OomKill {
            victim_is_init: false,
            group_kill: false,
            pid,
            comm,
            limit_scope,
            anon_rss_bytes,
            ..
        } => (
            "ChildOOMKilled",
            format!(
                "process {}({pid}) of {c} was OOM-killed ({limit_scope} memory limit); the container keeps running{}",
                comm.as_deref().unwrap_or("?"),
                anon_rss_bytes
                    .map(|b| format!(", anon RSS {} MiB", b >> 20))
                    .unwrap_or_default()
            ),
        ),
        LifecycleKind::StopSignalIgnored { signal, pid } => (
            "StopSignalIgnored",
            format!(
                "{c}: PID 1 ({pid}) has no handler for {signal} and the kernel dropped it; the container runs until the grace period ends"
            ),
        ),
        LifecycleKind::GracePeriodOverrun {
            observed_grace_s,
            configured_grace_s,
        } => (
            "GracePeriodOverrun",
            format!(
                "{c} did not stop within its grace period{}: killed with SIGKILL after {observed_grace_s:.1}s",
                configured_grace_s
                    .map(|g| format!(" ({g:.0}s)"))
                    .unwrap_or_default()
            ),
        ),
        // Exec probes only: the kubelet posts its own Unhealthy events for network probes.
        LifecycleKind::ProbeFailed {
            timed_out: true,
            probe_kind: ProbeKind::Exec,
            probe,
            consecutive_failures,
            argv,
            ..
        } => (
            "ProbeTimedOut",
            format!(
                "{} of {c} killed at its timeout ({consecutive_failures} consecutive failures): {}",
                probe.as_deref().unwrap_or("exec probe"),
                argv.join(" ")
            ),
        ),
        LifecycleKind::ProcessCrashed {
            is_init: false,
            pid,
            comm,
            signal,
            core_dumped,
        } => (
            "ProcessCrashed",
            format!(
                "process {comm}({pid}) of {c} crashed with {signal}{}",
                if *core_dumped { " (core dumped)" } else { "" }
            ),
        ),
        _ => return None,
    };
    let (namespace, pod) = e
        .names
        .as_ref()
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())?;
    Some(Finding {
        uid: e.uid.to_string(),
        namespace: namespace.to_string(),
        pod: pod.to_string(),
        container: e.container.clone(),
        reason,
        note: truncate(note),
        time: format_rfc3339(i128::from(e.ts_wall_ns)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use podlife_core::lifecycle::{LimitScope, Source};

    /// 2026-12-06T10:00:00.123456789Z
    const TS: i64 = 1_796_551_200_123_456_789;

    fn served(kind: LifecycleKind) -> ServedEvent {
        ServedEvent {
            seq: 1,
            ts_wall_ns: TS,
            uid: "u1".into(),
            names: Some(("shop".into(), "web".into())),
            container: Some("app".into()),
            container_id: None,
            source: Source::Kernel,
            kind,
        }
    }

    fn oom(victim_is_init: bool) -> LifecycleKind {
        LifecycleKind::OomKill {
            pid: 42,
            comm: Some("memhog".into()),
            victim_is_init,
            limit_scope: LimitScope::Container,
            anon_rss_bytes: Some(33_554_432),
            file_rss_bytes: None,
            shmem_rss_bytes: None,
            total_vm_bytes: None,
            oom_score_adj: None,
            group_kill: false,
            killed_with: Vec::new(),
            killed_with_more: 0,
            group_first_victim: None,
            trigger: None,
            usage_bytes: None,
            limit_bytes: None,
        }
    }

    fn probe(timed_out: bool, argv: Vec<String>) -> LifecycleKind {
        LifecycleKind::ProbeFailed {
            argv,
            exit_code: None,
            timed_out,
            probe: None,
            consecutive_failures: 3,
            probe_kind: ProbeKind::Exec,
            port: None,
            reason: podlife_core::ProbeFailReason::Timeout,
        }
    }

    fn crash(is_init: bool) -> LifecycleKind {
        LifecycleKind::ProcessCrashed {
            pid: 7,
            comm: "worker".into(),
            signal: "SIGSEGV".into(),
            core_dumped: true,
            is_init,
        }
    }

    #[test]
    fn kernel_only_findings_become_events_and_the_rest_do_not() {
        let f = finding(&served(oom(false))).unwrap();
        assert_eq!(f.reason, "ChildOOMKilled");
        assert_eq!(
            f.note,
            "process memhog(42) of container app was OOM-killed (container memory limit); the container keeps running, anon RSS 32 MiB"
        );
        assert_eq!(f.time, "2026-12-06T10:00:00.123456789Z");
        assert_eq!((f.namespace.as_str(), f.pod.as_str()), ("shop", "web"));
        let cases = [
            (
                LifecycleKind::StopSignalIgnored {
                    signal: "SIGTERM".into(),
                    pid: 1,
                },
                Some("StopSignalIgnored"),
            ),
            (
                LifecycleKind::GracePeriodOverrun {
                    observed_grace_s: 30.02,
                    configured_grace_s: Some(30.0),
                },
                Some("GracePeriodOverrun"),
            ),
            (
                probe(true, vec!["cat".into(), "/ready".into()]),
                Some("ProbeTimedOut"),
            ),
            (crash(false), Some("ProcessCrashed")),
            // The kubelet reports these itself: no Event from podlife.
            (oom(true), None),
            (
                {
                    // A child killed with the container in a group kill.
                    let mut k = oom(false);
                    if let LifecycleKind::OomKill { group_kill, .. } = &mut k {
                        *group_kill = true;
                    }
                    k
                },
                None,
            ),
            (probe(false, vec![]), None),
            (crash(true), None),
            (LifecycleKind::PodAdmitted, None),
            (
                LifecycleKind::ExecStarted {
                    pid: 1,
                    argv: vec![],
                },
                None,
            ),
        ];
        for (kind, want) in cases {
            assert_eq!(
                finding(&served(kind.clone())).map(|f| f.reason),
                want,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_pod_without_names_gets_no_event() {
        let mut e = served(LifecycleKind::StopSignalIgnored {
            signal: "SIGTERM".into(),
            pid: 1,
        });
        e.names = None;
        assert!(finding(&e).is_none());
        e.names = Some(("".into(), "web".into()));
        assert!(finding(&e).is_none());
    }

    #[test]
    fn a_long_note_is_cut_at_the_api_limit_on_a_char_boundary() {
        let argv: Vec<String> = (0..400).map(|_| "é".to_string()).collect();
        let f = finding(&served(probe(true, argv))).unwrap();
        assert!(
            f.note.len() <= MAX_NOTE && f.note.ends_with("..."),
            "{}",
            f.note.len()
        );
    }
}
