#!/usr/bin/env bash
# Installs, starts and stops the real components chargenet's distributed-mode tests need:
# Kafka (KRaft, 127.0.0.1:9092), PostgreSQL (127.0.0.1:55432) and a Hardhat node (127.0.0.1:8545).
# See docs/COMPONENTS.md for what it does, timings and pitfalls.
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/components/components.sh COMMAND [--clean] [COMPONENT...]

commands:
  install   fetch/install what the components need (cached; seconds when warm)
  up        start them on 127.0.0.1 and wait until each really answers (no-op if already up)
  down      stop what this script started; `down --clean` also deletes their data
  status    show what runs and whether it answers (exit 1 if any is not up and ready)
  env       print the `export CHARGENET_TEST_...` lines for the tests

components: kafka postgres hardhat (default: all)
environment: CHARGENET_CACHE (default ~/.cache/chargenet), CHARGENET_RUN_DIR (default <repo>/.run),
             CHARGENET_UP_TIMEOUT (s, default 120), CHARGENET_DOWN_TIMEOUT (s, default 60),
             CHARGENET_KAFKA_HEAP (default "-Xms256m -Xmx512m"), CHARGENET_PYTHON (probe interpreter),
             CHARGENET_KAFKA_CDS=0 (no class-data archive for the broker),
             ports only to sidestep a clash: CHARGENET_KAFKA_PORT (9092), CHARGENET_KAFKA_CONTROLLER_PORT
             (9093), CHARGENET_KAFKA_SASL_PORT (9094), CHARGENET_POSTGRES_PORT (55432),
             CHARGENET_HARDHAT_PORT (8545); `env` follows them
EOF
}

COMPONENTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib/common.sh
source "$COMPONENTS_DIR/lib/common.sh"
# shellcheck source=lib/kafka.sh
source "$COMPONENTS_DIR/lib/kafka.sh"
# shellcheck source=lib/postgres.sh
source "$COMPONENTS_DIR/lib/postgres.sh"
# shellcheck source=lib/hardhat.sh
source "$COMPONENTS_DIR/lib/hardhat.sh"

# Kafka starts first (its JVM is the slowest, so it gets the head start) but is waited for last,
# so each "ready" time printed is that component's own.
ALL=(kafka postgres hardhat)
WAIT_ORDER=(postgres hardhat kafka)

cmd_install() {
    local c start
    for c in "$@"; do
        start=$(now)
        "${c}_install"
        log "$c: install took $(elapsed "$start")s"
    done
}

# Starts every component first and only then waits, so the slow JVM start overlaps the others.
cmd_up() {
    local c start failed=()
    declare -A started
    for c in "$@"; do
        started[$c]=$(now)
        # A subshell, so one component's fatal error still lets the others be waited for.
        ("${c}_start") || failed+=("$c")
    done
    for c in "${WAIT_ORDER[@]}"; do
        [[ " $* " == *" $c "* && " ${failed[*]} " != *" $c "* ]] || continue
        if "${c}_wait"; then
            log "$c: ready ($(elapsed "${started[$c]}")s after start was requested)"
        else
            failed+=("$c")
        fi
    done
    if ((${#failed[@]})); then
        # A half-started component would make the next `up` a silent no-op; stop it.
        for c in "${failed[@]}"; do "${c}_down" 0 || true; done
        die "not ready: ${failed[*]} (details above)"
    fi
}

cmd_down() {
    local clean=$1 c i
    shift
    # Reverse order of `up`.
    for ((i = $#; i >= 1; i--)); do
        c=${!i}
        "${c}_down" "$clean"
    done
}

cmd_status() {
    local c rc=0
    for c in "$@"; do "${c}_status" || rc=1; done
    return "$rc"
}

cmd_env() {
    local c
    for c in "$@"; do "${c}_env"; done
}

main() {
    (($#)) || {
        usage >&2
        exit 2
    }
    local cmd=$1 clean=0 names=() arg
    shift
    case $cmd in
    -h | --help | help)
        usage
        return 0
        ;;
    install | up | down | status | env) ;;
    *)
        usage >&2
        die "unknown command '$cmd'"
        ;;
    esac
    for arg in "$@"; do
        case $arg in
        --clean) clean=1 ;;
        kafka | postgres | hardhat) names+=("$arg") ;;
        -h | --help)
            usage
            exit 0
            ;;
        *) die "unknown component or option '$arg' (components: ${ALL[*]})" ;;
        esac
    done
    ((${#names[@]})) || names=("${ALL[@]}")
    [[ $clean == 0 || $cmd == down ]] || die "--clean only applies to 'down'"

    if [[ $cmd == env ]]; then
        cmd_env "${names[@]}"
        return 0
    fi
    mkdir -p "$RUN_DIR" "$CACHE_DIR"
    # Two people (or CI steps) running up/down at once would race on pid files and storage format.
    exec 9>"$RUN_DIR/.components.lock"
    flock -w 300 9 || die "another components.sh has held $RUN_DIR/.components.lock for 5 minutes"

    case $cmd in
    install) cmd_install "${names[@]}" ;;
    up) cmd_up "${names[@]}" ;;
    down) cmd_down "$clean" "${names[@]}" ;;
    status) cmd_status "${names[@]}" ;;
    esac
}

main "$@"
