//! `sabot bench checkpoint`: how long checkpoints of large keyed window state take.
//!
//! An unbounded `datagen` stream with keys uniform over `0..keys` feeds one 1-day TUMBLE window
//! (COUNT and SUM per key), so the window state grows to about `keys` entries and never fires.
//! Checkpoints go to a temporary directory every `interval`; once the state holds nearly every
//! key, the next checkpoints are measured: duration from barrier injection to completion, and
//! the bytes of state written. Then the job is stopped as in a crash and started again on the
//! same directory: the recovery time is how long that start takes, from opening the newest
//! checkpoint (manifest, checksums, state files) to a running job with its window state rebuilt
//! (operators restore their state when the plan is executed, before reading any input).

use std::time::{Duration, Instant};

use datafusion::common::{Result, exec_err, internal_err};
use futures::StreamExt;

use crate::SabotConfig;
use crate::checkpoint::coordinator::{CheckpointConfig, CheckpointStats};
use crate::config::StateBackend;
use crate::planner::script::split_statements;
use crate::runtime::job::{JobOptions, Started, start_job};

/// One measured checkpoint, with the rows read when it completed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckpointResult {
    /// `state.backend`.
    pub backend: &'static str,
    /// Keys the stream draws from.
    pub keys: u64,
    /// The checkpoint.
    pub stats: CheckpointStats,
}

/// Recovery from the last checkpoint of the run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecoveryResult {
    /// The checkpoint restored.
    pub epoch: u64,
    /// From starting the job again to running with its state restored, in milliseconds.
    pub recovery_ms: f64,
}

/// Runs the job until `measured` checkpoints complete after the state is (nearly) full, then
/// measures a recovery from the newest checkpoint.
pub async fn bench(
    keys: u64,
    interval: Duration,
    measured: usize,
    backend: StateBackend,
) -> Result<(Vec<CheckpointResult>, RecoveryResult)> {
    let backend_name = match backend {
        StateBackend::Memory => "memory",
        StateBackend::RocksDb => "rocksdb",
    };
    let dir = std::env::temp_dir().join(format!("sabot-bench-checkpoint-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ctx = crate::session_context(SabotConfig {
        parallelism: 1,
        checkpoint_interval: Some(interval),
        state_backend: backend,
        rocksdb_local_dir: Some(dir.join("rocksdb").display().to_string()),
        ..SabotConfig::default()
    });
    let script = format!(
        "CREATE TABLE s (k BIGINT, v BIGINT, ts TIMESTAMP(3), \
           WATERMARK FOR ts AS ts - INTERVAL '1' HOUR) \
         WITH ('connector' = 'datagen', 'rows-per-second' = '0', 'fields.k.kind' = 'random', \
               'fields.k.min' = '0', 'fields.k.max' = '{}');\n\
         CREATE TABLE discard (k BIGINT, n BIGINT, total BIGINT) WITH ('connector' = 'blackhole');\n\
         INSERT INTO discard SELECT k, COUNT(*), SUM(v) \
         FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' DAY)) \
         GROUP BY k, window_start, window_end;",
        keys.saturating_sub(1)
    );
    let statements = split_statements(&script)?;
    let Some((last, setup)) = statements.split_last() else {
        return internal_err!("empty benchmark script");
    };
    for s in setup {
        ctx.sql(&s.sql).await?.collect().await?;
    }
    let df = ctx.sql(&last.sql).await?;
    let options = || JobOptions {
        checkpoint_interval: Some(interval),
        checkpoints: Some((
            CheckpointConfig {
                location: dir.join("checkpoints").display().to_string(),
                retained: 2,
                timeout: Duration::from_secs(600),
                local_dir: dir.join("rocksdb"),
            },
            "bench-checkpoint".to_string(),
        )),
    };
    let Started::Running(mut job) = start_job(df, options()).await? else {
        return internal_err!("a fresh checkpoint directory has nothing to resume");
    };
    let Some(coordinator) = job.context.checkpointing().cloned() else {
        return internal_err!("the benchmark job has no coordinator");
    };
    let context = std::sync::Arc::clone(&job.context);
    let drive = tokio::spawn(async move {
        while let Some(batch) = job.stream.next().await {
            batch?;
        }
        Ok::<(), datafusion::error::DataFusionError>(())
    });
    // Five times the key count draws all but e^-5 (0.7%) of the keys.
    let full = keys.saturating_mul(5);
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first_measured = None;
    let mut results = loop {
        if Instant::now() > deadline {
            drive.abort();
            return exec_err!("the checkpoints did not complete within 10 minutes");
        }
        if drive.is_finished() {
            return exec_err!("the benchmark job ended early");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let history = coordinator.history();
        if first_measured.is_none() && context.stats.events_in() >= full {
            first_measured = Some(history.last().map_or(0, |s| s.epoch) + 1);
        }
        if let Some(first) = first_measured {
            let done: Vec<CheckpointResult> = history
                .iter()
                .filter(|s| s.epoch >= first)
                .map(|s| CheckpointResult {
                    backend: backend_name,
                    keys,
                    stats: *s,
                })
                .collect();
            if done.len() >= measured {
                break done;
            }
        }
    };
    // A crash: the job stops wherever it is; then it starts again on the same directory.
    drive.abort();
    let _ = drive.await;
    let df = ctx.sql(&last.sql).await?;
    let started = Instant::now();
    let resumed = start_job(df, options()).await?;
    let recovery_ms = started.elapsed().as_secs_f64() * 1000.0;
    let epoch = match &resumed {
        Started::Running(job) if job.restored_epoch > 0 => job.restored_epoch,
        _ => return internal_err!("the restarted benchmark job restored no checkpoint"),
    };
    drop(resumed);
    let _ = std::fs::remove_dir_all(&dir);
    results.truncate(measured);
    Ok((results, RecoveryResult { epoch, recovery_ms }))
}

/// A table of results.
pub fn format_table(results: &[CheckpointResult]) -> String {
    let mut out = String::from(
        "backend | keys       | epoch | duration ms | state MiB\n\
         --------+------------+-------+-------------+----------\n",
    );
    for r in results {
        out.push_str(&format!(
            "{:<7} | {:>10} | {:>5} | {:>11.1} | {:>9.1}\n",
            r.backend,
            r.keys,
            r.stats.epoch,
            r.stats.duration_ms,
            r.stats.state_bytes as f64 / (1024.0 * 1024.0)
        ));
    }
    out
}
