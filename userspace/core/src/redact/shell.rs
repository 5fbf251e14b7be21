//! A small POSIX-shell tokenizer for `sh -c` scripts: enough to find the words of each simple
//! command (with their quotes removed) and where commands start, so the option rules apply
//! inside a script as they do to argv. It never fails: odd input (unterminated quotes) just
//! makes the last word run to the end. `<` and `>` stay word characters so the redaction marker
//! `<redacted>` reads back as one word.

/// One word of a script: where it is in the script and its text with quoting removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Word {
    pub start: usize,
    pub end: usize,
    pub text: String,
    /// First word after a command separator (`;`, `&&`, `|`, newline, `(`…).
    pub command_start: bool,
}

fn is_separator(c: char) -> bool {
    matches!(c, ';' | '&' | '|' | '(' | ')' | '\n')
}

/// The words of `script`, in order.
pub(super) fn words(script: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let mut chars = script.char_indices().peekable();
    let mut command_start = true;
    while let Some(&(i, c)) = chars.peek() {
        if c == ' ' || c == '\t' || c == '\r' {
            chars.next();
            continue;
        }
        if is_separator(c) {
            command_start = true;
            chars.next();
            continue;
        }
        if c == '#' {
            // A comment runs to the end of the line (the line's text is still scanned for
            // secret shapes by the caller).
            while chars.peek().is_some_and(|&(_, c)| c != '\n') {
                chars.next();
            }
            continue;
        }
        let mut text = String::new();
        let mut end = i;
        // Depth of `$( … )`: separators inside a substitution belong to the word.
        let mut depth = 0usize;
        while let Some(&(j, c)) = chars.peek() {
            if depth == 0 && (c == ' ' || c == '\t' || c == '\r' || is_separator(c)) {
                break;
            }
            chars.next();
            end = j + c.len_utf8();
            match c {
                // Inside `$( … )` quotes are kept: the substitution is shown as written.
                '\'' | '"' if depth > 0 => text.push(c),
                '\'' => {
                    for (k, q) in chars.by_ref() {
                        end = k + q.len_utf8();
                        if q == '\'' {
                            break;
                        }
                        text.push(q);
                    }
                }
                '"' => {
                    while let Some((k, q)) = chars.next() {
                        end = k + q.len_utf8();
                        match q {
                            '"' => break,
                            '\\' => {
                                if let Some(&(k2, n)) = chars.peek() {
                                    if matches!(n, '"' | '\\' | '$' | '`' | '\n') {
                                        chars.next();
                                        end = k2 + n.len_utf8();
                                        text.push(n);
                                        continue;
                                    }
                                }
                                text.push(q);
                            }
                            _ => text.push(q),
                        }
                    }
                }
                '\\' => {
                    if let Some((k, n)) = chars.next() {
                        end = k + n.len_utf8();
                        text.push(n);
                    }
                }
                '`' => {
                    text.push(c);
                    for (k, q) in chars.by_ref() {
                        end = k + q.len_utf8();
                        text.push(q);
                        if q == '`' {
                            break;
                        }
                    }
                }
                '$' if chars.peek().is_some_and(|&(_, n)| n == '(') => {
                    chars.next();
                    end = j + 2;
                    depth += 1;
                    text.push_str("$(");
                }
                '(' => {
                    depth += 1;
                    text.push(c);
                }
                ')' if depth > 0 => {
                    depth -= 1;
                    text.push(c);
                }
                _ => text.push(c),
            }
        }
        out.push(Word {
            start: i,
            end,
            text,
            command_start,
        });
        command_start = false;
    }
    out
}

/// `text` written back as one shell word in place of `raw` (which read as `old`), quoted like
/// `raw` was where that still reads back as `text`.
pub(super) fn requote(raw: &str, old: &str, text: &str) -> String {
    // A word written without quoting (or shown as written, like `$( … )`) stays unquoted.
    if raw == old {
        return text.to_string();
    }
    for q in ['\'', '"'] {
        if raw.len() >= 2 && raw.starts_with(q) && raw.ends_with(q) && !text.contains(q) {
            let escaped_ok = q == '\'' || !text.contains(['\\', '$', '`']);
            if escaped_ok {
                return format!("{q}{text}{q}");
            }
        }
    }
    let plain = !text.is_empty()
        && !text.chars().any(|c| {
            c.is_whitespace() || is_separator(c) || matches!(c, '\'' | '"' | '\\' | '`' | '$' | '#')
        });
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Vec<(String, bool)> {
        words(s)
            .into_iter()
            .map(|w| (w.text, w.command_start))
            .collect()
    }

    #[test]
    fn quotes_separators_and_substitutions() {
        let w = texts(r#"x=1; mysql -p"a b" 'c d'&&echo "q\"x" $(cat /s; ls) # c"#);
        let t: Vec<&str> = w.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            t,
            [
                "x=1",
                "mysql",
                "-pa b",
                "c d",
                "echo",
                "q\"x",
                "$(cat /s; ls)"
            ]
        );
        let starts: Vec<bool> = w.iter().map(|(_, s)| *s).collect();
        assert_eq!(starts, [true, true, false, false, true, false, false]);
    }

    #[test]
    fn spans_cover_the_raw_word() {
        let s = "curl -H 'Authorization: Bearer x' http://h";
        let w = words(s);
        assert_eq!(&s[w[2].start..w[2].end], "'Authorization: Bearer x'");
        assert_eq!(w[2].text, "Authorization: Bearer x");
        assert_eq!(words("echo 'open").last().unwrap().text, "open");
    }

    #[test]
    fn requoted_words_read_back() {
        for (raw, text) in [
            ("'a b'", "a <redacted>"),
            ("\"a b\"", "a <redacted>"),
            ("x", "a b"),
            ("x", "it's"),
            ("x", "-p<redacted>"),
        ] {
            let q = requote(raw, "", text);
            assert_eq!(words(&q)[0].text, text, "{raw} {text} → {q}");
            assert_eq!(words(&q).len(), 1);
        }
    }
}
