#!/usr/bin/env bash
# Install the real helm binary from its Go module (no Debian, PyPI or npm package has it).
#
#   scripts/helm/install.sh          build helm $HELM_VERSION into $CHARGENET_CACHE/bin (cached)
#   scripts/helm/install.sh --path   print the binary's path only (for `export HELM=...`)
#
# A rerun with the binary already at the wanted version returns in well under a second; a rebuild
# reuses Go's module and build caches (GOMODCACHE, GOCACHE), so only the first build is slow.
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v3.22.0}"
cache="${CHARGENET_CACHE:-$HOME/.cache/chargenet}"
bin="$cache/bin"
helm="$bin/helm"

installed_version() {
  [[ -x "$helm" ]] && "$helm" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ "$(installed_version)" != "$HELM_VERSION" ]]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "helm/install: the Go toolchain is needed to build helm $HELM_VERSION (not on PATH)" >&2
    exit 1
  fi
  mkdir -p "$bin"
  echo "helm/install: building helm $HELM_VERSION with $(go version | cut -d' ' -f3) into $bin" >&2
  # helm's own Makefile stamps the version with ldflags; without it `helm version` reports a
  # development placeholder and the cache check above could never match.
  # GOTOOLCHAIN=local: never let go fetch another toolchain behind our back.
  GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN="$bin" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  got="$(installed_version)"
  if [[ "$got" != "$HELM_VERSION" ]]; then
    echo "helm/install: built helm reports '$got', expected $HELM_VERSION" >&2
    exit 1
  fi
fi

if [[ "${1:-}" == "--path" ]]; then
  echo "$helm"
else
  echo "helm/install: $helm $HELM_VERSION" >&2
fi
