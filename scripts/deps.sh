#!/usr/bin/env bash
# Installs what the test suite needs: Debian packages (network lab tools and
# the third-party peers the servers are tested against) and Go tools.
# Idempotent: packages already present are not reinstalled, and services the
# packages would start are kept from starting (the tests start their own).
set -euo pipefail

APT_PACKAGES=(
  iproute2 nftables procps     # NAT lab (ip, tc, nft, sysctl)
  coturn                       # turnserver / turnutils_uclient (turnd + stund interop, benchmarks)
  mosquitto mosquitto-clients  # foreign broker and clients (mqttd interop, benchmarks)
  miniupnpd-nftables           # a real NAT-PMP/PCP/UPnP gateway in the lab (port mapping)
  chrony                       # an NTP server in the lab (pkg/clock)
  prometheus                   # promtool: checks deploy/prometheus.yml and every /metrics page
  chromium                     # headless browser for the API status-page and origin tests (chromedp)
  ca-certificates
)
# Wine runs the Windows agent in tests (internal/winetest); Debian's wine64
# exists for amd64 only. MinGW binutils link the bcryptprimitives.dll shim
# Wine 8 needs for Go programs.
if [[ $(dpkg --print-architecture) == amd64 ]]; then
  APT_PACKAGES+=(wine wine64 binutils-mingw-w64-x86-64)
fi
GO_TOOLS=(
  honnef.co/go/tools/cmd/staticcheck@latest
  github.com/pion/stun/v3/cmd/stun-nat-behaviour@v3.1.7
  helm.sh/helm/v3/cmd/helm@v3.22.0                # chart lint/template tests (first build takes minutes)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  # Keep package maintainer scripts from starting daemons (coturn, mosquitto):
  # tests start their own instances on their own ports.
  policy=/usr/sbin/policy-rc.d
  restore=""
  if [[ -e $policy ]]; then restore=$(mktemp); cp -p "$policy" "$restore"; fi
  printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"
  trap 'if [[ -n "$restore" ]]; then mv "$restore" "$policy"; else rm -f "$policy"; fi' EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Stop daemons a package may have started anyway (only ones the package owns).
for svc in coturn mosquitto miniupnpd chrony prometheus; do
  if command -v service >/dev/null 2>&1; then service "$svc" stop >/dev/null 2>&1 || true; fi
done

gobin=$(go env GOPATH)/bin
for tool in "${GO_TOOLS[@]}"; do
  name=${tool%@*}; name=${name##*/}
  if [[ ! -x $gobin/$name ]]; then
    echo "deps: go install $tool"
    go install "$tool"
  fi
done
# The docker compose v2 plugin (Debian's docker-compose is the old v1), for
# `make up` and the compose test; only where a Docker CLI is installed.
if command -v docker >/dev/null && ! docker compose version >/dev/null 2>&1; then
  echo "deps: go install docker compose v2.29.7 (CLI plugin)"
  tmp=$(mktemp -d)
  GOBIN=$tmp go install github.com/docker/compose/v2/cmd@v2.29.7
  mkdir -p "$HOME/.docker/cli-plugins"
  install -m 0755 "$tmp/cmd" "$HOME/.docker/cli-plugins/docker-compose"
  rm -rf "$tmp"
fi
echo "deps: ok"
