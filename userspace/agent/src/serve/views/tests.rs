//! What the HTTP API serves, through the real router (tower `oneshot`) over a real engine and
//! history: `/events` filters, the order of a served timeline, the live stream (SSE), the
//! `/pods` filters and the by-name lookup. Every case has several pods whose answers differ,
//! so a filter that is ignored, or an order that is not applied, gives a different answer.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use futures_util::StreamExt as _;
use podlife_core::{Engine, EngineConfig, KernelEvent, KernelEventKind, PodMeta};
use serde_json::{json, Value};
use tower::ServiceExt as _;

use crate::node::cgroupfs::CgroupMounts;
use crate::node::clock::{format_rfc3339, WallClock};
use crate::pipeline::history::{EventQuery, History};
use crate::pipeline::metrics::Metrics;
use crate::pipeline::shared::{Inner, Shared};
use crate::serve::views::events_page;

/// Monotonic 0 is this wall-clock time (2025-11-24T16:00:00Z): times are exact in the tests.
const EPOCH_WALL_NS: i128 = 1_764_000_000_000_000_000;
const S: u64 = 1_000_000_000;

const A: &str = "8f3c2a1e-1111-4a4a-9b9b-00000000000a";
const B: &str = "8f3c2a1e-1111-4a4a-9b9b-00000000000b";
const C: &str = "8f3c2a1e-1111-4a4a-9b9b-00000000000c";

fn shared() -> Arc<Shared> {
    let engine = Engine::new(EngineConfig {
        reorder_window_ns: 0,
        ..EngineConfig::default()
    });
    let inner = Inner::new(
        engine,
        Metrics::new("test"),
        WallClock {
            offset_ns: EPOCH_WALL_NS,
        },
        None,
        None,
        Vec::new(),
        CgroupMounts::default(),
    );
    Shared::new(inner)
}

fn wall(mono_ns: u64) -> i128 {
    EPOCH_WALL_NS + mono_ns as i128
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// GET through the router: status and JSON body.
fn get(s: &Arc<Shared>, uri: &str) -> (StatusCode, Value) {
    rt().block_on(async {
        let req = Request::get(uri).body(Body::empty()).expect("request");
        let resp = crate::serve::http::router(s.clone(), open_api())
            .oneshot(req)
            .await
            .expect("infallible");
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 24)
            .await
            .expect("body");
        let v = serde_json::from_slice(&body)
            .unwrap_or_else(|e| panic!("GET {uri} → {status}: not JSON ({e}): {body:?}"));
        (status, v)
    })
}

fn get_ok(s: &Arc<Shared>, uri: &str) -> Value {
    let (status, v) = get(s, uri);
    assert_eq!(status, StatusCode::OK, "GET {uri}: {v}");
    v
}

/// What the agent's reader does with a kernel event: engine, history, then the live stream.
fn kernel(s: &Shared, ts_ns: u64, kind: KernelEventKind) {
    let mut inner = s.lock();
    inner.on_kernel_event(KernelEvent {
        ts_ns,
        tgid: 1,
        tid: 1,
        cgroup_id: 0,
        comm: "runc".into(),
        kind,
    });
    drain(s, inner);
}

fn drain(s: &Shared, mut inner: std::sync::MutexGuard<'_, Inner>) {
    let out = std::mem::take(&mut inner.outbox);
    drop(inner);
    for ev in out {
        let _ = s.live.send(ev);
    }
}

fn mkdir(s: &Shared, ts_ns: u64, id: u64, path: String, level: i32) {
    kernel(
        s,
        ts_ns,
        KernelEventKind::CgroupMkdir {
            root: 0,
            id,
            level,
            path,
        },
    );
}

fn pod_path(uid: &str) -> String {
    format!("/kubepods/burstable/pod{uid}")
}

/// A pod's cgroup appears at `ts_ns` (PodAdmitted).
fn admit(s: &Shared, ts_ns: u64, id: u64, uid: &str) {
    mkdir(s, ts_ns, id, pod_path(uid), 3);
}

