//! `sabot bench nexmark`: one Nexmark query over the built-in generator, measured.
//!
//! Runs a short warm-up, then the query over `--events` events into a blackhole sink, and reports
//! wall time, CPU time (from `getrusage`, so "per core" is measured, not assumed), events per
//! second, events per second per core, and the peak resident memory of the process. Events are
//! Nexmark events of all kinds (`events.num`), the benchmark's usual unit; a bid-only query reads
//! 46 of every 50.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::common::{Result, plan_err};
use futures::StreamExt;

use crate::SabotConfig;
use crate::config::StateBackend;
use crate::planner::script::split_statements;
use crate::runtime::job::{JobOptions, Started, start_job};

/// The queries, compiled into the binary.
pub const QUERIES: &[(&str, &str)] = &[
    ("q0", include_str!("../../benches/nexmark/q0.sql")),
    ("q1", include_str!("../../benches/nexmark/q1.sql")),
    ("q2", include_str!("../../benches/nexmark/q2.sql")),
    ("q3", include_str!("../../benches/nexmark/q3.sql")),
    ("q4", include_str!("../../benches/nexmark/q4.sql")),
    ("q5", include_str!("../../benches/nexmark/q5.sql")),
    ("q5-agg", include_str!("../../benches/nexmark/q5-agg.sql")),
    ("q6", include_str!("../../benches/nexmark/q6.sql")),
    ("q7", include_str!("../../benches/nexmark/q7.sql")),
    ("q7-agg", include_str!("../../benches/nexmark/q7-agg.sql")),
    ("q8", include_str!("../../benches/nexmark/q8.sql")),
    ("q9", include_str!("../../benches/nexmark/q9.sql")),
    ("q11", include_str!("../../benches/nexmark/q11.sql")),
    ("q12", include_str!("../../benches/nexmark/q12.sql")),
    ("q13", include_str!("../../benches/nexmark/q13.sql")),
    ("q14", include_str!("../../benches/nexmark/q14.sql")),
    ("q15", include_str!("../../benches/nexmark/q15.sql")),
    ("q16", include_str!("../../benches/nexmark/q16.sql")),
    ("q17", include_str!("../../benches/nexmark/q17.sql")),
    ("q18", include_str!("../../benches/nexmark/q18.sql")),
    ("q19", include_str!("../../benches/nexmark/q19.sql")),
    ("q20", include_str!("../../benches/nexmark/q20.sql")),
    ("q21", include_str!("../../benches/nexmark/q21.sql")),
    ("q22", include_str!("../../benches/nexmark/q22.sql")),
    ("u1", include_str!("../../benches/nexmark/u1.sql")),
    ("u2", include_str!("../../benches/nexmark/u2.sql")),
    ("u3", include_str!("../../benches/nexmark/u3.sql")),
    ("o1", include_str!("../../benches/nexmark/o1.sql")),
    ("t1", include_str!("../../benches/nexmark/t1.sql")),
    ("q10", include_str!("../../benches/nexmark/q10.sql")),
];

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct BenchResult {
    /// Query name.
    pub query: String,
    /// Nexmark events (all kinds).
    pub events: u64,
    /// Rows the source read (bids for a bid query).
    pub rows_read: u64,
    /// Rows written to the sink.
    pub rows_out: u64,
    /// Parallelism.
    pub parallelism: usize,
    /// Wall-clock seconds.
    pub wall_seconds: f64,
    /// CPU seconds (user + system) of the process during the run.
    pub cpu_seconds: f64,
    /// Events per wall-clock second.
    pub events_per_second: f64,
    /// Events per CPU second.
    pub events_per_core_second: f64,
    /// Peak resident set size of the process, in MiB.
    pub peak_rss_mib: f64,
    /// Late rows dropped.
    pub late_rows: u64,
    /// Checkpoints completed during the run.
    pub checkpoints: usize,
    /// The longest of them, in milliseconds.
    pub checkpoint_ms_max: f64,
    /// Median latency of a window's row: from the sources' watermark passing its end to the
    /// sink writing it, in event time scaled to processing time (the run's event time per
    /// wall second); `None` when the sink has no `window_end` / `endtime` column.
    pub latency_p50_ms: Option<f64>,
    /// The 99th percentile of the same.
    pub latency_p99_ms: Option<f64>,
}

/// CPU seconds used by this process so far, and its peak RSS in KiB.
pub fn usage() -> (f64, f64) {
    // SAFETY: getrusage only writes the struct we pass; zeroed is a valid rusage.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: RUSAGE_SELF with a valid pointer.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    if rc != 0 {
        return (0.0, 0.0);
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (secs(u.ru_utime) + secs(u.ru_stime), u.ru_maxrss as f64)
}

