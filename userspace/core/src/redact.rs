//! argv redaction before anything is stored or served: values of secret-looking options and
//! assignments become "<redacted>". Bounded too: at most 64 arguments of 256 bytes.

const SECRET_WORDS: [&str; 9] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "apikey",
    "api-key",
    "api_key",
    "credential",
];
const REDACTED: &str = "<redacted>";
const MAX_ARGS: usize = 64;
const MAX_ARG_BYTES: usize = 256;

fn is_secret_name(name: &str) -> bool {
    let n = name.trim_start_matches('-').to_ascii_lowercase();
    SECRET_WORDS.iter().any(|w| n.contains(w))
        || n == "key"
        || n.ends_with("-key")
        || n.ends_with("_key")
}

fn truncate(s: &str) -> String {
    if s.len() <= MAX_ARG_BYTES {
        return s.to_string();
    }
    let mut end = MAX_ARG_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `--password=x` → `--password=<redacted>`, `--token x` → `--token <redacted>`,
/// `DB_PASSWORD=x` → `DB_PASSWORD=<redacted>`, URLs with user:password@ lose the password.
pub fn redact_argv(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len().min(MAX_ARGS));
    let mut hide_next = false;
    for a in argv.iter().take(MAX_ARGS) {
        if hide_next {
            out.push(REDACTED.to_string());
            hide_next = false;
            continue;
        }
        if let Some((name, _)) = a.split_once('=') {
            if is_secret_name(name) {
                out.push(format!("{name}={REDACTED}"));
                continue;
            }
        } else if a.starts_with('-') && is_secret_name(a) && a != "-" {
            hide_next = true;
            out.push(a.clone());
            continue;
        }
        out.push(redact_url(&truncate(a)));
    }
    out
}

/// scheme://user:password@host → scheme://user:<redacted>@host
fn redact_url(a: &str) -> String {
    let Some(scheme_end) = a.find("://") else {
        return a.to_string();
    };
    let rest = &a[scheme_end + 3..];
    let Some(at) = rest.find('@') else {
        return a.to_string();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) if !rest[..at].contains('/') => {
            format!("{}{user}:{REDACTED}{}", &a[..scheme_end + 3], &rest[at..])
        }
        _ => a.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn secrets_are_hidden_and_the_rest_kept() {
        assert_eq!(
            redact_argv(&v(&[
                "app",
                "--password=hunter2",
                "--token",
                "abc",
                "--port=80",
                "DB_PASSWORD=x",
                "--api-key",
                "k",
                "-v"
            ])),
            v(&[
                "app",
                "--password=<redacted>",
                "--token",
                "<redacted>",
                "--port=80",
                "DB_PASSWORD=<redacted>",
                "--api-key",
                "<redacted>",
                "-v"
            ])
        );
        assert_eq!(
            redact_argv(&v(&["psql", "postgres://bob:s3cret@db:5432/x"])),
            v(&["psql", "postgres://bob:<redacted>@db:5432/x"])
        );
        assert_eq!(
            redact_argv(&v(&["sh", "-c", "exit 1"])),
            v(&["sh", "-c", "exit 1"])
        );
    }

    #[test]
    fn bounded() {
        let long = "é".repeat(500);
        let out = redact_argv(&vec![long; 100]);
        assert_eq!(out.len(), MAX_ARGS);
        assert!(out[0].len() <= MAX_ARG_BYTES + "…".len());
    }
}
