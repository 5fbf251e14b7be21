//! History store segments in the agent's on-disk format (userspace/agent/src/store.rs):
//! `events-<seq, 8 digits>.jsonl` in the state dir, one served event (JSON) per line, and a
//! `heartbeat` file with the wall-clock ns the agent was last alive. Tests write a store the
//! size a node reaches after months, and read back what the agent wrote.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

/// The defaults of `--store-max-bytes` and `--store-load-bytes`.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
pub const DEFAULT_LOAD_BYTES: u64 = 16 << 20;

pub fn now_wall_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as i64
}

/// A uid of the synthetic pods (`0000000n-...`), one per index.
pub fn uid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-00000000e2e0")
}

/// One finished exec probe of pod `pod` as the agent stores it: the most common line of a
/// long-lived store. `n` is in its argv, so a test can find this very line on the API.
pub fn exec_probe(pod: usize, n: u64, ts_wall_ns: i64) -> Value {
    json!({
        "uid": uid(pod),
        "namespace": "e2e",
        "pod": format!("stored-{pod}"),
        "container": "app",
        "container_id": format!("{pod:064x}"),
        "source": "kernel",
        "type": "ExecFinished",
        "pid": 1000 + n % 30000,
        "argv": ["/bin/sh", "-c", format!("test -f /tmp/healthy # probe {n}")],
        "exit_code": 0,
        "signal": null,
        "duration_ms": 3.25,
        "timed_out": false,
        "probe": "exec_probe",
        "time": "2026-01-01T00:00:00.000000000Z",
        "ts_wall_ns": ts_wall_ns,
        "seq": id_of(n),
        "id": id_of(n).to_string(),
    })
}

/// The id a previous agent gave the stored line `n`: ids start at the wall clock in µs at the
/// agent's start (here a day ago) and count up.
pub fn id_of(n: u64) -> u64 {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BASE.get_or_init(|| (now_wall_ns() as u64 - 86_400_000_000_000) / 1000) + n
}

/// The scripts of the stored exec probes among the `events` of an API answer (a page or a
/// timeline), in order: each names its line (`# probe <n>`).
pub fn probe_scripts(answer: &Value) -> Vec<&str> {
    answer["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "ExecFinished")
                .filter_map(|e| e["argv"][2].as_str())
                .collect()
        })
        .unwrap_or_default()
}

/// What `fill` wrote.
#[derive(Debug)]
pub struct Filled {
    pub lines: u64,
    pub bytes: u64,
    /// The last line's pod index and `n`.
    pub last_pod: usize,
    pub last_n: u64,
}

/// Write `total` bytes of exec-probe lines over `pods` pods into segments of at most
/// `per_segment` bytes (the agent rotates at an eighth of --store-max-bytes), and a heartbeat.
pub fn fill(dir: &Path, total: u64, per_segment: u64, pods: usize) -> Filled {
    std::fs::create_dir_all(dir).unwrap();
    let start = now_wall_ns() - 3_600_000_000_000;
    let (mut lines, mut bytes, mut seg_bytes, mut seq) = (0u64, 0u64, 0u64, 0u32);
    let mut out = segment(dir, seq);
    let mut last = (0, 0);
    while bytes < total {
        let pod = (lines as usize * 7) % pods;
        let mut line = exec_probe(pod, lines, start + lines as i64 * 1_000_000).to_string();
        line.push('\n');
        let len = line.len() as u64;
        if bytes + len > total {
            break;
        }
        if seg_bytes + len > per_segment {
            out.flush().unwrap();
            seq += 1;
            out = segment(dir, seq);
            seg_bytes = 0;
        }
        out.write_all(line.as_bytes()).unwrap();
        last = (pod, lines);
        lines += 1;
        bytes += len;
        seg_bytes += len;
    }
    out.flush().unwrap();
    std::fs::write(
        dir.join("heartbeat"),
        (now_wall_ns() - 1_000_000_000).to_string(),
    )
    .unwrap();
    Filled {
        lines,
        bytes,
        last_pod: last.0,
        last_n: last.1,
    }
}

fn segment(dir: &Path, seq: u32) -> std::io::BufWriter<std::fs::File> {
    std::io::BufWriter::new(std::fs::File::create(segment_path(dir, seq)).unwrap())
}

pub fn segment_path(dir: &Path, seq: u32) -> PathBuf {
    dir.join(format!("events-{seq:08}.jsonl"))
}

/// Every segment file of a state dir, by name.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("events-") && n.ends_with(".jsonl"))
        })
        .collect();
    v.sort();
    v
}

/// Every stored line of a state dir, parsed; panics on a line that is not whole JSON (a torn
/// or interleaved write). A segment's unterminated last line is left out: the agent may be
/// writing it right now (a torn line that stays is a corrupt line once the next write lands).
pub fn stored_events(dir: &Path) -> Vec<Value> {
    parse_segments(&segments(dir))
}

/// The lines of these segments, parsed, with the checks of `stored_events`.
pub fn parse_segments(segments: &[PathBuf]) -> Vec<Value> {
    let mut out = Vec::new();
    for seg in segments {
        let text =
            std::fs::read_to_string(seg).unwrap_or_else(|e| panic!("{}: {e}", seg.display()));
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        for (i, line) in whole.lines().enumerate() {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("{} line {}: not JSON ({e}): {line:?}", seg.display(), i + 1)
            });
            out.push(v);
        }
    }
    out
}
