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

# Bumped when the build flags change, so a cached binary built the old way is rebuilt.
RECIPE=2
stamp="$bin/helm.stamp"

installed_version() {
  [[ -x "$helm" ]] && "$helm" version --template '{{.Version}}' 2>/dev/null || true
}

if [[ "$(installed_version)" != "$HELM_VERSION" || "$(cat "$stamp" 2>/dev/null)" != "$HELM_VERSION recipe $RECIPE" ]]; then
  if ! command -v go >/dev/null 2>&1; then
    echo "helm/install: the Go toolchain is needed to build helm $HELM_VERSION (not on PATH)" >&2
    exit 1
  fi
  mkdir -p "$bin"
  export GOTOOLCHAIN=local  # never let go fetch another toolchain behind our back
  # helm's release Makefile stamps two things with ldflags, and so do we: the version (else
  # `helm version` reports a placeholder and the cache check above never matches) and the default
  # Kubernetes version of `helm template`/`lint` (else v1.20, which charts needing a newer
  # kubeVersion refuse). Like the Makefile, derive the latter from helm's k8s.io/client-go:
  # v0.X.Y is Kubernetes 1.X.
  gomod="$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  k8s_minor="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -n1)"
  if [[ -z "$k8s_minor" ]]; then
    echo "helm/install: cannot read k8s.io/client-go's version from $gomod" >&2
    exit 1
  fi
  echo "helm/install: building helm $HELM_VERSION (Kubernetes 1.$k8s_minor) with" \
    "$(go version | cut -d' ' -f3) into $bin" >&2
  ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
    ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
  done
  CGO_ENABLED=0 GOBIN="$bin" go install -trimpath -ldflags "$ldflags" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  got="$(installed_version)"
  if [[ "$got" != "$HELM_VERSION" ]]; then
    echo "helm/install: built helm reports '$got', expected $HELM_VERSION" >&2
    exit 1
  fi
  echo "$HELM_VERSION recipe $RECIPE" > "$stamp"
fi

if [[ "${1:-}" == "--path" ]]; then
  echo "$helm"
else
  echo "helm/install: $helm $HELM_VERSION" >&2
fi
