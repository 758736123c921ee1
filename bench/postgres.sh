#!/usr/bin/env bash
# PostgreSQL benchmark: Bulwark against bare `pg_dump -Fc` and pgBackRest (Debian package), on
# one pgbench database, in one run. Needs root (the cluster runs as the postgres user).
#
#   bench/postgres.sh [--scale N] [--work DIR] [--segments N]
#
# Phases: logical backup (vs pg_dump -Fc to a file), a second logical backup after 1% of the
# account rows change (clustered: one contiguous range; random: spread over the table),
# physical base backup (vs pgbackrest full backup), point-in-time recovery to the newest WAL
# until the server accepts writes (vs pgbackrest restore + start), and archiving throughput
# (wal-push vs pgbackrest archive-push, one call per segment as PostgreSQL's archiver makes).
# Writes WORK/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=50 WORK=/tmp/bulwark-pgbench SEGMENTS=64
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) SCALE="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        --segments) SEGMENTS="$2"; shift 2 ;;
        *) echo "usage: bench/postgres.sh [--scale N] [--work DIR] [--segments N]" >&2; exit 2 ;;
    esac
done
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/servers.sh
source bench/lib.sh
bench_build pgbackrest
PGBIN=$(newest_pg_bin)

for d in "$WORK"/pg/data "$WORK"/restore-*; do pg_stop "$d"; done
rm -rf "$WORK"
mkdir -p "$WORK"
PW=bench-secret
echo "$PW" > "$WORK/pg-password"
echo "bench" > "$WORK/password"
PORT=$(free_port 56432)
RESTORE_PORT=$(free_port $((PORT + 1)))
RESULTS="$WORK/results.tsv"
: > "$RESULTS"

cat > "$WORK/bulwark.toml" <<TOML
[repositories.main]
url = "$WORK/repo-bulwark"
password_file = "$WORK/password"

[sources.logical]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/postgres"
password_file = "$WORK/pg-password"
databases = ["bench"]
modes = ["logical"]

[sources.logical-noverify]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/postgres"
password_file = "$WORK/pg-password"
databases = ["bench"]
modes = ["logical"]
verify = "none"

[sources.pg]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/postgres"
password_file = "$WORK/pg-password"
modes = ["physical"]
wal_spool_dir = "$WORK/wal-spool"

# Only for the archiving-throughput phase: a second archive fed with copies of segments.
[sources.walbench]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/postgres"
password_file = "$WORK/pg-password"
modes = ["physical"]
wal_spool_dir = "$WORK/wal-spool-bench"
TOML
# pgBackRest with its defaults (gzip level 6, one process), encrypted like Bulwark's repository.
cat > "$WORK/pgbackrest.conf" <<CONF
[global]
repo1-path=$WORK/repo-pgbackrest
repo1-cipher-type=aes-256-cbc
repo1-cipher-pass=bench
repo1-retention-full=9
start-fast=y
log-level-console=warn
log-path=$WORK/pgbackrest-log
lock-path=$WORK/pgbackrest-lock
spool-path=$WORK/pgbackrest-spool

[bench]
pg1-path=$WORK/pg/data
pg1-port=$PORT
pg1-socket-path=$WORK/pg
CONF
"$B" --config "$WORK/bulwark.toml" -q init > /dev/null
mkdir -p "$WORK/pgbackrest-log" "$WORK/pgbackrest-lock" "$WORK/pgbackrest-spool"
PGBR=(pgbackrest --config "$WORK/pgbackrest.conf" --stanza=bench)
ARCHIVE="$B --config $WORK/bulwark.toml wal-push --source pg %p && ${PGBR[*]} archive-push %p"
chown -R postgres "$WORK"
pg_cluster "$PGBIN" "$WORK/pg" "$PORT" "$WORK/pg-password" \
    "wal_level = replica
archive_mode = on
archive_command = '$ARCHIVE'
max_wal_size = 4GB
shared_buffers = 1GB"
trap 'pg_stop "$WORK/pg/data" "$WORK"/restore-*' EXIT
as_pg "${PGBR[@]}" stanza-create >/dev/null

