"""Turns bench/run.sh's results.tsv into a markdown report: per phase, each tool's median over
the runs with the spread (min-max), peak RSS (median), and the ratio of each peer's median to
Bulwark's."""
import csv
import statistics
import sys

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
corpus = int(sys.argv[2])
conditions = sys.argv[3] if len(sys.argv) > 3 else ""
runs = sorted({r["run"] for r in rows})
tools = []
for r in rows:
    if r["tool"] not in tools:
        tools.append(r["tool"])


def of(tool, phase):
    return [r for r in rows if r["tool"] == tool and r["phase"] == phase]


def median_wall(tool, phase):
    walls = [float(r["wall_s"]) for r in of(tool, phase)]
    return statistics.median(walls) if walls else None


def mib(b):
    return f"{int(b) / 2**20:,.0f} MiB"


print(f"Corpus: {corpus / 1e9:.2f} GB; {conditions}; {len(runs)} run(s), median (min-max).")
print("Ratio = the peer's median time / Bulwark's (above 1: Bulwark is faster).\n")
for phase in ["first", "second", "restore", "check"]:
    base = median_wall("bulwark", phase)
    print(f"### {phase}\n")
    print("| tool | wall s | spread s | MB/s | peak RSS | repository | ratio to Bulwark |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for t in tools:
        got = of(t, phase)
        if not got:
            continue
        walls = [float(r["wall_s"]) for r in got]
        wall = statistics.median(walls)
        rss = statistics.median(int(r["rss_kb"]) for r in got) / 1024
        sizes = [int(r["repo_bytes"]) for r in got if r["repo_bytes"]]
        repo = mib(statistics.median(sizes)) if sizes else "-"
        ratio = f"{wall / base:.2f}" if base else "-"
        speed = corpus / 1e6 / wall if wall else 0
        print(f"| {t} | {wall:.1f} | {min(walls):.1f}-{max(walls):.1f} | {speed:,.0f} | {rss:,.0f} MiB | {repo} | {ratio} |")
    print()

added = {}
for t in tools:
    pairs = []
    for run in runs:
        first = [r for r in of(t, "first") if r["run"] == run and r["repo_bytes"]]
        second = [r for r in of(t, "second") if r["run"] == run and r["repo_bytes"]]
        if first and second:
            pairs.append(int(second[0]["repo_bytes"]) - int(first[0]["repo_bytes"]))
    if pairs:
        added[t] = statistics.median(pairs)
if added:
    print("### bytes added by the second backup\n")
    print("| tool | added | ratio to Bulwark |")
    print("|---|---:|---:|")
    base = added.get("bulwark")
    for t, a in added.items():
        print(f"| {t} | {mib(a)} | {a / base:.2f} |" if base else f"| {t} | {mib(a)} | - |")
