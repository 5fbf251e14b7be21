//! Convert a reference kernel trace (bpftrace text, or the decoded `.summary.txt` form) into
//! `KernelEvent` JSON lines, the format `podlife record` writes and the replay tests read.
//!
//! ```text
//! cargo run -p podlife-core --example trace2jsonl -- TRACE [BASE_NS] > fixture.jsonl
//! ```
//! bpftrace lines carry absolute monotonic ns; summary lines carry `+<ms>` relative to the start
//! of the phase, added to BASE_NS. execve (argv) and exec (filename) lines of one pid are merged
//! into one Exec event, as the agent merges sys_enter_execve and sched_process_exec. bpftrace
//! joins argv with spaces: `sh -c <script>` is split back into three words, anything else at
//! whitespace. `kill` syscall lines are dropped (signal_generate tells the same).

use std::collections::HashMap;
use std::io::Write as _;

use podlife_core::kernel_event::clone as cf;
use podlife_core::{
    ExitStatus, KernelEvent, KernelEventKind as K, SignalHandler, SignalResult, SI_KERNEL, SI_USER,
};

#[derive(Default)]
struct Converter {
    /// argv of an execve waiting for its exec, by pid.
    argv: HashMap<u32, Vec<String>>,
    /// Last cgroup v2 id seen for a pid (cgroup events do not carry the one of current).
    cg: HashMap<u32, u64>,
}

fn split_argv(s: &str) -> Vec<String> {
    let s = s.trim();
    if let Some(script) = s.strip_prefix("sh -c ") {
        return vec!["sh".into(), "-c".into(), script.into()];
    }
    s.split_whitespace().map(str::to_string).collect()
}

fn num(s: &str) -> u64 {
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).unwrap_or(0),
        None => s.parse().unwrap_or(0),
    }
}

fn ns_flags(s: &str) -> u64 {
    s.split('|')
        .map(|f| match f {
            "MNT" => cf::CLONE_NEWNS,
            "UTS" => cf::CLONE_NEWUTS,
            "IPC" => cf::CLONE_NEWIPC,
            "PID" => cf::CLONE_NEWPID,
            "NET" => cf::CLONE_NEWNET,
            "USER" => cf::CLONE_NEWUSER,
            "CGROUP" => cf::CLONE_NEWCGROUP,
            "VM" => 0x100,
            "FS" => 0x200,
            "FILES" => 0x400,
            "SIGHAND" => 0x800,
            "VFORK" => 0x4000,
            "PARENT" => 0x8000,
            "THREAD" => cf::CLONE_THREAD,
            "CHILD_CLEARTID" => 0x20_0000,
            "CHILD_SETTID" => 0x100_0000,
            other => num(other),
        })
        .fold(0, |a, b| a | b)
}

fn signal_number(name: &str) -> i32 {
    const NAMES: [&str; 16] = [
        "", "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE",
        "SIGKILL", "SIGUSR1", "SIGSEGV", "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM",
    ];
    NAMES.iter().position(|n| *n == name).map_or_else(
        || name.trim_start_matches("SIG").parse().unwrap_or(0),
        |i| i as i32,
    )
}

/// `comm[pid/tid]` or `comm[pid]` (comm may itself hold brackets: `runc:[1:CHILD][12127]`).
fn task(s: &str) -> (String, u32, u32) {
    let open = s.rfind('[').unwrap_or(0);
    let ids = s[open + 1..].trim_end_matches(']');
    let (pid, tid) = ids.split_once('/').unwrap_or((ids, ids));
    let pid = pid.parse().unwrap_or(0);
    (s[..open].to_string(), pid, tid.parse().unwrap_or(pid))
}

fn kv(rest: &str) -> HashMap<&str, &str> {
    let mut m = HashMap::new();
    let mut rest = rest;
    while let Some((k, v)) = rest.split_once('=') {
        let k = k.trim();
        if k == "argv" || k == "path" {
            m.insert(k, v.trim_end());
            break;
        }
        let (v, next) = v.split_once(' ').unwrap_or((v, ""));
        m.insert(k, v);
        rest = next;
    }
    m
}

impl Converter {
    fn event(
        &mut self,
        ts_ns: u64,
        pid: u32,
        tid: u32,
        cg: u64,
        comm: &str,
        kind: K,
    ) -> KernelEvent {
        self.cg.insert(pid, cg);
        KernelEvent {
            ts_ns,
            tgid: pid,
            tid,
            cgroup_id: cg,
            comm: comm.into(),
            kind,
        }
    }

