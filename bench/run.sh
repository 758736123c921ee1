#!/usr/bin/env bash
# Side-by-side benchmark: Bulwark against restic, rustic and borg (whichever are installed) and a
# `tar | zstd -T0 -3` baseline, on one generated corpus, in one run.
#
#   bench/run.sh [--scale GB] [--work DIR]
#
# Phases per tool: first backup, "next day" second backup, restore of the latest snapshot, full
# data check. Reports wall time, MB/s, peak RSS, repository size and bytes added by the second
# backup, with each peer's ratio to Bulwark. The page cache is warm for every tool alike.
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=2 WORK=/tmp/bulwark-bench
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) SCALE="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/run.sh [--scale GB] [--work DIR]" >&2; exit 2 ;;
    esac
done
export PATH="$HOME/.cargo/bin:$PATH"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }

cargo build --release --locked -q -p bulwark -p bulwark-bench-corpus
BULWARK="$PWD/target/release/bulwark"
CORPUS_GEN="$PWD/target/release/bulwark-corpus"

rm -rf "$WORK"
mkdir -p "$WORK"
CORPUS="$WORK/corpus"
RESULTS="$WORK/results.tsv"
echo -e "tool\tphase\twall_s\trss_kb\trepo_bytes" > "$RESULTS"
echo "== generating corpus (scale $SCALE GB) in $CORPUS"
"$CORPUS_GEN" generate "$CORPUS" --scale "$SCALE"
CORPUS_BYTES=$(du -sb "$CORPUS" | cut -f1)
sync

export BULWARK_PASSWORD=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
unset AWS_CA_BUNDLE

TOOLS=(bulwark)
command -v restic >/dev/null && TOOLS+=(restic)
command -v rustic >/dev/null && TOOLS+=(rustic)
command -v borg >/dev/null && TOOLS+=(borg)

repo_size() { du -sb "$WORK/repo-$1" 2>/dev/null | cut -f1; }

# measure TOOL PHASE CMD... : runs CMD from $WORK, records wall time and peak RSS.
measure() {
    local tool="$1" phase="$2"; shift 2
    (cd "$WORK" && /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > "$WORK/log-$tool-$phase.txt" 2>&1) || {
        echo "!! $tool $phase failed; see $WORK/log-$tool-$phase.txt"; tail -5 "$WORK/log-$tool-$phase.txt"; return 1; }
    read -r wall rss < "$WORK/time.txt"
    echo -e "$tool\t$phase\t$wall\t$rss\t$(repo_size "$tool")" >> "$RESULTS"
    printf "%-8s %-8s %8ss %8s KiB\n" "$tool" "$phase" "$wall" "$rss"
}

init() {
    local r="$WORK/repo-$1"
    case "$1" in
        bulwark) "$BULWARK" -q -r "$r" init ;;
        restic) restic -q -r "$r" init ;;
        rustic) (cd "$WORK" && rustic -r "$r" init) ;;
        borg) borg init -e repokey-blake2 "$r" ;;
    esac > /dev/null 2>&1
}

backup() {
    local r="$WORK/repo-$1"
    case "$1" in
        bulwark) measure "$1" "$2" "$BULWARK" -q -r "$r" backup "$CORPUS" ;;
        restic) measure "$1" "$2" restic -q -r "$r" backup "$CORPUS" ;;
        rustic) measure "$1" "$2" rustic -r "$r" backup "$CORPUS" ;;
        borg) measure "$1" "$2" borg create --compression zstd,3 "$r::$2" "$CORPUS" ;;
    esac
}

restore() {
    local r="$WORK/repo-$1" t="$WORK/restore-$1"
    rm -rf "$t"; mkdir -p "$t"
    case "$1" in
        bulwark) measure "$1" restore "$BULWARK" -q -r "$r" restore --target "$t" ;;
        restic) measure "$1" restore restic -q -r "$r" restore latest --target "$t" ;;
        rustic) measure "$1" restore rustic -r "$r" restore latest "$t" ;;
        borg) measure "$1" restore bash -c "cd '$t' && borg extract '$r::second'" ;;
    esac
    local got; got=$(du -sb "$t" | cut -f1)
    echo "         restored $got bytes (corpus now $(du -sb "$CORPUS" | cut -f1))"
    rm -rf "$t"
}

check() {
    local r="$WORK/repo-$1"
    case "$1" in
        bulwark) measure "$1" check "$BULWARK" -q -r "$r" check --read-data ;;
        restic) measure "$1" check restic -q -r "$r" check --read-data ;;
        rustic) measure "$1" check rustic -r "$r" check --read-data ;;
        borg) measure "$1" check borg check --verify-data "$r" ;;
    esac
}

echo "== baseline: tar | zstd -T0 -3"
measure tar+zstd first bash -c "tar -cf - -C '$CORPUS' . | zstd -T0 -3 -q -o '$WORK/repo-tar+zstd.tar.zst'"

echo "== first backup"
for t in "${TOOLS[@]}"; do init "$t"; backup "$t" first; done
echo "== next day"
"$CORPUS_GEN" mutate "$CORPUS"
sync
for t in "${TOOLS[@]}"; do backup "$t" second; done
echo "== restore"
for t in "${TOOLS[@]}"; do restore "$t"; done
echo "== check"
for t in "${TOOLS[@]}"; do check "$t"; done

python3 bench/report.py "$RESULTS" "$CORPUS_BYTES" | tee "$WORK/report.md"
