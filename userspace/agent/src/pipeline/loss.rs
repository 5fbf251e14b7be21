//! Ring-buffer loss grouped into episodes: a storm that loses events on every 250 ms tick for a
//! minute is one episode, and each pod live during it gets one `EventsLost` when it ends (with
//! the total, the first and last tick that lost), never one per tick, so loss cannot push a
//! pod's earlier history out of its bounded list.

use std::collections::BTreeSet;

/// An episode ends after this long without new loss.
pub const QUIET_NS: u64 = 5_000_000_000;
/// Pods remembered per episode (the engine's pod bound is far below; this is a backstop).
const MAX_PODS: usize = 20_000;

/// A finished episode: what to tell each affected pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Episode {
    pub first_mono_ns: u64,
    pub last_mono_ns: u64,
    pub lost: u64,
    pub pods: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct LossEpisodes {
    open: Option<Episode>,
}

impl LossEpisodes {
    /// One tick: `lost` records lost since the previous tick, `live` the pods live now (asked
    /// only when there was loss). Returns the pods that just joined an episode (their
    /// timelines are incomplete from now on) and the episode that ended, if one did.
    pub fn tick(
        &mut self,
        lost: u64,
        now_mono_ns: u64,
        live: impl FnOnce() -> Vec<String>,
    ) -> (Vec<String>, Option<Episode>) {
        if lost == 0 {
            let ended = self
                .open
                .as_ref()
                .is_some_and(|e| now_mono_ns.saturating_sub(e.last_mono_ns) >= QUIET_NS);
            return (Vec::new(), if ended { self.open.take() } else { None });
        }
        let ep = self.open.get_or_insert_with(|| Episode {
            first_mono_ns: now_mono_ns,
            last_mono_ns: now_mono_ns,
            lost: 0,
            pods: BTreeSet::new(),
        });
        ep.last_mono_ns = now_mono_ns;
        ep.lost = ep.lost.saturating_add(lost);
        let mut joined = Vec::new();
        for uid in live() {
            if ep.pods.len() >= MAX_PODS {
                break;
            }
            if ep.pods.insert(uid.clone()) {
                joined.push(uid);
            }
        }
        (joined, None)
    }

    /// At shutdown: the episode still open, so its pods are told before the agent stops.
    pub fn finish(&mut self) -> Option<Episode> {
        self.open.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: u64 = 250_000_000;

    fn pods(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_minute_of_loss_on_every_tick_is_one_episode_per_pod() {
        let mut l = LossEpisodes::default();
        let mut joined_total = 0;
        for i in 0..240 {
            let (joined, ended) = l.tick(10, i * TICK, || pods(&["a", "b"]));
            joined_total += joined.len();
            assert_eq!(ended, None, "tick {i}");
        }
        assert_eq!(joined_total, 2, "each pod joins once");
        // Quiet ticks: nothing until QUIET_NS has passed since the last loss.
        let last = 239 * TICK;
        assert_eq!(l.tick(0, last + TICK, Vec::new).1, None);
        let ep = l.tick(0, last + QUIET_NS, Vec::new).1.expect("ended");
        assert_eq!(ep.lost, 2400);
        assert_eq!((ep.first_mono_ns, ep.last_mono_ns), (0, last));
        assert_eq!(ep.pods, ["a", "b"].iter().map(|s| s.to_string()).collect());
        assert_eq!(
            l.tick(0, last + 2 * QUIET_NS, Vec::new).1,
            None,
            "told once"
        );
    }

    #[test]
    fn a_pod_that_appears_mid_episode_joins_it_and_loss_after_quiet_is_a_new_episode() {
        let mut l = LossEpisodes::default();
        l.tick(1, 0, || pods(&["a"]));
        let (joined, _) = l.tick(1, TICK, || pods(&["a", "c"]));
        assert_eq!(joined, pods(&["c"]));
        let ep = l.tick(0, TICK + QUIET_NS, Vec::new).1.expect("ended");
        assert_eq!(ep.pods.len(), 2);
        let (joined, _) = l.tick(3, 10 * QUIET_NS, || pods(&["a"]));
        assert_eq!(joined, pods(&["a"]), "a new episode tells the pod again");
        assert_eq!(l.finish().map(|e| e.lost), Some(3));
    }

    #[test]
    fn no_loss_asks_nothing() {
        let mut l = LossEpisodes::default();
        let (joined, ended) = l.tick(0, 0, || panic!("live pods asked without loss"));
        assert!(joined.is_empty() && ended.is_none());
    }
}
