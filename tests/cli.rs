//! The `sabot run` command, driven as a user would: scripts in, rows and summaries out.

use std::io::Write;
use std::process::{Command, Stdio};

fn sabot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sabot"))
}

fn run_script(script: &str, args: &[&str]) -> (i32, String, String) {
    let mut child = sabot()
        .arg("run")
        .args(args)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sabot");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(script.as_bytes())
        .expect("write script");
    let out = child.wait_with_output().expect("sabot ran");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

const LATE_SCRIPT: &str = "
CREATE TABLE t (k BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts);
INSERT INTO t VALUES
  (1, TIMESTAMP '2024-01-01 00:00:01'), (1, TIMESTAMP '2024-01-01 00:00:12'),
  (2, TIMESTAMP '2024-01-01 00:00:03'), (1, TIMESTAMP '2024-01-01 00:00:25'),
  (1, TIMESTAMP '2024-01-01 00:00:11');
SELECT k, window_start, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))
GROUP BY k, window_start, window_end;
";

#[test]
fn late_rows_are_dropped_and_counted_in_the_summary() {
    // 03 arrives after 12 (window [0,10) fired) and 11 after 25 (window [10,20) fired).
    let (code, stdout, stderr) = run_script(LATE_SCRIPT, &["--format", "csv"]);
    assert_eq!(code, 0, "{stderr}");
    let mut lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.remove(0), "k,window_start,n");
    lines.sort();
    assert_eq!(
        lines,
        vec![
            "1,2024-01-01T00:00:00,1",
            "1,2024-01-01T00:00:10,1",
            "1,2024-01-01T00:00:20,1"
        ]
    );
    assert!(stderr.contains("2 late rows dropped"), "{stderr}");
    assert!(stderr.contains("inserted 5 rows"), "{stderr}");
}

#[test]
fn json_output_is_one_object_per_line() {
    let (code, stdout, stderr) = run_script(
        "SELECT 1 AS a, 'x' AS b UNION ALL SELECT 2, NULL ORDER BY a;",
        &["--format", "json"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "{\"a\":1,\"b\":\"x\"}\n{\"a\":2,\"b\":null}\n");
}

#[test]
fn table_output_has_a_header_and_a_row_count() {
    let (code, stdout, stderr) = run_script("SELECT 42 AS answer;", &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, " answer\n--------\n 42\n(1 row)\n");
}

#[test]
fn an_error_names_the_statement_and_line_and_fails_the_run() {
    let script = "CREATE TABLE t (a BIGINT, ts TIMESTAMP(3), WATERMARK FOR ts AS ts);\n\nSELECT nope FROM t;\nSELECT 1;";
    let (code, stdout, stderr) = run_script(script, &[]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains("error in statement 2 (line 3):"),
        "{stderr}"
    );
    assert!(stderr.contains("SELECT nope FROM t"), "{stderr}");
    assert!(stderr.contains("nope"), "{stderr}");
    // The statement after the error never ran.
    assert!(!stdout.contains('1'), "{stdout}");
}

#[test]
fn a_script_file_and_options() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("q.sql");
    std::fs::write(
        &path,
        "CREATE TABLE g (id BIGINT) WITH ('connector' = 'datagen', 'rows-per-second' = '0',
           'fields.id.kind' = 'sequence', 'fields.id.start' = '1', 'fields.id.end' = '10');
         SELECT SUM(id) AS total FROM g;",
    )
    .expect("write script");
    let out = sabot()
        .args(["run", "--format", "csv", "--parallelism", "2"])
        .arg(&path)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "total\n55\n");
}

#[test]
fn a_missing_script_is_a_clear_error() {
    let out = sabot()
        .args(["run", "/no/such/file.sql"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot read /no/such/file.sql"), "{stderr}");
}

#[test]
fn print_sink_prints_rows_as_flink_does() {
    let (code, stdout, stderr) = run_script(
        "CREATE TABLE out (k BIGINT, n BIGINT) WITH ('connector' = 'print', 'print-identifier' = 'w');
         INSERT INTO out VALUES (1, 2), (3, NULL);",
        &["--parallelism", "1"],
    );
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "w> +I[1, 2]\nw> +I[3, NULL]\n");
}

#[test]
fn skipped_malformed_records_are_counted_in_the_summary() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("events.json");
    std::fs::write(
        &data,
        "{\"v\": 1}\n{\"v\": oops}\n{\"v\": 3}\nnot json at all\n",
    )
    .expect("write data");
    let script = format!(
        "CREATE TABLE e (v BIGINT) WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json', 'json.ignore-parse-errors' = 'true');
         SELECT SUM(v) AS total FROM e;",
        data.display()
    );
    let (code, stdout, stderr) = run_script(&script, &["--format", "csv"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "total\n4\n");
    assert!(stderr.contains("2 malformed records skipped"), "{stderr}");
}

#[test]
fn ctrl_c_stops_an_unbounded_job_cleanly() {
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("forever.sql");
    std::fs::write(
        &script,
        "CREATE TABLE bid (auction BIGINT, date_time TIMESTAMP(3), WATERMARK FOR date_time AS date_time)
           WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid', 'tps' = '1000');
         SELECT window_start, COUNT(*) AS bids FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
         GROUP BY window_start, window_end;",
    )
    .expect("write script");
    let child = sabot()
        .args(["run", "--format", "csv"])
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sabot");
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let out = child.wait_with_output().expect("sabot ended");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("stopped by Ctrl-C; job"), "{stderr}");
    // Windows closed while it ran were printed: the header and at least one full window.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("window_start,bids\n"), "{stdout}");
    assert!(stdout.lines().count() >= 2, "{stdout}");
}

