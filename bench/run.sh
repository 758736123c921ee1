#!/usr/bin/env bash
# Side-by-side benchmark: Bulwark against restic, rustic and borg (whichever are installed) and a
# `tar | zstd -T0 -3` baseline, on one generated corpus.
#
#   bench/run.sh [--scale GB] [--runs N] [--warm] [--s3] [--pack-size MIB] [--work DIR]
#
# Phases per tool: first backup, "next day" second backup, restore of the latest snapshot, full
# data check. Every phase of every tool starts with the page cache dropped (a first backup reads
# data that is not in memory, and a restore after a disaster reads a repository that is not
# either); --warm keeps the cache instead. Each run starts from a freshly generated corpus and
# new repositories; the report gives each phase's median over the runs (3 by default) with the
# spread, wall time, peak RSS and each peer's ratio to Bulwark. --s3 puts the repositories on a
# single-node Garage S3 server on loopback (borg and the tar baseline have no S3 target and are
# left out). --pack-size creates Bulwark's repositories with that pack size (default 8 MiB; the
# peers keep their defaults).
set -euo pipefail
cd "$(dirname "$0")/.."
SCALE=2 WORK=/tmp/bulwark-bench RUNS=3 COLD=1 S3=0 PACK_MIB=8
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) SCALE="$2"; shift 2 ;;
        --runs) RUNS="$2"; shift 2 ;;
        --warm) COLD=0; shift ;;
        --s3) S3=1; shift ;;
        --pack-size) PACK_MIB="$2"; shift 2 ;;
        --work) WORK="$2"; shift 2 ;;
        *) echo "usage: bench/run.sh [--scale GB] [--runs N] [--warm] [--s3] [--pack-size MIB] [--work DIR]" >&2; exit 2 ;;
    esac
done
export PATH="$HOME/.cargo/bin:$PATH"
command -v /usr/bin/time >/dev/null || { apt-get update -qq && apt-get install -y -qq time; }
if [ "$COLD" = 1 ] && ! [ -w /proc/sys/vm/drop_caches ]; then
    echo "dropping the page cache needs root (or run with --warm)" >&2
    exit 2
fi

cargo build --release --locked -q -p bulwark -p bulwark-bench-corpus
BULWARK="$PWD/target/release/bulwark"
CORPUS_GEN="$PWD/target/release/bulwark-corpus"

rm -rf "$WORK"
mkdir -p "$WORK"
CORPUS="$WORK/corpus"
RESULTS="$WORK/results.tsv"
echo -e "run\ttool\tphase\twall_s\trss_kb\trepo_bytes" > "$RESULTS"

export BULWARK_PASSWORD=bench RESTIC_PASSWORD=bench RUSTIC_PASSWORD=bench BORG_PASSPHRASE=bench
export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
unset AWS_CA_BUNDLE

TOOLS=(bulwark)
command -v restic >/dev/null && TOOLS+=(restic)
command -v rustic >/dev/null && TOOLS+=(rustic)
[ "$S3" = 0 ] && command -v borg >/dev/null && TOOLS+=(borg)

if [ "$S3" = 1 ]; then
    # shellcheck source=bench/garage.sh
    . bench/garage.sh
    garage_start "$WORK/garage"
    trap garage_stop EXIT
    export AWS_ACCESS_KEY_ID="$GARAGE_KEY" AWS_SECRET_ACCESS_KEY="$GARAGE_SECRET"
    export BULWARK_S3_ENDPOINT="$GARAGE_ENDPOINT" BULWARK_S3_REGION=garage AWS_DEFAULT_REGION=garage
fi

# repo TOOL: where TOOL's repository of the current run lives.
repo() {
    if [ "$S3" = 1 ]; then
        case "$1" in
            bulwark) echo "s3://bench/bulwark-$RUN" ;;
            restic) echo "s3:$GARAGE_ENDPOINT/bench/restic-$RUN" ;;
            rustic) echo "opendal:s3" ;;
        esac
    else
        echo "$WORK/repo-$1"
    fi
}

# On S3 the repository's size is not a directory's: left empty.
repo_size() { [ "$S3" = 1 ] || du -sb "$WORK/repo-$1" 2>/dev/null | cut -f1; }

file_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }

drop_cache() { sync; [ "$COLD" = 1 ] && echo 3 > /proc/sys/vm/drop_caches; true; }

