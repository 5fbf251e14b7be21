//! The termination summary of each container and the pod's shutdown order, read from the
//! pod's served events (pure: the agent's history and the engine's own timeline both feed it).
//! A container's shutdown starts at the first of the pod's deletion request, its preStop hook
//! and its stop signal; it has no summary while none of them happened (running) or when it
//! ended on its own before any of them (a completed init container, a crash).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::engine::ContainerKind;
use crate::lifecycle::{ExitReason, KilledBy, LifecycleKind as K};
use crate::timeline::format_rfc3339;

/// How a container's shutdown went (`termination.outcome`), worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// OOM-killed between the request and the exit.
    OomDuringShutdown,
    /// The preStop hook was still running when the grace ran out (or the container died in it).
    KilledDuringPrestop,
    /// SIGKILL after the grace period.
    GraceOverrun,
    /// PID 1 had no handler for the stop signal (yet the container ended within its grace).
    SigtermIgnored,
    /// Clients were refused while the container was terminating (network events).
    RefusedConnections,
    Clean,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OomDuringShutdown => "oom_during_shutdown",
            Self::KilledDuringPrestop => "killed_during_prestop",
            Self::GraceOverrun => "grace_overrun",
            Self::SigtermIgnored => "sigterm_ignored",
            Self::RefusedConnections => "refused_connections",
            Self::Clean => "clean",
        }
    }
}

/// `containers[].termination`. Durations in seconds; times RFC 3339.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Termination {
    pub requested_at: String,
    pub prestop_s: Option<f64>,
    pub stop_signal_at: Option<String>,
    /// Seconds from the stop signal to the first close of one of the container's listeners
    /// after it: null when no listener closed then (or the kernel lacks listener events).
    pub listener_closed_after_s: Option<f64>,
    /// Connections to the pod refused on a port this container listened on, while it
    /// terminated: null when the container never listened (nothing to refuse for it, or the
    /// kernel lacks listener events).
    pub refused_while_terminating: Option<u64>,
    /// Seconds from the stop signal to the exit.
    pub exited_after_s: Option<f64>,
    pub configured_grace_s: Option<f64>,
    /// Seconds from the request to the exit: the grace period the container used, as the
    /// kubelet counts it (preStop included).
    pub observed_grace_s: Option<f64>,
    /// Null until the container exited.
    pub outcome: Option<Outcome>,
}

/// One served event as the summary reads it.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    pub ns: i128,
    pub container_id: Option<&'a str>,
    pub kind: &'a K,
}

/// What the summary knows of a container besides its events.
#[derive(Debug, Clone, Copy)]
pub struct ContainerInfo<'a> {
    pub id: &'a str,
    pub name: Option<&'a str>,
    pub kind: Option<ContainerKind>,
    /// The configured grace when no event told it (container metadata).
    pub grace_s: Option<f64>,
}

/// The pod's shutdown: a summary per container id, the order of the exits and whether the
/// native sidecars outlived the app containers (null without both a sidecar and an app in the
/// order).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Shutdown {
    pub terminations: HashMap<String, Termination>,
    pub order: Vec<String>,
    pub sidecars_outlived_apps: Option<bool>,
}

fn secs(from: i128, to: i128) -> f64 {
    ((to - from) as f64 / 1e3).round() / 1e6
}

/// The events of one container that tell its shutdown.
#[derive(Default)]
struct Facts {
    prestop_start: Option<i128>,
    prestop: Option<(f64, bool)>,
    stop: Option<i128>,
    ignored: bool,
    overrun: Option<Option<f64>>,
    oom: Vec<i128>,
    exit: Option<(i128, ExitReason, Option<KilledBy>)>,
    listened: bool,
    /// The first listener close at or after the stop signal.
    closed_after_stop: Option<i128>,
    refused: u64,
}

