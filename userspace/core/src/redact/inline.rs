//! Rules that find secrets inside one piece of text, wherever it came from (an argument, a
//! script word, a whole script): PEM blocks, URL userinfo, `name=value` and `name: value` pairs
//! with secret-ish names (query strings, headers, JSON, YAML, env lists), `Bearer`/`Basic`
//! credentials, and well-known token shapes. Each rule yields byte ranges; only the value is
//! replaced, names and schemes stay readable.

use std::ops::Range;

use regex::Regex;

use super::names::{is_plain_user, is_secret_name, keeps_path, names_a_file, Place};
use super::{nothing_to_hide, CUT, REDACTED};

/// The compiled shapes, built once per `Redactor`.
#[derive(Debug, Clone)]
pub(super) struct Shapes {
    tokens: Regex,
    aws_secret: Regex,
    pem: Regex,
    bearer: Regex,
}

impl Shapes {
    pub(super) fn new() -> Self {
        let compile = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("built-in pattern: {e}"));
        Self {
            // Well-known token formats: AWS key ids, GitHub, GitLab, Slack, JWT/JWE, Google API
            // keys, Stripe live keys, npm, Vault. No word boundary in front: a prefix glued to
            // the token must not hide it.
            tokens: compile(concat!(
                r"(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA)[A-Z0-9]{16,}",
                r"|gh[pousr]_[A-Za-z0-9]{20,}",
                r"|github_pat_[A-Za-z0-9_]{20,}",
                r"|glpat-[A-Za-z0-9_\-]{20,}",
                r"|xox[abposr]-[A-Za-z0-9\-]{8,}",
                r"|xapp-[A-Za-z0-9\-]{8,}",
                r"|eyJ[A-Za-z0-9_\-]{8,}(?:\.[A-Za-z0-9_\-]*)*",
                r"|AIza[0-9A-Za-z_\-]{30,}",
                r"|(?:sk|rk)_live_[0-9A-Za-z]{16,}",
                r"|npm_[A-Za-z0-9]{30,}",
                r"|hv[sbr]\.[A-Za-z0-9_\-]{20,}",
            )),
            // Candidates for an AWS secret access key: exactly 40 base64 characters (checked
            // in code: length, and upper, lower and digit all present).
            aws_secret: compile(r"[A-Za-z0-9/+]{40,}"),
            pem: compile(r"-----BEGIN [A-Z0-9 ]{1,64}-----"),
            bearer: compile(r"(?i)\b(?:bearer|basic)[ \t]+([A-Za-z0-9\-._~+/]{8,}=*)"),
        }
    }
}

/// Rounds of the rules at most: a redaction can uncover another (a secret key glued to a key
/// id is a 40-character run only once the id is gone), so the rules run until nothing changes.
const ROUNDS: usize = 4;

/// Every rule over `s` until nothing changes (at most [`ROUNDS`] times).
pub(super) fn redact_text(s: &str, shapes: &Shapes) -> String {
    let mut out = s.to_string();
    for _ in 0..ROUNDS {
        let next = round(&out, shapes);
        if next == out {
            break;
        }
        out = next;
    }
    out
}

/// Every rule over `s`, in order; each one reads the previous one's output.
fn round(s: &str, shapes: &Shapes) -> String {
    let mut out = apply(s, pem_bodies(s, shapes));
    out = apply(&out, url_userinfo(&out));
    out = apply(&out, colon_pairs(&out));
    out = apply(&out, eq_pairs(&out));
    out = apply(&out, bearer(&out, shapes));
    apply(&out, token_shapes(&out, shapes))
}

/// `s` with each range (in any order, overlapping or not) replaced by one marker.
pub(super) fn apply(s: &str, mut spans: Vec<Range<usize>>) -> String {
    if spans.is_empty() {
        return s.to_string();
    }
    spans.sort_by_key(|r| r.start);
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    let mut i = 0;
    while i < spans.len() {
        let start = spans[i].start.max(at);
        let mut end = spans[i].end;
        // Overlapping ranges become one marker.
        while i + 1 < spans.len() && spans[i + 1].start < end {
            i += 1;
            end = end.max(spans[i].end);
        }
        i += 1;
        if end <= start {
            continue;
        }
        out.push_str(&s[at..start]);
        out.push_str(REDACTED);
        at = end;
    }
    out.push_str(&s[at..]);
    out
}

/// A value span, unless it is empty or already redacted.
fn value(s: &str, r: Range<usize>) -> Option<Range<usize>> {
    (!nothing_to_hide(&s[r.clone()])).then_some(r)
}

