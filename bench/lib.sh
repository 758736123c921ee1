# Helpers shared by the datastore benchmarks (postgres.sh, redis.sh). The caller sets WORK (a
# scratch directory) and RESULTS (a TSV file: phase, tool, wall s, peak RSS KiB, bytes stored).

# bench_build [PACKAGE...]: the Debian packages the demo needs, GNU time and PACKAGEs (the
# peers), and a release build of bulwark, whose path goes into B.
bench_build() {
    scripts/install-deps.sh --packages-only
    local missing=() p
    for p in time "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
    cargo build --release --locked -q -p bulwark
    B="$PWD/target/release/bulwark"
}

# measure TOOL PHASE CMD...: wall time and peak RSS of CMD (a program or an exported function).
measure() {
    local tool="$1" phase="$2"; shift 2
    local log="$WORK/log-${tool// /_}-${phase// /_}.txt"
    /usr/bin/time -f "%e %M" -o "$WORK/time.txt" bash -c '"$@"' _ "$@" > "$log" 2>&1 || {
        echo "!! $tool $phase failed:"; tail -5 "$log"; exit 1; }
    read -r wall rss < "$WORK/time.txt"
    echo -ne "$phase\t$tool\t$wall\t$rss\t" >> "$RESULTS"
    printf "%-30s %-26s %8ss %8s KiB\n" "$phase" "$tool" "$wall" "$rss"
}

# bench_config: starts $WORK/bulwark.toml with a repository in $WORK/repo (password "bench")
# and sets CONF to it; the caller appends its sources.
bench_config() {
    echo bench > "$WORK/password"
    CONF="$WORK/bulwark.toml"
    printf '[repositories.main]\nurl = "%s"\npassword_file = "%s"\n\n' "$WORK/repo" "$WORK/password" > "$CONF"
}

# stored BYTES: completes the last row with the bytes its run stored (empty: not applicable).
stored() { echo "$1" >> "$RESULTS"; }

size() { du -sb "$1" | cut -f1; }

# bulwark_added CONFIG SOURCE: bytes the newest snapshot of SOURCE added to the repository.
bulwark_added() {
    "$B" --config "$1" --json snapshots --source "$2" |
        python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["summary"]["stored_added"])'
}

# results_table: RESULTS as a markdown table (sizes in KiB below 10 MiB).
results_table() {
    echo "| phase | tool | wall s | peak RSS | bytes stored |"
    echo "|---|---|---:|---:|---:|"
    while IFS=$'\t' read -r phase tool wall rss bytes; do
        local shown=""
        if [ -n "$bytes" ]; then
            if [ "$bytes" -lt 10485760 ]; then shown="$((bytes / 1024)) KiB"; else shown="$((bytes / 1048576)) MiB"; fi
        fi
        echo "| $phase | $tool | $wall | $((rss / 1024)) MiB | $shown |"
    done < "$RESULTS"
}
