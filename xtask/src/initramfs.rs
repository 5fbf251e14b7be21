//! A newc cpio archive built in memory: the kernel matrix VMs boot from it (`cargo xtask vm`).
//! Written by hand so no cpio/fakeroot tooling or root-owned staging tree is needed.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, Result};

use crate::setup::sh;

/// One entry, by path without the leading slash.
pub enum Entry {
    Dir,
    File {
        data: Vec<u8>,
        mode: u32,
    },
    Symlink(String),
    /// A character device node (major, minor): /dev/console must exist before /init runs,
    /// or the kernel starts it without stdin/stdout.
    CharDev(u32, u32),
}

/// Sorted by path, so parents come before their children in the archive.
#[derive(Default)]
pub struct Tree(BTreeMap<String, Entry>);

impl Tree {
    pub fn put(&mut self, path: &str, e: Entry) {
        let path = path.trim_start_matches('/');
        let mut parent = Path::new(path).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            self.0
                .entry(p.to_string_lossy().into())
                .or_insert(Entry::Dir);
            parent = p.parent();
        }
        self.0.insert(path.into(), e);
    }

    pub fn file(&mut self, path: &str, data: Vec<u8>, mode: u32) {
        self.put(path, Entry::File { data, mode });
    }

    /// An executable without its debug info (a smaller archive boots faster), plus the shared
    /// libraries `ldd` says it loads, at their host paths. `scratch` is a temporary file.
    pub fn binary(&mut self, path: &str, src: &Path, scratch: &Path) -> Result<()> {
        sh(Command::new("objcopy")
            .arg("--strip-debug")
            .arg(src)
            .arg(scratch))?;
        self.file(path, fs::read(scratch)?, 0o755);
        fs::remove_file(scratch)?;
        self.libs(src)
    }

    fn libs(&mut self, exe: &Path) -> Result<()> {
        let out = Command::new("ldd")
            .arg(exe)
            .output()
            .context("starting ldd")?;
        for lib in String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            if !self.0.contains_key(lib.trim_start_matches('/')) {
                let data = fs::read(lib).with_context(|| format!("reading {lib}"))?;
                self.file(lib, data, 0o755);
            }
        }
        Ok(())
    }

    /// Every file under `dir` (recursively) whose name ends in one of `exts`, skipping
    /// directories named in `skip`.
    pub fn copy_dir(&mut self, dir: &Path, exts: &[&str], skip: &[&str]) -> Result<()> {
        for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
            let p = e?.path();
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            if p.is_dir() && !p.is_symlink() {
                if !skip.contains(&name.as_ref()) {
                    self.copy_dir(&p, exts, skip)?;
                }
            } else if p.is_file() && exts.iter().any(|x| name.ends_with(x)) {
                self.file(&p.to_string_lossy(), fs::read(&p)?, 0o644);
            }
        }
        Ok(())
    }

    /// newc cpio, uncompressed: the kernel unpacks it as it is, faster than gunzip.
    pub fn write_cpio(&self, out: &Path) -> Result<u64> {
        let mut w = std::io::BufWriter::new(fs::File::create(out)?);
        // (name, mode, data, (rdev major, rdev minor))
        type Record<'a> = (&'a str, u32, &'a [u8], (u32, u32));
        let mut entries: Vec<Record> = Vec::new();
        for (path, e) in &self.0 {
            entries.push(match e {
                Entry::Dir => (path, 0o040755, &[], (0, 0)),
                Entry::File { data, mode } => (path, 0o100000 | mode, data, (0, 0)),
                Entry::Symlink(t) => (path, 0o120777, t.as_bytes(), (0, 0)),
                Entry::CharDev(major, minor) => (path, 0o020600, &[], (*major, *minor)),
            });
        }
        entries.push(("TRAILER!!!", 0, &[], (0, 0)));
        let mut written = 0u64;
        for (ino, (name, mode, data, (major, minor))) in entries.into_iter().enumerate() {
            // ino mode uid gid nlink mtime filesize devmajor devminor rdevmajor rdevminor
            // namesize check
            let fields = [
                ino as u32 + 1,
                mode,
                0,
                0,
                1,
                0,
                data.len() as u32,
                0,
                0,
                major,
                minor,
                name.len() as u32 + 1,
                0,
            ];
            let mut header = String::from("070701");
            for f in fields {
                header.push_str(&format!("{f:08x}"));
            }
            w.write_all(header.as_bytes())?;
            w.write_all(name.as_bytes())?;
            w.write_all(&[0])?;
            w.write_all(&[0; 3][..pad4(110 + name.len() + 1)])?;
            w.write_all(data)?;
            w.write_all(&[0; 3][..pad4(data.len())])?;
            written += (110 + name.len() + 1 + pad4(110 + name.len() + 1)) as u64
                + (data.len() + pad4(data.len())) as u64;
        }
        w.flush()?;
        Ok(written)
    }
}

fn pad4(n: usize) -> usize {
    (4 - n % 4) % 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_has_parents_first_and_aligned_entries() {
        let mut t = Tree::default();
        t.file("a/b/c", b"hello".to_vec(), 0o755);
        t.put("dev/console", Entry::CharDev(5, 1));
        let out = std::env::temp_dir().join(format!("xtask-cpio-{}", std::process::id()));
        let n = t.write_cpio(&out).unwrap();
        let data = fs::read(&out).unwrap();
        fs::remove_file(&out).unwrap();
        assert_eq!(n as usize, data.len());
        assert_eq!(data.len() % 4, 0);
        let text = String::from_utf8_lossy(&data);
        let names: Vec<usize> = ["a\0", "a/b\0", "a/b/c\0", "dev/console\0", "TRAILER!!!\0"]
            .iter()
            .map(|n| text.find(n).unwrap_or_else(|| panic!("{n:?} missing")))
            .collect();
        assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
        // The console node: mode 020600, rdev 5:1.
        let at = names[3];
        let hdr = &text[at - 110..at];
        assert_eq!(&hdr[14..22], "00002180");
        assert_eq!(&hdr[78..86], "00000005");
        assert_eq!(&hdr[86..94], "00000001");
    }
}
