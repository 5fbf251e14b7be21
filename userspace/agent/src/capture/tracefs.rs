//! Tracepoint field offsets from tracefs `format` files, read at load time so no layout is
//! compiled in (kernels move fields between versions).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use podlife_common::{TracepointOffsets, ABSENT};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TracefsError {
    #[error(
        "tracefs is not mounted at /sys/kernel/tracing or /sys/kernel/debug/tracing: mount it \
         (mount -t tracefs tracefs /sys/kernel/tracing) or give the DaemonSet the tracefs hostPath"
    )]
    NotMounted,
}

/// One tracepoint's fields: name → (offset, size).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Format {
    pub fields: HashMap<String, (u16, u16)>,
}

impl Format {
    /// Parse the text of a tracefs `format` file.
    pub fn parse(text: &str) -> Self {
        let mut fields = HashMap::new();
        for line in text.lines() {
            let line = line.trim();
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            let mut decl = "";
            let mut offset = None;
            let mut size = None;
            for part in rest.split(';') {
                let part = part.trim();
                if let Some(v) = part.strip_prefix("offset:") {
                    offset = v.parse::<u16>().ok();
                } else if let Some(v) = part.strip_prefix("size:") {
                    size = v.parse::<u16>().ok();
                } else if decl.is_empty() && !part.is_empty() && !part.starts_with("signed:") {
                    decl = part;
                }
            }
            let name = decl
                .rsplit(|c: char| c.is_whitespace() || c == '*')
                .next()
                .unwrap_or("")
                .split('[')
                .next()
                .unwrap_or("");
            if let (false, Some(o), Some(s)) = (name.is_empty(), offset, size) {
                fields.insert(name.to_string(), (o, s));
            }
        }
        Self { fields }
    }

    /// Offset of a field, or ABSENT.
    pub fn offset(&self, name: &str) -> u16 {
        self.fields.get(name).map_or(ABSENT, |&(o, _)| o)
    }
}

/// Where tracefs is mounted.
pub fn find_tracefs() -> Result<PathBuf, TracefsError> {
    ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.join("events").is_dir())
        .ok_or(TracefsError::NotMounted)
}

/// Read the formats of the tracepoints podlife uses; a missing one is simply absent.
pub fn read_formats(tracefs: &Path, tracepoints: &[(&str, &str)]) -> HashMap<String, Format> {
    tracepoints
        .iter()
        .filter_map(|(cat, name)| {
            let path = tracefs.join("events").join(cat).join(name).join("format");
            let text = std::fs::read_to_string(path).ok()?;
            Some((format!("{cat}/{name}"), Format::parse(&text)))
        })
        .collect()
}