# measure TOOL PHASE CMD... : drops the page cache, runs CMD from $WORK, records wall time and
# peak RSS.
measure() {
    local tool="$1" phase="$2"; shift 2
    drop_cache
    (cd "$WORK" && /usr/bin/time -f "%e %M" -o "$WORK/time.txt" "$@" > "$WORK/log-$tool-$phase-$RUN.txt" 2>&1) || {
        echo "!! $tool $phase failed; see $WORK/log-$tool-$phase-$RUN.txt"; tail -5 "$WORK/log-$tool-$phase-$RUN.txt"; return 1; }
    read -r wall rss < "$WORK/time.txt"
    echo -e "$RUN\t$tool\t$phase\t$wall\t$rss\t$(repo_size "$tool")" >> "$RESULTS"
    printf "run %s  %-8s %-8s %8ss %8s KiB\n" "$RUN" "$tool" "$phase" "$wall" "$rss"
}

# rustic takes S3 settings from a profile: rustic.toml in the directory it runs in ($WORK).
rustic_profile() {
    [ "$S3" = 1 ] || { rm -f "$WORK/rustic.toml"; return; }
    cat > "$WORK/rustic.toml" <<EOF
[repository]
repository = "opendal:s3"
[repository.options]
bucket = "bench"
root = "/rustic-$RUN"
endpoint = "$GARAGE_ENDPOINT"
region = "garage"
access_key_id = "$GARAGE_KEY"
secret_access_key = "$GARAGE_SECRET"
EOF
}

init() {
    local r; r=$(repo "$1")
    case "$1" in
        bulwark) "$BULWARK" -q -r "$r" init --pack-size "$PACK_MIB" ;;
        restic) restic -q -r "$r" init ;;
        rustic) (cd "$WORK" && rustic -r "$r" init) ;;
        borg) borg init -e repokey-blake2 "$r" ;;
    esac > "$WORK/log-$1-init-$RUN.txt" 2>&1
}

backup() {
    local r; r=$(repo "$1")
    case "$1" in
        bulwark) measure "$1" "$2" "$BULWARK" -q -r "$r" backup "$CORPUS" ;;
        restic) measure "$1" "$2" restic -q -r "$r" backup "$CORPUS" ;;
        rustic) measure "$1" "$2" rustic -r "$r" backup "$CORPUS" ;;
        borg) measure "$1" "$2" borg create --compression zstd,3 "$r::$2" "$CORPUS" ;;
    esac
}

restore() {
    local r t="$WORK/restore-$1"
    r=$(repo "$1")
    rm -rf "$t"; mkdir -p "$t"
    case "$1" in
        bulwark) measure "$1" restore "$BULWARK" -q -r "$r" restore --target "$t" ;;
        restic) measure "$1" restore restic -q -r "$r" restore latest --target "$t" ;;
        rustic) measure "$1" restore rustic -r "$r" restore latest "$t" ;;
        borg) measure "$1" restore bash -c "cd '$t' && borg extract '$r::second'" ;;
    esac
    local got want
    got=$(file_bytes "$t") want=$(file_bytes "$CORPUS")
    [ "$got" = "$want" ] || echo "!! $1 restored $got bytes of files, the corpus has $want"
    rm -rf "$t"
}

check() {
    local r; r=$(repo "$1")
    case "$1" in
        bulwark) measure "$1" check "$BULWARK" -q -r "$r" check --read-data ;;
        restic) measure "$1" check restic -q -r "$r" check --read-data ;;
        rustic) measure "$1" check rustic -r "$r" check --read-data ;;
        borg) measure "$1" check borg check --verify-data "$r" ;;
    esac
}

where=$([ "$S3" = 1 ] && echo "Garage S3 on loopback" || echo "local disk")
cache=$([ "$COLD" = 1 ] && echo "page cache dropped before every phase" || echo "warm page cache")
echo "== $RUNS run(s), repositories on $where, $cache, Bulwark packs of $PACK_MIB MiB"
for RUN in $(seq 1 "$RUNS"); do
    echo "== run $RUN: generating corpus (scale $SCALE GB)"
    rm -rf "$CORPUS" "$WORK"/repo-* "$WORK"/repo-tar+zstd.tar.zst
    "$CORPUS_GEN" generate "$CORPUS" --scale "$SCALE"
    rustic_profile
    if [ "$S3" = 0 ]; then
        measure tar+zstd first bash -c "tar -cf - -C '$CORPUS' . | zstd -T0 -3 -q -f -o '$WORK/repo-tar+zstd.tar.zst'"
    fi
    for t in "${TOOLS[@]}"; do init "$t"; backup "$t" first; done
    "$CORPUS_GEN" mutate "$CORPUS"
    for t in "${TOOLS[@]}"; do backup "$t" second; done
    for t in "${TOOLS[@]}"; do restore "$t"; done
    for t in "${TOOLS[@]}"; do check "$t"; done
done
CORPUS_BYTES=$(du -sb "$CORPUS" | cut -f1)

python3 bench/report.py "$RESULTS" "$CORPUS_BYTES" "$where, $cache" | tee "$WORK/report.md"
