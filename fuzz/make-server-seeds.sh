#!/usr/bin/env bash
# Writes the seeds that come from real servers: an RDB from Redis (every value type, an
# expiry) and a pg_dump custom archive from PostgreSQL (a few tables and types). Run when a
# server version or the dump settings change; the other seeds come from
# `cargo test -p bulwark-fuzz-targets --test seeds -- --ignored`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/servers.sh
tmp=$(mktemp -d); chmod 755 "$tmp"
trap 'redis-cli -p "${rport:-0}" shutdown nosave >/dev/null 2>&1 || true; as_pg "$(newest_pg_bin)/pg_ctl" -D "$tmp/pg/data" -m immediate stop >/dev/null 2>&1 || true; rm -rf "$tmp"' EXIT

rport=$(free_port 26400)
redis-server --port "$rport" --bind 127.0.0.1 --dir "$tmp" --daemonize yes --save "" --appendonly no >/dev/null
for _ in $(seq 50); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
r() { redis-cli -p "$rport" "$@" >/dev/null; }
r set greeting hello; r set counter 12345; r set expiring soon EX 86400
r rpush queue a b c; r hset session user alice ttl 30; r sadd tags x y z; r sadd ids 1 2 3
r zadd ranks 1 a 2.5 b; r xadd events '*' kind login; r select 2; r set other db2
mkdir -p fuzz/corpus/rdb
redis-cli -p "$rport" --rdb fuzz/corpus/rdb/every-type >/dev/null

pport=$(free_port 26500)
echo pw > "$tmp/pw"; chown postgres "$tmp/pw"
pg_cluster "$(newest_pg_bin)" "$tmp/pg" "$pport" "$tmp/pw" >/dev/null
p() { PGPASSWORD=pw "$(newest_pg_bin)/psql" -X -q -h 127.0.0.1 -p "$pport" -U postgres -d postgres -c "$1"; }
p "CREATE TABLE notes (id int PRIMARY KEY, body text, at timestamptz, raw bytea, tags text[]);
   INSERT INTO notes SELECT g, 'note ' || g || E'\ttab\\nline', now(), '\xdeadbeef', ARRAY['a','b'] FROM generate_series(1, 20) g;
   CREATE TABLE empty_one (x numeric);"
mkdir -p fuzz/corpus/pg_archive
PGPASSWORD=pw "$(newest_pg_bin)/pg_dump" -Fc -Z0 -h 127.0.0.1 -p "$pport" -U postgres -d postgres \
    -f fuzz/corpus/pg_archive/two-tables
ls -l fuzz/corpus/rdb fuzz/corpus/pg_archive
