//! `sabot run FILE.sql`: statements in order; queries and INSERTs run as jobs.
//!
//! A query prints its rows as they arrive; an `INSERT INTO` runs until its input ends (or
//! Ctrl-C) and reports the rows written. Runs longer than a second show a progress line on
//! standard error (events read, events/s, watermark, late rows), and every job ends with a
//! summary line there. An error names the statement, its line in the script and the cause.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::common::{DataFusionError, Result};
use futures::StreamExt;

use super::output::{OutputFormat, ResultPrinter};
use crate::checkpoint::coordinator::CheckpointConfig;
use crate::context::SabotContext;
use crate::physical::job_context::JobContext;
use crate::physical::message::format_watermark;
use crate::planner::script::{ScriptStatement, split_statements};
use crate::runtime::job::{JobOptions, Started, fingerprint, start_job};
use crate::statement::{Statement, StatementKind};

/// The job currently running, for the progress line and the Ctrl-C summary.
pub type CurrentJob = Arc<Mutex<Option<(Arc<JobContext>, Instant)>>>;

/// A failed statement.
#[derive(Debug)]
pub struct StatementError {
    /// 1-based index of the statement in the script.
    pub index: usize,
    /// The statement.
    pub statement: ScriptStatement,
    /// The cause.
    pub error: DataFusionError,
}

impl std::fmt::Display for StatementError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // At most 6 lines of at most 160 characters of the statement.
        let mut text: String = self
            .statement
            .sql
            .lines()
            .take(6)
            .map(|line| match line.char_indices().nth(160) {
                Some((cut, _)) => format!("{} ...", &line[..cut]),
                None => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n    ");
        if self.statement.sql.lines().count() > 6 {
            text.push_str("\n    ...");
        }
        write!(
            f,
            "error in statement {} (line {}):\n    {text}\n{}",
            self.index,
            self.statement.line,
            crate::error::message(&self.error)
        )
    }
}

/// Runs every statement of `script` in order; stops at the first error.
pub async fn run_script(
    ctx: &SabotContext,
    script: &str,
    format: OutputFormat,
    current: &CurrentJob,
) -> std::result::Result<(), StatementError> {
    let statements = split_statements(script).map_err(|error| StatementError {
        index: 0,
        statement: ScriptStatement {
            sql: script.lines().next().unwrap_or_default().to_string(),
            line: 1,
        },
        error,
    })?;
    // Jobs are numbered among the script's checkpointed jobs (queries and INSERTs), so that
    // adding or changing other statements (SET, CREATE, EXPLAIN) before a restart still
    // resumes the same job.
    let mut jobs = 0;
    for (i, statement) in statements.into_iter().enumerate() {
        let parsed = Statement::parse(&statement.sql);
        let job = is_checkpointed_job(&parsed).then(|| {
            jobs += 1;
            JobNumber {
                number: jobs,
                statement: i + 1,
            }
        });
        if let Err(error) = run_statement(ctx, &parsed, job, format, current).await {
            return Err(StatementError {
                index: i + 1,
                statement,
                error,
            });
        }
    }
    Ok(())
}

/// A query or INSERT that checkpoints (not EXPLAIN or SHOW). Its position among these names
/// its checkpoint directory, so which statements count must never change.
fn is_checkpointed_job(statement: &Statement) -> bool {
    matches!(
        statement.kind,
        StatementKind::Query | StatementKind::Insert { .. }
    )
}

/// Where a job stands in its script.
#[derive(Debug, Clone, Copy)]
struct JobNumber {
    /// Among the script's checkpointed jobs (names its checkpoint directory, `job-<n>`).
    number: usize,
    /// Among all statements (what versions before 2026-11-29 named the directory after).
    statement: usize,
}

