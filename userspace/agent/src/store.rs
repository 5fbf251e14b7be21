//! Crash-safe, bounded history on disk: append-only JSON-lines segments under `--state-dir`.
//!
//! Each flush appends whole lines and fsyncs, so a crash loses at most the batch being
//! written; a torn last line is skipped on load. Old segments are deleted to keep the store
//! under its size and age bounds. A heartbeat file records when the agent was last alive, so
//! the next start can tell how long it was down.
//!
//! The store holds every pod's (redacted) command lines on a host path: the directory is 0700
//! and its files 0600, and an existing directory or segment with wider modes is narrowed.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde_json::Value;
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
}

pub struct Store {
    dir: PathBuf,
    limits: Limits,
    current: File,
    current_path: PathBuf,
    current_bytes: u64,
    next_seq: u64,
    pending: Vec<u8>,
}

/// What was on disk at open.
pub struct Loaded {
    pub events: Vec<Value>,
    /// Wall-clock ns of the last heartbeat of the previous run.
    pub last_alive_ns: Option<i128>,
    pub skipped_lines: usize,
}

const SEGMENT_PREFIX: &str = "events-";
const HEARTBEAT: &str = "heartbeat";
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

fn segments(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut segs: Vec<(u64, PathBuf)> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let seq = name
                .strip_prefix(SEGMENT_PREFIX)?
                .strip_suffix(".jsonl")?
                .parse()
                .ok()?;
            Some((seq, e.path()))
        })
        .collect();
    segs.sort();
    segs
}

impl Store {
    /// Open (creating) the store and load what earlier runs wrote.
    pub fn open(dir: &Path, limits: Limits) -> Result<(Self, Loaded), StoreError> {
        let dir_err = |source| StoreError::Dir {
            dir: dir.to_path_buf(),
            source,
        };
        private_dir(dir).map_err(dir_err)?;
        let mut events = Vec::new();
        let mut skipped_lines = 0;
        let segs = segments(dir);
        for (_, path) in &segs {
            narrow(path, FILE_MODE);
            let Ok(f) = File::open(path) else { continue };
            for line in BufReader::new(f).lines() {
                match line
                    .ok()
                    .and_then(|l| serde_json::from_str::<Value>(&l).ok())
                {
                    Some(v) => events.push(v),
                    None => skipped_lines += 1,
                }
            }
        }
        let last_alive_ns = fs::read_to_string(dir.join(HEARTBEAT))
            .ok()
            .and_then(|t| t.trim().parse().ok());
        let next_seq = segs.last().map_or(0, |(s, _)| s + 1);
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
        Ok((
            store,
            Loaded {
                events,
                last_alive_ns,
                skipped_lines,
            },
        ))
    }

    /// Queue one event; written at the next `flush`.
    pub fn append(&mut self, event: &Value) {
        if serde_json::to_writer(&mut self.pending, event).is_ok() {
            self.pending.push(b'\n');
        }
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
        self.current
            .write_all(&self.pending)
            .map_err(werr(&self.current_path))?;
        self.current.sync_data().map_err(werr(&self.current_path))?;
        self.current_bytes += self.pending.len() as u64;
        self.pending.clear();
        if self.current_bytes > self.limits.max_bytes / 8 {
            self.rotate()?;
        }
        self.prune(now_wall_ns);
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

    /// Delete the oldest closed segments beyond the size bound or older than the age bound.
    fn prune(&self, now_wall_ns: i128) {
        let segs = segments(&self.dir);
        let mut total: u64 = segs
            .iter()
            .filter_map(|(_, p)| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum();
        for (_, path) in segs.iter().filter(|(_, p)| *p != self.current_path) {
            let meta = fs::metadata(path).ok();
            let len = meta.as_ref().map_or(0, |m| m.len());
            let modified_ns = meta
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos() as i128);
            let too_old = now_wall_ns - modified_ns > self.limits.max_age_ns as i128;
            if total > self.limits.max_bytes || too_old {
                if fs::remove_file(path).is_ok() {
                    total = total.saturating_sub(len);
                }
            } else {
                break;
            }
        }
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
    use serde_json::json;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("podlife-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    const BIG: Limits = Limits {
        max_bytes: 1 << 30,
        max_age_ns: u64::MAX / 2,
    };

    #[test]
    fn survives_reopen_and_torn_line() {
        let dir = tmpdir("reopen");
        {
            let (mut s, loaded) = Store::open(&dir, BIG).unwrap();
            assert!(loaded.events.is_empty());
            s.append(&json!({"type": "PodAdmitted", "uid": "a"}));
            s.append(&json!({"type": "PodRemoved", "uid": "a"}));
            s.flush(1).unwrap();
            s.heartbeat(42).unwrap();
        }
        // A crash in the middle of a write leaves a torn line behind.
        let seg = segments(&dir)[0].1.clone();
        let mut f = OpenOptions::new().append(true).open(seg).unwrap();
        f.write_all(b"{\"type\":\"Cont").unwrap();
        let (_, loaded) = Store::open(&dir, BIG).unwrap();
        assert_eq!(loaded.events.len(), 2);
        assert_eq!(loaded.events[1]["type"], "PodRemoved");
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
            let (mut s, _) = Store::open(&dir, BIG).unwrap();
            s.append(&json!({"type": "PodAdmitted", "uid": "a"}));
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
        let (_, loaded) = Store::open(&dir, BIG).unwrap();
        assert_eq!(loaded.events.len(), 1);
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
            max_age_ns: u64::MAX / 2,
        };
        let (mut s, _) = Store::open(&dir, limits).unwrap();
        for i in 0..400 {
            s.append(&json!({"type": "ExecFinished", "n": i, "pad": "xxxxxxxxxxxxxxxxxxxxxxxx"}));
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
        let (_, loaded) = Store::open(&dir, limits).unwrap();
        assert_eq!(
            loaded.events.last().unwrap()["n"],
            399,
            "newest events are kept"
        );
        assert!(loaded.events.len() < 400);
        fs::remove_dir_all(&dir).unwrap();
    }
}
