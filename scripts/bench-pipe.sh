#!/usr/bin/env bash
# Throughput through the agent's /p2p/pipe against raw TCP, same run:
# BenchmarkPipeThroughput (pkg/api) measures four streams of 64 KiB writes
# one after another in each round (raw loopback TCP, raw TCP between two lab
# hosts, the encrypted pipe used as a library, and /p2p/pipe between two
# agents: client -> agent A's API -> Noise pipe -> agent B's API -> client),
# ROUNDS rounds of BENCHTIME each; medians and ratios to raw loopback TCP.
# Needs root (the agents run in NAT-lab namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
BENCHTIME=${BENCHTIME:-2s}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/api.test" ./pkg/api
for r in $(seq "$ROUNDS"); do
  (cd pkg/api && "$tmp/api.test" -test.run '^$' -test.bench '^BenchmarkPipeThroughput$' \
    -test.benchtime "$BENCHTIME") | awk -v r="$r" '/MB\/s/ {
      name=$1; sub(/^BenchmarkPipeThroughput\//, "", name); sub(/-[0-9]+$/, "", name)
      for (i = 1; i <= NF; i++) if ($i == "MB/s") print r, name, $(i-1) }' >>"$tmp/rounds"
done
echo "== /p2p/pipe throughput, $ROUNDS rounds of $BENCHTIME (MB/s)"
awk '
  { v[$2] = v[$2] " " $3; n[$2]++; order[$2] = order[$2] ? order[$2] : ++k; name[k] = $2 }
  END {
    for (i = 1; i <= k; i++) {
      s = name[i]; c = split(substr(v[s], 2), a, " ")
      for (x = 1; x <= c; x++) for (y = x + 1; y <= c; y++) if (a[y] + 0 < a[x] + 0) { t = a[x]; a[x] = a[y]; a[y] = t }
      med[s] = (c % 2) ? a[(c + 1) / 2] : (a[c / 2] + a[c / 2 + 1]) / 2
    }
    printf "| stream | MB/s (median) | ratio to raw loopback TCP | MB/s per round |\n|---|---:|---:|---|\n"
    for (i = 1; i <= k; i++) {
      s = name[i]
      printf "| %s | %.0f | %.2fx | %s |\n", s, med[s], med[s] / med["raw-loopback-tcp"], substr(v[s], 2)
    }
  }' "$tmp/rounds"
