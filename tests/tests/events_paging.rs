//! The largest `/events` answers: a page never exceeds the agent's byte bound, and following
//! `next` while `more` walks every stored event once, in order, without a gap.

use std::collections::HashSet;

use podlife_e2e::agent::Agent;
use podlife_e2e::store_files;

/// The agent's bound on the events of one page (http/mod.rs EVENTS_PAGE_BYTES), plus the
/// envelope (`{"events":[...],"next":..,"more":..}`).
const PAGE_BYTES: usize = (4 << 20) + 1024;

#[test]
fn events_pages_are_bounded_and_the_cursor_walks_everything_once() {
    podlife_e2e::require_root();
    let scratch = podlife_e2e::Scratch::new("paging");
    let state = scratch.0.join("state");
    // 10 MiB: every line loads (under --store-load-bytes), and takes several 4 MiB pages.
    let filled = store_files::fill(&state, 10 << 20, 8 << 20, 50);
    let runtime = scratch.0.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();
    let agent = Agent::start_with(&runtime, Some(state.clone()));

    let mut after = 0u64;
    let mut pages = 0;
    let mut ids = Vec::new();
    let mut probes = Vec::new();
    loop {
        let (status, body) = agent.get(&format!("/events?after={after}&limit=100000"));
        assert_eq!(status, 200, "{body:.300}");
        assert!(
            body.len() <= PAGE_BYTES,
            "a page of {} bytes (bound {PAGE_BYTES})",
            body.len()
        );
        pages += 1;
        let page: serde_json::Value = serde_json::from_str(&body).unwrap();
        let events = page["events"].as_array().unwrap();
        for e in events {
            let id: u64 = e["id"].as_str().unwrap().parse().unwrap();
            ids.push(id);
            if e["type"] == "ExecFinished" {
                probes.push((id, e["argv"][2].as_str().unwrap().to_string()));
            }
        }
        if page["more"] != true {
            break;
        }
        after = page["next"]
            .as_str()
            .map(|s| s.parse().unwrap())
            .or_else(|| page["next"].as_u64())
            .unwrap_or_else(|| panic!("more without next: {:.300}", body));
        assert!(pages < 100, "the cursor does not advance (after={after})");
    }
    assert!(
        pages >= 3,
        "10 MiB of events fit {pages} pages: the byte bound did not apply"
    );
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids repeat or go back across pages"
    );
    // Every stored line once, with consecutive ids: nothing skipped between pages.
    assert_eq!(probes.len() as u64, filled.lines, "stored events served");
    let distinct: HashSet<&String> = probes.iter().map(|(_, p)| p).collect();
    assert_eq!(distinct.len(), probes.len(), "a stored event served twice");
    assert!(
        probes.windows(2).all(|w| w[1].0 == w[0].0 + 1),
        "a gap in the ids of the stored events"
    );
    // Stored events keep the ids they were served with before the restart: a client's cursor
    // from then resumes where it was, without the whole restored history again.
    for (id, argv) in &probes {
        let n: u64 = argv.rsplit(' ').next().unwrap().parse().unwrap();
        assert_eq!(
            *id,
            store_files::id_of(n),
            "the stored event {argv:?} was renumbered on restart"
        );
    }
    let k = filled.lines - 3;
    let page = agent.json(&format!("/events?after={}", store_files::id_of(k)));
    let resumed = store_files::probe_scripts(&page);
    assert_eq!(
        resumed.len(),
        2,
        "a cursor from before the restart resumes after its event: {resumed:?}"
    );
}
