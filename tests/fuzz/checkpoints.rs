//! Checkpoint files: a job (`sabot run --state-dir`) crashes after the manifest of its third
//! checkpoint is written, before its sink commits; then any of its checkpoint files (manifests,
//! Arrow state files, RocksDB files) is truncated, bit-flipped, emptied, extended or replaced
//! by garbage, or deleted (state files: a checkpoint without its manifest looks like one that
//! never completed, by design), and the job is run again on the damaged directory.
//!
//! Oracle: no panic, no abort and no hang; the run either ends with exactly the rows of the
//! batch answer (it restored an intact checkpoint, or refused nothing), or refuses with an
//! error about the checkpoint. Silently wrong output (rows lost or repeated) fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};

use super::harness;

const ROWS: u64 = 40_000;
const BASE_MS: u64 = 1_704_067_200_000;

#[derive(Arbitrary, Debug)]
struct Damage {
    backend: bool,
    query: bool,
    first: Edit,
    more: Vec<Edit>,
}

#[derive(Arbitrary, Debug)]
enum Edit {
    Truncate(u16, u32),
    FlipBits(u16, u32, u8),
    Delete(u16),
    Empty(u16),
    Garbage(u16, Vec<u8>),
    Append(u16, Vec<u8>),
}

fn sabot() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sabot"))
}

const TUMBLE: &str = "SELECT k, window_start, window_end, COUNT(*), SUM(v) \
    FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '2' SECOND)) \
    GROUP BY k, window_start, window_end";

const SESSION: &str = "SELECT k, window_start, window_end, COUNT(*), SUM(v) \
    FROM TABLE(SESSION(TABLE src PARTITION BY k, DESCRIPTOR(ts), INTERVAL '0.25' SECOND)) \
    GROUP BY k, window_start, window_end";

/// One prepared crash: the script, its state and sink directories (checkpoints hold the
/// sink's absolute paths, so every case runs in these, restored from the pristine copies
/// first), and the answer.
struct Crashed {
    script: PathBuf,
    state: PathBuf,
    out: PathBuf,
    pristine_state: PathBuf,
    pristine_out: PathBuf,
    expected: Vec<String>,
}

fn script(dir: &Path, name: &str, select: &str, backend: &str) -> PathBuf {
    let text = format!(
        "SET 'batch-size' = '200';\nSET 'state.backend' = '{backend}';\n\
         CREATE TABLE src (k BIGINT, v BIGINT, ts TIMESTAMP(3), \
           WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) \
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'json');\n\
         CREATE TABLE dst (k BIGINT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), \
           n BIGINT, total BIGINT) \
           WITH ('connector' = 'filesystem', 'path' = '{}', 'format' = 'csv');\n\
         INSERT INTO dst {select};\n",
        dir.join("in").display(),
        dir.join(name).display()
    );
    let file = dir.join(format!("{name}.sql"));
    std::fs::write(&file, text).expect("script");
    file
}

/// Published rows of a filesystem sink, sorted.
fn rows(dir: &Path) -> Vec<String> {
    let mut rows = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        rows.extend(text.lines().map(str::to_string));
    }
    rows.sort();
    rows
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("dir");
    for entry in std::fs::read_dir(from).expect("read").flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).expect("copy");
        }
    }
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// Runs `script` on `state`, with an optional failpoint; the exit code and standard error.
fn run(script: &Path, state: &Path, failpoint: Option<&str>) -> Result<(i32, String), String> {
    let mut cmd = sabot();
    cmd.arg("run")
        .arg(script)
        .arg("--state-dir")
        .arg(state)
        .args(["--checkpoint-interval", "2ms", "--parallelism", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(fp) = failpoint {
        cmd.env("SABOT_FAILPOINT", fp);
    }
    let child = cmd.spawn().map_err(|e| e.to_string())?;
    let id = child.id();
    // A watchdog: a run past 60 s is a hang.
    let (done, waiting) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if waiting.recv_timeout(Duration::from_secs(60)).is_err() {
            let _ = Command::new("kill").arg("-9").arg(id.to_string()).status();
            return true;
        }
        false
    });
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let _ = done.send(());
    if watchdog.join().unwrap_or(false) {
        return Err("a run on a damaged state directory did not end within 60 s".into());
    }
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    match out.status.code() {
        Some(code) => Ok((code, stderr)),
        None => Err(format!("the run was killed by a signal: {stderr}")),
    }
}

