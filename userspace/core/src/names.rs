//! Kubernetes name rules, to accept a name read from a source a tenant may have written into
//! (runtime bundle annotations) only if the API server could have issued it.

/// DNS-1123 label (namespace, container name): at most 63 of `[a-z0-9-]`, alphanumeric at both
/// ends.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// DNS-1123 subdomain (pod name): at most 253 bytes, dot-separated parts each made like a
/// label (the API server does not bound a part's length here, only the whole).
pub fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// A pod uid as the kubelet writes it: a UUID (`8-4-4-4-12` lower-case hex), or 32 hex digits
/// (static pods: a hash of the manifest).
pub fn is_pod_uid(s: &str) -> bool {
    let hex = |p: &str| {
        p.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let groups: Vec<&str> = s.split('-').collect();
    let lens: Vec<usize> = groups.iter().map(|g| g.len()).collect();
    (lens == [8, 4, 4, 4, 12] || lens == [32]) && groups.iter().all(|g| hex(g))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels() {
        for ok in ["kube-system", "a", "app-1", &"a".repeat(63)] {
            assert!(is_dns1123_label(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "Kube",
            "a.b",
            "a_b",
            "a b",
            "ns\n",
            "\u{1b}[2J",
            &"a".repeat(64),
        ] {
            assert!(!is_dns1123_label(bad), "{bad:?}");
        }
    }

    #[test]
    fn subdomains() {
        for ok in ["coredns-7db6d8ff4d-abcde", "web.v1", "a", &"a".repeat(253)] {
            assert!(is_dns1123_subdomain(ok), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            ".a",
            "a.",
            "A",
            "a/b",
            "x\u{0}",
            &"a".repeat(254),
        ] {
            assert!(!is_dns1123_subdomain(bad), "{bad:?}");
        }
    }

    #[test]
    fn uids() {
        assert!(is_pod_uid("8f3c2a1e-1111-4a4a-9b9b-000000000001"));
        assert!(is_pod_uid("6a5f7e3b9c1d2e4f8a0b1c2d3e4f5a6b"));
        for bad in [
            "",
            "u1",
            "8F3C2A1E-1111-4A4A-9B9B-000000000001",
            "8f3c2a1e-1111-4a4a-9b9b-00000000000g",
            "8f3c2a1e11114a4a-9b9b-000000000001",
            "../../etc",
        ] {
            assert!(!is_pod_uid(bad), "{bad:?}");
        }
    }
}
