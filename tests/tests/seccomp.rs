//! The DaemonSet's seccomp choice, checked on this node's runtime: the agent runs in a real
//! runc container under containerd's default seccomp profile (what `RuntimeDefault` means)
//! with CAP_BPF and CAP_PERFMON and no CAP_SYS_ADMIN, and `podlife check` loads and attaches
//! every program. Without CAP_BPF the same container fails at the load, with its message: the
//! profile lets bpf() through because of the capability, as the manifest's comment says.

use std::path::Path;
use std::process::Command;

use podlife_e2e::agent::agent_bin;
use podlife_e2e::Kubelet;

/// A root filesystem holding only the agent and the shared libraries it links.
fn agent_rootfs(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
    for d in ["bin", "tmp", "run", "var/lib/podlife", "proc", "sys"] {
        std::fs::create_dir_all(dir.join(d)).expect("rootfs dir");
    }
    std::fs::copy(agent_bin(), dir.join("bin/podlife")).expect("copy the agent");
    let ldd = Command::new("ldd").arg(agent_bin()).output().expect("ldd");
    for lib in String::from_utf8_lossy(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let to = dir.join(lib.trim_start_matches('/'));
        std::fs::create_dir_all(to.parent().expect("lib dir")).expect("lib dir");
        std::fs::copy(lib, &to).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
    }
}

/// `podlife check` in a container under the runtime's default seccomp profile.
fn check_in_container(k: &Kubelet, rootfs: &Path, id: &str, caps: &[&str]) -> (bool, String) {
    let mut args = vec!["run", "--rootfs", "--net-host", "--seccomp", "--rm"];
    for c in caps {
        args.extend(["--cap-add", c]);
    }
    let mounts = [
        "type=bind,src=/sys/kernel/tracing,dst=/sys/kernel/tracing,options=rbind:ro",
        "type=bind,src=/sys/fs/cgroup,dst=/sys/fs/cgroup,options=rbind:ro",
    ];
    for m in &mounts {
        args.extend(["--mount", m]);
    }
    let root = rootfs.to_str().expect("utf-8 path");
    args.extend([root, id, "/bin/podlife", "check"]);
    let out = k.containerd.ctr(&args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_agent_loads_under_the_runtimes_default_seccomp_profile_with_cap_bpf_and_perfmon() {
    let k = Kubelet::start();
    let rootfs = k.containerd.dir.join("agent-rootfs");
    agent_rootfs(&rootfs);

    let (ok, out) = check_in_container(&k, &rootfs, "seccomp-ok", &["CAP_BPF", "CAP_PERFMON"]);
    assert!(
        ok,
        "podlife check failed under the default seccomp profile:\n{out}"
    );
    assert!(
        out.contains("programs loaded and attached"),
        "the programs were not attached:\n{out}"
    );
    // The capabilities the agent had, from its own report: no CAP_SYS_ADMIN (bit 21), which
    // would let bpf() through any profile.
    let cap_eff = out
        .split("CapEff 0x")
        .nth(1)
        .and_then(|r| u64::from_str_radix(r.split(')').next()?, 16).ok())
        .unwrap_or_else(|| panic!("no CapEff in the report:\n{out}"));
    assert_eq!(cap_eff & (1 << 21), 0, "CAP_SYS_ADMIN was present:\n{out}");
    assert_ne!(cap_eff & (1 << 39), 0, "CAP_BPF was missing:\n{out}");

    let (ok, out) = check_in_container(&k, &rootfs, "seccomp-no-bpf", &["CAP_PERFMON"]);
    assert!(!ok, "the agent loaded without CAP_BPF:\n{out}");
    assert!(
        out.contains("FAIL  ebpf") && out.contains("CAP_BPF"),
        "without CAP_BPF the check must fail at the load and say what to do:\n{out}"
    );
}
