//! A damaged store: corrupt, torn and oversized lines among good ones, and a directory where
//! a segment would be. The agent starts, serves every good event, counts what it skipped, and
//! keeps writing its history (no start-up loop, no store silently off).

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use podlife_e2e::agent::{metric, Agent};
use podlife_e2e::{pod_cgroups, store_files};

#[test]
fn corrupt_lines_and_a_directory_named_like_a_segment_are_skipped_and_counted() {
    podlife_e2e::require_root();
    let scratch = podlife_e2e::Scratch::new("damaged");
    let state = scratch.0.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let now = store_files::now_wall_ns();
    let bad: [&[u8]; 4] = [
        b"{\"uid\":\"torn",
        b"not json at all",
        b"\x00\x01\x02\xff",
        &[b'x'; 70 << 10], // beyond the agent's longest line
    ];
    let good = 40u64;
    let mut f = std::fs::File::create(store_files::segment_path(&state, 0)).unwrap();
    for n in 0..good {
        let line = store_files::exec_probe(7, n, now - 1_000_000_000 + n as i64);
        writeln!(f, "{line}").unwrap();
        if n % 10 == 5 {
            f.write_all(bad[(n / 10) as usize]).unwrap();
            f.write_all(b"\n").unwrap();
        }
    }
    drop(f);
    // Where the agent's next segment would go.
    std::fs::create_dir(store_files::segment_path(&state, 1)).unwrap();
    std::fs::create_dir(store_files::segment_path(&state, 2)).unwrap();
    let runtime = scratch.0.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();

    let agent = Agent::start_with(&runtime, Some(state.clone()));
    let t = agent.timeline(&store_files::uid(7));
    let probes = store_files::probe_scripts(&t);
    assert_eq!(
        probes.len() as u64,
        good,
        "every good line is served, once: {probes:?}"
    );
    let m = agent.metrics();
    assert_eq!(
        metric(&m, "podlife_store_skipped_lines_total", &[]),
        bad.len() as f64,
        "skipped lines counted"
    );
    assert_eq!(agent.get("/healthz").0, 200);

    // The store is on: new events reach a segment file.
    let uids = pod_cgroups::churn(3, |i| {
        format!("{:08x}-0000-4000-8000-00000000dd{i:02}", std::process::id())
    });
    let t0 = Instant::now();
    loop {
        // The agent's own segments (the first is the damaged one this test wrote).
        let ours: Vec<PathBuf> = store_files::segments(&state)
            .into_iter()
            .filter(|p| *p != store_files::segment_path(&state, 0))
            .collect();
        let stored = store_files::parse_segments(&ours);
        if uids.iter().all(|u| {
            stored
                .iter()
                .any(|e| e["uid"] == u.as_str() && e["type"] == "PodRemoved")
        }) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "new events never reached the store; segments: {:?}; log:\n{}",
            store_files::segments(&state),
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !agent.log_text().contains("will not survive a restart"),
        "the store was turned off:\n{}",
        agent.log_tail()
    );
}
