//! `cargo xtask vm-e2e`: the e2e suite's pod scenarios in the kernel matrix's VMs (6.12 by
//! default: pure cgroup v2). The initramfs adds containerd, runc and the CNI plugins as the
//! host's Debian packages install them, the test images, and the few kernel modules Debian's
//! cloud kernels build as modules; /init runs each e2e test binary once per cgroup layout
//! (tests/src/layout.rs). The same test code as the host's `e2e` suite, only the kernel and the
//! layout differ. See docs/PORTABILITY.md.

use std::fs;
use std::path::Path;

use anyhow::{Context as _, Result};

use super::root;
use crate::initramfs::{Entry, Tree};

/// The cgroup layouts of tests/src/layout.rs.
pub(super) const LAYOUTS: &[&str] = &["cgroupfs", "systemd"];

/// The e2e test binaries the VMs run: the scenarios whose kernel evidence cgroup v2 and the
/// layout can change (cgroup paths and ids, OOM under memory.max and memory.oom.group, signals
/// of stops, exec sessions joining a container cgroup).
pub(super) const TESTS: &[&str] = &[
    "skeleton",
    "init_containers",
    "exec_probes",
    "graceful_stop",
    "ignored_sigterm",
    "oom_kills",
    "sandbox_removal",
];

/// Kernel modules the pods need that Debian's cloud kernels do not build in, in load order
/// (paths under lib/modules/<release>/kernel/): the bridge and veth of the CNI bridge plugin,
/// overlay for containerd's snapshotter.
pub(super) const MODULES: &[&str] = &[
    "net/llc/llc",
    "net/802/stp",
    "net/bridge/bridge",
    "drivers/net/veth",
    "fs/overlayfs/overlay",
];

/// Debian packages whose binaries go into the VM (tests/setup.sh installs them on the host).
const RUNTIME: &[&str] = &[
    "/usr/bin/containerd",
    "/usr/bin/containerd-shim-runc-v2",
    "/usr/bin/ctr",
    "/usr/sbin/runc",
    "/usr/lib/cni/bridge",
    "/usr/lib/cni/host-local",
    "/usr/lib/cni/loopback",
];

pub(super) const HELP: &str =
    "cargo xtask vm-e2e [--kernel SERIES]... [--layout cgroupfs|systemd]... [--test NAME]...
                   [--no-build] [--sequential] [--accel kvm|tcg] [--timeout SECONDS]

Runs the e2e suite's pod scenarios (real containerd + runc pods through the CRI, the release
agent) in qemu on Debian's 6.12 cloud kernel (pure cgroup v2), in both cgroup layouts.
  --kernel SERIES   6.12 (default) and/or 6.1 (hybrid cgroups); repeatable
  --layout L        cgroupfs (/kubepods/burstable/pod<uid>/<id>) or systemd
                    (/kubepods.slice/.../cri-containerd-<id>.scope); repeatable, default both
  --test NAME       only this e2e test binary (skeleton, oom_kills, ...); repeatable
  --no-build        reuse the binaries of the last build (no cargo invocation)
  --sequential      one VM at a time (default: all at once)
  --accel kvm|tcg   force the accelerator (see docs/PORTABILITY.md)
  --timeout SECS    per VM, default 1800
";

/// The test runs /init reports: every binary in every layout, `<binary>@<layout>`.
pub(super) fn expected(names: impl Iterator<Item = String>, layouts: &[String]) -> Vec<String> {
    let names: Vec<String> = names.collect();
    layouts
        .iter()
        .flat_map(|l| names.iter().map(move |n| format!("{n}@{l}")))
        .collect()
}

/// What /init reads from the kernel command line.
pub(super) fn cmdline(layouts: &[String]) -> String {
    format!(" podlife.suite=e2e podlife.layouts={}", layouts.join(","))
}

/// containerd, runc, the CNI plugins, the images, the modules of each kernel
/// (`modules/<release>/` under each kernel's cache dir) and the files containerd copies into
/// pods.
pub(super) fn add_to_initramfs(
    tree: &mut Tree,
    scratch: &Path,
    module_dirs: &[&Path],
) -> Result<()> {
    for bin in RUNTIME {
        let p = Path::new(bin);
        if !p.exists() {
            anyhow::bail!("{bin} is missing: run `bash tests/setup.sh` (installs containerd, runc and the CNI plugins)");
        }
        tree.binary(bin, p, scratch)?;
    }
    let images = root().join("tests/.work/images");
    for name in ["pause", "busybox", "memhog", "crasher"] {
        let tar = images.join(format!("{name}.tar"));
        let data = fs::read(&tar)
            .with_context(|| format!("{}: run `bash tests/setup.sh` first", tar.display()))?;
        tree.file(&format!("images/{name}.tar"), data, 0o644);
    }
    for dir in module_dirs {
        for release in fs::read_dir(dir).with_context(|| dir.display().to_string())? {
            let release = release?.path();
            let rel = release.file_name().unwrap().to_string_lossy().into_owned();
            for m in fs::read_dir(&release)? {
                let m = m?.path();
                let name = m.file_name().unwrap().to_string_lossy().into_owned();
                tree.file(&format!("lib/modules/{rel}/{name}"), fs::read(&m)?, 0o644);
            }
        }
    }
    // containerd copies the node's resolv.conf into every pod with its own network.
    tree.file("etc/resolv.conf", Vec::new(), 0o644);
    tree.file("etc/hosts", b"127.0.0.1 localhost\n".to_vec(), 0o644);
    for d in ["var/lib", "var/run", "usr/lib/cni"] {
        tree.put(d, Entry::Dir);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_binary_runs_in_every_layout() {
        let layouts = vec!["cgroupfs".to_string(), "systemd".to_string()];
        let names = ["skeleton".to_string(), "oom_kills".to_string()].into_iter();
        assert_eq!(
            expected(names, &layouts),
            [
                "skeleton@cgroupfs",
                "oom_kills@cgroupfs",
                "skeleton@systemd",
                "oom_kills@systemd"
            ]
        );
        assert_eq!(
            cmdline(&layouts),
            " podlife.suite=e2e podlife.layouts=cgroupfs,systemd"
        );
    }
}
