#!/usr/bin/env bash
# Runs Go benchmarks, then each component's side-by-side benchmark script
# (scripts/bench-*.sh), which compare our servers with third-party ones in the
# same run. Results are printed; docs/benchmarks.md records them.
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench . -benchmem ./...
for s in scripts/bench-*.sh; do
  [[ -e $s ]] || continue
  echo "== $s"
  bash "$s"
done
