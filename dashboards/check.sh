#!/usr/bin/env bash
# Dashboards and rules, offline: promtool check + unit tests of the rules (each alert firing and
# not firing), and the Grafana dashboard's JSON and PromQL against the metrics the agent
# exports; must-fail copies prove each check can fail. See check.py for the list.
# Installs promtool (Debian's `prometheus` package; the service is not started: no systemd here,
# and policy-rc.d forbids it where there is) and PyYAML if missing. Root only for that install.
# Last line: `dashboards: N passed, M failed`; exit 1 on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
apt_install() {
  local deny=/usr/sbin/policy-rc.d created=
  if [ ! -e "$deny" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$deny"; chmod +x "$deny"; created=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
  if [ -n "$created" ]; then rm -f "$deny"; fi
}
command -v promtool >/dev/null || apt_install prometheus
py=python3
if ! "$py" -c 'import yaml' 2>/dev/null; then
  py=/usr/bin/python3
  "$py" -c 'import yaml' 2>/dev/null || apt_install python3 python3-yaml
fi
exec "$py" "$here/check.py"
