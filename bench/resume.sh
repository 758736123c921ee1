#!/usr/bin/env bash
# Resume after an interrupted first backup, Bulwark and restic side by side: a first backup is
# killed (SIGKILL) at 80% of that tool's uninterrupted wall time, then run again. Reports, per
# tool, the time of the run after the kill and what it added to the repository, against an
# uninterrupted first backup. Median of ROUNDS rounds; page cache dropped before every backup.
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
command -v restic >/dev/null || { apt-get update -qq && apt-get install -y -qq restic; }
cargo build --release --locked -q -p bulwark -p bulwark-bench-corpus
B="$PWD/target/release/bulwark"
rm -rf "$WORK"; mkdir -p "$WORK"
"$PWD/target/release/bulwark-corpus" generate "$WORK/corpus" --scale "$SCALE"
export BULWARK_PASSWORD=bench RESTIC_PASSWORD=bench
unset AWS_CA_BUNDLE

cold() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
now() { date +%s.%N; }
size() { du -sb "$WORK/repo" | cut -f1; }

# Per tool: fresh REPO, a backup command (run in the background to be killable).
fresh() {
    rm -rf "$WORK/repo"
    case "$1" in
        bulwark) "$B" -q --repo "$WORK/repo" init >/dev/null ;;
        restic) restic -q -r "$WORK/repo" init >/dev/null ;;
    esac
}
start_backup() {
    case "$1" in
        bulwark) "$B" -q --repo "$WORK/repo" backup --name corpus "$WORK/corpus" >/dev/null 2>&1 & ;;
        restic) restic -q -r "$WORK/repo" backup "$WORK/corpus" >/dev/null 2>&1 & ;;
    esac
    echo $!
}
# timed_backup TOOL: prints "wall_s bytes_added".
timed_backup() {
    local before t0 pid
    before=$(size); cold; t0=$(now)
    pid=$(start_backup "$1"); wait "$pid"
    python3 -c "print('%.2f %d' % ($(now) - $t0, $(size) - $before))"
}

echo -e "tool\tround\tfull_s\tfull_bytes\tkilled_at_s\tresumed_s\tresumed_bytes" > "$WORK/results.tsv"
for round in $(seq "$ROUNDS"); do
    for tool in bulwark restic; do
        fresh "$tool"
        read -r full_s full_bytes < <(timed_backup "$tool")
        fresh "$tool"
        kill_at=$(python3 -c "print(round(0.8 * $full_s, 2))")
        cold
        pid=$(start_backup "$tool")
        sleep "$kill_at"; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
        [ "$tool" = restic ] && restic -q -r "$WORK/repo" unlock >/dev/null 2>&1
        read -r res_s res_bytes < <(timed_backup "$tool")
        echo -e "$tool\t$round\t$full_s\t$full_bytes\t$kill_at\t$res_s\t$res_bytes" >> "$WORK/results.tsv"
        echo "$tool round $round: uninterrupted ${full_s}s, +${full_bytes} B; killed at ${kill_at}s; then ${res_s}s, +${res_bytes} B"
    done
done
python3 - "$WORK/results.tsv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
print("| tool | uninterrupted s | added | run after the kill: s | added |")
print("|---|---:|---:|---:|---:|")
for tool in ("bulwark", "restic"):
    rs = [r for r in rows if r["tool"] == tool]
    med = lambda k: statistics.median(float(r[k]) for r in rs)
    fs, fb, rsec, rb = med("full_s"), med("full_bytes"), med("resumed_s"), med("resumed_bytes")
    print(f"| {tool} | {fs:.2f} | {fb/2**20:.0f} MiB | {rsec:.2f} ({rsec/fs:.2f}x) | "
          f"{rb/2**20:.0f} MiB ({rb/fb:.2f}x) |")
PY
