//! podlife's eBPF programs. Tracepoints only (many production kernels, and this one, have no
//! kprobes). Every program is a thin entry point; the work is in `try_*` functions.
#![no_std]
#![no_main]

mod cgroup;
mod emit;
mod ns;
mod oom;
mod process;
mod signal;

#[cfg(all(not(test), target_arch = "bpf"))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any reachable panic path, so this is never executed.
    unsafe { core::hint::unreachable_unchecked() }
}
