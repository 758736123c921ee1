"""Turns bench/run.sh's results.tsv into a markdown report with ratios to Bulwark."""
import csv
import sys

rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
corpus = int(sys.argv[2])
data = {(r["tool"], r["phase"]): r for r in rows}
tools = []
for r in rows:
    if r["tool"] not in tools:
        tools.append(r["tool"])


def mib(b):
    return f"{int(b) / 2**20:,.0f} MiB"


print(f"Corpus: {corpus / 1e9:.2f} GB. Ratio = peer time / Bulwark time (above 1: Bulwark is faster).\n")
for phase in ["first", "second", "restore", "check"]:
    base = data.get(("bulwark", phase))
    print(f"### {phase}\n")
    print("| tool | wall s | MB/s | peak RSS | repository | ratio to Bulwark |")
    print("|---|---:|---:|---:|---:|---:|")
    for t in tools:
        r = data.get((t, phase))
        if not r:
            continue
        wall = float(r["wall_s"])
        ratio = f"{wall / float(base['wall_s']):.2f}" if base and float(base["wall_s"]) > 0 else "-"
        repo = mib(r["repo_bytes"]) if r["repo_bytes"] else "-"
        print(f"| {t} | {wall:.1f} | {corpus / 1e6 / wall if wall else 0:,.0f} | {int(r['rss_kb']) / 1024:,.0f} MiB | {repo} | {ratio} |")
    print()

print("### bytes added by the second backup\n")
print("| tool | added | ratio to Bulwark |")
print("|---|---:|---:|")
base = None
if ("bulwark", "first") in data and ("bulwark", "second") in data:
    base = int(data[("bulwark", "second")]["repo_bytes"]) - int(data[("bulwark", "first")]["repo_bytes"])
for t in tools:
    if (t, "first") in data and (t, "second") in data:
        added = int(data[(t, "second")]["repo_bytes"]) - int(data[(t, "first")]["repo_bytes"])
        ratio = f"{added / base:.2f}" if base else "-"
        print(f"| {t} | {mib(added)} | {ratio} |")
