# Shell helpers shared by the demo and the benchmarks: throwaway PostgreSQL clusters (owned by
# the postgres user: initdb refuses root) and Redis servers, on free loopback ports.

# free_port FROM: the first port from FROM on that nothing listens on.
free_port() {
    local p
    for p in $(seq "$1" $(($1 + 200))); do
        (echo >"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
    echo "no free port from $1" >&2
    return 1
}

# as_pg CMD...: runs CMD as the postgres user when we are root.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups "$@"
    else
        "$@"
    fi
}

# newest_pg_bin: the newest installed PostgreSQL's bin directory.
newest_pg_bin() { ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1; }

# pg_cluster BIN DIR PORT PASSWORD_FILE [CONF_LINES]: initdb into DIR/data (password auth over
# TCP, trust on DIR's socket), append CONF_LINES and start; log in DIR/log.
pg_cluster() {
    local bin="$1" dir="$2" port="$3" pwfile="$4" conf="${5:-}"
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir" "$pwfile"
    as_pg "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust \
        --auth-host=scram-sha-256 --pwfile="$pwfile" >/dev/null
    printf "port = %s\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '%s'\n%s\n" \
        "$port" "$dir" "$conf" >> "$dir/data/postgresql.conf"
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null
}

# pg_stop DATA_DIR...: stops the clusters that run there (fast), ignoring those that do not.
pg_stop() {
    local d
    for d in "$@"; do
        [ -f "$d/postmaster.pid" ] && as_pg "$(newest_pg_bin)/pg_ctl" -D "$d" -m fast stop >/dev/null 2>&1
    done
    return 0
}

# wait_archived BIN PORT PASSWORD: switches the WAL segment and waits until it is archived.
wait_archived() {
    local q="SELECT last_archived_wal >= pg_walfile_name(pg_current_wal_lsn() - 1) FROM pg_stat_archiver"
    PGPASSWORD="$3" "$1/psql" -X -q -h 127.0.0.1 -p "$2" -U postgres -d postgres -c "SELECT pg_switch_wal()" >/dev/null
    for _ in $(seq 1 300); do
        [ "$(PGPASSWORD="$3" "$1/psql" -X -A -t -h 127.0.0.1 -p "$2" -U postgres -d postgres -c "$q")" = t ] && return 0
        sleep 0.2
    done
    echo "WAL archiving stalled on port $2" >&2
    return 1
}

# redis_start DIR PORT [OPTION VALUE]...: a redis-server on DIR (no persistence unless the
# options say so), daemonized; returns once it answers.
redis_start() {
    local dir="$1" port="$2"; shift 2
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save "" --appendonly no \
        --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "$@"
    for _ in $(seq 1 100); do
        [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && return 0
        sleep 0.1
    done
    echo "redis-server on port $port did not start; see $dir/redis.log" >&2
    return 1
}

# redis_stop PORT...: stops the servers on these ports without saving, ignoring dead ones.
redis_stop() {
    local p
    for p in "$@"; do
        redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true
    done
}

# qdrant_bin: the qdrant binary to run ($QDRANT_BIN, else `qdrant` on PATH); fails quietly
# when there is none (no package registry ships Qdrant).
qdrant_bin() {
    if [ -n "${QDRANT_BIN:-}" ]; then echo "$QDRANT_BIN"; else command -v qdrant; fi
}

# qdrant_start DIR PORT: a qdrant server keeping its files in DIR, on PORT (HTTP) and a free
# gRPC port, loopback only, no telemetry; returns once it answers. Its pid goes to DIR/qdrant.pid.
qdrant_start() {
    local dir="$1" port="$2" bin
    bin=$(qdrant_bin) || { echo "no qdrant binary (set QDRANT_BIN or put qdrant on PATH)" >&2; return 1; }
    mkdir -p "$dir"
    (cd "$dir" && exec env QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT="$port" \
        QDRANT__SERVICE__GRPC_PORT="$(free_port $((port + 1000)))" \
        QDRANT__STORAGE__STORAGE_PATH="$dir/storage" QDRANT__STORAGE__SNAPSHOTS_PATH="$dir/snapshots" \
        QDRANT__TELEMETRY_DISABLED=true QDRANT__LOG_LEVEL=WARN \
        "$bin" > "$dir/qdrant.log" 2>&1 < /dev/null) &
    echo $! > "$dir/qdrant.pid"
    for _ in $(seq 1 300); do
        # Ours, not another server that already had the port.
        kill -0 "$(cat "$dir/qdrant.pid")" 2>/dev/null || break
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "qdrant on port $port did not start; see $dir/qdrant.log" >&2
    return 1
}

# qdrant_stop DIR...: stops the servers started with these directories.
qdrant_stop() {
    local d pid
    for d in "$@"; do
        [ -f "$d/qdrant.pid" ] || continue
        pid=$(cat "$d/qdrant.pid")
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        rm -f "$d/qdrant.pid"
    done
}