/// A pod's cgroup is removed at `ts_ns` (PodRemoved).
fn remove(s: &Shared, ts_ns: u64, id: u64, uid: &str) {
    kernel(
        s,
        ts_ns,
        KernelEventKind::CgroupRmdir {
            root: 0,
            id,
            level: 3,
            path: pod_path(uid),
        },
    );
}

/// The API server's deletion of a pod, dated `ts_ns` (what kube_watch does with it).
fn delete(s: &Shared, uid: &str, ts_ns: u64) {
    let mut inner = s.lock();
    let out = inner.engine.deletion_requested(uid, ts_ns, Some(30.0));
    inner.publish(out);
    drain(s, inner);
}

fn name(s: &Shared, uid: &str, namespace: &str, pod: &str) {
    s.lock().engine.set_pod_metadata(
        uid,
        PodMeta {
            name: Some(pod.into()),
            namespace: Some(namespace.into()),
            ..PodMeta::default()
        },
    );
}

/// An event as the agent keeps it (what `Inner::publish` hands the history).
fn keep(s: &Shared, uid: &str, n: u64) {
    let ts = n * S;
    let ev = crate::pipeline::history::test_event(uid, n as u32, wall(ts) as i64);
    s.lock().history.push(ev);
}

fn ns(v: &Value) -> Vec<u64> {
    v["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no events array: {v}"))
        .iter()
        .map(|e| e["pid"].as_u64().unwrap_or_else(|| panic!("no pid: {e}")))
        .collect()
}

#[test]
fn events_filters_by_uid_since_and_limit_with_answers_that_differ() {
    let s = shared();
    // Three pods, interleaved, one event a second: n = 0..12, pod = [A, B, C][n % 3].
    for n in 0..12 {
        keep(&s, [A, B, C][n as usize % 3], n);
    }
    assert_eq!(ns(&get_ok(&s, "/events")), (0..12).collect::<Vec<_>>());

    // uid: only that pod's events, every one of them, oldest first.
    let b = get_ok(&s, &format!("/events?uid={B}"));
    assert_eq!(ns(&b), vec![1, 4, 7, 10], "{b}");
    assert!(b["events"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["uid"] == B));
    assert_eq!(
        ns(&get_ok(&s, &format!("/events?uid={C}"))),
        vec![2, 5, 8, 11]
    );
    let unknown = "8f3c2a1e-1111-4a4a-9b9b-0000000000ff";
    assert_eq!(
        ns(&get_ok(&s, &format!("/events?uid={unknown}"))),
        Vec::<u64>::new()
    );

    // since: at or after that time (RFC 3339), the bookkeeping field not served.
    let since = format_rfc3339(wall(7 * S));
    let late = get_ok(&s, &format!("/events?since={since}"));
    assert_eq!(ns(&late), vec![7, 8, 9, 10, 11], "{late}");
    assert!(late["events"][0].get("ts_wall_ns").is_none(), "{late}");
    assert_eq!(late["events"][0]["time"], since);
    assert_eq!(
        ns(&get_ok(&s, &format!("/events?since={since}&uid={A}"))),
        vec![9]
    );

    // limit: the newest events (the last ones), served oldest first.
    assert_eq!(ns(&get_ok(&s, "/events?limit=3")), vec![9, 10, 11]);
    assert_eq!(
        ns(&get_ok(&s, &format!("/events?uid={A}&limit=2"))),
        vec![6, 9],
        "the limit applies after the uid filter"
    );
    assert_eq!(
        ns(&get_ok(
            &s,
            &format!(
                "/events?uid={B}&since={}&limit=1",
                format_rfc3339(wall(2 * S))
            )
        )),
        vec![10]
    );
}

