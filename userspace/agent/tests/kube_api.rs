//! The `--kube-api` watch end to end without root: the real kube client (from a generated
//! kubeconfig) lists and watches a protocol-level stand-in of the API server (tests/kube_server,
//! not a real kube-apiserver), and what it tells reaches the engine, the HTTP API and /metrics.
//! Refusals (403) and an unreachable server degrade the `kube_api` feature instead of failing.

mod kube_server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube_server::{kubeconfig, FakeApiServer};
use podlife::config::KubeApi;
use podlife::kube::watch::{self as kube_watch, WatchOptions};
use podlife::node::cgroupfs::CgroupMounts;
use podlife::node::clock::WallClock;
use podlife::pipeline::metrics::Metrics;
use podlife::pipeline::shared::{Inner, Shared};
use podlife_core::{Engine, EngineConfig, KernelEvent, KernelEventKind};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

const NODE: &str = "node-1";
const WEB_UID: &str = "8f3c2a1e-1111-4a4a-9b9b-000000000001";
const APP_ID: &str = "65c022584ce537638b6196ff83bd510e4efe8745955507f332187254d09e7e10";
const SIDECAR_ID: &str = "7f2963954487af3e54587227d8290b562772d0cfd58bd64dab0f2131fb0a8ce0";

fn shared() -> Arc<Shared> {
    let engine = Engine::new(EngineConfig {
        node_name: Some(NODE.into()),
        reorder_window_ns: 0,
        ..EngineConfig::default()
    });
    let inner = Inner::new(
        engine,
        Metrics::new("test"),
        WallClock::measure(),
        None,
        Some(NODE.into()),
        Vec::new(),
        CgroupMounts::default(),
    );
    Shared::new(inner)
}