/// Where the value starting at `start` ends: inside matching quotes if it starts with one, else
/// at the first `stop` character.
fn value_range(s: &str, start: usize, stop: impl Fn(char) -> bool) -> Range<usize> {
    let rest = &s[start..];
    if let Some(q) = rest.chars().next().filter(|c| *c == '"' || *c == '\'') {
        let body = start + 1;
        let mut escaped = false;
        for (i, c) in s[body..].char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' && q == '"' {
                escaped = true;
            } else if c == q {
                return body..body + i;
            }
        }
        return body..s.len();
    }
    let end = rest.find(stop).map_or(s.len(), |i| start + i);
    start..end
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

/// The run of name characters that ends at byte `end`.
fn name_before(s: &str, end: usize) -> usize {
    let b = s.as_bytes();
    let mut start = end;
    while start > 0 && is_name_byte(b[start - 1]) {
        start -= 1;
    }
    start
}

/// `-----BEGIN … PRIVATE KEY-----` (or any PEM block): the body up to `-----END` goes.
fn pem_bodies(s: &str, shapes: &Shapes) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(m) = shapes.pem.find_at(s, from) {
        let body_end = s[m.end()..]
            .find("-----END")
            .map_or(s.len(), |i| m.end() + i);
        spans.extend(value(s, m.end()..body_end));
        from = body_end.max(m.end());
    }
    spans
}

/// `scheme://user:password@host` loses the password, `scheme://token@host` the token (unless
/// it is a plain account name like `git`). The userinfo ends at the last `@` of the authority,
/// so `postgres://bob:p@ss@db` loses all of `p@ss`.
fn url_userinfo(s: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(i) = s[from..].find("://").map(|i| from + i) {
        from = i + 3;
        let scheme = name_before(s, i);
        if scheme == i || !s.as_bytes()[scheme].is_ascii_alphabetic() {
            continue;
        }
        let auth_start = i + 3;
        let auth_end = s[auth_start..]
            .find(|c: char| "/?#'\"\\`".contains(c) || c.is_whitespace())
            .map_or(s.len(), |e| auth_start + e);
        if auth_end == s.len() && s.ends_with(CUT) {
            // Cut by the length bound inside the authority: it was judged whole before.
            continue;
        }
        let Some(at) = s[auth_start..auth_end].rfind('@').map(|a| auth_start + a) else {
            continue;
        };
        let userinfo = &s[auth_start..at];
        match userinfo.find(':') {
            Some(c) => spans.extend(value(s, auth_start + c + 1..at)),
            None if !is_plain_user(userinfo) => spans.extend(value(s, auth_start..at)),
            None => {}
        }
    }
    spans
}

/// `name=value` anywhere: env lists, `--set a.password=x`, query strings (`?`/`&` before the
/// name: `key`, `sig`, `X-Amz-*` count there). The value ends at a separator or quote.
fn eq_pairs(s: &str) -> Vec<Range<usize>> {
    let mut spans = Vec::new();
    for (i, _) in s.match_indices('=') {
        let start = name_before(s, i);
        if start == i {
            continue;
        }
        let place = match s[..start].chars().next_back() {
            Some('?' | '&' | ';') => Place::Query,
            _ => Place::Option,
        };
        if !is_secret_name(&s[start..i], place) {
            continue;
        }
        // `--from-file=password=./pw.txt`: a file named after the secret it holds.
        let opt = s[..start]
            .strip_suffix('=')
            .map(|o| &o[name_before(o, o.len())..]);
        if opt.is_some_and(names_a_file) {
            continue;
        }
        let r = value_range(s, i + 1, |c| c.is_whitespace() || "&;,'\")}]".contains(c));
        if !keeps_path(&s[start..i], &s[r.clone()]) {
            spans.extend(value(s, r));
        }
    }
    spans
}

/// Authorization schemes kept in front of a redacted credential.
const SCHEMES: &[&str] = &[
    "bearer ",
    "basic ",
    "token ",
    "digest ",
    "negotiate ",
    "ntlm ",
    "bot ",
    "apikey ",
];

