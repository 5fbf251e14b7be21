//! The cgroup layout the test kubelet gives pods, as the kubelet's two cgroup drivers name them:
//! `cgroupfs` (`/kubepods/burstable/pod<uid>/<id>`, the default) or `systemd`
//! (`/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/
//! cri-containerd-<id>.scope`), chosen with PODLIFE_E2E_CGROUP_LAYOUT. Without systemd on the
//! node, the systemd layout is made of plain cgroupfs directories with systemd's names: the pod
//! slice by the test kubelet, container scopes by runc's cgroupfs driver through a wrapper
//! (tests/runtime/runc) that turns containerd's systemd-driver path into that directory.

use std::path::Path;

/// The environment variable that selects the layout.
pub const ENV: &str = "PODLIFE_E2E_CGROUP_LAYOUT";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Cgroupfs,
    Systemd,
}

/// tests/runtime/runc: containerd's runc binary for the systemd layout.
const SYSTEMD_RUNC: &str = include_str!("../runtime/runc");

impl Layout {
    /// The layout PODLIFE_E2E_CGROUP_LAYOUT names (cgroupfs when unset); panics on anything else.
    pub fn from_env() -> Self {
        match std::env::var(ENV).as_deref() {
            Err(_) | Ok("") | Ok("cgroupfs") => Layout::Cgroupfs,
            Ok("systemd") => Layout::Systemd,
            Ok(other) => panic!("{ENV}={other:?}: cgroupfs or systemd"),
        }
    }

    /// The pod cgroup the kubelet creates before the sandbox (Burstable QoS).
    pub fn pod_cgroup(self, uid: &str) -> String {
        match self {
            Layout::Cgroupfs => format!("/kubepods/burstable/pod{uid}"),
            // systemd unit names cannot hold '-' inside a name part: the kubelet escapes the
            // uid's dashes to underscores.
            Layout::Systemd => format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice",
                uid.replace('-', "_")
            ),
        }
    }

    /// A container's cgroup under its pod's, as runc makes it for this layout.
    pub fn container_cgroup(self, pod_cgroup: &str, id: &str) -> String {
        match self {
            Layout::Cgroupfs => format!("{pod_cgroup}/{id}"),
            Layout::Systemd => format!("{pod_cgroup}/cri-containerd-{id}.scope"),
        }
    }

    /// The runc binary containerd runs (None: runc from PATH), written under `dir`.
    pub fn runc_binary(self, dir: &Path) -> Option<std::path::PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        match self {
            Layout::Cgroupfs => None,
            Layout::Systemd => {
                // Named runc so the kernel reports the same comm as the real driver's runc.
                let bin = dir.join("systemd-driver/runc");
                std::fs::create_dir_all(bin.parent().unwrap()).expect("runc wrapper dir");
                std::fs::write(&bin, SYSTEMD_RUNC).expect("runc wrapper");
                std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
                    .expect("runc wrapper mode");
                Some(bin)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_cgroups_of_both_drivers() {
        let uid = "8f3c2a1e-1111-4a4a-9b9b-000000000009";
        assert_eq!(
            Layout::Cgroupfs.pod_cgroup(uid),
            "/kubepods/burstable/pod8f3c2a1e-1111-4a4a-9b9b-000000000009"
        );
        assert_eq!(
            Layout::Systemd.pod_cgroup(uid),
            "/kubepods.slice/kubepods-burstable.slice/\
             kubepods-burstable-pod8f3c2a1e_1111_4a4a_9b9b_000000000009.slice"
        );
        assert_eq!(
            Layout::Systemd.container_cgroup("/p.slice", "abc"),
            "/p.slice/cri-containerd-abc.scope"
        );
        assert_eq!(Layout::Cgroupfs.container_cgroup("/p", "abc"), "/p/abc");
    }
}
