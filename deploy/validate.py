"""Offline checks of deploy/: run by validate.sh inside its venv (see requirements-validate.txt).

1. schema   every Kubernetes object against the OpenAPI schemas of Kubernetes 1.27 to 1.37
            (kubernetes-validate, strict: unknown fields fail), the ServiceMonitor against the
            prometheus-operator CRD (cloudcoil's models generated from it; fields the model
            drops are reported as unknown).
2. kustomize kustomization.yaml lists files that exist and covers every manifest; each
            component's JSON patches apply, the patched DaemonSet is valid and keeps the
            policy, the component's own resources are valid; the kube-api component grants
            exactly get/list/watch on pods and list on events to podlife's service account and
            mounts its token read-only.
3. policy   what the design promises operators: not privileged, capabilities exactly the five
            documented ones, host mounts read-only except the state dir, probes, scrape
            annotations, ports, selectors and namespaces that line up; the API private (a
            token from a read-only Secret, never PODLIFE_API_OPEN) and a NetworkPolicy that
            selects the agents and admits only named sources on the agent's port.
4. image    deploy/Containerfile parses (BuildKit's parser), copies only paths that exist and
            every workspace member, and installs the same toolchain as xtask/src/setup.rs.
5. must-fail copies of deploy/ with one defect each: every one must be reported, by the
            check meant to catch it. A validator that cannot fail proves nothing.

Prints one line per check and `deploy: N passed, M failed[, K skipped]` last; exit 1 on failure.
"""

import copy
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import dockerfile
import kubernetes_validate
import yaml
from cloudcoil.models.prometheus_operator.v1 import ServiceMonitor

DEPLOY = pathlib.Path(__file__).resolve().parent
REPO = DEPLOY.parent
K8S_VERSIONS = [f"1.{m}.0" for m in range(27, 38)]
NAMESPACE = "podlife"
CAPS = {"BPF", "PERFMON", "SYS_RESOURCE", "DAC_READ_SEARCH"}
HOST_MOUNTS = {  # host path -> must the mount be read-only
    "/sys/fs/cgroup": True,
    "/sys/kernel/tracing": True,
    "/sys/kernel/btf": True,
    "/run/containerd": True,
    "/run/containers/storage": True,
    "/var/lib/podlife": False,
}
HOSTPATH_TYPES = {"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket",
                  "CharDevice", "BlockDevice"}
# Applied on their own, not in kustomization: the ServiceMonitor needs CRDs, the plugin users'
# RBAC names the site's own group.
STANDALONE = {"servicemonitor.yaml", "plugin-users.yaml"}
KUSTOMIZE_FILES = {"kustomization.yaml"}


class Failed(Exception):
    pass


def load_all(path):
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def manifests(tree):
    """(file name, object) of every Kubernetes object in the tree's top level."""
    out = []
    for f in sorted(tree.glob("*.yaml")):
        if f.name not in KUSTOMIZE_FILES:
            out += [(f.name, d) for d in load_all(f)]
    return out


def unknown_fields(src, dumped, path=""):
    out = []
    if isinstance(src, dict):
        for k, v in src.items():
            if not isinstance(dumped, dict) or k not in dumped:
                out.append(f"{path}.{k}")
            else:
                out += unknown_fields(v, dumped[k], f"{path}.{k}")
    elif isinstance(src, list) and isinstance(dumped, list):
        for i, (a, b) in enumerate(zip(src, dumped)):
            out += unknown_fields(a, b, f"{path}[{i}]")
    return out


_VALIDATED = {}  # canonical JSON -> error message or None: must-fail copies repeat most objects


def validate_object(name, obj):
    key = json.dumps(obj, sort_keys=True)
    if key not in _VALIDATED:
        try:
            _validate_object(obj)
            _VALIDATED[key] = None
        except Failed as e:
            _VALIDATED[key] = str(e)
    if _VALIDATED[key]:
        raise Failed(f"{name}: {_VALIDATED[key]}")


