//! Kernel events built from fuzzer bytes: ids, pids and cgroup paths come from small pools
//! seeded by the recorded scenarios, so random choices keep hitting the same pods, processes
//! and cgroups (random strings would almost never name a pod).

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use podlife_core::{ExitStatus, KernelEvent, KernelEventKind, SignalHandler, SignalResult};

/// What the recorded scenarios name, plus a few strangers.
pub struct Pools {
    pub pids: Vec<u32>,
    pub cgroup_ids: Vec<u64>,
    pub paths: Vec<String>,
    pub comms: Vec<String>,
    pub argvs: Vec<Vec<String>>,
    pub start_ns: u64,
}

impl Pools {
    pub fn new(fixtures: &[Vec<KernelEvent>]) -> Self {
        let mut p = Pools {
            pids: vec![1, 2, 4_000_000],
            cgroup_ids: vec![1, 2, u64::MAX],
            paths: vec![
                "/".into(),
                "/system.slice/containerd.service".into(),
                "/kubepods".into(),
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b7d8e6a_2c3f_4a5b_9c8d_7e6f5a4b3c2d.slice".into(),
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b7d8e6a_2c3f_4a5b_9c8d_7e6f5a4b3c2d.slice/cri-containerd-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope".into(),
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b7d8e6a_2c3f_4a5b_9c8d_7e6f5a4b3c2d.slice/crio-conmon-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope".into(),
            ],
            comms: vec!["runc".into(), "containerd-shim".into(), "sh".into(), String::new()],
            argvs: vec![Vec::new(), vec![String::new()]],
            start_ns: u64::MAX,
        };
        for e in fixtures.iter().flatten() {
            p.start_ns = p.start_ns.min(e.ts_ns);
            push(&mut p.pids, e.tgid);
            push(&mut p.cgroup_ids, e.cgroup_id);
            push(&mut p.comms, e.comm.to_string());
            match &e.kind {
                KernelEventKind::Fork { child_tgid, .. } => push(&mut p.pids, *child_tgid),
                KernelEventKind::Exec { argv, .. } => push(&mut p.argvs, argv.clone()),
                KernelEventKind::CgroupMkdir { id, path, .. }
                | KernelEventKind::CgroupRmdir { id, path, .. }
                | KernelEventKind::CgroupAttach { id, path, .. } => {
                    push(&mut p.cgroup_ids, *id);
                    push(&mut p.paths, path.clone());
                }
                _ => {}
            }
        }
        p
    }

    pub fn pid(&self, u: &mut Unstructured) -> Result<u32> {
        if u.ratio(1, 8)? {
            return u.arbitrary();
        }
        Ok(*u.choose(&self.pids)?)
    }

    pub fn cgroup_id(&self, u: &mut Unstructured) -> Result<u64> {
        if u.ratio(1, 8)? {
            return u.arbitrary();
        }
        Ok(*u.choose(&self.cgroup_ids)?)
    }

    pub fn path(&self, u: &mut Unstructured) -> Result<String> {
        let mut p = u.choose(&self.paths)?.clone();
        match u.int_in_range(0..=7)? {
            // A sub-cgroup, a v1 hierarchy's view, a nested node (kind), or arbitrary text.
            0 => p.push_str("/sub"),
            1 => p = format!("/docker/0123456789ab{p}"),
            2 => p = u.arbitrary()?,
            _ => {}
        }
        Ok(p)
    }

    pub fn comm(&self, u: &mut Unstructured) -> Result<String> {
        if u.ratio(1, 8)? {
            return u.arbitrary();
        }
        Ok(u.choose(&self.comms)?.clone())
    }

    pub fn argv(&self, u: &mut Unstructured) -> Result<Vec<String>> {
        if u.ratio(1, 8)? {
            return u.arbitrary();
        }
        Ok(u.choose(&self.argvs)?.clone())
    }

