//! Crash recovery of `sabot run --state-dir`: whatever the crash, the filesystem sink ends up
//! with exactly the rows a batch computation of the same question gives, none lost, none twice.
//!
//! Each test writes a bounded input (two JSON files of a deterministic pseudo-random stream,
//! out of order by up to 0.5 s under a 1 s watermark delay, so no row is late), runs the
//! windowed INSERT with checkpoints every 20 ms, crashes it (a failpoint or `kill -9`), runs it
//! again until it completes, and compares the sink's rows with a batch GROUP BY of the input.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const ROWS_PER_FILE: u64 = 100_000;
const BASE_MS: u64 = 1_704_067_200_000;

fn sabot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sabot"))
}

/// A tiny deterministic generator (64-bit LCG), so the input is the same in every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

fn timestamp(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let t = chrono::DateTime::from_timestamp(secs, ((ms % 1000) * 1_000_000) as u32).unwrap();
    t.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f").to_string()
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Self::with_rows(ROWS_PER_FILE)
    }

    fn with_rows(rows_per_file: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("in")).unwrap();
        let mut rng = Lcg(42);
        for f in 0..2 {
            let mut text = String::new();
            for i in 0..rows_per_file {
                let ts = BASE_MS + i * 3 + 500 - rng.next(500);
                let line = format!(
                    "{{\"k\": {}, \"v\": {}, \"ts\": \"{}\"}}\n",
                    rng.next(50),
                    rng.next(1000),
                    timestamp(ts)
                );
                text.push_str(&line);
            }
            std::fs::write(dir.path().join(format!("in/part{f}.json")), text).unwrap();
        }
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The script: source, sink `out`, and the INSERT of `select` into it.
    fn script(&self, out: &str, select: &str) -> PathBuf {
        let source = format!(
            "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
            self.path("in").display()
        );
        self.script_reading(out, select, &source)
    }

    /// The script, reading the input through the table options `source`.
    fn script_reading(&self, out: &str, select: &str, source: &str) -> PathBuf {
        self.script_with(out, select, source, "")
    }

    /// The script with `extra` statements before the INSERT.
    fn script_with(&self, out: &str, select: &str, source: &str, extra: &str) -> PathBuf {
        let dst = "k BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), n BIGINT, \
                   total BIGINT";
        self.script_into(out, select, source, extra, dst, "csv")
    }

    /// The script inserting into `dst` columns written in `format`.
    fn script_into(
        &self,
        out: &str,
        select: &str,
        source: &str,
        extra: &str,
        dst: &str,
        format: &str,
    ) -> PathBuf {
        let script = format!(
            "SET 'batch-size' = '500';\n{extra}\
             CREATE TABLE src (k BIGINT, v BIGINT, ts TIMESTAMP(3), \
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
               WITH ({source});\n\
             CREATE TABLE dst ({dst}) \
               WITH ('connector' = 'filesystem', 'path' = '{output}', 'format' = '{format}');\n\
             INSERT INTO dst {select};\n",
            output = self.path(out).display(),
        );
        let file = self.path(&format!("{out}.sql"));
        std::fs::write(&file, script).unwrap();
        file
    }

    /// Rows of the batch computation of `batch_select` (a bounded GROUP BY), sorted.
    fn oracle(&self, batch_select: &str) -> Vec<String> {
        let script = self.script("oracle", batch_select);
        let status = sabot()
            .arg("run")
            .arg(&script)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let rows = read_rows(&self.path("oracle"));
        assert!(rows.len() > 100, "the oracle has {} rows", rows.len());
        rows
    }
}

/// Published rows of a filesystem sink directory, sorted (hidden in-progress files excluded).
fn read_rows(dir: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        rows.extend(text.lines().map(str::to_string));
    }
    rows.sort();
    rows
}

fn run_with_state(script: &Path, state: &Path, parallelism: usize, failpoint: Option<&str>) -> i32 {
    run_with_state_env(script, state.as_os_str(), parallelism, failpoint, &[])
}

