#!/usr/bin/env bash
# turnd beside coturn in one run, on loopback. Prints a markdown table with
# medians over ROUNDS rounds and the turnd/coturn ratio.
#   - relayed packets/s, turnutils_uclient (channel mode, 100-byte messages):
#     from uclient's per-second counts, over the seconds traffic flowed
#   - relayed packets/s, bench/turnload relay mode (channels, a window of
#     packets in flight per client, each echo counts as two relayed packets)
#   - allocations/s, turnutils_uclient: allocations completed per second while
#     uclient sets up its sessions (uclient allocates one after another, so
#     this is mostly uclient's own speed)
#   - allocations/s, bench/turnload alloc mode (Allocate with its 401 round trip
#     plus release, from fresh 127.x.y.z addresses, several clients at once)
# Needs turnserver, turnutils_uclient and turnutils_peer (make deps).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
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

base=$((20000 + RANDOM % 8000))
CPORT=$base; TPORT=$((base + 1)); PEER=$((base + 2)); ADMIN=$((base + 3))
printf 'alice:alice-pw\n' >"$work/users"

# Same shape for both: loopback only, long-term credentials, realm "bench",
# loopback peers allowed, relay ports outside the ephemeral range.
turnserver -n --listening-ip 127.0.0.1 --listening-port "$CPORT" --relay-ip 127.0.0.1 \
  --min-port 10000 --max-port 20999 --lt-cred-mech --user alice:alice-pw --realm bench \
  --allow-loopback-peers --allowed-peer-ip=127.0.0.1 --no-tls --no-dtls --no-cli \
  --log-file "$work/coturn.log" --simple-log --pidfile "$work/coturn.pid" >"$work/coturn.out" 2>&1 &
pids+=($!)
"$work/turnd" --listen 127.0.0.1 --port "$TPORT" --relay-ip 127.0.0.1 --relay-bind 127.0.0.1 \
  --relay-min-port 21000 --relay-max-port 31999 --users-file "$work/users" --realm bench \
  --allow-peer 127.0.0.0/8 --max-allocations-per-user 0 --max-allocations 0 \
  --admin "127.0.0.1:$ADMIN" --log-level warn >"$work/turnd.out" 2>&1 &
pids+=($!)
turnutils_peer -L 127.0.0.1 -p "$PEER" >"$work/peer.out" 2>&1 &
pids+=($!)
sleep 2

subnet=10
next_subnet() { subnet=$((subnet + 1)); }

# uclient_pps PORT: relayed packets/s over the full seconds of a uclient run.
uclient_pps() {
  next_subnet
  turnutils_uclient -u alice -w alice-pw -e 127.0.0.1 -r "$PEER" -p "$1" -n 4000 -m 20 -c -z 0 -l 100 \
    -L "127.$subnet.0.1" 127.0.0.1 2>&1 | awk '
    /start_mclient: msz=/ {
      t = $1 + 0; s = $0; sub(/.*tot_send_msgs=/, "", s); sub(/,.*/, "", s)
      r = $0; sub(/.*tot_recv_msgs=/, "", r); sub(/,.*/, "", r)
      if (s + 0 > 0) { n++; ts[n] = t; c[n] = s + r }
    }
    END {
      # from the first second with traffic to the last second the count grew
      # (uclient then waits for lost packets, which would dilute the rate)
      k = n; while (k > 1 && c[k] == c[k-1]) k--
      if (k < 2 || ts[k] == ts[1]) { print 0; exit }
      printf "%.0f\n", (c[k] - c[1]) / (ts[k] - ts[1])
    }'
}

# uclient_allocs PORT: allocations per second while uclient sets up its
# sessions, timed by when its lines arrive (first "Connected from" to last
# "Received relay addr"; uclient's own timestamps are whole seconds).
uclient_allocs() {
  next_subnet
  local line first="" last="" n=0
  while IFS= read -r line; do
    case $line in
      *"Connected from"*) [[ -z $first ]] && first=$EPOCHREALTIME ;;
      *"Received relay addr"*) last=$EPOCHREALTIME; n=$((n + 1)) ;;
    esac
  done < <(turnutils_uclient -v -u alice -w alice-pw -e 127.0.0.1 -r "$PEER" -p "$1" -n 1 -m 100 -c \
    -L "127.$subnet.0.1" 127.0.0.1 2>&1)
  awk -v n="$n" -v a="${first:-0}" -v b="${last:-0}" 'BEGIN { printf "%.0f\n", (b > a ? n / (b - a) : 0) }'
}

turnload() {
  next_subnet
  # prints "<unit> N in Xs = R/s errors=E": field 6 is "R/s"
  "$work/turnload" -server "127.0.0.1:$1" -subnet "$subnet" -duration 5s "${@:2}" | awk '{sub("/s", "", $6); print $6}'
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
best() { sort -n | tail -1; }

declare -A res
for r in $(seq "$ROUNDS"); do
  for srv in coturn turnd; do
    port=$CPORT; [[ $srv == turnd ]] && port=$TPORT
    res[$srv,upps]+="$(uclient_pps "$port") "
    res[$srv,lpps]+="$(turnload "$port" -mode relay -workers 8 -window 16) "
    res[$srv,ualloc]+="$(uclient_allocs "$port") "
    res[$srv,lalloc]+="$(turnload "$port" -mode alloc -workers 4) "
  done
done

# row NAME KEY [AGG]: AGG is median (default) or best.
row() {
  local name=$1 key=$2 agg=${3:-median} c t
  c=$(tr ' ' '\n' <<<"${res[coturn,$key]}" | { grep . || echo 0; } | $agg)
  t=$(tr ' ' '\n' <<<"${res[turnd,$key]}" | { grep . || echo 0; } | $agg)
  awk -v n="$name" -v c="$c" -v t="$t" -v cr="${res[coturn,$key]}" -v tr="${res[turnd,$key]}" \
    'BEGIN { printf "| %s | %d | %d | %.2fx | %s / %s |\n", n, c, t, (c > 0 ? t / c : 0), cr, tr }'
}

echo "turnd vs coturn $(turnserver --version 2>/dev/null | head -1), loopback, $(nproc) CPUs, median of $ROUNDS rounds unless noted"
echo
echo "| measure | coturn | turnd | turnd/coturn | per round (coturn / turnd) |"
echo "|---|---|---|---|---|"
row "relayed packets/s (turnutils_uclient, 20 clients)" upps
row "relayed packets/s (turnload relay, 8 clients x 16 in flight)" lpps
# uclient sometimes binds a new session to the port of a live one (SO_REUSEADDR);
# the server must answer 437 and uclient pauses before retrying, so the best
# round is the one that measures the servers.
row "allocations/s (turnutils_uclient, 100 sessions, best round)" ualloc best
row "allocations/s (turnload alloc, 4 clients)" lalloc
