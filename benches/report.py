#!/usr/bin/env python3
"""Writes benches/README.md from the JSON files in benches/results/.

- `nexmark-*.json`: the output of `sabot bench nexmark --json FILE` (one object per query run,
  each with its command, date and machine);
- `compare-*.json`: the output of `benches/compare/run.sh --json FILE` (Sabot and Flink side by
  side).

Usage: `python3 benches/report.py` (after adding or replacing result files). Standard library
only; the README is generated, so edit this script, not the README.
"""

import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
README = os.path.join(HERE, "README.md")


def millions(x):
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def nexmark_section(files):
    rows = []
    for path in files:
        with open(path) as f:
            for r in json.load(f):
                rows.append(r)
    if not rows:
        return []
    order = {f"q{n}": n for n in range(100)}
    rows.sort(key=lambda r: (order.get(r["query"].split("-")[0], 99), r["query"], r["date"]))
    out = [
        "## Nexmark, Sabot alone",
        "",
        "`sabot bench nexmark` (release build): a warm-up, then the query over the built-in",
        "generator into a blackhole sink. Events are Nexmark events of all kinds; events/s per core",
        "divides by the CPU time the process used (`getrusage`).",
        "",
        "| query | events | parallelism | events/s | events/s per core | peak RSS MiB | checkpoints | date | machine | command |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        checkpoints = (
            f"{r['checkpoints']} (max {r['checkpoint_ms_max']:.0f} ms)" if r["checkpoints"] else "off"
        )
        out.append(
            f"| {r['query']} | {r['events']:,} | {r['parallelism']} | {millions(r['events_per_second'])} "
            f"| {millions(r['events_per_core_second'])} | {r['peak_rss_mib']:.0f} | {checkpoints} "
            f"| {r['date']} | {r['machine']} | `{r['command']}` |"
        )
    out.append("")
    return out


def compare_section(files):
    out = []
    for path in files:
        with open(path) as f:
            data = json.load(f)
        meta = data.get("meta", {})
        summary = data.get("summary", [])
        if not summary:
            continue
        command = meta.get("command", "benches/compare/run.sh")
        command = "benches/compare/run.sh " + command.split("--flink-python", 1)[-1].split(" ", 2)[-1]
        suites = sorted({s.get("suite", "datagen") for s in summary})
        out += [
            (
                f"### Sabot and Apache Flink {meta['flink_version']}: {', '.join(suites)}"
                if meta.get("flink_version")
                else f"### Sabot alone (Flink not run; its figures for the same files are in "
                f"the other tables of the suite): {', '.join(suites)}"
            ),
            "",
            f"`{command}`, {meta.get('date', '?')[:16].replace('T', ' ')} UTC, "
            f"{meta.get('cpus', '?')} cores, {meta.get('java', 'Java ?')}, parallelism "
            f"{meta.get('parallelism', 1)}. Events (rows read) per second per core, marginal "
            "(the difference of two event counts, so start-up is not counted): median of the "
            "runs, min-max in brackets.",
            "",
            "| suite | query | Sabot | Flink | Sabot / Flink |",
            "|---|---|---|---|---|",
        ]
        for s in summary:
            cells = []
            for engine in ("sabot", "flink"):
                if engine not in s:
                    # A run of one engine (--engines): its figures only.
                    cells.append("not run")
                    continue
                values = s[engine]["marginal_events_per_core_s"]
                median = values[0]
                low, high = min(values[1:] or values), max(values[1:] or values)
                cells.append(f"{millions(median)} ({millions(low)}-{millions(high)})")
            ratio = s.get("ratio_marginal_events_per_core_s")
            out.append(
                f"| {s.get('suite', 'datagen')} | {s['query']} | {cells[0]} | {cells[1]} "
                f"| {f'{ratio:.1f}x' if ratio else '-'} |"
            )
        out.append("")
    if out:
        out = [
            "## Sabot and Apache Flink side by side",
            "",
            "`benches/compare/` (see its README): the same queries on both engines at",
            "parallelism 1, over Flink's and Sabot's `datagen` (suite `datagen`) and over the same",
            "pre-generated Nexmark bid files read by both (suite `nexmark-files`), and over the",
            "same pre-generated bids, auctions and people for the joins (suite `nexmark-joins`).",
            "",
        ] + out
    return out


def main():
    nexmark = sorted(glob.glob(os.path.join(RESULTS, "nexmark-*.json")))
    compare = sorted(glob.glob(os.path.join(RESULTS, "compare-*.json")))
    lines = [
        "# Benchmark results",
        "",
        "Generated by `python3 benches/report.py` from the JSON files in `benches/results/`; do not",
        "edit by hand. How to run each benchmark: `benches/nexmark/README.md` (the queries),",
        "`benches/compare/README.md` (the Flink comparison), and `cargo bench --bench operators`,",
        "`--bench window_aggregation`, `--bench wire` for the per-operator criterion benches.",
        "",
    ]
    lines += compare_section(compare)
    lines += nexmark_section(nexmark)
    with open(README, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")
    print(f"wrote {README} from {len(nexmark) + len(compare)} result files", file=sys.stderr)


if __name__ == "__main__":
    main()
