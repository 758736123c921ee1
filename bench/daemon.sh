#!/usr/bin/env bash
# The daemon's own cost and the API's latency:
#
#   bench/daemon.sh [--idle-secs N] [--load-secs N] [--rate R] [--scale GB] [--work DIR]
#
# 1. Idle: a daemon whose jobs are not due, sampled every 10 s for --idle-secs (default 600):
#    its CPU time (and that of the assessment children it starts every 5 minutes) and RSS.
# 2. Load: /api/status at --rate requests/s (default 200; wrk, 10 connections each pacing its
#    requests) for --load-secs (default 30) while backups run back to back: a job every second
#    backing up a tar stream of a --scale GB corpus (default 1), read from disk each time.
#    Reports wrk's latency percentiles and how many backups ran during the window.
set -euo pipefail
cd "$(dirname "$0")/.."
IDLE=600 LOAD=30 RATE=200 SCALE=1 WORK=/tmp/bulwark-bench-daemon
while [ $# -gt 0 ]; do
    case "$1" in
        --idle-secs) IDLE="$2"; shift 2 ;;
        --load-secs) LOAD="$2"; shift 2 ;;
        --rate) RATE="$2"; shift 2 ;;
        --scale) SCALE="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/daemon.sh [--idle-secs N] [--load-secs N] [--rate R] [--scale GB] [--work DIR]" >&2; exit 2 ;;
    esac
done
source bench/lib.sh
bench_build wrk
cargo build --release --locked -q -p bulwark-bench-corpus
CORPUS_GEN="$PWD/target/release/bulwark-corpus"

rm -rf "$WORK"; mkdir -p "$WORK"
bench_config
PORT=18181
TOKEN=bench-token-0123456789abcdef
cat >> "$CONF" <<EOF
[daemon]
listen = "127.0.0.1:$PORT"
state_dir = "$WORK/state"

[daemon.tokens.bench]
role = "read"
token = "$TOKEN"

[sources.stream]
kind = "command"
command = "tar --sort=name -cf - -C $WORK corpus"
filename = "corpus.tar"

EOF
cp "$CONF" "$WORK/base.toml"
# with_job SCHEDULE: the config with one backup job of the stream on SCHEDULE.
with_job() { { cat "$WORK/base.toml"; printf '[jobs.stream]\nkind = "backup"\nsources = ["stream"]\nschedule = "%s"\n' "$1"; } > "$CONF"; }
export BULWARK_KDF_MEMORY_KIB=65536
"$B" --config "$CONF" -q init
echo "== generating a $SCALE GB corpus"
"$CORPUS_GEN" generate "$WORK/corpus" --scale "$SCALE" > /dev/null

start_daemon() {
    "$B" --config "$CONF" daemon > "$WORK/daemon-$1.log" 2>&1 &
    DAEMON=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" > /dev/null && return; sleep 0.1; done
    echo "daemon did not start"; cat "$WORK/daemon-$1.log"; exit 1
}
stop_daemon() { kill -TERM "$DAEMON"; wait "$DAEMON" || true; }
trap 'kill -TERM "${DAEMON:-}" 2>/dev/null || true' EXIT
ticks=$(getconf CLK_TCK)
# cpu PID: "own children" CPU seconds of a process (fields 14-17 of /proc/PID/stat).
cpu() { awk -v t="$ticks" '{ printf "%.2f %.2f\n", ($14+$15)/t, ($16+$17)/t }' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ { print $2 }' "/proc/$1/status"; }

echo "== idle: $IDLE s, sampled every 10 s"
with_job "0 3 * * *"
start_daemon idle
read -r own0 kids0 < <(cpu "$DAEMON")
max_rss=0
for _ in $(seq $((IDLE / 10))); do
    sleep 10
    r=$(rss "$DAEMON")
    if [ "$r" -gt "$max_rss" ]; then max_rss=$r; fi
done
read -r own1 kids1 < <(cpu "$DAEMON")
final_rss=$(rss "$DAEMON")
stop_daemon
awk -v s="$IDLE" -v o0="$own0" -v o1="$own1" -v k0="$kids0" -v k1="$kids1" -v r="$final_rss" -v m="$max_rss" 'BEGIN {
    printf "idle %d s: daemon CPU %.2f s (%.3f%% of one core), assessment children %.2f s; RSS %d KiB at the end, %d KiB at most\n",
        s, o1 - o0, (o1 - o0) * 100 / s, k1 - k0, r, m }' | tee "$WORK/idle.txt"

echo "== load: /api/status at $RATE requests/s for $LOAD s while backups run back to back"
with_job "* * * * * *"
start_daemon load
# The first backup stores the stream; wait for it, so the window sees deduplicating reruns
# that read, chunk and hash the whole stream like a daily backup of unchanged data does.
for _ in $(seq 600); do
    curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/runs?job=stream" | grep -q '"result":"success"' && break
    sleep 1
done
runs_before=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/runs?job=stream&limit=1000" | grep -o '"id":' | wc -l)
connections=10
cat > "$WORK/pace.lua" <<EOF
-- Each of the $connections connections sends one request per $((1000 * connections / RATE)) ms: $RATE requests/s in all.
function delay() return $((1000 * connections / RATE)) end
EOF
wrk -t2 -c"$connections" -d"${LOAD}s" --latency -s "$WORK/pace.lua" \
    -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/status" | tee "$WORK/wrk.txt"
runs_after=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/runs?job=stream&limit=1000" | grep -o '"id":' | wc -l)
running=$(curl -sf -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/api/jobs" | grep -o '"running":true' | wc -l)
stop_daemon
echo "backup runs started during the window: $((runs_after - runs_before)) (a backup running at the end: $running)"
