#!/usr/bin/env bash
# stund vs coturn (STUN-only) on the same machine, same run: UDP Binding
# requests/s and latency percentiles from bench/stunload, ROUNDS interleaved
# rounds (the server that goes first alternates), medians reported with the
# stund/coturn ratio, for two shapes: closed-loop clients with one request in
# flight each (CLOSED_SOCKETS sockets x 1) and pipelined clients (SOCKETS
# sockets x WINDOW in flight).
# Both servers listen on 127.0.0.1 + 127.0.0.2 (RFC 5780 mode); stund runs
# with its rate limit off (--rate 0) because coturn has none.
# Then (PINNED=1, the default where taskset exists and there are 2+ CPUs)
# both shapes again with each server pinned to CPU 0 and the load generator
# to the others, as when clients run on other hosts: the load generator's
# CPU no longer competes with the server's, so the ratio is the servers'.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-3s}
CLOSED_SOCKETS=${CLOSED_SOCKETS:-16}
SOCKETS=${SOCKETS:-8}
WINDOW=${WINDOW:-4}
ncpu=$(nproc)
PINNED=${PINNED:-$(command -v taskset >/dev/null && ((ncpu >= 2)) && echo 1 || echo 0)}

if ! command -v turnserver >/dev/null; then
  echo "bench-stund: turnserver (coturn) missing: run make deps" >&2
  exit 1
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

CGO_ENABLED=0 go build -o "$tmp/stund" ./cmd/stund
go build -o "$tmp/stunload" ./bench/stunload
# shellcheck source=scripts/steal.sh
. scripts/steal.sh
mark=$(steal_mark)

ready() {
  for _ in $(seq 50); do
    rps=$("$tmp/stunload" -server "$1" -duration 100ms -sockets 1 -window 1 -timeout 50ms -format tsv | cut -f1)
    if [[ ${rps:-0} -gt 0 ]]; then return 0; fi
    sleep 0.2
  done
  echo "bench-stund: $2 at $1 does not answer" >&2
  cat "$tmp/$2.log" >&2 || true
  exit 1
}

# start_servers PREFIX...: both servers under PREFIX (empty, or a taskset
# command), on free-looking high ports chosen at random to avoid other users.
start_servers() {
  sp=$((20000 + RANDOM % 5000 * 2))
  cp=$((30000 + RANDOM % 1000 * 2)) # below the ephemeral range: coturn binds TCP as well
  "$@" "$tmp/stund" --primary-ip4 127.0.0.1 --alternate-ip4 127.0.0.2 --port "$sp" --alt-port $((sp + 1)) \
    --rate 0 --admin "" --log-level warn 2>"$tmp/stund.log" &
  pids+=($!)
  spid=$!
  "$@" turnserver -n --listening-ip 127.0.0.1 --listening-ip 127.0.0.2 --listening-port "$cp" \
    --alt-listening-port $((cp + 1)) --stun-only --no-tls --no-dtls --no-cli \
    --log-file "$tmp/coturn.log" --simple-log --pidfile "$tmp/coturn.pid" >/dev/null 2>&1 &
  pids+=($!)
  cpid=$!
  ready "127.0.0.1:$sp" stund
  ready "127.0.0.1:$cp" coturn
}
stop_servers() {
  kill "$spid" "$cpid" 2>/dev/null || true
  wait "$spid" "$cpid" 2>/dev/null || true
}
load() { "${loadpin[@]}" "$tmp/stunload" -server "$1" -duration "$DURATION" -sockets "$2" -window "$3" -format tsv; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
col() { cut -f"$2" "$1" | median; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2fx", a / b; else print "n/a" }'; }
version=$(turnserver --version 2>/dev/null | head -1 | tr -d '\n' || true)

# shape NAME SOCKETS WINDOW: ROUNDS interleaved rounds, then the table
shape() {
  : >"$tmp/stund.tsv"; : >"$tmp/coturn.tsv"
  for ((i = 1; i <= ROUNDS; i++)); do
    if ((i % 2)); then
      load "127.0.0.1:$sp" "$2" "$3" >>"$tmp/stund.tsv"
      load "127.0.0.1:$cp" "$2" "$3" >>"$tmp/coturn.tsv"
    else
      load "127.0.0.1:$cp" "$2" "$3" >>"$tmp/coturn.tsv"
      load "127.0.0.1:$sp" "$2" "$3" >>"$tmp/stund.tsv"
    fi
  done
  local s_rps c_rps s_p50 c_p50 s_p99 c_p99
  s_rps=$(col "$tmp/stund.tsv" 1); c_rps=$(col "$tmp/coturn.tsv" 1)
  s_p50=$(col "$tmp/stund.tsv" 2); c_p50=$(col "$tmp/coturn.tsv" 2)
  s_p99=$(col "$tmp/stund.tsv" 3); c_p99=$(col "$tmp/coturn.tsv" 3)
  echo
  echo "### stund vs coturn: $1 (median of $ROUNDS interleaved rounds of $DURATION)"
  echo
  echo "| server | requests/s | p50 latency (us) | p99 latency (us) | lost (median) | requests/s per round |"
  echo "|---|---:|---:|---:|---:|---|"
  echo "| stund | $s_rps | $s_p50 | $s_p99 | $(col "$tmp/stund.tsv" 4) | $(cut -f1 "$tmp/stund.tsv" | tr '\n' ' ')|"
  echo "| coturn $version | $c_rps | $c_p50 | $c_p99 | $(col "$tmp/coturn.tsv" 4) | $(cut -f1 "$tmp/coturn.tsv" | tr '\n' ' ')|"
  echo "| stund / coturn | $(ratio "$s_rps" "$c_rps") | $(ratio "$s_p50" "$c_p50") | $(ratio "$s_p99" "$c_p99") | | |"
}
loadpin=()
start_servers
shape "closed loop, $CLOSED_SOCKETS clients x 1 request in flight" "$CLOSED_SOCKETS" 1
shape "pipelined, $SOCKETS sockets x $WINDOW in flight" "$SOCKETS" "$WINDOW"
stop_servers
if [[ $PINNED == 1 ]]; then
  loadpin=(taskset -c "1-$((ncpu - 1))")
  start_servers taskset -c 0
  shape "closed loop, $CLOSED_SOCKETS clients x 1 request in flight, server on CPU 0, load generator on the others" "$CLOSED_SOCKETS" 1
  shape "pipelined, $SOCKETS sockets x $WINDOW in flight, server on CPU 0, load generator on the others" "$SOCKETS" "$WINDOW"
  stop_servers
fi
echo
echo "CPU time stolen by the hypervisor during this run: $(steal_since "$mark")"
