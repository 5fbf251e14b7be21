//! What existed before the agent started: pod cgroups from cgroupfs, processes from /proc.
//! Scanning is plain file reading; the engine decides what the findings mean.

use std::path::{Path, PathBuf};

use crate::node::cgroupfs::cgroup_id;
use crate::node::proc_argv;

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
    /// Only of processes in pod cgroups, bounded ([`read_pod_argv`]); empty for the others.
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

/// All processes (thread group leaders) in /proc: stat and cgroup, not argv (a tenant's size:
/// see [`read_pod_argv`]).
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
                argv: Vec::new(),
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

/// Read the argv of the processes in pod cgroups (`in_pod`, decided by their cgroup path after
/// [`place_by_cgroupfs`]), bounded as the kernel capture bounds it. Host processes are not read:
/// their argv is never used.
pub fn read_pod_argv(
    procs: &mut [FoundProcess],
    proc_root: &Path,
    in_pod: impl Fn(&FoundProcess) -> bool,
) {
    for p in procs.iter_mut().filter(|p| in_pod(p)) {
        if let Some(b) = proc_argv::read(&proc_root.join(p.tgid.to_string())) {
            p.argv = b.args;
        }
    }
}

/// The node's kubepods root, from the cgroup the agent itself runs in (its DaemonSet pod's
/// container, placed by the runtime, not by a tenant). None when the agent is not in a pod
/// cgroup: then the first kubepods root of each path anchors.
pub fn node_root(procs: &[FoundProcess]) -> Option<String> {
    let me = std::process::id();
    let own = procs
        .iter()
        .find(|p| p.tgid == me)?
        .cgroup_path
        .as_deref()?;
    podlife_core::cgroup_path::node_root(own)
}

impl FoundProcess {
    /// Heap and inline bytes this record holds (for the memory budget of a scan).
    pub fn retained_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.comm.capacity()
            + self.cgroup_path.as_ref().map_or(0, String::capacity)
            + self.argv.capacity() * std::mem::size_of::<String>()
            + self.argv.iter().map(String::capacity).sum::<usize>()
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
        assert!(mine.argv.is_empty(), "argv is read only for pod processes");
        let mut found = found;
        read_pod_argv(&mut found, Path::new("/proc"), |p| p.tgid == me);
        let mine = found.iter().find(|p| p.tgid == me).unwrap();
        assert!(!mine.argv.is_empty());
    }

    /// A tenant's process with ~2 MB of argv and 50 forked children sharing it (copy-on-write,
    /// free for the tenant): what a scan keeps of them stays within a small budget even when
    /// they are in a pod. Reading whole cmdlines, as before, kept ~1.9 MB per process.
    #[test]
    fn big_argv_process_tree_stays_within_budget() {
        use std::os::unix::process::CommandExt;
        const CHILDREN: usize = 50;
        // MAX_ARG_STRLEN is 128 KiB per argument; argv + envp must fit in ARG_MAX.
        // SAFETY: sysconf has no preconditions.
        let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) }.max(0) as usize;
        let env: usize = std::env::vars_os()
            .map(|(k, v)| k.len() + v.len() + 2 + 8)
            .sum();
        let n_args = (arg_max.saturating_sub(env + 64 * 1024) / 131_080).min(15);
        assert!(n_args >= 8, "ARG_MAX {arg_max} too small for the test");
        let big = "x".repeat(131_000);
        let script =
            format!("i=0; while [ $i -lt {CHILDREN} ]; do (sleep 60; :) & i=$((i+1)); done; wait");
        let mut child = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script)
            .arg("podlife-bigargv")
            .args(vec![&big; n_args])
            .process_group(0)
            .spawn()
            .expect("spawn /bin/sh with big argv");
        let root = child.id();
        let kill = || {
            // SAFETY: kill of the process group this test made (process_group(0) above).
            unsafe { libc::kill(-(root as i32), libc::SIGKILL) };
        };
        // The parent and its forked subshells carry the big argv; their `sleep`s do not.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let tree = loop {
            let procs = scan_processes(Path::new("/proc"), None);
            let tree: Vec<u32> = procs
                .iter()
                .filter(|p| p.tgid == root || (p.ppid == root && p.comm == "sh"))
                .map(|p| p.tgid)
                .collect();
            if tree.len() > CHILDREN {
                break tree;
            }
            if std::time::Instant::now() > deadline {
                kill();
                let _ = child.wait();
                panic!("only {} of {CHILDREN} children started", tree.len() - 1);
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        // Before: the whole cmdline of every process was read and kept.
        let unbounded: usize = tree
            .iter()
            .filter_map(|t| std::fs::read(format!("/proc/{t}/cmdline")).ok())
            .map(|b| b.len())
            .sum();
        // Now, even with all of them taken for pod processes (the worst case).
        let mut procs = scan_processes(Path::new("/proc"), None);
        let host_argv: usize = procs.iter().map(|p| p.argv.len()).sum();
        read_pod_argv(&mut procs, Path::new("/proc"), |p| tree.contains(&p.tgid));
        let kept: Vec<&FoundProcess> = procs.iter().filter(|p| tree.contains(&p.tgid)).collect();
        let retained: usize = kept.iter().map(|p| p.retained_bytes()).sum();
        kill();
        let _ = child.wait();
        eprintln!(
            "{} processes with {n_args}x131000 B argv: whole cmdlines {unbounded} B, bootstrap retains {retained} B",
            tree.len()
        );
        assert_eq!(host_argv, 0, "argv read for processes outside pods");
        use podlife_common::{ARGV_LEN, ARG_LEN};
        assert_eq!(kept.len(), tree.len());
        for p in &kept {
            assert!(p.argv.iter().map(|a| a.len() + 1).sum::<usize>() <= ARGV_LEN);
            assert!(p.argv.iter().all(|a| a.len() < ARG_LEN));
            assert_eq!(
                p.argv.get(4).map(String::len),
                Some(ARG_LEN - 1),
                "{:?}",
                p.argv
            );
        }
        let budget = tree.len() * 2048;
        assert!(
            retained <= budget,
            "{retained} B retained for {} processes, budget {budget} B",
            tree.len()
        );
        assert!(
            unbounded > 100 * budget,
            "the tree is not big: {unbounded} B"
        );
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
