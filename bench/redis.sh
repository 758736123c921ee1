#!/usr/bin/env bash
# Redis benchmark: Bulwark against `redis-cli --rdb` on one server holding N keys of mixed
# types (sessions, profiles, queues, tags, rankings; a tenth with a TTL), in one run.
#
#   bench/redis.sh [--keys N] [--work DIR]
#
# Phases: backup (bulwark into a fresh repository vs redis-cli --rdb to a file) with the
# server in diskless and in disk-based replication mode; a second backup after 1% of the keys
# change (bytes stored); live restore into an empty server (keys per second); sandbox restore
# (lay out, load, compare). Writes WORK/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS=1000000 WORK=/tmp/bulwark-redisbench
while [ $# -gt 0 ]; do
    case "$1" in
        --keys) KEYS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/redis.sh [--keys N] [--work DIR]" >&2; exit 2 ;;
    esac
done
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/servers.sh
source bench/lib.sh
bench_build

PORT=$(free_port 56379)
DST_PORT=$(free_port $((PORT + 1)))
redis_stop "$PORT" "$DST_PORT"
rm -rf "$WORK"
mkdir -p "$WORK"
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
bench_config
cat >> "$CONF" <<TOML
[sources.cache]
kind = "redis"
url = "redis://127.0.0.1:$PORT"
TOML
trap 'redis_stop "$PORT" "$DST_PORT"' EXIT
# No delay before a diskless transfer: both tools would wait it out alike.
redis_start "$WORK/src" "$PORT" --repl-diskless-sync-delay 0

echo "== loading $KEYS keys"
FILL='local from, n = tonumber(ARGV[1]), tonumber(ARGV[2])
for i = from, from + n - 1 do
  local kind, v = i % 20, "v" .. i .. string.rep(string.char(97 + i % 26), 80)
  local key
  if kind < 14 then key = "session:" .. i; redis.call("SET", key, v)
  elseif kind < 16 then key = "profile:" .. i
    redis.call("HSET", key, "name", "user" .. i, "plan", "pro", "quota", i % 1000, "bio", v)
  elseif kind < 18 then key = "queue:" .. i
    redis.call("RPUSH", key, "job" .. i, "job" .. i + 1, v)
  elseif kind == 18 then key = "tags:" .. i; redis.call("SADD", key, "a" .. i % 7, "b" .. i % 11, i)
  else key = "rank:" .. i; redis.call("ZADD", key, i % 97, "x", i % 89, "y", 1.5, "z") end
  if i % 10 == 0 then redis.call("EXPIRE", key, 86400 + i % 3600) end
end
return n'
for ((from = 0; from < KEYS; from += 100000)); do
    n=$((KEYS - from < 100000 ? KEYS - from : 100000))
    redis-cli -p "$PORT" EVAL "$FILL" 0 "$from" "$n" >/dev/null
done
echo "keys: $(redis-cli -p "$PORT" dbsize), memory: $(redis-cli -p "$PORT" info memory | grep used_memory_human | tr -d '\r')"

echo "== backup"
for mode in diskless disk; do
    redis-cli -p "$PORT" config set repl-diskless-sync "$([ $mode = diskless ] && echo yes || echo no)" >/dev/null
    rm -f "$WORK/dump.rdb"
    measure "redis-cli --rdb" "backup, $mode" redis-cli -p "$PORT" --rdb "$WORK/dump.rdb"
    stored "$(size "$WORK/dump.rdb")"
    rm -rf "$WORK/repo"
    "$B" --config "$CONF" -q init >/dev/null
    measure "bulwark" "backup, $mode" "$B" --config "$CONF" -q backup cache
    stored "$(bulwark_added "$CONF" cache)"
done

echo "== second backup after 1% of the keys change"
redis-cli -p "$PORT" EVAL 'for i = 0, tonumber(ARGV[1]) - 1, 100 do
  if redis.call("TYPE", "session:" .. i).ok == "string" then redis.call("SET", "session:" .. i, "changed" .. i) end
end return 1' 0 "$KEYS" >/dev/null
measure "bulwark" "second backup, 1% changed" "$B" --config "$CONF" -q backup cache
stored "$(bulwark_added "$CONF" cache)"

echo "== restore"
redis_start "$WORK/dst" "$DST_PORT"
measure "bulwark" "live restore" "$B" --config "$CONF" --json restore --source cache \
    --target "redis://127.0.0.1:$DST_PORT"
stored ""
RATE=$(python3 -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["report"]["keys_per_sec"]))' \
    "$WORK/log-bulwark-live_restore.txt")
echo "live restore: $RATE keys/s"
measure "bulwark" "sandbox restore + compare" "$B" --config "$CONF" -q restore --source cache --sandbox
stored ""

{
    echo "Redis $(redis-server --version | awk '{print $3}' | cut -d= -f2), $KEYS keys of mixed types, one run."
    echo
    results_table
    echo
    echo "Live restore rate (restore's own figure, RESTORE pipeline only): $RATE keys/s."
} > "$WORK/report.md"
cat "$WORK/report.md"
