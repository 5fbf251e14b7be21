//! What existed before the agent started: pod cgroups from cgroupfs, processes from /proc.
//! Scanning is plain file reading; the engine decides what the findings mean.

use std::path::{Path, PathBuf};

use crate::cgroupfs::cgroup_id;

/// A kubepods cgroup directory found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCgroup {
    pub id: u64,
    /// Path relative to the hierarchy root, as the kernel reports it (`/kubepods/...`).
    pub path: String,
}

/// A process found at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundProcess {
    pub tgid: u32,
    pub ppid: u32,
    pub comm: String,
    pub argv: Vec<String>,
    /// v2 path from /proc/<pid>/cgroup (`0::/...`), if any.
    pub cgroup_path: Option<String>,
    pub cgroup_id: Option<u64>,
    /// Start time in clock ticks since boot (field 22 of stat).
    pub start_ticks: u64,
}

/// Every directory under `root` whose path contains "kubepods", depth-first, parents first.
pub fn scan_cgroups(root: &Path) -> Vec<FoundCgroup> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let path = e.path();
            let rel = format!("/{}", path.strip_prefix(root).unwrap_or(&path).display());
            if rel.contains("kubepods") {
                if let Some(id) = cgroup_id(&path) {
                    out.push(FoundCgroup {
                        id,
                        path: rel.clone(),
                    });
                }
            }
            // Only descend where a kubepods hierarchy can be: bounded work on busy hosts.
            if out.len() < 100_000 && rel.split('/').count() < 12 {
                stack.push(path);
            }
        }
    }
    out.sort_by_key(|c| c.path.matches('/').count());
    out
}

/// Parse /proc/<pid>/stat: (comm, ppid, start_ticks). comm may hold spaces and parens.
pub fn parse_stat(text: &str) -> Option<(String, u32, u64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text.get(open + 1..close)?.to_string();
    let fields: Vec<&str> = text.get(close + 2..)?.split(' ').collect();
    // After comm: state(0) ppid(1) ... starttime is field 22 overall → index 19 here.
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((comm, ppid, start))
}

/// The cgroup v2 path of a process from /proc/<pid>/cgroup text.
pub fn parse_v2_cgroup(text: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
}

/// All processes (thread group leaders) in /proc.
pub fn scan_processes(proc_root: &Path, v2_root: Option<&Path>) -> Vec<FoundProcess> {
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|tgid| {
            let dir: PathBuf = proc_root.join(tgid.to_string());
            let (comm, ppid, start_ticks) =
                parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)?;
            let argv = std::fs::read(dir.join("cmdline"))
                .map(|b| {
                    b.split(|&c| c == 0)
                        .filter(|a| !a.is_empty())
                        .map(|a| String::from_utf8_lossy(a).into_owned())
                        .collect()
                })
                .unwrap_or_default();
            // In a cgroup namespace (the agent in a pod on cgroup v2) paths outside the
            // namespace root read `/../..`: not a host path, filled from cgroupfs instead.
            let cgroup_path = std::fs::read_to_string(dir.join("cgroup"))
                .ok()
                .and_then(|t| parse_v2_cgroup(&t))
                .filter(|p| !p.starts_with("/.."));
            let cgroup_id = match (&cgroup_path, v2_root) {
                (Some(p), Some(root)) => cgroup_id(&root.join(p.trim_start_matches('/'))),
                _ => None,
            };
            Some(FoundProcess {
                tgid,
                ppid,
                comm,
                argv,
                cgroup_path,
                cgroup_id,
                start_ticks,
            })
        })
        .collect()
}

/// Place processes by the `cgroup.procs` of the kubepods cgroups found under `v2_root`: the
/// host's view whatever cgroup namespace the agent runs in. Overrides /proc's answer, which is
/// namespace-relative.
pub fn place_by_cgroupfs(procs: &mut [FoundProcess], cgroups: &[FoundCgroup], v2_root: &Path) {
    let mut by_tgid = std::collections::HashMap::new();
    for c in cgroups {
        let file = v2_root
            .join(c.path.trim_start_matches('/'))
            .join("cgroup.procs");
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for tgid in text.lines().filter_map(|l| l.trim().parse::<u32>().ok()) {
            by_tgid.insert(tgid, c);
        }
    }
    for p in procs {
        if let Some(c) = by_tgid.get(&p.tgid) {
            p.cgroup_path = Some(c.path.clone());
            p.cgroup_id = Some(c.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_odd_comm() {
        let stat = "12165 (runc:[2:INIT] (x)) S 12106 12165 12165 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 154690 1 2 3";
        let (comm, ppid, start) = parse_stat(stat).unwrap();
        assert_eq!(comm, "runc:[2:INIT] (x)");
        assert_eq!(ppid, 12106);
        assert_eq!(start, 154690);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn v2_line_of_hybrid_node() {
        let text = "12:memory:/kubepods/burstable/podx/abc\n1:name=systemd:/\n0::/kubepods/burstable/podx/abc\n";
        assert_eq!(
            parse_v2_cgroup(text).as_deref(),
            Some("/kubepods/burstable/podx/abc")
        );
        assert_eq!(parse_v2_cgroup("4:cpu:/\n"), None);
    }

    #[test]
    fn scans_this_machines_proc() {
        let me = std::process::id();
        let found = scan_processes(Path::new("/proc"), None);
        let mine = found
            .iter()
            .find(|p| p.tgid == me)
            .expect("own process in /proc");
        assert!(!mine.argv.is_empty());
    }

    #[test]
    fn namespaced_paths_are_placed_from_cgroupfs() {
        let root = std::env::temp_dir().join(format!("podlife-place-{}", std::process::id()));
        let pod = "/kubepods/burstable/pod1b6e7f0a-3c2d-4e5f-8a9b-0c1d2e3f4a5b/abc";
        std::fs::create_dir_all(root.join(pod.trim_start_matches('/'))).unwrap();
        std::fs::write(
            root.join(pod.trim_start_matches('/')).join("cgroup.procs"),
            "41\n42\n",
        )
        .unwrap();
        // What /proc/<pid>/cgroup says to an agent in another pod's cgroup namespace.
        let seen = "0::/../../../burstable/pod1b6e7f0a-3c2d-4e5f-8a9b-0c1d2e3f4a5b/abc\n";
        let path = parse_v2_cgroup(seen).filter(|p| !p.starts_with("/.."));
        let proc_of = |tgid| FoundProcess {
            tgid,
            ppid: 1,
            comm: "sh".into(),
            argv: vec![],
            cgroup_path: path.clone(),
            cgroup_id: None,
            start_ticks: 0,
        };
        let mut procs = vec![proc_of(42), proc_of(43)];
        let cgroups = [FoundCgroup {
            id: 7,
            path: pod.into(),
        }];
        place_by_cgroupfs(&mut procs, &cgroups, &root);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(procs[0].cgroup_path.as_deref(), Some(pod));
        assert_eq!(procs[0].cgroup_id, Some(7));
        assert_eq!(procs[1].cgroup_path, None, "not in any pod cgroup");
    }
}