/// `steps` in time order.
pub fn summarize(steps: &[Step<'_>], containers: &[ContainerInfo<'_>]) -> Shutdown {
    let deletion = steps.iter().find_map(|s| match s.kind {
        K::DeletionRequested { grace_period_s } => Some((s.ns, *grace_period_s)),
        _ => None,
    });
    let mut facts: HashMap<&str, Facts> = HashMap::new();
    for s in steps {
        let Some(f) = s.container_id.map(|id| facts.entry(id).or_default()) else {
            continue;
        };
        match s.kind {
            K::PreStopStarted { .. } => {
                f.prestop_start.get_or_insert(s.ns);
            }
            K::PreStopFinished {
                duration_ms,
                killed_at_grace,
                ..
            } => f.prestop = Some((duration_ms / 1e3, *killed_at_grace)),
            K::StopRequested { .. } => {
                f.stop.get_or_insert(s.ns);
            }
            K::StopSignalIgnored { .. } => f.ignored = true,
            K::GracePeriodOverrun {
                configured_grace_s, ..
            } => f.overrun = Some(*configured_grace_s),
            K::OomKill { .. } => f.oom.push(s.ns),
            K::ContainerExited {
                reason, killed_by, ..
            } => f.exit = Some((s.ns, *reason, *killed_by)),
            K::ListenerOpened { .. } => f.listened = true,
            K::ListenerClosed { .. } => {
                f.listened = true;
                if f.stop.is_some() {
                    f.closed_after_stop.get_or_insert(s.ns);
                }
            }
            K::ConnectionsRefused {
                count,
                phase: crate::lifecycle::ConnPhase::Terminating,
                ..
            } => f.refused += u64::from(*count),
            _ => {}
        }
    }
    let mut out = Shutdown::default();
    let mut exits: Vec<(i128, &ContainerInfo)> = Vec::new();
    for c in containers {
        if c.kind == Some(ContainerKind::Sandbox) {
            continue;
        }
        let f = facts.remove(c.id).unwrap_or_default();
        let exit_ns = f.exit.map(|e| e.0);
        // A deletion after the container ended is not its shutdown.
        let deleted = deletion
            .map(|d| d.0)
            .filter(|d| exit_ns.is_none_or(|e| *d <= e));
        let Some(requested) = [deleted, f.prestop_start, f.stop]
            .into_iter()
            .flatten()
            .min()
        else {
            continue;
        };
        let outcome = f.exit.map(|(at, reason, by)| {
            let prestop_cut = f.prestop.is_some_and(|(_, killed)| killed)
                || (f.prestop_start.is_some() && f.prestop.is_none());
            if reason == ExitReason::OomKilled || f.oom.iter().any(|t| *t >= requested && *t <= at)
            {
                Outcome::OomDuringShutdown
            } else if prestop_cut {
                Outcome::KilledDuringPrestop
            } else if f.overrun.is_some() || by == Some(KilledBy::GraceOverrun) {
                Outcome::GraceOverrun
            } else if f.ignored {
                Outcome::SigtermIgnored
            } else if f.refused > 0 {
                Outcome::RefusedConnections
            } else {
                Outcome::Clean
            }
        });
        let configured = f
            .overrun
            .flatten()
            .or(deletion.and_then(|d| d.1))
            .or(c.grace_s);
        if let Some(at) = exit_ns {
            exits.push((at, c));
        }
        out.terminations.insert(
            c.id.to_string(),
            Termination {
                requested_at: format_rfc3339(requested),
                prestop_s: f.prestop.map(|p| p.0),
                stop_signal_at: f.stop.map(format_rfc3339),
                listener_closed_after_s: f.stop.zip(f.closed_after_stop).map(|(s, c)| secs(s, c)),
                refused_while_terminating: f.listened.then_some(f.refused),
                exited_after_s: f.stop.zip(exit_ns).map(|(s, e)| secs(s, e)),
                configured_grace_s: configured,
                observed_grace_s: exit_ns.map(|e| secs(requested, e)),
                outcome,
            },
        );
    }
    exits.sort_by_key(|(at, _)| *at);
    out.order = exits
        .iter()
        .map(|(_, c)| {
            c.name
                .map_or_else(|| c.id.chars().take(12).collect(), str::to_string)
        })
        .collect();
    // An app still stopping ends after any sidecar that already exited.
    let last_app = out
        .terminations
        .keys()
        .filter_map(|id| containers.iter().find(|c| c.id == id))
        .filter(|c| c.kind == Some(ContainerKind::App))
        .map(|c| {
            exits
                .iter()
                .find(|(_, e)| e.id == c.id)
                .map_or(i128::MAX, |(at, _)| *at)
        })
        .max();
    let first_sidecar = exits
        .iter()
        .filter(|(_, c)| c.kind == Some(ContainerKind::Sidecar))
        .map(|(at, _)| *at)
        .min();
    out.sidecars_outlived_apps = last_app.zip(first_sidecar).map(|(app, side)| side >= app);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lifecycle::{HandlerKind, LimitScope, Sender};

    const S: i128 = 1_000_000_000;

    fn exited(reason: ExitReason, killed_by: Option<KilledBy>) -> K {
        K::ContainerExited {
            pid: 7,
            exit_code: None,
            signal: None,
            reason,
            killed_by,
            sender: None,
            termination_s: None,
        }
    }
    fn stop() -> K {
        K::StopRequested {
            signal: "SIGTERM".into(),
            sender: Sender {
                pid: 1,
                comm: "runc".into(),
            },
            pid: 7,
        }
    }
    fn prestop(killed_at_grace: bool) -> K {
        K::PreStopFinished {
            handler: HandlerKind::Exec,
            exit_code: Some(0),
            duration_ms: 1500.0,
            grace_used: None,
            killed_at_grace,
            connection: None,
        }
    }
    fn started() -> K {
        K::PreStopStarted {
            handler: HandlerKind::Exec,
            argv: None,
            port: None,
            path: None,
            pid: Some(9),
        }
    }
    fn oom() -> K {
        K::OomKill {
            pid: 7,
            comm: None,
            victim_is_init: true,
            limit_scope: LimitScope::Container,
            anon_rss_bytes: None,
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
    fn listening() -> K {
        K::ListenerOpened {
            pid: 7,
            comm: "app".into(),
            port: 8080,
            address: std::net::Ipv4Addr::UNSPECIFIED.into(),
            family: crate::lifecycle::IpFamily::Ipv4,
        }
    }
    fn closed() -> K {
        K::ListenerClosed {
            pid: 7,
            comm: "app".into(),
            port: 8080,
            open_s: Some(1.0),
            after_stop_s: Some(1.0),
        }
    }
    fn refused(count: u32) -> K {
        K::ConnectionsRefused {
            port: 8080,
            count,
            first: String::new(),
            last: String::new(),
            phase: crate::lifecycle::ConnPhase::Terminating,
        }
    }
    fn info(id: &'static str, kind: ContainerKind) -> ContainerInfo<'static> {
        ContainerInfo {
            id,
            name: Some(id),
            kind: Some(kind),
            grace_s: Some(30.0),
        }
    }

    /// The summary of container "app" whose events are `kinds`, one a second from t = 1 s.
    fn of(kinds: &[K]) -> Termination {
        let steps: Vec<Step> = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| Step {
                ns: (i as i128 + 1) * S,
                container_id: Some("app"),
                kind: k,
            })
            .collect();
        let mut s = summarize(&steps, &[info("app", ContainerKind::App)]);
        s.terminations.remove("app").expect("a termination")
    }

    #[test]
    fn every_outcome() {
        let done = |by| exited(ExitReason::Signaled, Some(by));
        let overrun = K::GracePeriodOverrun {
            observed_grace_s: 2.0,
            configured_grace_s: Some(2.0),
        };
        let ignored = K::StopSignalIgnored {
            signal: "SIGTERM".into(),
            pid: 7,
        };
        let cases: Vec<(Vec<K>, Outcome)> = vec![
            (
                vec![
                    stop(),
                    exited(ExitReason::Completed, Some(KilledBy::RuntimeStop)),
                ],
                Outcome::Clean,
            ),
            (
                vec![
                    started(),
                    prestop(false),
                    stop(),
                    done(KilledBy::RuntimeStop),
                ],
                Outcome::Clean,
            ),
            (
                vec![
                    started(),
                    prestop(true),
                    stop(),
                    done(KilledBy::RuntimeStop),
                ],
                Outcome::KilledDuringPrestop,
            ),
            (
                vec![started(), stop(), done(KilledBy::RuntimeStop)],
                Outcome::KilledDuringPrestop,
            ),
            (
                vec![
                    stop(),
                    ignored.clone(),
                    overrun,
                    done(KilledBy::GraceOverrun),
                ],
                Outcome::GraceOverrun,
            ),
            (
                vec![stop(), ignored, exited(ExitReason::Completed, None)],
                Outcome::SigtermIgnored,
            ),
            (
                vec![stop(), oom(), done(KilledBy::OomKiller)],
                Outcome::OomDuringShutdown,
            ),
            (
                vec![
                    listening(),
                    stop(),
                    closed(),
                    refused(3),
                    exited(ExitReason::Completed, Some(KilledBy::RuntimeStop)),
                ],
                Outcome::RefusedConnections,
            ),
        ];
        for (i, (kinds, want)) in cases.into_iter().enumerate() {
            assert_eq!(of(&kinds).outcome, Some(want), "case {i}");
        }
    }

    #[test]
    fn times_from_the_request_and_from_the_stop_signal() {
        let t = of(&[
            started(),
            prestop(false),
            stop(),
            exited(ExitReason::Completed, None),
        ]);
        assert_eq!(t.requested_at, format_rfc3339(S));
        assert_eq!(t.stop_signal_at, Some(format_rfc3339(3 * S)));
        assert_eq!(t.prestop_s, Some(1.5));
        assert_eq!(t.exited_after_s, Some(1.0));
        assert_eq!(t.observed_grace_s, Some(3.0));
        assert_eq!(t.configured_grace_s, Some(30.0));
        assert_eq!(
            (t.listener_closed_after_s, t.refused_while_terminating),
            (None, None),
            "never listened: nothing to tell"
        );
        // Listened, closed 1 s after the stop signal, nothing refused.
        let t = of(&[
            listening(),
            stop(),
            closed(),
            exited(ExitReason::Completed, None),
        ]);
        assert_eq!(
            (t.listener_closed_after_s, t.refused_while_terminating),
            (Some(1.0), Some(0))
        );
        assert_eq!(t.outcome, Some(Outcome::Clean));
        let t = of(&[
            listening(),
            stop(),
            closed(),
            refused(2),
            refused(3),
            exited(ExitReason::Completed, None),
        ]);
        assert_eq!(t.refused_while_terminating, Some(5));
        // Still stopping: no outcome yet.
        let t = of(&[stop()]);
        assert_eq!((t.outcome, t.observed_grace_s), (None, None));
    }

    #[test]
    fn a_container_that_ended_on_its_own_has_no_termination() {
        let steps = [Step {
            ns: S,
            container_id: Some("init"),
            kind: &exited(ExitReason::Completed, None),
        }];
        let deletion = K::DeletionRequested {
            grace_period_s: Some(5.0),
        };
        let mut with_deletion = steps.to_vec();
        with_deletion.push(Step {
            ns: 2 * S,
            container_id: None,
            kind: &deletion,
        });
        for steps in [&steps[..], &with_deletion[..]] {
            let s = summarize(steps, &[info("init", ContainerKind::Init)]);
            assert!(s.terminations.is_empty(), "{s:?}");
            assert!(s.order.is_empty());
        }
    }

    #[test]
    fn the_deletion_starts_the_shutdown_and_its_grace_is_the_configured_one() {
        let (deletion, st, ex) = (
            K::DeletionRequested {
                grace_period_s: Some(10.0),
            },
            stop(),
            exited(ExitReason::Completed, None),
        );
        let steps = [
            Step {
                ns: S,
                container_id: None,
                kind: &deletion,
            },
            Step {
                ns: 6 * S,
                container_id: Some("app"),
                kind: &st,
            },
            Step {
                ns: 7 * S,
                container_id: Some("app"),
                kind: &ex,
            },
        ];
        let s = summarize(&steps, &[info("app", ContainerKind::App)]);
        let t = &s.terminations["app"];
        assert_eq!(t.requested_at, format_rfc3339(S));
        assert_eq!(t.configured_grace_s, Some(10.0));
        assert_eq!(t.observed_grace_s, Some(6.0));
    }

    #[test]
    fn shutdown_order_and_sidecars_that_did_not_outlive_the_app() {
        let (st, ex) = (stop(), exited(ExitReason::Completed, None));
        let step = |ns, id| Step {
            ns: ns * S,
            container_id: Some(id),
            kind: &st,
        };
        let exit = |ns, id| Step {
            ns: ns * S,
            container_id: Some(id),
            kind: &ex,
        };
        let infos = [
            info("sandbox", ContainerKind::Sandbox),
            info("proxy", ContainerKind::Sidecar),
            info("app", ContainerKind::App),
        ];
        // The kubelet's order: the app first, the sidecar after it.
        let good = [
            step(1, "app"),
            exit(2, "app"),
            step(3, "proxy"),
            exit(4, "proxy"),
        ];
        let s = summarize(&good, &infos);
        assert_eq!(s.order, ["app", "proxy"]);
        assert_eq!(s.sidecars_outlived_apps, Some(true));
        // The sidecar went first.
        let bad = [
            step(1, "proxy"),
            exit(2, "proxy"),
            step(3, "app"),
            exit(4, "app"),
        ];
        let s = summarize(&bad, &infos);
        assert_eq!(s.order, ["proxy", "app"]);
        assert_eq!(s.sidecars_outlived_apps, Some(false));
        // ... or while the app is still stopping.
        let s = summarize(
            &[step(1, "app"), step(1, "proxy"), exit(2, "proxy")],
            &infos,
        );
        assert_eq!(s.sidecars_outlived_apps, Some(false));
        // Only an app: nothing to say.
        let s = summarize(&good[..2], &infos);
        assert_eq!(s.sidecars_outlived_apps, None);
    }
}
