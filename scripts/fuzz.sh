#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME (default 3s) each.
set -euo pipefail
FUZZTIME=${FUZZTIME:-3s}
n=0
while read -r pkg; do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | awk '{print $2}' | sort -u); do
    echo "fuzz: $pkg $f ($FUZZTIME)"
    go test -run '^$' -fuzz "^${f}\$" -fuzztime "$FUZZTIME" "$pkg" >/tmp/fuzz.$$.log 2>&1 || { cat /tmp/fuzz.$$.log; rm -f /tmp/fuzz.$$.log; exit 1; }
    n=$((n+1))
  done
done < <(go list -f '{{if .TestGoFiles}}{{.ImportPath}}{{end}}' ./... | sort -u)
rm -f /tmp/fuzz.$$.log
echo "fuzz: $n targets ok"
