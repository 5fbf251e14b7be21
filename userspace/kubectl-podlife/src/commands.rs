//! The three commands: find the agents to ask, ask them concurrently, print what came back.
//! A node that does not answer costs one warning line on stderr, never the others' results.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};

use crate::cluster::{AgentPod, Cluster};
use crate::merge::{event_line, merge, warning};
use crate::output::{structured, Format};

/// Percent-encoding of a query value (RFC 3986 unreserved characters pass).
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Ask every agent the same path at once; answers in the agents' order.
async fn ask_all(c: &Cluster, agents: &[AgentPod], path: &str) -> Vec<Result<String>> {
    futures_util::future::join_all(
        agents
            .iter()
            .map(|a| async move { c.get(a, path).await.and_then(|r| r.ok()) }),
    )
    .await
}

pub async fn timeline(c: &Cluster, pod: &str, node: Option<&str>, out: Format) -> Result<i32> {
    let ns = c.default_ns.clone();
    let (agents, path) = match c.pod(&ns, pod).await? {
        Some(p) => {
            let uid = p
                .metadata
                .uid
                .context("the API server gave a pod without uid")?;
            let scheduled = p.spec.and_then(|s| s.node_name);
            let Some(n) = node.map(str::to_string).or(scheduled) else {
                bail!("pod {ns}/{pod} is not scheduled to a node yet: nothing has run");
            };
            (c.agents(Some(&n)).await?, format!("/pods/{uid}/timeline"))
        }
        // Gone from the API (deleted, evicted): the agents keep removed pods by name.
        None => (c.agents(node).await?, format!("/pods/{ns}/{pod}/timeline")),
    };
    let answers = ask_all(c, &agents, &path).await;
    let mut found: Vec<(&AgentPod, Value)> = Vec::new();
    let mut unknown_to = Vec::new();
    for (a, r) in agents.iter().zip(answers) {
        match r {
            Ok(body) => found.push((a, serde_json::from_str(&body).context("agent's timeline")?)),
            Err(e) if e.to_string().starts_with("HTTP 404") => unknown_to.push(a.node.as_str()),
            Err(e) => eprintln!("{}", warning(&a.node, &format!("{e:#}"))),
        }
    }
    // A name re-used on several nodes: the pod that lived last.
    let last_time = |t: &Value| {
        t["events"]
            .as_array()
            .and_then(|e| e.last())
            .and_then(|e| e["time"].as_str())
            .unwrap_or("")
            .to_string()
    };
    found.sort_by_key(|(_, t)| last_time(t));
    let Some((agent, t)) = found.pop() else {
        bail!(
            "pod {ns}/{pod}: no agent knows it (asked node{} {})",
            if unknown_to.len() == 1 { "" } else { "s" },
            unknown_to.join(", ")
        );
    };
    for (other, _) in &found {
        eprintln!(
            "note: {ns}/{pod} also ran on node {}; showing the one on {}",
            other.node, agent.node
        );
    }
    match out {
        Format::Text => {
            let text = c.get(agent, &format!("{path}?format=text")).await?.ok()?;
            print!("{text}");
        }
        f => print!("{}", structured(&t, f)?),
    }
    Ok(0)
}

pub struct EventsQuery {
    pub node: Option<String>,
    pub since: String,
    pub limit: u32,
    pub watch: bool,
}

/// One node's page of /events.
struct Page {
    events: Vec<Value>,
    next: Option<String>,
    more: bool,
}

fn page(body: &str) -> Result<Page> {
    let v: Value = serde_json::from_str(body).context("agent's /events answer")?;
    Ok(Page {
        events: v["events"].as_array().cloned().unwrap_or_default(),
        next: v["next"].as_str().map(str::to_string),
        more: v["more"].as_bool().unwrap_or(false),
    })
}

fn print_events(per_node: Vec<(String, Vec<Value>)>, out: Format) -> Result<()> {
    for e in merge(per_node) {
        match out {
            Format::Text => println!("{}", event_line(&e)),
            // One object per line, the node added: a stream a program can read as it comes.
            _ => {
                let mut v = e.event;
                if let Some(o) = v.as_object_mut() {
                    o.insert("node".into(), e.node.into());
                }
                match out {
                    Format::Yaml => print!("---\n{}", structured(&v, Format::Yaml)?),
                    _ => println!("{v}"),
                }
            }
        }
    }
    Ok(())
}

/// Polls between rounds of `-w`.
const WATCH_EVERY: Duration = Duration::from_secs(2);
/// Pages per node per round of `-w` at most (a node that floods waits for the next round).
const WATCH_PAGES: usize = 20;

pub async fn events(c: &Cluster, q: &EventsQuery, out: Format) -> Result<i32> {
    let agents = c.agents(q.node.as_deref()).await?;
    let path = format!("/events?since={}&limit={}", encode(&q.since), q.limit);
    let answers = ask_all(c, &agents, &path).await;
    let mut per_node = Vec::new();
    let mut cursors: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut answered = 0;
    for (a, r) in agents.iter().zip(answers) {
        match r.and_then(|b| page(&b)) {
            Ok(p) => {
                answered += 1;
                if p.more {
                    eprintln!(
                        "warning: node {}: more than {} events since {}; showing the newest (narrow --since or raise --limit)",
                        a.node, q.limit, q.since
                    );
                }
                cursors.insert(a.node.clone(), p.next);
                per_node.push((a.node.clone(), p.events));
            }
            Err(e) => {
                eprintln!("{}", warning(&a.node, &format!("{e:#}")));
                cursors.insert(a.node.clone(), None);
            }
        }
    }
    print_events(per_node, out)?;
    if !q.watch {
        return Ok(if answered == 0 { 1 } else { 0 });
    }
    watch(c, &agents, cursors, out).await
}