    /// A time near the recorded ones: the engine's windows are seconds to minutes.
    pub fn ts(&self, u: &mut Unstructured) -> Result<u64> {
        Ok(match u.int_in_range(0..=9)? {
            0 => u.arbitrary()?,
            1 => self.start_ns.saturating_sub(u.arbitrary::<u32>()? as u64),
            _ => self.start_ns + u.int_in_range(0..=700_000_000_000u64)?,
        })
    }

    pub fn event(&self, u: &mut Unstructured) -> Result<KernelEvent> {
        let tgid = self.pid(u)?;
        Ok(KernelEvent {
            ts_ns: self.ts(u)?,
            tgid,
            tid: if u.ratio(3, 4)? { tgid } else { self.pid(u)? },
            cgroup_id: self.cgroup_id(u)?,
            comm: self.comm(u)?.into(),
            kind: self.kind(u)?,
        })
    }

    fn kind(&self, u: &mut Unstructured) -> Result<KernelEventKind> {
        use KernelEventKind as K;
        let sig = |u: &mut Unstructured| -> Result<i32> {
            Ok(if u.ratio(1, 8)? {
                u.arbitrary()?
            } else {
                *u.choose(&[0, 9, 15, 2, 6, 11, 17, 64])?
            })
        };
        Ok(match u.int_in_range(0..=10)? {
            0 => K::Exec {
                filename: u
                    .choose(&["/bin/sh", "/pause", "/usr/bin/runc", ""])?
                    .to_string(),
                argv: self.argv(u)?,
                argv_truncated: u.arbitrary()?,
                old_tid: self.pid(u)?,
            },
            1 => K::Exit {
                status: if u.ratio(7, 8)? {
                    Some(ExitStatus::from_wait_status(u.arbitrary()?))
                } else {
                    None
                },
            },
            2 => K::Fork {
                child_tgid: self.pid(u)?,
                clone_flags: u.arbitrary()?,
            },
            3 => K::SignalGenerate {
                sig: sig(u)?,
                target_pid: self.pid(u)?,
                target_comm: self.comm(u)?.into(),
                code: *u.choose(&[0, 0x80, -6, 1])?,
                group: u.arbitrary()?,
                result: SignalResult::from_raw(u.int_in_range(-1..=5)?),
            },
            4 => K::SignalDeliver {
                sig: sig(u)?,
                code: *u.choose(&[0, 0x80, -6, 1])?,
                handler: SignalHandler::from_raw(u.int_in_range(0..=3)?),
            },
            5 => K::Setns {
                nstype: u.arbitrary()?,
                fd: u.arbitrary()?,
                ret: u.int_in_range(-22..=0)?,
            },
            6 => K::Unshare {
                flags: u.arbitrary()?,
            },
            7 => K::CgroupMkdir {
                root: u.int_in_range(0..=3)?,
                id: self.cgroup_id(u)?,
                level: u.int_in_range(0..=8)?,
                path: self.path(u)?,
            },
            8 => K::CgroupRmdir {
                root: u.int_in_range(0..=3)?,
                id: self.cgroup_id(u)?,
                level: u.int_in_range(0..=8)?,
                path: self.path(u)?,
            },
            9 => K::CgroupAttach {
                root: u.int_in_range(0..=3)?,
                id: self.cgroup_id(u)?,
                level: u.int_in_range(0..=8)?,
                path: self.path(u)?,
                pid: self.pid(u)?,
            },
            _ => K::OomVictim {
                pid: self.pid(u)?,
                info: Box::new(podlife_core::OomVictimInfo {
                    victim_comm: u.arbitrary::<bool>()?.then(|| "stress".into()),
                    total_vm_kb: u.arbitrary()?,
                    anon_rss_kb: u.arbitrary()?,
                    file_rss_kb: u.arbitrary()?,
                    shmem_rss_kb: u.arbitrary()?,
                    pgtables_kb: u.arbitrary()?,
                    oom_score_adj: u.arbitrary()?,
                }),
            },
        })
    }
}

fn push<T: PartialEq>(v: &mut Vec<T>, x: T) {
    if !v.contains(&x) {
        v.push(x);
    }
}
