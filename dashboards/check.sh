#!/usr/bin/env bash
# Dashboards and rules: promtool check + unit tests, and the Grafana dashboard's PromQL refers
# only to metrics the agent exports. Root not needed (apt needs it if promtool is missing).
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v promtool >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
passed=0; failed=0
step() { if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $*" >&2; fi; }
step promtool check rules rules/podlife-alerts.yaml rules/podlife-recording.yaml
step promtool test rules rules/tests/*.yaml
step python3 - <<'PY'
import json, re, sys
known = {
    "podlife_container_starts_total", "podlife_container_exits_total", "podlife_container_restarts_total",
    "podlife_container_oom_kills_total", "podlife_exec_sessions_total", "podlife_probe_failures_total",
    "podlife_stop_signals_ignored_total", "podlife_grace_period_overruns_total", "podlife_process_crashes_total",
    "podlife_termination_duration_seconds_bucket", "podlife_exec_duration_seconds_bucket",
    "podlife_ringbuf_events_total", "podlife_ringbuf_events_lost_total", "podlife_decode_errors_total",
    "podlife_attribution_failures_total", "podlife_tracked_pods", "podlife_tracked_processes",
    "podlife_feature_enabled", "podlife_build_info", "podlife_ready",
}
d = json.load(open("podlife.json"))
exprs = [t["expr"] for p in d["panels"] for t in p["targets"]]
exprs += [v["query"] for v in d["templating"]["list"] if v["type"] == "query"]
bad = sorted({m for e in exprs for m in re.findall(r"podlife_[a-z_]+", e)} - known)
ids = [p["id"] for p in d["panels"]]
if bad or len(ids) != len(set(ids)) or not exprs:
    sys.exit(f"dashboard refers to unknown metrics {bad} or has duplicate panel ids")
print(f"dashboard: {len(d['panels'])} panels, {len(exprs)} queries, all metrics known")
PY
echo "dashboards: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
