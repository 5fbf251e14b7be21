//! What the VMs boot from: the suite's test binaries and the agent (from cargo's build
//! messages) and the initramfs around them.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _, Result};

use super::{cache, e2e, root, Suite};
use crate::initramfs::{Entry, Tree};
use crate::setup::output;

pub(super) struct Binaries {
    /// (test target name, executable)
    pub tests: Vec<(String, PathBuf)>,
    pub agent: PathBuf,
}

/// The string value of `"key":"…"` at or after `from` in a cargo JSON message.
fn json_str(line: &str, key: &str, from: usize) -> Option<String> {
    let pat = format!("\"{key}\":\"");
    let start = from + line.get(from..)?.find(&pat)? + pat.len();
    let mut out = String::new();
    let mut chars = line[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// Whether an integration test target belongs to the suite: the kernel suite is the podlife
/// package's kernel_* and skeleton_kernel (kube_api needs no kernel); the e2e suite's VM subset
/// is listed in e2e.rs.
fn wanted(suite: Suite, name: &str) -> bool {
    match suite {
        Suite::Kernel => name.starts_with("kernel_") || name.ends_with("_kernel"),
        Suite::E2e => e2e::TESTS.contains(&name),
    }
}

/// Executables of the suite's tests and of the agent, from cargo's artifact messages.
fn parse_artifacts(json: &str, suite: Suite) -> Result<Binaries> {
    let mut tests = std::collections::BTreeMap::new();
    let mut agent = None;
    for line in json.lines() {
        if !line.starts_with("{\"reason\":\"compiler-artifact\"") {
            continue;
        }
        let Some(t) = line.find("\"target\":{") else {
            continue;
        };
        let (Some(name), Some(exe)) = (json_str(line, "name", t), json_str(line, "executable", t))
        else {
            continue;
        };
        let kind = &line[t..];
        let unit_test = line
            .find("\"profile\":{")
            .is_some_and(|p| line[p..].contains("\"test\":true"));
        if kind.starts_with("\"target\":{\"kind\":[\"test\"]") {
            if wanted(suite, &name) {
                tests.insert(name, PathBuf::from(exe));
            }
        } else if kind.starts_with("\"target\":{\"kind\":[\"bin\"]")
            && name == "podlife"
            && !unit_test
        {
            agent = Some(PathBuf::from(exe));
        }
    }
    if tests.is_empty() {
        bail!(
            "cargo built no integration test of the {} suite",
            suite.name()
        );
    }
    if suite == Suite::E2e && tests.len() != e2e::TESTS.len() {
        bail!(
            "the e2e build lacks some of {:?}: got {:?}",
            e2e::TESTS,
            tests.keys().collect::<Vec<_>>()
        );
    }
    Ok(Binaries {
        tests: tests.into_iter().collect(),
        agent: agent.context("cargo built no podlife binary")?,
    })
}

/// The suite's test binaries and the agent. Release by default: under TCG the agent's
/// load-and-attach takes half the time of a debug build's (3-7 s against 7-14 s per load, 23
/// loads per VM). In `cargo xtask test` the e2e suite's release build comes first, so the
/// dependencies and the eBPF object are already built.
pub(super) fn build(run_cargo: bool, release: bool, suite: Suite) -> Result<Binaries> {
    let saved = cache().join(format!("artifacts-{}.json", suite.name()));
    if !run_cargo {
        let json = fs::read_to_string(&saved).context("--no-build: no saved build")?;
        return parse_artifacts(&json, suite);
    }
    // The kernel suite's tests build the agent too; the e2e tests run it as a separate binary.
    let steps: &[&[&str]] = match suite {
        Suite::Kernel => &[&["test", "-p", "podlife", "--tests", "--no-run"]],
        Suite::E2e => &[
            &["build", "-p", "podlife", "--bin", "podlife"],
            &["test", "-p", "podlife-e2e", "--tests", "--no-run"],
        ],
    };
    let mut json = String::new();
    for args in steps {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let out = Command::new(cargo)
            .current_dir(root())
            .args(*args)
            .args(release.then_some("--release"))
            .args(["--message-format=json-render-diagnostics"])
            .stderr(Stdio::inherit())
            .output()
            .context("starting cargo")?;
        if !out.status.success() {
            bail!("cargo {} failed: {}", args.join(" "), out.status);
        }
        json.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    fs::write(&saved, json.as_bytes())?;
    parse_artifacts(&json, suite)
}

/// `module_dirs`: the kernels' extracted modules, for the e2e suite.
pub(super) fn make_initramfs(
    bins: &Binaries,
    suite: Suite,
    module_dirs: &[&Path],
) -> Result<(PathBuf, u64)> {
    let mut tree = Tree::default();
    for d in ["proc", "sys", "tmp", "run", "root", "etc"] {
        tree.put(d, Entry::Dir);
    }
    tree.put("dev/console", Entry::CharDev(5, 1));
    let init = root().join("xtask/vm/init.sh");
    let script = fs::read(&init).with_context(|| init.display().to_string())?;
    tree.file("init", script, 0o755);
    for applet in output(Command::new("/bin/busybox").arg("--list-full"))?.lines() {
        tree.put(applet, Entry::Symlink("/bin/busybox".into()));
    }
    // After the applets: the list names bin/busybox itself.
    tree.file("bin/busybox", fs::read("/bin/busybox")?, 0o755);
    let scratch = cache().join("stripped");
    // Real tools where the tests depend on their behaviour, over busybox's applets: dash (the
    // fake runtime shim is a copy of it), util-linux unshare/nsenter, stress-ng (the storm),
    // bpftool (program names), python3 (a threaded process).
    for tool in [
        "/bin/dash",
        "/usr/bin/unshare",
        "/usr/bin/nsenter",
        "/usr/bin/stress-ng",
        "/usr/sbin/bpftool",
    ] {
        tree.binary(tool, Path::new(tool), &scratch)?;
    }
    let python = fs::canonicalize("/usr/bin/python3")?;
    let version = python.file_name().unwrap().to_string_lossy().into_owned();
    tree.binary(&python.to_string_lossy(), &python, &scratch)?;
    tree.put("usr/bin/python3", Entry::Symlink(version.clone()));
    // The standard library's sources only (no C extensions are imported by the test).
    let stdlib = Path::new("/usr/lib").join(&version);
    tree.copy_dir(
        &stdlib,
        &[".py"],
        &[
            "test",
            "tests",
            "idlelib",
            "tkinter",
            "lib2to3",
            "pydoc_data",
            "distutils",
            "ensurepip",
            "site-packages",
            "dist-packages",
            "__pycache__",
            "lib-dynload",
        ],
    )?;
    tree.put(&format!("{}/lib-dynload", stdlib.display()), Entry::Dir);
    tree.binary("bin/podlife", &bins.agent, &scratch)?;
    for (name, exe) in &bins.tests {
        tree.binary(&format!("tests/{name}"), exe, &scratch)?;
    }
    if suite == Suite::E2e {
        e2e::add_to_initramfs(&mut tree, &scratch, module_dirs)?;
    }
    let out = cache().join(format!("initramfs-{}.cpio", suite.name()));
    let size = tree.write_cpio(&out)?;
    Ok((out, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_pick_kernel_tests_and_the_agent() {
        let json = r#"{"reason":"compiler-artifact","target":{"kind":["test"],"crate_types":["bin"],"name":"kernel_cgroups","src_path":"x"},"profile":{"test":true},"executable":"/t/kernel_cgroups-1"}
{"reason":"compiler-artifact","target":{"kind":["test"],"crate_types":["bin"],"name":"kube_api","src_path":"x"},"profile":{"test":true},"executable":"/t/kube_api-1"}
{"reason":"compiler-artifact","target":{"kind":["lib"],"crate_types":["lib"],"name":"podlife"},"profile":{"test":false},"executable":null}
{"reason":"compiler-artifact","target":{"kind":["bin"],"crate_types":["bin"],"name":"podlife","test":true},"profile":{"test":true},"executable":"/t/podlife-unit"}
{"reason":"compiler-artifact","target":{"kind":["bin"],"crate_types":["bin"],"name":"podlife","test":true},"profile":{"test":false},"executable":"/t/podlife"}"#;
        let b = parse_artifacts(json, Suite::Kernel).unwrap();
        assert_eq!(
            b.tests,
            vec![("kernel_cgroups".into(), "/t/kernel_cgroups-1".into())]
        );
        assert_eq!(b.agent, PathBuf::from("/t/podlife"));
    }
}
