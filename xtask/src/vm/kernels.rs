//! The matrix's kernels: Debian image packages, fetched and unpacked, never installed.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _, Result};

use super::{cache, e2e, Kernel};
use crate::setup::{output, sh};

/// The concrete image package the meta package points at in apt's current lists.
fn resolve_package(meta: &str) -> Result<String> {
    let deps = output(Command::new("apt-cache").args(["depends", "--important", meta]))?;
    deps.lines()
        .filter_map(|l| l.trim().strip_prefix("Depends: "))
        .map(|p| p.trim_matches(|c| c == '<' || c == '>').to_string())
        .find(|p| p.starts_with("linux-image-"))
        .with_context(|| format!("{meta} depends on no linux-image package:\n{deps}"))
}

/// `target/vm-cache/<series>/vmlinuz`, downloaded with apt-get and unpacked with dpkg-deb
/// (never installed), and beside it `modules/<release>/`, the few modules the e2e suite loads
/// (e2e.rs), decompressed. A cached image is reused while it is the one apt names, or when apt
/// cannot say (offline).
pub(super) fn fetch_kernel(k: &Kernel) -> Result<PathBuf> {
    let dir = cache().join(k.series);
    let image = dir.join("vmlinuz");
    let stamp = dir.join("package");
    let cached = fs::read_to_string(&stamp).ok();
    let wanted = match resolve_package(k.meta) {
        Ok(p) => p,
        Err(e) if image.exists() => {
            eprintln!(
                "xtask vm: {e:#}; using the cached {}",
                cached.unwrap_or_default()
            );
            return Ok(image);
        }
        // Stale or empty lists (the 6.12 image is in bookworm-security).
        Err(_) => {
            sh(Command::new("apt-get").args(["update", "-qq"]))?;
            resolve_package(k.meta)?
        }
    };
    let modules = dir.join("modules");
    if image.exists() && modules.exists() && cached.as_deref() == Some(wanted.as_str()) {
        return Ok(image);
    }
    let tmp = dir.join("download");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    // apt drops privileges to _apt for downloads; let it write here.
    let _ = Command::new("chown").arg("_apt").arg(&tmp).status();
    let download = |pkg: &str| {
        eprintln!("xtask vm: downloading {pkg}");
        sh(Command::new("apt-get")
            .args(["download", "-qq", pkg])
            .current_dir(&tmp))
    };
    let wanted = match download(&wanted) {
        Ok(()) => wanted,
        // The lists name a version the archive has already replaced.
        Err(_) => {
            sh(Command::new("apt-get").args(["update", "-qq"]))?;
            let again = resolve_package(k.meta)?;
            download(&again)?;
            again
        }
    };
    let deb = fs::read_dir(&tmp)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download left no .deb")?;
    let x = tmp.join("x");
    sh(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&x))?;
    let boot = x.join("boot");
    let find = |prefix: &str| -> Result<PathBuf> {
        fs::read_dir(&boot)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix))
            .with_context(|| format!("no {prefix}* in {wanted}"))
    };
    let config = fs::read_to_string(find("config-")?)?;
    check_config(&wanted, &config)?;
    fs::write(dir.join("config"), config)?;
    fs::rename(find("vmlinuz-")?, &image)?;
    extract_modules(&x, &modules)?;
    fs::write(&stamp, &wanted)?;
    fs::remove_dir_all(&tmp)?;
    Ok(image)
}

/// The e2e suite's modules from an unpacked image package into `to/<release>/<name>.ko`,
/// decompressed (busybox's insmod in the VM reads plain objects).
fn extract_modules(unpacked: &std::path::Path, to: &std::path::Path) -> Result<()> {
    let base = unpacked.join("lib/modules");
    let release = fs::read_dir(&base)
        .with_context(|| format!("{}: no modules in the package", base.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .next()
        .context("the image package has no lib/modules/<release>")?;
    let _ = fs::remove_dir_all(to);
    let out = to.join(&release);
    fs::create_dir_all(&out)?;
    for m in e2e::MODULES {
        let src = base.join(&release).join("kernel").join(format!("{m}.ko"));
        let name = src.file_name().unwrap().to_owned();
        let xz = src.with_extension("ko.xz");
        let data = if xz.exists() {
            let out = Command::new("xz")
                .arg("-dc")
                .arg(&xz)
                .output()
                .context("starting xz (apt-get install xz-utils)")?;
            if !out.status.success() {
                bail!("xz -dc {}: {}", xz.display(), out.status);
            }
            out.stdout
        } else {
            fs::read(&src).with_context(|| format!("{}: missing", src.display()))?
        };
        fs::write(out.join(name), data)?;
    }
    Ok(())
}

/// What the VM needs built in (the initramfs has no modules): the serial console it reports
/// on, BTF, tracepoints for BPF, the cgroup controllers and namespaces the tests use.
fn check_config(pkg: &str, config: &str) -> Result<()> {
    const BUILT_IN: &[&str] = &[
        "CONFIG_SERIAL_8250_CONSOLE",
        "CONFIG_DEBUG_INFO_BTF",
        "CONFIG_BPF_SYSCALL",
        "CONFIG_BPF_EVENTS",
        "CONFIG_FTRACE_SYSCALLS",
        "CONFIG_CGROUPS",
        "CONFIG_MEMCG",
        "CONFIG_PID_NS",
        "CONFIG_BLK_DEV_INITRD",
        "CONFIG_DEVTMPFS",
        "CONFIG_TMPFS",
    ];
    let missing: Vec<&str> = BUILT_IN
        .iter()
        .copied()
        .filter(|opt| !config.lines().any(|l| l == format!("{opt}=y")))
        .collect();
    if !missing.is_empty() {
        bail!(
            "{pkg} lacks {}: podlife's kernel suite cannot run on it from an initramfs",
            missing.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_without_btf_are_refused() {
        let good = "CONFIG_SERIAL_8250_CONSOLE=y\nCONFIG_DEBUG_INFO_BTF=y\nCONFIG_BPF_SYSCALL=y\n\
            CONFIG_BPF_EVENTS=y\nCONFIG_FTRACE_SYSCALLS=y\nCONFIG_CGROUPS=y\nCONFIG_MEMCG=y\n\
            CONFIG_PID_NS=y\nCONFIG_BLK_DEV_INITRD=y\nCONFIG_DEVTMPFS=y\nCONFIG_TMPFS=y\n";
        check_config("k", good).unwrap();
        let bad = good.replace(
            "CONFIG_DEBUG_INFO_BTF=y",
            "# CONFIG_DEBUG_INFO_BTF is not set",
        );
        let e = check_config("k", &bad).unwrap_err().to_string();
        assert!(e.contains("CONFIG_DEBUG_INFO_BTF"), "{e}");
    }
}