/// The script of `query` for `events` events at `tps` events per second of event time.
pub fn query_script(query: &str, events: u64, tps: u64) -> Result<String> {
    let Some((_, sql)) = QUERIES.iter().find(|(name, _)| *name == query) else {
        let names: Vec<&str> = QUERIES.iter().map(|(n, _)| *n).collect();
        return plan_err!(
            "unknown Nexmark query '{query}'; available: {}",
            names.join(", ")
        );
    };
    let out = output_dir(query);
    let _ = std::fs::remove_dir_all(&out);
    Ok(sql
        .replace("${EVENTS}", &events.to_string())
        .replace("${TPS}", &tps.to_string())
        .replace("${OUT}", &out.display().to_string()))
}

/// Where a query writing files (q10, `${OUT}` in its script) writes them: a temporary
/// directory of this process, deleted after each run.
fn output_dir(query: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("sabot-bench-out-{}-{query}", std::process::id()))
}

/// How a benchmark job runs.
#[derive(Debug, Clone, Copy)]
pub struct RunConfig {
    /// Parallel tasks.
    pub parallelism: usize,
    /// Checkpoint at this interval (into a temporary directory).
    pub checkpoint_interval: Option<Duration>,
    /// `state.backend`.
    pub backend: StateBackend,
}

/// Event time of the first event in the benchmark scripts (`base-time` 2024-01-01 00:00:00).
const BASE_TIME_MS: i64 = 1_704_067_200_000;

/// Runs `query` once over `events` events and measures it; with `progress`, a progress bar on
/// stderr follows the sources' watermark through the run's event time.
pub async fn run_once(
    query: &str,
    events: u64,
    tps: u64,
    run: RunConfig,
    progress: bool,
) -> Result<BenchResult> {
    let script = query_script(query, events, tps)?;
    run_script(query, &script, events, tps, run, progress).await
}

/// Runs `script` (a query's script over `events` Nexmark events at `tps`) once and measures it.
pub async fn run_script(
    query: &str,
    script: &str,
    events: u64,
    tps: u64,
    run: RunConfig,
    progress: bool,
) -> Result<BenchResult> {
    let RunConfig {
        parallelism,
        checkpoint_interval,
        backend,
    } = run;
    let ctx = crate::session_context(SabotConfig {
        parallelism,
        batch_size: 8192,
        checkpoint_interval: None,
        state_backend: backend,
        ..SabotConfig::default()
    });
    let statements = split_statements(script)?;
    let Some((last, setup)) = statements.split_last() else {
        return plan_err!("empty benchmark script");
    };
    for s in setup {
        ctx.sql(&s.sql).await?.collect().await?;
    }
    let df = ctx.sql(&last.sql).await?;
    // With an interval, checkpoints go to a fresh temporary directory.
    let dir = std::env::temp_dir().join(format!("sabot-bench-{}-{}", std::process::id(), query));
    let _ = std::fs::remove_dir_all(&dir);
    let options = JobOptions {
        checkpoint_interval,
        checkpoints: checkpoint_interval.map(|_| {
            (
                crate::checkpoint::coordinator::CheckpointConfig {
                    location: dir.display().to_string(),
                    retained: 2,
                    timeout: Duration::from_secs(600),
                    local_dir: std::env::temp_dir().join("sabot-rocksdb"),
                },
                format!("bench-{query}"),
            )
        }),
    };
    let (cpu_before, _) = usage();
    let started = Instant::now();
    let Started::Running(mut job) = start_job(df, options).await? else {
        return datafusion::common::internal_err!("a benchmark job has nothing to resume");
    };
    job.context.stats.record_window_lags();
    let bar = (progress && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
        let context = Arc::clone(&job.context);
        // The scripts' base time; the last event is events / tps seconds of event time later.
        let span_ms = (events as f64 / tps.max(1) as f64 * 1000.0).max(1.0);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                let done =
                    ((context.stats.watermark() - BASE_TIME_MS) as f64 / span_ms).clamp(0.0, 1.0);
                let filled = (done * 30.0) as usize;
                eprint!(
                    "\r  [{}{}] {:3.0}%  {:.0}s",
                    "#".repeat(filled),
                    " ".repeat(30 - filled),
                    done * 100.0,
                    started.elapsed().as_secs_f64()
                );
            }
        })
    });
    while let Some(batch) = job.stream.next().await {
        batch?;
    }
    if let Some(bar) = bar {
        bar.abort();
        eprint!("\r{:50}\r", "");
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu_after, rss_kib) = usage();
    let cpu = (cpu_after - cpu_before).max(1e-9);
    let checkpoints = job
        .context
        .checkpointing()
        .map(|c| c.history())
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(output_dir(query));
    let stats = &job.context.stats;
    // Event-time lags scaled to processing time: the run covered `span_ms` of event time in
    // `wall` seconds.
    let span_ms = events as f64 / tps.max(1) as f64 * 1000.0;
    let scale = wall * 1000.0 / span_ms.max(1.0);
    let mut lags = stats.window_lags();
    // Processing-time windows end on the clock, not in the events' time: no latency.
    if script.to_ascii_uppercase().contains("PROCTIME()") {
        lags.clear();
    }
    lags.sort_unstable();
    let percentile = |p: f64| -> Option<f64> {
        let last = lags.len().checked_sub(1)?;
        let i = ((last as f64) * p).round() as usize;
        Some(lags[i.min(last)].max(0) as f64 * scale)
    };
    Ok(BenchResult {
        latency_p50_ms: percentile(0.5),
        latency_p99_ms: percentile(0.99),
        checkpoints: checkpoints.len(),
        checkpoint_ms_max: checkpoints
            .iter()
            .map(|c| c.duration_ms)
            .fold(0.0, f64::max),
        query: match backend {
            StateBackend::Memory => query.to_string(),
            StateBackend::RocksDb => format!("{query} (rocksdb)"),
        },
        events,
        rows_read: stats.events_in(),
        rows_out: stats.rows_out(),
        parallelism,
        wall_seconds: wall,
        cpu_seconds: cpu,
        events_per_second: events as f64 / wall.max(1e-9),
        events_per_core_second: events as f64 / cpu,
        peak_rss_mib: rss_kib / 1024.0,
        late_rows: stats.late_rows(),
    })
}

