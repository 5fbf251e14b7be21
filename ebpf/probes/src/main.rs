//! podlife's eBPF programs. Tracepoints only (many production kernels, and this one, have no
//! kprobes). Every program is a thin entry point; the work is in `try_*` functions.
// On the host (clippy over the workspace) the crate builds with std and an empty main, so it
// can be linted without the bpf target.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod cgroup;
mod emit;
mod kubelet;
mod ns;
mod oom;
mod process;
mod reset;
mod signal;
mod sock;

#[cfg(all(not(test), target_arch = "bpf"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    unsafe { core::hint::unreachable_unchecked() }
}

#[cfg(not(target_arch = "bpf"))]
fn main() {}