/// `run_with_state` with a state location that need not be a path, and environment `env`.
fn run_with_state_env(
    script: &Path,
    state: &std::ffi::OsStr,
    parallelism: usize,
    failpoint: Option<&str>,
    env: &[(String, String)],
) -> i32 {
    let mut cmd = sabot();
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    cmd.arg("run")
        .arg(script)
        .arg("--state-dir")
        .arg(state)
        // The input takes about 0.1 s to run (dev build): frequent checkpoints, so that the
        // failpoints of checkpoint 3 are reached.
        .arg("--checkpoint-interval")
        .arg("5ms")
        .arg("--parallelism")
        .arg(parallelism.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(fp) = failpoint {
        cmd.env("SABOT_FAILPOINT", fp);
    }
    let out = cmd.output().unwrap();
    let code = out.status.code().unwrap_or(-1);
    if code != 0 && code != 86 {
        eprintln!("sabot failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    code
}

const TUMBLE: &str = "SELECT k, window_start, window_end, COUNT(*), SUM(v) \
    FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '2' SECOND)) \
    GROUP BY k, window_start, window_end";

const TUMBLE_BATCH: &str = "SELECT k, date_bin(INTERVAL '2' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') AS s, \
    date_bin(INTERVAL '2' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') + INTERVAL '2' SECOND, \
    COUNT(*), SUM(v) FROM src GROUP BY 1, 2";

const HOP: &str = "SELECT k, window_start, window_end, COUNT(*), SUM(v) \
    FROM TABLE(HOP(TABLE src, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND)) \
    GROUP BY k, window_start, window_end";

/// HOP 3 s sliding by 1 s as a batch query: every row belongs to the windows starting at its
/// second and the two before.
const HOP_BATCH: &str = "SELECT k, s, s + INTERVAL '3' SECOND, COUNT(*), SUM(v) FROM ( \
    SELECT k, v, date_bin(INTERVAL '1' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') - INTERVAL '0' SECOND AS s FROM src \
    UNION ALL SELECT k, v, date_bin(INTERVAL '1' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') - INTERVAL '1' SECOND FROM src \
    UNION ALL SELECT k, v, date_bin(INTERVAL '1' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') - INTERVAL '2' SECOND FROM src \
    ) GROUP BY k, s";

const SESSION: &str = "SELECT k, window_start, window_end, COUNT(*), SUM(v) \
    FROM TABLE(SESSION(TABLE src PARTITION BY k, DESCRIPTOR(ts), INTERVAL '0.25' SECOND)) \
    GROUP BY k, window_start, window_end";

/// SESSION with a 250 ms gap as a batch query (gaps and islands): a row opens a session when
/// it comes more than 250 ms after its key's previous row; a session ends 250 ms after its
/// last row.
const SESSION_BATCH: &str = "WITH marked AS ( \
      SELECT k, v, ts, CASE WHEN ts - LAG(ts) OVER (PARTITION BY k ORDER BY ts) \
        <= INTERVAL '0.25' SECOND THEN 0 ELSE 1 END AS opens FROM src), \
    numbered AS ( \
      SELECT k, v, ts, SUM(opens) OVER (PARTITION BY k ORDER BY ts ROWS UNBOUNDED PRECEDING) AS s \
      FROM marked) \
    SELECT k, MIN(ts), MAX(ts) + INTERVAL '0.25' SECOND, COUNT(*), SUM(v) FROM numbered GROUP BY k, s";

/// A window join of the raw rows of two scans of `src`: every row waits in the join's state
/// until its window closes on both sides. Pairs rows of the same key and value (each row meets
/// at least itself).
const WINDOW_JOIN: &str = "SELECT a.k, a.window_start, a.window_end, a.v, b.v \
    FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '2' SECOND)) a \
    JOIN TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '2' SECOND)) b \
    ON a.k = b.k AND a.v = b.v AND a.window_start = b.window_start AND a.window_end = b.window_end";

const WINDOW_JOIN_BATCH: &str = "WITH w AS (SELECT k, v, \
      date_bin(INTERVAL '2' SECOND, ts, TIMESTAMP '1970-01-01 00:00:00') AS s FROM src) \
    SELECT a.k, a.s, a.s + INTERVAL '2' SECOND, a.v, b.v FROM w a JOIN w b \
    ON a.k = b.k AND a.v = b.v AND a.s = b.s";

/// An interval join of two scans of `src`: rows of the same key and value up to 1 s apart.
const INTERVAL_JOIN: &str = "SELECT a.k, a.ts, b.ts, a.v, b.v FROM src a JOIN src b \
    ON a.k = b.k AND a.v = b.v AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND";

/// The same in milliseconds (not an interval join: a batch join with a filter).
const INTERVAL_JOIN_BATCH: &str = "SELECT a.k, a.ts, b.ts, a.v, b.v FROM src a JOIN src b \
    ON a.k = b.k AND a.v = b.v AND CAST(b.ts AS BIGINT) - CAST(a.ts AS BIGINT) BETWEEN 0 AND 1000";

/// Crashes at `failpoint`, then resumes until done; the sink must equal the oracle.
fn crash_and_resume(select: &str, batch: &str, failpoint: &str, resume_parallelism: usize) {
    crash_and_resume_with(
        select,
        batch,
        failpoint,
        resume_parallelism,
        Backend::Memory,
    );
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Backend {
    Memory,
    RocksDb,
}

impl Fixture {
    /// The script of `select` with the state in `backend`.
    fn script_in(&self, out: &str, select: &str, backend: Backend, extra: &str) -> PathBuf {
        let source = format!(
            "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
            self.path("in").display()
        );
        let extra = match backend {
            Backend::Memory => extra.to_string(),
            Backend::RocksDb => format!(
                "SET 'state.backend' = 'rocksdb';\n\
                 SET 'state.backend.rocksdb.localdir' = '{}';\n{extra}",
                self.path("rocksdb").display()
            ),
        };
        self.script_with(out, select, &source, &extra)
    }
}

fn crash_and_resume_with(
    select: &str,
    batch: &str,
    failpoint: &str,
    resume_parallelism: usize,
    backend: Backend,
) {
    let fixture = Fixture::new();
    let expected = fixture.oracle(batch);
    let script = fixture.script_in("out", select, backend, "");
    let state = fixture.path("state");
    let crashed = run_with_state(&script, &state, 2, Some(failpoint));
    assert_eq!(
        crashed, 86,
        "the failpoint {failpoint} did not end the first run"
    );
    let resumed = run_with_state(&script, &state, resume_parallelism, None);
    assert_eq!(resumed, 0, "the resumed run failed");
    let got = read_rows(&fixture.path("out"));
    assert_eq!(
        got.len(),
        expected.len(),
        "rows after a crash at {failpoint}"
    );
    assert!(got == expected, "rows differ after a crash at {failpoint}");
}

#[test]
fn a_crash_at_every_protocol_step_loses_and_duplicates_nothing() {
    for failpoint in [
        "after-barrier-injection@3",
        "after-operator-snapshot@3",
        "mid-upload@2",
        "before-manifest@3",
        "after-manifest@2",
        "after-sink-commit@3",
    ] {
        crash_and_resume(TUMBLE, TUMBLE_BATCH, failpoint, 2);
    }
}

#[test]
fn hop_windows_resume_exactly() {
    crash_and_resume(HOP, HOP_BATCH, "after-manifest@3", 2);
}

/// Window state written by 2 tasks is split by key hash over 3. (The filesystem source keeps
/// one reader per file, 2 here, at both parallelisms: fewer readers than files would interleave
/// the files differently and so change which rows are late, as in any engine.)
#[test]
fn keyed_window_state_resumes_at_another_parallelism() {
    crash_and_resume(TUMBLE, TUMBLE_BATCH, "after-sink-commit@3", 3);
    crash_and_resume(HOP, HOP_BATCH, "after-manifest@3", 3);
}

#[test]
fn session_windows_resume_exactly() {
    crash_and_resume(SESSION, SESSION_BATCH, "after-manifest@3", 2);
    // Open sessions written by 2 tasks, split by partition key hash over 3.
    crash_and_resume(SESSION, SESSION_BATCH, "after-operator-snapshot@3", 3);
}

#[test]
fn window_joins_resume_exactly() {
    crash_and_resume(WINDOW_JOIN, WINDOW_JOIN_BATCH, "after-manifest@3", 2);
    // Buffered rows of both sides written by 2 tasks, split by join key hash over 3.
    crash_and_resume(
        WINDOW_JOIN,
        WINDOW_JOIN_BATCH,
        "after-operator-snapshot@3",
        3,
    );
}

#[test]
fn interval_joins_resume_exactly() {
    crash_and_resume(INTERVAL_JOIN, INTERVAL_JOIN_BATCH, "after-manifest@3", 2);
    crash_and_resume(INTERVAL_JOIN, INTERVAL_JOIN_BATCH, "after-sink-commit@3", 3);
}

#[test]
fn kill_9_at_seeded_points_loses_and_duplicates_nothing() {
    for (name, select, batch) in [
        ("tumble", TUMBLE, TUMBLE_BATCH),
        ("hop", HOP, HOP_BATCH),
        ("session", SESSION, SESSION_BATCH),
        ("interval join", INTERVAL_JOIN, INTERVAL_JOIN_BATCH),
    ] {
        kill_9_at_seeded_points(name, select, batch);
    }
}

/// Three `kill -9` at seeded times, each run resuming from the last checkpoint, then a run to
/// the end.
fn kill_9_at_seeded_points(name: &str, select: &str, batch: &str) {
    kill_9_at_seeded_points_in(name, select, batch, Backend::Memory);
}

fn kill_9_at_seeded_points_in(name: &str, select: &str, batch: &str, backend: Backend) {
    let fixture = Fixture::with_rows(300_000);
    let expected = fixture.oracle(batch);
    let script = fixture.script_in("out", select, backend, "");
    kill_9_three_times(&script, &fixture.path("state"), name);
    let got = read_rows(&fixture.path("out"));
    assert_eq!(got.len(), expected.len(), "{name}");
    assert!(got == expected, "{name}: rows differ");
}

/// Updating aggregates: per key the count and sum, and an aggregate over an aggregate (its
/// MAX keeps value counts, its input retracts). Three columns, `k`, `n`, `total`.
const UPDATING: &str = "SELECT k, COUNT(*), SUM(v) FROM src GROUP BY k";
const UPDATING_NESTED: &str = "SELECT s % 7, COUNT(*), MAX(s) \
    FROM (SELECT k, SUM(v) AS s FROM src GROUP BY k) GROUP BY s % 7";

impl Fixture {
    /// The script of an updating `select` (columns k, n, total) read as a stream, its
    /// changelog written as debezium-json, with the state in `backend`.
    fn updating_script(&self, out: &str, select: &str, backend: Backend) -> PathBuf {
        let source = format!(
            "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
            self.path("in").display()
        );
        let mut extra = "SET 'execution.runtime-mode' = 'streaming';\n".to_string();
        if backend == Backend::RocksDb {
            extra.push_str(&format!(
                "SET 'state.backend' = 'rocksdb';\nSET 'state.backend.rocksdb.localdir' = '{}';\n",
                self.path("rocksdb").display()
            ));
        }
        let dst = "k BIGINT, n BIGINT, total BIGINT";
        self.script_into(out, select, &source, &extra, dst, "debezium-json")
    }

    /// The batch answer of `select` (the default runtime mode answers a bounded input once),
    /// as sorted `k,n,total` lines.
    fn updating_oracle(&self, select: &str) -> Vec<String> {
        let source = format!(
            "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
            self.path("in").display()
        );
        let dst = "k BIGINT, n BIGINT, total BIGINT";
        let script = self.script_into("oracle", select, &source, "", dst, "csv");
        let status = sabot()
            .arg("run")
            .arg(&script)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        read_rows(&self.path("oracle"))
    }
}

/// The rows a debezium-json changelog in `dir` ends with, as sorted `k,n,total` lines: every
/// event adds (`c`) or takes back (`d`) one row, and each row must end counted once or not at
/// all. Order-free, so a row written twice or lost shows however the files interleave.
fn changelog_result(dir: &Path) -> Vec<String> {
    let mut counts: std::collections::BTreeMap<String, i64> = Default::default();
    for line in read_rows(dir) {
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        let (row, by) = match event["op"].as_str() {
            Some("c") => (&event["after"], 1),
            Some("d") => (&event["before"], -1),
            other => panic!("op {other:?} in {line}"),
        };
        let key = format!("{},{},{}", row["k"], row["n"], row["total"]);
        *counts.entry(key).or_default() += by;
    }
    let wrong: Vec<_> = counts.iter().filter(|(_, c)| !matches!(c, 0 | 1)).collect();
    assert!(wrong.is_empty(), "rows counted other than once: {wrong:?}");
    counts
        .into_iter()
        .filter(|(_, c)| *c == 1)
        .map(|(row, _)| row)
        .collect()
}

/// Crashes an updating query at `failpoint`, then resumes at `resume_parallelism`: its
/// changelog must end in the batch answer.
fn updating_crash_and_resume(
    select: &str,
    failpoint: &str,
    resume_parallelism: usize,
    backend: Backend,
) {
    updating_crash_and_resume_over(
        Fixture::new(),
        select,
        failpoint,
        resume_parallelism,
        backend,
    );
}

/// [`updating_crash_and_resume`] over the input of `fixture`.
fn updating_crash_and_resume_over(
    fixture: Fixture,
    select: &str,
    failpoint: &str,
    resume_parallelism: usize,
    backend: Backend,
) {
    let expected = fixture.updating_oracle(select);
    let script = fixture.updating_script("out", select, backend);
    let state = fixture.path("state");
    let crashed = run_with_state(&script, &state, 2, Some(failpoint));
    assert_eq!(
        crashed, 86,
        "the failpoint {failpoint} did not end the first run"
    );
    let resumed = run_with_state(&script, &state, resume_parallelism, None);
    assert_eq!(resumed, 0, "the resumed run failed");
    assert_eq!(
        changelog_result(&fixture.path("out")),
        expected,
        "{select} ({backend:?}) after a crash at {failpoint}, resumed at parallelism \
         {resume_parallelism}"
    );
}

#[test]
fn updating_aggregates_resume_exactly() {
    for backend in [Backend::Memory, Backend::RocksDb] {
        for failpoint in [
            "after-operator-snapshot@3",
            "after-manifest@3",
            "after-sink-commit@3",
        ] {
            updating_crash_and_resume(UPDATING, failpoint, 2, backend);
        }
        // Groups written by 2 tasks, split by key hash over 3 (RocksDB: databases re-keyed).
        updating_crash_and_resume(UPDATING, "after-manifest@3", 3, backend);
        updating_crash_and_resume(UPDATING_NESTED, "after-manifest@3", 2, backend);
        updating_crash_and_resume(UPDATING_NESTED, "after-sink-commit@3", 3, backend);
    }
}

/// A LEFT JOIN of the stream's rows with a high value to a changelog whose rows change (per
/// key, the count of rows with a small value): rows of a key that comes late are padded with
/// NULLs until it comes, then taken back and paired; each update of a key's count takes its
/// pairs back and pairs them again. Both sides' rows, their match counts and the aggregate
/// above are restored, also at another parallelism (rows re-keyed by hash).
const REGULAR_JOIN: &str = "SELECT a.k, COUNT(d.k), SUM(d.c) \
    FROM (SELECT k, v FROM src WHERE v >= 990) a \
    LEFT JOIN (SELECT k, COUNT(*) AS c FROM src WHERE v < 10 GROUP BY k) d ON a.k = d.k \
    GROUP BY a.k";

#[test]
fn regular_joins_resume_exactly() {
    for failpoint in ["after-operator-snapshot@3", "after-manifest@3"] {
        updating_crash_and_resume(REGULAR_JOIN, failpoint, 2, Backend::Memory);
    }
    updating_crash_and_resume(REGULAR_JOIN, "after-manifest@3", 3, Backend::Memory);
    // Both sides in RocksDB: the database adopted at the same parallelism, re-keyed at others.
    updating_crash_and_resume(REGULAR_JOIN, "after-sink-commit@3", 1, Backend::RocksDb);
    updating_crash_and_resume(REGULAR_JOIN, "after-manifest@3", 2, Backend::RocksDb);
    updating_crash_and_resume(
        REGULAR_JOIN,
        "after-operator-snapshot@3",
        3,
        Backend::RocksDb,
    );
    for backend in [Backend::Memory, Backend::RocksDb] {
        let fixture = Fixture::with_rows(300_000);
        let expected = fixture.updating_oracle(REGULAR_JOIN);
        let script = fixture.updating_script("out", REGULAR_JOIN, backend);
        kill_9_three_times(&script, &fixture.path("state"), REGULAR_JOIN);
        assert_eq!(
            changelog_result(&fixture.path("out")),
            expected,
            "after kill -9 ({backend:?})"
        );
    }
}

#[test]
fn updating_aggregates_survive_kill_9() {
    for backend in [Backend::Memory, Backend::RocksDb] {
        for select in [UPDATING, UPDATING_NESTED] {
            let fixture = Fixture::with_rows(300_000);
            let expected = fixture.updating_oracle(select);
            let script = fixture.updating_script("out", select, backend);
            kill_9_three_times(&script, &fixture.path("state"), select);
            assert_eq!(
                changelog_result(&fixture.path("out")),
                expected,
                "{select} ({backend:?})"
            );
        }
    }
}

/// Top-N over the stream's rows: the three largest values per key with their row numbers.
/// Values tie, but which of two equal rows ranks first does not show in (key, rank, value), so
/// the batch answer is unique.
const TOP_N: &str = "SELECT k, rn, v FROM \
    (SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k ORDER BY v DESC) AS rn FROM src) \
    WHERE rn <= 3";

/// Top-N over a changelog (per key, the count of rows with a small value, which updates as
/// rows come), partitioned by an expression: per group of keys, the two largest counts. Every
/// row is kept (a count taken back lets the next one in), restored and re-keyed by the
/// expression's hash.
const TOP_N_CHANGELOG: &str = "SELECT g, rn, c FROM \
    (SELECT k % 5 AS g, c, ROW_NUMBER() OVER (PARTITION BY k % 5 ORDER BY c DESC) AS rn \
     FROM (SELECT k, COUNT(*) AS c FROM src WHERE v < 100 GROUP BY k)) \
    WHERE rn <= 2";

#[test]
fn top_n_resumes_exactly() {
    // A top-N over appended rows keeps little and runs fast: a larger input reaches the
    // third checkpoint.
    let rows = 200_000;
    for select in [TOP_N, TOP_N_CHANGELOG] {
        // With RocksDB: the database adopted at the same parallelism (rows arriving after the
        // restore must rank after the restored rows they tie with), re-keyed at others.
        for (failpoint, parallelism, backend) in [
            ("after-operator-snapshot@3", 2, Backend::Memory),
            ("after-manifest@3", 3, Backend::Memory),
            ("after-sink-commit@3", 1, Backend::RocksDb),
            ("after-manifest@3", 2, Backend::RocksDb),
            ("after-operator-snapshot@3", 3, Backend::RocksDb),
        ] {
            let fixture = Fixture::with_rows(rows);
            updating_crash_and_resume_over(fixture, select, failpoint, parallelism, backend);
        }
    }
    for backend in [Backend::Memory, Backend::RocksDb] {
        let fixture = Fixture::with_rows(300_000);
        let expected = fixture.updating_oracle(TOP_N_CHANGELOG);
        let script = fixture.updating_script("out", TOP_N_CHANGELOG, backend);
        kill_9_three_times(&script, &fixture.path("state"), TOP_N_CHANGELOG);
        assert_eq!(
            changelog_result(&fixture.path("out")),
            expected,
            "after kill -9 ({backend:?})"
        );
    }
}

/// A top-1 per key where rows tie (values in the same hundred) and the first to arrive wins,
/// over one input file, so that arrival order is the file's: rows arriving after a restore
/// must rank after the restored rows they tie with (the arrival numbers resume), also with the
/// rows in RocksDB, whose snapshot does not list them.
#[test]
fn top_n_ties_resume_in_arrival_order() {
    let select = "SELECT k, v, rn FROM (SELECT k, v, ROW_NUMBER() OVER (PARTITION BY k \
                  ORDER BY v / 100 DESC) AS rn FROM src) WHERE rn = 1";
    for (failpoint, parallelism, backend) in [
        ("after-manifest@3", 2, Backend::Memory),
        ("after-manifest@3", 2, Backend::RocksDb),
        ("after-sink-commit@3", 3, Backend::RocksDb),
    ] {
        let fixture = Fixture::with_rows(200_000);
        std::fs::remove_file(fixture.path("in/part1.json")).unwrap();
        // Per key, the first row of the highest hundred.
        let mut first: std::collections::BTreeMap<i64, i64> = Default::default();
        let input = std::fs::read_to_string(fixture.path("in/part0.json")).unwrap();
        for line in input.lines() {
            let row: serde_json::Value = serde_json::from_str(line).unwrap();
            let (k, v) = (row["k"].as_i64().unwrap(), row["v"].as_i64().unwrap());
            let best = first.entry(k).or_insert(v);
            if v / 100 > *best / 100 {
                *best = v;
            }
        }
        let expected: Vec<String> = first.iter().map(|(k, v)| format!("{k},{v},1")).collect();
        let script = fixture.updating_script("out", select, backend);
        let state = fixture.path("state");
        let crashed = run_with_state(&script, &state, 2, Some(failpoint));
        assert_eq!(crashed, 86, "the failpoint {failpoint} did not end the run");
        assert_eq!(run_with_state(&script, &state, parallelism, None), 0);
        let mut got = changelog_result(&fixture.path("out"));
        got.sort_by_key(|row| row.split(',').next().and_then(|k| k.parse::<i64>().ok()));
        assert_eq!(
            got, expected,
            "{failpoint}, {backend:?}, resumed at {parallelism}"
        );
    }
}

/// OVER aggregates ordered by event time over a 2 s RANGE frame (rows of equal time are
/// peers, so the batch answer is exact): rows waiting for the watermark and rows later frames
/// reach are restored, re-keyed at another parallelism.
const OVER: &str = "SELECT k, \
    COUNT(*) OVER (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW), \
    SUM(v) OVER (PARTITION BY k ORDER BY ts RANGE BETWEEN INTERVAL '2' SECOND PRECEDING AND CURRENT ROW) \
    FROM src";

#[test]
fn over_aggregates_resume_exactly() {
    // Rows appended to CSV files: the output must be the batch answer as a multiset (rows of
    // equal time and key are alike, and each must come once).
    let script = |fixture: &Fixture, backend: Backend| {
        let source = format!(
            "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
            fixture.path("in").display()
        );
        let mut extra = "SET 'execution.runtime-mode' = 'streaming';\n".to_string();
        if backend == Backend::RocksDb {
            extra.push_str("SET 'state.backend' = 'rocksdb';\n");
        }
        let dst = "k BIGINT, n BIGINT, total BIGINT";
        fixture.script_into("out", OVER, &source, &extra, dst, "csv")
    };
    // With RocksDB: each key's rows in the database (the waiting rows too, for the
    // checkpoint), adopted at the same parallelism and re-keyed at another.
    for (failpoint, parallelism, backend) in [
        ("after-operator-snapshot@3", 2, Backend::Memory),
        ("after-manifest@3", 3, Backend::Memory),
        ("after-sink-commit@3", 3, Backend::RocksDb),
        ("after-manifest@3", 2, Backend::RocksDb),
    ] {
        // Not resumed at parallelism 1: one task reads the two files one after the other, so
        // the second file's rows would be late behind the first's watermark.
        let fixture = Fixture::with_rows(200_000);
        let expected = fixture.updating_oracle(OVER);
        let script = script(&fixture, backend);
        let state = fixture.path("state");
        let crashed = run_with_state(&script, &state, 2, Some(failpoint));
        assert_eq!(
            crashed, 86,
            "the failpoint {failpoint} did not end the first run"
        );
        assert_eq!(run_with_state(&script, &state, parallelism, None), 0);
        let got = read_rows(&fixture.path("out"));
        assert_eq!(
            got.len(),
            expected.len(),
            "{failpoint}, resumed at {parallelism}"
        );
        assert!(
            got == expected,
            "{failpoint}: rows differ from the batch answer"
        );
    }
    for backend in [Backend::Memory, Backend::RocksDb] {
        let fixture = Fixture::with_rows(300_000);
        let expected = fixture.updating_oracle(OVER);
        let script = script(&fixture, backend);
        kill_9_three_times(&script, &fixture.path("state"), OVER);
        let got = read_rows(&fixture.path("out"));
        assert_eq!(got.len(), expected.len(), "after kill -9 ({backend:?})");
        assert!(
            got == expected,
            "after kill -9 ({backend:?}): rows differ from the batch answer"
        );
    }
}

/// An OVER aggregate over a changelog (per key, the count of rows with a small value, which
/// updates as rows come): per group of keys, ordered by count and key (so the batch answer is
/// unique), each count with the sum of its neighbours'. Counts change and move rows, so values
/// are updated throughout; every row with its emitted values is restored, re-keyed by the
/// expression's hash at another parallelism.
const OVER_CHANGELOG: &str = "SELECT k, c, SUM(c) OVER (PARTITION BY k % 5 ORDER BY c DESC, k \
    ROWS BETWEEN 1 PRECEDING AND 1 FOLLOWING) \
    FROM (SELECT k, COUNT(*) AS c FROM src WHERE v < 100 GROUP BY k)";

#[test]
fn over_aggregates_over_a_changelog_resume_exactly() {
    for (failpoint, parallelism, backend) in [
        ("after-operator-snapshot@3", 2, Backend::Memory),
        ("after-manifest@3", 3, Backend::Memory),
        ("after-sink-commit@3", 1, Backend::RocksDb),
        ("after-manifest@3", 2, Backend::RocksDb),
    ] {
        let fixture = Fixture::with_rows(200_000);
        updating_crash_and_resume_over(fixture, OVER_CHANGELOG, failpoint, parallelism, backend);
    }
    for backend in [Backend::Memory, Backend::RocksDb] {
        let fixture = Fixture::with_rows(300_000);
        let expected = fixture.updating_oracle(OVER_CHANGELOG);
        assert_eq!(expected.len(), 50, "{expected:?}");
        let script = fixture.updating_script("out", OVER_CHANGELOG, backend);
        kill_9_three_times(&script, &fixture.path("state"), OVER_CHANGELOG);
        assert_eq!(
            changelog_result(&fixture.path("out")),
            expected,
            "after kill -9 ({backend:?})"
        );
    }
}

/// Probe rows of `src` joined with the versions of their key at their time: `ver` has one
/// version per key and second (`w`), its times unique per key and in order, so the answer is
/// unique: the batch answer picks the version whose validity (up to the next version's time)
/// holds the row's time.
const TEMPORAL: &str = "SELECT a.k, a.ts, a.v, b.w FROM src AS a \
    JOIN ver FOR SYSTEM_TIME AS OF a.ts AS b ON a.k = b.k";
const TEMPORAL_BATCH: &str = "SELECT a.k, a.ts, a.v, b.w FROM src a JOIN \
    (SELECT k, w, ts, LEAD(ts) OVER (PARTITION BY k ORDER BY ts) AS valid_to FROM ver) b \
    ON a.k = b.k AND b.ts <= a.ts AND (b.valid_to IS NULL OR a.ts < b.valid_to)";

impl Fixture {
    /// Writes the versions `ver` reads (see [`TEMPORAL`]): 50 keys, one version per second
    /// over `seconds`, and returns the statement declaring the table.
    fn versions(&self, seconds: u64) -> String {
        std::fs::create_dir(self.path("ver")).unwrap();
        let mut text = String::new();
        for j in 0..seconds {
            for k in 0..50u64 {
                let ts = BASE_MS + j * 1000 + k * 7;
                text.push_str(&format!(
                    "{{\"k\": {k}, \"w\": {}, \"ts\": \"{}\"}}\n",
                    j * 50 + k,
                    timestamp(ts)
                ));
            }
        }
        std::fs::write(self.path("ver/versions.json"), text).unwrap();
        format!(
            "CREATE TABLE ver (k BIGINT, w BIGINT, ts TIMESTAMP(3), \
               WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
               WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n",
            self.path("ver").display()
        )
    }
}

#[test]
fn temporal_joins_resume_exactly() {
    let dst = "k BIGINT, ts TIMESTAMP(3), v BIGINT, w BIGINT";
    let script = |fixture: &Fixture, select: &str, out: &str, ver: &str, backend: Backend| {
        let source = format!(
            "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
            fixture.path("in").display()
        );
        let mut extra = ver.to_string();
        if backend == Backend::RocksDb {
            extra.push_str("SET 'state.backend' = 'rocksdb';\n");
        }
        fixture.script_into(out, select, &source, &extra, dst, "csv")
    };
    let oracle = |fixture: &Fixture, ver: &str| {
        let batch = script(fixture, TEMPORAL_BATCH, "oracle", ver, Backend::Memory);
        let status = sabot()
            .arg("run")
            .arg(&batch)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
        let rows = read_rows(&fixture.path("oracle"));
        assert!(rows.len() > 100_000, "the oracle has {} rows", rows.len());
        rows
    };
    // With RocksDB: the versions (and, for the checkpoint, the waiting rows) in the database,
    // adopted at the same parallelism and re-keyed at another.
    for (failpoint, parallelism, backend) in [
        ("after-operator-snapshot@3", 3, Backend::Memory),
        ("after-manifest@3", 2, Backend::Memory),
        ("after-sink-commit@3", 3, Backend::RocksDb),
        ("after-manifest@3", 2, Backend::RocksDb),
    ] {
        // Resumed at 2 or 3 (see `over_aggregates_resume_exactly`).
        let fixture = Fixture::with_rows(200_000);
        let ver = fixture.versions(601);
        let expected = oracle(&fixture, &ver);
        let script = script(&fixture, TEMPORAL, "out", &ver, backend);
        let state = fixture.path("state");
        let crashed = run_with_state(&script, &state, 2, Some(failpoint));
        assert_eq!(
            crashed, 86,
            "the failpoint {failpoint} did not end the first run"
        );
        assert_eq!(run_with_state(&script, &state, parallelism, None), 0);
        let got = read_rows(&fixture.path("out"));
        assert_eq!(
            got.len(),
            expected.len(),
            "{failpoint}, resumed at {parallelism}"
        );
        assert!(
            got == expected,
            "{failpoint}: rows differ from the batch answer"
        );
    }
    for backend in [Backend::Memory, Backend::RocksDb] {
        let fixture = Fixture::with_rows(300_000);
        let ver = fixture.versions(901);
        let expected = oracle(&fixture, &ver);
        let script = script(&fixture, TEMPORAL, "out", &ver, backend);
        kill_9_three_times(&script, &fixture.path("state"), TEMPORAL);
        let got = read_rows(&fixture.path("out"));
        assert_eq!(got.len(), expected.len(), "after kill -9 ({backend:?})");
        assert!(
            got == expected,
            "after kill -9 ({backend:?}): rows differ from the batch answer"
        );
    }
}

/// Runs `script` with checkpoints, `kill -9` at three seeded times (each run resuming from the
/// last checkpoint), then to the end.
fn kill_9_three_times(script: &Path, state: &Path, name: &str) {
    let mut rng = Lcg(7);
    let mut kills = 0;
    for attempt in 0..20 {
        let mut child = sabot()
            .arg("run")
            .arg(script)
            .args(["--state-dir"])
            .arg(state)
            .args(["--checkpoint-interval", "20ms", "--parallelism", "2"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if attempt < 3 {
            std::thread::sleep(Duration::from_millis(30 + rng.next(100)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                child.wait().unwrap();
                kills += 1;
                continue;
            }
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "{name}: run {attempt} failed");
        break;
    }
    assert_eq!(
        kills, 3,
        "{name}: a run ended before its kill; the input is too small"
    );
}

/// `state.backend` = `rocksdb`: the same crashes, the same exact results, TUMBLE and HOP,
/// resumed at the same and at another parallelism.
#[test]
fn rocksdb_window_state_resumes_exactly() {
    for failpoint in [
        "after-operator-snapshot@3",
        "mid-upload@2",
        "after-manifest@3",
    ] {
        crash_and_resume_with(TUMBLE, TUMBLE_BATCH, failpoint, 2, Backend::RocksDb);
    }
    crash_and_resume_with(HOP, HOP_BATCH, "after-manifest@3", 2, Backend::RocksDb);
    crash_and_resume_with(
        TUMBLE,
        TUMBLE_BATCH,
        "after-sink-commit@3",
        3,
        Backend::RocksDb,
    );
    crash_and_resume_with(HOP, HOP_BATCH, "after-manifest@3", 3, Backend::RocksDb);
}

/// SESSION rows in RocksDB: the same crashes, the same exact results, resumed at the same
/// parallelism (the database adopted) and at another (sessions copied by partition key hash).
#[test]
fn rocksdb_session_state_resumes_exactly() {
    for failpoint in [
        "after-operator-snapshot@3",
        "mid-upload@2",
        "after-sink-commit@2",
    ] {
        crash_and_resume_with(SESSION, SESSION_BATCH, failpoint, 2, Backend::RocksDb);
    }
    crash_and_resume_with(
        SESSION,
        SESSION_BATCH,
        "after-manifest@3",
        3,
        Backend::RocksDb,
    );
    // The checkpoints hold the sessions as RocksDB files (rows stored under segments).
    let saved = rocksdb_snapshots(SESSION);
    assert!(
        saved
            .iter()
            .any(|p| p["meta"]["next_segment"].as_u64().unwrap() > 0),
        "{saved:?}"
    );
}

/// The operator snapshots with RocksDB files in the checkpoints of `select` (with RocksDB
/// state) up to a crash after checkpoint 3.
fn rocksdb_snapshots(select: &str) -> Vec<serde_json::Value> {
    let fixture = Fixture::new();
    let script = fixture.script_in("out", select, Backend::RocksDb, "");
    let state = fixture.path("state");
    let crashed = run_with_state(&script, &state, 2, Some("after-manifest@3"));
    assert_eq!(crashed, 86);
    manifests(&state)
        .iter()
        .flat_map(|m| m["operators"].as_object().unwrap().values().cloned())
        .flat_map(|partitions| partitions.as_array().unwrap().clone())
        .filter(|p| {
            p["meta"]["backend"] == "rocksdb"
                && p["files"].as_array().is_some_and(|f| !f.is_empty())
        })
        .collect()
}

/// Checkpoints of a job written by versions that named the directory after the statement's
/// position (`job-4` for the INSERT, the script's 4th statement; now `job-1`, its first job)
/// are still resumed.
#[test]
fn checkpoints_under_the_old_job_directory_name_resume() {
    let fixture = Fixture::new();
    let expected = fixture.oracle(TUMBLE_BATCH);
    let script = fixture.script_in("out", TUMBLE, Backend::Memory, "");
    let state = fixture.path("state");
    assert_eq!(
        run_with_state(&script, &state, 2, Some("after-manifest@3")),
        86
    );
    std::fs::rename(state.join("job-1"), state.join("job-4")).unwrap();
    assert_eq!(run_with_state(&script, &state, 2, None), 0);
    assert!(!state.join("job-1").exists());
    let got = read_rows(&fixture.path("out"));
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "rows differ");
}

/// A job checkpointed with in-memory state resumes with `state.backend` = `rocksdb`: window
/// slices, SESSION rows and window-join rows are written into the new databases.
#[test]
fn memory_checkpoints_resume_with_rocksdb_state() {
    for (select, batch) in [
        (HOP, HOP_BATCH),
        (SESSION, SESSION_BATCH),
        (WINDOW_JOIN, WINDOW_JOIN_BATCH),
    ] {
        let fixture = Fixture::new();
        let expected = fixture.oracle(batch);
        let state = fixture.path("state");
        let memory = fixture.script_in("out", select, Backend::Memory, "");
        let crashed = run_with_state(&memory, &state, 2, Some("after-manifest@3"));
        assert_eq!(crashed, 86, "the failpoint did not end the first run");
        let rocks = fixture.script_in("out", select, Backend::RocksDb, "");
        assert_eq!(
            run_with_state(&rocks, &state, 2, None),
            0,
            "the resumed run failed"
        );
        let got = read_rows(&fixture.path("out"));
        assert_eq!(got.len(), expected.len(), "{select}");
        assert!(got == expected, "rows differ: {select}");
    }
}

/// Window-join rows in RocksDB: crashes, exact results, resumed at the same parallelism (the
/// database adopted) and at another (rows split by join key hash).
#[test]
fn rocksdb_window_join_state_resumes_exactly() {
    for failpoint in ["after-operator-snapshot@3", "after-manifest@2"] {
        crash_and_resume_with(
            WINDOW_JOIN,
            WINDOW_JOIN_BATCH,
            failpoint,
            2,
            Backend::RocksDb,
        );
    }
    crash_and_resume_with(
        WINDOW_JOIN,
        WINDOW_JOIN_BATCH,
        "after-manifest@3",
        3,
        Backend::RocksDb,
    );
    let saved = rocksdb_snapshots(WINDOW_JOIN);
    assert!(
        saved
            .iter()
            .any(|p| p["meta"]["next"].as_u64().unwrap() > 0),
        "{saved:?}"
    );
}

#[test]
fn rocksdb_kill_9_at_seeded_points_loses_and_duplicates_nothing() {
    kill_9_at_seeded_points_in("tumble", TUMBLE, TUMBLE_BATCH, Backend::RocksDb);
    kill_9_at_seeded_points_in("hop", HOP, HOP_BATCH, Backend::RocksDb);
    kill_9_at_seeded_points_in("session", SESSION, SESSION_BATCH, Backend::RocksDb);
    kill_9_at_seeded_points_in(
        "window join",
        WINDOW_JOIN,
        WINDOW_JOIN_BATCH,
        Backend::RocksDb,
    );
}

/// Every `_MANIFEST.json` under `dir`, parsed.
fn manifests(dir: &Path) -> Vec<serde_json::Value> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.file_name().is_some_and(|n| n == "_MANIFEST.json") {
                found.push(serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap());
            }
        }
    }
    found
}

/// Files under `dir`, relative to it.
fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                found.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    found.sort();
    found
}

/// The shared SST files each manifest under `job` references, by epoch, and every file path
/// the manifests reference.
fn referenced_files(job: &Path) -> (Vec<(u64, BTreeSet<String>)>, Vec<String>) {
    let mut shared_by_epoch = Vec::new();
    let mut all = Vec::new();
    for m in manifests(job) {
        let mut shared = BTreeSet::new();
        for partitions in m["operators"].as_object().unwrap().values() {
            for p in partitions.as_array().unwrap() {
                for f in p["files"].as_array().into_iter().flatten() {
                    let path = f["path"].as_str().unwrap().to_string();
                    if path.starts_with("shared/") {
                        assert!(path.ends_with(".sst"), "{path}");
                        shared.insert(path.clone());
                    }
                    all.push(path);
                }
            }
        }
        shared_by_epoch.push((m["epoch"].as_u64().unwrap(), shared));
    }
    shared_by_epoch.sort();
    (shared_by_epoch, all)
}

/// The only job directory under `state`.
fn job_dir(state: &Path) -> PathBuf {
    let jobs: Vec<PathBuf> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(jobs.len(), 1, "one job directory: {jobs:?}");
    jobs[0].clone()
}

/// RocksDB checkpoints are incremental: consecutive checkpoints reference the same uploaded
/// SST files instead of uploading them again. (Every checkpoint is kept here.)
#[test]
fn rocksdb_checkpoints_share_sst_files() {
    let fixture = Fixture::with_rows(300_000);
    let script = fixture.script_in(
        "out",
        TUMBLE,
        Backend::RocksDb,
        "SET 'checkpoint.retained' = '1000';\n",
    );
    let state = fixture.path("state");
    assert_eq!(run_with_state(&script, &state, 1, None), 0);
    let (shared, _) = referenced_files(&job_dir(&state));
    let with_db: Vec<&BTreeSet<String>> = shared
        .iter()
        .map(|(_, s)| s)
        .filter(|s| !s.is_empty())
        .collect();
    assert!(
        with_db.len() >= 2,
        "at least two checkpoints hold RocksDB files: {shared:?}"
    );
    assert!(
        with_db
            .windows(2)
            .any(|w| w[0].intersection(w[1]).next().is_some()),
        "consecutive checkpoints share SST files: {with_db:?}"
    );
    assert_eq!(
        files_under(&fixture.path("rocksdb")),
        Vec::<String>::new(),
        "local RocksDB files are removed when the job ends"
    );
}

/// Garbage collection keeps `checkpoint.retained` manifests and exactly the shared files they
/// reference, even after a crash left uploads of an unfinished checkpoint behind.
#[test]
fn rocksdb_garbage_collection_keeps_exactly_the_referenced_files() {
    let fixture = Fixture::with_rows(300_000);
    let script = fixture.script_in("out", TUMBLE, Backend::RocksDb, "");
    let state = fixture.path("state");
    assert_eq!(
        run_with_state(&script, &state, 1, Some("before-manifest@4")),
        86
    );
    assert_eq!(run_with_state(&script, &state, 1, None), 0);
    let job = job_dir(&state);
    let (shared, all) = referenced_files(&job);
    assert_eq!(shared.len(), 3, "checkpoint.retained manifests are kept");
    let on_disk: Vec<String> = files_under(&job.join("shared"))
        .into_iter()
        .map(|f| format!("shared/{f}"))
        .collect();
    let mut referenced: Vec<String> = shared.iter().flat_map(|(_, s)| s.clone()).collect();
    referenced.sort();
    referenced.dedup();
    assert_eq!(
        on_disk, referenced,
        "unreferenced shared files are collected"
    );
    for path in &all {
        assert!(job.join(path).is_file(), "{path} is missing");
    }
}

#[test]
fn a_failed_checkpoint_write_aborts_only_that_checkpoint() {
    let fixture = Fixture::new();
    let expected = fixture.oracle(TUMBLE_BATCH);
    let script = fixture.script("out", TUMBLE);
    let state = fixture.path("state");
    assert_eq!(run_with_state(&script, &state, 2, Some("store-write@2")), 0);
    assert_eq!(read_rows(&fixture.path("out")), expected);
}

#[test]
fn a_corrupt_checkpoint_falls_back_to_an_older_one_and_all_corrupt_refuses() {
    let fixture = Fixture::new();
    let expected = fixture.oracle(TUMBLE_BATCH);
    let script = fixture.script("out", TUMBLE);
    let state = fixture.path("state");
    assert_eq!(
        run_with_state(&script, &state, 2, Some("after-manifest@3")),
        86
    );
    let checkpoints = complete_checkpoints(&state);
    assert!(checkpoints.len() >= 2, "{checkpoints:?}");
    // Flip a byte in a state file of the newest checkpoint.
    damage_a_state_file(checkpoints.last().unwrap());

    // A copy where every checkpoint is damaged: refused with a clear error.
    let broken = fixture.path("broken");
    copy_dir(&state, &broken);
    for dir in std::fs::read_dir(broken.join("job-1")).unwrap() {
        let manifest = dir.unwrap().path().join("_MANIFEST.json");
        if manifest.exists() {
            std::fs::write(&manifest, b"{ not json").unwrap();
        }
    }
    let out = sabot()
        .arg("run")
        .arg(&script)
        .arg("--state-dir")
        .arg(&broken)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no usable checkpoint"), "{stderr}");
    assert!(stderr.contains("is corrupt"), "{stderr}");

    // The original falls back to the older checkpoint and still ends exact.
    let out = sabot()
        .arg("run")
        .arg(&script)
        .arg("--state-dir")
        .arg(&state)
        .args(["--checkpoint-interval", "20ms", "--parallelism", "2"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("skipped a damaged checkpoint"), "{stderr}");
    assert!(stderr.contains("CRC-32"), "{stderr}");
    assert_eq!(read_rows(&fixture.path("out")), expected);
}

#[test]
fn a_finished_job_is_not_run_again() {
    let fixture = Fixture::new();
    let expected = fixture.oracle(TUMBLE_BATCH);
    let script = fixture.script("out", TUMBLE);
    let state = fixture.path("state");
    assert_eq!(run_with_state(&script, &state, 2, None), 0);
    assert_eq!(run_with_state(&script, &state, 2, None), 0);
    assert_eq!(read_rows(&fixture.path("out")), expected);
}

/// The complete checkpoints (with a manifest) of job 1 under `state`, oldest first.
fn complete_checkpoints(state: &Path) -> Vec<PathBuf> {
    let mut checkpoints: Vec<PathBuf> = std::fs::read_dir(state.join("job-1"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("_MANIFEST.json").exists())
        .collect();
    checkpoints.sort();
    checkpoints
}

/// Flips a byte in the middle of a state file of `checkpoint`.
fn damage_a_state_file(checkpoint: &Path) {
    let file = std::fs::read_dir(checkpoint)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "arrow"))
        .expect("the checkpoint has a state file");
    let mut bytes = std::fs::read(&file).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&file, &bytes).unwrap();
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// A Kafka source resumes from the offsets of the checkpoint: the input files are produced to
/// a 2-partition topic of librdkafka's mock cluster (a real protocol peer on loopback, which
/// the `sabot` child processes connect to), and crashes at two protocol steps still end with
/// exactly the oracle's rows.
#[test]
fn kafka_offsets_resume_exactly() {
    use rdkafka::mocking::MockCluster;

    // The mock cluster keeps at most 5 MB per partition: 50 000 records fit.
    let fixture = Fixture::with_rows(50_000);
    let expected = fixture.oracle(TUMBLE_BATCH);
    let mock = MockCluster::new(1).unwrap();
    let servers = fixture.produce_to_kafka(&mock, "events");
    let source = format!(
        "'connector' = 'kafka', 'topic' = 'events', 'properties.bootstrap.servers' = '{servers}', \
         'format' = 'json', 'scan.startup.mode' = 'earliest-offset', \
         'scan.bounded.mode' = 'latest-offset'"
    );
    for (i, failpoint) in ["after-manifest@2", "after-operator-snapshot@3"]
        .iter()
        .enumerate()
    {
        let out = format!("out{i}");
        let script = fixture.script_reading(&out, TUMBLE, &source);
        let state = fixture.path(&format!("state{i}"));
        assert_eq!(
            run_with_state(&script, &state, 2, Some(failpoint)),
            86,
            "{failpoint}"
        );
        assert_eq!(run_with_state(&script, &state, 2, None), 0, "{failpoint}");
        let got = read_rows(&fixture.path(&out));
        assert_eq!(
            got.len(),
            expected.len(),
            "rows after a crash at {failpoint}"
        );
        assert!(got == expected, "rows differ after a crash at {failpoint}");
    }
}

impl Fixture {
    /// Produces the input files to `topic`, one 2-partition topic of `mock` (file `f` to
    /// partition `f`); returns the bootstrap servers.
    fn produce_to_kafka(
        &self,
        mock: &rdkafka::mocking::MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        topic: &str,
    ) -> String {
        use rdkafka::ClientConfig;
        use rdkafka::consumer::{BaseConsumer, Consumer};
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

        mock.create_topic(topic, 2, 1).unwrap();
        let servers = mock.bootstrap_servers();
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .create()
            .unwrap();
        let mut lines = [0i64; 2];
        for f in 0..2 {
            let text = std::fs::read_to_string(self.path(&format!("in/part{f}.json"))).unwrap();
            for line in text.lines() {
                let mut record = BaseRecord::<(), str>::to(topic).partition(f).payload(line);
                loop {
                    match producer.send(record) {
                        Ok(()) => break,
                        Err((_, r)) => {
                            record = r;
                            producer.poll(Duration::from_millis(10));
                        }
                    }
                }
                lines[f as usize] += 1;
            }
        }
        producer.flush(Duration::from_secs(60)).unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &servers)
            .set("group.id", "check")
            .create()
            .unwrap();
        for p in 0..2 {
            let marks = consumer.fetch_watermarks(topic, p, Duration::from_secs(10));
            assert_eq!(
                marks.unwrap(),
                (0, lines[p as usize]),
                "partition {p} holds every record"
            );
        }
        servers
    }
}

/// upsert-kafka under crashes, both ways. An updating query writes its groups exactly once to
/// an upsert-kafka topic, crashing once: the topic's last record per key is the batch answer.
/// That topic read back as upsert-kafka into a debezium-json changelog, crashing at
/// parallelism 2, crashing again at parallelism 1 (the restored reader replays both partitions
/// up to the checkpoint to learn each key's last row), then resuming: the changelog holds
/// every row once and ends in the same answer.
#[test]
fn upsert_kafka_resumes_exactly() {
    use rdkafka::mocking::MockCluster;

    let fixture = Fixture::with_rows(50_000);
    let expected = fixture.updating_oracle(UPDATING);
    let mock = MockCluster::new(1).unwrap();
    let servers = fixture.produce_to_kafka(&mock, "events");
    mock.create_topic("totals", 2, 1).unwrap();
    let totals = |extra: &str| {
        format!(
            "CREATE TABLE totals (k BIGINT, n BIGINT, total BIGINT, PRIMARY KEY (k) NOT ENFORCED) \
             WITH ('connector' = 'upsert-kafka', 'topic' = 'totals', \
                   'properties.bootstrap.servers' = '{servers}', 'key.format' = 'json', \
                   'value.format' = 'json'{extra});\n"
        )
    };
    let write = format!(
        "SET 'batch-size' = '500';\nSET 'execution.runtime-mode' = 'streaming';\n\
         CREATE TABLE src (k BIGINT, v BIGINT, ts TIMESTAMP(3)) \
           WITH ('connector' = 'kafka', 'topic' = 'events', \
                 'properties.bootstrap.servers' = '{servers}', 'format' = 'json', \
                 'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset');\n\
         {}INSERT INTO totals {UPDATING};\n",
        totals(
            ", 'sink.delivery-guarantee' = 'exactly-once', \
             'sink.transactional-id-prefix' = 'totals'"
        )
    );
    let script = fixture.path("write.sql");
    std::fs::write(&script, write).unwrap();
    let state = fixture.path("write-state");
    assert_eq!(
        run_with_state(&script, &state, 2, Some("after-manifest@3")),
        86
    );
    assert_eq!(run_with_state(&script, &state, 2, None), 0);
    let consumer: rdkafka::consumer::BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &servers)
        .set("group.id", "check-totals")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .create()
        .unwrap();
    let mut last = std::collections::BTreeMap::new();
    {
        use rdkafka::consumer::Consumer;
        use rdkafka::message::Message;
        let mut tpl = rdkafka::TopicPartitionList::new();
        for p in 0..2 {
            tpl.add_partition_offset("totals", p, rdkafka::Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
        let mut eof = 0;
        while eof < 2 {
            match consumer.poll(Duration::from_secs(10)) {
                Some(Ok(m)) => {
                    let row: serde_json::Value =
                        serde_json::from_slice(m.payload().expect("no tombstone")).unwrap();
                    last.insert(
                        row["k"].as_i64().unwrap(),
                        format!("{},{},{}", row["k"], row["n"], row["total"]),
                    );
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => eof += 1,
                other => panic!("reading totals: {other:?}"),
            }
        }
    }
    let mut last: Vec<String> = last.into_values().collect();
    last.sort();
    assert_eq!(last, expected, "the last record per key after a crash");

    let read = format!(
        "SET 'batch-size' = '100';\nSET 'execution.runtime-mode' = 'streaming';\n{}\
         CREATE TABLE dst (k BIGINT, n BIGINT, total BIGINT) \
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'debezium-json');\n\
         INSERT INTO dst SELECT * FROM totals;\n",
        totals(", 'scan.bounded.mode' = 'latest-offset'"),
        fixture.path("out").display()
    );
    let script = fixture.path("read.sql");
    std::fs::write(&script, read).unwrap();
    let state = fixture.path("read-state");
    assert_eq!(
        run_with_state(&script, &state, 2, Some("after-manifest@2")),
        86
    );
    // Crashing again while one reader replays both partitions (unless the run ends before its
    // first checkpoint, as on a loaded machine), then resuming from what it checkpointed.
    match run_with_state(&script, &state, 1, Some("after-manifest@3")) {
        86 => assert_eq!(run_with_state(&script, &state, 1, None), 0),
        code => assert_eq!(code, 0, "the resumed run failed"),
    }
    assert_eq!(
        changelog_result(&fixture.path("out")),
        expected,
        "the changelog read back after a crash, resumed at parallelism 1"
    );
}

/// A job joining the stream with a dimension table resumes with the whole table: the table is
/// not checkpointed (a restored "finished" position would load it empty) but read again.
#[test]
fn a_broadcast_join_reloads_its_table_on_recovery() {
    let fixture = Fixture::new();
    // Keys 0..50: even keys are in group 1, odd keys in group 2.
    let dim: String = (0..50)
        .map(|k| format!("{{\"id\": {k}, \"grp\": {}}}\n", 1 + k % 2))
        .collect();
    std::fs::write(fixture.path("dim.json"), dim).unwrap();
    let extra = format!(
        "CREATE TABLE dim (id BIGINT, grp BIGINT) \
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n",
        fixture.path("dim.json").display()
    );
    let source = format!(
        "'connector' = 'filesystem', 'path' = '{}', 'format' = 'json'",
        fixture.path("in").display()
    );
    let streaming = "SELECT k, window_start, window_end, COUNT(*), SUM(v) FROM TABLE(TUMBLE(TABLE ( \
        SELECT src.k, src.v, src.ts FROM src JOIN dim ON src.k = dim.id WHERE dim.grp = 1 \
        ), DESCRIPTOR(ts), INTERVAL '2' SECOND)) GROUP BY k, window_start, window_end";
    let batch = "SELECT src.k, date_bin(INTERVAL '2' SECOND, src.ts, TIMESTAMP '1970-01-01 00:00:00') AS s, \
        date_bin(INTERVAL '2' SECOND, src.ts, TIMESTAMP '1970-01-01 00:00:00') + INTERVAL '2' SECOND, \
        COUNT(*), SUM(src.v) FROM src JOIN dim ON src.k = dim.id WHERE dim.grp = 1 GROUP BY 1, 2";
    let oracle = fixture.script_with("oracle", batch, &source, &extra);
    let status = sabot()
        .arg("run")
        .arg(&oracle)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let expected = read_rows(&fixture.path("oracle"));
    assert!(
        expected.len() > 100,
        "the oracle has {} rows",
        expected.len()
    );
    // Only even keys.
    assert!(
        expected
            .iter()
            .all(|r| r.split(',').next().unwrap().parse::<u64>().unwrap() % 2 == 0)
    );
    let script = fixture.script_with("out", streaming, &source, &extra);
    let state = fixture.path("state");
    assert_eq!(
        run_with_state(&script, &state, 2, Some("after-manifest@3")),
        86
    );
    assert_eq!(run_with_state(&script, &state, 2, None), 0);
    let got = read_rows(&fixture.path("out"));
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "rows differ after recovery");
}

/// An S3-protocol server (moto, from PyPI; `scripts/setup` installs it) on 127.0.0.1, stopped
/// when dropped.
struct S3Server {
    child: std::process::Child,
    port: u16,
}

impl S3Server {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 with moto[server] (scripts/setup installs it)");
        let server = Self { child, port };
        for _ in 0..400 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("moto did not start on port {port}");
    }

    /// One HTTP request; the whole response.
    fn request(&self, method: &str, path: &str) -> String {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200"),
            "{method} {path}: {response}"
        );
        response
    }

    /// The environment that points Sabot's `s3://` locations at this server.
    fn env(&self) -> Vec<(String, String)> {
        [
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".to_string()),
            ("AWS_ACCESS_KEY_ID", "sabot".to_string()),
            ("AWS_SECRET_ACCESS_KEY", "sabot".to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Checkpoints in `s3://` (a real S3-protocol server): a crash and a resume give exactly the
/// batch result, with in-memory state and with RocksDB state (restored at another
/// parallelism), and the objects are in the bucket.
#[test]
fn s3_checkpoints_resume_exactly() {
    let s3 = S3Server::start();
    s3.request("PUT", "/sabot");
    for (backend, select, batch, resume_parallelism) in [
        (Backend::Memory, TUMBLE, TUMBLE_BATCH, 2),
        (Backend::RocksDb, HOP, HOP_BATCH, 3),
    ] {
        let fixture = Fixture::new();
        let expected = fixture.oracle(batch);
        let script = fixture.script_in("out", select, backend, "");
        let state = format!("s3://sabot/{backend:?}");
        let crashed = run_with_state_env(
            &script,
            state.as_ref(),
            2,
            Some("after-manifest@2"),
            &s3.env(),
        );
        assert_eq!(
            crashed, 86,
            "{backend:?}: the failpoint did not end the run"
        );
        let resumed =
            run_with_state_env(&script, state.as_ref(), resume_parallelism, None, &s3.env());
        assert_eq!(resumed, 0, "{backend:?}: the resumed run failed");
        let got = read_rows(&fixture.path("out"));
        assert_eq!(got.len(), expected.len(), "{backend:?}");
        assert!(got == expected, "{backend:?}: rows differ");
        let listing = s3.request("GET", &format!("/sabot?list-type=2&prefix={backend:?}/"));
        assert!(listing.contains("_MANIFEST.json"), "{listing}");
        if backend == Backend::RocksDb {
            assert!(listing.contains("/shared/"), "{listing}");
        }
    }
}

/// Found by the checkpoint fuzz target: with the state files of checkpoints 3 and 2 damaged,
/// recovery fell back to checkpoint 1 and wrote checkpoint 2's rows again (its files were
/// already published). Now what a skipped checkpoint published is taken back first; and a
/// skipped checkpoint whose manifest cannot be read makes the run refuse.
#[test]
fn a_fallback_takes_back_what_the_skipped_checkpoints_published() {
    let fixture = Fixture::new();
    let expected = fixture.oracle(TUMBLE_BATCH);
    let script = fixture.script("out", TUMBLE);
    let state = fixture.path("state");
    assert_eq!(
        run_with_state(&script, &state, 2, Some("after-manifest@3")),
        86
    );
    let pristine_state = fixture.path("pristine-state");
    let pristine_out = fixture.path("pristine-out");
    copy_dir(&state, &pristine_state);
    copy_dir(&fixture.path("out"), &pristine_out);
    let checkpoints = complete_checkpoints(&state);
    assert!(checkpoints.len() >= 3, "{checkpoints:?}");
    let damage = damage_a_state_file;
    let n = checkpoints.len();
    damage(&checkpoints[n - 1]);
    damage(&checkpoints[n - 2]);
    let out = sabot()
        .arg("run")
        .arg(&script)
        .arg("--state-dir")
        .arg(&state)
        .args(["--checkpoint-interval", "20ms", "--parallelism", "2"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("skipped a damaged checkpoint").count(),
        2,
        "{stderr}"
    );
    assert_eq!(read_rows(&fixture.path("out")), expected);

    // The same crash, with the second newest checkpoint's manifest unreadable: what it
    // published cannot be known, so the run refuses (and publishes nothing).
    for (dir, pristine) in [
        (&state, &pristine_state),
        (&fixture.path("out"), &pristine_out),
    ] {
        std::fs::remove_dir_all(dir).unwrap();
        copy_dir(pristine, dir);
    }
    damage(&checkpoints[n - 1]);
    std::fs::write(checkpoints[n - 2].join("_MANIFEST.json"), b"{ not json").unwrap();
    let before = read_rows(&fixture.path("out"));
    let out = sabot()
        .arg("run")
        .arg(&script)
        .arg("--state-dir")
        .arg(&state)
        .args(["--parallelism", "2"])
        .stdout(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("manifest cannot be read"), "{stderr}");
    assert_eq!(read_rows(&fixture.path("out")), before);
}
