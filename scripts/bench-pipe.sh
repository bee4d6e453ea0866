#!/usr/bin/env bash
# Throughput through the agent's /p2p/pipe against raw TCP, same run:
# BenchmarkPipeThroughput (pkg/api) measures five streams of 64 KiB writes
# one after another in each round (raw loopback TCP, raw TCP between two lab
# hosts, the encrypted pipe used as a library, /p2p/pipe between two agents
# on two lab hosts: client -> agent A's API -> Noise pipe -> agent B's API
# -> client, and the same between two agents on one host), ROUNDS rounds of BENCHTIME
# each; medians and ratios to raw loopback TCP, and the CPU time the process
# spent per byte moved (cpu-ns/B: it does not depend on how busy the machine
# is, as MB/s does).
# Needs root (the agents run in NAT-lab namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
BENCHTIME=${BENCHTIME:-2s}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/api.test" ./pkg/api
# shellcheck source=scripts/steal.sh
. scripts/steal.sh
mark=$(steal_mark)
for r in $(seq "$ROUNDS"); do
  (cd pkg/api && "$tmp/api.test" -test.run '^$' -test.bench '^BenchmarkPipeThroughput$' \
    -test.benchtime "$BENCHTIME") | awk -v r="$r" '/MB\/s/ {
      name=$1; sub(/^BenchmarkPipeThroughput\//, "", name); sub(/-[0-9]+$/, "", name)
      mb = cpu = "-"
      for (i = 1; i <= NF; i++) { if ($i == "MB/s") mb = $(i-1); if ($i == "cpu-ns/B") cpu = $(i-1) }
      print r, name, mb, cpu }' >>"$tmp/rounds"
done
echo "== /p2p/pipe throughput, $ROUNDS rounds of $BENCHTIME (MB/s)"
awk '
  function median(list,   a, c, x, y, t) {
    c = split(substr(list, 2), a, " ")
    for (x = 1; x <= c; x++) for (y = x + 1; y <= c; y++) if (a[y] + 0 < a[x] + 0) { t = a[x]; a[x] = a[y]; a[y] = t }
    return (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
  }
  { if (!($2 in v)) name[++k] = $2; v[$2] = v[$2] " " $3; cpu[$2] = cpu[$2] " " $4 }
  END {
    for (i = 1; i <= k; i++) { s = name[i]; med[s] = median(v[s]); mcpu[s] = median(cpu[s]) }
    printf "| stream | MB/s (median) | ratio to raw loopback TCP | CPU ns per byte (median) | MB/s per round |\n|---|---:|---:|---:|---|\n"
    for (i = 1; i <= k; i++) {
      s = name[i]
      printf "| %s | %.0f | %.2fx | %.2f | %s |\n", s, med[s], med[s] / med["raw-loopback-tcp"], mcpu[s], substr(v[s], 2)
    }
  }' "$tmp/rounds"
echo
echo "CPU time stolen by the hypervisor during this run: $(steal_since "$mark")"
