# shellcheck shell=bash
# Hardhat 2 JSON-RPC node (chain id 31337, automine) from the committed npm lockfile.

HARDHAT_SRC=$COMPONENTS_DIR/hardhat
HARDHAT_RUN=$RUN_DIR/hardhat
HARDHAT_PORT=${CHARGENET_HARDHAT_PORT:-8545}
HARDHAT_PIDFILE=$HARDHAT_RUN/hardhat.pid
HARDHAT_LOG=$HARDHAT_RUN/hardhat.log
HARDHAT_URL=http://127.0.0.1:$HARDHAT_PORT
HARDHAT_MIN_NODE=18
# Our node is the one whose command line ends like this (pid files can outlive their process).
HARDHAT_MARKER="bootstrap.js node --hostname 127.0.0.1 --port $HARDHAT_PORT"

# node_modules lives in the cache, keyed by the lockfile, so a fresh clone (CI) reuses it.
# Hardhat 2 insists on running from a project that has it installed locally (HH12), so the
# cache dir is that project: package files, config and node_modules side by side.
hardhat_project_dir() {
    printf '%s/hardhat/%s\n' "$CACHE_DIR" "$(sha12 "$HARDHAT_SRC/package.json" "$HARDHAT_SRC/package-lock.json")"
}

hardhat_version() {
    sed -n 's/.*"hardhat": "\(.*\)".*/\1/p' "$HARDHAT_SRC/package.json" | head -n 1
}

hardhat_node_ok() {
    command -v node >/dev/null && command -v npm >/dev/null &&
        (($(node -p 'process.versions.node.split(".")[0]') >= HARDHAT_MIN_NODE))
}

# The config is copied on every install/up (cheap) so editing it needs no reinstall.
hardhat_sync_config() {
    local proj=$1
    cmp -s "$HARDHAT_SRC/hardhat.config.js" "$proj/hardhat.config.js" ||
        cp "$HARDHAT_SRC/hardhat.config.js" "$proj/hardhat.config.js"
}

hardhat_install() {
    local proj stage
    proj=$(hardhat_project_dir)
    if [[ -f $proj/.complete ]]; then
        hardhat_sync_config "$proj"
        log "hardhat: $(hardhat_version) cached in $proj"
        return 0
    fi
    command -v curl >/dev/null || apt_ensure curl
    hardhat_node_ok || apt_ensure nodejs npm
    hardhat_node_ok || die "hardhat: needs Node >= $HARDHAT_MIN_NODE with npm (found: $(node --version 2>/dev/null || echo none))"
    log "hardhat: npm ci hardhat@$(hardhat_version) (Node $(node --version))"
    stage="$proj.tmp.$$"
    rm -rf "$stage"
    mkdir -p "$stage"
    cp "$HARDHAT_SRC/package.json" "$HARDHAT_SRC/package-lock.json" "$stage/"
    # --prefer-offline: take tarballs from npm's cache (~/.npm) without revalidating them.
    if ! (cd "$stage" && npm ci --no-audit --no-fund --prefer-offline --loglevel=error) >"$stage.npm.log" 2>&1; then
        log_tail "$stage.npm.log"
        rm -rf "$stage"
        die "hardhat: npm ci failed (see above)"
    fi
    rm -f "$stage.npm.log"
    [[ -f $stage/node_modules/hardhat/internal/cli/bootstrap.js ]] || die "hardhat: npm ci finished without hardhat's CLI"
    touch "$stage/.complete"
    rm -rf "$proj"
    mv "$stage" "$proj"
    prune_cache_siblings "$CACHE_DIR/hardhat" "$proj"
    hardhat_sync_config "$proj"
    log "hardhat: installed in $proj"
}

hardhat_ready() {
    curl -sf -m 2 -H 'content-type: application/json' \
        -d '{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}' "$HARDHAT_URL" |
        grep -q '"result":"0x7a69"'
}

hardhat_start() {
    local proj pid
    if pid=$(live_pid "$HARDHAT_PIDFILE" "$HARDHAT_MARKER"); then
        log "hardhat: already running (pid $pid)"
        return 0
    fi
    ! port_open "$HARDHAT_PORT" || die "hardhat: 127.0.0.1:$HARDHAT_PORT is taken by a process components.sh did not start"
    proj=$(hardhat_project_dir)
    [[ -f $proj/.complete ]] || hardhat_install
    hardhat_sync_config "$proj"
    command -v curl >/dev/null || apt_ensure curl
    mkdir -p "$HARDHAT_RUN"
    log "hardhat: starting hardhat@$(hardhat_version) node on $HARDHAT_URL"
    # Never prompt for telemetry consent: there is no terminal, and a prompt would hang the start.
    (cd "$proj" && export HARDHAT_DISABLE_TELEMETRY_PROMPT=true &&
        start_detached "$HARDHAT_PIDFILE" "$HARDHAT_LOG" \
        node "$proj/node_modules/hardhat/internal/cli/bootstrap.js" node \
        --hostname 127.0.0.1 --port "$HARDHAT_PORT")
}

hardhat_wait() {
    wait_until_ready hardhat "$HARDHAT_PIDFILE" "$HARDHAT_MARKER" "$HARDHAT_LOG" hardhat_ready
}

hardhat_down() {
    local clean=$1
    stop_pidfile hardhat "$HARDHAT_PIDFILE" "$HARDHAT_MARKER" || true
    if [[ $clean == 1 ]]; then
        rm -rf "$HARDHAT_RUN"
        log "hardhat: removed $HARDHAT_RUN"
    fi
}

hardhat_status() {
    local pid
    if ! pid=$(live_pid "$HARDHAT_PIDFILE" "$HARDHAT_MARKER"); then
        echo "hardhat: stopped"
        return 1
    fi
    if hardhat_ready; then
        echo "hardhat: running (pid $pid), ready at $HARDHAT_URL (chain id 31337), log $HARDHAT_LOG"
    else
        echo "hardhat: running (pid $pid) but not answering at $HARDHAT_URL, log $HARDHAT_LOG"
        return 1
    fi
}

hardhat_env() { echo "export CHARGENET_TEST_RPC_URL=$HARDHAT_URL"; }