def _validate_object(obj):
    kind = obj.get("kind")
    if obj.get("apiVersion") == "monitoring.coreos.com/v1" and kind == "ServiceMonitor":
        try:
            model = ServiceMonitor.model_validate(obj)
        except Exception as e:  # pydantic.ValidationError: say which field
            raise Failed(f"ServiceMonitor does not match the CRD: {e}") from None
        dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
        extra = unknown_fields(obj, dumped)
        if extra:
            raise Failed(f"ServiceMonitor has fields the CRD does not know: {extra}")
        return
    for v in K8S_VERSIONS:
        try:
            kubernetes_validate.validate(obj, v, strict=True)
        except kubernetes_validate.SchemaNotFoundError:
            raise Failed(f"no schema for {obj.get('apiVersion')}/{kind} "
                         f"in Kubernetes {v}") from None
        except kubernetes_validate.ValidationError as e:
            where = ".".join(str(p) for p in e.path)
            raise Failed(f"{kind} invalid for Kubernetes {v} at {where}: "
                         f"{e.message}") from None


def check_schema(tree):
    objs = manifests(tree)
    if not objs:
        raise Failed("no manifests found")
    for name, obj in objs:
        validate_object(name, obj)
    return f"{len(objs)} objects, Kubernetes {K8S_VERSIONS[0]}..{K8S_VERSIONS[-1]} + CRD"


def json_patch_add(doc, path, value):
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
    node = doc
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if isinstance(node, list):
        if last == "-":
            node.append(value)
        else:
            node.insert(int(last), value)
    else:
        node[last] = value


def check_kustomize(tree):
    k = yaml.safe_load((tree / "kustomization.yaml").read_text())
    known = {"apiVersion", "kind", "resources", "images", "components", "patches", "namespace",
             "labels"}
    if k.get("kind") != "Kustomization" or set(k) - known:
        raise Failed(f"kustomization.yaml: not a Kustomization or unknown keys {set(k) - known}")
    res = k.get("resources", [])
    for r in res:
        if not (tree / r).is_file():
            raise Failed(f"kustomization.yaml: resource {r} does not exist")
    tops = {f.name for f in tree.glob("*.yaml")} - KUSTOMIZE_FILES - STANDALONE
    if set(res) != tops:
        raise Failed(f"kustomization.yaml: resources {sorted(res)} != manifests {sorted(tops)}")
    images = {c["image"].split(":")[0] for _, o in manifests(tree) if o["kind"] == "DaemonSet"
              for c in o["spec"]["template"]["spec"]["containers"]}
    for img in k.get("images", []):
        if img["name"] not in images:
            raise Failed(f"kustomization.yaml: image {img['name']} matches no container")
    # Components: apply their JSON patches to the DaemonSet and validate the result.
    ds = next(o for _, o in manifests(tree) if o["kind"] == "DaemonSet")
    comps = sorted(tree.glob("components/*/kustomization.yaml"))
    for c in comps:
        comp = yaml.safe_load(c.read_text())
        if comp.get("kind") != "Component":
            raise Failed(f"{c.relative_to(tree)}: kind is not Component")
        patched = copy.deepcopy(ds)
        for p in comp.get("patches", []):
            if p.get("target", {}).get("kind") != "DaemonSet":
                raise Failed(f"{c.relative_to(tree)}: patch targets something else than the DaemonSet")
            for op in yaml.safe_load(p["patch"]):
                if op["op"] != "add":
                    raise Failed(f"{c.relative_to(tree)}: only `add` ops are checked here")
                try:
                    json_patch_add(patched, op["path"], op["value"])
                except (KeyError, IndexError, ValueError) as e:
                    raise Failed(f"{c.relative_to(tree)}: patch path {op['path']} does not "
                                 f"apply: {e!r}") from None
        validate_object(str(c.relative_to(tree)), patched)
        check_daemonset_policy(patched, str(c.relative_to(tree)))
        extra = []
        for r in comp.get("resources", []):
            if not (c.parent / r).is_file():
                raise Failed(f"{c.relative_to(tree)}: resource {r} does not exist")
            extra += [(f"{c.parent.name}/{r}", o) for o in load_all(c.parent / r)]
        for name, obj in extra:
            validate_object(name, obj)
        if c.parent.name == "kube-api":
            check_kube_api(patched, extra, tree)
        elif c.parent.name == "kube-events":
            check_kube_events(patched, extra, tree)
        else:
            raise Failed(f"{c.relative_to(tree)}: a component validate.py does not know")
    return f"{len(res)} resources, {len(comps)} component(s) patched and valid"


POD_READER = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
              {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}]
