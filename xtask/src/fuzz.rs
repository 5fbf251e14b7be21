//! Fuzzing with cargo-fuzz (fuzz/, its own workspace; see docs/FUZZING.md). Stable toolchain:
//! without a sanitizer cargo-fuzz passes no `-Z` flag, so no nightly is needed.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Result};

use crate::setup::sh;

/// Every target in fuzz/fuzz_targets, in the order the suite runs them.
pub const TARGETS: &[&str] = &[
    "decode",
    "cgroup_path",
    "oci_config",
    "api_params",
    "http",
    "engine",
    "redact",
];

/// Seconds per target in `cargo xtask test` (the suite stays under about 3 minutes).
const SUITE_SECS: u32 = 20;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn cargo_fuzz_ok() -> bool {
    Command::new("cargo")
        .args(["fuzz", "--version"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// cargo-fuzz from crates.io, once.
pub fn install() -> Result<()> {
    if !cargo_fuzz_ok() {
        eprintln!("xtask: cargo install cargo-fuzz (about 60 s once)");
        sh(Command::new("cargo").args(["install", "--locked", "cargo-fuzz@0.13.2"]))?;
    }
    Ok(())
}

fn cargo_fuzz(args: &[&str]) -> Command {
    let mut c = Command::new("cargo");
    c.arg("fuzz").args(args).current_dir(root());
    c
}

/// Fuzz one target for `secs` seconds: the committed seeds and regressions are read, new
/// inputs go to fuzz/corpus/<target>, a crash lands in fuzz/artifacts/<target> and fails.
pub fn run(target: &str, secs: u32) -> Result<()> {
    if !TARGETS.contains(&target) {
        bail!(
            "unknown fuzz target {target:?}; targets: {}",
            TARGETS.join(", ")
        );
    }
    let dir = root().join("fuzz");
    let corpus = dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus)?;
    let mut cmd = cargo_fuzz(&["run", target, "--sanitizer", "none"]);
    cmd.arg(&corpus);
    for extra in ["seeds", "regressions"] {
        let d = dir.join(extra).join(target);
        if Path::new(&d).is_dir() {
            cmd.arg(d);
        }
    }
    cmd.args([
        "--",
        "-timeout=10",
        "-rss_limit_mb=2048",
        "-print_final_stats=1",
    ])
    .arg(format!("-max_total_time={secs}"));
    sh(&mut cmd)
}

/// The CI suite: one build of every target, then each for SUITE_SECS.
pub fn suite() -> Result<()> {
    install()?;
    let t = Instant::now();
    sh(&mut cargo_fuzz(&["build", "--sanitizer", "none"]))?;
    eprintln!("xtask: fuzz targets built in {:.0?}", t.elapsed());
    for target in TARGETS {
        run(target, SUITE_SECS)?;
    }
    Ok(())
}

/// `cargo xtask fuzz [TARGET [SECS]]`: one target for a long run (default 10 minutes), or the
/// suite when no target is given.
pub fn task(args: &[String]) -> Result<()> {
    let Some(target) = args.first() else {
        return suite();
    };
    let secs = match args.get(1) {
        Some(s) => s
            .parse()
            .map_err(|_| anyhow::anyhow!("seconds {s:?}: expected a whole number"))?,
        None => 600,
    };
    install()?;
    run(target, secs)
}
