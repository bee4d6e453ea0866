#!/usr/bin/env bash
# turnd beside coturn in one run, on loopback, ROUNDS interleaved rounds (the
# server that goes first alternates), medians and the turnd/coturn ratio.
#   - flood, 100 B and 1200 B: turnutils_uclient, UCLIENT_CLIENTS clients in
#     channel mode, each sending UCLIENT_MSGS (10000: floods of 5-10 s;
#     at 4000 a flood was mostly uclient's ramp and read half the steady
#     rate, with 3x spread between rounds) messages with no pause to a
#     turnutils_peer echo. Reported: packets/s echoed back to the clients
#     (over the seconds they flowed, from the arrival times of uclient's
#     once-a-second lines), the same in Mbit/s of payload, and loss
#     (1 - received/sent when the echoes stop arriving; uclient is then
#     stopped instead of waiting out its own 10 s tail). uclient sets the
#     pace and the rates move with the shared cores, so each flood also
#     reports the server's CPU time (utime + stime) per 1000 echoes.
#     The flood's rate is not the server's: each uclient client sends its
#     messages in about a second, starting at a random moment 1-6 s after
#     the run begins (uclient's start_mclient), so packets/s follows how
#     the starts fall; loss and the CPU per echo are the server's part.
#   - relay at saturation, 100 B and 1200 B: bench/turnload relay mode,
#     RELAY_WORKERS clients each keeping RELAY_WINDOW ChannelData packets in
#     flight to an echo peer of its own, for RELAY_SECONDS: the server sets
#     the pace. Reported: packets relayed per second (both directions) and
#     the server's CPU time per 1000 of them.
#   - allocations/s: bench/turnload alloc mode, ALLOC_WORKERS closed-loop
#     workers doing Allocate (with its 401 round trip) + release, each cycle
#     from a fresh 127.N.x.y source address (coturn holds a released address
#     for a few seconds), for ALLOC_SECONDS. Reported: allocations/s and
#     the server's CPU time per 1000 allocations (the workers wait on the
#     server's answers, so the rate also moves with the shared cores).
#   - then (PINNED=1, the default where taskset exists and there are 2+
#     CPUs) relay at saturation and allocations again, each server on CPU 0
#     (coturn with --relay-threads 1 to match) and turnload on the others,
#     as when clients run on other hosts: the load generator's CPU no longer
#     competes with the server's.
# Relay ports of both servers lie below the kernel's ephemeral range.
# Needs turnserver, turnutils_uclient and turnutils_peer (make deps).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
UCLIENT_CLIENTS=${UCLIENT_CLIENTS:-10}
UCLIENT_MSGS=${UCLIENT_MSGS:-10000}
ALLOC_WORKERS=${ALLOC_WORKERS:-8}
ALLOC_SECONDS=${ALLOC_SECONDS:-3}
RELAY_WORKERS=${RELAY_WORKERS:-10}
RELAY_WINDOW=${RELAY_WINDOW:-16}
RELAY_SECONDS=${RELAY_SECONDS:-3}
ncpu=$(nproc)
PINNED=${PINNED:-$(command -v taskset >/dev/null && ((ncpu >= 2)) && echo 1 || echo 0)}
for t in turnserver turnutils_uclient turnutils_peer; do
  command -v "$t" >/dev/null || { echo "bench-turnd: $t missing (make deps)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/turnd" ./cmd/turnd
go build -o "$work/turnload" ./bench/turnload
# shellcheck source=scripts/steal.sh
. scripts/steal.sh
mark=$(steal_mark)

# Listening ports lie between the relay ranges and the ephemeral range.
# uclient also binds a channel to the echo peer's port + 1, and turnd refuses
# its own service ports (TURN, admin) as peers, so PEER + 1 stays free.
base=$((32000 + RANDOM % 700))
CPORT=$base; TPORT=$((base + 1)); PEER=$((base + 2)); ADMIN=$((base + 5))
printf 'alice:alice-pw\n' >"$work/users"

# start_servers PREFIX...: both servers, under PREFIX (empty, or a taskset command); COTURN_ARGS adds to coturn's.
# Same shape for both: loopback only, long-term credentials, realm "bench",
# loopback peers allowed, relay ports outside the ephemeral range.
COTURN_ARGS=()
start_servers() {
  "$@" turnserver -n --listening-ip 127.0.0.1 --listening-port "$CPORT" --relay-ip 127.0.0.1 \
    --min-port 10000 --max-port 20999 --lt-cred-mech --user alice:alice-pw --realm bench \
    --allow-loopback-peers --allowed-peer-ip=127.0.0.1 --no-tls --no-dtls --no-cli "${COTURN_ARGS[@]}" \
    --log-file "$work/coturn.log" --simple-log --pidfile "$work/coturn.pid" >"$work/coturn.out" 2>&1 &
  pids+=($!)
  CPID=$!
  "$@" "$work/turnd" --listen 127.0.0.1 --port "$TPORT" --relay-ip 127.0.0.1 --relay-bind 127.0.0.1 \
    --relay-min-port 21000 --relay-max-port 31999 --users-file "$work/users" --realm bench \
    --allow-peer 127.0.0.0/8 --max-allocations-per-user 0 --max-allocations 0 \
    --admin "127.0.0.1:$ADMIN" --log-level warn >"$work/turnd.out" 2>&1 &
  pids+=($!)
  TPID=$!
  sleep 2
}
stop_servers() {
  kill "$CPID" "$TPID" 2>/dev/null || true
  wait "$CPID" "$TPID" 2>/dev/null || true
}
turnutils_peer -L 127.0.0.1 -p "$PEER" >"$work/peer.out" 2>&1 &
pids+=($!)
start_servers

# Every run takes the next 127.N.0.0/16 for its client addresses. The runs
# are read through process substitution (a subshell), so the parent calls
# next_subnet before each.
subnet=10
next_subnet() { subnet=$((subnet + 1)); }

# cputicks PID: user + system clock ticks the process has used.
cputicks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
HZ=$(getconf CLK_TCK)

# flood PORT SIZE PID: prints "packets/s Mbit/s loss% cpu-ms-per-1000-echoes"
# for one uclient run against the server PID.
flood() {
  local total=$((UCLIENT_CLIENTS * UCLIENT_MSGS)) line s r t t0="" r0=0 tl="" rl=0 still=0 sent=0 recv=0
  local fd ucpid c0 c1
  c0=$(cputicks "$3")
  exec {fd}< <(exec turnutils_uclient -u alice -w alice-pw -e 127.0.0.1 -r "$PEER" -p "$1" \
    -n "$UCLIENT_MSGS" -m "$UCLIENT_CLIENTS" -c -z 0 -l "$2" -L "127.$subnet.0.1" 127.0.0.1 2>&1)
  ucpid=$!
  : >"$work/uclient.out"
  while IFS= read -r line <&"$fd"; do
    echo "$line" >>"$work/uclient.out"
    [[ $line == *"start_mclient: msz="* ]] || continue
    t=$EPOCHREALTIME
    s=${line#*tot_send_msgs=}; s=${s%%,*}
    r=${line#*tot_recv_msgs=}; r=${r%%,*}
    if [[ -z $t0 ]]; then
      ((s > 0)) && { t0=$t; r0=$r; }
      continue
    fi
    if ((r > rl)); then tl=$t; rl=$r; still=0; else still=$((still + 1)); fi
    sent=$s; recv=$r
    # everything sent and nothing new for two seconds: the rest is lost
    if ((s >= total && still >= 2)); then break; fi
  done
  kill "$ucpid" 2>/dev/null || true
  exec {fd}<&-
  c1=$(cputicks "$3")
  if [[ -z $t0 ]]; then
    echo "bench-turnd: no traffic flowed through port $1 ($2 B); uclient said:" >&2
    grep -v '^[0-9]*: : *$' "$work/uclient.out" | tail -5 >&2
  fi
  awk -v t0="${t0:-0}" -v tl="${tl:-0}" -v r0="$r0" -v rl="$rl" -v s="$sent" -v r="$recv" -v size="$2" -v ticks=$((c1 - c0)) -v hz="$HZ" 'BEGIN {
    pps = (tl > t0) ? (rl - r0) / (tl - t0) : 0
    printf "%.0f %.1f %.1f %.1f\n", pps, pps * size * 8 / 1e6, (s > 0) ? 100 * (s - r) / s : 100, (r > 0) ? ticks * 1e6 / hz / r : 0
  }'
}

# run_turnload PORT PID SECONDS WHAT ARGS...: prints "rate cpu-ms-per-1000" for one
# bench/turnload run against the server PID (0 0 when it fails). turnload
# prints "<unit> N in Xs = R/s errors=E".
run_turnload() {
  local port=$1 pid=$2 secs=$3 what=$4 out c0 c1
  shift 4
  c0=$(cputicks "$pid")
  if ! out=$("${loadpin[@]}" "$work/turnload" -server "127.0.0.1:$port" -subnet "$subnet" -duration "${secs}s" "$@"); then
    echo "bench-turnd: turnload $what against port $port failed; counted as 0" >&2
    echo "0 0"
    return
  fi
  c1=$(cputicks "$pid")
  awk -v ticks=$((c1 - c0)) -v hz="$HZ" '{ r = $6; sub("/s", "", r); printf "%s %.1f\n", r, ($2 > 0) ? ticks * 1e6 / hz / $2 : 0 }' <<<"$out"
}

loadpin=()
declare -A res
for r in $(seq "$ROUNDS"); do
  order="coturn turnd"; ((r % 2 == 0)) && order="turnd coturn"
  for srv in $order; do
    port=$CPORT pid=$CPID; [[ $srv == turnd ]] && port=$TPORT pid=$TPID
    next_subnet
    read -r pps mbit loss cpu < <(flood "$port" 100 "$pid")
    res[$srv,pps100]+="$pps "; res[$srv,loss100]+="$loss "; res[$srv,cpu100]+="$cpu "
    next_subnet
    read -r pps mbit loss cpu < <(flood "$port" 1200 "$pid")
    res[$srv,pps1200]+="$pps "; res[$srv,mbit1200]+="$mbit "; res[$srv,loss1200]+="$loss "; res[$srv,cpu1200]+="$cpu "
  done
done

# saturation KEYPREFIX: one turnload relay run per size and one alloc run per
# server, ROUNDS interleaved rounds.
saturation() {
  local r srv order port pid size rate cpu
  for r in $(seq "$ROUNDS"); do
    order="coturn turnd"; ((r % 2 == 0)) && order="turnd coturn"
    for srv in $order; do
      port=$CPORT pid=$CPID; [[ $srv == turnd ]] && port=$TPORT pid=$TPID
      for size in 100 1200; do
        next_subnet
        read -r rate cpu < <(run_turnload "$port" "$pid" "$RELAY_SECONDS" "relay ($size B)" \
          -mode relay -workers "$RELAY_WORKERS" -window "$RELAY_WINDOW" -size "$size")
        res[$srv,$1relay$size]+="$rate "; res[$srv,$1rcpu$size]+="$cpu "
      done
      next_subnet
      read -r rate cpu < <(run_turnload "$port" "$pid" "$ALLOC_SECONDS" alloc -mode alloc -workers "$ALLOC_WORKERS")
      res[$srv,$1alloc]+="$rate "; res[$srv,$1acpu]+="$cpu "
    done
  done
}
saturation ""
if [[ $PINNED == 1 ]]; then
  stop_servers
  COTURN_ARGS=(--relay-threads 1)
  start_servers taskset -c 0
  loadpin=(taskset -c "1-$((ncpu - 1))")
  saturation pin
  stop_servers
fi

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# row NAME KEY: medians, ratio turnd/coturn, and every round.
row() {
  local c t
  c=$(tr ' ' '\n' <<<"${res[coturn,$2]}" | { grep . || echo 0; } | median)
  t=$(tr ' ' '\n' <<<"${res[turnd,$2]}" | { grep . || echo 0; } | median)
  awk -v n="$1" -v c="$c" -v t="$t" -v cr="${res[coturn,$2]}" -v tr="${res[turnd,$2]}" \
    'BEGIN { printf "| %s | %g | %g | %s | %s/ %s|\n", n, c, t, (c > 0 ? sprintf("%.2fx", t / c) : "n/a"), cr, tr }'
}

echo "turnd vs coturn $(turnserver --version 2>/dev/null | head -1), loopback, $(nproc) CPUs, median of $ROUNDS interleaved rounds"
echo
echo "| measure | coturn | turnd | turnd/coturn | per round (coturn / turnd) |"
echo "|---|---:|---:|---:|---|"
row "flood 100 B: echoed packets/s (uclient, $UCLIENT_CLIENTS clients x $UCLIENT_MSGS)" pps100
row "flood 100 B: loss %" loss100
row "flood 100 B: server CPU ms per 1000 echoes" cpu100
row "flood 1200 B: echoed packets/s" pps1200
row "flood 1200 B: echoed Mbit/s" mbit1200
row "flood 1200 B: loss %" loss1200
row "flood 1200 B: server CPU ms per 1000 echoes" cpu1200
row "relay at saturation 100 B: packets/s (turnload, $RELAY_WORKERS clients x $RELAY_WINDOW in flight)" relay100
row "relay at saturation 100 B: server CPU ms per 1000 packets" rcpu100
row "relay at saturation 1200 B: packets/s" relay1200
row "relay at saturation 1200 B: server CPU ms per 1000 packets" rcpu1200
row "allocations/s (turnload, $ALLOC_WORKERS closed-loop workers, fresh addresses)" alloc
row "allocations: server CPU ms per 1000 allocations" acpu
if [[ $PINNED == 1 ]]; then
  p="server on CPU 0, turnload on the others"
  row "relay at saturation 100 B, $p: packets/s" pinrelay100
  row "relay at saturation 100 B, $p: server CPU ms per 1000 packets" pinrcpu100
  row "relay at saturation 1200 B, $p: packets/s" pinrelay1200
  row "relay at saturation 1200 B, $p: server CPU ms per 1000 packets" pinrcpu1200
  row "allocations/s, $p" pinalloc
  row "allocations, $p: server CPU ms per 1000 allocations" pinacpu
fi
echo
echo "CPU time stolen by the hypervisor during this run: $(steal_since "$mark")"
