#!/usr/bin/env bash
# mqttd vs mosquitto, same machine, same run, same load generator
# (bench/mqttload, paho clients). Prints a markdown table with ratios.
#   BENCH_SECONDS  measured seconds per scenario and broker (default 4)
#   BENCH_ROUNDS   rounds; the best round per broker is kept (default 2)
#   BENCH_IDLE     idle connections for the memory figure (default 10000, 0 skips)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-2}
IDLE=${BENCH_IDLE:-10000}

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
load=$tmp/mqttload

wait_port() { # host port
  for _ in $(seq 100); do
    (echo >"/dev/tcp/$1/$2") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "bench-mqttd: nothing listens on $1:$2" >&2; return 1
}

mport=$($load port)
chmod 755 "$tmp"
cat >"$tmp/mosquitto.conf" <<EOF
listener $mport 127.0.0.1
allow_anonymous true
persistence false
log_dest none
max_connections -1
set_tcp_nodelay true
EOF
chmod 644 "$tmp/mosquitto.conf"
mosquitto -c "$tmp/mosquitto.conf" >"$tmp/mosquitto.log" 2>&1 &
mpid=$!; pids+=("$mpid")

qport=$($load port)
"$tmp/mqttd" --listen "127.0.0.1:$qport" --ws-listen "" --admin "" --allow-anonymous \
  --publish-rate 0 --max-clients $((IDLE + 1000)) --log-level warn >"$tmp/mqttd.log" 2>&1 &
qpid=$!; pids+=("$qpid")
wait_port 127.0.0.1 "$mport"
wait_port 127.0.0.1 "$qport"

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p"; }

# best (highest msgs/s) of ROUNDS for one scenario on one broker
best() { # port args...
  local port=$1; shift
  local best_line="" best_rate=0 line rate
  for _ in $(seq "$ROUNDS"); do
    line=$($load run -broker "tcp://127.0.0.1:$port" -seconds "$SECONDS_PER" "$@" | grep '^result')
    rate=$(field msgs_per_s <<<"$line")
    if (( rate > best_rate )); then best_rate=$rate; best_line=$line; fi
  done
  echo "$best_line"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "n/a"; else printf "%.2f", a / b }'; }

echo "## mqttd vs mosquitto $(mosquitto -h 2>/dev/null | head -1 | awk '{print $3}') (best of $ROUNDS x ${SECONDS_PER}s, loopback, $(nproc) cores)"
echo
echo "| scenario | mqttd msgs/s | mosquitto msgs/s | ratio | mqttd p50 / p99 ms | mosquitto p50 / p99 ms |"
echo "|---|---:|---:|---:|---:|---:|"
scenario() { # name args...
  local name=$1; shift
  local q m
  m=$(best "$mport" "$@")
  q=$(best "$qport" "$@")
  printf '| %s | %s | %s | %s | %s / %s | %s / %s |\n' "$name" \
    "$(field msgs_per_s <<<"$q")" "$(field msgs_per_s <<<"$m")" \
    "$(ratio "$(field msgs_per_s <<<"$q")" "$(field msgs_per_s <<<"$m")")" \
    "$(field p50_ms <<<"$q")" "$(field p99_ms <<<"$q")" "$(field p50_ms <<<"$m")" "$(field p99_ms <<<"$m")"
}
scenario "10 -> 10, QoS 0" -pubs 10 -subs 10 -qos 0
scenario "10 -> 10, QoS 1" -pubs 10 -subs 10 -qos 1
scenario "1 -> 100 fan-out, QoS 0" -pubs 1 -subs 100 -fanout -qos 0
scenario "1 -> 100 fan-out, QoS 1" -pubs 1 -subs 100 -fanout -qos 1

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