/// Runs the setup statements of `script`, then its last statement as a measured job; `prepare`
/// may register tables first. Events are the rows the sources read.
pub async fn measure_script(
    name: &str,
    script: &str,
    parallelism: usize,
    prepare: impl FnOnce(&crate::SabotContext) -> Result<()>,
) -> Result<BenchResult> {
    let ctx = crate::session_context(SabotConfig {
        parallelism,
        batch_size: 8192,
        checkpoint_interval: None,
        ..SabotConfig::default()
    });
    prepare(&ctx)?;
    let statements = split_statements(script)?;
    let Some((last, setup)) = statements.split_last() else {
        return plan_err!("empty benchmark script");
    };
    for s in setup {
        ctx.sql(&s.sql).await?.collect().await?;
    }
    let df = ctx.sql(&last.sql).await?;
    let (cpu_before, _) = usage();
    let started = Instant::now();
    let Started::Running(mut job) = start_job(df, JobOptions::default()).await? else {
        return datafusion::common::internal_err!("a benchmark job has no state directory");
    };
    while let Some(batch) = job.stream.next().await {
        batch?;
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu_after, rss_kib) = usage();
    let cpu = (cpu_after - cpu_before).max(1e-9);
    let stats = &job.context.stats;
    let events = stats.events_in();
    Ok(BenchResult {
        query: name.to_string(),
        events,
        rows_read: events,
        rows_out: stats.rows_out(),
        parallelism,
        wall_seconds: wall,
        cpu_seconds: cpu,
        events_per_second: events as f64 / wall.max(1e-9),
        events_per_core_second: events as f64 / cpu,
        peak_rss_mib: rss_kib / 1024.0,
        late_rows: stats.late_rows(),
        checkpoints: 0,
        checkpoint_ms_max: 0.0,
        latency_p50_ms: None,
        latency_p99_ms: None,
    })
}

/// Where a benchmark's events come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The built-in Nexmark generator.
    Generator,
    /// A Kafka topic per table, loaded with the generator's events as JSON first (a librdkafka
    /// mock cluster in a child process): the run measures consume, decode and query.
    Kafka,
}

/// Warm-up, then the measured run, over the generator's events.
pub async fn bench(query: &str, events: u64, tps: u64, run: RunConfig) -> Result<BenchResult> {
    let warmup = (events / 10).clamp(1, 1_000_000);
    let no_checkpoints = RunConfig {
        checkpoint_interval: None,
        ..run
    };
    run_once(query, warmup, tps, no_checkpoints, false).await?;
    run_once(query, events, tps, run, true).await
}

pub fn format_table(results: &[BenchResult]) -> String {
    let mut out = String::from(
        "query            | events     | parallelism | wall s  | cpu s   | events/s    | events/s/core | peak RSS MiB | rows out/event | latency p50/p99 ms | checkpoints (max ms)\n\
         -----------------+------------+-------------+---------+---------+-------------+---------------+--------------+----------------+--------------------+---------------------\n",
    );
    for r in results {
        let latency = match (r.latency_p50_ms, r.latency_p99_ms) {
            (Some(p50), Some(p99)) => format!("{p50:.1} / {p99:.1}"),
            _ => "-".to_string(),
        };
        out.push_str(&format!(
            "{:<16} | {:>10} | {:>11} | {:>7.2} | {:>7.2} | {:>11.0} | {:>13.0} | {:>12.1} | {:>14.4} | {:>18} | {:>4} ({:.0})\n",
            r.query,
            r.events,
            r.parallelism,
            r.wall_seconds,
            r.cpu_seconds,
            r.events_per_second,
            r.events_per_core_second,
            r.peak_rss_mib,
            r.rows_out as f64 / r.events.max(1) as f64,
            latency,
            r.checkpoints,
            r.checkpoint_ms_max
        ));
    }
    out
}
