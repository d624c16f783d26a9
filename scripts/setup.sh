#!/usr/bin/env bash
# Installs what chargenet needs on a fresh machine: uv, the Python workspace, the Node packages.
# Everything comes from the package registries and is cached, so a rerun takes seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! command -v uv >/dev/null 2>&1; then
    echo "setup: installing uv" >&2
    python3 -m pip install --quiet --disable-pip-version-check uv
fi
# --frozen: the lock file is the truth; a drifted lock fails here instead of resolving anew.
uv sync --frozen --quiet
if [ -f contracts/package-lock.json ] && [ ! -d contracts/node_modules ]; then
    echo "setup: installing the Solidity compiler (solc-js)" >&2
    (cd contracts && npm ci --silent --no-audit --no-fund --prefer-offline)
fi
