//! Operator patterns (`--redact-pattern`): every match in an argument is replaced, except where
//! it would touch an existing marker (so redacting twice changes nothing).

use std::fmt;
use std::str::FromStr;

use regex::Regex;

use super::inline::apply;
use super::REDACTED;

/// One `--redact-pattern` value: one or more regular expressions, separated by newlines or by
/// commas outside `{…}`, `[…]` and `(…)` (so `a{1,3}` stays one pattern; write `\,` for a
/// literal comma elsewhere).
#[derive(Debug, Clone)]
pub struct ExtraPatterns(Vec<Regex>);

/// A pattern that does not compile.
#[derive(Debug)]
pub struct PatternError {
    pattern: String,
    source: regex::Error,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} is not a valid regular expression (Rust regex syntax): {}",
            self.pattern, self.source
        )
    }
}

impl std::error::Error for PatternError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// `s` split at newlines and at commas outside brackets (a backslash escapes the next char).
fn split(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start, mut escaped) = (0i32, 0, false);
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '{' | '[' | '(' => depth += 1,
            '}' | ']' | ')' => depth -= 1,
            '\n' => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            ',' if depth <= 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(|p| p.trim_end_matches('\r'))
        .filter(|p| !p.is_empty())
        .collect()
}

impl FromStr for ExtraPatterns {
    type Err = PatternError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        split(s)
            .into_iter()
            .map(|p| {
                Regex::new(p).map_err(|source| PatternError {
                    pattern: p.to_string(),
                    source,
                })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl ExtraPatterns {
    pub(super) fn redact(&self, s: &str) -> String {
        let mut out = s.to_string();
        for re in &self.0 {
            let markers: Vec<(usize, usize)> = out
                .match_indices(REDACTED)
                .map(|(i, m)| (i, i + m.len()))
                .collect();
            let spans = re
                .find_iter(&out)
                .filter(|m| !m.is_empty())
                .filter(|m| !markers.iter().any(|&(a, b)| m.start() < b && a < m.end()))
                .map(|m| m.range())
                .collect();
            out = apply(&out, spans);
        }
        out
    }

    /// How many expressions this value held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators() {
        assert_eq!(split("a{1,3},b\nc[,]"), ["a{1,3}", "b", "c[,]"]);
        assert_eq!(split(r"x\,y"), [r"x\,y"]);
        let p: ExtraPatterns = r"x\,y".parse().unwrap();
        assert_eq!(p.redact("x,y"), "<redacted>");
    }

    #[test]
    fn bad_pattern_is_named() {
        let err = "ok,(".parse::<ExtraPatterns>().unwrap_err().to_string();
        assert!(
            err.starts_with("\"(\" is not a valid regular expression"),
            "{err}"
        );
    }

    #[test]
    fn markers_are_left_alone() {
        let p: ExtraPatterns = "d,cust-[0-9]+".parse().unwrap();
        let once = p.redact("id cust-42 <redacted>");
        assert_eq!(once, "i<redacted> <redacted> <redacted>");
        assert_eq!(p.redact(&once), once);
    }
}
