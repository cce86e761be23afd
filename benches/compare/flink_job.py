#!/usr/bin/env python3
"""Run one benchmark query on Apache Flink (PyFlink, local mode) and report what it cost.

    flink_job.py QUERY EVENTS [--sql-dir DIR] [--data DIR]

Runs flink/QUERY.sql (with ${EVENTS} replaced by EVENTS, ${DATA} by the --data directory) in a streaming TableEnvironment at
parallelism 1. PyFlink starts a gateway JVM as a child of this process; the job runs in a
MiniCluster inside that JVM. When the job has finished, this script stops the JVM and *waits for
it*, so that the JVM's CPU time is added to this process's children rusage: whoever waits for this
process (compare.py, with os.wait4) gets python + JVM CPU time in one figure.

The last line of standard output is `RESULT {json}` with the timings seen from here and, as a
cross-check of the accounting, the JVM's own utime+stime read from /proc just before it was
stopped.
"""
import argparse
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CLK_TCK = os.sysconf("SC_CLK_TCK")


def split_statements(text):
    """Statements of a script: `--` comment lines dropped, split at `;` ending a line."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("--")]
    statements, current = [], []
    for line in lines:
        current.append(line)
        if line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().rstrip(";"))
            current = []
    rest = "\n".join(current).strip()
    if rest:
        statements.append(rest)
    return [s for s in statements if s]


def child_pids(pid):
    """Processes whose parent is `pid` (scans /proc: works without CONFIG_PROC_CHILDREN)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            found.append(int(entry))
    return found


def proc_cpu_seconds(pid):
    """utime + stime of `pid` itself (its threads included), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state) of proc(5); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def proc_comm(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query")
    parser.add_argument("events", type=int)
    parser.add_argument("--sql-dir", default=os.path.join(HERE, "flink"))
    parser.add_argument("--data", default="",
                        help="the directory of input files, replaces ${DATA} (nexmark-files suite)")
    args = parser.parse_args()

    with open(os.path.join(args.sql_dir, f"{args.query}.sql")) as f:
        script = f.read().replace("${EVENTS}", str(args.events)).replace("${DATA}", args.data)
    statements = split_statements(script)

    t_start = time.monotonic()
    from pyflink.table import EnvironmentSettings, TableEnvironment

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = t_env.get_config()
    config.set("parallelism.default", "1")
    config.set("table.exec.resource.default-parallelism", "1")
    config.set("table.local-time-zone", "UTC")
    t_gateway = time.monotonic()

    for statement in statements[:-1]:
        t_env.execute_sql(statement)
    t_submit = time.monotonic()
    result = t_env.execute_sql(statements[-1])
    result.wait()
    t_done = time.monotonic()

    net_runtime_s = None
    try:
        job_result = result.get_job_client().get_job_execution_result().result()
        net_runtime_s = job_result.get_net_runtime() / 1000.0
    except Exception as e:  # informational only
        print(f"flink_job.py: could not read the job's net runtime: {e}", file=sys.stderr)

    jvms = [p for p in child_pids(os.getpid()) if proc_comm(p) == "java"]
    if len(jvms) != 1:
        raise SystemExit(f"flink_job.py: expected one gateway JVM child, found {jvms}")
    jvm = jvms[0]
    jvm_cpu_s = proc_cpu_seconds(jvm)

    # Stop the JVM and reap it here, so that its rusage is added to ours (RUSAGE_CHILDREN).
    os.kill(jvm, signal.SIGTERM)
    deadline = time.monotonic() + 60
    while True:
        pid, _status = os.waitpid(jvm, os.WNOHANG)
        if pid == jvm:
            break
        if time.monotonic() > deadline:
            os.kill(jvm, signal.SIGKILL)
            os.waitpid(jvm, 0)
            break
        time.sleep(0.02)

    report = {
        "engine": "flink",
        "query": args.query,
        "events": args.events,
        "gateway_start_s": round(t_gateway - t_start, 3),
        "ddl_s": round(t_submit - t_gateway, 3),
        "insert_s": round(t_done - t_submit, 3),
        "job_net_runtime_s": net_runtime_s,
        "jvm_cpu_s_proc": jvm_cpu_s,
    }
    print("RESULT " + json.dumps(report), flush=True)
    sys.stderr.flush()
    # The gateway is gone: skip PyFlink's exit handlers, which would try to talk to it.
    os._exit(0)


if __name__ == "__main__":
    main()
