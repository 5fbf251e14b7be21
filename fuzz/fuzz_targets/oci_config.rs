//! OCI bundle `config.json` from arbitrary bytes, read as each runtime's: `parse_config` never
//! panics, keeps the rules it promises (no empty or `POD` container name, DNS-1123 names, sandbox
//! only from that runtime's container type), and
//! whatever names it returns go through the engine and into timelines (JSON and text) without
//! a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use podlife::node::metadata::{parse_config, Runtime};
use podlife_core::names::is_dns1123_subdomain;
use podlife_core::{text::to_text, Engine, EngineConfig, WallClock};
use podlife_fuzz::{container_ids, fixtures};

fuzz_target!(|data: &[u8]| {
    for (runtime, type_key) in [
        (Runtime::Containerd, "io.kubernetes.cri.container-type"),
        (Runtime::Crio, "io.kubernetes.cri-o.ContainerType"),
    ] {
        check(data, runtime, type_key);
    }
});

fn check(data: &[u8], runtime: Runtime, type_key: &str) {
    let Some(meta) = parse_config(data, runtime) else {
        return;
    };
    assert_eq!(
        Some(&meta),
        parse_config(data, runtime).as_ref(),
        "not deterministic"
    );
    if let Some(name) = &meta.container_name {
        assert!(!name.is_empty() && name != "POD", "{name:?}");
    }
    // Names are DNS-1123 and bounded whatever the bundle says.
    for n in [&meta.pod_name, &meta.pod_namespace, &meta.container_name]
        .into_iter()
        .flatten()
    {
        assert!(n.len() <= 253 && is_dns1123_subdomain(n), "{n:?}");
    }
    // serde skips unknown fields without validating them (invalid UTF-8 in one of their
    // strings is accepted), so the spec may not read as a `Value`; the check needs one.
    let spec: serde_json::Value = serde_json::from_slice(data).unwrap_or_default();
    let kind = spec["annotations"][type_key].as_str();
    // serde also takes a struct (the spec, or its key set) from an array; the annotation rule
    // is about objects.
    if spec["annotations"].is_object() {
        assert_eq!(meta.sandbox, kind == Some("sandbox"), "{kind:?}");
    }

    // A real pod (the lifecycle fixture) named by these annotations, before and after its
    // containers exist.
    let events = &fixtures()[0];
    let ids = container_ids(events);
    let mut engine = Engine::new(EngineConfig::default());
    engine.set_container_metadata(&ids[0], meta.clone().container_meta());
    for e in events {
        engine.apply(e);
    }
    engine.flush();
    engine.set_container_metadata(&ids[1], meta.container_meta());
    for uid in engine.pod_uids() {
        let t = engine
            .timeline(&uid, WallClock::new(0))
            .unwrap_or_else(|| panic!("listed pod {uid} has no timeline"));
        serde_json::to_string(&t).expect("timeline serializes");
        to_text(&t);
    }
}