TOKEN_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def check_account_role(where, objs, tree, rules, says):
    """A component's one ClusterRole grants exactly `rules`, bound to podlife's account only."""
    kinds = sorted(o["kind"] for _, o in objs)
    if kinds != ["ClusterRole", "ClusterRoleBinding"]:
        raise Failed(f"{where}: expected one ClusterRole and one ClusterRoleBinding, got {kinds}")
    role = next(o for _, o in objs if o["kind"] == "ClusterRole")
    binding = next(o for _, o in objs if o["kind"] == "ClusterRoleBinding")
    if role.get("rules") != rules:
        raise Failed(f"{where}: the ClusterRole must grant exactly {says}, "
                     f"not {json.dumps(role.get('rules'))}")
    ref = binding["roleRef"]
    if ref.get("kind") != "ClusterRole" or ref.get("name") != role["metadata"]["name"]:
        raise Failed(f"{where}: the binding's roleRef {ref} is not the component's ClusterRole")
    sa = next(o for _, o in manifests(tree) if o["kind"] == "ServiceAccount")["metadata"]
    want = [{"kind": "ServiceAccount", "name": sa["name"], "namespace": sa["namespace"]}]
    if binding.get("subjects") != want:
        raise Failed(f"{where}: the binding's subjects must be exactly {want}, "
                     f"not {binding.get('subjects')}")


def check_kube_api(ds, objs, tree):
    """The API watch gets read access to pods and list on events (probe messages) and nothing
    else, for podlife's account only."""
    where = "components/kube-api"
    check_account_role(where, objs, tree, POD_READER,
                       "get, list, watch on pods and list on events")
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    if env_of(c).get("PODLIFE_KUBE_API") != "in-cluster":
        raise Failed(f"{where}: PODLIFE_KUBE_API must be in-cluster")
    mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] == TOKEN_DIR]
    if len(mounts) != 1 or mounts[0].get("readOnly") is not True:
        raise Failed(f"{where}: the token must be mounted once, read-only, at {TOKEN_DIR}")
    vol = next(v for v in ds["spec"]["template"]["spec"]["volumes"]
               if v["name"] == mounts[0]["name"])
    sources = vol.get("projected", {}).get("sources", [])
    if not any("serviceAccountToken" in s for s in sources):
        raise Failed(f"{where}: {TOKEN_DIR} must be a projected serviceAccountToken")


EVENT_WRITER = [{"apiGroups": ["events.k8s.io"], "resources": ["events"],
                 "verbs": ["create", "patch"]}]


def check_kube_events(ds, objs, tree):
    """Kubernetes Events: create and patch on events.k8s.io events, for podlife's account only."""
    where = "components/kube-events"
    check_account_role(where, objs, tree, EVENT_WRITER, "create, patch on events.k8s.io events")
    (c,) = ds["spec"]["template"]["spec"]["containers"]
    if env_of(c).get("PODLIFE_KUBE_EVENTS") != "true":
        raise Failed(f"{where}: PODLIFE_KUBE_EVENTS must be true")


def env_of(container):
    return {e["name"]: e.get("value") for e in container.get("env", [])}


