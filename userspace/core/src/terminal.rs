//! Text for terminals (`?format=text`): control characters from argv, comm or names are
//! shown escaped, never sent, so a tenant cannot move the cursor, rewrite earlier lines or
//! set the window title of whoever reads a timeline (the kubectl CVE-2021-25743 class).

use std::borrow::Cow;
use std::fmt::{self, Write as _};

fn is_control(c: char) -> bool {
    // C0, DEL and C1.
    c.is_control()
}

/// `s` with C0 and C1 controls and DEL escaped: `\n`, `\t`, `\r`, `\x1b`, `\x7f`, `\u{9b}`.
/// Backslashes stay as they are (argv often holds regexes and Windows paths).
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 && is_control(c) => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A writer that escapes everything written through it.
struct Escaping<'a>(&'a mut String);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.push_str(&escape_controls(s));
        Ok(())
    }
}

/// One line of terminal text: `args` formatted with every control escaped, then a newline.
pub fn write_line(out: &mut String, args: fmt::Arguments<'_>) {
    let _ = Escaping(out).write_fmt(args);
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_the_rest_kept() {
        assert_eq!(
            escape_controls("a\x1b[2J\nb\tc\r\x7f\u{9b}31m é \\x"),
            "a\\x1b[2J\\nb\\tc\\r\\x7f\\u{9b}31m é \\x"
        );
        assert!(matches!(escape_controls("plain → ok"), Cow::Borrowed(_)));
        let mut out = String::new();
        write_line(&mut out, format_args!("{:<6}|", "a\nb"));
        assert_eq!(out, "a\\nb   |\n");
    }
}
