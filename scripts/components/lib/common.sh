# shellcheck shell=bash
# Shared helpers for components.sh: paths, logging, OS packages, detached processes, readiness waits.
# Sourced, never run. Every function that fails calls die() so `set -e` callers stop with a message.

COMPONENTS_DIR=${COMPONENTS_DIR:?components.sh sets COMPONENTS_DIR}
REPO_ROOT=$(cd "$COMPONENTS_DIR/../.." && pwd)
# shellcheck disable=SC2034  # used by the component modules sourced after this one
CACHE_DIR=${CHARGENET_CACHE:-$HOME/.cache/chargenet}
# shellcheck disable=SC2034
RUN_DIR=${CHARGENET_RUN_DIR:-$REPO_ROOT/.run}
# Kafka on two busy cores has been seen to need ~10-20 s; leave room for a loaded machine.
UP_TIMEOUT=${CHARGENET_UP_TIMEOUT:-120}
# Generous: the first Kafka stop on a machine also writes its class-data archive (~15 s on busy cores).
DOWN_TIMEOUT=${CHARGENET_DOWN_TIMEOUT:-60}

log() { printf '[components] %s\n' "$*" >&2; }
die() {
    printf '[components] ERROR: %s\n' "$*" >&2
    exit 1
}

now() { date +%s.%N; }
# Seconds since $1 (a now() value), one decimal.
elapsed() { awk -v s="$1" -v e="$(now)" 'BEGIN { printf "%.1f", e - s }'; }

# Hash of the files' contents only (not their paths), so every clone maps to the same cache entry.
sha12() { cat "$@" | sha256sum | cut -c1-12; }

# Removes cache entries in $1 other than $2 (superseded versions; node_modules is ~300 MB each),
# except one a running process still uses (e.g. a node started from another clone's lockfile).
prune_cache_siblings() {
    local parent=$1 keep=$2 entry
    for entry in "$parent"/*; do
        [[ -d $entry && $entry != "$keep" && $entry != "$keep".tmp.* ]] || continue
        if cat /proc/[0-9]*/cmdline 2>/dev/null | tr '\0' '\n' | grep -qF -- "$entry/"; then
            log "keeping superseded cache entry $entry: a running process uses it"
            continue
        fi
        log "removing superseded cache entry $entry"
        rm -rf "$entry"
    done
}

# Prints the last lines of a log so a failed start explains itself.
log_tail() {
    local file=$1 lines=${2:-40}
    if [[ -s $file ]]; then
        printf '[components] ---- last %s lines of %s ----\n' "$lines" "$file" >&2
        tail -n "$lines" "$file" >&2
        printf '[components] ---- end of %s ----\n' "$file" >&2
    else
        printf '[components] (log %s is empty or missing)\n' "$file" >&2
    fi
}

# Tails each of a ':'-separated list of logs.
log_tails() {
    local files f
    IFS=: read -ra files <<<"$1"
    for f in "${files[@]}"; do log_tail "$f"; done
}

# apt-get update runs at most once per invocation, and only when something must be installed.
_APT_UPDATED=0
apt_ensure() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    ((${#missing[@]} == 0)) && return 0
    [[ $(id -u) == 0 ]] || die "missing OS packages: ${missing[*]} (run as root, or install them: apt-get install ${missing[*]})"
    if ((_APT_UPDATED == 0)); then
        log "apt-get update (needed for: ${missing[*]})"
        DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null || die "apt-get update failed"
        _APT_UPDATED=1
    fi
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
}

# True when something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Prints the pid from $1 when that process is alive and its command line contains $2
# (guards against a recycled pid belonging to an unrelated process).
live_pid() {
    local pidfile=$1 marker=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    [[ -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$marker" || return 1
    printf '%s\n' "$pid"
}

# Starts "$@" in its own session (so its pid is also its process-group id), output appended to $2.
start_detached() {
    local pidfile=$1 logfile=$2
    shift 2
    # Without job control a background child is not a group leader, so setsid execs in place and
    # $! is the real process, not a short-lived fork.
    # fd 9 is components.sh's lock: a server inheriting it would hold the lock forever.
    setsid "$@" >>"$logfile" 2>&1 </dev/null 9>&- &
    printf '%s\n' "$!" >"$pidfile"
}

# Stops the process group started by start_detached: TERM, then KILL after DOWN_TIMEOUT.
# Returns 2 when it had to KILL (the process could not finish its shutdown work).
stop_pidfile() {
    local name=$1 pidfile=$2 marker=$3 pid deadline killed=0
    if ! pid=$(live_pid "$pidfile" "$marker"); then
        rm -f "$pidfile"
        log "$name: not running"
        return 0
    fi
    local start
    start=$(now)
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    deadline=$((SECONDS + DOWN_TIMEOUT))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "$name: still running after ${DOWN_TIMEOUT}s, sending KILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            killed=1
            break
        fi
        sleep 0.2
    done
    rm -f "$pidfile"
    log "$name: stopped (pid $pid) in $(elapsed "$start")s"
    ((killed == 0)) || return 2
}

# Polls "$check" (a command) until it succeeds, the process in $pidfile dies, or UP_TIMEOUT passes.
# On failure prints why plus the tails of the ':'-separated logs and returns 1.
wait_until_ready() {
    local name=$1 pidfile=$2 marker=$3 logfiles=$4
    shift 4
    local deadline=$((SECONDS + UP_TIMEOUT))
    while true; do
        if "$@" >/dev/null 2>&1; then
            return 0
        fi
        if ! live_pid "$pidfile" "$marker" >/dev/null; then
            log "$name: the process exited before it became ready"
            log_tails "$logfiles"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log "$name: not ready after ${UP_TIMEOUT}s (raise CHARGENET_UP_TIMEOUT if the machine is just slow)"
            log_tails "$logfiles"
            return 1
        fi
        sleep 0.3
    done
}

# Runs Python with the repo's dependencies (confluent-kafka) for readiness probes. The venv's own
# interpreter is used directly: `uv run` would add its start-up to every poll.
repo_python() {
    if [[ -n ${CHARGENET_PYTHON:-} ]]; then
        "$CHARGENET_PYTHON" "$@"
    elif [[ -x $REPO_ROOT/.venv/bin/python ]]; then
        "$REPO_ROOT/.venv/bin/python" "$@"
    elif command -v uv >/dev/null; then
        (cd "$REPO_ROOT" && uv run --frozen --quiet python "$@")
    else
        die "no Python environment: run 'make setup' (uv sync) first, or set CHARGENET_PYTHON"
    fi
}
