//! Crash-safe, bounded history on disk: append-only JSON-lines segments under `--state-dir`.
//!
//! Each flush appends whole lines and fsyncs, so a crash loses at most the batch being
//! written; a torn last line is skipped on load. Old segments are deleted to keep the store
//! under its size and age bounds. A heartbeat file records when the agent was last alive, so
//! the next start can tell how long it was down.
//!
//! The store holds every pod's (redacted) command lines on a host path: the directory is 0700
//! and its files 0600, and an existing directory or segment with wider modes is narrowed.

pub mod writer;

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use thiserror::Error;
use tracing::warn;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("cannot use state dir {dir}: {source}; set --state-dir to a writable directory")]
    Dir {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub max_age_ns: u64,
    /// At start, at most this many bytes of the newest stored lines are loaded (the rest stays
    /// on disk until pruned): a full store never costs more memory than this to restart.
    pub load_bytes: u64,
    /// Events queued for the disk at most, in bytes (the writer thread's queue); beyond it (a
    /// full, failing or hung disk) new events are dropped and counted.
    pub pending_bytes: usize,
}

pub struct Store {
    dir: PathBuf,
    limits: Limits,
    current: File,
    current_path: PathBuf,
    current_bytes: u64,
    next_seq: u64,
    /// A batch taken from the writer's queue, kept until written (retried after a failure).
    pending: Vec<u8>,
}

/// What loading found on disk (the events themselves went to the caller one by one).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    pub events: usize,
    /// Wall-clock ns of the last heartbeat of the previous run.
    pub last_alive_ns: Option<i128>,
    /// Torn, corrupt or oversized lines skipped.
    pub skipped_lines: usize,
    /// Segments that could not be read to their end (I/O error, not a file).
    pub unreadable_segments: usize,
    /// Bytes of older stored lines left unloaded by the load budget.
    pub unloaded_bytes: u64,
}

const SEGMENT_PREFIX: &str = "events-";
const HEARTBEAT: &str = "heartbeat";
/// A stored line longer than this is not one the agent wrote: skipped, never buffered whole.
const MAX_LINE: usize = 64 << 10;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;

/// Create `dir` (and its missing parents) 0700; narrow an existing one that others can read.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)?;
    narrow(dir, DIR_MODE);
    Ok(())
}

/// Take group and other permissions off a path made by an older agent (or a hostPath the
/// kubelet created 0755). A failure is not fatal: it is said once, with what to do.
fn narrow(path: &Path, mode: u32) {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return;
    };
    if meta.permissions().mode() & 0o077 == 0 {
        return;
    }
    if let Err(e) = fs::set_permissions(path, fs::Permissions::from_mode(mode)) {
        warn!(
            "{} is readable by others (mode {:o}) and cannot be narrowed to {mode:o}: {e}; chmod it on the host",
            path.display(),
            meta.permissions().mode() & 0o7777
        );
    }
}

/// A new file only the agent can read; never through a symlink planted in the directory.
fn create_private(path: &Path, append: bool) -> std::io::Result<File> {
    let mut o = OpenOptions::new();
    if append {
        o.append(true);
    } else {
        o.write(true).truncate(true);
    }
    o.create(true)
        .mode(FILE_MODE)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// Segment files by sequence number (regular files only: a directory named like a segment is
/// not one).
fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| Some((seq_of(&e.file_name())?, e.path())))
        .collect();
    segs.sort();
    segs
}

fn seq_of(name: &std::ffi::OsStr) -> Option<u64> {
    let name = name.to_str()?;
    name.strip_prefix(SEGMENT_PREFIX)?
        .strip_suffix(".jsonl")?
        .parse()
        .ok()
}

/// The first sequence number after every name that looks like a segment, files or not: a
/// directory named like the next segment must not turn the store off.
fn next_free_seq(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| seq_of(&e.file_name()))
        .max()
        .map_or(0, |s| s + 1)
}

/// Delete the oldest segments (but `keep`) beyond the size bound or older than the age bound.
fn prune(dir: &Path, limits: Limits, now_wall_ns: i128, keep: Option<&Path>) {
    let segs = segments(dir);
    let mut total: u64 = segs
        .iter()
        .filter_map(|(_, p)| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    for (_, path) in segs.iter().filter(|(_, p)| Some(p.as_path()) != keep) {
        let meta = fs::metadata(path).ok();
        let len = meta.as_ref().map_or(0, |m| m.len());
        let modified_ns = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos() as i128);
        let too_old = now_wall_ns.saturating_sub(modified_ns) > i128::from(limits.max_age_ns);
        if total > limits.max_bytes || too_old {
            if fs::remove_file(path).is_ok() {
                total = total.saturating_sub(len);
            }
        } else {
            break;
        }
    }
}

