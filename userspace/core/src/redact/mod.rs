//! argv redaction before anything is stored or served. Secret values become `<redacted>`;
//! options, commands and the shape of the command line stay readable:
//! - per-program short options (`mysql -phunter2`, `sshpass -p x`, `redis-cli -a x`,
//!   `curl -u bob:pw` keeps `bob`), long options and assignments with secret-ish names
//!   (`--password=`, `--token x`, `PGPASSWORD=x psql …` keeps `psql …`) ([`command`]);
//! - `sh -c` / `bash -c` scripts, tokenized and walked like argv ([`shell`]);
//! - inside any text: URL userinfo and secret query keys, headers, JSON/YAML keys, PEM blocks
//!   and well-known token shapes ([`inline`]);
//! - extra patterns from the operator (`--redact-pattern`, [`ExtraPatterns`]).
//!
//! Bounded: at most [`MAX_ARGS`] arguments, each at most [`MAX_ARG_BYTES`] bytes out (so one
//! argv is at most [`MAX_OUTPUT_BYTES`]), and only the first [`MAX_INPUT_ARG_BYTES`] of an
//! argument are looked at. Redacting an output again changes nothing (the property test and
//! the `redact` fuzz target check it for the built-in rules).

mod command;
mod extra;
mod inline;
mod names;
mod shell;

use std::sync::OnceLock;

use crate::char_boundary::floor_char_boundary;

pub use extra::{ExtraPatterns, PatternError};

/// What a secret is replaced with (part of the API: clients may look for it).
pub const REDACTED: &str = "<redacted>";
/// Arguments kept of one argv; the rest are dropped.
pub const MAX_ARGS: usize = 64;
/// Longest argument served, in bytes, counting the `…` that marks a cut.
pub const MAX_ARG_BYTES: usize = 256;
/// Longest redacted argv, in bytes (the sum of its arguments' lengths).
pub const MAX_OUTPUT_BYTES: usize = MAX_ARGS * MAX_ARG_BYTES;
/// Bytes of one argument that are redacted (a secret must be seen whole to be found; what is
/// past the output bound is dropped anyway).
pub const MAX_INPUT_ARG_BYTES: usize = 4096;

/// Marks an argument cut by the bounds.
const CUT: &str = "…";
/// Extra passes over a changed argument until it is a fixpoint.
const AGAIN: usize = 3;

/// Values that need no (further) redaction: empty, already redacted, cut by the bounds (what
/// was after the cut is gone, and what was before it was seen whole the first time), or a
/// switch (`--client-cert-auth=true` on control-plane pods).
fn nothing_to_hide(v: &str) -> bool {
    v.is_empty()
        || v.starts_with(REDACTED)
        || v.ends_with(CUT)
        || v.eq_ignore_ascii_case("true")
        || v.eq_ignore_ascii_case("false")
}

/// The redaction rules, built once (from the agent's config) and passed where argv is
/// rendered.
#[derive(Debug, Clone)]
pub struct Redactor {
    shapes: inline::Shapes,
    extra: Vec<ExtraPatterns>,
}

impl Default for Redactor {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

impl Redactor {
    /// The built-in rules plus the operator's patterns: every match in any argument goes.
    pub fn new(extra: Vec<ExtraPatterns>) -> Self {
        Self {
            shapes: inline::Shapes::new(),
            extra,
        }
    }

    /// The argv to store and serve: redacted and bounded.
    pub fn redact_argv(&self, argv: &[String]) -> Vec<String> {
        let mut walk = command::Walk::new(&self.shapes);
        argv.iter()
            .take(MAX_ARGS)
            .enumerate()
            .map(|(i, arg)| {
                let before = walk.clone();
                let (input, mut out) = self.one(&mut walk, arg, i == 0);
                if out != input {
                    // A changed argument is redacted again until that changes nothing (a
                    // requoted script word can read differently), at most `AGAIN` times.
                    for _ in 0..AGAIN {
                        let again = self.one(&mut before.clone(), &out, i == 0).1;
                        if again == out {
                            break;
                        }
                        out = again;
                    }
                    // Move on as a second pass over the output will: a cut can turn a word
                    // into another kind (a long positional into an option-like prefix).
                    walk = before;
                    walk.word(&self.text_rules(&out), i == 0);
                }
                out
            })
            .collect()
    }

    /// One argument through the rules: (its text-redacted input, its bounded output).
    fn one(&self, walk: &mut command::Walk<'_>, arg: &str, first: bool) -> (String, String) {
        let end = floor_char_boundary(arg, MAX_INPUT_ARG_BYTES);
        // The text rules run first too, so the option rules judge the same words whether
        // they see an argument for the first time or already redacted.
        let input = self.text_rules(&arg[..end]);
        let out = match walk.word(&input, first) {
            Some(walked) => bound(self.text_rules(&walked), end < arg.len()),
            None => bound(input.clone(), end < arg.len()),
        };
        (input, out)
    }

    fn text_rules(&self, s: &str) -> String {
        let mut text = inline::redact_text(s, &self.shapes);
        for p in &self.extra {
            text = p.redact(&text);
        }
        text
    }
}

/// [`Redactor::redact_argv`] with the built-in rules only.
pub fn redact_argv(argv: &[String]) -> Vec<String> {
    static BUILT_IN: OnceLock<Redactor> = OnceLock::new();
    BUILT_IN.get_or_init(Redactor::default).redact_argv(argv)
}

/// At most [`MAX_ARG_BYTES`]: cut (with `…`) at the last space that fits, never inside a
/// marker. `cut` says the input was already cut.
fn bound(text: String, cut: bool) -> String {
    if text.len() <= MAX_ARG_BYTES && !cut {
        return text;
    }
    if text.len() + CUT.len() <= MAX_ARG_BYTES && cut {
        return text + CUT;
    }
    let mut end = floor_char_boundary(&text, MAX_ARG_BYTES - CUT.len());
    if let Some(m) = text
        .match_indices(REDACTED)
        .find(|(i, _)| *i < end && end < i + REDACTED.len())
    {
        end = m.0;
    }
    if let Some(space) = text[..end].rfind(char::is_whitespace).filter(|s| *s > 0) {
        end = space;
    }
    format!("{}{CUT}", &text[..end])
}

#[cfg(test)]
mod tests;
