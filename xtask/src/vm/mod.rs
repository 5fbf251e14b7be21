//! `cargo xtask vm`: the kernel suite on other kernels. Boots Debian's cloud kernels (6.1 with
//! hybrid cgroups, 6.12 with cgroup v2 only) under qemu (KVM, or TCG where /dev/kvm is kvm-pvm)
//! from an initramfs that holds the agent, the kernel suite's test binaries (built in release:
//! under TCG debug code doubles the run time), busybox and the few tools the tests call. `/init`
//! (xtask/vm/init.sh) reports the capture features the agent enables and runs every test
//! binary; this side parses the serial console and fails on any failed, ignored or missing
//! result. The host kernel is the third column: its features are probed with the same agent
//! here, its tests are the `kernel` suite.
//! `cargo xtask vm-e2e` boots the same way with the e2e suite instead (e2e.rs): containerd,
//! runc and the CNI plugins, real pods through the CRI in both cgroup layouts.
//! See docs/PORTABILITY.md.

use std::fs;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};

use crate::setup::apt_install;

mod e2e;
mod image;
mod kernels;
mod report;

use image::{build, make_initramfs, Binaries};
use kernels::fetch_kernel;
use report::{parse_console, probe_host, summarize, Report};

/// One kernel of the matrix: the Debian meta package that names the current image of a series,
/// and the cgroup layout /init sets up.
struct Kernel {
    series: &'static str,
    meta: &'static str,
    cgroup: &'static str,
}

const KERNELS: &[Kernel] = &[
    // bookworm's own kernel: still on many nodes, and the v1 memory controller is there.
    Kernel {
        series: "6.1",
        meta: "linux-image-cloud-amd64",
        cgroup: "hybrid",
    },
    // bookworm-security's backport; its config has no CONFIG_MEMCG_V1, so cgroup v2 only,
    // as on current distributions.
    Kernel {
        series: "6.12",
        meta: "linux-image-6.12-cloud-amd64",
        cgroup: "v2",
    },
];

/// What runs in the VMs: the kernel suite (`cargo xtask vm`) or the pod scenarios of the e2e
/// suite (`cargo xtask vm-e2e`).
#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Suite {
    Kernel,
    E2e,
}

impl Suite {
    fn name(self) -> &'static str {
        match self {
            Suite::Kernel => "vm",
            Suite::E2e => "vm-e2e",
        }
    }
}

/// What the VMs need on the host, and what the tests call inside them.
const PACKAGES: &[&str] = &[
    "busybox-static",
    "xz-utils",
    "binutils",
    "util-linux",
    "python3",
    "stress-ng",
    "bpftool",
];

const HELP: &str =
    "cargo xtask vm [--kernel SERIES]... [--no-build] [--debug] [--sequential] [--accel kvm|tcg]
               [--timeout SECONDS]

Runs the kernel suite (every integration test of the podlife package) in qemu on Debian's
6.1 (hybrid cgroups) and 6.12 (cgroup v2 only) cloud kernels, cached under target/vm-cache/,
and reports the capture features the agent enables there and on the host.
  --kernel SERIES   only this series (6.1, 6.12); repeatable
  --no-build        reuse the binaries of the last build (no cargo invocation)
  --debug           the kernel suite's debug test binaries instead of release ones (no
                    build of their own, but about twice as slow under TCG)
  --sequential      one VM at a time (default: all at once)
  --accel kvm|tcg   force the accelerator (default: KVM where it can run these kernels, see
                    docs/PORTABILITY.md; TCG under kvm-pvm, whose /dev/kvm cannot)
  --timeout SECS    per VM, default 600
";

struct Opts {
    only: Vec<String>,
    /// vm-e2e: the cgroup layouts the pod scenarios run in (both by default).
    layouts: Vec<String>,
    /// vm-e2e: only these test binaries (all of e2e::TESTS by default).
    tests: Vec<String>,
    build: bool,
    release: bool,
    parallel: bool,
    accel: Option<Accel>,
    timeout: Duration,
}

