#!/usr/bin/env bash
# Restoring one file from a snapshot of many files, side by side with restic:
#
#   bench/restore_one.sh [--files N] [--runs R] [--work DIR]
#
# Makes N small files (default 1,000,000, in directories of 1,000), backs them up once with each
# tool (with each tool's default key derivation), then restores one file from the middle R times (default 3), each time after dropping the
# page cache (the repository is not in memory after a disaster), and reports the median wall
# time and peak RSS with the range. Bulwark is also timed with the same file given as a pattern
# that starts with a glob (`{tmp}/…`, which could match anywhere), so it reads the whole item
# list: the cost before restores learnt to seek.
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=1000000 RUNS=3 WORK=/tmp/bulwark-bench-restore-one
while [ $# -gt 0 ]; do
    case "$1" in
        --files) FILES="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/restore_one.sh [--files N] [--runs R] [--work DIR]" >&2; exit 2 ;;
    esac
done
source bench/lib.sh
bench_build restic
export BULWARK_PASSWORD=bench RESTIC_PASSWORD=bench
rm -rf "$WORK"; mkdir -p "$WORK"
DATA="$WORK/data"
echo "== $FILES files in $DATA"
python3 - "$DATA" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, "dir%04d" % (i // 1000))
    if i % 1000 == 0:
        os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "file%04d.txt" % (i % 1000)), "w") as f:
        f.write("file %d\n" % i)
PY
middle=$((FILES / 2))
WANTED="$DATA/dir$(printf %04d $((middle / 1000)))/file$(printf %04d $((middle % 1000))).txt"
RESULTS="$WORK/results.tsv"
: > "$RESULTS"

echo "== one backup each"
"$B" -q --repo "$WORK/repo-bulwark" init
measure bulwark backup "$B" -q --repo "$WORK/repo-bulwark" backup "$DATA"; stored ""
restic -q -r "$WORK/repo-restic" init
measure restic backup restic -q -r "$WORK/repo-restic" backup "$DATA"; stored ""

restore_one() {
    local tool="$1" target="$WORK/out-$1"
    rm -rf "$target"
    case "$tool" in
        bulwark) "$B" -q --repo "$WORK/repo-bulwark" restore --target "$target" --include "$WANTED" ;;
        bulwark-glob) "$B" -q --repo "$WORK/repo-bulwark" restore --target "$target" --include "$ANYWHERE" ;;
        restic) restic -q -r "$WORK/repo-restic" restore latest --target "$target" --include "$WANTED" ;;
    esac
    cmp -s "$WANTED" "$(find "$target" -name "$(basename "$WANTED")" | head -1)"
}
relative=${WANTED#/}
ANYWHERE="{${relative%%/*}}/${relative#*/}"
export -f restore_one
export WORK WANTED ANYWHERE B

echo "== restoring $WANTED, $RUNS runs each, page cache dropped before each"
for run in $(seq "$RUNS"); do
    for tool in bulwark bulwark-glob restic; do
        sync; echo 3 > /proc/sys/vm/drop_caches
        measure "$tool" "restore one (run $run)" restore_one "$tool"; stored ""
    done
done

echo "== medians"
python3 - "$RESULTS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for phase, tool, wall, rss, _ in rows:
    if phase.startswith("restore one"):
        by.setdefault(tool, []).append((float(wall), int(rss)))
base = statistics.median(w for w, _ in by["bulwark"])
print("| tool | median wall s (range) | median peak RSS MiB | time / Bulwark's |")
print("|---|---|---|---|")
for tool, runs in by.items():
    walls = [w for w, _ in runs]
    med = statistics.median(walls)
    rss = statistics.median(r for _, r in runs) / 1024
    print(f"| {tool} | {med:.2f} ({min(walls):.2f}–{max(walls):.2f}) | {rss:.0f} | {med / base:.1f}× |")
for phase, tool, wall, rss, _ in rows:
    if phase == "backup":
        print(f"backup of the files: {tool} {wall} s, peak RSS {int(rss) // 1024} MiB")
PY