/// Stream the lines of one segment from `offset` (skipping to the first whole line when the
/// offset is inside one) into `on_event`. Stops at the first read error.
fn load_segment<T: DeserializeOwned>(
    path: &Path,
    offset: u64,
    loaded: &mut Loaded,
    on_event: &mut dyn FnMut(T),
) {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let Ok(mut f) = File::open(path) else {
        loaded.unreadable_segments += 1;
        return;
    };
    if offset > 0 && f.seek(SeekFrom::Start(offset - 1)).is_err() {
        loaded.unreadable_segments += 1;
        return;
    }
    let mut r = BufReader::new(f);
    let mut line = Vec::new();
    // Started mid-file: the byte before `offset` tells whether a whole line starts there.
    let mut partial = offset > 0;
    if partial {
        let mut b = [0u8; 1];
        match r.read_exact(&mut b) {
            Ok(()) => partial = b[0] != b'\n',
            Err(_) => {
                loaded.unreadable_segments += 1;
                return;
            }
        }
    }
    loop {
        line.clear();
        // Bounded read of one line: a tenant cannot make the agent buffer a huge one.
        let n = match (&mut r)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => return,
            Ok(n) => n,
            Err(_) => {
                loaded.unreadable_segments += 1;
                return;
            }
        };
        if n > MAX_LINE {
            loaded.skipped_lines += 1;
            if line.ends_with(b"\n") {
                continue;
            }
            // Skip the rest of the oversized line.
            let mut rest = Vec::new();
            loop {
                rest.clear();
                match (&mut r).take(MAX_LINE as u64).read_until(b'\n', &mut rest) {
                    Ok(0) => return,
                    Ok(_) if rest.ends_with(b"\n") => break,
                    Ok(_) => continue,
                    Err(_) => {
                        loaded.unreadable_segments += 1;
                        return;
                    }
                }
            }
            continue;
        }
        if std::mem::take(&mut partial) {
            continue;
        }
        // A line this agent cannot read (corrupt, or of a kind or value it does not know) is
        // skipped and counted.
        match serde_json::from_slice::<T>(&line) {
            Ok(v) => {
                loaded.events += 1;
                on_event(v);
            }
            Err(_) => loaded.skipped_lines += 1,
        }
    }
}

impl Store {
    /// Open (creating) the store: prune what is beyond the bounds, then stream the newest
    /// stored events, at most `limits.load_bytes` of them, oldest first, into `on_event`
    /// (read as `T`: the agent's `ServedEvent`).
    pub fn open<T: DeserializeOwned>(
        dir: &Path,
        limits: Limits,
        now_wall_ns: i128,
        mut on_event: impl FnMut(T),
    ) -> Result<(Self, Loaded), StoreError> {
        let dir_err = |source| StoreError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        private_dir(dir).map_err(dir_err)?;
        prune(dir, limits, now_wall_ns, None);
        let segs = segments(dir);
        let mut loaded = Loaded::default();
        // Newest first until the budget is spent; the oldest chosen one may be read from
        // its middle.
        let mut budget = limits.load_bytes;
        let mut chosen = Vec::new();
        for (_, path) in segs.iter().rev() {
            narrow(path, FILE_MODE);
            let len = fs::metadata(path).map_or(0, |m| m.len());
            if budget == 0 {
                loaded.unloaded_bytes += len;
                continue;
            }
            let take = len.min(budget);
            budget -= take;
            loaded.unloaded_bytes += len - take;
            chosen.push((path, len - take));
        }
        for (path, offset) in chosen.into_iter().rev() {
            load_segment(path, offset, &mut loaded, &mut on_event);
        }
        loaded.last_alive_ns = fs::read_to_string(dir.join(HEARTBEAT))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let next_seq = next_free_seq(dir);
        let current_path = dir.join(format!("{SEGMENT_PREFIX}{next_seq:08}.jsonl"));
        narrow(&dir.join(HEARTBEAT), FILE_MODE);
        let current = create_private(&current_path, true).map_err(dir_err)?;
        let store = Self {
            dir: dir.to_path_buf(),
            limits,
            current,
            current_path,
            current_bytes: 0,
            next_seq: next_seq + 1,
            pending: Vec::new(),
        };
        Ok((store, loaded))
    }

    /// Queue one event's JSON line (without its newline); written at the next `flush`. (The
    /// agent queues through `store_writer::StoreSink`, which bounds the queue.)
    #[cfg(test)]
    pub fn append(&mut self, line: &str) {
        self.pending.extend_from_slice(line.as_bytes());
        self.pending.push(b'\n');
    }

