#!/usr/bin/env bash
# mqttd vs mosquitto, same machine, same run, same load generator
# (bench/mqttload, paho clients, 64-byte messages, at most BENCH_WINDOW
# undelivered per publisher). BENCH_ROUNDS interleaved rounds (the broker
# that goes first alternates); medians, the mqttd/mosquitto ratio, and the
# messages missing over all rounds. Prints markdown tables.
#   BENCH_SECONDS  measured seconds per scenario, broker and round (default 3)
#   BENCH_ROUNDS   rounds (default 5)
#   BENCH_WINDOW   messages in flight per publisher (default 100)
#   BENCH_RATE     deliveries/s of the light-load scenarios (default 2000):
#                  sends spread evenly, and in bursts of 10 (mqttload -burst)
#   BENCH_IDLE     idle connections for the memory figure (default 10000, 0 skips)
#   PINNED         1 (the default where taskset exists and there are 2+ CPUs):
#                  then every scenario again with each broker on CPU 0 and
#                  the load generator on the others, as when the clients run
#                  on other hosts (mosquitto is one thread; Go gives mqttd
#                  one P there)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${BENCH_SECONDS:-3}
ROUNDS=${BENCH_ROUNDS:-5}
WINDOW=${BENCH_WINDOW:-100}
RATE=${BENCH_RATE:-2000}
IDLE=${BENCH_IDLE:-10000}
ncpu=$(nproc)
PINNED=${PINNED:-$(command -v taskset >/dev/null && ((ncpu >= 2)) && echo 1 || echo 0)}

