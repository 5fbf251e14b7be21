#!/usr/bin/env bash
# The end-to-end suite: real containerd + runc pods driven through the CRI, a real podlife
# agent, assertions through its HTTP API. Root. Builds the release agent first.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bash "$here/setup.sh"
cd "$here/.."
cargo build --release -p podlife -p kubectl-podlife
export PODLIFE_BIN=${PODLIFE_BIN:-$PWD/target/release/podlife}
exec cargo test -p podlife-e2e --release --no-fail-fast -- --test-threads=1 "$@"