def check_daemonset_policy(ds, where="daemonset.yaml"):
    def need(cond, msg):
        if not cond:
            raise Failed(f"{where}: {msg}")

    pod = ds["spec"]["template"]["spec"]
    need(pod.get("hostPID") is True, "hostPID must be true (host /proc, host pids)")
    need(pod.get("hostNetwork") is not True, "hostNetwork is not needed")
    need(pod.get("priorityClassName") == "system-node-critical",
         "priorityClassName must be system-node-critical")
    need(any(t.get("operator") == "Exists" and not t.get("key") and not t.get("effect")
             for t in pod.get("tolerations", [])), "must tolerate every taint (operator: Exists)")
    need(pod.get("automountServiceAccountToken") is False, "no service account token is needed")
    need(ds["spec"]["selector"]["matchLabels"].items()
         <= ds["spec"]["template"]["metadata"]["labels"].items(), "selector must match pod labels")
    (c,) = pod["containers"]
    sc = c.get("securityContext", {})
    need(sc.get("privileged") is not True, "must not be privileged")
    need(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation must be false")
    need(sc.get("readOnlyRootFilesystem") is True, "readOnlyRootFilesystem must be true")
    caps = sc.get("capabilities", {})
    need(caps.get("drop") == ["ALL"], "capabilities must drop ALL")
    need(set(caps.get("add", [])) == CAPS,
         f"capabilities must add exactly {sorted(CAPS)}, not {sorted(caps.get('add', []))}")
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for v in vols.values():
        if "hostPath" in v:
            need(v["hostPath"].get("type", "") in HOSTPATH_TYPES,
                 f"volume {v['name']}: hostPath type {v['hostPath'].get('type')!r} is not valid")
    mounted = {}
    for m in c.get("volumeMounts", []):
        need(m["name"] in vols, f"volumeMount {m['name']} has no volume")
        hp = vols[m["name"]].get("hostPath")
        if hp:
            mounted[hp["path"]] = m
            if HOST_MOUNTS.get(hp["path"], True):
                need(m.get("readOnly") is True, f"host path {hp['path']} must be mounted readOnly")
    for path in HOST_MOUNTS:
        need(path in mounted, f"host path {path} is not mounted")
    env = env_of(c)
    state = mounted["/var/lib/podlife"]
    need(state["mountPath"] == env.get("PODLIFE_STATE_DIR", "/var/lib/podlife"),
         "the writable mount must be PODLIFE_STATE_DIR")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    listen = int(env.get("PODLIFE_LISTEN", "0.0.0.0:9090").rsplit(":", 1)[1])
    need(ports.get("http") == listen == 9090, "port `http` must be 9090 = PODLIFE_LISTEN")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c.get(probe, {}).get("httpGet", {})
        need(get.get("path") == path and get.get("port") in ("http", listen),
             f"{probe} must GET {path} on the http port")
    # Private by default: the data routes carry every pod's argv.
    token = env.get("PODLIFE_API_TOKEN_FILE")
    need(token, "PODLIFE_API_TOKEN_FILE must be set: the API is private by default")
    need(str(env.get("PODLIFE_API_OPEN", "false")).lower() in ("", "0", "false", "no", "off"),
         "PODLIFE_API_OPEN serves every pod's argv without a token: not in the default")
    tmount = [m for m in c.get("volumeMounts", [])
              if token and token.startswith(m["mountPath"].rstrip("/") + "/")]
    need(len(tmount) == 1 and tmount[0].get("readOnly") is True,
         f"the API token {token} must be mounted once, readOnly")
    need("secret" in vols.get(tmount[0]["name"], {}),
         f"the API token {token} must come from a Secret")
    ann = ds["spec"]["template"]["metadata"].get("annotations", {})
    need(ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(listen),
         "prometheus.io/scrape and prometheus.io/port annotations must match the listener")
    res = c.get("resources", {})
    need(res.get("requests") and res.get("limits"), "requests and limits must be set")


def check_policy(tree):
    objs = manifests(tree)
    by_kind = {}
    for name, o in objs:
        by_kind.setdefault(o["kind"], []).append((name, o))
    for kind in ("Namespace", "ServiceAccount", "DaemonSet", "Service", "ServiceMonitor",
                 "NetworkPolicy"):
        if len(by_kind.get(kind, [])) != 1:
            raise Failed(f"expected one {kind}, found {len(by_kind.get(kind, []))}")
    ns = by_kind["Namespace"][0][1]
    if ns["metadata"]["name"] != NAMESPACE or \
            ns["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") != "privileged":
        raise Failed("namespace.yaml: namespace podlife with Pod Security enforce=privileged")
    for name, o in objs:
        cluster_scoped = o["kind"] in ("Namespace", "ClusterRole", "ClusterRoleBinding")
        if not cluster_scoped and o["metadata"].get("namespace") != NAMESPACE:
            raise Failed(f"{name}: {o['kind']} must be in namespace {NAMESPACE}")
    ds_name, ds = by_kind["DaemonSet"][0]
    check_daemonset_policy(ds, ds_name)
    pod = ds["spec"]["template"]
    if pod["spec"]["serviceAccountName"] != by_kind["ServiceAccount"][0][1]["metadata"]["name"]:
        raise Failed(f"{ds_name}: serviceAccountName names no ServiceAccount of deploy/")
    svc_name, svc = by_kind["Service"][0]
    if svc["spec"].get("clusterIP") != "None":
        raise Failed(f"{svc_name}: the Service must be headless (clusterIP: None)")
    if not svc["spec"]["selector"].items() <= pod["metadata"]["labels"].items():
        raise Failed(f"{svc_name}: selector does not match the DaemonSet's pods")
    cports = {p["name"] for p in pod["spec"]["containers"][0]["ports"]}
    for p in svc["spec"]["ports"]:
        if p["targetPort"] not in cports and p["targetPort"] != 9090:
            raise Failed(f"{svc_name}: targetPort {p['targetPort']} is no container port")
    sm_name, sm = by_kind["ServiceMonitor"][0]
    if not sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items():
        raise Failed(f"{sm_name}: selector does not match the Service's labels")
    sports = {p["name"] for p in svc["spec"]["ports"]}
    for ep in sm["spec"]["endpoints"]:
        if ep.get("port") not in sports or ep.get("path", "/metrics") != "/metrics":
            raise Failed(f"{sm_name}: endpoint must scrape /metrics on a named Service port")
    check_network_policy(by_kind["NetworkPolicy"][0], pod)
    return ("least privilege, mounts, probes, scrape annotations, selectors, namespaces, "
            "private API, NetworkPolicy")


def check_network_policy(named, pod):
    """The policy isolates the agents and admits named sources on the http port only."""
    name, np = named
    spec = np["spec"]

    def need(cond, msg):
        if not cond:
            raise Failed(f"{name}: {msg}")

    sel = spec.get("podSelector", {}).get("matchLabels", {})
    need(sel and sel.items() <= pod["metadata"]["labels"].items(),
         "podSelector selects no agent pod (or every pod of the namespace)")
    need("Ingress" in spec.get("policyTypes", []), "policyTypes must include Ingress")
    rules = spec.get("ingress", [])
    need(rules, "no ingress rule: Prometheus could not scrape")
    port = pod["spec"]["containers"][0]["ports"][0]
    for i, r in enumerate(rules):
        need(r.get("from"), f"ingress[{i}] has no `from`: it admits every source")
        need(r.get("ports") and all(p.get("port") in (port["name"], port["containerPort"])
                                    for p in r["ports"]),
             f"ingress[{i}] must name the agent's port `{port['name']}` and no other")
        for peer in r["from"]:
            if "ipBlock" in peer:
                cidr = peer["ipBlock"]["cidr"]
                need(int(cidr.rsplit("/", 1)[1]) > 0, f"ingress[{i}] ipBlock {cidr} admits everyone")
            else:
                ns = peer.get("namespaceSelector")
                need(ns is None or ns.get("matchLabels") or ns.get("matchExpressions"),
                     f"ingress[{i}]: an empty namespaceSelector admits every namespace")
                need(ns is not None or peer.get("podSelector", {}).get("matchLabels"),
                     f"ingress[{i}]: a peer must name its namespace or pods")


def toolchain_packages():
    src = (REPO / "xtask/src/setup.rs").read_text()
    m = re.search(r"BUILD_PACKAGES: &\[&str\] = &\[(.*?)\];", src, re.S)
    if not m:
        raise Failed("xtask/src/setup.rs: BUILD_PACKAGES not found")
    return re.findall(r'"([^"]+)"', m.group(1))


def check_image(tree):
    cmds = dockerfile.parse_file(str(tree / "Containerfile"))
    froms = [c for c in cmds if c.cmd == "FROM"]
    stages = {c.value[2].lower() for c in froms if len(c.value) == 3}
    if len(froms) < 2 or froms[0].value[0] != "debian:12":
        raise Failed("Containerfile: a debian:12 builder stage and a runtime stage are needed")
    if froms[-1].value[0] not in ("debian:12-slim", "gcr.io/distroless/cc-debian12"):
        raise Failed(f"Containerfile: runtime image {froms[-1].value[0]} is not a small Debian 12 one")
    runs = " ".join(" ".join(c.value) for c in cmds if c.cmd == "RUN")
    runs = re.sub(r"\s+", " ", runs)
    missing = [p for p in toolchain_packages() if not re.search(rf"\b{re.escape(p)}\b", runs)]
    if missing:
        raise Failed(f"Containerfile: toolchain packages of xtask/src/setup.rs missing: {missing}")
    for needed in ("LLVM_PREFIX=/usr/lib/llvm-22 cargo install bpf-linker@0.13.0 --locked "
                   "--no-default-features --features llvm-22",
                   "cargo build --release --locked -p podlife"):
        if needed not in runs:
            raise Failed(f"Containerfile: missing build step `{needed}`")
    copied = set()
    for c in cmds:
        if c.cmd != "COPY":
            continue
        flags = dict(f.lstrip("-").split("=", 1) for f in c.flags)
        if "from" in flags:
            if flags["from"].lower() not in stages:
                raise Failed(f"Containerfile: COPY --from={flags['from']}: no such stage")
            continue
        for src in c.value[:-1]:
            if src in (".", "./") or not (REPO / src).exists():
                raise Failed(f"Containerfile: COPY source {src} does not exist (or is the whole "
                             "context, target/ included)")
            copied.add(src.rstrip("/"))
    members = re.findall(r'"([^"]+)"', re.search(r"members = \[(.*?)\]",
                                                 (REPO / "Cargo.toml").read_text(), re.S).group(1))
    uncovered = [m for m in members if not any(m == c or m.startswith(c + "/") for c in copied)]
    for m in ["Cargo.toml", "Cargo.lock", ".cargo"] + uncovered:
        if m not in copied:
            raise Failed(f"Containerfile: {m} is not copied into the builder")
    ep = [c for c in cmds if c.cmd == "ENTRYPOINT"]
    if not ep or ep[-1].value[0] != "/usr/bin/podlife":
        raise Failed("Containerfile: ENTRYPOINT must be /usr/bin/podlife")
    return f"{len(froms)} stages, {len(copied)} COPY sources, toolchain = xtask setup"


def check_kubectl_kustomize(tree):
    """The real kustomize, when a kubectl ≥ 1.21 is installed (older ones embed a kustomize
    without components; Debian 12's kubernetes-client is 1.20)."""
    if not shutil.which("kubectl"):
        return None
    ver = subprocess.run(["kubectl", "version", "--client", "-o", "json"], capture_output=True,
                         text=True)
    try:
        minor = int(json.loads(ver.stdout)["clientVersion"]["minor"].rstrip("+"))
    except (ValueError, KeyError, TypeError):
        minor = 0
    if minor < 21:
        return None
    with tempfile.TemporaryDirectory() as overlay:
        overlay = pathlib.Path(overlay)
        rel = pathlib.Path(*[".."] * len(overlay.parts[1:])) / str(tree).lstrip("/")
        (overlay / "kustomization.yaml").write_text(
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n"
            f"resources: [{rel}]\ncomponents: [{rel}/components/kube-api, "
            f"{rel}/components/kube-events]\n")
        n = 0
        for target in (tree, overlay):
            out = subprocess.run(["kubectl", "kustomize", str(target)], capture_output=True,
                                 text=True)
            if out.returncode != 0:
                raise Failed(f"kubectl kustomize {target}: {out.stderr.strip()}")
            for obj in yaml.safe_load_all(out.stdout):
                validate_object(f"kustomize build of {target}", obj)
                n += 1
    return f"{n} built objects valid"


PLUGIN_ROLE = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["pods/proxy"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["podlife-api-token"],
     "verbs": ["get"]},
]
PLUGIN_CLUSTER_ROLE = [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]