#[test]
fn a_timeline_is_served_in_time_order_when_the_api_deletion_arrives_last() {
    // The README's headline: the API server's deletion is dated before the kernel events it
    // causes, but the watch delivers it after them. Served, it is where its time puts it.
    let s = shared();
    admit(&s, 10 * S, 100, A);
    mkdir(
        &s,
        11 * S,
        101,
        format!("{}/{}", pod_path(A), "c".repeat(64)),
        4,
    );
    remove(&s, 20 * S, 100, A);
    delete(&s, A, 15 * S);
    // A second pod whose events interleave in arrival but not in time.
    admit(&s, 12 * S, 200, B);
    delete(&s, B, 13 * S);

    let t = get_ok(&s, &format!("/pods/{A}/timeline"));
    let events = t["events"].as_array().unwrap();
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    assert_eq!(
        types,
        ["PodAdmitted", "DeletionRequested", "PodRemoved"],
        "{t}"
    );
    let times: Vec<String> = [10, 15, 20]
        .iter()
        .map(|s_| format_rfc3339(wall(s_ * S)))
        .collect();
    let served: Vec<&str> = events.iter().filter_map(|e| e["time"].as_str()).collect();
    assert_eq!(served, times, "{t}");
    assert!(events.iter().all(|e| e.get("ts_wall_ns").is_none()
        && e.get("seq").is_none()
        && e.get("uid").is_none()));

    let t = get_ok(&s, &format!("/pods/{B}/timeline"));
    let types: Vec<&str> = t["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types, ["PodAdmitted", "DeletionRequested"], "{t}");
    // /events is the arrival order (the order of seq), not sorted.
    let all = get_ok(&s, &format!("/events?uid={A}"));
    let types: Vec<&str> = all["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    assert_eq!(types.last(), Some(&"DeletionRequested"), "{all}");
}

/// The frames of an SSE body: (event, data as JSON), until `n` frames or the stream ends.
async fn frames(body: Body, n: usize) -> Vec<(String, Value)> {
    let mut stream = body.into_data_stream();
    let mut text = String::new();
    let mut out = Vec::new();
    while out.len() < n {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), stream.next())
            .await
            .unwrap_or_else(|_| panic!("no SSE frame in 10 s; so far {out:?}, pending {text:?}"));
        let Some(chunk) = chunk else { break };
        text.push_str(std::str::from_utf8(&chunk.expect("body chunk")).expect("UTF-8"));
        while let Some(end) = text.find("\n\n") {
            let frame: String = text.drain(..end + 2).collect();
            let mut event = String::new();
            let mut data = String::new();
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    event = v.trim().to_string();
                } else if let Some(v) = line.strip_prefix("data:") {
                    data.push_str(v.trim_start());
                }
            }
            if event.is_empty() && data.is_empty() {
                continue; // keep-alive comment
            }
            let data = serde_json::from_str(&data)
                .unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {frame:?}"));
            out.push((event, data));
        }
    }
    out
}

fn open_stream(s: &Arc<Shared>, uri: &str) -> axum::response::Response {
    rt().block_on(async {
        let req = Request::get(uri).body(Body::empty()).expect("request");
        crate::serve::http::router(s.clone(), open_api())
            .oneshot(req)
            .await
            .expect("infallible")
    })
}

