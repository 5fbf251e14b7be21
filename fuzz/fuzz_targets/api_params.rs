//! The API's parameter parsers on arbitrary text (what the `http` target reaches only through
//! percent-encoding): `since`, RFC 3339 times, pod UIDs, names, formats. Each returns a value or
//! a 400 `ApiError`, never panics; a parsed time formats and parses back to itself; a UID that
//! passes is one the cgroup grammar would produce.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podlife::node::clock::{format_rfc3339, parse_rfc3339};
use podlife::serve::http::params;
use podlife::serve::http::ApiError;

const NOW: i128 = 1_764_000_000_000_000_000;

fn is_400(e: &ApiError) -> bool {
    matches!(e, ApiError::BadRequest { .. })
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(ns) = parse_rfc3339(s) {
        // Years before 0000 or after 9999 have no four-digit form.
        if (-62_167_219_200_000_000_000..253_402_300_800_000_000_000).contains(&ns) {
            let text = format_rfc3339(ns);
            assert_eq!(parse_rfc3339(&text), Some(ns), "{s} -> {text}");
        }
    }
    match params::since(s, NOW) {
        Ok(_) => {}
        Err(e) => assert!(is_400(&e), "{e:?}"),
    }
    match params::uid(s) {
        Ok(u) => {
            let cgroup = format!("/kubepods/pod{u}");
            let parsed = podlife_core::cgroup_path::parse(&cgroup);
            assert_eq!(parsed.map(|p| p.pod_uid), Some(u.clone()), "{s}");
        }
        Err(e) => assert!(is_400(&e), "{e:?}"),
    }
    if let Ok(n) = params::k8s_name("name", s) {
        assert_eq!(n, s);
    }
    let (format, accept) = s.split_once('\n').unwrap_or((s, ""));
    let _ = params::wants_text(Some(format), Some(accept));
    let _ = params::wants_text(None, Some(accept));
});
