//! OOM kills with what the agent read of the OOM-ing memory cgroup: group kills (one OOMKill
//! per victim, the first listing the others), the allocating task as trigger, usage and limit.

use podlife_core::*;

mod builders;
use builders::*;

const MIB: u64 = 1 << 20;

/// oom:mark_victim of `pid`, run in `context`'s task (the allocator) in cgroup `cg`.
fn victim(ts: u64, context: u32, cg: u64, pid: u32) -> KernelEvent {
    ev(
        ts,
        context,
        cg,
        "hog",
        KernelEventKind::OomVictim {
            pid,
            info: Box::new(podlife_core::OomVictimInfo {
                victim_comm: Some(if pid == 200 { "sh" } else { "hog" }.into()),
                total_vm_kb: Some(100),
                anon_rss_kb: Some(64),
                file_rss_kb: None,
                shmem_rss_kb: None,
                pgtables_kb: None,
                oom_score_adj: Some(0),
            }),
        },
    )
}

fn sigkill(ts: u64, context: u32, target: u32) -> KernelEvent {
    signal(ts, context, 21, "hog", target, 9, 0x80)
}

/// The engine with the agent's hints told before each victim's event, as the agent does.
fn run_hinted(events: &[KernelEvent], memcg: OomMemcg) -> (Engine, Vec<LifecycleEvent>) {
    let mut e = Engine::new(EngineConfig::default());
    let mut out = Vec::new();
    for k in events {
        if let KernelEventKind::OomVictim { pid, .. } = k.kind {
            e.set_oom_scope_hint(pid, LimitScope::Container);
            e.set_oom_memcg_hint(pid, memcg);
        }
        out.extend(e.apply(k));
    }
    out.extend(e.flush());
    (e, out)
}

fn v2_group() -> OomMemcg {
    OomMemcg {
        group_kill: true,
        usage_bytes: Some(32 * MIB - 4096),
        limit_bytes: Some(32 * MIB),
    }
}

fn ooms(out: &[LifecycleEvent]) -> Vec<&LifecycleEvent> {
    out.iter().filter(|e| e.kind.name() == "OOMKill").collect()
}

fn text_of(engine: &Engine) -> String {
    text::to_text(&engine.timeline(UID, WallClock::default()).unwrap())
}

/// A child's allocation hits the container limit with memory.oom.group set: the kernel kills
/// the child and the init in one pass, both in the child's context.
#[test]
fn group_kill_of_a_childs_oom_takes_the_init_and_says_whose_oom_it_was() {
    let mut events = pod();
    events.push(fork(20 * MS, 200, 21, 202));
    events.push(exec(21 * MS, 202, 21, "/bin/hog", &["hog"]));
    events.push(sigkill(30 * MS, 202, 202));
    events.push(victim(30 * MS + 1, 202, 21, 202));
    events.push(sigkill(30 * MS + 2, 202, 200));
    events.push(victim(30 * MS + 3, 202, 21, 200));
    events.push(exit(31 * MS, 202, 21, 0x9));
    events.push(exit(31 * MS + 1, 200, 21, 0x9));
    let (engine, out) = run_hinted(&events, v2_group());
    let o = ooms(&out);
    assert_eq!(o.len(), 2, "{:?}", names(&out));
    let trigger = serde_json::json!({"pid": 202, "comm": "hog"});
    assert_eq!(json(o[0], "pid"), 202);
    assert_eq!(json(o[0], "group_kill"), true);
    assert_eq!(json(o[0], "killed_with"), serde_json::json!([200]));
    assert_eq!(json(o[0], "killed_with_more"), 0);
    assert_eq!(json(o[0], "group_first_victim"), serde_json::Value::Null);
    assert_eq!(json(o[0], "trigger"), trigger);
    assert_eq!(json(o[0], "usage_bytes"), 32 * MIB - 4096);
    assert_eq!(json(o[0], "limit_bytes"), 32 * MIB);
    assert_eq!(json(o[1], "pid"), 200);
    assert_eq!(json(o[1], "victim_is_init"), true);
    assert_eq!(json(o[1], "group_kill"), true);
    assert_eq!(json(o[1], "killed_with"), serde_json::json!([]));
    assert_eq!(json(o[1], "group_first_victim"), 202);
    assert_eq!(json(o[1], "trigger"), trigger);
    let exit = find(&out, "ContainerExited");
    assert_eq!(json(exit, "reason"), "OOMKilled");
    assert_eq!(json(exit, "killed_by"), "oom_killer");
    assert_eq!(
        json(exit, "sender"),
        trigger,
        "the child's allocation ended it"
    );
    let text = text_of(&engine);
    let line = |name: &str, nth: usize| {
        text.lines()
            .filter(|l| l.contains(name))
            .nth(nth)
            .unwrap_or_else(|| panic!("{text}"))
            .to_string()
    };
    let first = line("OOMKill", 0);
    assert!(
        first.contains("limit=container 32MiB")
            && first.contains("usage=32.0MiB")
            && first.contains("group kill: 2 processes")
            && !first.contains("container survives"),
        "{first}"
    );
    assert!(
        line("OOMKill", 1).contains("killed with the group kill of hog(202)'s OOM"),
        "{text}"
    );
    assert!(
        line("ContainerExited", 0).contains("killed with the group kill of hog(202)'s OOM"),
        "{text}"
    );
}

