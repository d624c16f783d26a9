# shellcheck shell=bash
# PostgreSQL from Debian's packages, as a private cluster (not the system's 5432 one).

PG_PORT=${CHARGENET_POSTGRES_PORT:-55432}
PG_USER=postgres
PG_URL="postgresql://postgres@127.0.0.1:$PG_PORT/postgres"

pg_bindir() {
    local dir
    dir=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dir && -x $dir/initdb ]] || return 1
    printf '%s\n' "$dir"
}

# The cluster lives in the run dir, but the server runs as the postgres user (initdb and the
# postmaster refuse root), which cannot enter a run dir below e.g. /root (mode 700). Then the
# data goes to a stable per-run-dir path under /tmp instead.
pg_home() {
    if [[ $(id -u) != 0 ]] || runuser -u "$PG_USER" -- test -x "$RUN_DIR" 2>/dev/null; then
        printf '%s/postgres\n' "$RUN_DIR"
    else
        printf '/tmp/chargenet-postgres-%s\n' "$(printf '%s' "$RUN_DIR" | sha256sum | cut -c1-12)"
    fi
}

# As root, run as the postgres user; as anyone else, run as that user (it owns what it creates).
# fd 9 (components.sh's lock) is closed so the postmaster that pg_ctl leaves behind never holds it.
as_pg() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u "$PG_USER" -- "$@" 9>&-
    else
        "$@" 9>&-
    fi
}

postgres_install() {
    if pg_bindir >/dev/null; then
        log "postgres: $("$(pg_bindir)/postgres" --version) installed"
        return 0
    fi
    apt_ensure postgresql
    pg_bindir >/dev/null || die "postgres: installed the postgresql package but found no /usr/lib/postgresql/*/bin/initdb"
    log "postgres: installed $("$(pg_bindir)/postgres" --version)"
}

postgres_ready() {
    local bin
    bin=$(pg_bindir) || return 1
    "$bin/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER" -d postgres &&
        [[ $("$bin/psql" -X -q -t -A -c 'select 1' "$PG_URL" 2>/dev/null) == 1 ]]
}

postgres_running() {
    local bin home
    bin=$(pg_bindir) || return 1
    home=$(pg_home)
    [[ -f $home/data/PG_VERSION ]] && as_pg "$bin/pg_ctl" status -D "$home/data" >/dev/null 2>&1
}

postgres_start() {
    local bin home
    pg_bindir >/dev/null || postgres_install
    bin=$(pg_bindir)
    home=$(pg_home)
    if postgres_running; then
        log "postgres: already running ($home/data)"
        return 0
    fi
    ! port_open "$PG_PORT" || die "postgres: 127.0.0.1:$PG_PORT is taken by a process components.sh did not start"
    mkdir -p "$home"
    [[ $(id -u) != 0 ]] || chown "$PG_USER:" "$home"
    if [[ ! -f $home/data/PG_VERSION ]]; then
        rm -rf "$home/data"
        log "postgres: initdb $home/data"
        # --no-sync: test data is disposable, and fsyncing the fresh cluster costs seconds.
        as_pg "$bin/initdb" -D "$home/data" -U "$PG_USER" -A trust -E UTF8 --locale=C.UTF-8 \
            --no-sync >"$home/initdb.log" 2>&1 || {
            log_tail "$home/initdb.log"
            die "postgres: initdb failed"
        }
    fi
    log "postgres: starting $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
    # TCP only (no Unix socket: a long run-dir path would overflow the 107-byte socket path limit).
    # Durability is off because every test database is disposable and fsync is the slow part.
    local opts="-c listen_addresses=127.0.0.1 -c port=$PG_PORT -c unix_socket_directories=''"
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    as_pg "$bin/pg_ctl" start -D "$home/data" -l "$home/postgres.log" -o "$opts" -W >/dev/null 2>&1 || {
        log_tail "$home/postgres.log"
        die "postgres: pg_ctl start failed"
    }
}

postgres_wait() {
    local home deadline
    home=$(pg_home)
    deadline=$((SECONDS + UP_TIMEOUT))
    until postgres_ready; do
        if ! postgres_running; then
            log "postgres: the server exited before it became ready"
            log_tail "$home/postgres.log"
            return 1
        fi
        if ((SECONDS >= deadline)); then
            log "postgres: not ready after ${UP_TIMEOUT}s"
            log_tail "$home/postgres.log"
            return 1
        fi
        sleep 0.2
    done
}

postgres_down() {
    local clean=$1 bin home start
    home=$(pg_home)
    if postgres_running; then
        bin=$(pg_bindir)
        start=$(now)
        # fast: roll back open sessions and stop now; tests never need a graceful drain.
        as_pg "$bin/pg_ctl" stop -D "$home/data" -m fast -w -t "$DOWN_TIMEOUT" >/dev/null ||
            die "postgres: pg_ctl stop failed (see $home/postgres.log)"
        log "postgres: stopped in $(elapsed "$start")s"
    else
        log "postgres: not running"
    fi
    if [[ $clean == 1 ]]; then
        rm -rf "$home"
        log "postgres: removed $home"
    fi
}

postgres_status() {
    if ! postgres_running; then
        echo "postgres: stopped"
        return 1
    fi
    if postgres_ready; then
        echo "postgres: running, ready at $PG_URL, data $(pg_home)/data"
    else
        echo "postgres: running but not answering at 127.0.0.1:$PG_PORT, log $(pg_home)/postgres.log"
        return 1
    fi
}

postgres_env() { echo "export CHARGENET_TEST_POSTGRES_URL=$PG_URL"; }
