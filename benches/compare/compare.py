#!/usr/bin/env python3
"""Sabot vs Apache Flink, side by side: the same queries over the same generated input.

Usually started by run.sh, which prepares the Flink virtualenv and finds the Sabot binary.

For every run, query and engine the query is run twice, at N and at MULT*N events, each time in
a fresh process that this script waits for with os.wait4, which returns the CPU time (user + sys)
of the process and of every descendant it waited for (PyFlink's gateway JVM is one: flink_job.py
reaps it). The main figure is the marginal throughput per core,

    (events2 - events1) / (cpu2 - cpu1)

which cancels what both runs pay once (process and JVM start, planning, job submission, shutdown).
The raw figure, events2 / cpu2, is reported too. Engines alternate: Sabot, Flink, Sabot, Flink...
Only the standard library is used.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
# Suites: `datagen` generates its input inside each engine (each engine's own generator, the same
# sequence and event times); `nexmark-files` reads the same pre-generated Nexmark bids (CSV files
# written once by Sabot's nexmark generator) in both engines.
SUITES = {
    "datagen": ["passthrough", "tumble", "hop"],
    "nexmark-files": ["nexmark-q0", "nexmark-q1", "nexmark-q2", "nexmark-q5-agg",
                      "nexmark-q7-agg", "nexmark-q11", "nexmark-q7",
                      # Updating queries (GROUP BY without a window): changelogs.
                      "nexmark-u1", "nexmark-u2", "nexmark-u3",
                      # Top-N and deduplication: changelogs too.
                      "nexmark-q18", "nexmark-q19",
                      # The suite's updating GROUP BYs per day.
                      "nexmark-q15", "nexmark-q16", "nexmark-q17"],
    # Regular joins of the same pre-generated bids, auctions and people.
    "nexmark-joins": ["nexmark-q3", "nexmark-q4", "nexmark-q9", "nexmark-q20",
                      # A temporal join (FOR SYSTEM_TIME AS OF) of the same bids and auctions.
                      "nexmark-t1"],
}
# The tables each query of the nexmark-joins suite reads: its input rows are theirs together.
JOIN_TABLES = {"nexmark-q3": ("auction", "person"), "nexmark-q4": ("auction", "bid"),
               "nexmark-q9": ("auction", "bid"), "nexmark-q20": ("auction", "bid"),
               "nexmark-t1": ("auction", "bid")}
QUERIES = [q for qs in SUITES.values() for q in qs]
SUITE_OF = {q: s for s, qs in SUITES.items() for q in qs}
ENGINES = ["sabot", "flink"]
DATA_CACHE = os.path.expanduser("~/.cache/sabot-compare-data")
# Queries that read their source table more than once (q7 joins the bids with their own window
# maximum: two scans of the files in both engines).
SCANS = {"nexmark-q7": 2}
# Updating queries: their results are changelogs.
UPDATING = {"nexmark-u1", "nexmark-u2", "nexmark-u3", "nexmark-q18", "nexmark-q19",
            "nexmark-q4", "nexmark-q9", "nexmark-q15", "nexmark-q16", "nexmark-q17"}


def machine_busy_s():
    """CPU seconds the whole machine has spent busy (all CPUs, not idle or iowait) since boot."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


CLK_TCK = os.sysconf("SC_CLK_TCK")


def wait_until_idle(limit_s, threshold=0.25):
    """Wait (at most limit_s) until the machine has been idle for 2 s: less than `threshold`
    cores busy. Returns the seconds waited."""
    waited, announced = 0.0, False
    while True:
        busy0, t0 = machine_busy_s(), time.monotonic()
        time.sleep(2.0)
        dt = time.monotonic() - t0
        load = (machine_busy_s() - busy0) / dt
        if load < threshold or waited >= limit_s:
            return waited
        if not announced:
            print(f"# machine busy ({load:.1f} cores): waiting up to {limit_s:.0f} s for it to "
                  "be idle", flush=True)
            announced = True
        waited += dt


