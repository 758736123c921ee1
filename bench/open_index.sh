#!/usr/bin/env bash
# Opening a large repository: time and peak memory to derive the key and load the index of a
# synthetic repository (index files only, as prune compacts them; no pack data):
#
#   bench/open_index.sh [--chunks N] [--per-pack K] [--runs R] [--work DIR]
#
# Defaults: 10,000,000 chunks, 10 to a pack (default 1 MiB chunks in 8 MiB packs: a million
# packs), 3 runs, each after dropping the page cache. Three ways: from the index files with no
# local cache; the first open with a cache directory (it reads the index files and writes the
# cache); and opens with the cache in place. Reports the median wall time and peak RSS with
# the range, and the index's own figures from each run.
set -euo pipefail
cd "$(dirname "$0")/.."
CHUNKS=10000000 PER_PACK=10 RUNS=3 WORK=/tmp/bulwark-bench-open-index
while [ $# -gt 0 ]; do
    case "$1" in
        --chunks) CHUNKS="$2"; shift 2 ;;
        --per-pack) PER_PACK="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/open_index.sh [--chunks N] [--per-pack K] [--runs R] [--work DIR]" >&2; exit 2 ;;
    esac
done
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
cargo build --release --locked -q -p bulwark-engine --example index_scale
X="$PWD/target/release/examples/index_scale"
export BULWARK_PASSWORD=bench
REPO="$WORK/repo-$CHUNKS-$PER_PACK"
if [ ! -f "$REPO/config" ]; then
    rm -rf "$REPO"; mkdir -p "$WORK"
    echo "== generating $CHUNKS chunks, $PER_PACK to a pack, in $REPO"
    "$X" generate "$REPO" "$CHUNKS" "$PER_PACK"
fi
echo "== index files: $(ls "$REPO/index" | wc -l), $(du -sh "$REPO/index" | cut -f1)"
CACHE="$WORK/cache"
# One series: a label, then the arguments after the repository.
series() {
    local label="$1"; shift
    : > "$WORK/runs.txt"
    for run in $(seq "$RUNS"); do
        [ "$label" = "first open, writing the cache" ] && rm -rf "$CACHE"
        sync; echo 3 > /proc/sys/vm/drop_caches
        /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$X" open "$REPO" "$@"
        cat "$WORK/time.txt" >> "$WORK/runs.txt"
    done
    python3 - "$WORK/runs.txt" "$CHUNKS" "$label" >> "$WORK/table.txt" <<'PY'
import statistics, sys
runs = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
chunks = int(sys.argv[2])
walls, rss = [w for w, _ in runs], [r / 1024 for _, r in runs]
print(f"| {sys.argv[3]} | {statistics.median(walls):.2f} ({min(walls):.2f}–{max(walls):.2f}) "
      f"| {statistics.median(rss):.0f} ({min(rss):.0f}–{max(rss):.0f}) "
      f"| {statistics.median(rss) * 1048576 / chunks:.0f} |")
PY
}
echo "== opening, $RUNS runs each, page cache dropped before each"
printf '| %s chunks | wall s, median (range) | peak RSS MiB, median (range) | bytes per chunk |\n|---|---|---|---|\n' \
    "$(printf "%'d" "$CHUNKS")" > "$WORK/table.txt"
series "index files, no cache"
series "first open, writing the cache" "$CACHE"
series "cache in place" "$CACHE"
cat "$WORK/table.txt"