fn prepare(dir: &Path, session: bool, rocksdb: bool) -> Crashed {
    let name = format!(
        "{}-{}",
        if session { "session" } else { "tumble" },
        if rocksdb { "rocksdb" } else { "memory" }
    );
    let select = if session { SESSION } else { TUMBLE };
    let backend = if rocksdb { "rocksdb" } else { "memory" };
    // The answer: the same job run uninterrupted.
    let oracle = script(dir, &format!("{name}-oracle"), select, backend);
    let status = sabot()
        .arg("run")
        .arg(&oracle)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("oracle");
    assert!(status.success(), "the oracle run failed");
    let expected = rows(&dir.join(format!("{name}-oracle")));
    assert!(
        expected.len() > 10,
        "the oracle has {} rows",
        expected.len()
    );
    let script = script(dir, &name, select, backend);
    let state = dir.join(format!("{name}-state"));
    let (code, stderr) = run(&script, &state, Some("after-manifest@3")).expect("crash");
    assert_eq!(code, 86, "the crash run: {stderr}");
    let out = dir.join(&name);
    let pristine_state = dir.join(format!("{name}-pristine-state"));
    let pristine_out = dir.join(format!("{name}-pristine-out"));
    copy_dir(&state, &pristine_state);
    copy_dir(&out, &pristine_out);
    Crashed {
        script,
        state,
        out,
        pristine_state,
        pristine_out,
        expected,
    }
}

fn damage(files: &[PathBuf], edit: &Edit) -> String {
    let pick = |i: u16| &files[i as usize % files.len()];
    let index = match edit {
        Edit::Truncate(i, _)
        | Edit::FlipBits(i, _, _)
        | Edit::Delete(i)
        | Edit::Empty(i)
        | Edit::Garbage(i, _)
        | Edit::Append(i, _) => *i,
    };
    let target = pick(index).display().to_string();
    let _ = match edit {
        Edit::Truncate(i, at) => std::fs::read(pick(*i)).and_then(|b| {
            let at = *at as usize % (b.len() + 1);
            std::fs::write(pick(*i), &b[..at])
        }),
        Edit::FlipBits(i, at, bits) => std::fs::read(pick(*i)).and_then(|mut b| {
            if !b.is_empty() {
                let at = *at as usize % b.len();
                b[at] ^= bits.max(&1);
            }
            std::fs::write(pick(*i), &b)
        }),
        // A checkpoint whose manifest is gone is indistinguishable from one that never
        // completed (a crash before its manifest): deleting manifests is left out.
        Edit::Delete(i) if !pick(*i).ends_with("_MANIFEST.json") => std::fs::remove_file(pick(*i)),
        Edit::Delete(_) => Ok(()),
        Edit::Empty(i) => std::fs::write(pick(*i), b""),
        Edit::Garbage(i, bytes) => std::fs::write(pick(*i), bytes),
        Edit::Append(i, bytes) => std::fs::read(pick(*i)).and_then(|mut b| {
            b.extend_from_slice(bytes);
            std::fs::write(pick(*i), &b)
        }),
    };
    target
}

/// The checkpoints target (see the module docs).
#[test]
fn fuzz_target_checkpoints() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("in")).expect("in");
    let mut rng = harness::Rng::new(42);
    for f in 0..2 {
        let mut text = String::new();
        for i in 0..ROWS {
            let ms = BASE_MS + i * 3 + 500 - rng.below(500);
            let t = chrono::DateTime::from_timestamp_millis(ms as i64).expect("time");
            text.push_str(&format!(
                "{{\"k\": {}, \"v\": {}, \"ts\": \"{}\"}}\n",
                rng.below(20),
                rng.below(1000),
                t.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f")
            ));
        }
        std::fs::write(dir.path().join(format!("in/part{f}.json")), text).expect("input");
    }
    let crashes: Vec<Crashed> = [(false, false), (false, true), (true, false), (true, true)]
        .into_iter()
        .map(|(session, rocksdb)| prepare(dir.path(), session, rocksdb))
        .collect();
    harness::run("checkpoints", 512, |data| {
        let mut u = Unstructured::new(data);
        let Ok(d) = Damage::arbitrary(&mut u) else {
            return Ok("no input".into());
        };
        let edits: Vec<&Edit> = std::iter::once(&d.first).chain(&d.more).take(3).collect();
        let crash = &crashes[usize::from(d.query) * 2 + usize::from(d.backend)];
        let (state, out) = (&crash.state, &crash.out);
        for (dir, pristine) in [(state, &crash.pristine_state), (out, &crash.pristine_out)] {
            let _ = std::fs::remove_dir_all(dir);
            copy_dir(pristine, dir);
        }
        let mut files = Vec::new();
        files_under(state, &mut files);
        files.sort();
        if files.is_empty() {
            return Err("the crashed run left no checkpoint files".into());
        }
        let damaged: Vec<String> = edits.iter().map(|edit| damage(&files, edit)).collect();
        let (code, stderr) = run(&crash.script, state, None)?;
        if stderr.contains("panicked") {
            Err(format!("a panic: {stderr}"))
        } else if code == 0 {
            let got = rows(out);
            if got == crash.expected {
                Ok(if stderr.contains("skipped a damaged checkpoint") {
                    "exact after a fallback".to_string()
                } else {
                    "exact".to_string()
                })
            } else {
                Err(format!(
                    "wrong output after {:?} of {damaged:?}: {} rows, expected {} ({stderr})",
                    edits,
                    got.len(),
                    crash.expected.len()
                ))
            }
        } else if code == 1 && stderr.contains("checkpoint") {
            Ok("refused".to_string())
        } else {
            Err(format!("exit {code} without a checkpoint error: {stderr}"))
        }
    });
}
