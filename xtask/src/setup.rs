//! Machine set-up from Debian packages and crates.io only (docs/TOOLCHAIN.md).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

/// Everything building the agent needs beyond rustup's cargo: the one list `run` and `test`
/// both install (so the main job can never lack what CI has). The eBPF toolchain: rustc 1.96 on
/// LLVM 22 with a prebuilt bpf `core`; gcc and libc6-dev link the host binaries. Nothing else:
/// the CRI client is generated in Rust (userspace/cri), no protoc.
pub const BUILD_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "rustc-web",
    "cargo-web",
    "libstd-rust-web-dev-bpf",
    "gcc",
    "libc6-dev",
];

/// Debian packages the test suites use, on top of BUILD_PACKAGES.
const TEST_PACKAGES: &[&str] = &[
    "containerd",
    "runc",
    "containernetworking-plugins",
    "umoci",
    "busybox-static",
    "stress-ng",
    "prometheus",
    "bpftool",
    "util-linux",
    "python3-venv",
    "python3",
];

pub fn sh(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {shown}"))?;
    if !status.success() {
        bail!("{shown} failed: {status}");
    }
    Ok(())
}

/// Run a command and return its stdout; fails with its stderr.
pub fn output(cmd: &mut Command) -> Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn missing_packages(pkgs: &[&str]) -> Vec<String> {
    pkgs.iter()
        .filter(|p| {
            let out = Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output();
            !matches!(out, Ok(o) if String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .map(|p| p.to_string())
        .collect()
}

pub fn apt_install(pkgs: &[&str]) -> Result<()> {
    let missing = missing_packages(pkgs);
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: apt-get install {}", missing.join(" "));
    sh(Command::new("apt-get").args(["update", "-qq"]))?;
    sh(Command::new("apt-get")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-qq", "--no-install-recommends"])
        .args(&missing))
}

fn bpf_linker_ok() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// tracefs must be mounted for the programs' tracepoint formats and attachment.
pub fn mount_tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").is_dir() {
        return Ok(());
    }
    sh(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]))
}

/// What building and running the agent needs (`cargo xtask run`): BUILD_PACKAGES, bpf-linker,
/// tracefs.
pub fn toolchain() -> Result<()> {
    apt_install(BUILD_PACKAGES)?;
    if !bpf_linker_ok() {
        eprintln!("xtask: cargo install bpf-linker (LLVM 22, about 90 s once)");
        sh(Command::new("cargo")
            .env("LLVM_PREFIX", "/usr/lib/llvm-22")
            .args([
                "install",
                "bpf-linker@0.13.0",
                "--locked",
                "--no-default-features",
                "--features",
                "llvm-22",
            ]))?;
    }
    mount_tracefs()
}

pub fn all() -> Result<()> {
    toolchain()?;
    apt_install(TEST_PACKAGES)?;
    // The e2e suite runs `kubectl podlife` through a real kubectl: any kubectl already on PATH
    // (Debian's kubernetes-client conflicts with other packagings of it), else Debian's.
    if !Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        apt_install(&["kubernetes-client"])?;
    }
    Ok(())
}
