#!/usr/bin/env bash
# Debian's Chromium for the browser tests (Playwright drives it by path; it never downloads one).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    exit 0
fi
echo "install-browser: installing Debian's chromium" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
