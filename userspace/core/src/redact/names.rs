//! Which option, variable, query, header or JSON key names hold secrets. Names are split into
//! words (`DB_PASSWORD`, `db.password`, `keyStorePassword`, `X-Amz-Signature`) and judged by
//! their last word, so `--password-file` or `--token-ttl` keep their (non-secret) values.

/// Where a name was found: some words are secret only in one place (`key=` in a query string is
/// an API key; `--key` on a command line is usually a file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// `--name value`, `--name=value`, `NAME=value`, `name=value` inside an argument.
    Option,
    /// `?name=value` / `&name=value` in a URL.
    Query,
    /// `name: value` (headers, JSON, YAML).
    Colon,
}

/// Last words that always mean a secret value.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "secret",
    "secrets",
    "token",
    "tokens",
    "jwt",
    "cookie",
    "cookies",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "creds",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
    "signature",
    "sig",
    "bearer",
    // redis-server's `--requirepass` / `--masterauth`.
    "requirepass",
    "masterauth",
];

/// A single word that ends with one of these is one too (`PGPASSWORD`, `authtoken`).
const SECRET_SUFFIXES: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "apikey",
    "accesskey",
    "secretkey",
    "privatekey",
];

/// `…_key` is secret after these words (`api_key`, `secret_access_key`, `x-api-key`).
const KEY_QUALIFIERS: &[&str] = &[
    "api",
    "access",
    "secret",
    "private",
    "auth",
    "client",
    "account",
    "master",
    "encryption",
    "signing",
    "license",
    "session",
    "shared",
    "storage",
    "subscription",
];

/// Words of a name, lower-cased: split at anything not alphanumeric and at lower→upper case
/// changes (`keyStorePassword` → key, store, password).
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Is the value of `name` (as found at `place`) a secret?
pub(super) fn is_secret_name(name: &str, place: Place) -> bool {
    let name = name.trim_matches(|c| c == '-' || c == '"' || c == '\'');
    // A name cut by the length bound (`--token-ttl` → `--token…`) is not judged: its value was
    // judged whole before the cut.
    if name.is_empty() || name.ends_with('…') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    // A negated switch (`--no-password`) takes no value.
    if lower.starts_with("no-") || lower.starts_with("no_") {
        return false;
    }
    // Presigned URLs: every X-Amz-* / X-Goog-* parameter is part of the signature set.
    if place == Place::Query
        && (lower.starts_with("x-amz-") || lower.starts_with("x-goog-") || lower == "code")
    {
        return true;
    }
    let w = words(name);
    let Some(last) = w.last() else {
        return false;
    };
    if SECRET_WORDS.contains(&last.as_str()) {
        return true;
    }
    if w.len() == 1 && SECRET_SUFFIXES.iter().any(|s| last.ends_with(s)) {
        return true;
    }
    if last == "key" {
        let qualified = w.len() >= 2 && KEY_QUALIFIERS.contains(&w[w.len() - 2].as_str());
        return qualified || (w.len() == 1 && place != Place::Colon) || place == Place::Query;
    }
    false
}

/// A value that names a file rather than holding the key itself (`--key /etc/tls/tls.key`).
pub(super) fn is_path_like(value: &str) -> bool {
    value.starts_with('/')
        || value.starts_with("./")
        || value.starts_with("../")
        || value.starts_with("~/")
        || [".key", ".pem", ".crt", ".p12", ".pfx", ".json", ".der"]
            .iter()
            .any(|ext| value.ends_with(ext))
}

/// `--password-file`, `--from-file`, `--key-path`: the value is where a secret is, not the secret.
pub(super) fn names_a_file(option: &str) -> bool {
    let o = option.to_ascii_lowercase();
    ["file", "path", "dir"].iter().any(|s| o.ends_with(s))
}

/// `--key /etc/tls.key`: a `…key` option given a file keeps it.
pub(super) fn keeps_path(name: &str, value: &str) -> bool {
    name.to_ascii_lowercase().ends_with("key") && is_path_like(value)
}

/// The name of a plain account (`git`, `postgres`, `ec2-user`) rather than a token used as the
/// URL user (`https://ghp_…@github.com`).
pub(super) fn is_plain_user(user: &str) -> bool {
    let mut chars = user.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && user.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judged_by_the_last_word() {
        for n in [
            "--password",
            "DB_PASSWORD",
            "PGPASSWORD",
            "db.password",
            "-Djavax.net.ssl.keyStorePassword",
            "--passphrase",
            "--pass",
            "--auth",
            "--jwt",
            "--cookie",
            "aws_secret_access_key",
            "x-api-key",
            "apiKey",
            "client_secret",
            "--oauth2-bearer",
            "Authorization",
        ] {
            assert!(is_secret_name(n, Place::Option), "{n}");
        }
        for n in [
            "--password-file",
            "--password-stdin",
            "--no-password",
            "--token-ttl",
            "AWS_ACCESS_KEY_ID",
            "--auth-type",
            "-addr",
            "--port",
            "--bypass",
            "--tokenizer",
            "--keyring",
        ] {
            assert!(!is_secret_name(n, Place::Option), "{n}");
        }
        assert!(is_secret_name("key", Place::Query));
        assert!(is_secret_name("X-Amz-Date", Place::Query));
        assert!(!is_secret_name("key", Place::Colon));
        assert!(!is_secret_name("X-Amz-Date", Place::Option));
    }

    #[test]
    fn plain_users_and_paths() {
        assert!(is_plain_user("git") && is_plain_user("ec2-user"));
        assert!(!is_plain_user("ghp_0123456789abcdefABCDEF0123456789abcd"));
        assert!(is_path_like("/etc/tls/tls.key") && is_path_like("client.pem"));
        assert!(!is_path_like("AIzaSyA-1234"));
    }
}