fn parse_args(args: &[String], suite: Suite) -> Result<Opts> {
    let mut o = Opts {
        only: Vec::new(),
        layouts: Vec::new(),
        tests: Vec::new(),
        build: true,
        release: true,
        parallel: true,
        accel: None,
        // The e2e suite's pods take 10-20 min per VM under TCG on a loaded 2-core host.
        timeout: Duration::from_secs(match suite {
            Suite::Kernel => 600,
            Suite::E2e => 1800,
        }),
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--kernel" => o
                .only
                .push(it.next().context("--kernel needs a series")?.clone()),
            "--layout" if suite == Suite::E2e => {
                let l = it.next().context("--layout needs cgroupfs or systemd")?;
                if !e2e::LAYOUTS.contains(&l.as_str()) {
                    bail!("--layout {l}: cgroupfs or systemd");
                }
                o.layouts.push(l.clone());
            }
            "--test" if suite == Suite::E2e => {
                let t = it.next().context("--test needs a test binary name")?;
                if !e2e::TESTS.contains(&t.as_str()) {
                    bail!("--test {t}: one of {:?}", e2e::TESTS);
                }
                o.tests.push(t.clone());
            }
            "--no-build" => o.build = false,
            "--debug" => o.release = false,
            "--sequential" => o.parallel = false,
            "--accel" => {
                o.accel = Some(match it.next().map(String::as_str) {
                    Some("kvm") => Accel::Kvm,
                    Some("tcg") => Accel::Tcg,
                    other => bail!("--accel {other:?}: kvm or tcg"),
                })
            }
            "--timeout" => {
                let s = it.next().context("--timeout needs seconds")?;
                o.timeout = Duration::from_secs(s.parse().context("--timeout: seconds")?);
            }
            "-h" | "--help" => {
                print!("{}", help(suite));
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n\n{}", help(suite)),
        }
    }
    if let Some(bad) = o
        .only
        .iter()
        .find(|s| !KERNELS.iter().any(|k| k.series == *s))
    {
        bail!("--kernel {bad}: the matrix has 6.1 and 6.12");
    }
    if suite == Suite::E2e {
        if o.only.is_empty() {
            // Pure cgroup v2, where production nodes are; 6.1 (hybrid) on request.
            o.only.push("6.12".into());
        }
        if o.layouts.is_empty() {
            o.layouts = e2e::LAYOUTS.iter().map(|l| l.to_string()).collect();
        }
    }
    Ok(o)
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// qemu from bookworm-backports: these machines come with backports' qemu-utils, which
/// bookworm's qemu-system-x86 7.2 conflicts with (apt would remove it), and qemu 10 emulates
/// 6.1 faster. The backports source is given to apt for this install only; the machine's
/// sources stay as they are.
fn install_qemu() -> Result<()> {
    if crate::setup::missing_packages(&["qemu-system-x86"]).is_empty() {
        return Ok(());
    }
    // The machine's own sources (sources.list.d stays in effect) plus backports.
    let list = std::env::temp_dir().join("podlife-bookworm-backports.list");
    let mut text = fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    text.push_str("\ndeb http://deb.debian.org/debian bookworm-backports main\n");
    fs::write(&list, text)?;
    let src = [format!("-oDir::Etc::SourceList={}", list.display())];
    eprintln!("xtask: apt-get install -t bookworm-backports qemu-system-x86");
    crate::setup::sh(Command::new("apt-get").args(&src).args(["update", "-qq"]))?;
    crate::setup::sh(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(&src)
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "-t",
                "bookworm-backports",
                "qemu-system-x86",
            ]),
    )
}

fn cache() -> PathBuf {
    root().join("target/vm-cache")
}

fn help(suite: Suite) -> String {
    match suite {
        Suite::Kernel => HELP.to_string(),
        Suite::E2e => e2e::HELP.to_string(),
    }
}

