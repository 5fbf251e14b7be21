//! Workloads run inside a cgroup: our own fork+exec loop, stress-ng stressors, a memory hog.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};

use crate::util::Cgroup;

/// `podlife-bench worker forkexec <secs>`: fork+exec /bin/true in a loop; prints the count.
pub fn worker(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("forkexec") => {
            let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
            let t = Instant::now();
            let mut n = 0u64;
            while t.elapsed() < Duration::from_secs_f64(secs) {
                Command::new("/bin/true").status()?;
                n += 1;
            }
            println!("{n}");
            Ok(())
        }
        Some("sockstorm") => {
            let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
            println!("{}", sock_storm(secs)?);
            Ok(())
        }
        Some("syscalls") => {
            let which = args.get(1).map(String::as_str).unwrap_or("getppid");
            let n: u64 = args
                .get(2)
                .and_then(|s| s.parse().ok())
                .unwrap_or(3_000_000);
            println!("{}", syscall_loop(which, n)?);
            Ok(())
        }
        Some("memhog") => {
            // Touch memory in 1 MiB steps until the OOM killer ends us.
            let mut keep: Vec<Vec<u8>> = Vec::new();
            loop {
                keep.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&keep);
            }
        }
        other => anyhow::bail!("unknown worker {other:?}"),
    }
}

/// `n` of the cheapest syscalls back to back: calls per second. While any syscall tracepoint
/// is attached, every syscall of every process on the node takes the kernel's traced entry and
/// exit path, whether or not a program runs for it; this is where that cost shows.
fn syscall_loop(which: &str, n: u64) -> Result<f64> {
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    let fd = std::os::fd::AsRawFd::as_raw_fd(&null);
    let byte = [0u8; 1];
    let t = Instant::now();
    match which {
        // SAFETY: getppid takes no arguments and cannot fail.
        "getppid" => (0..n).for_each(|_| unsafe {
            std::hint::black_box(libc::syscall(libc::SYS_getppid));
        }),
        // SAFETY: an open fd and a 1-byte buffer that outlives the call.
        "write" => (0..n).for_each(|_| unsafe {
            std::hint::black_box(libc::write(fd, byte.as_ptr().cast(), 1));
        }),
        other => anyhow::bail!("unknown syscall loop {other:?} (getppid, write)"),
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// One `podlife-bench worker syscalls <which> <n>` in `cg`: calls per second.
pub fn syscalls(cg: &Cgroup, which: &str, n: u64) -> Result<f64> {
    let me = std::env::current_exe()?;
    let out = Command::new("sh")
        .arg("-c")
        .arg(cg.wrap(&format!("{} worker syscalls {which} {n}", me.display())))
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse::<f64>()
        .with_context(|| {
            format!(
                "syscalls worker printed {:?}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
}

/// Connect/accept on loopback until `secs` pass: a listener on an ephemeral 127.0.0.1 port whose
/// thread accepts and closes, the caller connects, waits for that close and aborts (SO_LINGER 0:
/// a reset, so no TIME_WAIT exhausts the ports and the reset path runs too). One connection at a
/// time per worker: an open loop overflows the accept queue and then times SYN retransmits, not
/// the connections. Returns accepted connections.
fn sock_storm(secs: f64) -> Result<u64> {
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd as _;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let done = Arc::new(AtomicBool::new(false));
    let stop = done.clone();
    let acceptor = std::thread::spawn(move || {
        let mut n = 0u64;
        for conn in listener.incoming() {
            if stop.load(Ordering::Acquire) {
                break;
            }
            n += u64::from(conn.is_ok());
        }
        n
    });
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs_f64(secs) {
        let mut c = TcpStream::connect(addr)?;
        // The acceptor's close (end of stream, or a reset if it raced) ends the wait.
        let _ = std::io::Read::read(&mut c, &mut [0u8; 1]);
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: a valid socket fd and a correctly sized option value.
        unsafe {
            libc::setsockopt(
                c.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
    // The last connection only wakes the acceptor to see the flag.
    done.store(true, Ordering::Release);
    drop(TcpStream::connect(addr)?);
    acceptor
        .join()
        .map_err(|_| anyhow::anyhow!("acceptor panicked"))
}

/// Two fork+exec workers at once in `cg` for `secs`: total iterations.
pub fn forkexec(cg: &Cgroup, secs: f64) -> Result<f64> {
    two_workers(cg, "forkexec", secs)
}

/// Two connect/accept storm workers at once in `cg` for `secs`: total accepted connections.
pub fn sockstorm(cg: &Cgroup, secs: f64) -> Result<f64> {
    two_workers(cg, "sockstorm", secs)
}

/// Two `podlife-bench worker <name> <secs>` in `cg` at once: the sum of the counts they print.
fn two_workers(cg: &Cgroup, name: &str, secs: f64) -> Result<f64> {
    let me = std::env::current_exe()?;
    let spawned: Vec<_> = (0..2)
        .map(|_| {
            Command::new("sh")
                .arg("-c")
                .arg(cg.wrap(&format!("{} worker {name} {secs}", me.display())))
                .stdout(std::process::Stdio::piped())
                .spawn()
        })
        .collect::<std::io::Result<_>>()?;
    let mut total = 0.0;
    for c in spawned {
        let out = c.wait_with_output()?;
        total += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<f64>()
            .unwrap_or(0.0);
    }
    Ok(total)
}

/// stress-ng stressor (e.g. "vfork", "fork") with 2 workers in `cg`: bogo ops.
pub fn stress(cg: &Cgroup, stressor: &str, secs: u64) -> Result<f64> {
    stress_with(cg, stressor, "", secs)
}

/// [`stress`] with extra stress-ng options (e.g. `--sock-if lo`).
pub fn stress_with(cg: &Cgroup, stressor: &str, opts: &str, secs: u64) -> Result<f64> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cg.wrap(&format!(
            "stress-ng --{stressor} 2 {opts} -t {secs} --metrics-brief"
        )))
        .output()
        .context("stress-ng (apt-get install stress-ng)")?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find(|l| l.contains("metrc") && l.split_whitespace().any(|w| w == stressor))
        .and_then(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let i = words.iter().position(|w| *w == stressor)?;
            words.get(i + 1)?.parse().ok()
        })
        .with_context(|| format!("no bogo ops in stress-ng output:\n{text}"))
}
