//! Developer tasks. `cargo xtask run` sets up a fresh Debian 12 machine and runs the agent;
//! `cargo xtask test` sets up and runs every suite (what CI runs).

mod fuzz;
mod initramfs;
mod setup;
mod suites;
mod vm;

use anyhow::{bail, Result};

const HELP: &str = "cargo xtask <task>

  setup        install the toolchain and test dependencies (apt, bpf-linker); idempotent
  run [ARGS]   setup, build the release agent and run it on this node (ARGS go to podlife)
  test         setup, then every suite: lint, unit, fuzz, kernel, end-to-end, vm + vm-e2e,
               dashboards, deploy
  unit         engine and agent unit tests (no root)
  kernel       kernel suite: loads the real eBPF programs (root)
  vm [ARGS]    kernel matrix: the kernel suite on Debian's 6.1 and 6.12 in qemu (KVM or TCG)
               (`cargo xtask vm --help`; see docs/PORTABILITY.md)
  e2e          end-to-end suite: real containerd + runc pods through the CRI (root)
  vm-e2e [ARGS]
               the e2e suite's pod scenarios in the 6.12 VM (cgroup v2), cgroupfs and
               systemd-style cgroup layouts (`cargo xtask vm-e2e --help`)
  bench        benchmarks (see docs/BENCHMARKS.md)
  lint         cargo fmt --check and clippy -D warnings (userspace, then the eBPF crate)
  fuzz [TARGET [SECS]]
               without TARGET: every fuzz target for a few seconds (the CI suite);
               with it: that target for SECS (default 600); see docs/FUZZING.md
";

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let mut rest: Vec<String> = args.collect();
    // `cargo xtask run -- --listen ...`: what follows `--` is for the agent.
    if rest.first().map(String::as_str) == Some("--") {
        rest.remove(0);
    }
    match task.as_str() {
        "setup" => setup::all(),
        "run" => {
            setup::toolchain()?;
            suites::run_agent(&rest)
        }
        "test" => suites::all(),
        "unit" => suites::unit(),
        "kernel" => suites::kernel(),
        "e2e" => suites::e2e(),
        "bench" => {
            setup::all()?;
            suites::bench(&rest)
        }
        "lint" => suites::lint(),
        "vm" => vm::run(&rest, vm::Suite::Kernel),
        "vm-e2e" => vm::run(&rest, vm::Suite::E2e),
        "fuzz" => fuzz::task(&rest),
        "" | "help" | "-h" | "--help" => {
            print!("{HELP}");
            Ok(())
        }
        other => bail!("unknown task {other:?}\n\n{HELP}"),
    }
}
