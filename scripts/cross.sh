#!/usr/bin/env bash
# Cross-checks every release target so a Linux-only call cannot slip into
# the agent again: for each AGENT_TARGETS entry, go vet of every package of
# this module the agent is built from (tests included) and a build of
# cmd/agent; for each SERVER_TARGETS entry, a build of the servers. Run by
# `make lint` (and so by .ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/targets.sh
mod=$(go list -m)
for t in "${AGENT_TARGETS[@]}"; do
  export GOOS=${t%/*} GOARCH=${t#*/} CGO_ENABLED=0
  mapfile -t pkgs < <(go list -deps ./cmd/agent | grep -E "^$mod(/|$)")
  echo "cross: $t: vet ${#pkgs[@]} agent packages, build agent"
  go vet "${pkgs[@]}"
  go build -o /dev/null ./cmd/agent
done
for t in "${SERVER_TARGETS[@]}"; do
  export GOOS=${t%/*} GOARCH=${t#*/} CGO_ENABLED=0
  echo "cross: $t: build ${SERVERS[*]}"
  for s in "${SERVERS[@]}"; do go build -o /dev/null "./cmd/$s"; done
done