/// `name: value` with a secret-ish name: HTTP headers (`Authorization: Bearer x` keeps
/// `Bearer`), JSON (`"password": "x"`) and YAML (`token: x`). In braces the value ends at `,`
/// or `}`, elsewhere at the end of the line (a header value may hold spaces).
fn colon_pairs(s: &str) -> Vec<Range<usize>> {
    let b = s.as_bytes();
    let mut spans = Vec::new();
    for (i, _) in s.match_indices(':') {
        // A quoted name (`"password":`) or a bare one.
        let (name_end, quote) = match i.checked_sub(1).map(|p| b[p]) {
            Some(q @ (b'"' | b'\'')) => (i - 1, Some(q)),
            _ => (i, None),
        };
        let start = name_before(s, name_end);
        if start == name_end {
            continue;
        }
        let mut before = start;
        if let Some(q) = quote {
            if start == 0 || b[start - 1] != q {
                continue;
            }
            before -= 1;
        }
        let prev = s[..before].chars().next_back();
        if !prev.is_none_or(|c| c.is_whitespace() || "{,;([=\"'".contains(c)) {
            continue;
        }
        if s[i + 1..].starts_with("//") || !is_secret_name(&s[start..name_end], Place::Colon) {
            continue;
        }
        let in_braces = s[..before]
            .trim_end_matches([' ', '\t'])
            .ends_with(['{', ',', '[']);
        let mut v = i + 1;
        v += s[v..].len() - s[v..].trim_start_matches([' ', '\t']).len();
        let lower = s[v..].get(..10).unwrap_or(&s[v..]).to_ascii_lowercase();
        if let Some(scheme) = SCHEMES.iter().find(|p| lower.starts_with(*p)) {
            v += scheme.len();
            v += s[v..].len() - s[v..].trim_start_matches([' ', '\t']).len();
        }
        let r = value_range(s, v, |c| {
            c == '\n' || c == '\r' || c == '"' || c == '\'' || (in_braces && (c == ',' || c == '}'))
        });
        spans.extend(value(s, r));
    }
    spans
}

/// `Bearer <credential>` / `Basic <credential>` outside a header name (`-H "$H"` scripts,
/// `--header=Bearer …`). Only credential-looking words (not all lower-case letters).
fn bearer(s: &str, shapes: &Shapes) -> Vec<Range<usize>> {
    shapes
        .bearer
        .captures_iter(s)
        .filter_map(|c| c.get(1))
        .filter(|m| !m.as_str().bytes().all(|b| b.is_ascii_lowercase()))
        .map(|m| m.range())
        .collect()
}

fn token_shapes(s: &str, shapes: &Shapes) -> Vec<Range<usize>> {
    let mut spans: Vec<Range<usize>> = shapes.tokens.find_iter(s).map(|m| m.range()).collect();
    for m in shapes.aws_secret.find_iter(s) {
        let t = m.as_str();
        let followed = s[m.end()..].chars().next();
        let looks_random = t.len() == 40
            && t.bytes().any(|b| b.is_ascii_uppercase())
            && t.bytes().any(|b| b.is_ascii_lowercase())
            && t.bytes().any(|b| b.is_ascii_digit());
        // `=` after it: base64 padding of a longer blob; `…`: cut by the length bound.
        if looks_random && !matches!(followed, Some('=' | '…')) {
            spans.push(m.range());
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(s: &str) -> String {
        redact_text(s, &Shapes::new())
    }

    #[test]
    fn each_rule() {
        let cases = [
            (
                "postgres://bob:p@ss@db:5432/x",
                "postgres://bob:<redacted>@db:5432/x",
            ),
            (
                "https://ghp_0123456789abcdefghijABCDEFGHIJ0123@github.com/o/r",
                "https://<redacted>@github.com/o/r",
            ),
            ("ssh://git@github.com/o/r", "ssh://git@github.com/o/r"),
            (
                "https://h/?a=1&access_token=abc&X-Amz-Signature=f00&key=K",
                "https://h/?a=1&access_token=<redacted>&X-Amz-Signature=<redacted>&key=<redacted>",
            ),
            (
                "Authorization: Bearer abc.def",
                "Authorization: Bearer <redacted>",
            ),
            ("Cookie: sid=1; x=2", "Cookie: <redacted>"),
            (
                r#"{"user": "bob", "password": "hu\"n", "n": 1}"#,
                r#"{"user": "bob", "password": "<redacted>", "n": 1}"#,
            ),
            ("{token: abc, n: 1}", "{token: <redacted>, n: 1}"),
            (
                "user: bob\npassword: x y\n",
                "user: bob\npassword: <redacted>\n",
            ),
            ("pass:hunter2", "pass:<redacted>"),
            ("AKIAIOSFODNN7EXAMPLE", "<redacted>"),
            ("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "<redacted>"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
                "-----BEGIN RSA PRIVATE KEY-----<redacted>-----END RSA PRIVATE KEY-----",
            ),
            ("x Bearer Zm9vOmJhcg== y", "x Bearer <redacted> y"),
            ("basic usage", "basic usage"),
            ("--addr=:8080", "--addr=:8080"),
        ];
        for (input, want) in cases {
            assert_eq!(r(input), want, "{input}");
            assert_eq!(r(want), want, "idempotent: {want}");
        }
    }
}
