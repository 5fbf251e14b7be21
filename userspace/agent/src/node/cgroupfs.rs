//! Where the cgroup hierarchies are mounted, and cgroup ids (inode numbers) of directories.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Mount points of the hierarchies podlife reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupMounts {
    /// cgroup v2 (unified) mount, if any.
    pub v2: Option<PathBuf>,
    /// cgroup v1 memory controller mount, if any.
    pub v1_memory: Option<PathBuf>,
}

impl CgroupMounts {
    /// Parse /proc/self/mountinfo text.
    pub fn from_mountinfo(text: &str) -> Self {
        let mut m = Self::default();
        for line in text.lines() {
            // id parent maj:min root mountpoint opts ... - fstype source superopts
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let mount_point = left.split(' ').nth(4).unwrap_or("");
            let mut r = right.split(' ');
            let fstype = r.next().unwrap_or("");
            let superopts = r.nth(1).unwrap_or("");
            if fstype == "cgroup2" && m.v2.is_none() {
                m.v2 = Some(PathBuf::from(mount_point));
            } else if fstype == "cgroup" && superopts.split(',').any(|o| o == "memory") {
                m.v1_memory = Some(PathBuf::from(mount_point));
            }
        }
        m
    }

    pub fn discover() -> Self {
        std::fs::read_to_string("/proc/self/mountinfo")
            .map(|t| Self::from_mountinfo(&t))
            .unwrap_or_default()
    }

    /// The hierarchy id whose cgroup events the programs report: 0 for v2, otherwise the
    /// memory controller's v1 hierarchy (from /proc/cgroups).
    pub fn event_root(&self) -> u32 {
        if self.v2.is_some() {
            return 0;
        }
        std::fs::read_to_string("/proc/cgroups")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with("memory\t"))
                    .and_then(|l| l.split('\t').nth(1).and_then(|v| v.parse().ok()))
            })
            .unwrap_or(0)
    }
}

/// cgroup id of a directory: its inode number in cgroupfs.
pub fn cgroup_id(dir: &Path) -> Option<u64> {
    std::fs::metadata(dir).ok().map(|m| m.ino())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hybrid_mountinfo() {
        let text = "\
35 25 0:30 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
40 35 0:35 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 35 0:36 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
45 35 0:40 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";
        let m = CgroupMounts::from_mountinfo(text);
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup/unified")));
        assert_eq!(
            m.v1_memory.as_deref(),
            Some(Path::new("/sys/fs/cgroup/memory"))
        );
        assert_eq!(m.event_root(), 0);
    }

    #[test]
    fn pure_v2() {
        let m = CgroupMounts::from_mountinfo(
            "30 1 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate",
        );
        assert_eq!(m.v2.as_deref(), Some(Path::new("/sys/fs/cgroup")));
        assert_eq!(m.v1_memory, None);
    }
}