/// Fill the offsets of every field the programs read.
pub fn offsets(formats: &HashMap<String, Format>) -> TracepointOffsets {
    let get = |tp: &str, field: &str| formats.get(tp).map_or(ABSENT, |f| f.offset(field));
    let mut o = TracepointOffsets::all_absent();
    o.exec_filename_loc = get("sched/sched_process_exec", "filename");
    o.exec_old_pid = get("sched/sched_process_exec", "old_pid");
    o.exit_group_dead = get("sched/sched_process_exit", "group_dead");
    o.newtask_pid = get("task/task_newtask", "pid");
    o.newtask_clone_flags = get("task/task_newtask", "clone_flags");
    let g = "signal/signal_generate";
    o.gen_sig = get(g, "sig");
    o.gen_errno = get(g, "errno");
    o.gen_code = get(g, "code");
    o.gen_comm = get(g, "comm");
    o.gen_pid = get(g, "pid");
    o.gen_group = get(g, "group");
    o.gen_result = get(g, "result");
    let d = "signal/signal_deliver";
    o.del_sig = get(d, "sig");
    o.del_errno = get(d, "errno");
    o.del_code = get(d, "code");
    o.del_sa_handler = get(d, "sa_handler");
    o.del_sa_flags = get(d, "sa_flags");
    let m = "cgroup/cgroup_mkdir";
    o.cg_root = get(m, "root");
    o.cg_level = get(m, "level");
    o.cg_id = get(m, "id");
    o.cg_path_loc = get(m, "path");
    let a = "cgroup/cgroup_attach_task";
    o.att_root = get(a, "dst_root");
    o.att_level = get(a, "dst_level");
    o.att_id = get(a, "dst_id");
    o.att_pid = get(a, "pid");
    o.att_path_loc = get(a, "dst_path");
    let v = "oom/mark_victim";
    o.oom_pid = get(v, "pid");
    o.oom_comm_loc = get(v, "comm");
    o.oom_total_vm = get(v, "total_vm");
    o.oom_anon_rss = get(v, "anon_rss");
    o.oom_file_rss = get(v, "file_rss");
    o.oom_shmem_rss = get(v, "shmem_rss");
    o.oom_uid = get(v, "uid");
    o.oom_pgtables = get(v, "pgtables");
    o.oom_score_adj = get(v, "oom_score_adj");
    o.execve_argv = get("syscalls/sys_enter_execve", "argv");
    o.execveat_argv = get("syscalls/sys_enter_execveat", "argv");
    o.setns_fd = get("syscalls/sys_enter_setns", "fd");
    o.setns_nstype = get("syscalls/sys_enter_setns", "flags");
    if o.setns_nstype == ABSENT {
        o.setns_nstype = get("syscalls/sys_enter_setns", "nstype");
    }
    o.setns_ret = get("syscalls/sys_exit_setns", "ret");
    o.unshare_flags = get("syscalls/sys_enter_unshare", "unshare_flags");
    let k = "sock/inet_sock_set_state";
    o.sk_skaddr = get(k, "skaddr");
    o.sk_oldstate = get(k, "oldstate");
    o.sk_newstate = get(k, "newstate");
    o.sk_sport = get(k, "sport");
    o.sk_dport = get(k, "dport");
    o.sk_family = get(k, "family");
    o.sk_protocol = get(k, "protocol");
    o.sk_saddr = get(k, "saddr");
    o.sk_daddr = get(k, "daddr");
    o.sk_saddr_v6 = get(k, "saddr_v6");
    o.sk_daddr_v6 = get(k, "daddr_v6");
    let r = "tcp/tcp_send_reset";
    o.rst_reason = get(r, "reason");
    o.rst_saddr = get(r, "saddr");
    o.rst_daddr = get(r, "daddr");
    o.rrst_skaddr = get("tcp/tcp_receive_reset", "skaddr");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXIT_6_18: &str = "name: sched_process_exit
ID: 318
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:int prio;\toffset:28;\tsize:4;\tsigned:1;
\tfield:bool group_dead;\toffset:32;\tsize:1;\tsigned:0;

print fmt: \"comm=%s pid=%d prio=%d group_dead=%s\"";

    #[test]
    fn parses_fields_arrays_and_pointers() {
        let f = Format::parse(EXIT_6_18);
        assert_eq!(f.offset("comm"), 8);
        assert_eq!(f.offset("group_dead"), 32);
        assert_eq!(f.offset("common_pid"), 4);
        assert_eq!(f.offset("missing"), ABSENT);
        let execve = Format::parse(
            "\tfield:const char *const * argv;\toffset:24;\tsize:8;\tsigned:0;\n\
             \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;",
        );
        assert_eq!(execve.offset("argv"), 24);
        assert_eq!(execve.offset("filename"), 8);
    }

    #[test]
    fn missing_tracepoint_leaves_fields_absent() {
        let mut formats = HashMap::new();
        formats.insert("sched/sched_process_exit".into(), Format::parse(EXIT_6_18));
        let o = offsets(&formats);
        assert_eq!(o.exit_group_dead, 32);
        assert_eq!(o.gen_sig, ABSENT);
        assert_eq!(o.oom_anon_rss, ABSENT);
    }
}