pub fn run(args: &[String], suite: Suite) -> Result<()> {
    let opts = parse_args(args, suite)?;
    let started = Instant::now();
    require_kvm()?;
    let accel = match opts.accel {
        Some(a) => a,
        None => choose_accel(),
    };
    install_qemu()?;
    apt_install(PACKAGES)?;
    if suite == Suite::E2e {
        // containerd, runc, the CNI plugins and the images the VM gets (idempotent).
        crate::setup::sh(Command::new("bash").arg(root().join("tests/setup.sh")))?;
    }
    fs::create_dir_all(cache())?;
    let kernels: Vec<&Kernel> = KERNELS
        .iter()
        .filter(|k| opts.only.is_empty() || opts.only.iter().any(|s| s == k.series))
        .collect();
    let images = kernels
        .iter()
        .map(|k| fetch_kernel(k).map(|img| (*k, img)))
        .collect::<Result<Vec<_>>>()?;
    let module_dirs: Vec<PathBuf> = images
        .iter()
        .map(|(_, img)| img.with_file_name("modules"))
        .collect();
    let mut bins = build(opts.build, opts.release, suite)?;
    if !opts.tests.is_empty() {
        bins.tests.retain(|(name, _)| opts.tests.contains(name));
    }
    let dirs: Vec<&Path> = module_dirs.iter().map(PathBuf::as_path).collect();
    let (initrd, size, expected) = initramfs(suite, &bins, &opts, &dirs)?;
    eprintln!(
        "xtask {}: initramfs {} ({} MiB, tests: {}) ready after {:.0?}",
        suite.name(),
        initrd.display(),
        size >> 20,
        expected.join(", "),
        started.elapsed()
    );
    let host = match suite {
        Suite::Kernel => Some(probe_host(&bins.agent)),
        // The e2e suite's host column is the `e2e` suite itself.
        Suite::E2e => None,
    };
    let boot_one = |k: &Kernel, image: &Path| -> Result<Report> {
        let t = Instant::now();
        let log = cache().join(format!("console-{}-{}.log", suite.name(), k.series));
        let extra = match suite {
            Suite::Kernel => String::new(),
            Suite::E2e => e2e::cmdline(&opts.layouts),
        };
        let out = boot(k, image, &initrd, &log, accel, opts.timeout, &extra)?;
        let mut r = parse_console(&out, &expected);
        r.series = k.series.to_string();
        r.wall = t.elapsed();
        r.log = log;
        r.accel = accel.name().into();
        Ok(r)
    };
    let reports: Vec<Report> = if opts.parallel {
        std::thread::scope(|s| {
            let handles: Vec<_> = images
                .iter()
                .map(|(k, img)| s.spawn(|| boot_one(k, img)))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("VM thread panicked"))
                .collect::<Result<Vec<_>>>()
        })?
    } else {
        images
            .iter()
            .map(|(k, img)| boot_one(k, img))
            .collect::<Result<Vec<_>>>()?
    };
    let failed = summarize(host.as_ref(), &reports);
    eprintln!(
        "xtask {}: whole matrix in {:.0?}",
        suite.name(),
        started.elapsed()
    );
    if failed > 0 {
        bail!(
            "{} matrix: {failed} kernel(s) failed (console logs under target/vm-cache/)",
            suite.name()
        );
    }
    Ok(())
}

/// The initramfs of a suite and the names of the test runs /init must report.
fn initramfs(
    suite: Suite,
    bins: &Binaries,
    opts: &Opts,
    module_dirs: &[&Path],
) -> Result<(PathBuf, u64, Vec<String>)> {
    let (initrd, size) = make_initramfs(bins, suite, module_dirs)?;
    let names = bins.tests.iter().map(|(n, _)| n.clone());
    let expected = match suite {
        Suite::Kernel => names.collect(),
        Suite::E2e => e2e::expected(names, &opts.layouts),
    };
    Ok((initrd, size, expected))
}

