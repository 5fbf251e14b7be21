//! Pods made from cgroupfs alone, no runtime: the agent sees a PodAdmitted at the mkdir of
//! `kubepods/burstable/pod<uid>` in the unified hierarchy and a PodRemoved at its rmdir. Cheap
//! event churn for tests about the agent itself (store, API bounds), not about pods.

use std::path::PathBuf;

/// The cgroup v2 hierarchy the agent's programs report (hybrid node: the `unified` mount).
pub fn unified() -> PathBuf {
    for p in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        let p = PathBuf::from(p);
        if p.join("cgroup.procs").exists()
            && std::fs::metadata(p.join("cgroup.controllers")).is_ok()
        {
            return p;
        }
    }
    panic!("no cgroup v2 hierarchy at /sys/fs/cgroup/unified or /sys/fs/cgroup: mount one (mount -t cgroup2 none /sys/fs/cgroup/unified)")
}

/// Pod uids unique to this test process and `tag` (4 hex digits), numbered by `churn`.
pub fn uids(tag: &'static str) -> impl Fn(usize) -> String {
    move |i| format!("{:08x}-0000-4000-8000-{tag}{i:08x}", std::process::id())
}

/// Admit then remove `n` pods (mkdir + rmdir of their cgroups), uids from `uid_of`.
pub fn churn(n: usize, uid_of: impl Fn(usize) -> String) -> Vec<String> {
    let parent = unified().join("kubepods/burstable");
    std::fs::create_dir_all(&parent).unwrap_or_else(|e| panic!("{}: {e}", parent.display()));
    (0..n)
        .map(|i| {
            let uid = uid_of(i);
            let dir = parent.join(format!("pod{uid}"));
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            std::fs::remove_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            uid
        })
        .collect()
}