def check_plugin_rbac(tree):
    """`kubectl podlife` users get exactly what the plugin asks for, and nothing cluster-wide
    but `get pods`: no secrets, no proxy outside podlife's namespace."""
    where = "plugin-users.yaml"
    objs = load_all(tree / where)
    by_kind = {o["kind"]: o for o in objs}
    if sorted(by_kind) != ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]:
        raise Failed(f"{where}: expected a Role, a ClusterRole and their bindings, "
                     f"got {sorted(o['kind'] for o in objs)}")
    role, crole = by_kind["Role"], by_kind["ClusterRole"]
    if role["metadata"].get("namespace") != "podlife" or role.get("rules") != PLUGIN_ROLE:
        raise Failed(f"{where}: the Role must grant exactly {json.dumps(PLUGIN_ROLE)} in "
                     f"podlife, not {json.dumps(role.get('rules'))}")
    if crole.get("rules") != PLUGIN_CLUSTER_ROLE:
        raise Failed(f"{where}: the ClusterRole must grant exactly get on pods, "
                     f"not {json.dumps(crole.get('rules'))}")
    for b, r in (("RoleBinding", role), ("ClusterRoleBinding", crole)):
        ref = by_kind[b]["roleRef"]
        if ref.get("kind") != r["kind"] or ref.get("name") != r["metadata"]["name"]:
            raise Failed(f"{where}: the {b} refers to {ref}, not the {r['kind']} of this file")
    return "least access for kubectl podlife"


