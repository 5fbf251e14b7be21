//! Redaction over argv stitched from pieces of command lines, quotes, secrets and markers:
//! never a panic, always within the bounds, idempotent, and no token-shaped secret of the
//! input in the output. The fuzz target `redact` checks the same on arbitrary bytes.

use podlife_core::redact::{redact_argv, MAX_ARGS, MAX_ARG_BYTES, MAX_OUTPUT_BYTES};
use proptest::prelude::*;

const PIECES: &[&str] = &[
    "mysql",
    "-p",
    "-phunter2",
    "sh",
    "-c",
    "bash",
    "redis-cli",
    "-a",
    "curl",
    "-u",
    "sshpass",
    "openssl",
    "-pass",
    "pass:",
    "docker",
    "login",
    "exec",
    "--",
    "kubectl",
    "aws",
    "configure",
    "set",
    "vault",
    "env",
    "timeout",
    " ",
    " ",
    "'",
    "\"",
    "=",
    ":",
    "@",
    "/",
    "?",
    "&",
    ",",
    ";",
    "\n",
    "$(",
    ")",
    "`",
    "{",
    "}",
    "\\",
    "#",
    "password",
    "token",
    "key",
    "--password",
    "--token",
    "DB_PASS",
    "x",
    "é",
    "…",
    "<redacted>",
    "Authorization: Bearer ",
    "Basic ",
    "Cookie",
    "https://",
    "bob:",
    "p@ss@db",
    "AKIAIOSFODNN7EXAMPLE",
    "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
    "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
    "-----BEGIN RSA PRIVATE KEY-----",
    "-----END RSA PRIVATE KEY-----",
    "X-Amz-Signature",
    "\"password\": ",
    "-----",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
];

/// Token-shaped secrets in `s`: AKIA key ids and GitHub tokens.
pub fn shaped_secrets(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for (prefix, len, class) in [
        (
            "AKIA",
            16,
            (|b: u8| b.is_ascii_uppercase() || b.is_ascii_digit()) as fn(u8) -> bool,
        ),
        ("ghp_", 36, |b: u8| b.is_ascii_alphanumeric()),
    ] {
        for (i, _) in s.match_indices(prefix) {
            let body = &s.as_bytes()[i + prefix.len()..];
            if body.len() >= len && body[..len].iter().all(|b| class(*b)) {
                out.push(&s[i..i + prefix.len() + len]);
            }
        }
    }
    out
}

fn arg() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..12).prop_map(|p| p.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]
    #[test]
    fn bounded_idempotent_and_no_shaped_secret_left(
        argv in prop::collection::vec(arg(), 0..8),
        long in prop::collection::vec(arg(), 0..3),
    ) {
        // A few long arguments too, so the cuts are exercised.
        let mut argv = argv;
        argv.extend(long.into_iter().map(|a| a.repeat(12)));
        let out = redact_argv(&argv);
        prop_assert!(out.len() <= MAX_ARGS);
        prop_assert!(out.iter().all(|a| a.len() <= MAX_ARG_BYTES));
        prop_assert!(out.iter().map(String::len).sum::<usize>() <= MAX_OUTPUT_BYTES);
        prop_assert_eq!(&redact_argv(&out), &out, "not idempotent for {:?}", argv);
        for a in &argv {
            for secret in shaped_secrets(a) {
                prop_assert!(
                    !out.iter().any(|o| o.contains(secret)),
                    "{} left in {:?} from {:?}", secret, out, argv
                );
            }
        }
    }
}
