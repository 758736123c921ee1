#!/usr/bin/env bash
# Resume after an interrupted first backup: time and bytes uploaded by a backup that follows
# one killed (SIGKILL) at about 80% of an uninterrupted run's time, against the uninterrupted
# run. Median of ROUNDS rounds; page cache dropped before every backup.
#
#   bench/resume.sh [--scale GB] [--rounds N] [--work DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=2 ROUNDS=3 WORK=/tmp/bulwark-resume
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) SCALE="$2"; shift 2 ;;
        --rounds) ROUNDS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/resume.sh [--scale GB] [--rounds N] [--work DIR]" >&2; exit 2 ;;
    esac
done
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --locked -q -p bulwark -p bulwark-bench-corpus
B="$PWD/target/release/bulwark"
rm -rf "$WORK"; mkdir -p "$WORK"
"$PWD/target/release/bulwark-corpus" generate "$WORK/corpus" --scale "$SCALE"
export BULWARK_PASSWORD=bench BULWARK_REPOSITORY="$WORK/repo"

cold() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
fresh() { rm -rf "$WORK/repo"; "$B" -q init >/dev/null; }
now() { date +%s.%N; }
# backup: runs a backup; prints "wall stored_added resumed_bytes".
backup() {
    local t0 t1 out
    cold; t0=$(now)
    out=$("$B" -q --json backup --name corpus "$WORK/corpus")
    t1=$(now)
    python3 -c 'import json,sys; s=json.loads(sys.argv[1])[0]["summary"]; print("%.2f %d %d" % (float(sys.argv[3])-float(sys.argv[2]), s["stored_added"], s.get("resumed_bytes", 0)))' "$out" "$t0" "$t1"
}

echo -e "round\tfull_s\tfull_bytes\tkilled_at_s\tresumed_s\tresumed_uploaded\treused" > "$WORK/results.tsv"
for round in $(seq "$ROUNDS"); do
    fresh
    read -r full_s full_bytes _ < <(backup)
    fresh
    kill_at=$(python3 -c "print(round(0.8 * $full_s, 2))")
    cold
    "$B" -q backup --name corpus "$WORK/corpus" >/dev/null 2>&1 & pid=$!
    sleep "$kill_at"; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
    read -r res_s res_bytes reused < <(backup)
    echo -e "$round\t$full_s\t$full_bytes\t$kill_at\t$res_s\t$res_bytes\t$reused" >> "$WORK/results.tsv"
    echo "round $round: uninterrupted ${full_s}s, ${full_bytes} B; killed at ${kill_at}s; resumed ${res_s}s, uploaded ${res_bytes} B, reused ${reused} B"
done
python3 - "$WORK/results.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
med = lambda k: statistics.median(float(r[k]) for r in rows)
full_s, full_b = med("full_s"), med("full_bytes")
res_s, res_b, reused = med("resumed_s"), med("resumed_uploaded"), med("reused")
print(f"median of {len(rows)}: uninterrupted {full_s:.2f} s, {full_b/2**20:.0f} MiB uploaded")
print(f"  after a kill at 80%: resumed run {res_s:.2f} s ({res_s/full_s:.2f}x), "
      f"uploaded {res_b/2**20:.0f} MiB ({res_b/full_b:.2f}x), reused {reused/2**20:.0f} MiB")
PY