CHECKS = [("schema", check_schema), ("kustomize", check_kustomize), ("policy", check_policy),
          ("image", check_image), ("plugin-rbac", check_plugin_rbac)]


def run_checks(tree):
    errors = []
    for name, fn in CHECKS:
        try:
            fn(tree)
        except Failed as e:
            errors.append((name, str(e)))
    return errors


def mutate(file, old, new):
    def apply(tree):
        p = tree / file
        text = p.read_text()
        if old not in text:
            raise Failed(f"must-fail setup: `{old}` not in {file}")
        p.write_text(text.replace(old, new))
    return apply


# (what is broken, how, the check that must catch it, a word its message must contain)
MUST_FAIL = [
    ("unknown DaemonSet field", mutate("daemonset.yaml", "  updateStrategy:", "  updateStrategyy:"),
     "schema", "updateStrategyy"),
    ("wrong type", mutate("daemonset.yaml", "hostPID: true", 'hostPID: "yes"'), "schema", "hostPID"),
    ("nested unknown field", mutate("daemonset.yaml", "readOnlyRootFilesystem: true",
                                    "readOnlyRootFileSystem: true"), "schema", "readOnlyRootFileSystem"),
    ("missing required field", mutate("daemonset.yaml", "- name: podlife\n", "- nam: podlife\n"),
     "schema", "name"),
    ("unknown ServiceMonitor field", mutate("servicemonitor.yaml", "scrapeTimeout:", "scrapeTimout:"),
     "schema", "scrapeTimout"),
    ("bad ServiceMonitor interval", mutate("servicemonitor.yaml", "interval: 30s",
                                           "interval: 30 seconds"), "schema", "interval"),
    ("privileged", mutate("daemonset.yaml", "privileged: false", "privileged: true"),
     "policy", "privileged"),
    ("extra capability", mutate("daemonset.yaml", "- DAC_READ_SEARCH\n", "- DAC_READ_SEARCH\n                - SYS_ADMIN\n"),
     "policy", "SYS_ADMIN"),
    ("writable host mount", mutate("daemonset.yaml", "mountPath: /sys/kernel/btf, readOnly: true",
                                   "mountPath: /sys/kernel/btf, readOnly: false"), "policy", "/sys/kernel/btf"),
    ("hostPath type typo", mutate("daemonset.yaml", "type: DirectoryOrCreate}}", "type: DirOrCreate}}"),
     "policy", "DirOrCreate"),
    ("readiness path", mutate("daemonset.yaml", "path: /readyz", "path: /ready"), "policy", "readinessProbe"),
    ("kube-events role deletes",
     mutate("components/kube-events/rbac.yaml", 'verbs: ["create", "patch"]',
            'verbs: ["create", "patch", "delete"]'),
     "kustomize", "must grant exactly create, patch"),
    ("plugin users read every secret",
     mutate("plugin-users.yaml", '    resourceNames: ["podlife-api-token"]\n', ""),
     "plugin-rbac", "Role must grant exactly"),
    ("missing kustomize resource", mutate("kustomization.yaml", "- service.yaml", "- services.yaml"),
     "kustomize", "services.yaml"),
    ("component patch path", mutate("components/kube-api/kustomization.yaml",
                                    "/spec/template/spec/volumes/-", "/spec/template/spec/volume/-"),
     "kustomize", "volume"),
    ("API open by default", mutate("daemonset.yaml", "- name: PODLIFE_API_TOKEN_FILE\n"
                                   "              value: /etc/podlife/api-token/token",
                                   "- name: PODLIFE_API_OPEN\n              value: \"true\""),
     "policy", "PODLIFE_API_TOKEN_FILE"),
    ("API token writable", mutate("daemonset.yaml", "mountPath: /etc/podlife/api-token, readOnly: true",
                                  "mountPath: /etc/podlife/api-token, readOnly: false"),
     "policy", "readOnly"),
    ("network policy admits everyone", mutate("networkpolicy.yaml", "cidr: 192.0.2.1/32",
                                              "cidr: 0.0.0.0/0"), "policy", "0.0.0.0/0"),
    ("network policy admits every namespace",
     mutate("networkpolicy.yaml", "- namespaceSelector:\n            matchLabels:\n"
            "              kubernetes.io/metadata.name: monitoring\n",
            "- namespaceSelector: {}\n"), "policy", "every namespace"),
    ("network policy rule without sources",
     mutate("networkpolicy.yaml", "    - from:\n        - ipBlock:\n            cidr: 192.0.2.1/32\n"
            "      ports:", "    - ports:"), "policy", "every source"),
    ("network policy selects no agent", mutate("networkpolicy.yaml",
                                               "  podSelector:\n    matchLabels:\n"
                                               "      app.kubernetes.io/name: podlife",
                                               "  podSelector:\n    matchLabels:\n"
                                               "      app.kubernetes.io/name: podlif"),
     "policy", "podSelector"),
    ("network policy on another port", mutate("networkpolicy.yaml", "- {port: http, protocol: TCP}",
                                              "- {port: 8080, protocol: TCP}"), "policy", "port"),
    ("kube-api role writes", mutate("components/kube-api/rbac.yaml", '["get", "list", "watch"]',
                                    '["get", "list", "watch", "delete"]'), "kustomize", "delete"),
    ("kube-api role watches events", mutate("components/kube-api/rbac.yaml",
                                            'resources: ["events"]\n    verbs: ["list"]',
                                            'resources: ["events"]\n    verbs: ["list", "watch"]'),
     "kustomize", "watch"),
    ("kube-api role reads secrets", mutate("components/kube-api/rbac.yaml", '["pods"]',
                                           '["pods", "secrets"]'), "kustomize", "secrets"),
    ("kube-api binding to another account", mutate("components/kube-api/rbac.yaml",
                                                   "    name: podlife\n", "    name: default\n"),
     "kustomize", "subjects"),
    ("kube-api token writable", mutate("components/kube-api/kustomization.yaml",
                                       "serviceaccount\n          readOnly: true",
                                       "serviceaccount\n          readOnly: false"),
     "kustomize", "read-only"),
    ("COPY of the whole context", mutate("Containerfile", "COPY ebpf/ ebpf/", "COPY . ."),
     "image", "context"),
    ("toolchain package dropped", mutate("Containerfile", "libstd-rust-web-dev-bpf", "libstd-rust-dev"),
     "image", "libstd-rust-web-dev-bpf"),
]