/// The other victims of a pass are listed on the first at most MAX_KILLED_WITH, the rest
/// counted; a victim marked after the first's hold (a very slow console) still names the first.
#[test]
fn killed_with_is_bounded_and_late_victims_name_the_first() {
    let mut events = pod();
    let children: Vec<u32> = (300..320).collect();
    for (i, c) in children.iter().enumerate() {
        events.push(fork(20 * MS + i as u64, 200, 21, *c));
    }
    events.push(victim(40 * MS, 300, 21, 300));
    for (i, c) in children[1..].iter().enumerate() {
        events.push(victim(40 * MS + 1 + i as u64, 300, 21, *c));
    }
    // The first victim of a group kill is held 200 ms for the rest of its pass (a slow
    // console spaces them); anything later than that releases it before the last.
    events.push(exit(60 * MS, 301, 21, 0x9));
    events.push(exit(300 * MS, 302, 21, 0x9));
    events.push(victim(600 * MS, 300, 21, 200));
    let (_, out) = run_hinted(&events, v2_group());
    let o = ooms(&out);
    assert_eq!(o.len(), 21);
    let listed: Vec<u32> = serde_json::from_value(json(o[0], "killed_with")).unwrap();
    assert_eq!(
        listed,
        (301..301 + MAX_KILLED_WITH as u32).collect::<Vec<_>>()
    );
    assert_eq!(json(o[0], "killed_with_more"), 19 - MAX_KILLED_WITH as u64);
    for later in &o[1..] {
        assert_eq!(json(later, "group_first_victim"), 300);
        assert_eq!(json(later, "killed_with"), serde_json::json!([]));
    }
    assert_eq!(json(o[20], "pid"), 200, "560 ms later, past the hold");
}

/// cgroup v1 (no memory.oom.group): one victim, chosen by oom_score_adj, not the allocator.
/// The container survives; the trigger is the allocating child.
#[test]
fn single_process_kill_on_v1_names_the_allocator_as_trigger() {
    let mut events = pod();
    events.push(fork(20 * MS, 200, 21, 202));
    events.push(exec(21 * MS, 202, 21, "/bin/hog", &["hog"]));
    events.push(fork(22 * MS, 200, 21, 203));
    events.push(sigkill(30 * MS, 202, 203));
    events.push(victim(30 * MS + 1, 202, 21, 203));
    events.push(exit(31 * MS, 203, 21, 0x9));
    let v1 = OomMemcg {
        group_kill: false,
        usage_bytes: Some(16 * MIB),
        limit_bytes: Some(16 * MIB),
    };
    let (engine, out) = run_hinted(&events, v1);
    let o = ooms(&out);
    assert_eq!(o.len(), 1);
    assert_eq!(json(o[0], "pid"), 203);
    assert_eq!(json(o[0], "group_kill"), false);
    assert_eq!(json(o[0], "killed_with"), serde_json::json!([]));
    assert_eq!(
        json(o[0], "trigger"),
        serde_json::json!({"pid": 202, "comm": "hog"})
    );
    assert_eq!(json(o[0], "limit_bytes"), 16 * MIB);
    assert!(!names(&out).contains(&"ContainerExited"));
    let text = text_of(&engine);
    let line = text.lines().find(|l| l.contains("OOMKill")).unwrap();
    assert!(
        line.contains("triggered by hog(202)") && line.contains("container survives"),
        "{line}"
    );
}

/// A kernel thread or another pod's process running the OOM killer (a node OOM) is not shown
/// as the trigger; a victim that allocated itself is its own trigger.
#[test]
fn trigger_is_only_a_process_of_the_pod() {
    let mut events = pod();
    events.push(fork(20 * MS, 200, 21, 202));
    events.push(fork(20 * MS + 1, 200, 21, 203));
    // kswapd-like kernel thread in the root cgroup; then a process of no pod.
    events.push(victim(30 * MS, 2, 1, 202));
    events.push(victim(30 * MS + 1, 9999, 77, 203));
    events.push(victim(30 * MS + 2, 200, 21, 200));
    let (_, out) = run_hinted(&events, OomMemcg::default());
    let o = ooms(&out);
    assert_eq!(o.len(), 3);
    assert_eq!(json(o[0], "trigger"), serde_json::Value::Null);
    assert_eq!(json(o[1], "trigger"), serde_json::Value::Null);
    assert_eq!(json(o[2], "trigger")["pid"], 200);
    for e in &o {
        assert_eq!(json(e, "group_kill"), false);
        assert_eq!(json(e, "usage_bytes"), serde_json::Value::Null);
    }
}

/// Behind a slow console one pass's victims are tens of milliseconds apart: the first waits
/// for them, so the list is whole.
#[test]
fn a_group_spread_by_a_slow_console_is_listed_whole() {
    let mut events = pod();
    for (i, c) in [300u32, 301, 302].iter().enumerate() {
        events.push(fork(20 * MS + i as u64, 200, 21, *c));
    }
    events.push(victim(40 * MS, 300, 21, 300));
    events.push(exit(41 * MS, 300, 21, 0x9));
    events.push(victim(70 * MS, 300, 21, 301));
    events.push(victim(110 * MS, 300, 21, 302));
    let (_, out) = run_hinted(&events, v2_group());
    let o = ooms(&out);
    assert_eq!(o.len(), 3);
    let listed: Vec<u32> = serde_json::from_value(json(o[0], "killed_with")).unwrap();
    assert_eq!(listed, vec![301, 302], "70 ms of spread still one group");
}
