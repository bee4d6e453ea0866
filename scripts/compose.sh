#!/usr/bin/env bash
# Runs the private stack in Docker from deploy/docker-compose.yml.
#   scripts/compose.sh up       images, credentials, `docker compose up -d --wait`
#                               with the demo agents, a demo connect, then how to use it
#   scripts/compose.sh down     `docker compose down -v` (containers, networks, volumes)
#   scripts/compose.sh secrets  create missing credentials in $P2PD_SECRETS_DIR
# Environment: VERSION (image tag), DEMO=0 (no demo agents), and the
# P2PD_* variables deploy/docker-compose.yml reads.
set -euo pipefail
cd "$(dirname "$0")/.."
COMPOSE_FILE=deploy/docker-compose.yml
export P2PD_SECRETS_DIR=${P2PD_SECRETS_DIR:-$PWD/deploy/secrets}
export P2PD_TAG=${P2PD_TAG:-${VERSION:-latest}}
DEMO=${DEMO:-1}

dc() { docker compose -f "$COMPOSE_FILE" "$@"; }

need_docker() {
  command -v docker >/dev/null || { echo "compose: docker is not installed; 'make up-local' runs the stack as processes" >&2; exit 1; }
  docker info >/dev/null 2>&1 || { echo "compose: the Docker engine does not answer" >&2; exit 1; }
  docker compose version >/dev/null 2>&1 || { echo "compose: the docker compose v2 plugin is missing: run 'make deps'" >&2; exit 1; }
}

# secret NAME: a random value in $P2PD_SECRETS_DIR/NAME unless it exists.
random_secret() {
  local f=$P2PD_SECRETS_DIR/$1
  [[ -s $f ]] && return
  head -c 24 /dev/urandom | base64 | tr -d '/+=' >"$f"
  echo "compose: generated $f"
}

secrets() {
  mkdir -p "$P2PD_SECRETS_DIR"
  chmod 700 "$P2PD_SECRETS_DIR"
  # Files are bind-mounted into containers that run as UID 65532, so they
  # must be readable by it: 0644 files inside a 0700 directory, which keeps
  # them from other users on this host.
  (
    umask 022
    random_secret turn-secret
    random_secret mqtt-password
    random_secret grafana-admin-password
    random_secret turn-password
    if [[ ! -s $P2PD_SECRETS_DIR/turn-users ]]; then # the demo agents' static TURN user
      printf 'agent:%s\n' "$(cat "$P2PD_SECRETS_DIR/turn-password")" >"$P2PD_SECRETS_DIR/turn-users"
      echo "compose: generated $P2PD_SECRETS_DIR/turn-users (user agent)"
    fi
    if [[ ! -s $P2PD_SECRETS_DIR/mqtt-users ]]; then
      [[ -x bin/mqttd ]] || make -s build
      : >"$P2PD_SECRETS_DIR/mqtt-users"
      bin/mqttd passwd "$P2PD_SECRETS_DIR/mqtt-users" agent <"$P2PD_SECRETS_DIR/mqtt-password"
      chmod 644 "$P2PD_SECRETS_DIR/mqtt-users" # mqttd passwd writes 0600
      echo "compose: generated $P2PD_SECRETS_DIR/mqtt-users (user agent)"
    fi
  )
}

up() {
  need_docker
  LATEST=1 scripts/images.sh "$P2PD_TAG"
  secrets
  local services=(stund turnd mqttd) monitoring=0
  # Prometheus and Grafana come from a registry; without one (an offline
  # machine) the stack runs without them.
  if dc pull -q prometheus grafana; then
    services+=(prometheus grafana) monitoring=1
  else
    echo "compose: cannot pull the Prometheus/Grafana images; starting without monitoring" >&2
  fi
  if [[ $DEMO != 0 ]]; then services+=(agent1 agent2 agent3); fi
  dc up -d --wait "${services[@]}"
  dc ps
  local a=${P2PD_NET_A:-172.30.101}
  if [[ $DEMO != 0 ]]; then
    local addr peer
    for peer in agent1 agent3; do
      addr=$(dc exec -T "$peer" /agent addr | sed -n 's/.*"addr": *"\([^"]*\)".*/\1/p')
      echo
      if [[ $peer == agent1 ]]; then
        echo "compose: demo: agent2 connects to agent1 (same network: direct) and asks it to echo"
      else
        echo "compose: demo: agent2 connects to agent3 (isolated network: signalling over mqttd, relay through turnd)"
      fi
      dc exec -T agent2 /agent open "$peer" "$addr" | grep -E '^    "(error|strategy|msg)"'
      dc exec -T agent2 /agent send "$peer" "ECHO hello $peer from agent2" >/dev/null
      dc exec -T agent2 /agent recv "$peer" | grep -E '"data"'
    done
  fi
  local mqtt turn grafana_line="Grafana: not started (its image could not be pulled)"
  mqtt=$(dc port mqttd 1883) turn=$(dc port --protocol udp turnd 3478)
  if [[ $monitoring == 1 ]]; then
    grafana_line="Grafana: http://$(dc port grafana 3000)/  user admin, password in $P2PD_SECRETS_DIR/grafana-admin-password"
  fi
  cat <<MSG

compose: up (project $(dc config --format json | sed -n 's/^  "name": "\(.*\)",/\1/p' | head -1)).
  Point an agent on this host at it (Linux: the host reaches the stack network):
    bin/agent --stun $a.3:3478,$a.3:3479 --brokers tcp://$mqtt \\
      --broker-username agent --broker-password-file $P2PD_SECRETS_DIR/mqtt-password \\
      --turn turn:$turn --turn-username agent --turn-password-file $P2PD_SECRETS_DIR/turn-password
  Metrics: http://$(dc port stund 9101)/metrics (stund), http://$(dc port turnd 9102)/metrics (turnd), http://$(dc port mqttd 9103)/metrics (mqttd)
  $grafana_line
  Demo agents: docker compose -f $COMPOSE_FILE exec agent1 /agent help
  Stop and remove everything: make down
MSG
}

down() {
  need_docker
  dc --profile demo down -v --remove-orphans
}

case ${1:-} in
  up) up ;;
  down) down ;;
  secrets) secrets ;;
  *) echo "usage: scripts/compose.sh up|down|secrets" >&2; exit 2 ;;
esac