def main():
    results = []  # (ok, None|skip, line)
    for name, fn in CHECKS + [("kubectl-kustomize", check_kubectl_kustomize)]:
        try:
            detail = fn(DEPLOY)
            if detail is None:
                results.append((True, True, f"SKIP {name}: no kubectl ≥ 1.21 installed (the "
                                f"component is still checked by `kustomize` above)"))
            else:
                results.append((True, False, f"ok   {name}: {detail}"))
        except Failed as e:
            results.append((False, False, f"FAIL {name}: {' '.join(str(e).split())}"))
    for what, apply, check, word in MUST_FAIL:
        with tempfile.TemporaryDirectory() as tmp:
            tree = pathlib.Path(tmp) / "deploy"
            shutil.copytree(DEPLOY, tree, ignore=shutil.ignore_patterns("__pycache__"))
            try:
                apply(tree)
                errors = run_checks(tree)
            except Failed as e:
                results.append((False, False, f"FAIL must-fail {what}: {e}"))
                continue
        hit = [m for c, m in errors if c == check and word in m]
        if hit:
            said = " ".join(hit[0].split())[:110]
            results.append((True, False, f"ok   must-fail {what}: {check} said: {said}"))
        else:
            results.append((False, False, f"FAIL must-fail {what}: the {check} check did not catch "
                            f"it (errors: {errors})"))
    for _, _, line in results:
        print(line)
    passed = sum(ok and not skip for ok, skip, _ in results)
    failed = sum(not ok for ok, _, _ in results)
    skipped = sum(skip for _, skip, _ in results)
    print(f"deploy: {passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
