"""Checks of dashboards/: run by check.sh (needs python3 with PyYAML, and promtool).

rules       promtool check rules on both rule files; promtool test rules on tests/*.yaml
coverage    every alert has a test where it fires and one where it does not; every recording
            rule is evaluated (promql_expr_test) in a test
metrics     every PromQL expression (dashboard panels, template variables, rules) names only
            metrics the agent exports, and only labels those metrics have: agent-metrics.txt,
            written from the agent's registry (a unit test in metrics.rs keeps them equal)
dashboard   valid JSON; datasource, namespace and pod variables; unique panel ids; every panel
            on the ${datasource}; per-pod queries filtered by $namespace and $pod; every metric
            of the agent on some panel; p50 and p95 of both histograms
promql      every dashboard query parses (promtool check rules on a generated rule file)
must-fail   broken copies (unknown metric, wrong label, syntax error, weakened alert, missing
            not-firing test) must each be caught by the check meant for it

Last line: `dashboards: N passed, M failed`; exit 1 on failure.
"""

import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

HERE = pathlib.Path(__file__).resolve().parent
POD = {"namespace", "pod", "uid", "container"}
AGENT_METRICS = HERE / "agent-metrics.txt"


def load_agent_metrics(path):
    """{metric: labels} and the histograms, from agent-metrics.txt: written from the agent's
    registry by a unit test of userspace/agent/src/pipeline/metrics.rs, which fails when they differ."""
    metrics, histograms = {}, set()
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        name, kind, *labels = line.split()
        metrics[name] = set(labels[0].split(",")) if labels else set()
        if kind == "histogram":
            histograms.add(name)
    if not metrics:
        sys.exit(f"{path}: no metric families")
    return metrics, histograms


METRICS, HISTOGRAMS = load_agent_metrics(AGENT_METRICS)
TARGET_LABELS = {"instance", "job", "node", "__name__"}  # added by the scrape
RULE_ONLY = {"up": {"instance", "job"}}  # scrape health, used by PodlifeAgentDown
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
            "unless", "offset", "bool", "inf", "nan", "atan2"}
GRAFANA_VARS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h",
                "$namespace": ".*", "$pod": ".*", "$instance": ".*"}


class Failed(Exception):
    pass


def series_labels(name):
    if name in METRICS:
        return METRICS[name]
    for suffix in ("_bucket", "_sum", "_count"):
        base = name[: -len(suffix)]
        if name.endswith(suffix) and base in HISTOGRAMS:
            return METRICS[base] | ({"le"} if suffix == "_bucket" else set())
    return None


