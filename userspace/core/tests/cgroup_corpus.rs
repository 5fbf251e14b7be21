//! Every line of tests/cgroup_paths.txt: a real-world cgroup path and what it must parse to.

use podlife_core::cgroup_path::{parse, Level};

#[test]
fn corpus() {
    let text = include_str!("cgroup_paths.txt");
    let (mut matched, mut rejected) = (0, 0);
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
    {
        let n = n + 1;
        let (path, expected) = line
            .split_once(" | ")
            .unwrap_or_else(|| panic!("line {n}: no ' | '"));
        let got = parse(path);
        if expected == "NONE" {
            assert_eq!(got, None, "line {n}: {path} must not match");
            rejected += 1;
            continue;
        }
        let want: Vec<&str> = expected.split(' ').collect();
        assert_eq!(want.len(), 5, "line {n}: five expected fields");
        let p = got.unwrap_or_else(|| panic!("line {n}: {path} did not parse"));
        let level = match p.level {
            Level::Pod => "pod",
            Level::Container => "container",
            Level::Other => "other",
        };
        let got_fields = [
            p.qos.as_str(),
            p.pod_uid.as_str(),
            p.container_id.as_deref().unwrap_or("-"),
            p.runtime.unwrap_or("-"),
            level,
        ];
        assert_eq!(got_fields.as_slice(), want.as_slice(), "line {n}: {path}");
        matched += 1;
    }
    assert!(
        matched >= 25 && rejected >= 15,
        "corpus too small: {matched}/{rejected}"
    );
}