#[test]
fn the_live_stream_sends_new_events_of_the_asked_pod_in_order() {
    let s = shared();
    admit(&s, S, 100, A); // before the client: not sent
    let all = open_stream(&s, "/events/stream");
    let only_b = open_stream(&s, &format!("/events/stream?uid={B}"));
    assert_eq!(all.status(), StatusCode::OK);
    assert_eq!(
        all.headers()["content-type"],
        "text/event-stream",
        "{:?}",
        all.headers()
    );
    admit(&s, 2 * S, 200, B);
    admit(&s, 3 * S, 300, C);
    delete(&s, B, 4 * S);
    remove(&s, 5 * S, 100, A);

    let rt = rt();
    let got = rt.block_on(frames(all.into_body(), 4));
    let seen: Vec<(&str, &str, &str)> = got
        .iter()
        .map(|(ev, d)| {
            (
                ev.as_str(),
                d["uid"].as_str().unwrap_or(""),
                d["type"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("lifecycle", B, "PodAdmitted"),
            ("lifecycle", C, "PodAdmitted"),
            ("lifecycle", B, "DeletionRequested"),
            ("lifecycle", A, "PodRemoved"),
        ]
    );
    assert_eq!(got[0].1["time"], format_rfc3339(wall(2 * S)));
    let got = rt.block_on(frames(only_b.into_body(), 2));
    let seen: Vec<(&str, &str)> = got
        .iter()
        .map(|(_, d)| (d["uid"].as_str().unwrap(), d["type"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [(B, "PodAdmitted"), (B, "DeletionRequested")]);

    // Parameters are checked as on every endpoint.
    assert_eq!(
        get(&s, "/events/stream?since=1m").0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(get(&s, "/events/stream?uid=x").0, StatusCode::BAD_REQUEST);
}

#[test]
fn a_client_that_lags_is_told_how_many_events_it_missed_then_follows_again() {
    let s = shared();
    let slow = open_stream(&s, &format!("/events/stream?uid={B}"));
    // The live channel holds 4096 events: 5000 events of B before the client reads anything.
    for n in 0..5000 {
        let ev = Arc::new(crate::pipeline::history::test_event(B, n, 0));
        let _ = s.live.send(crate::pipeline::shared::Published::new(ev));
    }
    admit(&s, S, 100, A);
    admit(&s, 2 * S, 300, C);
    admit(&s, 3 * S, 200, B);
    // 5003 sent, the channel keeps the last 4096: the client missed 907, then gets the kept
    // events of B (n = 907..5000, then its PodAdmitted), those of A and C filtered out.
    let got = rt().block_on(frames(slow.into_body(), 1 + 4093 + 1));
    assert_eq!(
        got[0],
        ("lagged".into(), json!({"missed": 907})),
        "{:?}",
        &got[..3]
    );
    let kept: Vec<u64> = got[1..4094]
        .iter()
        .map(|(ev, d)| {
            assert_eq!(ev, "lifecycle");
            d["pid"].as_u64().unwrap_or_else(|| panic!("{d}"))
        })
        .collect();
    assert_eq!(kept, (907..5000).collect::<Vec<_>>());
    assert_eq!(got[4094].0, "lifecycle");
    assert_eq!(
        (got[4094].1["uid"].as_str(), got[4094].1["type"].as_str()),
        (Some(B), Some("PodAdmitted"))
    );
}

fn uids(v: &Value) -> Vec<&str> {
    v["pods"]
        .as_array()
        .unwrap_or_else(|| panic!("no pods array: {v}"))
        .iter()
        .map(|p| p["uid"].as_str().unwrap())
        .collect()
}

#[test]
fn pods_filters_and_the_newest_pod_of_a_name_tell_pods_apart() {
    let s = shared();
    // shop/web, removed; shop/web again (a new uid, as a re-created pod has), running;
    // kube-system/web (same name, other namespace), terminating.
    admit(&s, S, 100, A);
    name(&s, A, "shop", "web");
    remove(&s, 5 * S, 100, A);
    admit(&s, 6 * S, 200, B);
    name(&s, B, "shop", "web");
    admit(&s, 7 * S, 300, C);
    name(&s, C, "kube-system", "web");
    delete(&s, C, 8 * S);

    assert_eq!(uids(&get_ok(&s, "/pods")), [A, B, C]);
    assert_eq!(uids(&get_ok(&s, "/pods?namespace=shop")), [A, B]);
    assert_eq!(uids(&get_ok(&s, "/pods?namespace=kube-system")), [C]);
    assert_eq!(
        uids(&get_ok(&s, "/pods?namespace=other")),
        Vec::<&str>::new()
    );
    assert_eq!(uids(&get_ok(&s, "/pods?state=Removed")), [A]);
    assert_eq!(
        uids(&get_ok(&s, "/pods?state=terminating")),
        [C],
        "any case"
    );
    assert_eq!(
        uids(&get_ok(&s, "/pods?phase=Pending")),
        [B],
        "phase is state"
    );
    assert_eq!(
        uids(&get_ok(&s, "/pods?namespace=shop&state=Pending")),
        [B],
        "both filters"
    );
    assert_eq!(
        uids(&get_ok(&s, "/pods?namespace=kube-system&state=Pending")),
        Vec::<&str>::new()
    );

    // By name: the newest pod of that name in that namespace.
    assert_eq!(get_ok(&s, "/pods/shop/web/timeline")["uid"], B);
    assert_eq!(get_ok(&s, "/pods/kube-system/web/timeline")["uid"], C);
    let (status, v) = get(&s, "/pods/default/web/timeline");
    assert_eq!(status, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"]["code"], "unknown_pod");
    // The text form goes by the same lookup.
    let req = Request::get("/pods/shop/web/timeline?format=text")
        .body(Body::empty())
        .unwrap();
    let text = rt().block_on(async {
        let resp = crate::serve::http::router(s.clone(), open_api())
            .oneshot(req)
            .await
            .unwrap();
        let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    });
    assert!(text.contains(B) && !text.contains(A), "{text}");
}

/// The data routes as a trusted peer sees them (these tests are about what is served, not
/// who may read it: http/auth_tests.rs is).
fn open_api() -> crate::serve::http::ApiConfig {
    crate::serve::http::ApiConfig {
        access: crate::serve::http::Access::open(),
        ..Default::default()
    }
}

#[test]
fn an_events_page_is_bounded_by_bytes_and_says_what_is_left() {
    let mut h = History::new(10, 1000, 1000);
    for i in 0..100 {
        h.push(crate::pipeline::history::test_event("a", i, i64::from(i)));
    }
    let all = h.select(&EventQuery {
        since_wall_ns: i128::MIN,
        uid: None,
        after: None,
        limit: 1000,
    });
    // The size of one served event (ts_wall_ns is left out when served).
    let one = all[0].to_json(podlife_core::Fields::Events).len();
    let page = |cursor, max| -> Value {
        serde_json::from_str(&events_page(&all, cursor, 1000, max, None)).expect("JSON")
    };
    // Without a cursor the newest fit; ts_wall_ns is internal.
    let p = page(false, 10 * (one + 1));
    let ns: Vec<i64> = p["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pid"].as_i64().unwrap())
        .collect();
    assert!(ns.len() >= 9 && ns.len() <= 10, "{ns:?}");
    assert_eq!(*ns.last().unwrap(), 99);
    assert_eq!(p["more"], true);
    assert!(p["events"][0].get("ts_wall_ns").is_none());
    // With a cursor the oldest, and `next` continues from the last one served.
    let p = page(true, 10 * (one + 1));
    assert_eq!(p["events"][0]["pid"], 0);
    let last = p["events"].as_array().unwrap().last().unwrap()["id"].clone();
    assert_eq!(p["next"], last);
    assert!(last.is_string(), "ids are strings: {last}");
    // Everything fits: nothing more.
    let p = page(true, 1 << 20);
    assert_eq!(p["events"].as_array().unwrap().len(), 100);
    assert_eq!(p["more"], false);
    // A single event larger than the bound is still served (a page is never empty).
    assert_eq!(page(false, 1)["events"].as_array().unwrap().len(), 1);
    // A cursor older than retention: the marker comes first.
    let p: Value =
        serde_json::from_str(&events_page(&all, true, 1000, 1 << 20, Some(7))).expect("JSON");
    assert_eq!(p["events"][0]["type"], "EventsExpired");
    assert_eq!(p["events"][0]["after"], "7");
    assert_eq!(p["events"][1]["pid"], 0);
}

#[test]
fn ring_buffer_loss_is_told_once_per_live_pod_as_a_typed_event_with_its_wire_fields() {
    let s = shared();
    admit(&s, S, 100, A);
    admit(&s, 2 * S, 200, B);
    remove(&s, 3 * S, 200, B);
    {
        let mut inner = s.lock();
        inner.loss_tick(5, 4 * S);
        inner.loss_tick(2, 5 * S);
        inner.finish_loss();
        drain(&s, inner);
    }
    let lost: Vec<Value> = get_ok(&s, "/events")["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "EventsLost")
        .cloned()
        .collect();
    assert_eq!(lost.len(), 1, "only the live pod: {lost:?}");
    let e = &lost[0];
    assert_eq!(e["uid"], A);
    assert_eq!(e["lost"], 7);
    assert_eq!(e["source"], "agent");
    assert_eq!(e["first"], format_rfc3339(wall(4 * S)));
    assert_eq!(e["last"], format_rfc3339(wall(5 * S)));
    assert_eq!(e["time"], e["first"]);
    assert!(e["container"].is_null() && e["container_id"].is_null());
    let t = get_ok(&s, &format!("/pods/{A}/timeline"));
    assert_eq!(t["complete"], false);
    assert!(t["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "EventsLost" && e.get("uid").is_none()));
    let text = get_text(&s, &format!("/pods/{A}/timeline?format=text"));
    let lost = text
        .lines()
        .find(|l| l.contains("EventsLost"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(
        lost.starts_with('!') && lost.contains("lost=7  between "),
        "{lost}"
    );
}

fn get_text(s: &Arc<Shared>, uri: &str) -> String {
    let req = Request::get(uri).body(Body::empty()).expect("request");
    rt().block_on(async {
        let resp = crate::serve::http::router(s.clone(), open_api())
            .oneshot(req)
            .await
            .expect("infallible");
        assert_eq!(resp.status(), StatusCode::OK, "GET {uri}");
        let b = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .expect("body");
        String::from_utf8(b.to_vec()).expect("UTF-8")
    })
}

#[test]
fn the_text_view_of_a_pod_known_only_from_history_has_its_names_and_typed_details() {
    use podlife_core::{ExitReason, KilledBy, LifecycleKind, ServedEvent, Source};
    let s = shared();
    let restored = |n: u32, kind| ServedEvent {
        kind,
        names: Some(("shop".into(), "web\x1b[2J".into())),
        container: Some("app".into()),
        source: Source::Kernel,
        ..crate::pipeline::history::test_event(A, n, wall(n as u64 * S) as i64)
    };
    {
        let mut inner = s.lock();
        inner.history.push(restored(1, LifecycleKind::PodAdmitted));
        inner.history.push(restored(
            3,
            LifecycleKind::ContainerExited {
                pid: 7,
                exit_code: None,
                signal: Some("SIGKILL".into()),
                reason: ExitReason::OomKilled,
                killed_by: Some(KilledBy::OomKiller),
                sender: None,
                termination_s: None,
            },
        ));
        inner.history.push(restored(4, LifecycleKind::PodRemoved));
    }
    let text = get_text(&s, &format!("/pods/{A}/timeline?format=text"));
    assert!(
        text.starts_with(&format!(
            "pod shop/web\\x1b[2J  uid {A}  qos -  state Removed\n"
        )),
        "names from history, control characters escaped:\n{text}"
    );
    let exited = text
        .lines()
        .find(|l| l.contains("ContainerExited"))
        .unwrap_or_else(|| panic!("{text}"));
    assert!(exited.starts_with('!'), "{exited}");
    assert!(
        exited.contains("+2.000s")
            && exited
                .contains("app  pid=7  signal=SIGKILL  reason=OOMKilled  killed_by=oom_killer"),
        "{exited}"
    );
}

#[test]
fn a_refound_event_is_dropped_only_when_history_has_that_kind_for_that_container() {
    use podlife_core::{LifecycleEvent, LifecycleKind, Source};
    let s = shared();
    admit(&s, S, 100, A);
    let found = |kind: LifecycleKind, container_id: Option<&str>| LifecycleEvent {
        ts_ns: 2 * S,
        pod_uid: A.into(),
        container_id: container_id.map(str::to_string),
        container: None,
        source: Source::Bootstrap,
        kind,
    };
    let before = s.lock().history.pod(A).unwrap().len();
    {
        let mut inner = s.lock();
        inner.publish(vec![
            // Known: the pod's admission is in history.
            found(LifecycleKind::PodAdmitted, None),
            // News: no sandbox of this pod in history.
            found(LifecycleKind::SandboxStarted { pid: 7 }, Some("ab")),
            // News: the same (no) container as the admission, another kind.
            found(
                LifecycleKind::DeletionRequested {
                    grace_period_s: None,
                },
                None,
            ),
        ]);
        drain(&s, inner);
    }
    let inner = s.lock();
    let kinds: Vec<&str> = inner.history.pod(A).unwrap()[before..]
        .iter()
        .map(|e| e.kind.name())
        .collect();
    assert_eq!(kinds, ["SandboxStarted", "DeletionRequested"]);
}