    fn cgroup(
        &mut self,
        ts: u64,
        kind: &str,
        pid: u32,
        comm: &str,
        f: [u64; 4],
        path: &str,
    ) -> KernelEvent {
        let [root, id, level, task] = f;
        let (root, level) = (root as i32, level as i32);
        let path = path.to_string();
        let k = match kind {
            "cgroup_mkdir" => K::CgroupMkdir {
                root,
                id,
                level,
                path,
            },
            "cgroup_rmdir" => K::CgroupRmdir {
                root,
                id,
                level,
                path,
            },
            _ => K::CgroupAttach {
                root,
                id,
                level,
                path,
                pid: task as u32,
            },
        };
        let cg = self.cg.get(&pid).copied().unwrap_or(1);
        self.event(ts, pid, pid, cg, comm, k)
    }

    fn exec(&mut self, pid: u32, filename: &str, old_tid: u32) -> K {
        K::Exec {
            filename: filename.to_string(),
            argv: self.argv.remove(&pid).unwrap_or_default(),
            argv_truncated: false,
            old_tid,
        }
    }

    /// `<ns> <event> pid= tid= comm= cg= ...`
    fn bpftrace(&mut self, line: &str) -> Option<KernelEvent> {
        let mut it = line.splitn(3, ' ');
        let ts: u64 = it.next()?.parse().ok()?;
        let kind = it.next()?;
        let f = kv(it.next().unwrap_or(""));
        let n = |k: &str| f.get(k).map_or(0, |v| num(v));
        let pid = n("pid") as u32;
        let tid = f.get("tid").map_or(pid, |v| num(v) as u32);
        let comm = f.get("comm").copied().unwrap_or("");
        let cg = n("cg");
        let k = match kind {
            "execve" => {
                self.argv
                    .insert(pid, split_argv(f.get("argv").copied().unwrap_or("")));
                return None;
            }
            "exec" => self.exec(
                pid,
                f.get("filename").copied().unwrap_or(""),
                n("old_pid") as u32,
            ),
            "newtask" => K::Fork {
                child_tgid: n("child") as u32,
                clone_flags: n("clone_flags"),
            },
            "exit" => K::Exit {
                status: Some(ExitStatus::from_wait_status(n("exit_code") as u32)),
            },
            "signal_generate" => K::SignalGenerate {
                sig: n("sig") as i32,
                target_pid: n("target_pid") as u32,
                target_comm: f.get("target_comm").copied().unwrap_or("").into(),
                code: n("code") as i32,
                group: n("group") != 0,
                result: SignalResult::from_raw(n("result") as i32),
            },
            "signal_deliver" => K::SignalDeliver {
                sig: n("sig") as i32,
                code: n("code") as i32,
                handler: SignalHandler::from_raw(n("sa_handler")),
            },
            "setns" => K::Setns {
                nstype: n("nstype"),
                fd: n("fd") as i32,
                ret: n("ret") as i32,
            },
            "unshare" => K::Unshare { flags: n("flags") },
            "oom_mark_victim" => K::OomVictim {
                pid: n("victim") as u32,
                info: Box::new(podlife_core::OomVictimInfo {
                    victim_comm: f.get("victim_comm").map(|s| podlife_core::Comm::new(s)),
                    total_vm_kb: f.get("total_vm_kb").map(|v| num(v)),
                    anon_rss_kb: f.get("anon_rss_kb").map(|v| num(v)),
                    file_rss_kb: f.get("file_rss_kb").map(|v| num(v)),
                    shmem_rss_kb: f.get("shmem_rss_kb").map(|v| num(v)),
                    pgtables_kb: f.get("pgtables_kb").map(|v| num(v)),
                    oom_score_adj: f.get("oom_score_adj").map(|v| v.parse().unwrap_or(0)),
                }),
            },
            "cgroup_mkdir" | "cgroup_rmdir" | "cgroup_attach" => {
                let fields = [n("root"), n("id"), n("level"), n("task")];
                let path = f.get("path").copied().unwrap_or("");
                return Some(self.cgroup(ts, kind, pid, comm, fields, path));
            }
            _ => return None,
        };
        Some(self.event(ts, pid, tid, cg, comm, k))
    }

