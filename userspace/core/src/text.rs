//! Human-readable rendering of a timeline (`?format=text`): one aligned line per event with
//! the time since the first event, the step since the previous one, and problems marked.

use crate::timeline::Timeline;

/// Render a timeline as aligned text.
pub fn to_text(t: &Timeline) -> String {
    let mut out = format!(
        "pod {}/{} ({}) {}\n",
        t.namespace.as_deref().unwrap_or("?"),
        t.name.as_deref().unwrap_or("?"),
        t.uid,
        t.state
    );
    let first = t.events.first().map_or(0, |e| e.ts_ns);
    let mut prev = first;
    for e in &t.events {
        let since = e.ts_ns.saturating_sub(first) as f64 / 1e9;
        let step = e.ts_ns.saturating_sub(prev) as f64 / 1e9;
        prev = e.ts_ns;
        out.push_str(&format!(
            "{:>+10.3}s {:>+9.3}s  {:<20} {}\n",
            since,
            step,
            e.kind.name(),
            e.container.as_deref().unwrap_or("")
        ));
    }
    out
}