/// Runs `sabot bench ...` with `args` and `--json FILE`; its JSON result, stdout and stderr.
fn bench_json(args: &[&str]) -> (serde_json::Value, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("result.json");
    let out = sabot()
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let result = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    (result, stdout, stderr)
}

/// `sabot bench kafka` produces bids into a mock cluster in a child process, reads them all
/// back, and reports both runs (a small run here; the figures come from release builds).
#[test]
fn bench_kafka_produces_and_consumes_every_record() {
    let (results, stdout, _) =
        bench_json(&["bench", "kafka", "--records", "20000", "--partitions", "4"]);
    assert!(stdout.contains("kafka-produce"), "{stdout}");
    assert!(stdout.contains("kafka-consume"), "{stdout}");
    let produced = results[0]["rows_out"].as_u64().unwrap();
    let consumed = results[1]["rows_out"].as_u64().unwrap();
    // 20 000 bids are 46 of every 50 of the 21 739 Nexmark events generated.
    assert!((19_990..=20_010).contains(&produced), "{produced}");
    assert_eq!(consumed, produced);
}

/// `sabot bench nexmark --source kafka` loads the query's Nexmark tables into topics of a mock
/// cluster, then runs the query over them: every bid loaded is read and passes q0.
#[test]
fn bench_nexmark_over_kafka_reads_every_loaded_event() {
    let (results, _, stderr) = bench_json(&[
        "bench", "nexmark", "--query", "q0", "--events", "20000", "--source", "kafka",
    ]);
    assert!(stderr.contains("loading bid into Kafka"), "{stderr}");
    assert_eq!(results[0]["query"], "q0 (kafka)");
    // 46 of every 50 of the 20 000 events are bids; q0 passes every one through.
    assert_eq!(results[0]["rows_read"].as_u64(), Some(18_400));
    assert_eq!(results[0]["rows_out"].as_u64(), Some(18_400));
}

/// The updating queries run over Kafka too: q6 (an OVER over a top-1 over a regular join), q9
/// and q15 read every loaded event of their tables and emit changelogs (their answers are
/// checked over the generator in tests/nexmark.rs).
#[test]
fn bench_nexmark_runs_updating_queries_over_kafka() {
    let (results, _, _) = bench_json(&[
        "bench",
        "nexmark",
        "--query",
        "q6,q9,q15",
        "--events",
        "20000",
        "--source",
        "kafka",
    ]);
    let result = |query: &str| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["query"] == format!("{query} (kafka)"))
            .cloned()
            .unwrap_or_else(|| panic!("no {query} in {results}"))
    };
    // Of every 50 events, 46 are bids and 3 auctions.
    for (query, read) in [
        ("q6", 18_400 + 1_200),
        ("q9", 18_400 + 1_200),
        ("q15", 18_400),
    ] {
        let r = result(query);
        assert_eq!(r["rows_read"].as_u64(), Some(read), "{query}: {r}");
        assert!(r["rows_out"].as_u64().unwrap_or(0) > 0, "{query}: {r}");
    }
}

