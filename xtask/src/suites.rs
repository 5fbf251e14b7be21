//! The test suites and the agent runner.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::setup::{self, sh};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Where cargo puts builds: `CARGO_TARGET_DIR` when set (shared machines give each worktree its
/// own), else target/ at the root.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(root());
    c
}

pub fn run_agent(args: &[String]) -> Result<()> {
    sh(cargo().args(["build", "--release", "-p", "podlife"]))?;
    let bin = target_dir().join("release/podlife");
    eprintln!("xtask: starting {} {}", bin.display(), args.join(" "));
    sh(Command::new(bin).args(args))
}

pub fn lint() -> Result<()> {
    sh(cargo().args(["fmt", "--all", "--check"]))?;
    // The eBPF crate builds on the host too (std, empty main), so one pass lints everything;
    // its bpf build is checked by the agent's build.rs.
    sh(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))
}

pub fn unit() -> Result<()> {
    // Everything that needs no root: the engine (with its replay fixtures), the ABI, xtask,
    // the agent's own unit tests and its --kube-api test against a protocol-level stand-in of
    // the API server (its other integration tests are the kernel suite).
    sh(cargo().args([
        "test",
        "--workspace",
        "--exclude",
        "podlife-e2e",
        "--exclude",
        "podlife",
    ]))?;
    sh(cargo().args([
        "test", "-p", "podlife", "--lib", "--bins", "--test", "kube_api",
    ]))
}

fn require_root(suite: &str) -> Result<()> {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc_getuid() } != 0 {
        bail!("the {suite} suite needs root (it loads eBPF programs / runs containerd): run it as root");
    }
    Ok(())
}

extern "C" {
    #[link_name = "getuid"]
    fn libc_getuid() -> u32;
}

pub fn kernel() -> Result<()> {
    require_root("kernel")?;
    setup::mount_tracefs()?;
    sh(cargo().args(["test", "-p", "podlife", "--tests", "--", "--test-threads=1"]))
}

pub fn e2e() -> Result<()> {
    require_root("e2e")?;
    // The kubectl plugin's test runs the plugin beside the agent it finds.
    sh(cargo().args([
        "build",
        "--release",
        "-p",
        "podlife",
        "-p",
        "kubectl-podlife",
    ]))?;
    sh(Command::new("bash")
        .arg(root().join("tests/run.sh"))
        .current_dir(root()))
}

pub fn bench(args: &[String]) -> Result<()> {
    require_root("bench")?;
    setup::mount_tracefs()?;
    sh(cargo().args(["build", "--release", "-p", "podlife", "-p", "podlife-bench"]))?;
    sh(Command::new(target_dir().join("release/podlife-bench")).args(args))
}

/// promtool checks and unit tests of the alert rules, and the dashboard's queries.
pub fn dashboards() -> Result<()> {
    sh(Command::new("bash").arg(root().join("dashboards/check.sh")))
}

/// The manifests against the Kubernetes OpenAPI schemas (offline).
pub fn deploy() -> Result<()> {
    sh(Command::new("bash").arg(root().join("deploy/validate.sh")))
}

/// The kernel suite on the other kernels of the matrix (docs/PORTABILITY.md).
pub fn vm() -> Result<()> {
    require_root("vm")?;
    crate::vm::run(&[], crate::vm::Suite::Kernel)
}

/// The e2e suite's pod scenarios in the 6.12 VM, both cgroup layouts (docs/PORTABILITY.md).
pub fn vm_e2e() -> Result<()> {
    require_root("vm-e2e")?;
    crate::vm::run(&[], crate::vm::Suite::E2e)
}

type Suite = (&'static str, fn() -> Result<()>);

/// Every suite, in order of cost; stops at the first failure.
pub fn all() -> Result<()> {
    setup::all()?;
    let suites: [Suite; 9] = [
        ("lint", lint),
        ("unit", unit),
        ("fuzz", crate::fuzz::suite),
        ("kernel", kernel),
        ("e2e", e2e),
        // After e2e, whose release build it shares.
        ("vm", vm),
        ("vm-e2e", vm_e2e),
        ("dashboards", dashboards),
        ("deploy", deploy),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, suite) in suites {
        let t = Instant::now();
        eprintln!("\n===== xtask: {name} =====");
        match suite() {
            Ok(()) => {
                passed += 1;
                eprintln!("===== xtask: {name} passed in {:.0?} =====", t.elapsed());
            }
            Err(e) => {
                failed += 1;
                eprintln!(
                    "===== xtask: {name} FAILED after {:.0?}: {e:#} =====",
                    t.elapsed()
                );
                break;
            }
        }
    }
    println!("suites: {passed} passed, {failed} failed");
    if failed > 0 {
        bail!("{failed} suite(s) failed");
    }
    Ok(())
}
