#!/usr/bin/env bash
# Builds the release into dist/ (git-ignored): static binaries (CGO_ENABLED=0)
# of the agent for every OS in AGENT_TARGETS and of the servers for Linux,
# each stamped with VERSION, plus SHA256SUMS. Names:
#   dist/agent-<version>-<os>-<arch>[.exe], dist/stund-<version>-linux-<arch>, ...
# Check a download with: sha256sum -c --ignore-missing SHA256SUMS
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/targets.sh
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
DIST=${DIST:-dist}
PKG=github.com/p2pd-go/p2pd/internal/version

rm -rf "$DIST"
mkdir -p "$DIST"
build() { # program os/arch
  local goos=${2%/*} goarch=${2#*/} ext=""
  [[ $goos == windows ]] && ext=.exe
  local out="$DIST/$1-$VERSION-$goos-$goarch$ext"
  echo "release: $out"
  CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch go build -trimpath \
    -ldflags "-s -w -X $PKG.Version=$VERSION" -o "$out" "./cmd/$1"
  # -trimpath keeps -ldflags out of the build info, so look for the string.
  if ! grep -qaF -- "$VERSION" "$out"; then
    echo "release: $out does not carry version $VERSION" >&2
    exit 1
  fi
}
for t in "${AGENT_TARGETS[@]}"; do build agent "$t"; done
for s in "${SERVERS[@]}"; do
  for t in "${SERVER_TARGETS[@]}"; do build "$s" "$t"; done
done
(cd "$DIST" && sha256sum -- * >SHA256SUMS)
echo "release: $(($(wc -l <"$DIST/SHA256SUMS"))) binaries and $DIST/SHA256SUMS for version $VERSION"
