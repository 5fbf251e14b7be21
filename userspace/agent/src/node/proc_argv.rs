//! argv of processes found in /proc, bounded as the kernel capture bounds an exec's argv.
//!
//! A tenant chooses its argv (up to 6 MiB with a raised stack limit) and can fork it into as
//! many processes as it likes, copy-on-write, at no cost to itself; the bootstrap re-runs while
//! the kernel loses events. So `cmdline` is read only for processes in pod cgroups, at most
//! [`CMDLINE_READ_MAX`] bytes of it, and kept only within the probe's bounds.

use std::io::Read;
use std::path::Path;

use podlife_common::{ARGV_LEN, ARGV_MAX_ARGS, ARG_LEN};

/// Bytes read of `/proc/<pid>/cmdline`: more than the bounds below can keep (16 arguments of
/// at most 128 bytes with their NUL). Unlike the probe, which follows argv's pointers, a read
/// cannot skip the rest of a long argument: arguments after one that runs past this many bytes
/// are unknown (and `truncated` says so).
pub const CMDLINE_READ_MAX: u64 = 4096;

/// argv within the kernel capture's bounds, and whether anything was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundedArgv {
    pub args: Vec<String>,
    pub truncated: bool,
}

/// Keep what the eBPF exec capture (`try_capture_argv` in the probes' process.rs) would keep of
/// NUL-separated `raw`: at most `ARGV_MAX_ARGS` arguments of at most `ARG_LEN - 1` bytes, and no
/// further argument once `ARGV_LEN - ARG_LEN` bytes are used. (The probe also flags exactly 16
/// arguments as truncated; the kept arguments are the same.) `complete` says `raw` is the whole
/// cmdline; if not, its last, unterminated argument is cut short and nothing after it is known.
pub fn bound(raw: &[u8], complete: bool) -> BoundedArgv {
    let mut args = Vec::new();
    let mut truncated = false;
    let mut used = 0usize;
    // cmdline ends every argument with a NUL; the last piece after it is empty.
    let mut pieces = raw.split(|&b| b == 0).peekable();
    while let Some(arg) = pieces.next() {
        let last = pieces.peek().is_none();
        if last && arg.is_empty() {
            break;
        }
        if args.len() == ARGV_MAX_ARGS || used > ARGV_LEN - ARG_LEN {
            truncated = true;
            break;
        }
        // bpf_probe_read_user_str with ARG_LEN: at most ARG_LEN - 1 bytes and the NUL; a full
        // read (n == ARG_LEN) is marked truncated, as the probe does.
        let keep = arg.len().min(ARG_LEN - 1);
        if keep + 1 >= ARG_LEN || (last && !complete) {
            truncated = true;
        }
        args.push(String::from_utf8_lossy(&arg[..keep]).into_owned());
        used += keep + 1;
        if last {
            break;
        }
    }
    BoundedArgv { args, truncated }
}

/// Read the first [`CMDLINE_READ_MAX`] bytes of `/proc/<pid>/cmdline` and bound them. A bounded
/// read: the kernel copies no more of the process's memory than asked for.
pub fn read(proc_dir: &Path) -> Option<BoundedArgv> {
    let mut buf = Vec::with_capacity(CMDLINE_READ_MAX as usize);
    std::fs::File::open(proc_dir.join("cmdline"))
        .ok()?
        .take(CMDLINE_READ_MAX)
        .read_to_end(&mut buf)
        .ok()?;
    let complete = (buf.len() as u64) < CMDLINE_READ_MAX;
    Some(bound(&buf, complete))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &BoundedArgv) -> Vec<&str> {
        v.args.iter().map(String::as_str).collect()
    }

    #[test]
    fn short_argv_is_kept_whole() {
        let b = bound(b"sh\0-c\0echo hi\0", true);
        assert_eq!(args(&b), ["sh", "-c", "echo hi"]);
        assert!(!b.truncated);
        // Empty arguments count, as in the kernel capture.
        assert_eq!(args(&bound(b"a\0\0b\0", true)), ["a", "", "b"]);
        assert_eq!(bound(b"", true).args.len(), 0);
    }

    #[test]
    fn bounds_are_the_probes() {
        let many: Vec<u8> = (0..40)
            .flat_map(|i| format!("a{i}\0").into_bytes())
            .collect();
        let b = bound(&many, true);
        assert_eq!(b.args.len(), ARGV_MAX_ARGS);
        assert!(b.truncated);
        let long = [vec![b'x'; 1000], vec![0], b"next\0".to_vec()].concat();
        let b = bound(&long, true);
        assert_eq!(b.args[0].len(), ARG_LEN - 1);
        assert_eq!(b.args[1], "next");
        assert!(b.truncated);
        // Total: no argument starts past ARGV_LEN - ARG_LEN bytes.
        let wide: Vec<u8> = (0..16)
            .flat_map(|_| [vec![b'y'; 100], vec![0]].concat())
            .collect();
        let b = bound(&wide, true);
        assert_eq!(b.args.len(), (ARGV_LEN - ARG_LEN) / 101 + 1);
        assert!(b.args.iter().map(|a| a.len() + 1).sum::<usize>() <= ARGV_LEN);
        assert!(b.truncated);
        // A read that stopped inside an argument.
        let b = bound(b"sh\0-c\0aaaa", false);
        assert_eq!(args(&b), ["sh", "-c", "aaaa"]);
        assert!(b.truncated);
    }

    #[test]
    fn reads_own_cmdline() {
        let me = read(Path::new(&format!("/proc/{}", std::process::id()))).unwrap();
        assert!(!me.args.is_empty());
        assert!(me.args.len() <= ARGV_MAX_ARGS);
    }
}
