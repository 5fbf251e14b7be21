//! A real Prometheus (Debian's) scrapes a real agent while a pod is OOM-killed: the counter
//! reaches 1 for that pod and the alert rule of dashboards/rules fires.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use podlife_e2e::agent::{events_of, http_get};
use podlife_e2e::kubelet::{CtrOpts, PodOpts};
use podlife_e2e::Env;
use serde_json::Value;

struct Prometheus {
    child: Child,
    port: u16,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Prometheus {
    fn start(dir: &std::path::Path, agent_port: u16) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../dashboards/rules/podlife-alerts.yaml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: podlife\n    static_configs:\n      - targets: ['127.0.0.1:{agent_port}']\n",
            rules.canonicalize().expect("dashboards/rules/podlife-alerts.yaml").display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("starting prometheus (apt-get install prometheus): {e}"));
        let p = Self { child, port };
        let t = Instant::now();
        while http_get(port, "/-/ready").0 != 200 {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "prometheus not ready in 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        p
    }

    fn api(&self, path: &str) -> Value {
        let (_, body) = http_get(self.port, path);
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    fn query(&self, q: &str) -> Vec<Value> {
        self.api(&format!("/api/v1/query?query={}", encode(q)))["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

#[test]
fn prometheus_sees_the_oom_kill_and_the_alert_fires() {
    let mut env = Env::start();
    let prom = Prometheus::start(&env.containerd.dir, env.agent.port);
    let pod = env.run_pod("oomed", PodOpts::default());
    let hog = env.run_container(
        &pod,
        "hog",
        &["/memhog"],
        CtrOpts {
            memory_limit: Some(32 << 20),
            ..CtrOpts::image("memhog")
        },
    );
    env.agent
        .wait_for(&pod.uid, "the OOM kill", Duration::from_secs(20), |t| {
            !events_of(t, "OOMKill", &hog.id).is_empty()
        });

    let q = format!(
        "podlife_container_oom_kills_total{{uid=\"{}\",container=\"hog\"}}",
        pod.uid
    );
    let t = Instant::now();
    let value = loop {
        let r = prom.query(&q);
        if let Some(v) = r
            .first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
        {
            break (v, r[0]["metric"].clone());
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "Prometheus never scraped {q}: targets {}",
            prom.api("/api/v1/targets")
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(value.0, 1.0);
    assert_eq!(value.1["limit_scope"], "container");
    assert_eq!(value.1["namespace"], "e2e");
    assert_eq!(value.1["pod"], "oomed");

    let t = Instant::now();
    loop {
        let alerts = prom.api("/api/v1/alerts");
        let firing = alerts["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| {
                a["labels"]["alertname"] == "PodlifeContainerOOMKilled"
                    && a["labels"]["uid"] == pod.uid.as_str()
                    && a["state"] == "firing"
            });
        if firing {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "PodlifeContainerOOMKilled never fired: {alerts}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
