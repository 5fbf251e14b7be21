//! The served timeline of one pod (the JSON contract of docs/ARCHITECTURE.md) and the conversion of the
//! kernel's monotonic timestamps to wall-clock RFC 3339 times. The offset is injected: core
//! never reads a clock.

use serde::{Deserialize, Serialize};

use crate::cgroup_path::Qos;
use crate::engine::Owner;
use crate::lifecycle::{LifecycleEvent, LifecycleKind, Source};
use crate::termination::Termination;

/// realtime − monotonic in nanoseconds, measured by the caller (the agent) and handed in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WallClock {
    pub offset_ns: i128,
}

impl WallClock {
    pub fn new(offset_ns: i128) -> Self {
        Self { offset_ns }
    }

    /// Wall-clock nanoseconds since the Unix epoch of a monotonic timestamp.
    pub fn wall_ns(&self, mono_ns: u64) -> i128 {
        i128::from(mono_ns) + self.offset_ns
    }

    /// `2026-11-22T12:00:00.123456789Z` of a monotonic timestamp.
    pub fn rfc3339(&self, mono_ns: u64) -> String {
        format_rfc3339(self.wall_ns(mono_ns))
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn date_of_day(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a 400-year era.
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// RFC 3339 in UTC with nanoseconds: `2026-11-22T12:00:00.123456789Z`.
pub fn format_rfc3339(wall_ns: i128) -> String {
    let secs = wall_ns.div_euclid(1_000_000_000);
    let nanos = wall_ns.rem_euclid(1_000_000_000);
    let secs = i64::try_from(secs).unwrap_or(0);
    let (y, mo, d) = date_of_day(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3_600,
        sod % 3_600 / 60,
        sod % 60
    )
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineContainer {
    pub name: Option<String>,
    pub id: String,
    pub kind: Option<String>,
    pub restarts: u32,
    pub state: String,
    /// ContainerStarted → first ListenerOpened (seconds); null until it listens.
    #[serde(default)]
    pub time_to_listen_s: Option<f64>,
    /// ContainerStarted → first successful kubelet probe (ProbeSucceeded); null until then.
    #[serde(default)]
    pub time_to_first_probe_success_s: Option<f64>,
    /// The kubelet's newest message for a failed probe of it (ProbeUnhealthy, `--kube-api`).
    #[serde(default)]
    pub last_probe_message: Option<String>,
    /// How it stopped (termination.rs); null while running.
    #[serde(default)]
    pub termination: Option<Termination>,
}

/// One event as served: wall-clock `time` first, then the event's own fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimelineEvent {
    pub time: String,
    /// The time of the event on one clock for all events of a timeline, for durations
    /// between steps: monotonic from the engine, wall from the agent's served history.
    pub ts_ns: u64,
    pub source: Source,
    pub container: Option<String>,
    pub container_id: Option<String>,
    #[serde(flatten)]
    pub kind: LifecycleKind,
}

impl TimelineEvent {
    pub fn new(e: &LifecycleEvent, clock: WallClock) -> Self {
        Self {
            time: clock.rfc3339(e.ts_ns),
            ts_ns: e.ts_ns,
            source: e.source,
            container: e.container.clone(),
            container_id: e.container_id.clone(),
            kind: e.kind.clone(),
        }
    }

    /// A served event, on the wall clock.
    pub fn served(e: &crate::served::ServedEvent) -> Self {
        Self {
            time: format_rfc3339(e.ts_wall_ns.into()),
            ts_ns: u64::try_from(e.ts_wall_ns).unwrap_or(0),
            source: e.source,
            container: e.container.clone(),
            container_id: e.container_id.clone(),
            kind: e.kind.clone(),
        }
    }
}

/// `GET /pods/<uid>/timeline`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    pub uid: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub qos: Option<Qos>,
    /// The pod's controller, from the optional API server watch.
    pub owner: Option<Owner>,
    pub node: Option<String>,
    pub state: String,
    pub containers: Vec<TimelineContainer>,
    /// Container names in the order they exited during the pod's shutdown.
    #[serde(default)]
    pub shutdown_order: Vec<String>,
    /// Whether the native sidecars exited after the app containers; null when not both.
    #[serde(default)]
    pub sidecars_outlived_apps: Option<bool>,
    pub events: Vec<TimelineEvent>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_with_nanoseconds() {
        assert_eq!(format_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2026-11-22T12:00:00.123456789Z
        let t = 1_795_348_800_123_456_789i128;
        assert_eq!(format_rfc3339(t), "2026-11-22T12:00:00.123456789Z");
        // Leap day and a pre-epoch instant.
        assert_eq!(
            format_rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
        assert_eq!(format_rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
    }

    #[test]
    fn monotonic_to_wall() {
        let c = WallClock::new(1_795_348_800_000_000_000 - 5_000_000_000);
        assert_eq!(c.rfc3339(5_000_000_001), "2026-11-22T12:00:00.000000001Z");
    }
}
