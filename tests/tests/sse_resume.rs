//! The live stream survives the agent's death: an SSE client that reconnects after the agent
//! was SIGKILLed and restarted, with the `Last-Event-ID` it last got, receives exactly the
//! events of the agent's log it had not seen (what the restart found, the agent gap, what came
//! after): the union of what the client got equals the agent's log, and no id twice.

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use podlife_e2e::agent::events_of;
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::{Container, Env, Pod};
use serde_json::Value;

/// One SSE event: its id and its JSON.
type Got = (u64, Value);

/// An SSE client on its own thread; HTTP/1.0, so the body is the plain stream (no chunks) and
/// ends when the agent closes it. `last_id` is sent as Last-Event-ID.
fn subscribe(port: u16, last_id: Option<u64>) -> mpsc::Receiver<Got> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the agent");
    let resume = last_id
        .map(|id| format!("Last-Event-ID: {id}\r\n"))
        .unwrap_or_default();
    write!(s, "GET /events/stream HTTP/1.0\r\nHost: x\r\n{resume}\r\n").unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(s).lines().map_while(Result::ok);
        let status = lines.next().unwrap_or_default();
        assert!(status.contains(" 200"), "stream answered {status}");
        // Fields of one event come in any order; a blank line ends the event (the SSE spec).
        let (mut id, mut data) = (None, None);
        for line in lines {
            if let Some(v) = line.strip_prefix("id:") {
                id = v.trim().parse::<u64>().ok();
            } else if let Some(d) = line.strip_prefix("data:") {
                data = serde_json::from_str::<Value>(d.trim()).ok();
            } else if line.is_empty() {
                if let (Some(i), Some(v)) = (id.take(), data.take()) {
                    if tx.send((i, v)).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// Collect from `rx` into `got` until `done` holds for an event (or panic after 30 s).
fn until(rx: &mpsc::Receiver<Got>, got: &mut Vec<Got>, what: &str, done: impl Fn(&Value) -> bool) {
    let t = Instant::now();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => {
                let hit = done(&e.1);
                got.push(e);
                if hit {
                    return;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("stream ended before {what}"),
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no {what} on the stream: {got:?}"
        );
    }
}

fn exited(c: &Container) -> impl Fn(&Value) -> bool + '_ {
    move |e| e["type"] == "ContainerExited" && e["container_id"] == c.id.as_str()
}

/// Wait until a store segment on disk holds a line with `needle`.
fn wait_stored(env: &Env, needle: &str) {
    let t = Instant::now();
    loop {
        let stored = std::fs::read_dir(env.agent.state_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            .any(|e| {
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .contains(needle)
            });
        if stored {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "{needle} never stored"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn run(env: &mut Env, pod: &Pod, name: &str) -> Container {
    env.run_container(pod, name, &["sh", "-c", "exit 3"], CtrOpts::default())
}

#[test]
fn an_sse_client_resumes_across_an_agent_sigkill_without_gap_or_duplicate() {
    let mut env = Env::start();
    let first = subscribe(env.agent.port, None);
    let pod = env.run_pod("resume", PodOpts::default());
    let mut got: Vec<Got> = Vec::new();
    for name in ["one", "two"] {
        let c = run(&mut env, &pod, name);
        until(&first, &mut got, name, exited(&c));
    }
    // Everything the client has seen is on disk, so the restart keeps it in the log.
    let last = got.iter().map(|(id, _)| *id).max().unwrap();
    wait_stored(&env, &format!("\"id\":\"{last}\""));
    // A container runs through the outage: its exit is found by the restart, not seen live.
    let through = env.run_container(
        &pod,
        "through",
        &["sh", "-c", "sleep 3; exit 4"],
        CtrOpts::default(),
    );
    while let Ok(e) = first.recv_timeout(Duration::from_millis(300)) {
        got.push(e);
    }
    let last = got.iter().map(|(id, _)| *id).max().unwrap();
    wait_stored(&env, &format!("\"id\":\"{last}\""));
    env.agent.crash_and_restart();
    assert!(
        first.recv_timeout(Duration::from_secs(5)).is_err(),
        "the first stream ended with the agent"
    );

    let second = subscribe(env.agent.port, Some(last));
    let after = run(&mut env, &pod, "after");
    until(
        &second,
        &mut got,
        "the container started after the restart",
        exited(&after),
    );
    env.agent
        .wait_for(&pod.uid, "through's exit", Duration::from_secs(20), |t| {
            !events_of(t, "ContainerExited", &through.id).is_empty()
        });
    // Whatever else the agent logs by now reaches the stream too.
    while let Ok(e) = second.recv_timeout(Duration::from_millis(1500)) {
        got.push(e);
    }

    let ids: Vec<u64> = got.iter().map(|(id, _)| *id).collect();
    let unique: BTreeSet<u64> = ids.iter().copied().collect();
    assert_eq!(unique.len(), ids.len(), "an id twice: {ids:?}");
    let log = env.agent.json("/events?limit=100000");
    assert_eq!(log["more"], false);
    let logged: BTreeSet<u64> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["id"].as_str().unwrap().parse().unwrap())
        .collect();
    let log_only: Vec<&Value> = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !unique.contains(&e["id"].as_str().unwrap().parse::<u64>().unwrap()))
        .collect();
    assert_eq!(
        unique,
        logged,
        "the client's ids are the agent's log; not on the stream: {log_only:?}\n{}",
        env.agent.log_tail()
    );
    assert_eq!(
        unique,
        logged,
        "the client's ids are the agent's log\nclient only: {:?}\nlog only: {:?}",
        unique.difference(&logged).collect::<Vec<_>>(),
        logged.difference(&unique).collect::<Vec<_>>()
    );
    let kinds: Vec<&str> = got.iter().filter_map(|(_, e)| e["type"].as_str()).collect();
    assert!(
        kinds.contains(&"AgentGap"),
        "the restart is on the stream: {kinds:?}"
    );
    assert!(
        got.iter().any(|(_, e)| exited(&through)(e)),
        "the exit during the outage reached the client: {kinds:?}"
    );
}
