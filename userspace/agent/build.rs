//! Builds the eBPF object (ebpf/probes) with Debian's Rust toolchain and embeds it.
//! See ../shared/TOOLCHAIN.md: an absolute toolchain path selects /usr's rustc-web, whose
//! prebuilt `core` for bpfel-unknown-none avoids nightly and -Z build-std.

use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let meta = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("cargo metadata")?;
    let text = String::from_utf8(meta.stdout)?;
    // Find the eBPF package's manifest directory without a JSON dependency in the build script.
    let manifest = text
        .split("\"manifest_path\":\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .find(|p| p.ends_with("ebpf/probes/Cargo.toml"))
        .ok_or_else(|| anyhow!("podlife-ebpf not found in cargo metadata"))?;
    let root_dir = manifest.trim_end_matches("/Cargo.toml");
    let toolchain = std::env::var("PODLIFE_EBPF_TOOLCHAIN").unwrap_or_else(|_| "/usr".into());
    println!("cargo:rerun-if-env-changed=PODLIFE_EBPF_TOOLCHAIN");
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "podlife-ebpf",
            root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}