/// The kernel's side of a pod: its cgroup and its containers' cgroups appear.
fn kernel_sees_pod(s: &Shared, uid: &str, containers: &[&str]) {
    static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1000);
    let mut inner = state(s);
    let pod = format!("/kubepods/burstable/pod{uid}");
    let mut paths = vec![(pod.clone(), 3)];
    paths.extend(containers.iter().map(|c| (format!("{pod}/{c}"), 4)));
    for (path, level) in paths {
        let ev = KernelEvent {
            ts_ns: WallClock::now_mono_ns(),
            tgid: 1,
            tid: 1,
            cgroup_id: 0,
            comm: "runc".into(),
            kind: KernelEventKind::CgroupMkdir {
                root: 0,
                id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                level,
                path,
            },
        };
        inner.on_kernel_event(ev);
    }
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/kube/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `2026-11-29T11:00:00Z` of a wall-clock time (the API's second resolution).
fn api_time(wall_ns: i128) -> String {
    format!("{}Z", &podlife_core::format_rfc3339(wall_ns)[..19])
}

fn options(kubeconfig_file: PathBuf) -> WatchOptions {
    WatchOptions {
        mode: KubeApi::Kubeconfig,
        kubeconfig: Some(kubeconfig_file),
        node: Some(NODE.into()),
        max_backoff: Duration::from_millis(200),
    }
}

fn write_kubeconfig(dir: &str, server: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("podlife-kube-{dir}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("kubeconfig");
    std::fs::write(&path, kubeconfig(server, "test-token")).unwrap();
    path
}

/// Poll until `cond` holds (the watch runs on its own task), or fail saying what was awaited.
/// The shared state after the queued facts were applied: the pipeline does this every loop;
/// these tests run the watch without one.
fn state(s: &Shared) -> std::sync::MutexGuard<'_, podlife::pipeline::shared::Inner> {
    podlife::pipeline::facts::apply_pending(s);
    s.lock()
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        if Instant::now() > deadline {
            panic!("timed out waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn feature(s: &Shared) -> Option<i64> {
    let text = state(s).metrics.encode();
    text.lines()
        .find(|l| l.starts_with("podlife_feature_enabled{feature=\"kube_api\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// GET on the agent's real HTTP API.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: podlife\r\nConnection: close\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).await.unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap_or((&out, ""));
    assert!(head.starts_with("HTTP/1.1 200"), "GET {path}: {head}");
    body.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_and_watch_reach_the_timeline_the_pod_api_and_metrics() {
    let server = FakeApiServer::default();
    let url = server.start().await;
    let s = shared();
    kernel_sees_pod(&s, WEB_UID, &[APP_ID, SIDECAR_ID]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api = listener.local_addr().unwrap();
    let serve = podlife::serve::http::serve(
        listener,
        s.clone(),
        podlife::serve::http::Access::private(),
        std::future::pending(),
    );
    tokio::spawn(serve);

    // Listed: the web pod, running (the fixture's deletion is taken off for now).
    let mut web = fixture("pod-deployment-terminating");
    let meta = web["metadata"].as_object_mut().unwrap();
    let deletion = meta.remove("deletionTimestamp");
    meta.remove("deletionGracePeriodSeconds");
    assert!(deletion.is_some());
    server.set_items(vec![web.clone()]);
    assert_eq!(feature(&s), None, "no series before the watch starts");
    let task = tokio::spawn(kube_watch::run(
        s.clone(),
        options(write_kubeconfig("ok", &url)),
    ));

    eventually("the owner from the listed pod", || {
        state(&s)
            .pod_json(WEB_UID)
            .is_some_and(|p| p["owner"]["kind"] == "ReplicaSet")
    })
    .await;
    eventually("the feature metric at 1", || feature(&s) == Some(1)).await;
    let first = &server.requests()[0];
    assert_eq!(
        first.query.get("fieldSelector").map(String::as_str),
        Some("spec.nodeName=node-1"),
        "only this node's pods: {first:?}"
    );
    assert_eq!(first.authorization.as_deref(), Some("Bearer test-token"));
    assert_eq!(first.query.get("watch"), None, "a list first");

    // Served by the agent's HTTP API: owner, names, kinds from the spec by container id.
    let pod: Value = serde_json::from_str(&get(api, &format!("/pods/{WEB_UID}")).await).unwrap();
    assert_eq!(
        pod["owner"],
        json!({"kind": "ReplicaSet", "name": "web-5d4f7c9b8"})
    );
    assert_eq!(pod["name"], "web-5d4f7c9b8-x2kqp");
    assert_eq!(pod["namespace"], "shop");
    let kinds: Vec<(Value, Value)> = pod["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["name"].clone(), c["kind"].clone()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (json!("app"), json!("app")),
            (json!("log-shipper"), json!("sidecar"))
        ]
    );
    let list: Value = serde_json::from_str(&get(api, "/pods").await).unwrap();
    assert_eq!(list["pods"][0]["owner"]["name"], "web-5d4f7c9b8");
    let meta = state(&s).engine.pod_meta(WEB_UID).unwrap();
    assert_eq!(
        meta.grace_period_s,
        Some(60.0),
        "the spec's terminationGracePeriodSeconds"
    );
    assert!(meta
        .exec_probes
        .iter()
        .any(|(c, t, a)| c == "app" && t == "liveness" && a[2] == "test -f /tmp/healthy"));

    // Watch: the pod is deleted with a 30 s grace period (deletionTimestamp = request + 30 s).
    eventually("a watch stream open", || server.watchers() > 0).await;
    // The API's one-second resolution; the next second, so after the kernel's events.
    let now = WallClock::now_wall_ns() + 1_000_000_000;
    let requested = now - now.rem_euclid(1_000_000_000);
    let mut deleted = web.clone();
    deleted["metadata"]["deletionTimestamp"] = json!(api_time(requested + 30_000_000_000));
    deleted["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    server.send("MODIFIED", deleted.clone());
    eventually("DeletionRequested on the timeline", || {
        state(&s).timeline_json(WEB_UID).is_some_and(|t| {
            t["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["type"] == "DeletionRequested")
        })
    })
    .await;
    // The watch repeats the deletion on later updates, then DELETED ends the object.
    server.send("MODIFIED", deleted.clone());
    server.send("DELETED", deleted);
    // A pod the kernel has not shown yet: kept until its cgroup appears. The watch applies its
    // events in order, so once a marker pod sent after it is named, the ADDED was consumed
    // while the kernel had not shown the pod (the pending path, not a race).
    const DB_UID: &str = "0d6c3a4e-2222-4b4b-8c8c-000000000002";
    const MARKER_UID: &str = "0d6c3a4e-2222-4b4b-8c8c-000000000003";
    kernel_sees_pod(&s, MARKER_UID, &[]);
    let mut db = fixture("pod-statefulset-crio");
    db["metadata"]["uid"] = json!(DB_UID);
    let mut marker = db.clone();
    marker["metadata"]["uid"] = json!(MARKER_UID);
    marker["metadata"]["name"] = json!("marker-0");
    server.send("ADDED", db);
    server.send("ADDED", marker);
    eventually("the marker pod sent after it named", || {
        state(&s)
            .pod_json(MARKER_UID)
            .is_some_and(|p| p["name"] == "marker-0")
    })
    .await;
    assert!(
        state(&s).pod_json(DB_UID).is_none(),
        "the statefulset pod is not known before its cgroup"
    );
    kernel_sees_pod(&s, DB_UID, &[]);
    eventually("the statefulset pod's owner", || {
        state(&s)
            .pod_json(DB_UID)
            .is_some_and(|p| p["owner"]["kind"] == "StatefulSet")
    })
    .await;

    let timeline: Value =
        serde_json::from_str(&get(api, &format!("/pods/{WEB_UID}/timeline")).await).unwrap();
    let deletions: Vec<&Value> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "DeletionRequested")
        .collect();
    assert_eq!(deletions.len(), 1, "derived once: {timeline}");
    let d = deletions[0];
    assert_eq!(d["source"], "api");
    assert_eq!(d["grace_period_s"], 30.0);
    assert_eq!(d["time"], podlife_core::format_rfc3339(requested));
    assert_eq!(timeline["state"], "Terminating");
    assert_eq!(timeline["owner"]["kind"], "ReplicaSet");
    let types: Vec<&str> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    // Dated after the kernel's events and sent last, it is last in arrival and in time order
    // alike: the served order is tested in the agent's views tests (a deletion dated before
    // kernel events it arrives after).
    assert_eq!(types.last(), Some(&"DeletionRequested"), "{types:?}");
    assert_eq!(
        state(&s).engine.pod_meta(WEB_UID).unwrap().grace_period_s,
        Some(30.0)
    );
    let text = get(api, &format!("/pods/{WEB_UID}/timeline?format=text")).await;
    assert!(text.contains("owner ReplicaSet/web-5d4f7c9b8"), "{text}");
    assert!(text.contains("grace_period=30s  (API server)"), "{text}");
    let metrics = get(api, "/metrics").await;
    assert!(
        metrics.contains("podlife_feature_enabled{feature=\"kube_api\"} 1"),
        "{metrics}"
    );
    assert!(!task.is_finished(), "the watch keeps running");
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_degrades_the_feature_retries_and_recovers() {
    let server = FakeApiServer::default();
    let url = server.start().await;
    server.set_forbidden(true);
    let s = shared();
    kernel_sees_pod(&s, WEB_UID, &[APP_ID]);
    server.set_items(vec![fixture("pod-deployment-terminating")]);
    let task = tokio::spawn(kube_watch::run(
        s.clone(),
        options(write_kubeconfig("403", &url)),
    ));
    eventually("the feature metric at 0", || feature(&s) == Some(0)).await;
    eventually("retries with back-off", || server.requests().len() >= 3).await;
    assert!(!task.is_finished(), "a 403 does not end the watch");
    // The agent still serves the pod from kernel data alone.
    let pod = state(&s).pod_json(WEB_UID).unwrap();
    assert_eq!(pod["owner"], Value::Null);
    assert_eq!(pod["uid"], WEB_UID);
    // RBAC granted: the next attempt lists and the feature comes back.
    server.set_forbidden(false);
    eventually("the feature metric back at 1", || feature(&s) == Some(1)).await;
    eventually("the owner once allowed", || {
        state(&s)
            .pod_json(WEB_UID)
            .is_some_and(|p| !p["owner"].is_null())
    })
    .await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_server_and_bad_configs_degrade_without_panicking() {
    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let s = shared();
    let task = tokio::spawn(kube_watch::run(
        s.clone(),
        options(write_kubeconfig("refused", &url)),
    ));
    eventually("the feature metric at 0", || feature(&s) == Some(0)).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!task.is_finished(), "connection refused is retried");
    task.abort();

    // A kubeconfig that does not exist: retried too (it may be mounted later).
    let s = shared();
    let missing = std::env::temp_dir().join("podlife-kube-no-such-dir/kubeconfig");
    let task = tokio::spawn(kube_watch::run(s.clone(), options(missing)));
    eventually("the feature metric at 0", || feature(&s) == Some(0)).await;
    assert!(!task.is_finished());
    task.abort();

    // In-cluster outside a pod: no service account environment.
    let s = shared();
    let mut o = options(PathBuf::new());
    o.mode = KubeApi::InCluster;
    let task = tokio::spawn(kube_watch::run(s.clone(), o));
    eventually("the feature metric at 0", || feature(&s) == Some(0)).await;
    task.abort();

    // No node name: the watch would cover the cluster, so it does not start.
    let s = shared();
    let mut o = options(PathBuf::new());
    o.node = None;
    kube_watch::run(s.clone(), o).await;
    assert_eq!(feature(&s), Some(0));
}
