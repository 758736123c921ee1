#!/usr/bin/env bash
# Drill benchmark: the whole reference stack drilled and verified, as `bulwark drill` does it
# after a disaster drill is scheduled: PostgreSQL (pgbench, about 1 GB at the default scale,
# WAL archived with archive_timeout = 60), Redis with 1 million keys, 1 GiB of files, and Qdrant
# when a server binary is present. Needs root (the cluster runs as the postgres user).
#
#   bench/drill.sh [--scale N] [--keys N] [--files-mib N] [--runs N] [--work DIR]
#
# Every drill starts with the page cache dropped (what a restore after a disaster meets), and
# the report gives the median of --runs drills: total and per-source RTO, and PostgreSQL's RPO
# as `assess` reports it while a light write load runs. No peer drills a stack; the nearest,
# pgBackRest's restore + start of the same cluster, is measured by bench/postgres.sh.
# Writes WORK/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=70 KEYS=1000000 FILES_MIB=1024 RUNS=3 WORK=/tmp/bulwark-drillbench
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) SCALE="$2"; shift 2 ;;
        --keys) KEYS="$2"; shift 2 ;;
        --files-mib) FILES_MIB="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/drill.sh [--scale N] [--keys N] [--files-mib N] [--runs N] [--work DIR]" >&2; exit 2 ;;
    esac
done
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/servers.sh
source bench/lib.sh
bench_build
PGBIN=$(newest_pg_bin)

pg_stop "$WORK/pg/data" 2>/dev/null || true
rm -rf "$WORK"
mkdir -p "$WORK/files"
PW=bench-secret
echo "$PW" > "$WORK/pg-password"
PORT=$(free_port 57432)
REDIS_PORT=$(free_port 57379)
bench_config
cat >> "$CONF" <<TOML
[sources.pg]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/postgres"
password_file = "$WORK/pg-password"
databases = ["bench"]
modes = ["logical", "physical"]
wal_spool_dir = "$WORK/wal-spool"

[sources.cache]
kind = "redis"
url = "redis://127.0.0.1:$REDIS_PORT"

[sources.files]
kind = "files"
paths = ["$WORK/files"]
TOML
"$B" --config "$CONF" -q init > /dev/null
chown -R postgres "$WORK"
pg_cluster "$PGBIN" "$WORK/pg" "$PORT" "$WORK/pg-password" \
    "wal_level = replica
archive_mode = on
archive_timeout = 60
archive_command = '$B --config $CONF wal-push --source pg %p'
max_wal_size = 4GB"
redis_start "$WORK/redis" "$REDIS_PORT" --enable-debug-command yes
trap 'kill $LOAD 2>/dev/null || true; pg_stop "$WORK/pg/data"; redis_stop "$REDIS_PORT"' EXIT

echo "== the stack: pgbench scale $SCALE, $KEYS Redis keys, $FILES_MIB MiB of files"
PGPASSWORD=$PW "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres bench
PGPASSWORD=$PW "$PGBIN/pgbench" -q -i -s "$SCALE" -h 127.0.0.1 -p "$PORT" -U postgres bench 2>&1 | tail -1
redis-cli -p "$REDIS_PORT" DEBUG POPULATE "$KEYS" session 200 > /dev/null
for i in $(seq 1 "$FILES_MIB"); do head -c 1048576 /dev/urandom > "$WORK/files/blob-$i"; done
DB_BYTES=$(PGPASSWORD=$PW "$PGBIN/psql" -X -A -t -h 127.0.0.1 -p "$PORT" -U postgres -d bench -c "SELECT pg_database_size('bench')")
echo "database $((DB_BYTES / 1048576)) MiB, redis $(redis-cli -p "$REDIS_PORT" DBSIZE) keys, files $(du -sh "$WORK/files" | cut -f1)"

echo "== backup"
"$B" --config "$CONF" -q backup
chown -R postgres "$WORK/repo"

# A light write load: one transaction a second, as an application would keep writing.
( while true; do
    PGPASSWORD=$PW "$PGBIN/pgbench" -n -T 600 -R 1 -h 127.0.0.1 -p "$PORT" -U postgres bench > /dev/null 2>&1 || true
  done ) &
LOAD=$!

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
for run in $(seq 1 "$RUNS"); do
    sync; echo 3 > /proc/sys/vm/drop_caches
    "$B" --config "$CONF" -q --json drill --scenario full_disaster --spool-dir "$WORK" > "$WORK/drill-$run.json"
    python3 - "$WORK/drill-$run.json" >> "$RESULTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["record"]
assert r["result"] == "passed", r["result"]
print("total\t%.2f" % r["total_secs"])
for s in r["steps"]:
    print("%s\t%.2f" % (s["source"], s["rto_secs"]))
PY
    echo "drill $run: $(grep -c . "$RESULTS") figures so far"
done
# RPO as assess sees it, after more than one archive_timeout of the write load.
sleep 75
"$B" --config "$CONF" --json assess pg > "$WORK/assess.json" || true
RPO=$(python3 -c 'import json,sys; print("%.0f" % json.load(open(sys.argv[1]))["services"][0]["details"]["recovery_point_age_secs"])' "$WORK/assess.json")

python3 - "$RESULTS" "$RUNS" "$RPO" "$SCALE" "$KEYS" "$FILES_MIB" "$DB_BYTES" > "$WORK/report.md" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
runs, rpo, scale, keys, files, db = sys.argv[2:8]
by = {}
for name, secs in rows:
    by.setdefault(name, []).append(float(secs))
print(f"Stack: pgbench scale {scale} ({int(db) >> 20} MiB database, logical + base backup, WAL archived"
      f" with archive_timeout = 60), Redis {keys} keys, {files} MiB of files; page cache dropped"
      f" before each drill; median of {runs} drills.\n")
print("| drilled | median RTO s | runs |")
print("|---|---:|---|")
for name, vals in by.items():
    print(f"| {name} | {statistics.median(vals):.1f} | {', '.join('%.1f' % v for v in vals)} |")
print(f"\nPostgreSQL RPO as `assess` reports it under a light write load: {rpo} s (target 60 s).")
PY
cat "$WORK/report.md"
