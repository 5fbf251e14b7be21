//! `podlife record`: decoded kernel events as JSON lines, the input format of the engine's
//! replay tests.

use std::io::Write as _;
use std::time::Duration;

use anyhow::{Context as _, Result};
use tracing::info;

use crate::capture::convert::to_kernel_event;
use crate::capture::loader::{Capture, LoadOptions};
use crate::node::cgroupfs::CgroupMounts;

pub async fn run(
    out: &std::path::Path,
    seconds: Option<u64>,
    all: bool,
    ringbuf_bytes: u32,
) -> Result<()> {
    let mounts = CgroupMounts::discover();
    let opts = LoadOptions {
        ringbuf_bytes,
        no_filter: all,
        ..Default::default()
    };
    let mut capture = Capture::load(&opts, mounts.event_root())?;
    crate::pipeline::seed::track_existing(&mut capture, &mounts);
    let mut sink: Box<dyn std::io::Write> = if out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?)
    };
    info!(out = %out.display(), "recording kernel events; Ctrl-C (SIGINT) or SIGTERM to stop");
    let deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    // Listening from here on: a fresh `ctrl_c()` per loop turn misses a signal that comes
    // while the ring buffer is drained, and the recording never stops.
    use tokio::signal::unix::{signal, SignalKind};
    let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut written = 0u64;
    let mut errors = 0u64;
    loop {
        capture.drain(|r| match r {
            Ok(rec) => {
                if serde_json::to_writer(&mut sink, &to_kernel_event(&rec)).is_ok()
                    && sink.write_all(b"\n").is_ok()
                {
                    written += 1;
                }
            }
            Err(_) => errors += 1,
        });
        sink.flush()?;
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            break;
        }
        tokio::select! {
            _ = interrupt.recv() => break,
            _ = terminate.recv() => break,
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
    }
    capture.drain(|r| {
        if let Ok(rec) = r {
            let _ = serde_json::to_writer(&mut sink, &to_kernel_event(&rec));
            let _ = sink.write_all(b"\n");
            written += 1;
        }
    });
    sink.flush()?;
    let lost = capture.counter(podlife_common::Counter::RingbufLost);
    info!(written, decode_errors = errors, lost, "recording done");
    Ok(())
}