    /// `+ <ms>ms  <event> <fields>` of the decoded summaries.
    fn summary(&mut self, line: &str, base: u64) -> Option<KernelEvent> {
        let line = line.strip_prefix('+')?.trim_start();
        let (ms, rest) = line.split_once("ms")?;
        let ts = base + (ms.trim().parse::<f64>().ok()? * 1e6).round() as u64;
        let rest = rest.trim_start();
        let (kind, rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let rest = rest.trim_start();
        if let Some(hier) = kind.strip_prefix("cgroup_") {
            return self.summary_cgroup(ts, hier, rest);
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let field = |k: &str| {
            words
                .iter()
                .find_map(|w| w.strip_prefix(k).and_then(|v| v.strip_prefix('=')))
                .unwrap_or("")
        };
        let (task_word, at) = match kind {
            "SIGNAL" | "OOM" => (words.get(1).copied()?, 2),
            "deliver" => (words.get(2).copied()?, 3),
            "kill()" => return None,
            _ => (words.first().copied()?, 1),
        };
        let (comm, pid, tid) = task(task_word);
        let mut cg = num(field("cg"));
        let k = match kind {
            "execve" => {
                let argv = rest.split_once("argv: ").map_or("", |x| x.1);
                self.argv.insert(pid, split_argv(argv));
                return None;
            }
            "exec" => self.exec(pid, words.get(at + 1).copied().unwrap_or(""), pid),
            "clone" => K::Fork {
                child_tgid: words.get(at + 3).and_then(|c| c.parse().ok()).unwrap_or(0),
                clone_flags: ns_flags(field("flags")),
            },
            "EXIT" => {
                let raw = rest.split_once("exit_code=").map_or("0", |x| x.1);
                let raw = raw.split(')').next().unwrap_or("0");
                K::Exit {
                    status: Some(ExitStatus::from_wait_status(num(raw) as u32)),
                }
            }
            "setns" => K::Setns {
                nstype: ns_flags(field("nstype")),
                fd: num(field("fd")) as i32,
                ret: field("ret").parse().unwrap_or(0),
            },
            "unshare" => K::Unshare {
                flags: ns_flags(field("flags")),
            },
            "SIGNAL" => {
                let (target_comm, target, _) = task(words.get(4).copied()?);
                K::SignalGenerate {
                    sig: signal_number(words[0]),
                    target_pid: target,
                    target_comm: target_comm.into(),
                    code: match field("code") {
                        "SI_KERNEL" => SI_KERNEL,
                        "SI_USER" => SI_USER,
                        c => c.parse().unwrap_or(0),
                    },
                    group: true,
                    result: match field("result") {
                        "delivered" => SignalResult::Delivered,
                        "ignored" => SignalResult::Ignored,
                        "already_pending" => SignalResult::AlreadyPending,
                        r => SignalResult::from_raw(r.parse().unwrap_or(0)),
                    },
                }
            }
            "deliver" => K::SignalDeliver {
                sig: signal_number(words[1]),
                code: 0,
                handler: SignalHandler::from_raw(num(field("handler"))),
            },
            "OOM" => {
                // `OOM victim memhog[12364] anon_rss_kb=… (in context of memhog[12364] cg=481)`
                let ctx = rest.split_once("in context of ").map_or("", |x| x.1);
                let ctx_task = ctx.split_whitespace().next().unwrap_or("");
                let (ctx_comm, ctx_pid, _) = task(ctx_task);
                cg = num(field("cg").trim_end_matches(')'));
                let kind = K::OomVictim {
                    pid,
                    info: Box::new(podlife_core::OomVictimInfo {
                        victim_comm: Some(comm.as_str().into()),
                        total_vm_kb: None,
                        anon_rss_kb: Some(num(field("anon_rss_kb"))),
                        file_rss_kb: None,
                        shmem_rss_kb: None,
                        pgtables_kb: None,
                        oom_score_adj: field("oom_score_adj").parse().ok(),
                    }),
                };
                return Some(self.event(ts, ctx_pid, ctx_pid, cg, &ctx_comm, kind));
            }
            _ => return None,
        };
        Some(self.event(ts, pid, tid, cg, &comm, k))
    }

    /// `cgroup_mkdir v2      id=405    /path (by python3[12023])`, `cgroup_attachv2 … task=x[n] (by …)`.
    fn summary_cgroup(&mut self, ts: u64, kind: &str, rest: &str) -> Option<KernelEvent> {
        let (op, hier, rest) = match kind.strip_prefix("attach") {
            Some(h) if !h.is_empty() => ("cgroup_attach", h, rest),
            _ => {
                let (h, r) = rest.split_once(' ')?;
                (
                    if kind == "mkdir" {
                        "cgroup_mkdir"
                    } else {
                        "cgroup_rmdir"
                    },
                    h,
                    r,
                )
            }
        };
        let root = match hier {
            "v2" => 0,
            "memory" => 4,
            _ => return None,
        };
        let words: Vec<&str> = rest.split_whitespace().collect();
        let id = num(words.first()?.strip_prefix("id=")?);
        let path = *words.get(1)?;
        let level = path.split('/').filter(|s| !s.is_empty()).count() as u64;
        let task_pid = words
            .iter()
            .find_map(|w| w.strip_prefix("task="))
            .map_or(0, |t| task(t).1);
        let by = rest
            .split_once("(by ")
            .map_or("", |x| x.1)
            .trim_end_matches(')');
        let (comm, pid, _) = task(by);
        Some(self.cgroup(
            ts,
            op,
            pid,
            &comm,
            [root, id, level, u64::from(task_pid)],
            path,
        ))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: trace2jsonl TRACE [BASE_NS]");
        std::process::exit(2);
    };
    let base: u64 = args.next().and_then(|b| b.parse().ok()).unwrap_or(0);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        eprintln!("{path}: {e}");
        std::process::exit(1);
    });
    let mut conv = Converter::default();
    let mut out = std::io::stdout().lock();
    for line in text.lines() {
        let ev = if line.starts_with('+') {
            conv.summary(line, base)
        } else {
            conv.bpftrace(line)
        };
        if let Some(ev) = ev {
            let json = serde_json::to_string(&ev).expect("events serialize");
            writeln!(out, "{json}").expect("stdout");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn convert(lines: &[&str]) -> Vec<Value> {
        let mut conv = Converter::default();
        lines
            .iter()
            .filter_map(|l| conv.bpftrace(l))
            .map(|e| serde_json::to_value(e).expect("serializes"))
            .collect()
    }

    #[test]
    fn execve_and_exec_merge_sh_c_keeps_its_script_and_kill_lines_are_dropped() {
        let out = convert(&[
            "100 newtask pid=10 tid=11 comm=containerd-shim cg=1 child=20 clone_flags=0x4100",
            "200 execve pid=20 tid=20 comm=containerd-shim cg=1 argv=sh -c sleep 1; exit 3",
            "300 exec pid=20 tid=20 comm=sh cg=1 filename=/bin/sh old_pid=20",
            "400 kill pid=30 tid=30 comm=runc cg=1 target=20 sig=15",
            "500 signal_generate pid=30 tid=30 comm=runc cg=1 sig=15 target_pid=20 target_comm=sh group=1 code=0 result=0",
            "600 exit pid=20 tid=20 comm=sh cg=443 exit_code=0x300 status=3 termsig=0 ppid=10",
        ]);
        let kinds: Vec<&str> = out.iter().map(|e| e["event"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            ["fork", "exec", "signal_generate", "exit"],
            "{out:#?}"
        );
        assert_eq!(out[0]["child_tgid"], 20);
        assert_eq!(out[0]["clone_flags"], 0x4100);
        let exec = &out[1];
        assert_eq!(exec["ts_ns"], 300, "the exec's time, not the execve's");
        assert_eq!(exec["filename"], "/bin/sh");
        assert_eq!(exec["argv"], json!(["sh", "-c", "sleep 1; exit 3"]));
        assert_eq!(out[2]["target_pid"], 20);
        assert_eq!(out[2]["result"], "delivered");
        assert_eq!(out[3]["status"]["code"], 3, "{:#}", out[3]);
        assert_eq!(out[3]["cgroup_id"], 443);
    }

    #[test]
    fn arguments_other_than_a_script_split_at_whitespace() {
        assert_eq!(split_argv(" pause  --flag x "), ["pause", "--flag", "x"]);
        assert_eq!(split_argv("sh -c a  b"), ["sh", "-c", "a  b"]);
    }
}
