//! `kubectl podlife` run by a real kubectl (Debian's kubernetes-client) as a kubectl plugin,
//! against a stand-in API server (tests/src/apiserver.rs — not a real API server) whose
//! `pods/proxy` forwards to two real agents on this machine standing in for two nodes. The
//! agents require a token; the stand-in drops the caller's Authorization on the proxy as
//! kube-apiserver does, so the plugin's X-Podlife-Token is what lets it in.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podlife_e2e::agent::{agent_bin, events, Agent};
use podlife_e2e::apiserver::{self, ApiServer, World};
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::Env;
use serde_json::Value;

const TOKEN: &str = "agent-token-for-the-plugin-test";

fn plugin_dir() -> PathBuf {
    let bin = agent_bin().with_file_name("kubectl-podlife");
    assert!(
        bin.is_file(),
        "{} is missing: build it with `cargo build --release -p kubectl-podlife`",
        bin.display()
    );
    bin.parent().unwrap().to_path_buf()
}

/// `kubectl podlife ARGS` with the stand-in's kubeconfig: (exit code, stdout, stderr).
fn kubectl(kubeconfig: &Path, args: &[&str]) -> (i32, String, String) {
    let path = format!(
        "{}:{}",
        plugin_dir().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("kubectl")
        .arg("podlife")
        .args(args)
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("PODLIFE_TOKEN_FILE")
        .output()
        .unwrap_or_else(|e| panic!("running kubectl (apt install kubernetes-client): {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The RFC 3339 times that start the plugin's event lines.
fn times(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter_map(|l| l.split("  ").next())
        .collect()
}

#[test]
fn kubectl_podlife_reads_timelines_and_events_of_every_node_through_the_pod_proxy() {
    podlife_e2e::require_root();
    let tmp = std::env::temp_dir().join(format!("podlife-plugin-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let token_file = tmp.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let tf = token_file.to_str().unwrap();
    let mut env = Env::start_with_agent_args(&["--api-token-file", tf]);
    env.agent.set_token(TOKEN);
    let socket = env.kubelet.containerd.socket.to_string_lossy().to_string();
    let mut node_b = Agent::start_args(
        &env.kubelet.containerd.state,
        None,
        &["--cri-socket", &socket, "--api-token-file", tf],
    );
    node_b.set_token(TOKEN);

    let pod = env.run_pod_in("shop", "web", PodOpts::default());
    let app = env.run_container(&pod, "app", &["sleep", "1000"], CtrOpts::default());
    for agent in [&env.agent, &node_b] {
        agent.wait_for(&pod.uid, "the app started", Duration::from_secs(30), |t| {
            t["name"] == "web" && !events(t, "ContainerStarted").is_empty()
        });
    }

    let mut world = World::default();
    world.pods.insert(
        ("shop".into(), "web".into()),
        apiserver::pod("shop", "web", &pod.uid, "node-a"),
    );
    world.agents.insert(
        "podlife-aaaaa".into(),
        ("node-a".into(), env.agent.port, "Running".into()),
    );
    world.agents.insert(
        "podlife-bbbbb".into(),
        ("node-b".into(), node_b.port, "Running".into()),
    );
    // A stale agent pod on node-a that is not running: never asked.
    world
        .agents
        .insert("podlife-old".into(), ("node-a".into(), 1, "Failed".into()));
    world
        .secrets
        .insert(("podlife".into(), "podlife-api-token".into()), TOKEN.into());
    let api = ApiServer::start(world);
    let kc = api.kubeconfig(&tmp);

    // 1. The timeline: the pod's node from the API, its agent by label and node, the text
    //    exactly the agent's own ?format=text (one renderer).
    let (code, out, err) = kubectl(&kc, &["timeline", "-n", "shop", "web"]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let direct = env
        .agent
        .get(&format!("/pods/{}/timeline?format=text", pod.uid))
        .1;
    let header = |t: &str| t.lines().next().unwrap_or("").to_string();
    assert_eq!(header(&out), header(&direct), "\n{out}");
    assert!(
        out.contains("shop/web") && out.contains("ContainerStarted"),
        "{out}"
    );
    let seen = api.seen();
    let proxied: Vec<_> = seen.iter().filter(|s| s.path.contains("/proxy/")).collect();
    assert!(
        !proxied.is_empty()
            && proxied
                .iter()
                .all(|s| s.path.contains("/pods/podlife-aaaaa:9090/proxy/")),
        "only node-a's running agent is asked: {:?}",
        proxied.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    assert!(seen
        .iter()
        .any(|s| s.path.starts_with("/api/v1/namespaces/shop/pods/web")));
    assert!(
        seen.iter()
            .any(|s| s.path.contains("fieldSelector=spec.nodeName%3Dnode-a")),
        "agents looked up by node: {:?}",
        seen.iter().map(|s| &s.path).collect::<Vec<_>>()
    );
    for s in &proxied {
        assert!(
            s.forwarded
                .iter()
                .any(|(k, v)| k == "x-podlife-token" && v == TOKEN),
            "the token travels in X-Podlife-Token: {:?}",
            s.forwarded
        );
        assert!(!s.forwarded.iter().any(|(k, _)| k == "authorization"));
    }

    // 2. -o json: the agent's JSON timeline.
    let (code, out, err) = kubectl(&kc, &["timeline", "-n", "shop", "web", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(t["uid"], pod.uid.as_str());
    assert!(events(&t, "ContainerStarted")
        .iter()
        .any(|e| e["container_id"] == app.id.as_str()));

    // 3. Events of all nodes, merged in time order, each line naming its node.
    let (code, out, err) = kubectl(&kc, &["events", "--all-nodes", "--since", "10m"]);
    assert_eq!(code, 0, "{err}");
    let web_lines: Vec<&str> = out.lines().filter(|l| l.contains("shop/web")).collect();
    for node in ["node-a", "node-b"] {
        assert!(
            web_lines
                .iter()
                .any(|l| l.contains(&format!("  {node}  ")) && l.contains("ContainerStarted")),
            "{node} missing:\n{out}"
        );
    }
    let ts = times(&out);
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "not in time order:\n{out}"
    );
    assert!(err.is_empty(), "no warning while both answer: {err}");

    // 4. The pod gone from the API: found by name on the agents. Then node-b stops: partial
    //    results and exactly one warning line naming it.
    api.world.lock().unwrap().pods.clear();
    drop(node_b);
    let (code, out, err) = kubectl(&kc, &["timeline", "-n", "shop", "web", "-o", "json"]);
    assert_eq!(code, 0, "found on node-a although node-b is down: {err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(t["uid"], pod.uid.as_str());
    assert_eq!(
        err.lines()
            .filter(|l| l.starts_with("warning: node node-b"))
            .count(),
        1,
        "{err}"
    );
    let (code, out, err) = kubectl(&kc, &["events", "--since", "10m"]);
    assert_eq!(code, 0, "partial results are results: {err}");
    assert!(out.lines().any(|l| l.contains("  node-a  ")), "{out}");
    assert!(!out.lines().any(|l| l.contains("  node-b  ")), "{out}");
    let warnings: Vec<&str> = err.lines().collect();
    assert_eq!(warnings.len(), 1, "{err}");
    assert!(warnings[0].starts_with("warning: node node-b: "), "{err}");

    // 5. A node's pods.
    let (code, out, err) = kubectl(&kc, &["pods", "--node", "node-a"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("NAMESPACE"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("shop") && l.contains("web") && l.contains(&pod.uid)),
        "{out}"
    );

    // 6. -w: a container started after the watch began is printed once, as JSON lines.
    let path = format!(
        "{}:{}",
        plugin_dir().display(),
        std::env::var("PATH").unwrap()
    );
    let mut watch = Command::new("kubectl")
        .args([
            "podlife", "events", "--node", "node-a", "--since", "1s", "-w", "-o", "json",
        ])
        .env("PATH", path)
        .env("KUBECONFIG", &kc)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl podlife events -w");
    let stdout = watch.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead as _;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // The watch has asked its first page once the stand-in saw it.
    let t0 = Instant::now();
    while !api.seen().iter().any(|s| s.path.contains("since=1s")) {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the watch never asked"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let late = env.run_container(&pod, "late", &["sleep", "1000"], CtrOpts::default());
    let mut ids = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut started_late = 0;
    while Instant::now() < deadline && started_late == 0 {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
            assert_eq!(v["node"], "node-a");
            ids.push(v["id"].as_str().unwrap_or("").to_string());
            if v["type"] == "ContainerStarted" && v["container_id"] == late.id.as_str() {
                started_late += 1;
            }
        }
    }
    // One more poll round: nothing printed twice.
    std::thread::sleep(Duration::from_millis(2500));
    while let Ok(line) = rx.try_recv() {
        let v: Value = serde_json::from_str(&line).unwrap();
        ids.push(v["id"].as_str().unwrap_or("").to_string());
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert_eq!(started_late, 1, "the late container's start, once");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "an event printed twice: {ids:?}");

    // 7. Without the token (no Secret readable, none given): the agent's 401 reaches the user.
    api.world.lock().unwrap().secrets.clear();
    let (code, _, err) = kubectl(&kc, &["pods", "--node", "node-a"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("HTTP 401") && err.contains("X-Podlife-Token"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&tmp);
}
