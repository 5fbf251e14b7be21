#!/usr/bin/env python3
"""Write the committed seed corpora (seeds/<target>/) from the repository's real data:
ring-buffer records encoded from the recorded kernel events (userspace/core/tests/fixtures),
the cgroup path corpus of the core tests, OCI annotations as containerd and CRI-O write them,
the API's documented requests and the redaction corpus's command lines. Run from anywhere; rewrites seeds/."""

import hashlib
import json
import pathlib
import shutil
import struct

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
FIXTURES = sorted((ROOT / "userspace/core/tests/fixtures").glob("*.jsonl"))
ABI_VERSION = 2
KINDS = {"exec": 1, "exit": 2, "fork": 3, "signal_generate": 4, "signal_deliver": 5,
         "setns": 6, "unshare": 7, "cgroup_mkdir": 8, "cgroup_rmdir": 9,
         "cgroup_attach": 10, "oom_victim": 11}
# Per-record layouts mirror ebpf/common/src/event.rs (repr(C), explicit padding).
COMM_LEN, PATH_LEN, ARGV_LEN = 16, 256, 512


def fixed(text, n):
    return text.encode()[: n - 1].ljust(n, b"\0")


def header(ev):
    return struct.pack("<IIQIIQ", KINDS[ev["event"]], ABI_VERSION, ev["ts_ns"], ev["tgid"],
                       ev["tid"], ev["cgroup_id"]) + fixed(ev["comm"], COMM_LEN)


def wait_status(status):
    if status is None:
        return 0, 0
    if status["signal"] is not None:
        return status["signal"] | (0x80 if status["core_dumped"] else 0), 1
    return (status["code"] & 0xFF) << 8, 1


def record(ev):
    k, h = ev["event"], header(ev)
    if k == "exec":
        # Variable-length (ABI 2): head, argv, filename with its NUL; nothing after.
        argv = b"".join(a.encode() + b"\0" for a in ev["argv"])[:ARGV_LEN]
        name = ev["filename"].encode()[: PATH_LEN - 1] + b"\0"
        return h + struct.pack("<IIIIII", ev["old_tid"], 1 if ev["argv_truncated"] else 0,
                               len(ev["argv"]), len(argv), len(name), 0) + argv + name
    if k == "exit":
        return h + struct.pack("<II", *wait_status(ev["status"]))
    if k == "fork":
        return h + struct.pack("<IIQ", ev["child_tgid"], 0, ev["clone_flags"])
    if k in ("signal_generate", "signal_deliver"):
        results = ["delivered", "ignored", "already_pending", "overflow_fail", "lose_info"]
        r = ev.get("result", "delivered")
        result = results.index(r) if isinstance(r, str) else r["other"]
        handler = ev.get("handler", "default")
        sa = {"default": 0, "ignore": 1}.get(handler) if isinstance(handler, str) \
            else handler["handler"]
        return h + struct.pack("<iiiIiiQQ", ev["sig"], 0, ev["code"], ev.get("target_pid", 0),
                               1 if ev.get("group") else 0, result, sa, 0) \
            + fixed(ev.get("target_comm", ""), COMM_LEN)
    if k == "setns":
        return h + struct.pack("<Qii", ev["nstype"], ev["fd"], ev["ret"])
    if k == "unshare":
        return h + struct.pack("<Qii", ev["flags"], 0, 0)
    if k.startswith("cgroup_"):
        return h + struct.pack("<iiQII", ev["root"], ev["level"], ev["id"], ev.get("pid", 0),
                               len(ev["path"])) + fixed(ev["path"], PATH_LEN)
    if k == "oom_victim":
        fields = ["total_vm_kb", "anon_rss_kb", "file_rss_kb", "shmem_rss_kb", "pgtables_kb"]
        present = sum(1 << i for i, f in enumerate(fields) if ev[f] is not None)
        present |= 32 if ev["oom_score_adj"] is not None else 0
        present |= 128 if ev["victim_comm"] is not None else 0
        return h + struct.pack("<II5QiI", ev["pid"], 0, *[ev[f] or 0 for f in fields],
                               ev["oom_score_adj"] or 0, present) \
            + fixed(ev["victim_comm"] or "", COMM_LEN)
    raise ValueError(k)