def parse_promql(expr):
    """(metric names, {metric: matcher labels}, grouping labels) of a PromQL expression."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals cannot hide metrics
    selectors = {}
    for m in re.finditer(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}", text):
        labels = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", m.group(2)))
        if m.group(1) and m.group(1) not in KEYWORDS:
            selectors.setdefault(m.group(1), set()).update(labels)
    grouping = set()
    for m in re.finditer(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", text):
        grouping.update(x.strip() for x in m.group(1).split(",") if x.strip())
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", text)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", bare):
        word, call = m.group(1), m.group(2)
        if call or word in KEYWORDS or re.fullmatch(r"\d+[smhdwy]?", word):
            continue
        names.add(word)
    return names | set(selectors), selectors, grouping


def check_expr(where, expr, extra_metrics=None):
    allowed = dict(RULE_ONLY) if extra_metrics is None else {}
    allowed.update(extra_metrics or {})
    names, selectors, grouping = parse_promql(expr)
    if not names:
        raise Failed(f"{where}: no metric in `{expr}`")
    union = set(TARGET_LABELS)
    for n in names:
        labels = series_labels(n)
        if labels is None and n not in allowed:
            raise Failed(f"{where}: unknown metric {n} (the agent exports no such series)")
        union |= labels if labels is not None else allowed[n]
    for n, used in selectors.items():
        have = (series_labels(n) if series_labels(n) is not None else allowed.get(n, set())) | TARGET_LABELS
        if used - have:
            raise Failed(f"{where}: {n} has no label {sorted(used - have)}")
    if grouping - union:
        raise Failed(f"{where}: grouping by {sorted(grouping - union)}, which no metric of it has")
    return names


def load_rules(d):
    return {f: yaml.safe_load((d / "rules" / f).read_text())
            for f in ("podlife-alerts.yaml", "podlife-recording.yaml")}


def promtool(*args):
    out = subprocess.run(["promtool", *args], capture_output=True, text=True)
    if out.returncode != 0:
        said = " ".join((out.stdout + out.stderr).replace(str(HERE.parent), "").split())
        raise Failed(f"promtool {args[0]} {args[1]} failed: ...{said[-400:]}")
    return out.stdout


def check_rules(d):
    r = d / "rules"
    promtool("check", "rules", str(r / "podlife-alerts.yaml"), str(r / "podlife-recording.yaml"))
    tests = sorted(r.glob("tests/*.yaml"))
    promtool("test", "rules", *map(str, tests))
    return f"promtool check and {len(tests)} unit-test files pass"


def check_coverage(d):
    rules = load_rules(d)
    alerts = [x["alert"] for g in rules["podlife-alerts.yaml"]["groups"] for x in g["rules"]]
    records = [x["record"] for g in rules["podlife-recording.yaml"]["groups"] for x in g["rules"]]
    fires, quiet, evaluated = set(), set(), set()
    for t in (d / "rules" / "tests").glob("*.yaml"):
        for case in yaml.safe_load(t.read_text()).get("tests", []):
            for a in case.get("alert_rule_test", []):
                (fires if a.get("exp_alerts") else quiet).add(a["alertname"])
            for e in case.get("promql_expr_test", []):
                evaluated |= set(re.findall(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", e["expr"]))
    gaps = [f"{a} never fires in a test" for a in alerts if a not in fires]
    gaps += [f"{a} has no not-firing test" for a in alerts if a not in quiet]
    if gaps:
        raise Failed("; ".join(gaps))
    untested = [x for x in records if x not in evaluated]
    if untested:
        raise Failed(f"recording rules evaluated by no test: {untested}")
    return f"{len(alerts)} alerts firing and quiet, {len(records)} recording rules evaluated"


def dashboard_queries(dash):
    out = []
    for p in dash.get("panels", []):
        for t in p.get("targets", []):
            out.append((f"panel {p['id']} {p.get('title')!r}", t.get("expr", "")))
    return out


def var_queries(dash):
    out = []
    for v in dash["templating"]["list"]:
        if v.get("type") == "query":
            q = v["query"]["query"] if isinstance(v["query"], dict) else v["query"]
            m = re.fullmatch(r"label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)", q.strip())
            if not m:
                raise Failed(f"variable {v['name']}: unsupported query {q!r}")
            out.append((f"variable {v['name']}", m.group(1), m.group(2)))
    return out


def check_metrics(d):
    dash = json.loads((d / "podlife.json").read_text())
    n = 0
    for where, expr in dashboard_queries(dash):
        check_expr(where, expr, extra_metrics={})
        n += 1
    for where, selector, label in var_queries(dash):
        names = check_expr(where, selector, extra_metrics={})
        if not any(label in (series_labels(x) or set()) | TARGET_LABELS for x in names):
            raise Failed(f"{where}: {selector} has no label {label}")
        n += 1
    rules = load_rules(d)
    records = {x["record"]: {"instance"} | POD | {"limit_scope", "victim", "kind", "result",
                                                  "reason", "signal", "stage"}
               for g in rules["podlife-recording.yaml"]["groups"] for x in g["rules"]}
    for f, doc in rules.items():
        for g in doc["groups"]:
            for x in g["rules"]:
                check_expr(f"{f} {x.get('alert') or x.get('record')}", x["expr"],
                           extra_metrics={**RULE_ONLY, **records})
                n += 1
    return f"{n} expressions name only the agent's metrics and their labels"


def check_dashboard(d):
    try:
        dash = json.loads((d / "podlife.json").read_text())
    except json.JSONDecodeError as e:
        raise Failed(f"podlife.json is not valid JSON: {e}") from None
    for k in ("title", "uid", "panels", "templating", "schemaVersion"):
        if k not in dash:
            raise Failed(f"podlife.json: no {k}")
    names = {v["name"]: v for v in dash["templating"]["list"]}
    if names.get("datasource", {}).get("type") != "datasource" or \
            names["datasource"].get("query") != "prometheus":
        raise Failed("podlife.json: a Prometheus `datasource` variable is required")
    for v in ("namespace", "pod"):
        if names.get(v, {}).get("type") != "query":
            raise Failed(f"podlife.json: a `{v}` query variable is required")
    ids = [p["id"] for p in dash["panels"]]
    if len(ids) != len(set(ids)):
        raise Failed(f"podlife.json: duplicate panel ids {sorted(i for i in ids if ids.count(i) > 1)}")
    used = set()
    for p in dash["panels"]:
        if p["type"] == "row":
            continue
        if p.get("datasource", {}).get("uid") != "${datasource}" or not p.get("targets"):
            raise Failed(f"panel {p['id']} {p['title']!r}: needs targets on ${{datasource}}")
        for t in p["targets"]:
            names_, selectors, _ = parse_promql(t["expr"])
            used |= names_
            for m, labels in selectors.items():
                if series_labels(m) and POD <= series_labels(m) and not {"namespace", "pod"} <= labels:
                    raise Failed(f"panel {p['id']} {p['title']!r}: {m} is not filtered by $namespace and $pod")
            for m in names_:
                if series_labels(m) and POD <= series_labels(m) and m not in selectors:
                    raise Failed(f"panel {p['id']} {p['title']!r}: {m} is not filtered by $namespace and $pod")
    shown = {n[: -len("_bucket")] if n.endswith("_bucket") else n for n in used}
    missing = sorted(set(METRICS) - shown - {"podlife_container_starts_total"})
    if missing:
        raise Failed(f"podlife.json: no panel shows {missing}")
    exprs = " ".join(e for _, e in dashboard_queries(dash))
    for h in HISTOGRAMS:
        for q in ("0.5", "0.95"):
            if not re.search(rf"histogram_quantile\({q},[^;]*?{h}_bucket", exprs):
                raise Failed(f"podlife.json: no p{q[2:]} of {h}")
    return f"{len(ids)} panels, {len(names)} variables, every metric shown"


def check_promql(d):
    dash = json.loads((d / "podlife.json").read_text())
    rules = []
    for i, (where, expr) in enumerate(dashboard_queries(dash)):
        for k, v in GRAFANA_VARS.items():
            expr = expr.replace(k, v)
        if "$" in expr:
            raise Failed(f"{where}: unknown Grafana variable in `{expr}`")
        rules.append({"record": f"dashboard:query_{i}:check", "expr": expr})
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, f)
        f.flush()
        promtool("check", "rules", f.name)
    return f"{len(rules)} dashboard queries parse"


CHECKS = [("rules", check_rules), ("coverage", check_coverage), ("metrics", check_metrics),
          ("dashboard", check_dashboard), ("promql", check_promql)]


def edit(file, old, new):
    def apply(tree):
        p = tree / file
        if old not in p.read_text():
            raise Failed(f"must-fail setup: `{old}` not in {file}")
        p.write_text(p.read_text().replace(old, new, 1))
    return apply


def drop_quiet_test(alert):
    def apply(tree):
        p = tree / "rules/tests/podlife-alerts-test.yaml"
        doc = yaml.safe_load(p.read_text())
        for case in doc["tests"]:
            case["alert_rule_test"] = [a for a in case.get("alert_rule_test", [])
                                       if a["alertname"] != alert or a.get("exp_alerts")]
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return apply


MUST_FAIL = [
    ("unknown metric in a panel", edit("podlife.json", "podlife_container_restarts_total{",
                                      "podlife_container_restart_total{"), "metrics", "podlife_container_restart_total"),
    ("label the metric lacks", edit("podlife.json", "sum by (namespace, pod, container) (increase(podlife_container_restarts_total",
                                    "sum by (namespace, pod, container, reason) (increase(podlife_container_restarts_total"),
     "metrics", "reason"),
    ("PromQL syntax error", edit("podlife.json", "(rate(podlife_ringbuf_events_total{", "(rate(podlife_ringbuf_events_total{{"),
     "promql", "promtool"),
    ("panel not filtered by pod", edit("podlife.json", 'podlife_process_crashes_total{namespace=~\\"$namespace\\",pod=~\\"$pod\\"}',
                                       'podlife_process_crashes_total{namespace=~\\"$namespace\\"}'),
     "dashboard", "podlife_process_crashes_total"),
    ("unknown metric in an alert", edit("rules/podlife-alerts.yaml", "expr: podlife_ready == 0",
                                        "expr: podlife_readiness == 0"), "metrics", "podlife_readiness"),
    ("alert without its `for`", edit("rules/podlife-alerts.yaml", "> 0.01\n        for: 10m", "> 0.01\n"),
     "rules", "PodlifeAttributionFailures"),
    ("alert threshold weakened", edit("rules/podlife-alerts.yaml", ") > 0.5\n", ") > 0.2\n"),
     "rules", "PodlifeProbeFailureRate"),
    ("alert with no not-firing test", drop_quiet_test("PodlifeRingBufferDrops"), "coverage",
     "PodlifeRingBufferDrops has no not-firing test"),
]


def run_checks(tree):
    errors = []
    for name, fn in CHECKS:
        try:
            fn(tree)
        except Failed as e:
            errors.append((name, str(e)))
    return errors


def main():
    results = []
    for name, fn in CHECKS:
        try:
            results.append((True, f"ok   {name}: {fn(HERE)}"))
        except Failed as e:
            results.append((False, f"FAIL {name}: {e}"))
    for what, apply, check, word in MUST_FAIL:
        with tempfile.TemporaryDirectory() as tmp:
            tree = pathlib.Path(tmp) / "dashboards"
            shutil.copytree(HERE, tree, ignore=shutil.ignore_patterns("__pycache__"))
            try:
                apply(tree)
                errors = run_checks(tree)
            except Failed as e:
                results.append((False, f"FAIL must-fail {what}: {e}"))
                continue
        hit = [m for c, m in errors if c == check and word in m]
        if hit:
            results.append((True, f"ok   must-fail {what}: {check} said: {' '.join(hit[0].split())[:110]}"))
        else:
            results.append((False, f"FAIL must-fail {what}: the {check} check did not catch it ({errors})"))
    for _, line in results:
        print(line)
    passed = sum(ok for ok, _ in results)
    failed = len(results) - passed
    print(f"dashboards: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