/// `-w`: resume each node from the id of the last event printed, so nothing is printed twice
/// and an agent restart loses nothing still in its retention (ids increase across restarts).
async fn watch(
    c: &Cluster,
    agents: &[AgentPod],
    mut cursors: BTreeMap<String, Option<String>>,
    out: Format,
) -> Result<i32> {
    // A node whose first page was empty starts after its newest event.
    for a in agents {
        if cursors.get(&a.node).is_some_and(Option::is_none) {
            if let Ok(p) = c
                .get(a, "/events?limit=1")
                .await
                .and_then(|r| r.ok())
                .and_then(|b| page(&b))
            {
                cursors.insert(a.node.clone(), Some(p.next.unwrap_or_else(|| "0".into())));
            }
        }
    }
    let mut failing: BTreeMap<String, bool> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(0),
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let round = futures_util::future::join_all(agents.iter().map(|a| {
            let cursor = cursors.get(&a.node).cloned().flatten();
            async move { (a, poll(c, a, cursor).await) }
        }))
        .await;
        let mut per_node = Vec::new();
        for (a, r) in round {
            match r {
                Ok((events, next)) => {
                    if failing.insert(a.node.clone(), false) == Some(true) {
                        eprintln!("note: node {} answers again", a.node);
                    }
                    if next.is_some() {
                        cursors.insert(a.node.clone(), next);
                    }
                    per_node.push((a.node.clone(), events));
                }
                // Once per outage, not every round.
                Err(e) => {
                    if failing.insert(a.node.clone(), true) != Some(true) {
                        eprintln!("{}", warning(&a.node, &format!("{e:#}")));
                    }
                }
            }
        }
        print_events(per_node, out)?;
    }
}

/// New events of one node after `cursor` (None: the node never answered; start at its newest).
async fn poll(
    c: &Cluster,
    a: &AgentPod,
    cursor: Option<String>,
) -> Result<(Vec<Value>, Option<String>)> {
    let mut cursor = match cursor {
        Some(cur) => cur,
        None => {
            let p = page(&c.get(a, "/events?limit=1").await?.ok()?)?;
            return Ok((Vec::new(), Some(p.next.unwrap_or_else(|| "0".into()))));
        }
    };
    let mut events = Vec::new();
    for _ in 0..WATCH_PAGES {
        let p = page(
            &c.get(a, &format!("/events?after={cursor}&limit=1000"))
                .await?
                .ok()?,
        )?;
        for e in p.events {
            if e["type"] == "EventsExpired" {
                eprintln!(
                    "warning: node {}: events after id {cursor} left the agent's retention before they were read",
                    a.node
                );
                continue;
            }
            events.push(e);
        }
        if let Some(n) = p.next {
            cursor = n;
        }
        if !p.more {
            break;
        }
    }
    Ok((events, Some(cursor)))
}

pub async fn pods(c: &Cluster, node: &str, out: Format) -> Result<i32> {
    let agents = c.agents(Some(node)).await?;
    let body = c.get(&agents[0], "/pods").await?.ok()?;
    let v: Value = serde_json::from_str(&body).context("agent's /pods answer")?;
    match out {
        Format::Text => print!("{}", pods_table(&v)),
        f => print!("{}", structured(&json!(v), f)?),
    }
    Ok(0)
}

/// `NAMESPACE NAME STATE CONTAINERS UID`, aligned, control characters escaped.
fn pods_table(v: &Value) -> String {
    let rows: Vec<[String; 5]> = v["pods"]
        .as_array()
        .map(|pods| {
            pods.iter()
                .map(|p| {
                    let s = |k: &str| p[k].as_str().unwrap_or("-").to_string();
                    let n = p["containers"].as_array().map_or(0, Vec::len);
                    [
                        s("namespace"),
                        s("name"),
                        s("state"),
                        n.to_string(),
                        s("uid"),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    let head = ["NAMESPACE", "NAME", "STATE", "CONTAINERS", "UID"].map(String::from);
    let mut width = [0usize; 5];
    for r in std::iter::once(&head).chain(&rows) {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let cells: Vec<String> = r
            .iter()
            .zip(width)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(
            podlife_core::terminal::escape_controls(cells.join("   ").trim_end()).as_ref(),
        );
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("10m"), "10m");
        assert_eq!(
            encode("2026-12-06T10:00:00+01:00"),
            "2026-12-06T10%3A00%3A00%2B01%3A00"
        );
        assert_eq!(encode("a b&c"), "a%20b%26c");
    }

    #[test]
    fn the_pods_table_aligns_columns() {
        let v = json!({"pods": [
            {"namespace": "default", "name": "web", "state": "Running", "uid": "u1",
             "containers": [{}, {}]},
            {"namespace": "kube-system", "name": "dns", "state": "Removed", "uid": "u2"},
        ]});
        let t = pods_table(&v);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "NAMESPACE     NAME   STATE     CONTAINERS   UID");
        assert_eq!(lines[1], "default       web    Running   2            u1");
        assert_eq!(lines[2], "kube-system   dns    Removed   0            u2");
    }

    #[test]
    fn a_page_reads_events_cursor_and_more() {
        let p = page(r#"{"events":[{"type":"X"}],"next":"41","more":true}"#).unwrap();
        assert_eq!(
            (p.events.len(), p.next.as_deref(), p.more),
            (1, Some("41"), true)
        );
        assert!(page("not json").is_err());
    }
}
