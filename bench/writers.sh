#!/usr/bin/env bash
# Many writers, one repository: the aggregate backup throughput of N concurrent writers (each
# its own host name and source tree) against one writer alone, into one repository on a
# single-node Garage S3 server on loopback. Page cache dropped before each phase.
#
#   bench/writers.sh [--writers N] [--mb-each MB] [--runs R] [--work DIR]
#
# Each writer's tree is MB megabytes of incompressible data of its own, so nothing deduplicates
# across writers. "alone" backs up all N trees one after another with one process at a time;
# "together" backs them up with N processes at once. Reports wall times, aggregate MB/s, the
# CPU seconds used (user + system, all processes), and together/alone throughput.
set -euo pipefail
cd "$(dirname "$0")/.."
N=8 MB=128 RUNS=3 WORK=/tmp/bulwark-writers
while [ $# -gt 0 ]; do
    case "$1" in
        --writers) N="$2"; shift 2 ;;
        --mb-each) MB="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/writers.sh [--writers N] [--mb-each MB] [--runs R] [--work DIR]" >&2; exit 2 ;;
    esac
done
export PATH="$HOME/.cargo/bin:$PATH"
source bench/lib.sh
bench_build
rm -rf "$WORK"; mkdir -p "$WORK"
# shellcheck source=bench/garage.sh
. bench/garage.sh
garage_start "$WORK/garage"
trap garage_stop EXIT
unset AWS_CA_BUNDLE
export AWS_ACCESS_KEY_ID="$GARAGE_KEY" AWS_SECRET_ACCESS_KEY="$GARAGE_SECRET"
export BULWARK_S3_ENDPOINT="$GARAGE_ENDPOINT" BULWARK_S3_REGION=garage BULWARK_PASSWORD=bench

for w in $(seq 1 "$N"); do
    mkdir -p "$WORK/src/w$w"
    for f in 1 2 3 4; do
        head -c $((MB * 1048576 / 4)) /dev/urandom > "$WORK/src/w$w/f$f.bin"
    done
done
TOTAL_MB=$((N * MB))

drop_cache() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# cpu_of CMD...: runs CMD, prints "wall cpu" (cpu = user + system of it and its children).
cpu_of() {
    /usr/bin/time -f "%e %U %S" -o "$WORK/time.txt" "$@" >> "$WORK/backups.log" 2>&1
    awk '{ printf "%s %.2f\n", $1, $2 + $3 }' "$WORK/time.txt"
}

echo -e "run\tmode\twall_s\tcpu_s\tMB_s" > "$WORK/results.tsv"
for run in $(seq 1 "$RUNS"); do
    for mode in alone together; do
        repo="s3://bench/$mode-$run"
        "$B" -q -r "$repo" init > /dev/null
        drop_cache
        if [ "$mode" = alone ]; then
            read -r wall cpu < <(cpu_of bash -c "for w in \$(seq 1 $N); do BULWARK_HOSTNAME=w\$w '$B' -q -r '$repo' backup '$WORK/src/w'\$w || exit 1; done")
        else
            read -r wall cpu < <(cpu_of bash -c "for w in \$(seq 1 $N); do BULWARK_HOSTNAME=w\$w '$B' -q -r '$repo' backup '$WORK/src/w'\$w & done; wait")
        fi
        count=$("$B" -r "$repo" --json snapshots | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
        [ "$count" = "$N" ] || { echo "!! $mode run $run saved $count snapshots of $N"; exit 1; }
        speed=$(awk -v mb="$TOTAL_MB" -v w="$wall" 'BEGIN { printf "%.0f", mb / w }')
        echo -e "$run\t$mode\t$wall\t$cpu\t$speed" >> "$WORK/results.tsv"
        printf "run %s %-9s %7ss wall %7ss cpu %6s MB/s\n" "$run" "$mode" "$wall" "$cpu" "$speed"
    done
done
python3 - "$WORK/results.tsv" "$N" "$TOTAL_MB" <<'EOF'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
n, total = sys.argv[2], sys.argv[3]
print(f"\n{n} writers x {int(total) // int(n)} MB, {len(rows) // 2} run(s), median (min-max)\n")
print("| mode | wall s | MB/s | CPU s |")
print("|---|---:|---:|---:|")
med = {}
for mode in ["alone", "together"]:
    got = [r for r in rows if r["mode"] == mode]
    walls = [float(r["wall_s"]) for r in got]
    speeds = [float(r["MB_s"]) for r in got]
    cpus = [float(r["cpu_s"]) for r in got]
    med[mode] = statistics.median(speeds)
    print(f"| {mode} | {statistics.median(walls):.1f} ({min(walls):.1f}-{max(walls):.1f}) | {med[mode]:.0f} | {statistics.median(cpus):.1f} |")
print(f"\ntogether / alone throughput: {med['together'] / med['alone']:.2f}")
EOF
