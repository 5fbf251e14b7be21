use super::*;

fn v(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn r(a: &[&str]) -> Vec<String> {
    redact_argv(&v(a))
}

#[test]
fn secrets_are_hidden_and_the_rest_kept() {
    assert_eq!(
        r(&[
            "app",
            "--password=hunter2",
            "--token",
            "abc",
            "--port=80",
            "DB_PASSWORD=x",
            "--api-key",
            "k",
            "-v"
        ]),
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
        r(&["psql", "postgres://bob:s3cret@db:5432/x"]),
        v(&["psql", "postgres://bob:<redacted>@db:5432/x"])
    );
    assert_eq!(r(&["sh", "-c", "exit 1"]), v(&["sh", "-c", "exit 1"]));
}

#[test]
fn short_options_by_program() {
    assert_eq!(
        r(&["mysql", "-u", "root", "-phunter2"]),
        v(&["mysql", "-u", "root", "-p<redacted>"])
    );
    // `-p` then a word: mysql prompts, the word is a database.
    assert_eq!(r(&["mysql", "-p", "shop"]), v(&["mysql", "-p", "shop"]));
    assert_eq!(
        r(&["redis-cli", "-a", "hunter2", "ping"]),
        v(&["redis-cli", "-a", "<redacted>", "ping"])
    );
    assert_eq!(
        r(&["sshpass", "-p", "x", "ssh", "host"]),
        v(&["sshpass", "-p", "<redacted>", "ssh", "host"])
    );
    assert_eq!(
        r(&["curl", "-u", "admin:pw", "http://x/"]),
        v(&["curl", "-u", "admin:<redacted>", "http://x/"])
    );
    // Elsewhere `-p` is a port.
    assert_eq!(
        r(&["nc", "-p", "8080", "-l"]),
        v(&["nc", "-p", "8080", "-l"])
    );
    assert_eq!(
        r(&["redis-cli", "-p", "6379", "ping"]),
        v(&["redis-cli", "-p", "6379", "ping"])
    );
}

#[test]
fn scripts_are_walked_and_stay_readable() {
    assert_eq!(
        r(&["sh", "-c", "x=1; mysql --password=hunter2 -e 'select 1'"]),
        v(&["sh", "-c", "x=1; mysql --password=<redacted> -e 'select 1'"])
    );
    assert_eq!(
        r(&["sh", "-c", "PGPASSWORD=x psql -c 'select 1'"]),
        v(&["sh", "-c", "PGPASSWORD=<redacted> psql -c 'select 1'"])
    );
    assert_eq!(
        r(&[
            "sh",
            "-c",
            "curl -fsS -H 'Authorization: Bearer abc123' http://localhost/healthz"
        ]),
        v(&[
            "sh",
            "-c",
            "curl -fsS -H 'Authorization: Bearer <redacted>' http://localhost/healthz"
        ])
    );
    assert_eq!(
        r(&["bash", "-c", "bash -c \"redis-cli -a 'p w' ping\""]),
        v(&["bash", "-c", "bash -c \"redis-cli -a '<redacted>' ping\""])
    );
}

#[test]
fn bounded() {
    let long = "é".repeat(5000);
    let out = redact_argv(&vec![long; 100]);
    assert_eq!(out.len(), MAX_ARGS);
    assert!(out
        .iter()
        .all(|a| a.len() <= MAX_ARG_BYTES && a.ends_with(CUT)));
    assert!(out.iter().map(String::len).sum::<usize>() <= MAX_OUTPUT_BYTES);
    // Short secrets grow into markers: still within the bound.
    let script = r(&["sh", "-c", &format!("mysql {}", "-p1 ".repeat(200))]);
    assert!(script[2].len() <= MAX_ARG_BYTES, "{}", script[2].len());
    assert_eq!(redact_argv(&script), script);
}

#[test]
fn cut_never_splits_a_marker_and_is_stable() {
    for pad in 230..260 {
        let arg = format!("{}--password=hunter2 x", "a".repeat(pad));
        let once = r(&["app", &arg]);
        assert!(once[1].len() <= MAX_ARG_BYTES);
        assert!(!once[1].contains("hunter2"), "{}", once[1]);
        assert_eq!(redact_argv(&once), once, "pad {pad}");
    }
}

#[test]
fn extra_patterns() {
    let p: ExtraPatterns = "cust-[0-9]{4,}".parse().unwrap();
    let red = Redactor::new(vec![p]);
    assert_eq!(
        red.redact_argv(&v(&["app", "--id=cust-12345"])),
        v(&["app", "--id=<redacted>"])
    );
}

#[test]
fn a_cut_word_moves_the_walk_like_the_whole_word() {
    // A long word with a space and an `=` after `vault login` was cut into something shaped
    // like an option; the second pass then took the next word for the login token.
    let input = include_bytes!("../../../../fuzz/regressions/redact/cut-word-turns-into-an-option");
    let argv = fuzz_argv(input);
    let once = redact_argv(&argv);
    assert_eq!(once[3], argv[3]);
    assert_eq!(redact_argv(&once), once);
}

#[test]
fn a_url_cut_inside_its_authority_is_left_as_judged() {
    // The userinfo of a long URL ends at its last `@`, past the cut: the cut URL's last `@`
    // is an earlier one, which the second pass took for the end of a token user.
    let input = include_bytes!("../../../../fuzz/regressions/redact/url-cut-inside-the-authority");
    let argv = fuzz_argv(input);
    let once = redact_argv(&argv);
    assert!(!once[0].contains("p@ss"), "{}", once[0]);
    assert_eq!(redact_argv(&once), once);
}

#[test]
fn a_cut_word_that_named_the_program() {
    // A long word with a tab ending in `/bin/sh` made `-scbc` a shell's `-c`; cut at the tab
    // it looked like an option, and the second pass redacted the `-pass` the script took.
    let input = include_bytes!("../../../../fuzz/regressions/redact/cut-word-loses-its-program");
    let argv = fuzz_argv(input);
    let once = redact_argv(&argv);
    assert_eq!(redact_argv(&once), once);
}

#[test]
fn a_requoted_script_word_is_redacted_to_a_fixpoint() {
    // Quote soup in `sh -c` scripts: a word written back with its quotes read differently the
    // second time. A changed argument is now redacted again until nothing changes.
    let input = include_bytes!(
        "../../../../fuzz/regressions/redact/requoted-script-word-reads-differently"
    );
    let argv = fuzz_argv(input);
    let once = redact_argv(&argv);
    assert_eq!(redact_argv(&once), once);
}

/// A fuzz input as the `redact` target reads it: arguments separated by NUL bytes.
fn fuzz_argv(input: &[u8]) -> Vec<String> {
    input
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}