/// The processing-time, OVER, file-writing and temporal join queries run in `sabot bench
/// nexmark`: o1 emits every bid once (with its frame's aggregates), q12 counts every bid in
/// some window of the clock, q10 writes every bid, t1 joins most bids with their auction, q6
/// (an OVER aggregate over a changelog) emits and updates averages (its answer is checked in
/// tests/nexmark.rs).
#[test]
fn bench_nexmark_runs_the_processing_time_and_over_queries() {
    let (results, _, _) = bench_json(&[
        "bench",
        "nexmark",
        "--query",
        "q12,o1,q10,t1,q6",
        "--events",
        "20000",
    ]);
    let rows = |query: &str| {
        results
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["query"] == query)
            .and_then(|r| r["rows_out"].as_u64())
            .unwrap_or_else(|| panic!("no {query} in {results}"))
    };
    // 46 of every 50 of the 20 000 events are bids.
    assert_eq!(rows("o1"), 18_400);
    // One row per bidder and window of the clock: at least one, at most one per bid.
    assert!((1..=18_400).contains(&rows("q12")), "{results}");
    // q10 writes every bid into its partition's files (deleted after the run).
    assert_eq!(rows("q10"), 18_400);
    // t1: every bid whose auction exists at its time (the generator also bids a few auctions
    // ahead, which the inner join drops).
    assert!((17_000..18_400).contains(&rows("t1")), "{results}");
    assert!(rows("q6") > 0, "{results}");
}

/// `sabot bench nexmark --backend rocksdb` runs each query (here in child processes) with its
/// window state in RocksDB: the same output rows as the memory backend.
#[test]
fn bench_nexmark_with_rocksdb_state_gives_the_same_rows() {
    let run = |backend: &str| {
        let (results, _, _) = bench_json(&[
            "bench",
            "nexmark",
            "--query",
            "q5-agg,q11",
            "--events",
            "20000",
            "--backend",
            backend,
        ]);
        results
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["query"].as_str().unwrap().to_string(),
                    r["rows_out"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    let memory = run("memory");
    let rocks = run("rocksdb");
    assert_eq!(memory.len(), 2);
    assert!(memory.iter().all(|(_, rows)| *rows > 0), "{memory:?}");
    for ((mq, mrows), (rq, rrows)) in memory.iter().zip(&rocks) {
        assert_eq!(rq, &format!("{mq} (rocksdb)"));
        assert_eq!(mrows, rrows, "{mq}");
    }
}

/// `sabot bench checkpoint` measures checkpoints of keyed window state, then restarts the job
/// on its directory and reports the recovery from the newest checkpoint.
#[test]
fn bench_checkpoint_measures_checkpoints_and_a_recovery() {
    for backend in ["memory", "rocksdb"] {
        bench_checkpoint_with(backend);
    }
}

fn bench_checkpoint_with(backend: &str) {
    let (result, _, _) = bench_json(&[
        "bench",
        "checkpoint",
        "--keys",
        "10000",
        "--interval",
        "200ms",
        "--checkpoints",
        "2",
        "--backend",
        backend,
    ]);
    let checkpoints = result["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.len(), 2);
    assert!(
        checkpoints.iter().all(|c| c["backend"] == backend),
        "{result}"
    );
    // 10 000 keys of state: more than 10 bytes each in either format.
    assert!(
        checkpoints
            .iter()
            .all(|c| c["stats"]["state_bytes"].as_u64().unwrap() > 100_000),
        "{result}"
    );
    let newest = checkpoints
        .iter()
        .map(|c| c["stats"]["epoch"].as_u64().unwrap())
        .max()
        .unwrap();
    // The restart restores a complete checkpoint at least as new as the measured ones.
    assert!(
        result["recovery"]["epoch"].as_u64().unwrap() >= newest,
        "{result}"
    );
    assert!(result["recovery"]["recovery_ms"].as_f64().unwrap() > 0.0);
}

/// `sabot bench join`: every stream key is an id of the dimension table, so the join emits one
/// row per stream row, like the scan-only baseline.
#[test]
fn bench_join_matches_every_stream_row_once() {
    let (results, _, _) = bench_json(&["bench", "join", "--rows", "20000", "--table-rows", "100"]);
    assert_eq!(results[0]["query"], "scan-only");
    assert_eq!(results[0]["rows_out"].as_u64(), Some(20_000));
    assert_eq!(results[1]["query"], "join-100");
    assert_eq!(results[1]["rows_out"].as_u64(), Some(20_000));
}

/// `SELECT 1+1+...` with 20,000 terms aborted the process with a stack overflow; now the
/// statement is refused (PostgreSQL's "statement too complex") and the script stops with exit
/// code 1, the statement shown shortened.
#[test]
fn a_statement_too_deep_to_plan_is_an_error_not_an_abort() {
    let script = format!("SELECT {};\n", vec!["1"; 20_000].join("+"));
    let (code, _stdout, stderr) = run_script(&script, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("statement too complex"), "{stderr}");
    assert!(!stderr.contains("External error"), "{stderr}");
    assert!(
        stderr.len() < 2_000,
        "the statement is shortened: {} bytes",
        stderr.len()
    );
}
