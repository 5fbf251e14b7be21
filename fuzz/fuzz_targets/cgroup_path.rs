//! The cgroup path grammar on arbitrary text: never panics, is deterministic, what it parses has
//! the shape the rest of the agent relies on (a UID the API accepts, a hex container id), empty
//! segments and a foreign prefix change nothing, a kubepods tree below a container stays that
//! container's, and the parsed fields rendered back into the driver's canonical layout parse to
//! the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podlife_core::cgroup_path::{looks_like_pod_path, parse, CgroupPath, Level, Qos};

fn is_uid(s: &str) -> bool {
    let groups: Vec<usize> = s.split('-').map(str::len).collect();
    (groups == [8, 4, 4, 4, 12] || groups == [32])
        && s.bytes()
            .all(|b| b == b'-' || b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn qos_name(q: Qos) -> Option<&'static str> {
    match q {
        Qos::Guaranteed => None,
        Qos::Burstable => Some("burstable"),
        Qos::BestEffort => Some("besteffort"),
    }
}

/// The layouts the kubelet writes, from the parsed fields (cgroupfs for bare ids, systemd for
/// runtime-prefixed scopes).
fn render(p: &CgroupPath) -> String {
    let qos = qos_name(p.qos);
    let Some(runtime) = p.runtime else {
        let mut s = String::from("/kubepods");
        if let Some(q) = qos {
            s += &format!("/{q}");
        }
        s += &format!("/pod{}", p.pod_uid);
        if let Some(id) = &p.container_id {
            s += &format!("/{id}");
        }
        return s;
    };
    let (qos_slice, pod_prefix) = match qos {
        Some(q) => (format!("/kubepods-{q}.slice"), format!("kubepods-{q}")),
        None => (String::new(), "kubepods".to_string()),
    };
    let prefix = match runtime {
        "containerd" => "cri-containerd",
        other => other,
    };
    let id = p
        .container_id
        .as_deref()
        .expect("a runtime comes with an id");
    format!(
        "/kubepods.slice{qos_slice}/{pod_prefix}-pod{}.slice/{prefix}-{id}.scope",
        p.pod_uid.replace('-', "_")
    )
}

fuzz_target!(|data: &[u8]| {
    let Ok(path) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse(path);
    assert_eq!(parsed, parse(path), "not deterministic");
    // Empty segments are ignored, and anything before the kubepods root is a prefix (kind, dind).
    assert_eq!(parsed, parse(&path.replace('/', "//")), "doubled slashes");
    assert_eq!(parsed, parse(&format!("{path}/")), "trailing slash");
    assert_eq!(
        parsed,
        parse(&format!("/docker/0123456789ab/{path}")),
        "prefix"
    );
    let Some(p) = parsed else {
        return;
    };
    assert!(
        looks_like_pod_path(path),
        "{path} parsed but is not counted as a pod path"
    );
    assert!(is_uid(&p.pod_uid), "{path}: uid {:?}", p.pod_uid);
    // The API's own validation accepts every uid the grammar produces.
    assert!(
        podlife::serve::http::params::uid(&p.pod_uid).is_ok(),
        "{}",
        p.pod_uid
    );
    if let Some(id) = &p.container_id {
        assert!((12..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_hexdigit()));
    }
    match p.level {
        Level::Pod => assert!(p.container_id.is_none() && p.runtime.is_none()),
        Level::Container => assert!(p.container_id.is_some()),
        Level::Other => {}
    }
    // Attribution is anchored at the first kubepods root: a kubepods tree a container builds
    // below its own cgroup is that container's sub-cgroup, never the pod it names.
    if p.level == Level::Container {
        let forged = format!("{path}/kubepods/besteffort/pod0b7d8e6a-2c3f-4a5b-9c8d-7e6f5a4b3c2d");
        let f = parse(&forged).expect("a container's sub-cgroup parses");
        assert_eq!(
            (f.level, &f.pod_uid, &f.container_id),
            (Level::Other, &p.pod_uid, &p.container_id),
            "{forged}"
        );
    }
    if p.level != Level::Other {
        let canonical = render(&p);
        assert_eq!(
            parse(&canonical).as_ref(),
            Some(&p),
            "{path} -> {canonical}"
        );
    }
});
