#!/usr/bin/env bash
# Offline validation of every manifest in deploy/ (Kubernetes OpenAPI schemas 1.27-1.37, the
# ServiceMonitor CRD, kustomization and component, least-privilege policy, Containerfile) plus
# must-fail copies that prove each check can fail. See validate.py for the list.
# Needs only PyPI: installs requirements-validate.txt into a venv once (PODLIFE_VENV, default
# target/validate-venv); later runs reuse it until the requirements change.
# Last line: `deploy: N passed, M failed`; exit 1 on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${PODLIFE_VENV:-$here/../target/validate-venv}
req=$here/requirements-validate.txt
stamp=$venv/.podlife-requirements
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$req" "$stamp"; then
  echo "deploy: installing validators into $venv" >&2
  if ! python3 -m venv "$venv" 2>/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$venv"
  fi
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  cp "$req" "$stamp"
fi
exec "$venv/bin/python" "$here/validate.py"
