//! `cargo xtask bench [NAME...]`: podlife's benchmarks. Overheads are ratios from interleaved
//! A/B pairs (agent attached vs not) in one invocation, medians reported; nothing here is a
//! test and nothing fails on timing. Results go to stdout as a table and to
//! target/bench-results.json.

mod engine;
mod node;
mod util;
mod workload;

use anyhow::Result;
use serde_json::{json, Map, Value};

const ALL: &[&str] = &[
    "engine",
    "bpfstats",
    "overhead",
    "sockets",
    "syscalls",
    "drops",
    "latency",
    "memory",
    "events_page",
    "processes",
    "startup",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("worker") {
        return workload::worker(&args[1..]);
    }
    let pairs: usize = std::env::var("BENCH_PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6);
    let names: Vec<&str> = if args.is_empty() {
        ALL.to_vec()
    } else {
        args.iter().map(String::as_str).collect()
    };
    let mut results = Map::new();
    for name in names {
        eprintln!("== bench {name}");
        let r: Value = match name {
            "engine" => engine::replay()?,
            "bpfstats" => node::bpfstats()?,
            "overhead" => node::overhead(pairs)?,
            "sockets" => node::sockets(pairs)?,
            "syscalls" => node::syscalls(pairs)?,
            "drops" => node::drops()?,
            "latency" => node::latency()?,
            "memory" => node::memory()?,
            "events_page" => node::events_page()?,
            "processes" => node::processes()?,
            "startup" => node::startup()?,
            other => anyhow::bail!("unknown benchmark {other}; known: {ALL:?}"),
        };
        println!("{name}: {}", serde_json::to_string_pretty(&r)?);
        results.insert(name.to_string(), r);
    }
    // Next to the build (target/ or CARGO_TARGET_DIR): this binary is target/release/podlife-bench.
    let exe = std::env::current_exe()?;
    let out = exe
        .parent()
        .and_then(|d| d.parent())
        .unwrap_or(std::path::Path::new("."))
        .join("bench-results.json");
    std::fs::write(&out, serde_json::to_string_pretty(&json!(results))?)?;
    eprintln!("results written to {}", out.display());
    Ok(())
}