def disturbed(m):
    """Did other processes use a noticeable share of the machine during the measurement?"""
    return m["other_cpu_s"] > 0.05 * m["cpu_s"] + 0.2


def run_measured(cmd, env=None, cwd=None):
    """Run `cmd`, wait for it with wait4; return (wall s, cpu s, peak RSS MiB, other cpu s,
    stdout, stderr).

    The CPU time covers the process and its reaped descendants; ru_maxrss is the peak resident
    set of the largest of them (for Flink: the JVM). `other cpu s` is what the rest of the machine
    used meanwhile (from /proc/stat): a benchmark wants it near 0."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        busy0 = machine_busy_s()
        t0 = time.monotonic()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - t0
        busy = machine_busy_s() - busy0
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if proc.returncode != 0:
        sys.stderr.write(stdout[-4000:] + stderr[-4000:])
        raise SystemExit(f"compare.py: {' '.join(cmd)} exited with {proc.returncode}")
    cpu = usage.ru_utime + usage.ru_stime
    return wall, cpu, usage.ru_maxrss / 1024.0, max(0.0, busy - cpu), stdout, stderr


class Sabot:
    name = "sabot"

    def __init__(self, binary, sql_dir, tmp):
        self.binary, self.sql_dir, self.tmp = binary, sql_dir, tmp
        self.identity = self.binary_identity()

    def binary_identity(self):
        st = os.stat(self.binary)
        return {"size": st.st_size, "mtime": datetime.datetime.fromtimestamp(
            st.st_mtime, datetime.timezone.utc).isoformat(timespec="seconds")}

    def run(self, query, events, data=None):
        """Runs sabot/QUERY.sql with ${EVENTS} = events and ${DATA} = data (the directory of
        the files it reads, for the nexmark-files suite: then `events` is their row count)."""
        with open(os.path.join(self.sql_dir, f"{query}.sql")) as f:
            script = f.read().replace("${EVENTS}", str(events)).replace("${DATA}", data or "")
        path = os.path.join(self.tmp, f"sabot-{query}-{events}.sql")
        with open(path, "w") as f:
            f.write(script)
        if self.binary_identity() != self.identity:
            raise SystemExit(f"compare.py: {self.binary} changed during the benchmark (rebuilt?)")
        wall, cpu, rss, other, stdout, stderr = run_measured([self.binary, "run", path])
        # "job 1: 2000000 events in 0.24s (8174332 events/s), 2000000 rows out, 0 late rows dropped"
        m = re.search(r"job \d+: (\d+) events in ([\d.]+)s .*?, (\d+) rows out, (\d+) late", stderr)
        if not m:
            raise SystemExit(f"compare.py: no job summary from sabot:\n{stdout}\n{stderr}")
        read, job_s, rows_out, late = int(m[1]), float(m[2]), int(m[3]), int(m[4])
        if read != events * SCANS.get(query, 1):
            raise SystemExit(f"compare.py: sabot read {read} events, expected {events} x "
                             f"{SCANS.get(query, 1)} scans")
        return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss, "other_cpu_s": other,
                "job_s": job_s,
                "rows_out": rows_out, "late_rows": late}


class Flink:
    name = "flink"

    def __init__(self, python, sql_dir, tmp):
        self.python, self.sql_dir, self.tmp = python, sql_dir, tmp
        self.env = dict(os.environ)
        self.env["FLINK_LOG_DIR"] = os.path.join(tmp, "flink-log")  # not into the venv
        os.makedirs(self.env["FLINK_LOG_DIR"], exist_ok=True)

    def run(self, query, events, data=None):
        cmd = [self.python, os.path.join(HERE, "flink_job.py"), query, str(events),
               "--sql-dir", self.sql_dir] + (["--data", data] if data else [])
        wall, cpu, rss, other, stdout, stderr = run_measured(cmd, env=self.env)
        lines = [l for l in stdout.splitlines() if l.startswith("RESULT ")]
        if not lines:
            raise SystemExit(f"compare.py: no RESULT line from flink_job.py:\n{stdout}\n{stderr}")
        report = json.loads(lines[-1][len("RESULT "):])
        return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss, "other_cpu_s": other,
                "job_s": report["job_net_runtime_s"],
                "jvm_cpu_s_proc": report["jvm_cpu_s_proc"],
                # what is not the JVM's (as /proc saw it just before it was stopped): the Python
                # client, and the JVM's shutdown; should be small and constant
                "non_jvm_cpu_s": cpu - report["jvm_cpu_s_proc"],
                "gateway_start_s": report["gateway_start_s"],
                "insert_s": report["insert_s"]}


def nexmark_files(binary, events, tmp):
    """The directory of the Nexmark bids of `events` events as CSV files, and their row count.

    Written once by Sabot (sabot/nexmark-gen.sql: the nexmark source into a filesystem sink) into
    DATA_CACHE/bids-EVENTS, and reused while that directory exists. The sink renames each file to
    its final name only when complete; the directory is written under a temporary name, checked
    (no in-progress or hidden files, as many lines as the sink reported rows) and renamed, and a
    `_rows` file (ignored by both engines' readers: names starting with `_` or `.` are not data)
    records the row count."""
    final = os.path.join(DATA_CACHE, f"bids-{events}")
    marker = os.path.join(final, "_rows")
    if os.path.exists(marker):
        with open(marker) as f:
            return final, int(f.read())
    os.makedirs(DATA_CACHE, exist_ok=True)
    work = os.path.join(DATA_CACHE, f".bids-{events}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with open(os.path.join(HERE, "sabot", "nexmark-gen.sql")) as f:
        script = f.read().replace("${EVENTS}", str(events)).replace("${DATA}", work)
    path = os.path.join(tmp, f"nexmark-gen-{events}.sql")
    with open(path, "w") as f:
        f.write(script)
    print(f"# writing the Nexmark bids of {events} events into {final}", flush=True)
    p = subprocess.run([binary, "run", path], capture_output=True, text=True)
    m = re.search(r"job \d+: (\d+) events in .*?, (\d+) rows out", p.stderr)
    if p.returncode != 0 or not m:
        raise SystemExit(f"compare.py: generating {final} failed:\n{p.stdout}\n{p.stderr}")
    rows = int(m[2])
    names = sorted(os.listdir(work))
    partial = [n for n in names if n.startswith((".", "_")) or n.endswith(".inprogress")]
    if partial or not names:
        raise SystemExit(f"compare.py: {work}: in-progress files {partial} or no files")
    lines = 0
    for n in names:
        with open(os.path.join(work, n), "rb") as f:
            lines += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
    if lines != rows:
        raise SystemExit(f"compare.py: {work} has {lines} lines, the sink wrote {rows} rows")
    with open(os.path.join(work, "_rows"), "w") as f:
        f.write(str(rows))
    os.rename(work, final)
    return final, rows


def nexmark_tables(binary, events, tmp):
    """The directory of the Nexmark bids, auctions and people of `events` events as CSV files (in
    bid/, auction/ and person/), and their row counts by table.

    Written once by Sabot (sabot/nexmark-gen-tables.sql) into DATA_CACHE/nexmark-EVENTS and
    checked as `nexmark_files` checks the bids: under a temporary name, no in-progress or hidden
    files, as many lines as each sink reported rows; `_rows` records the counts."""
    final = os.path.join(DATA_CACHE, f"nexmark-{events}")
    marker = os.path.join(final, "_rows")
    if os.path.exists(marker):
        with open(marker) as f:
            return final, json.load(f)
    os.makedirs(DATA_CACHE, exist_ok=True)
    work = os.path.join(DATA_CACHE, f".nexmark-{events}.tmp-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with open(os.path.join(HERE, "sabot", "nexmark-gen-tables.sql")) as f:
        script = f.read().replace("${EVENTS}", str(events)).replace("${DATA}", work)
    path = os.path.join(tmp, f"nexmark-gen-tables-{events}.sql")
    with open(path, "w") as f:
        f.write(script)
    print(f"# writing the Nexmark tables of {events} events into {final}", flush=True)
    p = subprocess.run([binary, "run", path], capture_output=True, text=True)
    # One job per table, in the script's order.
    jobs = re.findall(r"job \d+: \d+ events in .*?, (\d+) rows out", p.stderr)
    if p.returncode != 0 or len(jobs) != 3:
        raise SystemExit(f"compare.py: generating {final} failed:\n{p.stdout}\n{p.stderr}")
    counts = {}
    for table, rows in zip(("bid", "auction", "person"), jobs):
        directory = os.path.join(work, table)
        names = sorted(os.listdir(directory))
        partial = [n for n in names if n.startswith((".", "_")) or n.endswith(".inprogress")]
        if partial or not names:
            raise SystemExit(f"compare.py: {directory}: in-progress files {partial} or no files")
        lines = 0
        for n in names:
            with open(os.path.join(directory, n), "rb") as f:
                lines += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 24), b""))
        if lines != int(rows):
            raise SystemExit(f"compare.py: {directory} has {lines} lines, the sink wrote {rows}")
        counts[table] = lines
    with open(os.path.join(work, "_rows"), "w") as f:
        json.dump(counts, f)
    os.rename(work, final)
    return final, counts


TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\d)[ T](\d\d:\d\d:\d\d(?:\.\d+)?)Z?$")


def normalized_rows(directory):
    """The rows of the CSV files in `directory` (not hidden ones), each field normalised (numbers
    and timestamps as values, so that `1.000` = `1` and `2024-01-01 00:00:10` =
    `2024-01-01T00:00:10.000`), as a sorted list of row hashes; and the in-progress files."""
    import csv
    from decimal import Decimal, InvalidOperation
    hashes, partial = [], []
    for name in sorted(os.listdir(directory)):
        if name.startswith((".", "_")):
            partial.append(name)
            continue
        with open(os.path.join(directory, name), newline="") as f:
            for fields in csv.reader(f):
                row = []
                for x in fields:
                    t = TIMESTAMP.match(x)
                    if t:
                        x = datetime.datetime.fromisoformat(f"{t[1]}T{t[2]}").replace(
                            tzinfo=datetime.timezone.utc).timestamp()
                    else:
                        try:
                            x = Decimal(x).normalize()
                        except InvalidOperation:
                            pass
                    row.append(str(x))
                hashes.append(hash(tuple(row)))
    hashes.sort()
    return hashes, partial


def verify(runners, inputs, tmp):
    """Runs every query once per engine over its input (`inputs`: (query, rows, the directory
    of its files)) with its blackhole sink replaced by a CSV filesystem sink, and compares the
    output rows."""
    ok = True
    for q, rows, data in inputs:
        outs = {}
        for e, runner in runners.items():
            sql_dir = os.path.join(tmp, "verify-sql", e)
            os.makedirs(sql_dir, exist_ok=True)
            out = os.path.join(tmp, "verify-out", e, q)
            os.makedirs(out)
            with open(os.path.join(runner.sql_dir, f"{q}.sql")) as f:
                script = f.read()
            script = script.replace("'connector' = 'blackhole'", "'connector' = 'filesystem', "
                                    f"'path' = '{out}', 'format' = 'csv'")
            with open(os.path.join(sql_dir, f"{q}.sql"), "w") as f:
                f.write(script)
            saved, runner.sql_dir = runner.sql_dir, sql_dir
            try:
                m = runner.run(q, rows, data)
            finally:
                runner.sql_dir = saved
            hashes, partial = normalized_rows(out)
            outs[e] = hashes
            print(f"verify {q:<14} {e:<5} {rows} rows in: {len(hashes)} rows out"
                  + (f" (sink reported {m['rows_out']})" if "rows_out" in m else "")
                  + (f", NOT COMMITTED: {partial}" if partial else ""), flush=True)
            shutil.rmtree(out, ignore_errors=True)
        if len(outs) == 2:
            same = outs["sabot"] == outs["flink"]
            ok &= same
            print(f"verify {q:<14} " + ("same rows" if same else
                  f"DIFFERENT rows: sabot {len(outs['sabot'])}, flink {len(outs['flink'])}"),
                  flush=True)
    if not ok:
        raise SystemExit("compare.py: the engines' results differ")


def fmt_rate(x):
    if x is None:
        return "-"
    return f"{x / 1e6:.2f}M" if x >= 1e6 else f"{x / 1e3:.0f}k"


def command_output(cmd):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return (p.stdout + p.stderr).strip()
    except (OSError, subprocess.SubprocessError) as e:
        return f"unavailable: {e}"


def fmt_events(n):
    return f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}k"


def summarize(margins, queries, engines):
    """Per query and engine: (median, min, max) over runs of the marginal and raw figures, and
    the Sabot/Flink ratios of the medians."""
    def med(engine, query, key):
        xs = [m[key] for m in margins if m["engine"] == engine and m["query"] == query
              and m[key] is not None]
        return (statistics.median(xs), min(xs), max(xs)) if xs else (None, None, None)

    summary = []
    for q in queries:
        row = {"suite": SUITE_OF.get(q, "datagen"), "query": q}
        for e in engines:
            row[e] = {"marginal_events_per_core_s": med(e, q, "marginal_events_per_core_s"),
                      "raw_events_per_core_s": med(e, q, "raw_events_per_core_s")}
        if "sabot" in engines and "flink" in engines:
            for key in ("marginal_events_per_core_s", "raw_events_per_core_s"):
                s, f = row["sabot"][key][0], row["flink"][key][0]
                row[f"ratio_{key}"] = s / f if s and f else None
        summary.append(row)
    return summary


def print_table(summary, meta, suite="datagen"):
    """The summary rows of one suite as a Markdown table."""
    summary = [row for row in summary if row.get("suite", "datagen") == suite]
    if not summary:
        return
    sizes = meta["events"] if suite == "datagen" else meta["suite_events"][suite]
    engines = [e for e in ENGINES if e in sizes]
    both = len(engines) == 2
    # The raw figure includes start-up costs, so it depends on the event count: a raw ratio is
    # only meaningful when both engines processed the same number of events.
    same_raw_size = both and sizes["sabot"][1] == sizes["flink"][1]

    def cell(x):
        med_, lo, hi = x
        return f"{fmt_rate(med_)} ({fmt_rate(lo)}-{fmt_rate(hi)})" if med_ else "-"

    print()
    what = {"datagen": "events", "nexmark-files": "input rows (bids)",
            "nexmark-joins": "input rows (of the tables the query reads; sizes: Nexmark events "
                             "generated)"}[suite]
    print(f"suite {suite}: {what}" +
          "/s per core, median of %d runs (min-max). marginal: extra events / extra CPU s "
          "from the smaller to the larger run; raw: events / CPU s of the larger run"
          % meta["runs"])
    heads = ["query"] + [f"{e} marginal ({fmt_events(sizes[e][0])}->{fmt_events(sizes[e][1])})"
                         for e in engines]
    if both:
        heads.append("sabot/flink")
    heads += [f"{e} raw ({fmt_events(sizes[e][1])})" for e in engines]
    if same_raw_size:
        heads.append("raw ratio")
    table = []
    for row in summary:
        cells = [row["query"]] + [cell(row[e]["marginal_events_per_core_s"]) for e in engines]
        if both:
            ratio = row["ratio_marginal_events_per_core_s"]
            cells.append(f"{ratio:.1f}x" if ratio else "-")
        cells += [cell(row[e]["raw_events_per_core_s"]) for e in engines]
        if same_raw_size:
            ratio = row["ratio_raw_events_per_core_s"]
            cells.append(f"{ratio:.1f}x" if ratio else "-")
        table.append(cells)
    widths = [max(len(str(c)) for c in col) for col in zip(heads, *table)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(heads, widths)) + " |")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for cells in table:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)) + " |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=4_000_000,
                        help="N: events of the smaller run (default 4000000)")
    parser.add_argument("--mult", type=int, default=4,
                        help="the larger run has MULT*N events (default 4)")
    parser.add_argument("--sabot-scale", type=int, default=5,
                        help="Sabot runs K*N and K*MULT*N events, for a measurement as long as "
                             "Flink's (default 5; 1 = exactly Flink's event counts)")
    parser.add_argument("--runs", type=int, default=2, help="runs per engine and query (default 2)")
    parser.add_argument("--suite", default="all", choices=list(SUITES) + ["all"],
                        help="datagen: each engine's own generator; nexmark-files: the same "
                             "pre-generated Nexmark bids read from CSV files; all (default)")
    parser.add_argument("--queries", default=None,
                        help=f"comma-separated, of {','.join(QUERIES)} (default: the suite's)")
    parser.add_argument("--nexmark-events", type=int, default=2_000_000,
                        help="nexmark-files: Nexmark events (all kinds; 46 of 50 are bids) of the "
                             "smaller input; the larger has MULT times more (default 2000000)")
    parser.add_argument("--nexmark-mult", type=int, default=3,
                        help="nexmark-files: MULT (default 3)")
    parser.add_argument("--verify", action="store_true",
                        help="nexmark-files and nexmark-joins: instead of measuring, run each "
                             "query that only appends once per engine on the smaller input with "
                             "the blackhole sink replaced by CSV files, and compare the rows")
    parser.add_argument("--engines", default=",".join(ENGINES), help="sabot,flink (default both)")
    parser.add_argument("--wait-idle", type=float, default=600, metavar="SECONDS",
                        help="before each measurement wait (at most SECONDS) until the machine "
                             "is idle (default 600; 0: do not wait)")
    parser.add_argument("--retry-disturbed", type=int, default=2, metavar="K",
                        help="repeat a measurement up to K times when other processes used a "
                             "noticeable amount of CPU meanwhile (default 2)")
    parser.add_argument("--json", default=os.path.join(HERE, "results.json"),
                        help="write every run here (default benches/compare/results.json)")
    parser.add_argument("--sabot", default=os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/sabot-target")),
        "release", "sabot"), help="the Sabot binary (release build)")
    parser.add_argument("--flink-python", default=os.path.expanduser(
        "~/.cache/sabot-flink-venv/bin/python"), help="python of the venv holding apache-flink")
    parser.add_argument("--report", metavar="FILE",
                        help="print the table of a JSON file written earlier, and exit")
    args = parser.parse_args()
    if args.report:
        with open(args.report) as f:
            data = json.load(f)
        queries = list(dict.fromkeys(m["query"] for m in data["marginal"]))
        engines = [e for e in ENGINES if any(m["engine"] == e for m in data["marginal"])]
        print(f"# {data['meta']['date']}: {data['meta']['command']}")
        summary = summarize(data["marginal"], queries, engines)
        for suite in SUITES:
            print_table(summary, data["meta"], suite)
        return

    if args.queries:
        queries = [q for q in args.queries.split(",") if q]
    else:
        queries = [q for s_, qs in SUITES.items() if args.suite in (s_, "all") for q in qs]
    engines = [e for e in args.engines.split(",") if e]
    for q in queries:
        if q not in QUERIES:
            parser.error(f"unknown query {q!r}")
    for e in engines:
        if e not in ENGINES:
            parser.error(f"unknown engine {e!r}")
    if args.mult < 2 or args.events < 1 or args.runs < 1 or args.sabot_scale < 1:
        parser.error("need --events >= 1, --mult >= 2, --runs >= 1, --sabot-scale >= 1")

    tmp = tempfile.mkdtemp(prefix="sabot-vs-flink-")
    runners = {}
    if "sabot" in engines:
        if not os.access(args.sabot, os.X_OK):
            raise SystemExit(f"compare.py: no Sabot binary at {args.sabot} "
                             "(cargo build --release, or pass --sabot)")
        runners["sabot"] = Sabot(args.sabot, os.path.join(HERE, "sabot"), tmp)
    if "flink" in engines:
        if not os.access(args.flink_python, os.X_OK):
            raise SystemExit(f"compare.py: no python at {args.flink_python} (run run.sh)")
        runners["flink"] = Flink(args.flink_python, os.path.join(HERE, "flink"), tmp)

    sizes = {e: [args.events * (args.sabot_scale if e == "sabot" else 1),
                 args.events * args.mult * (args.sabot_scale if e == "sabot" else 1)]
             for e in engines}
    # nexmark-files: the input files (written once by Sabot, cached), the same for both engines;
    # the event counts are their row counts (bids).
    files = {}  # row count -> directory
    nexmark_sizes = None
    if any(SUITE_OF[q] == "nexmark-files" for q in queries):
        for n in (args.nexmark_events, args.nexmark_events * args.nexmark_mult):
            d, rows = nexmark_files(args.sabot, n, tmp)
            files[rows] = d
        nexmark_sizes = {e: sorted(files) for e in engines}
    # nexmark-joins: per query, (input rows, directory) at both sizes.
    joins = {}
    if any(SUITE_OF[q] == "nexmark-joins" for q in queries):
        tables = [nexmark_tables(args.sabot, n, tmp)
                  for n in (args.nexmark_events, args.nexmark_events * args.nexmark_mult)]
        for q in queries:
            if SUITE_OF[q] == "nexmark-joins":
                joins[q] = [(sum(counts[t] for t in JOIN_TABLES[q]), d) for d, counts in tables]
    if args.verify:
        try:
            # An updating query's changelog cannot go to a CSV file: not verified.
            inputs = [(q, min(files), files[min(files)]) for q in queries
                      if SUITE_OF[q] == "nexmark-files" and q not in UPDATING]
            inputs += [(q, *joins[q][0]) for q in queries
                       if SUITE_OF[q] == "nexmark-joins" and q not in UPDATING]
            verify(runners, inputs, tmp)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return
    meta = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "host": platform.node(), "cpus": os.cpu_count(), "kernel": platform.release(),
        "sabot_binary": args.sabot if "sabot" in engines else None,
        "sabot_version": command_output([args.sabot, "--version"]) if "sabot" in engines else None,
        "sabot_binary_identity": runners["sabot"].identity if "sabot" in engines else None,
        "repo_git_head": command_output(["git", "-C", REPO, "describe", "--always", "--dirty"]),
        "flink_version": command_output([args.flink_python, "-c",
                                         "import pyflink.version as v; print(v.__version__)"])
        if "flink" in engines else None,
        "java": command_output(["java", "-version"]).splitlines()[0] if shutil.which("java") else None,
        "events": sizes, "runs": args.runs, "parallelism": 1,
        "suite_events": {"datagen": sizes, "nexmark-files": nexmark_sizes,
                         # (the sizes of the generator; each query reads its tables' rows)
                         "nexmark-joins": {e: [args.nexmark_events,
                                               args.nexmark_events * args.nexmark_mult]
                                           for e in engines} if joins else None},
        "nexmark_files": {str(rows): d for rows, d in files.items()},
        "nexmark_generator_events": [args.nexmark_events, args.nexmark_events * args.nexmark_mult],
        "nexmark_join_rows": {q: [n for n, _ in points] for q, points in joins.items()},
    }
    busy0, t0 = machine_busy_s(), time.monotonic()
    time.sleep(1.0)
    load = (machine_busy_s() - busy0) / (time.monotonic() - t0)
    meta["busy_cores_before_start"] = load
    if load > 0.2 and args.wait_idle <= 0:
        print(f"# WARNING: the machine is busy ({load:.1f} cores in use before starting): "
              "the numbers will be disturbed (see --wait-idle)", flush=True)
    built = meta["sabot_binary_identity"]["mtime"] if meta["sabot_binary_identity"] else "-"
    print(f"# {meta['date']}  repo {meta['repo_git_head']}, sabot binary of {built}  "
          f"flink {meta['flink_version']}  {meta['cpus']} CPUs", flush=True)
    if any(SUITE_OF[q] == "datagen" for q in queries):
        print(f"# datagen events: " + ", ".join(f"{e} {sizes[e][0]} and {sizes[e][1]}"
                                                for e in engines), flush=True)
    if nexmark_sizes:
        print("# nexmark-files: both engines read " + " and ".join(
            f"{rows} bids ({d})" for rows, d in sorted(files.items())), flush=True)

    runs = []    # one entry per process
    margins = []  # one entry per (run, query, engine)
    try:
        for r in range(1, args.runs + 1):
            for q in queries:
                for e in engines:
                    points = []
                    suite = SUITE_OF[q]
                    if suite == "datagen":
                        points_in = [(n, None) for n in sizes[e]]
                    elif suite == "nexmark-joins":
                        points_in = joins[q]
                    else:
                        points_in = [(n, files[n]) for n in nexmark_sizes[e]]
                    for n, data in points_in:
                        for attempt in range(args.retry_disturbed + 1):
                            if args.wait_idle > 0:
                                wait_until_idle(args.wait_idle)
                            m = runners[e].run(q, n, data)
                            if not disturbed(m):
                                break
                            if attempt < args.retry_disturbed:
                                print(f"run {r} {q:<14} {e:<5} {n:>10} events: disturbed (other "
                                      f"processes used {m['other_cpu_s']:.1f} cpu s), again",
                                      flush=True)
                        m["disturbed"] = disturbed(m)
                        m.update({"suite": suite, "engine": e, "query": q, "run": r, "events": n,
                                  "events_per_s": n / m["wall_s"],
                                  "events_per_core_s": n / m["cpu_s"],
                                  "busy_cores": m["cpu_s"] / m["wall_s"]})
                        runs.append(m)
                        points.append(m)
                        print(f"run {r} {q:<14} {e:<5} {n:>10} events: wall {m['wall_s']:7.2f} s "
                              f"cpu {m['cpu_s']:7.2f} s ({m['busy_cores']:.2f} cores) "
                              f"rss {m['peak_rss_mib']:6.0f} MiB  raw {fmt_rate(m['events_per_core_s'])}/core"
                              + (f"  [jvm {m['jvm_cpu_s_proc']:.2f} s, rest {m['non_jvm_cpu_s']:.2f} s]"
                                 if e == "flink" else "")
                              + (f"  WARNING: other processes used {m['other_cpu_s']:.1f} cpu s"
                                 if m["disturbed"] else ""), flush=True)
                    a, b = points
                    d_cpu, d_wall = b["cpu_s"] - a["cpu_s"], b["wall_s"] - a["wall_s"]
                    d_ev = b["events"] - a["events"]
                    margin = {"suite": suite, "engine": e, "query": q, "run": r,
                              "events": [a["events"], b["events"]],
                              "delta_cpu_s": d_cpu, "delta_wall_s": d_wall,
                              "marginal_events_per_core_s": d_ev / d_cpu if d_cpu > 0 else None,
                              "marginal_events_per_s": d_ev / d_wall if d_wall > 0 else None,
                              "raw_events_per_core_s": b["events_per_core_s"]}
                    margins.append(margin)
                    print(f"run {r} {q:<14} {e:<5} marginal {fmt_rate(margin['marginal_events_per_core_s'])} "
                          f"events/s per core ({d_ev} events in {d_cpu:.2f} cpu s)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    summary = summarize(margins, queries, engines)
    for suite in SUITES:
        print_table(summary, meta, suite)

    bad = sum(1 for m in runs if m["disturbed"])
    meta["disturbed_measurements"] = bad
    if bad:
        print(f"\nWARNING: {bad} of {len(runs)} measurements ran while other processes used a "
              "noticeable amount of CPU (see other_cpu_s in the JSON)")
    with open(args.json, "w") as f:
        json.dump({"meta": meta, "summary": summary, "marginal": margins, "runs": runs}, f,
                  indent=1)
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
