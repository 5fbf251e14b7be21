//! What the runtime's CRI answers: grace periods and preStop handlers of containers (the
//! engine matches the hook's exec session to it), and pod names from `PodSandboxStatus`, which
//! override the bundle's. The CRI task hands them to the pipeline as facts (facts.rs); the
//! pipeline applies them here.

use podlife_core::{ContainerMeta, PodMeta};

use crate::node::cri::{Cri, CriAsk, SandboxNames};
use crate::pipeline::facts::Fact;
use crate::pipeline::shared::{Inner, Shared};

/// Ask the runtime one question and hand its answer to the pipeline. Errors only log: the CRI
/// is optional.
pub async fn answer(cri: &mut Cri, shared: &Shared, ask: CriAsk) {
    let fact = match ask {
        CriAsk::Container(id) => match cri.container(&id).await {
            Ok(meta) if meta.grace_period_s.is_some() || meta.prestop.is_some() => {
                Fact::CriContainer {
                    id,
                    meta: ContainerMeta {
                        grace_period_s: meta.grace_period_s,
                        prestop: meta.prestop,
                        ..Default::default()
                    },
                }
            }
            Ok(_) => return,
            Err(e) => return tracing::debug!("CRI status of {id}: {e}"),
        },
        CriAsk::Sandbox { id, uid } => match cri.sandbox(&id).await {
            Ok(names) => Fact::CriSandbox { uid, names },
            Err(e) => return tracing::debug!("CRI sandbox status of {id}: {e}"),
        },
    };
    if !shared.facts.send(fact) {
        tracing::debug!("the facts queue is full: a CRI answer was dropped");
    }
}

/// A container's grace period and preStop handler from the CRI.
pub fn apply_container(inner: &mut Inner, id: String, meta: ContainerMeta) {
    let grace = meta.grace_period_s;
    inner.engine.set_container_metadata(&id, meta);
    if let Some(g) = grace {
        if inner.cri_grace.len() > 50_000 {
            inner.cri_grace.clear();
        }
        inner.cri_grace.insert(id, g);
    }
}

/// Names of pod `uid` (from its cgroup path) as the CRI gave them: taken only if valid and of
/// that same pod; anything else is counted as rejected.
pub fn apply_sandbox_names(inner: &mut Inner, uid: &str, names: Option<SandboxNames>) {
    match names {
        Some(n) if n.uid == uid => inner.engine.set_pod_metadata(
            uid,
            PodMeta {
                name: Some(n.name),
                namespace: Some(n.namespace),
                ..Default::default()
            },
        ),
        _ => inner.metrics.metadata_rejected.inc(),
    }
}

#[cfg(test)]
mod tests {
    use podlife_core::{ContainerMeta, Engine, EngineConfig};

    use super::*;

    const UID: &str = "8f3c2a1e-1111-4a4a-9b9b-000000000001";

    fn names(uid: &str, name: &str, namespace: &str) -> Option<SandboxNames> {
        Some(SandboxNames {
            uid: uid.into(),
            name: name.into(),
            namespace: namespace.into(),
        })
    }

    #[test]
    fn cri_names_win_over_the_bundles_and_must_be_of_the_pod() {
        let mut inner = Inner::for_tests(Engine::new(EngineConfig::default()));
        let sandbox = format!("{:064x}", 1);
        let path = format!("/kubepods/burstable/pod{UID}/{sandbox}");
        inner.engine.bootstrap_cgroup(1, &path, 1);
        // Whatever the bundle said first.
        inner.engine.set_container_metadata(
            &sandbox,
            ContainerMeta {
                pod_name: Some("coredns-7db6d8ff4d-abcde".into()),
                namespace: Some("kube-system".into()),
                ..Default::default()
            },
        );
        apply_sandbox_names(&mut inner, UID, names(UID, "web-0", "tenant-a"));
        let m = inner.engine.pod_meta(UID).unwrap();
        assert_eq!(m.name.as_deref(), Some("web-0"));
        assert_eq!(m.namespace.as_deref(), Some("tenant-a"));
        // Another pod's answer, or none: not applied, counted.
        let other = "11111111-2222-4333-8444-555555555555";
        apply_sandbox_names(&mut inner, UID, names(other, "x", "kube-system"));
        apply_sandbox_names(&mut inner, UID, None);
        assert_eq!(
            inner.engine.pod_meta(UID).unwrap().name.as_deref(),
            Some("web-0")
        );
        assert_eq!(inner.metrics.metadata_rejected.get(), 2);
    }
}