sql() { PGPASSWORD=$PW "$PGBIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "${2:-$PORT}" -U postgres -d bench -c "$1"; }
PGPASSWORD=$PW "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres bench
echo "== pgbench -i -s $SCALE"
PGPASSWORD=$PW "$PGBIN/pgbench" -q -i -s "$SCALE" -h 127.0.0.1 -p "$PORT" -U postgres bench 2>&1 | tail -1
DB_BYTES=$(sql "SELECT pg_database_size('bench')")
echo "database: $((DB_BYTES / 1048576)) MiB"

export -f as_pg pg_stop newest_pg_bin

echo "== logical"
sync
measure "pg_dump -Fc" logical env PGPASSWORD=$PW "$PGBIN/pg_dump" -Fc -h 127.0.0.1 -p "$PORT" -U postgres -d bench -f "$WORK/bench.dump"
stored "$(size "$WORK/bench.dump")"
for s in logical logical-noverify; do
    measure "bulwark ($s)" logical "$B" --config "$WORK/bulwark.toml" -q backup "$s"
    stored "$(bulwark_added "$WORK/bulwark.toml" "$s")"
done
ROWS=$((SCALE * 100000))
echo "== second logical backup after 1% of pgbench_accounts changes"
sql "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid <= $((ROWS / 100))"
measure "bulwark" "logical, 1% clustered" "$B" --config "$WORK/bulwark.toml" -q backup logical
stored "$(bulwark_added "$WORK/bulwark.toml" logical)"
sql "UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 100 = 42"
measure "bulwark" "logical, 1% random" "$B" --config "$WORK/bulwark.toml" -q backup logical
stored "$(bulwark_added "$WORK/bulwark.toml" logical)"

echo "== physical base backup"
sync
measure "bulwark" "base backup" "$B" --config "$WORK/bulwark.toml" -q backup pg
stored "$(bulwark_added "$WORK/bulwark.toml" pg)"
BEFORE=$(size "$WORK/repo-pgbackrest")
measure "pgbackrest" "base backup" as_pg "${PGBR[@]}" --type=full backup
stored $(($(size "$WORK/repo-pgbackrest") - BEFORE))
PGPASSWORD=$PW "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -t 20000 -c 2 bench > /dev/null
wait_archived "$PGBIN" "$PORT" "$PW"
measure "bulwark" "second base backup" "$B" --config "$WORK/bulwark.toml" -q backup pg
stored "$(bulwark_added "$WORK/bulwark.toml" pg)"
BEFORE=$(size "$WORK/repo-pgbackrest")
measure "pgbackrest (incr)" "second base backup" as_pg "${PGBR[@]}" --type=incr backup
stored $(($(size "$WORK/repo-pgbackrest") - BEFORE))
PGPASSWORD=$PW "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres -t 20000 -c 2 bench > /dev/null
EXPECT=$(sql "SELECT sum(abalance) FROM pgbench_accounts")
wait_archived "$PGBIN" "$PORT" "$PW"

echo "== point-in-time recovery to the newest WAL, until the server accepts writes"
measure "bulwark" "PITR restore" "$B" --config "$WORK/bulwark.toml" -q restore --pitr --source pg \
    --target "$WORK/restore-bulwark" --start --port "$RESTORE_PORT" --no-archive
stored ""
GOT=$(sql "SELECT sum(abalance) FROM pgbench_accounts" "$RESTORE_PORT")
[ "$GOT" = "$EXPECT" ] || { echo "bulwark recovered sum $GOT, expected $EXPECT" >&2; exit 1; }
pg_stop "$WORK/restore-bulwark"
mkdir -p "$WORK/restore-pgbackrest" && chown postgres "$WORK/restore-pgbackrest" && chmod 700 "$WORK/restore-pgbackrest"
pgbackrest_recover() {
    # shellcheck disable=SC2086
    as_pg $PGBR_ARGS --pg1-path="$WORK/restore-pgbackrest" --archive-mode=off \
        --recovery-option="port=$RESTORE_PORT" restore &&
    as_pg "$PGBIN/pg_ctl" -D "$WORK/restore-pgbackrest" -l "$WORK/restore-pgbackrest.log" -w -t 3600 start &&
    until [ "$(PGPASSWORD=$PW "$PGBIN/psql" -X -A -t -h 127.0.0.1 -p "$RESTORE_PORT" -U postgres -d postgres -c 'SELECT pg_is_in_recovery()')" = f ]; do sleep 0.2; done
}
export -f pgbackrest_recover
export PGBR_ARGS="${PGBR[*]}" PGBIN WORK RESTORE_PORT PW
measure "pgbackrest" "PITR restore" pgbackrest_recover
stored ""
GOT=$(sql "SELECT sum(abalance) FROM pgbench_accounts" "$RESTORE_PORT")
[ "$GOT" = "$EXPECT" ] || { echo "pgbackrest recovered sum $GOT, expected $EXPECT" >&2; exit 1; }
pg_stop "$WORK/restore-pgbackrest"

echo "== archiving throughput: $SEGMENTS segments written while archiving is paused"
sql "ALTER SYSTEM SET archive_command = 'false'" && sql "SELECT pg_reload_conf()" >/dev/null
sql "CREATE TABLE filler AS SELECT * FROM pgbench_accounts LIMIT 0"
while [ "$(ls "$WORK/pg/data/pg_wal/archive_status/" | grep -c '\.ready$')" -lt "$SEGMENTS" ]; do
    sql "INSERT INTO filler SELECT * FROM pgbench_accounts LIMIT 500000"
done
WALCOPY="$WORK/walcopy"
mkdir -p "$WALCOPY/pg_wal/archive_status"
READY=$(ls "$WORK/pg/data/pg_wal/archive_status/" | grep '\.ready$' | sed 's/\.ready$//' | sort | head -n "$SEGMENTS")
for s in $READY; do cp "$WORK/pg/data/pg_wal/$s" "$WALCOPY/pg_wal/"; done
chown -R postgres "$WALCOPY"
# archiver MODE CMD...: what PostgreSQL's archiver does, one call per segment, oldest first,
# marking each done before the next. MODE backlog: every segment is ready from the start (the
# archiver fell behind); MODE steady: each becomes ready just before its call (it keeps up).
archiver() {
    local mode="$1" s; shift
    rm -f "$WALCOPY"/pg_wal/archive_status/*
    [ "$mode" = backlog ] && for s in $READY; do touch "$WALCOPY/pg_wal/archive_status/$s.ready"; done
    for s in $READY; do
        touch "$WALCOPY/pg_wal/archive_status/$s.ready"
        "$@" "$WALCOPY/pg_wal/$s" || return 1
        mv "$WALCOPY/pg_wal/archive_status/$s.ready" "$WALCOPY/pg_wal/archive_status/$s.done"
    done
}
export -f archiver
export WALCOPY READY
as_pg "${PGBR[@]}" --repo1-path="$WORK/repo-pgbackrest-wal" stanza-create >/dev/null
for mode in steady backlog; do
    # Each mode starts from empty archives.
    rm -rf "$WORK/repo-bulwark/wal/walbench" "$WORK/wal-spool-bench" "$WORK/repo-pgbackrest-wal/archive/bench/15-1"
    measure "bulwark wal-push" "archive $SEGMENTS segments, $mode" \
        archiver "$mode" as_pg "$B" --config "$WORK/bulwark.toml" wal-push --source walbench
    stored "$(size "$WORK/repo-bulwark/wal/walbench")"
    measure "pgbackrest archive-push" "archive $SEGMENTS segments, $mode" \
        archiver "$mode" as_pg "${PGBR[@]}" --repo1-path="$WORK/repo-pgbackrest-wal" archive-push
    stored "$(size "$WORK/repo-pgbackrest-wal/archive")"
done

{
    echo "PostgreSQL $("$PGBIN/pg_ctl" --version | awk '{print $3}'), pgbench scale $SCALE ($((DB_BYTES / 1048576)) MiB database), $(pgbackrest version)."
    echo
    results_table
} > "$WORK/report.md"
cat "$WORK/report.md"
