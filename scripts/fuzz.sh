#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME (default 3s) each.
#
# Go 1.26's fuzz coordinator can end a duration-limited run with a bare
# "context deadline exceeded" and no failing input (golang/go#75804, fixed in
# Go 1.27). A run that ends that way without writing a reproducer to
# testdata/fuzz is retried (up to 3 tries); a written reproducer or any other
# failure fails at once.
set -euo pipefail
FUZZTIME=${FUZZTIME:-3s}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
n=0
count() { if [[ -d $1 ]]; then find "$1" -type f | wc -l; else echo 0; fi; }
while read -r pkg; do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | awk '{print $2}' | sort -u); do
    corpus="$dir/testdata/fuzz/$f"
    for try in 1 2 3; do
      before=$(count "$corpus")
      echo "fuzz: $pkg $f ($FUZZTIME)"
      if go test -run '^$' -fuzz "^${f}\$" -fuzztime "$FUZZTIME" "$pkg" >"$log" 2>&1; then
        break
      fi
      after=$(count "$corpus")
      if [[ $after -eq $before ]] && grep -q "context deadline exceeded" "$log" && ! grep -qE "panic:|Failing input written" "$log" && [[ $try -lt 3 ]]; then
        echo "fuzz: $f: coordinator deadline race (golang/go#75804), no failing input; retrying"
        continue
      fi
      cat "$log"
      exit 1
    done
    n=$((n+1))
  done
done < <(go list -f '{{if .TestGoFiles}}{{.ImportPath}}{{end}}' ./... | sort -u)
echo "fuzz: $n targets ok"
