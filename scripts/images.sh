#!/usr/bin/env bash
# Builds the FROM-scratch images p2pd/{stund,turnd,mqttd,agent}:VERSION from
# deploy/Dockerfile (with LATEST=1 also :latest, what docker-compose.yml runs
# by default). Needs only a Docker engine: nothing is pulled.
# Usage: [LATEST=1] scripts/images.sh VERSION
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${1:?usage: scripts/images.sh VERSION}
PROGRAMS=(stund turnd mqttd agent)
command -v docker >/dev/null || { echo "images: docker is not installed" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "images: the Docker engine does not answer (is it running, may you use it?)" >&2; exit 1; }

# The build context: `make build`'s static binaries (built into the context,
# so bin/ keeps whatever version it had), /healthcheck, an empty state dir.
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/bin" "$ctx/state"
make -s build VERSION="$VERSION" BINDIR="$ctx/bin" >/dev/null
CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$ctx/bin/healthcheck" ./deploy/healthcheck
cp deploy/Dockerfile "$ctx/Dockerfile"
for p in "${PROGRAMS[@]}"; do
  echo "images: p2pd/$p:$VERSION"
  tags=(-t "p2pd/$p:$VERSION")
  if [[ ${LATEST:-0} == 1 ]]; then tags+=(-t "p2pd/$p:latest"); fi
  docker build -q --target "$p" --build-arg VERSION="$VERSION" "${tags[@]}" "$ctx" >/dev/null
done
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^p2pd/($(IFS='|'; echo "${PROGRAMS[*]}")):$VERSION " || true