    /// Whether a batch waits to be written (a failed write is retried before anything new).
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Hand the store a batch of whole lines (the writer thread's queue, already bounded),
    /// once the previous batch is written: a failed batch is retried before anything new.
    pub fn queue_batch(&mut self, bytes: Vec<u8>) {
        debug_assert!(self.pending.is_empty(), "a batch still waits");
        self.pending = bytes;
    }

    /// Write queued events and fsync. Rotates and prunes old segments.
    pub fn flush(&mut self, now_wall_ns: i128) -> Result<(), StoreError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let werr = |path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Write { path, source }
        };
        let written = self
            .current
            .write_all(&self.pending)
            .and_then(|()| self.current.sync_data());
        if let Err(e) = written {
            // Cut what part of the batch reached the file, so the retry at the next flush
            // does not write its first lines twice; the batch stays queued (bounded).
            let _ = self.current.set_len(self.current_bytes);
            return Err(werr(&self.current_path)(e));
        }
        self.current_bytes += self.pending.len() as u64;
        self.pending.clear();
        if self.current_bytes > self.limits.max_bytes / 8 {
            self.rotate()?;
        }
        prune(
            &self.dir,
            self.limits,
            now_wall_ns,
            Some(&self.current_path),
        );
        Ok(())
    }

    fn rotate(&mut self) -> Result<(), StoreError> {
        let path = self
            .dir
            .join(format!("{SEGMENT_PREFIX}{:08}.jsonl", self.next_seq));
        self.current = create_private(&path, true).map_err(|source| StoreError::Write {
            path: path.clone(),
            source,
        })?;
        self.current_path = path;
        self.current_bytes = 0;
        self.next_seq += 1;
        Ok(())
    }

    /// Record that the agent is alive now (atomic replace).
    pub fn heartbeat(&self, now_wall_ns: i128) -> Result<(), StoreError> {
        let tmp = self.dir.join(".heartbeat.tmp");
        let werr = |source| StoreError::Write {
            path: tmp.clone(),
            source,
        };
        // Removed first: a leftover from an older agent would keep its mode.
        let _ = fs::remove_file(&tmp);
        let mut f = create_private(&tmp, false).map_err(werr)?;
        f.write_all(now_wall_ns.to_string().as_bytes())
            .map_err(werr)?;
        f.sync_data().map_err(werr)?;
        fs::rename(&tmp, self.dir.join(HEARTBEAT)).map_err(werr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("podlife-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    const BIG: Limits = Limits {
        max_bytes: 1 << 30,
        max_age_ns: u64::MAX / 2,
        load_bytes: 1 << 30,
        pending_bytes: 1 << 20,
    };

    /// Open and collect what was loaded.
    fn open(dir: &Path, limits: Limits) -> (Store, Vec<Value>, Loaded) {
        let mut events = Vec::new();
        let (s, loaded) = Store::open(dir, limits, 1, |v| events.push(v)).unwrap();
        (s, events, loaded)
    }

    #[test]
    fn survives_reopen_and_torn_line() {
        let dir = tmpdir("reopen");
        {
            let (mut s, events, _) = open(&dir, BIG);
            assert!(events.is_empty());
            s.append(&json!({"type": "PodAdmitted", "uid": "a"}).to_string());
            s.append(&json!({"type": "PodRemoved", "uid": "a"}).to_string());
            s.flush(1).unwrap();
            s.heartbeat(42).unwrap();
        }
        // A crash in the middle of a write leaves a torn line behind.
        let seg = segments(&dir)[0].1.clone();
        let mut f = OpenOptions::new().append(true).open(seg).unwrap();
        f.write_all(b"{\"type\":\"Cont").unwrap();
        let (_, events, loaded) = open(&dir, BIG);
        assert_eq!(events.len(), 2);
        assert_eq!(events[1]["type"], "PodRemoved");
        assert_eq!(loaded.skipped_lines, 1);
        assert_eq!(loaded.last_alive_ns, Some(42));
        fs::remove_dir_all(&dir).unwrap();
    }

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_store_is_private() {
        // Before: create_dir_all and OpenOptions gave 0755 and 0644 (umask 022): every user
        // on the node could read every pod's command lines.
        let dir = tmpdir("modes");
        {
            let (mut s, _, _) = open(&dir, BIG);
            s.append(&json!({"type": "PodAdmitted", "uid": "a"}).to_string());
            s.flush(1).unwrap();
            s.heartbeat(1).unwrap();
        }
        assert_eq!(mode(&dir), 0o700, "new state dir");
        for f in fs::read_dir(&dir).unwrap() {
            let p = f.unwrap().path();
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
        // What an older agent (or the kubelet's DirectoryOrCreate) left: narrowed at open.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let seg = segments(&dir)[0].1.clone();
        fs::set_permissions(&seg, fs::Permissions::from_mode(0o644)).unwrap();
        fs::set_permissions(dir.join(HEARTBEAT), fs::Permissions::from_mode(0o644)).unwrap();
        let (_, _, loaded) = open(&dir, BIG);
        assert_eq!(loaded.events, 1);
        assert_eq!(mode(&dir), 0o700, "existing state dir");
        assert_eq!(mode(&seg), 0o600, "existing segment");
        assert_eq!(mode(&dir.join(HEARTBEAT)), 0o600, "existing heartbeat");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn size_bound_drops_oldest_segments() {
        let dir = tmpdir("bound");
        let limits = Limits {
            max_bytes: 4096,
            ..BIG
        };
        let (mut s, _, _) = open(&dir, limits);
        for i in 0..400 {
            s.append(
                &json!({"type": "ExecFinished", "n": i, "pad": "xxxxxxxxxxxxxxxxxxxxxxxx"})
                    .to_string(),
            );
            s.flush(1).unwrap();
        }
        let total: u64 = segments(&dir)
            .iter()
            .map(|(_, p)| fs::metadata(p).unwrap().len())
            .sum();
        assert!(
            total <= 4096 + 4096 / 8 + 100,
            "store grew to {total} bytes"
        );
        let (_, events, _) = open(&dir, limits);
        assert_eq!(events.last().unwrap()["n"], 399, "newest events are kept");
        assert!(events.len() < 400);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_budget_takes_the_newest_whole_lines_in_order() {
        let dir = tmpdir("budget");
        let write = Limits {
            max_bytes: 64 << 10, // segments of 8 KiB
            ..BIG
        };
        let (mut s, _, _) = open(&dir, write);
        for i in 0..1000 {
            s.append(&json!({"type": "ExecFinished", "n": i}).to_string());
            s.flush(1).unwrap();
        }
        drop(s);
        assert!(segments(&dir).len() > 2, "the test needs several segments");
        let budget = Limits {
            load_bytes: 10_000,
            ..write
        };
        let (_, events, loaded) = open(&dir, budget);
        let ns: Vec<i64> = events.iter().map(|e| e["n"].as_i64().unwrap()).collect();
        assert_eq!(*ns.last().unwrap(), 999, "the newest event is loaded");
        assert!(
            ns.windows(2).all(|w| w[1] == w[0] + 1),
            "in order, no gap: {ns:?}"
        );
        let bytes: usize = events.iter().map(|e| e.to_string().len() + 1).sum();
        assert!(bytes <= 10_000, "{bytes} bytes loaded over a 10000 budget");
        assert!(bytes > 9_000, "the budget is used: {bytes}");
        assert_eq!(
            loaded.skipped_lines, 0,
            "a line cut by the budget is not corrupt"
        );
        assert!(loaded.unloaded_bytes > 0);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_named_like_a_segment_and_bad_lines_are_skipped_and_counted() {
        let dir = tmpdir("bad");
        fs::create_dir_all(dir.join("events-00000000.jsonl")).unwrap();
        let mut long = vec![b'x'; MAX_LINE * 3];
        long.push(b'\n');
        let mut text = b"{\"type\":\"PodAdmitted\",\"uid\":\"a\"}\nnot json\n".to_vec();
        text.extend_from_slice(&long);
        text.extend_from_slice(b"{\"type\":\"PodRemoved\",\"uid\":\"a\"}\n");
        fs::write(dir.join("events-00000001.jsonl"), text).unwrap();
        // Where the next segment would go: the store steps over it instead of failing to open.
        fs::create_dir_all(dir.join("events-00000002.jsonl")).unwrap();
        // Loading terminates (it used to spin on the directory's read error forever).
        let (_, events, loaded) = open(&dir, BIG);
        let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["PodAdmitted", "PodRemoved"]);
        assert_eq!(
            loaded.skipped_lines, 2,
            "the corrupt and the oversized line"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn typed_events_round_trip_and_unknown_kinds_are_skipped_and_counted() {
        let dir = tmpdir("typed");
        let ev = crate::pipeline::history::test_event("a", 7, 5);
        {
            let (mut s, _, _) = open(&dir, BIG);
            s.append(&ev.to_json(podlife_core::Fields::All));
            // What a newer agent might write: a kind this one does not know.
            s.append(
                r#"{"type":"PodTeleported","uid":"a","seq":1,"ts_wall_ns":6,"source":"kernel"}"#,
            );
            s.flush(1).unwrap();
        }
        let mut events = Vec::new();
        let (_, loaded) =
            Store::open(&dir, BIG, 1, |e: podlife_core::ServedEvent| events.push(e)).unwrap();
        assert_eq!(events, [ev]);
        assert_eq!(loaded.skipped_lines, 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
