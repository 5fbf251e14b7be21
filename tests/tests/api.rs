//! The API as a person uses it, on a real pod: the text timeline, the JSON contract, the error
//! paths. The outputs are also written to target/e2e-demo/ (the README's examples come from there).

use std::time::Duration;

use podlife_e2e::agent::{events, events_of};
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::Env;

#[test]
fn text_and_json_timelines_and_errors() {
    let mut env = Env::start();
    let pod = env.run_pod("web", PodOpts::default());
    let app = env.run_container(
        &pod,
        "app",
        &["sh", "-c", "echo up; exec sleep 1000"],
        CtrOpts::default(),
    );
    env.agent
        .wait_for(&pod.uid, "app start", Duration::from_secs(20), |t| {
            !events_of(t, "ContainerStarted", &app.id).is_empty()
        });
    for code in ["0", "1", "1"] {
        let _ = env
            .cri
            .exec_sync(&app.id, &["sh", "-c", &format!("exit {code}")], 5);
    }
    env.cri.stop_container(&app.id, 2);
    env.agent
        .wait_for(&pod.uid, "app exit", Duration::from_secs(20), |t| {
            !events_of(t, "ContainerExited", &app.id).is_empty()
        });

    let (status, text) = env
        .agent
        .get(&format!("/pods/{}/timeline?format=text", pod.uid));
    assert_eq!(status, 200);
    assert!(
        text.starts_with(&format!("pod e2e/web  uid {}  qos burstable", pod.uid)),
        "{text}"
    );
    let line = |ty: &str| {
        text.lines()
            .find(|l| l.contains(ty))
            .unwrap_or_else(|| panic!("no {ty} line:\n{text}"))
            .to_string()
    };
    assert!(
        line("StopSignalIgnored").starts_with('!'),
        "problems are marked:\n{text}"
    );
    assert!(line("GracePeriodOverrun").contains("grace=2."), "{text}");
    assert!(
        line("ContainerStarted").contains("`sh -c echo up; exec sleep 1000`"),
        "{text}"
    );
    assert!(line("ProbeFailed").starts_with('!'));
    let json = env.agent.timeline(&pod.uid);
    for key in [
        "uid",
        "namespace",
        "name",
        "qos",
        "node",
        // null without --kube-api, the key is there all the same
        "owner",
        "state",
        "containers",
        "events",
    ] {
        assert!(json.get(key).is_some(), "timeline lacks {key}: {json}");
    }
    assert!(
        json["events"].as_array().unwrap().iter().all(|e| e["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 30)),
        "RFC 3339 with ns"
    );
    let (status, by_accept) = {
        // Accept: text/plain gives the text form too.
        let mut s = std::net::TcpStream::connect(("127.0.0.1", env.agent.port)).unwrap();
        use std::io::{Read, Write};
        write!(s, "GET /pods/{}/timeline HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\nConnection: close\r\n\r\n", pod.uid).unwrap();
        let mut b = String::new();
        s.read_to_string(&mut b).unwrap();
        (b.split(' ').nth(1).unwrap_or("").to_string(), b)
    };
    assert_eq!(status, "200");
    assert!(by_accept.contains("StopSignalIgnored") && !by_accept.contains("\"events\""));

    for (path, code, err) in [
        ("/pods/not-a-uid/timeline", 400, "invalid_uid"),
        (
            "/pods/8f3c2a1e-1111-4a4a-9b9b-00000000dead/timeline",
            404,
            "unknown_pod",
        ),
        ("/pods?bogus=1", 400, "unknown_parameter"),
        ("/events?since=yesterday", 400, "invalid_since"),
        ("/events?limit=0", 400, "invalid_limit"),
        (
            &format!("/pods/{}/timeline?format=yaml", pod.uid),
            400,
            "invalid_format",
        ),
        ("/pods/Bad_NS/web/timeline", 400, "invalid_name"),
        ("/nope", 404, "no_route"),
    ] {
        let (status, body) = env.agent.get(path);
        assert_eq!(status, code, "{path}: {body}");
        let v: serde_json::Value =
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("{path}: not JSON: {body}"));
        assert_eq!(v["error"]["code"], err, "{path}");
    }
    let served = env
        .agent
        .json(&format!("/events?since=10m&uid={}", pod.uid));
    assert!(served["events"].as_array().unwrap().len() >= 8, "{served}");

    // A second pod: each uid gets its own pod's events, all of them; limit keeps the newest.
    let other = env.run_pod("other", PodOpts::default());
    env.agent
        .wait_for(&other.uid, "the other pod", Duration::from_secs(20), |t| {
            !events(t, "PodAdmitted").is_empty()
        });
    let of = |q: &str| -> Vec<serde_json::Value> {
        env.agent.json(&format!("/events?{q}"))["events"]
            .as_array()
            .unwrap_or_else(|| panic!("/events?{q}: no events array"))
            .clone()
    };
    let mine = of(&format!("uid={}", pod.uid));
    let theirs = of(&format!("uid={}", other.uid));
    assert!(
        mine.len() >= 8 && mine.iter().all(|e| e["uid"] == pod.uid.as_str()),
        "{mine:?}"
    );
    assert!(
        !theirs.is_empty() && theirs.iter().all(|e| e["uid"] == other.uid.as_str()),
        "{theirs:?}"
    );
    assert_eq!(
        of(&format!("uid={}&limit=2", pod.uid)),
        mine[mine.len() - 2..],
        "the newest two, oldest first"
    );

    // Every family of a real scrape is in the list dashboards/check.py validates against, with
    // its type and no label beyond those listed.
    let scrape = env.agent.metrics();
    let listed = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards/agent-metrics.txt"),
    )
    .expect("dashboards/agent-metrics.txt");
    for (name, kind) in scrape
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.split_once(' '))
    {
        let entry: Vec<&str> = listed
            .lines()
            .find(|l| l.split(' ').next() == Some(name))
            .unwrap_or_else(|| panic!("{name} is exported but not in dashboards/agent-metrics.txt"))
            .split(' ')
            .collect();
        assert_eq!(entry.get(1), Some(&kind), "{name}");
        let labels: Vec<&str> = entry
            .get(2)
            .map(|l| l.split(',').collect())
            .unwrap_or_default();
        for sample in scrape
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(name))
        {
            let Some((_, rest)) = sample.split_once('{') else {
                continue;
            };
            for kv in rest.split("\",").filter(|kv| kv.contains('=')) {
                let k = kv.split('=').next().unwrap();
                assert!(
                    k == "le" || labels.contains(&k),
                    "{sample}: label {k} not listed for {name} in dashboards/agent-metrics.txt"
                );
            }
        }
    }

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/e2e-demo");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(dir.join("timeline.txt"), &text);
    let _ = std::fs::write(
        dir.join("timeline.json"),
        serde_json::to_string_pretty(&json).unwrap(),
    );
    let _ = std::fs::write(dir.join("metrics.txt"), env.agent.metrics());
}
