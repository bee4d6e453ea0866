#!/usr/bin/env bash
# Runs Go benchmarks, then each component's side-by-side benchmark script
# (scripts/bench-*.sh), which compare our servers with third-party ones in the
# same run. Results are printed; docs/benchmarks.md records them.
# Each script takes its rounds and durations from the environment (see its
# header; ROUNDS and BENCH_ROUNDS default to 5); BENCH_GOTIME is the
# -benchtime of the Go benchmarks (default 1s). With the defaults the whole
# run takes about 25 minutes on 2 cores (each server script measures its
# shapes twice: cores shared, and the server on a core of its own).
set -euo pipefail
cd "$(dirname "$0")/.."
go test -run '^$' -bench . -benchmem -benchtime "${BENCH_GOTIME:-1s}" ./...
for s in scripts/bench-*.sh; do
  [[ -e $s ]] || continue
  echo "== $s"
  bash "$s"
done