async fn run_statement(
    ctx: &SabotContext,
    statement: &Statement,
    job: Option<JobNumber>,
    format: OutputFormat,
    current: &CurrentJob,
) -> Result<()> {
    let job_number = job.map_or(0, |j| j.number);
    let insert = matches!(statement.kind, StatementKind::Insert { .. });
    let df = ctx.execute(statement).await?;
    if !statement.returns_rows() && !insert {
        df.collect().await?;
        return Ok(());
    }
    let config = ctx.config();
    // Each job of a script checkpoints into its own directory, named by its position; the
    // fingerprint of its SQL guards against resuming a different query's state.
    let checkpoints = config.state_dir.as_ref().zip(job).map(|(dir, job)| {
        let dir = dir.trim_end_matches('/');
        let mut location = format!("{dir}/job-{}", job.number);
        // A local directory written by an earlier version under the statement's position.
        let old = format!("{dir}/job-{}", job.statement);
        if !dir.contains("://")
            && !std::path::Path::new(&location).exists()
            && std::path::Path::new(&old).exists()
        {
            location = old;
        }
        let checkpoint = CheckpointConfig {
            location,
            retained: config.checkpoint_retained,
            timeout: config.checkpoint_timeout,
            local_dir: config.rocksdb_dir(),
        };
        (checkpoint, fingerprint(&statement.sql))
    });
    let options = JobOptions {
        checkpoint_interval: config.checkpoint_interval,
        checkpoints,
    };
    let mut job = match start_job(df, options).await? {
        Started::Running(job) => job,
        Started::AlreadyFinished(epoch) => {
            eprintln!(
                "job {job_number} already finished in an earlier run (checkpoint {epoch}); its \
                 output is committed, skipping it"
            );
            return Ok(());
        }
    };
    if job.restored_epoch > 0 {
        eprintln!(
            "job {job_number}: resuming from checkpoint {}",
            job.restored_epoch
        );
    }
    let started = Instant::now();
    if let Ok(mut c) = current.lock() {
        *c = Some((Arc::clone(&job.context), started));
    }
    // Not a locked handle: a print sink of the same job writes to standard output too.
    let mut printer = ResultPrinter::new(format, job.stream.schema(), std::io::stdout());
    let mut inserted = None;
    while let Some(batch) = job.stream.next().await {
        let batch = batch?;
        if insert {
            let counts = batch.column(0).as_primitive::<UInt64Type>();
            if !counts.is_empty() {
                inserted = Some(counts.value(0));
            }
            continue;
        }
        printer.print(&batch)?;
        job.context.stats.add_rows_out(batch.num_rows() as u64);
    }
    if !insert {
        printer.finish()?;
    }
    if let Ok(mut c) = current.lock() {
        *c = None;
    }
    let stats = &job.context.stats;
    let elapsed = started.elapsed();
    if let Some(n) = inserted {
        eprintln!("inserted {n} rows");
    }
    if stats.events_in() > 0 {
        eprintln!("{}", summary(&job.context, elapsed));
    }
    Ok(())
}

/// One line about a job: events, rate, late rows, malformed records, time.
pub fn summary(job: &JobContext, elapsed: Duration) -> String {
    let s = &job.stats;
    let secs = elapsed.as_secs_f64().max(1e-9);
    let mut line = format!(
        "job {}: {} events in {:.2}s ({:.0} events/s), {} rows out, {} late rows dropped",
        job.job_id,
        s.events_in(),
        secs,
        s.events_in() as f64 / secs,
        s.rows_out(),
        s.late_rows()
    );
    if s.malformed_records() > 0 {
        line.push_str(&format!(
            ", {} malformed records skipped",
            s.malformed_records()
        ));
    }
    line
}

/// Prints a progress line for the current job every second (on a terminal, in place).
pub async fn report_progress(current: CurrentJob) {
    let terminal = std::io::stderr().is_terminal();
    let mut ticker = tokio::time::interval(Duration::from_secs(1));
    let mut last: Option<(u64, u64, Instant)> = None;
    let mut printed = 0u64;
    loop {
        ticker.tick().await;
        let job = current.lock().ok().and_then(|c| c.clone());
        let Some((job, started)) = job else {
            last = None;
            continue;
        };
        let events = job.stats.events_in();
        let now = Instant::now();
        let rate = match last {
            Some((id, prev, at)) if id == job.job_id => {
                (events.saturating_sub(prev)) as f64
                    / now.duration_since(at).as_secs_f64().max(1e-9)
            }
            _ => events as f64 / now.duration_since(started).as_secs_f64().max(1e-9),
        };
        last = Some((job.job_id, events, now));
        if now.duration_since(started) < Duration::from_secs(1) {
            continue;
        }
        printed += 1;
        let line = format!(
            "events {events}  {rate:.0}/s  watermark {}  late {}",
            format_watermark(job.stats.watermark()),
            job.stats.late_rows()
        );
        if terminal {
            eprint!("\r\x1b[2K{line}\r");
        } else if printed % 5 == 1 {
            eprintln!("{line}");
        }
    }
}
