//! Scheduling policy of the agent's own busy threads (ring reader, pipeline).

use tracing::warn;

/// Put the calling thread under `SCHED_BATCH`: the same fair share of the CPU, but its wakeups
/// do not preempt the task running on the CPU it wakes on. The reader and the pipeline wake
/// every drain period; on a node whose CPUs are busy, each preemption costs a workload thread
/// its cache and often a migration, far more than the agent's own few microseconds. Their
/// latency budget is milliseconds, and the ring buffer holds far more than that.
pub fn no_wakeup_preemption(thread: &str) {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: plain syscall on the calling thread (0) with a valid parameter block.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
        warn!(
            thread,
            "SCHED_BATCH refused ({}); the thread keeps the default policy",
            std::io::Error::last_os_error()
        );
    }
}
