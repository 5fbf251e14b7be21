//! The kubelet's `Unhealthy` Event of a probe, read: which probe failed (the message's prefix),
//! which container (the Event's fieldPath), and the message cut to a bound.

/// Longest message kept, in bytes (cut at a character boundary).
pub const MAX_MESSAGE_BYTES: usize = 512;

/// The kubelet's prefixes (prober/prober.go): `<Type> probe failed: ` or `<Type> probe errored: `.
const PREFIXES: [(&str, &str); 3] = [
    ("Liveness", "liveness"),
    ("Readiness", "readiness"),
    ("Startup", "startup"),
];

/// `Readiness probe failed: HTTP probe failed with statuscode: 503` →
/// (`readiness`, `HTTP probe failed with statuscode: 503`); a message without a known prefix is
/// returned whole, with no probe.
pub fn split_probe(message: &str) -> (Option<&'static str>, &str) {
    for (prefix, probe) in PREFIXES {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        for verb in [" probe failed:", " probe errored:"] {
            if let Some(detail) = rest.strip_prefix(verb) {
                return (Some(probe), detail.trim_start());
            }
        }
    }
    (None, message)
}

/// The container a fieldPath names: `spec.containers{app}`, `spec.initContainers{init}` (a
/// sidecar's probes), `spec.ephemeralContainers{x}`.
pub fn container_of_field_path(field_path: &str) -> Option<&str> {
    let (list, rest) = field_path.split_once('{')?;
    if !matches!(
        list,
        "spec.containers" | "spec.initContainers" | "spec.ephemeralContainers"
    ) {
        return None;
    }
    let name = rest.strip_suffix('}')?;
    (!name.is_empty()).then_some(name)
}

/// `s` cut to at most `max` bytes, at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    &s[..crate::char_boundary::floor_char_boundary(s, max)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_type_from_the_kubelets_prefix() {
        assert_eq!(
            split_probe("Readiness probe failed: HTTP probe failed with statuscode: 503"),
            (Some("readiness"), "HTTP probe failed with statuscode: 503")
        );
        assert_eq!(
            split_probe("Liveness probe errored: rpc error: code = Unknown"),
            (Some("liveness"), "rpc error: code = Unknown")
        );
        assert_eq!(
            split_probe(
                "Startup probe failed: dial tcp 10.1.2.3:8080: connect: connection refused"
            ),
            (
                Some("startup"),
                "dial tcp 10.1.2.3:8080: connect: connection refused"
            )
        );
        assert_eq!(split_probe("Readiness probe"), (None, "Readiness probe"));
        assert_eq!(split_probe("something else"), (None, "something else"));
    }

    #[test]
    fn containers_from_field_paths() {
        assert_eq!(container_of_field_path("spec.containers{app}"), Some("app"));
        assert_eq!(
            container_of_field_path("spec.initContainers{proxy}"),
            Some("proxy")
        );
        assert_eq!(container_of_field_path("spec.containers{}"), None);
        assert_eq!(container_of_field_path("metadata.name"), None);
        assert_eq!(container_of_field_path("spec.volumes{app}"), None);
        assert_eq!(container_of_field_path("spec.containers{app"), None);
    }

    #[test]
    fn cut_at_a_character_boundary() {
        assert_eq!(truncate("abc", 2), "ab");
        assert_eq!(truncate("abc", 5), "abc");
        // "é" is two bytes: never cut in half.
        assert_eq!(truncate("aé", 2), "a");
        let long = "é".repeat(400);
        let t = truncate(&long, MAX_MESSAGE_BYTES);
        assert!(
            t.len() <= MAX_MESSAGE_BYTES && t.len() == 512,
            "{}",
            t.len()
        );
    }
}
