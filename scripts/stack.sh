#!/usr/bin/env bash
# Runs the private stack (stund, turnd, mqttd) plus one agent as local
# processes on loopback, for trying p2pd on one machine without Docker.
#   scripts/stack.sh up      build, start everything, wait until healthy (make up-local)
#   scripts/stack.sh down    stop what `up` started, by the pids it recorded (make down-local)
#   scripts/stack.sh status  show what is running
# State, logs and generated credentials live in ./run (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${P2PD_RUN_DIR:-run}
BIN=bin
NAMES=(stund turnd mqttd agent)

pidfile() { echo "$RUN/$1.pid"; }
alive() { [[ -f $(pidfile "$1") ]] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }

port_free() {
  local proto=$1 port=$2
  if command -v ss >/dev/null; then
    ! ss -Hln"${proto:0:1}" "sport = :$port" | grep -q .
  else
    return 0
  fi
}

wait_http() { # url name
  for _ in $(seq 100); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    alive "$2" || { echo "stack: $2 exited; last log lines:" >&2; tail -20 "$RUN/$2.log" >&2; return 1; }
    sleep 0.1
  done
  echo "stack: $2 did not become healthy at $1; see $RUN/$2.log" >&2
  return 1
}

start() { # name args...
  local name=$1; shift
  if alive "$name"; then echo "stack: $name already running (pid $(cat "$(pidfile "$name")"))"; return; fi
  "$BIN/$name" "$@" >"$RUN/$name.log" 2>&1 &
  echo $! >"$(pidfile "$name")"
  echo "stack: started $name (pid $!), log $RUN/$name.log"
}

up() {
  command -v curl >/dev/null || { echo "stack: curl is needed (apt-get install curl)" >&2; exit 1; }
  make -s build
  mkdir -p "$RUN" && chmod 700 "$RUN"
  for p in udp:3478 udp:3479 tcp:1883 tcp:12333 tcp:10001 udp:3480 tcp:9101 tcp:9102 tcp:9103 tcp:9104; do
    if ! alive stund && ! port_free "${p%%:*}" "${p##*:}"; then
      echo "stack: port ${p##*:}/${p%%:*} is in use; stop what holds it or run 'make down-local'" >&2; exit 1
    fi
  done
  # Credentials: generated once, kept in $RUN (0600), never printed.
  if [[ ! -s $RUN/mqtt-password ]]; then
    (umask 077; head -c 18 /dev/urandom | base64 >"$RUN/mqtt-password")
    (umask 077; : >"$RUN/mqtt-users")
    "$BIN/mqttd" passwd "$RUN/mqtt-users" agent <"$RUN/mqtt-password"
  fi
  [[ -s $RUN/turn-secret ]] || (umask 077; head -c 32 /dev/urandom | base64 >"$RUN/turn-secret")
  if [[ ! -s $RUN/turn-password ]]; then # the agent's static TURN user
    (umask 077; head -c 18 /dev/urandom | base64 >"$RUN/turn-password")
    (umask 077; printf 'agent:%s\n' "$(cat "$RUN/turn-password")" >"$RUN/turn-users")
  fi

  start stund --primary-ip4 127.0.0.1 --alternate-ip4 127.0.0.2 --ntp --ntp-port 1123 --admin 127.0.0.1:9101
  start turnd --listen 127.0.0.1 --port 3480 --auth-secret-file "$RUN/turn-secret" --users-file "$RUN/turn-users" \
    --relay-bind 127.0.0.1 --relay-ip 127.0.0.1 \
    --allow-peer 127.0.0.0/8 --relay-min-port 20000 --relay-max-port 20999 --admin 127.0.0.1:9102
  start mqttd --listen 127.0.0.1:1883 --ws-listen 127.0.0.1:8083 --users "$RUN/mqtt-users" --admin 127.0.0.1:9103
  wait_http http://127.0.0.1:9101/healthz stund
  wait_http http://127.0.0.1:9102/healthz turnd
  wait_http http://127.0.0.1:9103/healthz mqttd
  start agent --state-dir "$RUN/agent" --stun 127.0.0.1:3478,127.0.0.2:3478 --brokers tcp://127.0.0.1:1883 \
    --broker-username agent --broker-password-file "$RUN/mqtt-password" --api 127.0.0.1:12333 --admin 127.0.0.1:9104 \
    --ntp 127.0.0.1:1123 --turn turn:127.0.0.1:3480 --turn-username agent --turn-password-file "$RUN/turn-password" \
    --no-portmap  # stay on this machine: do not ask the home router to forward the node port
  wait_http http://127.0.0.1:9104/healthz agent
  echo
  echo "stack: up. Agent API http://127.0.0.1:12333/ (status page), metrics on :9101-9104"
  echo "stack: peer address: $("$BIN/agent" addr | sed -n 's/.*"addr": "\(.*\)".*/\1/p')"
  echo "stack: try  bin/agent open me self && bin/agent send me 'ECHO hello' && bin/agent recv me"
}

down() {
  local stopped=0
  for ((i=${#NAMES[@]}-1; i>=0; i--)); do
    local name=${NAMES[$i]} f
    f=$(pidfile "$name")
    [[ -f $f ]] || continue
    local pid; pid=$(cat "$f")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
      echo "stack: stopped $name (pid $pid)"; stopped=1
    fi
    rm -f "$f"
  done
  ((stopped)) || echo "stack: nothing was running"
}

status() {
  for name in "${NAMES[@]}"; do
    if alive "$name"; then echo "$name: running (pid $(cat "$(pidfile "$name")"))"; else echo "$name: stopped"; fi
  done
}

case ${1:-} in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: scripts/stack.sh up|down|status" >&2; exit 2 ;;
esac