command -v mosquitto >/dev/null || { echo "bench-mqttd: mosquitto missing (make deps)" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if (( IDLE > 0 && $(ulimit -n) < IDLE + 1000 )); then
  echo "bench-mqttd: open-file limit $(ulimit -n) too low for $IDLE idle connections; lowering" >&2
  IDLE=$(( $(ulimit -n) - 1000 ))
fi

tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT

go build -o "$tmp/mqttd" ./cmd/mqttd
go build -o "$tmp/mqttload" ./bench/mqttload
# shellcheck source=scripts/steal.sh
. scripts/steal.sh
mark=$(steal_mark)
load=$tmp/mqttload

wait_port() { # host port
  for _ in $(seq 100); do
    (echo >"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-mqttd: nothing listens on $1:$2" >&2; return 1
}

# start_brokers PREFIX...: both brokers on fresh ports, under PREFIX (empty,
# or a taskset command).
start_brokers() {
  mport=$($load port)
  chmod 755 "$tmp"
  printf '%s\n' "listener $mport 127.0.0.1" "allow_anonymous true" "persistence false" "log_dest none" \
    "max_connections -1" "set_tcp_nodelay true" >"$tmp/mosquitto.conf"
  chmod 644 "$tmp/mosquitto.conf"
  "$@" mosquitto -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
  mpid=$!; pids+=("$mpid")
  qport=$($load port)
  "$@" "$tmp/mqttd" --listen "127.0.0.1:$qport" --ws-listen "" --admin "" --allow-anonymous \
    --publish-rate 0 --max-clients $((IDLE + 1000)) --log-level warn >"$tmp/mqttd.log" 2>&1 &
  qpid=$!; pids+=("$qpid")
  wait_port 127.0.0.1 "$mport"
  wait_port 127.0.0.1 "$qport"
}
stop_brokers() {
  kill "$mpid" "$qpid" 2>/dev/null || true
  wait "$mpid" "$qpid" 2>/dev/null || true
}

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

once() { # port args...: one result line
  local port=$1; shift
  "${loadpin[@]}" "$load" run -broker "tcp://127.0.0.1:$port" -seconds "$SECONDS_PER" -size 64 -window "$WINDOW" -drain 2s "$@" | grep '^result'
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }

# Light load twice: the publishers' sends spread evenly (one publish every
# 1/RATE s), and in bursts (all ten publish at the same instants).
names=("10 -> 10, QoS 0" "10 -> 10, QoS 1" "1 -> 100 fan-out, QoS 0" "light load, 10 -> 10, QoS 1, $RATE deliveries/s"
  "light load in bursts of 10, QoS 1, $RATE deliveries/s")
args=("-pubs 10 -subs 10 -qos 0" "-pubs 10 -subs 10 -qos 1" "-pubs 1 -subs 100 -fanout -qos 0" "-pubs 10 -subs 10 -qos 1 -rate $RATE"
  "-pubs 10 -subs 10 -qos 1 -rate $RATE -burst")
declare -A res
# measure KEY: ROUNDS interleaved rounds of every scenario, into res[broker,KEYi,...].
measure() {
  local r order i b port line f
  for r in $(seq "$ROUNDS"); do
    order="mqttd mosquitto"; ((r % 2 == 0)) && order="mosquitto mqttd"
    for i in "${!names[@]}"; do
      for b in $order; do
        port=$qport; [[ $b == mosquitto ]] && port=$mport
        # shellcheck disable=SC2086
        if ! line=$(once "$port" ${args[$i]}); then
          echo "bench-mqttd: ${names[$i]} on $b failed in round $r; counted as 0" >&2
          line="result msgs_per_s=0 p50_ms=0 p99_ms=0 missing=0"
        fi
        for f in msgs_per_s p50_ms p99_ms; do res[$b,$1$i,$f]+="$(field $f <<<"$line") "; done
        res[$b,$1$i,missing]=$(( ${res[$b,$1$i,missing]:-0} + $(field missing <<<"$line") ))
      done
    done
  done
}
med() { tr ' ' '\n' <<<"${res[$1,$2,$3]}" | grep . | median; }

# table KEY TITLE: the markdown table of measure KEY.
table() {
  local i q m
  echo "## mqttd vs mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}') $2(median of $ROUNDS interleaved rounds x ${SECONDS_PER}s, 64 B, $WINDOW in flight per publisher, loopback, $ncpu cores)"
  echo
  echo "| scenario | mqttd deliveries/s | mosquitto deliveries/s | ratio | mqttd p50 / p99 ms | mosquitto p50 / p99 ms | missing mqttd / mosquitto | per round deliveries/s (mqttd / mosquitto) |"
  echo "|---|---:|---:|---:|---:|---:|---:|---|"
  for i in "${!names[@]}"; do
    q=$(med mqttd "$1$i" msgs_per_s); m=$(med mosquitto "$1$i" msgs_per_s)
    printf '| %s | %s | %s | %s | %s / %s | %s / %s | %s / %s | %s/ %s|\n' "${names[$i]}" "$q" "$m" "$(ratio "$q" "$m")" \
      "$(med mqttd "$1$i" p50_ms)" "$(med mqttd "$1$i" p99_ms)" "$(med mosquitto "$1$i" p50_ms)" "$(med mosquitto "$1$i" p99_ms)" \
      "${res[mqttd,$1$i,missing]}" "${res[mosquitto,$1$i,missing]}" "${res[mqttd,$1$i,msgs_per_s]}" "${res[mosquitto,$1$i,msgs_per_s]}"
  done
}

loadpin=()
start_brokers
measure ""
table "" ""

if (( IDLE > 0 )); then
  echo
  echo "| $IDLE idle connections | RSS before MiB | RSS after MiB | KiB per connection |"
  echo "|---|---:|---:|---:|"
  for b in "mqttd $qport $qpid" "mosquitto $mport $mpid"; do
    set -- $b
    line=$($load idle -addr "127.0.0.1:$2" -n "$IDLE" -pid "$3" | grep '^result')
    printf '| %s | %s | %s | %s |\n' "$1" "$(field rss_before_mib <<<"$line")" \
      "$(field rss_after_mib <<<"$line")" "$(field kib_per_conn <<<"$line")"
  done
fi
stop_brokers
if [[ $PINNED == 1 ]]; then
  start_brokers taskset -c 0
  loadpin=(taskset -c "1-$((ncpu - 1))")
  measure pin
  echo
  table pin "with each broker on CPU 0 and the load generator on the others "
  stop_brokers
fi
echo
echo "CPU time stolen by the hypervisor during this run: $(steal_since "$mark")"
