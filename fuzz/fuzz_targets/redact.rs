//! argv redaction on arbitrary bytes (NUL-separated arguments, as in /proc/<pid>/cmdline):
//! never panics, stays within its bounds, is idempotent, and no token-shaped secret of the
//! input (an AWS key id, a GitHub token) is left in the output. The terminal escaping of the
//! same text leaves no control character but the line ends it adds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podlife_core::redact::{redact_argv, MAX_ARGS, MAX_ARG_BYTES, MAX_OUTPUT_BYTES};
use podlife_core::terminal::escape_controls;

/// `AKIA` + 16 of [0-9A-Z] and `ghp_` + 36 alphanumerics found in `s`.
fn shaped_secrets(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let shapes: [(&str, usize, fn(u8) -> bool); 2] = [
        ("AKIA", 16, |b| b.is_ascii_uppercase() || b.is_ascii_digit()),
        ("ghp_", 36, |b| b.is_ascii_alphanumeric()),
    ];
    for (prefix, len, class) in shapes {
        for (i, _) in s.match_indices(prefix) {
            let body = &s.as_bytes()[i + prefix.len()..];
            if body.len() >= len && body[..len].iter().all(|b| class(*b)) {
                out.push(&s[i..i + prefix.len() + len]);
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let argv: Vec<String> = data
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let out = redact_argv(&argv);
    assert!(out.len() <= MAX_ARGS && out.len() == argv.len().min(MAX_ARGS));
    assert!(out.iter().all(|a| a.len() <= MAX_ARG_BYTES), "{out:?}");
    assert!(out.iter().map(String::len).sum::<usize>() <= MAX_OUTPUT_BYTES);
    assert_eq!(redact_argv(&out), out, "not idempotent for {argv:?}");
    for a in &argv {
        for secret in shaped_secrets(a) {
            assert!(
                !out.iter().any(|o| o.contains(secret)),
                "{secret} left in {out:?} from {argv:?}"
            );
        }
    }
    for a in &out {
        assert!(!escape_controls(a).chars().any(char::is_control));
    }
});
