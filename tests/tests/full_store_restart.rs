//! A restart on a full store, as after months on a busy node: the agent answers /healthz
//! from the start while /readyz waits for the load, fits a 256 MiB memory limit, and serves
//! the newest stored events. The figures (time to ready, peak memory) go to
//! docs/BENCHMARKS.md; they are printed, not asserted.

use std::time::{Duration, Instant};

use podlife_e2e::agent::Agent;
use podlife_e2e::memcg::MemCg;
use podlife_e2e::store_files::{self, DEFAULT_LOAD_BYTES, DEFAULT_MAX_BYTES};

const LIMIT: u64 = 256 << 20;

#[test]
fn a_full_default_store_restarts_under_256_mib_answering_healthz_while_it_loads() {
    podlife_e2e::require_root();
    let scratch = podlife_e2e::Scratch::new("fullstore");
    let state = scratch.0.join("state");
    // The agent rotates at an eighth of the size bound: eight segments fill it.
    let filled = store_files::fill(&state, DEFAULT_MAX_BYTES, DEFAULT_MAX_BYTES / 8, 500);
    let runtime = scratch.0.join("runtime");
    std::fs::create_dir_all(&runtime).unwrap();

    let cg = MemCg::new("podlife-e2e-agent", LIMIT);
    let wrapper = cg.wrapper();
    let wrapper: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let t0 = Instant::now();
    let mut agent = Agent::spawn_wrapped(&runtime, Some(state.clone()), &[], &wrapper);

    // Poll both probes until ready: /healthz must answer 200 from the moment the port does,
    // /readyz must say 503 before it says 200, and never go back.
    let mut seen_starting = false;
    let mut answered = false;
    let ready_after = loop {
        if let Some(status) = agent.exited() {
            panic!(
                "the agent exited while loading ({status}); oom_kill={} in {}; log:\n{}",
                cg.oom_kills(),
                cg.dir.display(),
                agent.log_tail()
            );
        }
        let health = agent.get("/healthz");
        let ready = agent.get("/readyz").0;
        if health.0 != 0 || ready != 0 {
            answered = true;
        }
        if answered {
            assert_eq!(
                health.0,
                200,
                "/healthz failed while starting (readyz {ready}): {}; log:\n{}",
                health.1,
                agent.log_tail()
            );
            match ready {
                503 => seen_starting = true,
                200 => break t0.elapsed(),
                other => panic!("/readyz answered {other} while starting"),
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "not ready after 60 s; log:\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    // The order is also in the log, independent of how fast the load was.
    let log = agent.log_text();
    let at = |what: &str| {
        log.find(what)
            .unwrap_or_else(|| panic!("no {what:?} in the agent log:\n{log}"))
    };
    assert!(
        at("listening on") < at("history restored"),
        "the API must listen before the store loads:\n{log}"
    );
    assert!(
        seen_starting,
        "/readyz never said 503 while a {} MiB store loaded: the API came up after the load",
        filled.bytes >> 20
    );

    // Not killed, never at the limit.
    assert!(agent.exited().is_none(), "the agent died after ready");
    assert_eq!(cg.oom_kills(), 0, "OOM kills in the agent's 256 MiB cgroup");
    let peak = cg.read_u64("memory.max_usage_in_bytes");
    let failcnt = cg.read_u64("memory.failcnt");
    assert_eq!(
        failcnt,
        0,
        "the agent reached its 256 MiB limit (peak {} MiB)",
        peak >> 20
    );

    // The newest stored line is served, with what it said.
    let t = agent.timeline(&store_files::uid(filled.last_pod));
    let marker = format!("# probe {}", filled.last_n);
    assert!(
        t["events"].as_array().is_some_and(|a| a
            .iter()
            .any(|e| e["argv"][2].as_str().is_some_and(|s| s.ends_with(&marker)))),
        "the newest stored event ({marker}) is not on its pod's timeline: {t}"
    );
    let m = agent.metrics();
    let skipped = podlife_e2e::agent::metric(&m, "podlife_store_skipped_lines_total", &[]);
    assert_eq!(skipped, 0.0, "a store of whole lines had lines skipped");
    eprintln!(
        "FIGURES full store: {} MiB on disk in {} lines, --store-load-bytes {} MiB; /readyz after {} ms; peak memory {} MiB of a {} MiB limit (memory.max_usage_in_bytes, page cache included)",
        filled.bytes >> 20,
        filled.lines,
        DEFAULT_LOAD_BYTES >> 20,
        ready_after.as_millis(),
        peak >> 20,
        LIMIT >> 20
    );
}