/// The matrix is the point of the suite: without KVM it fails, it never skips or crawls
/// through minutes of emulation.
fn require_kvm() -> Result<()> {
    match fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "/dev/kvm: {e}. The kernel matrix boots its kernels under qemu with KVM: run it on a \
             machine with hardware virtualisation (on a cloud VM, one with nested virtualisation \
             enabled), as root or in the kvm group. Without it the suite fails rather than skip."
        ),
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    fn name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// KVM, unless /dev/kvm is served by kvm-pvm (nested "pagetable-based" virtualisation without
/// VMX, as on Firecracker hosts): it emulates the guest kernel's privileged code in batches and
/// stops with "KVM internal error ... emulation failure" on instructions its emulator lacks,
/// which unmodified Debian kernels execute at boot (zstd's shlx in 6.12's decompressor,
/// cmpxchg16b in 6.1's SLUB, xrstor, the int3 self-test). qemu's TCG boots them in seconds.
fn choose_accel() -> Accel {
    let module = |m: &str| Path::new("/sys/module").join(m).exists();
    if module("kvm_pvm") && !module("kvm_intel") && !module("kvm_amd") {
        eprintln!(
            "xtask vm: /dev/kvm is kvm-pvm, which cannot boot unmodified kernels \
             (emulation failures, see docs/PORTABILITY.md): using qemu's TCG instead"
        );
        return Accel::Tcg;
    }
    Accel::Kvm
}

/// Boot one kernel; returns the console output (also written to `log` and echoed).
fn boot(
    k: &Kernel,
    image: &Path,
    initrd: &Path,
    log: &Path,
    accel: Accel,
    timeout: Duration,
    extra: &str,
) -> Result<String> {
    let mut append = format!(
        "console=ttyS0 panic=-1 quiet loglevel=4 podlife.cgroup={} podlife.accel={}",
        k.cgroup,
        accel.name()
    );
    append.push_str(extra);
    if accel == Accel::Tcg {
        // Speculation mitigations protect nothing in a throw-away VM and cost TCG extra work on
        // every syscall (page-table isolation switches page tables); podlife observes the same.
        append.push_str(" mitigations=off");
    }
    if k.cgroup == "v2" {
        // As systemd's unified mode: no v1 hierarchy can be mounted at all.
        append.push_str(" cgroup_no_v1=all");
    }
    let mut cmd = Command::new("qemu-system-x86_64");
    match accel {
        Accel::Kvm => cmd.args(["-accel", "kvm", "-cpu", "host"]),
        // One host thread per vCPU.
        Accel::Tcg => cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
    };
    // 2 GiB: the e2e suite's initramfs (containerd, images) and its pods need the room.
    cmd.args(["-smp", "2", "-m", "2048"])
        .args(["-nodefaults", "-display", "none", "-serial", "stdio"])
        .arg("-no-reboot")
        .arg("-kernel")
        .arg(image)
        .arg("-initrd")
        .arg(initrd)
        .arg("-append")
        .arg(append)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "xtask vm: booting {} ({} cgroups, {})",
        k.series,
        k.cgroup,
        accel.name()
    );
    let mut child = cmd.spawn().context("starting qemu-system-x86_64")?;
    let (tx, rx) = mpsc::channel();
    for stream in [
        Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(child.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut logf = fs::File::create(log)?;
    let mut all = String::new();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim_end_matches('\r');
                eprintln!("[{}] {line}", k.series);
                writeln!(logf, "{line}")?;
                all.push_str(line);
                all.push('\n');
                // qemu stops the guest and waits forever after this: fail now.
                if line.starts_with("KVM internal error") {
                    all.push_str("PODLIFE-VM KVM-ERROR\n");
                    std::thread::sleep(Duration::from_millis(500));
                    let _ = child.kill();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                all.push_str(&format!("PODLIFE-VM TIMEOUT after {timeout:?}\n"));
                eprintln!("[{}] xtask vm: timed out after {timeout:?}", k.series);
                break;
            }
        }
    }
    let _ = child.wait();
    Ok(all)
}
