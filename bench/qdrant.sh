#!/usr/bin/env bash
# Qdrant benchmark: Bulwark's two modes against Qdrant's own snapshot API driven with curl,
# on one collection of N points of DIM dimensions (cosine; a small payload each), in one run.
#
#   bench/qdrant.sh [--points N] [--dim D] [--work DIR]
#
# Needs a qdrant binary (QDRANT_BIN, or `qdrant` on PATH): no registry ships one.
# Phases: backup in snapshot mode (vs create + download + delete with curl) and in logical
# mode; a second logical backup after 1% of the points (spread evenly) get new vectors (bytes
# stored); restore from the snapshot (vs a curl upload) and from the logical points, each
# with Bulwark's verification (count, 64 sampled points, 10 exact top-10 searches). Writes
# WORK/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
POINTS=100000 DIM=768 WORK=/tmp/bulwark-qdrantbench
while [ $# -gt 0 ]; do
    case "$1" in
        --points) POINTS="$2"; shift 2 ;;
        --dim) DIM="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/qdrant.sh [--points N] [--dim D] [--work DIR]" >&2; exit 2 ;;
    esac
done
export PATH="$HOME/.cargo/bin:$PATH"
source scripts/servers.sh
source bench/lib.sh
qdrant_bin >/dev/null || { echo "no qdrant binary: set QDRANT_BIN or put qdrant on PATH" >&2; exit 1; }
bench_build curl
cargo build --release --locked -q -p bulwark-bench-corpus
CORPUS="$PWD/target/release/bulwark-corpus"

qdrant_stop "$WORK/qdrant"
rm -rf "$WORK"
mkdir -p "$WORK"
RESULTS="$WORK/results.tsv"
: > "$RESULTS"
PORT=$(free_port 56333)
URL="http://127.0.0.1:$PORT"
trap 'qdrant_stop "$WORK/qdrant"' EXIT
qdrant_start "$WORK/qdrant" "$PORT"

bench_config
cat >> "$CONF" <<TOML
[sources.snap]
kind = "qdrant"
url = "$URL"
collections = ["bench"]
modes = ["snapshot"]

[sources.points]
kind = "qdrant"
url = "$URL"
collections = ["bench"]
modes = ["logical"]
TOML
"$B" --config "$CONF" -q init >/dev/null

# upsert: upsert bodies on stdin, one per line, into collection $1.
upsert() {
    while IFS= read -r body; do
        curl -sf -X PUT "$URL/collections/$1/points?wait=true" -H 'content-type: application/json' \
            --data-binary @- <<< "$body" >/dev/null
    done
}

echo "== loading $POINTS points of $DIM dimensions"
curl -sf -X PUT "$URL/collections/bench" -H 'content-type: application/json' \
    -d "{\"vectors\": {\"size\": $DIM, \"distance\": \"Cosine\"}}" >/dev/null
"$CORPUS" qdrant-points "$POINTS" "$DIM" | upsert bench
until curl -sf "$URL/collections/bench" | grep -q '"status":"green"'; do sleep 1; done
echo "points: $(curl -sf -X POST "$URL/collections/bench/points/count" -H 'content-type: application/json' -d '{"exact":true}')"

# qdrant_snapshot_download: the snapshot API by hand: create, download, delete.
qdrant_snapshot_download() {
    local name
    name=$(curl -sf -X POST "$URL/collections/bench/snapshots?wait=true" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["name"])')
    curl -sf -o "$WORK/bench.snapshot" "$URL/collections/bench/snapshots/$name"
    curl -sf -X DELETE "$URL/collections/bench/snapshots/$name" >/dev/null
}
export -f qdrant_snapshot_download
export URL WORK

echo "== backup"
measure "qdrant API + curl" "backup, snapshot" qdrant_snapshot_download
stored "$(size "$WORK/bench.snapshot")"
measure "bulwark" "backup, snapshot mode" "$B" --config "$CONF" -q backup snap
stored "$(bulwark_added "$CONF" snap)"
measure "bulwark" "backup, logical mode" "$B" --config "$CONF" -q backup points
stored "$(bulwark_added "$CONF" points)"

echo "== second logical backup after 1% of the points change"
"$CORPUS" qdrant-points $((POINTS / 100)) "$DIM" --every 100 --seed 2 | upsert bench
measure "bulwark" "2nd logical, 1% changed" "$B" --config "$CONF" -q backup points
stored "$(bulwark_added "$CONF" points)"
measure "bulwark" "3rd logical, unchanged" "$B" --config "$CONF" -q backup points
stored "$(bulwark_added "$CONF" points)"

echo "== restore"
qdrant_upload() {
    curl -sf -X POST "$URL/collections/by_curl/snapshots/upload?wait=true&priority=snapshot" \
        -F "snapshot=@$WORK/bench.snapshot" >/dev/null
}
export -f qdrant_upload
measure "qdrant API + curl" "restore, snapshot upload" qdrant_upload
stored ""
measure "bulwark" "restore, snapshot + verify" "$B" --config "$CONF" --json restore --source snap \
    --target "$URL" --target-collection from_snapshot
stored ""
measure "bulwark" "restore, logical + verify" "$B" --config "$CONF" --json restore --source points \
    --target "$URL" --target-collection from_points
stored ""
rate() {
    python3 -c 'import json,sys; c=json.load(open(sys.argv[1]))["report"]["collections"][0]; print(int(c["points_per_sec"]), round(c["secs"], 1))' "$1"
}
read -r SNAP_RATE SNAP_SECS < <(rate "$WORK/log-bulwark-restore,_snapshot_+_verify.txt")
read -r LOG_RATE LOG_SECS < <(rate "$WORK/log-bulwark-restore,_logical_+_verify.txt")
START=$(date +%s.%N)
until curl -sf "$URL/collections/from_points" | grep -q '"status":"green"'; do sleep 1; done
INDEXED=$(python3 -c "import time; print(round(time.time() - $START, 1))")

{
    echo "Qdrant $(curl -sf "$URL/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["version"])'), $POINTS points of $DIM dimensions (cosine), one run."
    echo
    results_table
    echo
    echo "Restore rates (restore's own figures, before verification): snapshot $SNAP_RATE points/s (${SNAP_SECS}s), logical $LOG_RATE points/s (${LOG_SECS}s)."
    echo "The logically restored collection finished indexing (status green) ${INDEXED}s after its restore ended."
} > "$WORK/report.md"
cat "$WORK/report.md"
