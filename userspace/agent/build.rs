//! Builds the eBPF object (ebpf/probes) with Debian's Rust toolchain and embeds it
//! (docs/TOOLCHAIN.md). The inner build runs `rustup run /usr cargo build --target
//! bpfel-unknown-none`: the absolute toolchain path selects /usr's rustc-web, whose prebuilt
//! `core` for that target avoids nightly and `-Z build-std`.
//!
//! Quiet on success: the inner cargo's output is kept and printed only when it fails, so a
//! user's build shows no `warning:` lines that are not warnings.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

const PACKAGE: &str = "podlife-ebpf";
/// The `[[bin]]` name of the eBPF crate: the object the loader embeds from OUT_DIR.
const OBJECT: &str = "podlife";
const TARGET: &str = "bpfel-unknown-none";

fn main() -> anyhow::Result<()> {
    let agent = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let ebpf = agent.join("../../ebpf");
    for dir in ["probes", "common"] {
        println!("cargo:rerun-if-changed={}", ebpf.join(dir).display());
    }
    println!("cargo:rerun-if-env-changed=PODLIFE_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("PODLIFE_EBPF_TOOLCHAIN").unwrap_or_else(|_| "/usr".into());
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let target_dir = out_dir.join("ebpf-target");

    let mut cmd = inner_cargo(&toolchain);
    cmd.args([
        "build",
        "--quiet",
        "--release",
        "--package",
        PACKAGE,
        "--bins",
    ])
    .args(["--target", TARGET])
    .arg("--manifest-path")
    .arg(ebpf.join("probes/Cargo.toml"))
    .arg("--target-dir")
    .arg(&target_dir)
    // BTF in the object (aya reads it), and the arch cfg aya-ebpf expects.
    .env(
        "CARGO_ENCODED_RUSTFLAGS",
        format!(
            "--cfg=bpf_target_arch=\"{}\"\x1f-Cdebuginfo=2\x1f-Clink-arg=--btf",
            std::env::var("CARGO_CFG_TARGET_ARCH")?
        ),
    );
    let out = cmd
        .output()
        .with_context(|| format!("starting the eBPF build {cmd:?}"))?;
    if !out.status.success() {
        // Shown by cargo with the build script's failure: the inner build's own messages.
        eprintln!("{}", String::from_utf8_lossy(&out.stdout));
        eprintln!("{}", String::from_utf8_lossy(&out.stderr));
        bail!(
            "building the eBPF programs failed ({}): {cmd:?}\n\
             the eBPF toolchain is set up by `cargo xtask setup` (docs/TOOLCHAIN.md)",
            out.status
        );
    }
    let built = target_dir.join(TARGET).join("release").join(OBJECT);
    copy(&built, &out_dir.join(OBJECT))
}

/// `rustup run <toolchain> cargo` where rustup exists (it puts the toolchain's rustc first on
/// PATH), else the toolchain's own cargo.
fn inner_cargo(toolchain: &str) -> Command {
    let c = |program: &Path| {
        let mut c = Command::new(program);
        // The outer build's compiler is rustup's stable; the inner one must be the toolchain's.
        for key in ["RUSTC", "RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR"] {
            c.env_remove(key);
        }
        c
    };
    let rustup = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("rustup"))
            .find(|p| p.is_file())
    });
    match rustup {
        Some(rustup) => {
            let mut c = c(&rustup);
            c.args(["run", toolchain, "cargo"]);
            c
        }
        None => {
            let mut c = c(&Path::new(toolchain).join("bin/cargo"));
            c.env("RUSTC", Path::new(toolchain).join("bin/rustc"));
            c
        }
    }
}

fn copy(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::copy(from, to).with_context(|| {
        format!(
            "copying the eBPF object {} to {}",
            from.display(),
            to.display()
        )
    })?;
    Ok(())
}
