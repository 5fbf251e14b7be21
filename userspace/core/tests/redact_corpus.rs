//! Real-world command lines (redact_corpus.jsonl), each must-keep (served unchanged) or
//! must-redact (none of its secrets left, and exactly the expected output). Every failing
//! line is reported, not just the first.

use podlife_core::redact::{redact_argv, MAX_ARG_BYTES, MAX_OUTPUT_BYTES};
use serde_json::Value;

fn strings(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_string))
        .collect()
}

#[test]
fn corpus() {
    let text = include_str!("redact_corpus.jsonl");
    let (mut keep, mut redact) = (0, 0);
    let mut failures = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let n = n + 1;
        let entry: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("line {n}: not JSON: {e}"));
        let argv = strings(&entry["argv"]).unwrap_or_else(|| panic!("line {n}: no argv"));
        let why = entry["why"].as_str().unwrap_or("");
        let got = redact_argv(&argv);
        let shown = serde_json::to_string(&got).unwrap_or_default();
        let mut fail =
            |what: String| failures.push(format!("line {n} ({why}): {what}\n    got {shown}"));
        if entry["keep"] == true {
            keep += 1;
            if got != argv {
                fail("must be kept unchanged".into());
            }
        } else {
            redact += 1;
            let gone = strings(&entry["gone"]).unwrap_or_default();
            if gone.is_empty() {
                fail("a must-redact line names no secret".into());
            }
            for secret in &gone {
                if got.iter().any(|a| a.contains(secret.as_str())) {
                    fail(format!("leaks {secret:?}"));
                }
            }
            match strings(&entry["want"]) {
                Some(want) if want != got => fail(format!(
                    "want {}",
                    serde_json::to_string(&want).unwrap_or_default()
                )),
                Some(_) => {}
                None => fail("no \"want\"".into()),
            }
        }
        if redact_argv(&got) != got {
            fail("redacting again changes it".into());
        }
        if got.iter().any(|a| a.len() > MAX_ARG_BYTES)
            || got.iter().map(String::len).sum::<usize>() > MAX_OUTPUT_BYTES
        {
            fail("over the bounds".into());
        }
    }
    assert!(
        keep >= 30 && redact >= 50,
        "corpus too small: {keep} + {redact}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} corpus lines fail ({keep} must-keep, {redact} must-redact):\n{}",
        failures.len(),
        keep + redact,
        failures.join("\n")
    );
}