def write(target, blobs):
    d = HERE / "seeds" / target
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for b in blobs:
        (d / hashlib.sha1(b).hexdigest()).write_bytes(b)
    print(f"seeds/{target}: {len(set(blobs))}")


def main():
    events = [json.loads(line) for f in FIXTURES for line in f.read_text().splitlines()]
    per_kind = {}
    for ev in events:
        per_kind.setdefault(ev["event"], []).append(record(ev))
    # A handful of each kind is enough to reach every decoder branch and argv shape.
    write("decode", [r for recs in per_kind.values() for r in recs[:12]])

    corpus = (ROOT / "userspace/core/tests/cgroup_paths.txt").read_text().splitlines()
    paths = {line.split(" | ")[0] for line in corpus if line and not line.startswith("#")}
    paths |= {ev["path"] for ev in events if "path" in ev}
    write("cgroup_path", [p.encode() for p in sorted(paths)])

    uid = "8f3c2a1e-1111-4a4a-9b9b-0000000000a1"
    containerd = {"io.kubernetes.cri.container-type": "container",
                  "io.kubernetes.cri.container-name": "app",
                  "io.kubernetes.cri.sandbox-id": "00" * 31 + "a1",
                  "io.kubernetes.cri.sandbox-name": "web",
                  "io.kubernetes.cri.sandbox-namespace": "default",
                  "io.kubernetes.cri.sandbox-uid": uid,
                  "io.kubernetes.cri.image-name": "localhost/e2e/busybox:latest"}
    sandbox = {**containerd, "io.kubernetes.cri.container-type": "sandbox"}
    del sandbox["io.kubernetes.cri.container-name"]
    crio = {"io.kubernetes.cri-o.ContainerType": "sandbox", "io.kubernetes.pod.name": "db",
            "io.kubernetes.pod.namespace": "prod", "io.kubernetes.pod.uid": uid,
            "io.kubernetes.container.name": "POD", "io.kubernetes.cri-o.SandboxID": "ab" * 32}
    spec = {"ociVersion": "1.2.0",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["/bin/sh", "-c", "sleep 1000"],
                        "env": ["PATH=/usr/bin:/bin"], "cwd": "/"},
            "root": {"path": "rootfs"}, "hostname": "web",
            "linux": {"cgroupsPath": f"/kubepods/burstable/pod{uid}/" + "00" * 31 + "a2",
                      "namespaces": [{"type": "pid"}, {"type": "network",
                                                       "path": "/proc/4140/ns/net"}]}}
    write("oci_config", [json.dumps({**spec, "annotations": a}).encode()
                         for a in (containerd, sandbox, crio, {})] + [b"not json"])

    uid2 = "8f3c2a1e-1111-4a4a-9b9b-0000000000a2"
    requests = [f"GET /pods/{uid}", f"GET /pods/{uid}/timeline",
                f"GET /pods/{uid2}/timeline?format=text", f"GET /pods/{uid}/timeline\nAccept: text/plain",
                "GET /pods/default/web/timeline", "GET /pods?namespace=default&state=Running",
                "GET /events?since=5m&limit=10", f"GET /events?uid={uid}&since=2026-11-22T12:00:00Z",
                "GET /events/stream?uid=" + uid, "GET /metrics", "GET /healthz", "GET /readyz",
                "GET /pods\n!token", "GET /pods\nAuthorization: Bearer fuzz-token\n!token",
                "GET /pods\nAuthorization: bearer  fuzz-token\n!token", "GET /pods\n!remote",
                "GET /events/stream\n!remote",
                "GET /pods?nmespace=x", "GET /pods/not-a-uid", "POST /pods", "GET /nope"]
    write("http", [r.encode() for r in requests])

    params = ["5m", "90s", "250ms", "2h", "2026-11-22T12:00:00Z", "2026-11-22T12:00:00.123456789Z",
              "2024-02-29T00:00:00+01:00", "2026-11-22t12:00:00.5-05:30", uid, uid.upper(),
              uid.replace("-", ""), "kube-system", "web-0.x", "text\ntext/plain",
              "json\napplication/json, text/plain"]
    write("api_params", [p.encode() for p in params])

    lines = (ROOT / "userspace/core/tests/redact_corpus.jsonl").read_text().splitlines()
    argvs = [json.loads(line)["argv"] for line in lines if line and not line.startswith("#")]
    write("redact", ["\0".join(a).encode() for a in argvs])


main()
