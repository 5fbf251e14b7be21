//! Every line of tests/cgroup_paths.txt: a real-world cgroup path and what it must parse to.

use podlife_core::cgroup_path::{parse, Qos};

#[test]
fn corpus() {
    let text = include_str!("cgroup_paths.txt");
    let mut checked = 0;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.starts_with('#') && !l.trim().is_empty())
    {
        let (path, expected) = line
            .split_once(" | ")
            .unwrap_or_else(|| panic!("line {}: no ' | '", n + 1));
        let got = parse(path);
        if expected == "NONE" {
            assert_eq!(got, None, "line {}: {path} must not match", n + 1);
        } else {
            let want: Vec<&str> = expected.split(' ').collect();
            let p = got.unwrap_or_else(|| panic!("line {}: {path} did not parse", n + 1));
            let qos = match p.qos {
                Qos::Guaranteed => "guaranteed",
                Qos::Burstable => "burstable",
                Qos::BestEffort => "besteffort",
            };
            assert_eq!(qos, want[0], "line {}", n + 1);
            assert_eq!(p.pod_uid, want[1], "line {}", n + 1);
            assert_eq!(
                p.container_id.as_deref().unwrap_or("-"),
                want[2],
                "line {}",
                n + 1
            );
            assert_eq!(p.runtime.unwrap_or("-"), want[3], "line {}", n + 1);
        }
        checked += 1;
    }
    assert!(checked >= 20, "corpus too small: {checked}");
}
