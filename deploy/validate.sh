#!/usr/bin/env bash
# Validate every manifest against the Kubernetes OpenAPI schemas, offline (kubernetes-validate
# from PyPI ships them), and prove the check can fail on a broken copy.
set -euo pipefail
cd "$(dirname "$0")"
venv=${PODLIFE_VENV:-$PWD/../target/validate-venv}
if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q kubernetes-validate==1.37.0
fi
kv() { "$venv/bin/kubernetes-validate" --strict --kubernetes-version 1.31.0 "$@"; }
passed=0; failed=0
for f in namespace.yaml serviceaccount.yaml service.yaml daemonset.yaml; do
  if kv "$f" >/dev/null; then passed=$((passed + 1)); else failed=$((failed + 1)); kv "$f" || true; fi
done
broken=$(mktemp --suffix=.yaml)
sed 's/hostPID: true/hostPID: "yes"\n      hostPIDs: true/' daemonset.yaml | sed 's/  updateStrategy:/  updateStrategyy:/' > "$broken"
if kv "$broken" >/dev/null 2>&1; then
  echo "FAILED: a broken DaemonSet passed validation" >&2; failed=$((failed + 1))
else
  passed=$((passed + 1))
fi
rm -f "$broken"
echo "deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
