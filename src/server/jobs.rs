//! Continuous jobs started by `INSERT INTO ... SELECT` over the wire: they run in the
//! background, and `SHOW JOBS` / `CANCEL JOB n` see every session's jobs.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err};
use datafusion::dataframe::DataFrame;
use futures::StreamExt;
use tokio::task::JoinHandle;

use crate::checkpoint::coordinator::CheckpointConfig;
use crate::config::SabotConfig;
use crate::connectors::SinkConnector;
use crate::error::SqlStateError;
use crate::physical::job_context::JobContext;
use crate::physical::message::format_watermark;
use crate::runtime::job::{JobOptions, Started, fingerprint, start_job};
use crate::server::errors::sqlstate;

/// Where a job is.
#[derive(Debug, Clone)]
enum JobState {
    Running,
    Finished,
    Failed(String),
    Canceled,
}

struct Job {
    sql: String,
    /// The materialized view the job maintains.
    view: Option<String>,
    state: Arc<Mutex<JobState>>,
    context: Option<Arc<JobContext>>,
    task: Option<JoinHandle<()>>,
    /// The table of the materialized view it fills.
    view_table: Option<Arc<dyn SinkConnector>>,
}

/// What `FLUSH` waits on for one view: its job's id, context and state, and its table.
type FlushedView = (
    u64,
    Arc<JobContext>,
    Arc<dyn SinkConnector>,
    Arc<Mutex<JobState>>,
);

/// A materialized view a job fills.
struct View {
    name: String,
    /// The view's table, told when the job fails.
    table: Option<Arc<dyn SinkConnector>>,
}

/// Every job of the server.
pub struct Jobs {
    jobs: Mutex<BTreeMap<u64, Job>>,
    /// The last job id handed out (ids are never reused, not even across restarts: a job's
    /// checkpoints live under its id).
    last_id: std::sync::atomic::AtomicU64,
}

impl Default for Jobs {
    fn default() -> Self {
        Self::new(None)
    }
}

impl Jobs {
    /// A registry whose ids continue after the jobs already checkpointed under `state_dir`.
    pub fn new(state_dir: Option<&str>) -> Self {
        let last = state_dir
            .and_then(|dir| std::fs::read_dir(format!("{}/jobs", dir.trim_end_matches('/'))).ok())
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        e.file_name()
                            .to_str()
                            .and_then(|n| n.strip_prefix("job-"))
                            .and_then(|n| n.parse::<u64>().ok())
                    })
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        Self {
            jobs: Mutex::new(BTreeMap::new()),
            last_id: std::sync::atomic::AtomicU64::new(last),
        }
    }
    /// Starts `df` (an INSERT) as a background job; returns its id.
    pub async fn start(&self, sql: &str, df: DataFrame, config: &SabotConfig) -> Result<u64> {
        self.start_with(sql, None, df, config).await
    }

    /// Starts the job that fills materialized view `view`; if it fails, `table` (the view's)
    /// answers its readers with the failure.
    pub async fn start_view(
        &self,
        sql: &str,
        view: &str,
        table: Option<Arc<dyn SinkConnector>>,
        df: DataFrame,
        config: &SabotConfig,
    ) -> Result<u64> {
        let view = View {
            name: view.to_string(),
            table,
        };
        self.start_with(sql, Some(view), df, config).await
    }

    /// The jobs that maintain materialized view `view`.
    pub fn view_jobs(&self, view: &str) -> Vec<u64> {
        let Ok(jobs) = self.lock() else {
            return Vec::new();
        };
        jobs.iter()
            .filter(|(_, j)| j.view.as_deref() == Some(view))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Forgets that a job maintains `view` (the view was dropped).
    pub fn forget_view(&self, view: &str) {
        if let Ok(mut jobs) = self.lock() {
            for job in jobs.values_mut() {
                if job
                    .view
                    .as_deref()
                    .is_some_and(|v| v.eq_ignore_ascii_case(view))
                {
                    job.view = None;
                }
            }
        }
    }

    /// Starts job `id` again after a server restart (it resumes from its checkpoints).
    pub async fn resume(
        &self,
        id: u64,
        sql: &str,
        df: DataFrame,
        config: &SabotConfig,
    ) -> Result<()> {
        self.last_id
            .fetch_max(id, std::sync::atomic::Ordering::Relaxed);
        self.run(id, sql, None, df, config).await
    }

    async fn start_with(
        &self,
        sql: &str,
        view: Option<View>,
        df: DataFrame,
        config: &SabotConfig,
    ) -> Result<u64> {
        let id = self
            .last_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        self.run(id, sql, view, df, config).await?;
        Ok(id)
    }

    async fn run(
        &self,
        id: u64,
        sql: &str,
        view: Option<View>,
        df: DataFrame,
        config: &SabotConfig,
    ) -> Result<()> {
        let checkpoints = config.state_dir.as_ref().map(|dir| {
            let checkpoint = CheckpointConfig {
                location: format!("{}/jobs/job-{id}", dir.trim_end_matches('/')),
                retained: config.checkpoint_retained,
                timeout: config.checkpoint_timeout,
                local_dir: config.rocksdb_dir(),
            };
            (checkpoint, fingerprint(sql))
        });
        let options = JobOptions {
            checkpoint_interval: config.checkpoint_interval,
            checkpoints,
        };
        let state = Arc::new(Mutex::new(JobState::Running));
        let view_table = view.as_ref().and_then(|v| {
            v.table
                .as_ref()
                .map(|table| (v.name.clone(), Arc::clone(table)))
        });
        let (context, task) = match start_job(df, options).await? {
            Started::Running(job) => {
                let context = Arc::clone(&job.context);
                let state = Arc::clone(&state);
                let task = tokio::spawn(async move {
                    // The whole job moves here: its barrier task lives as long as it runs (a
                    // closure capturing only `job.stream` dropped it, and with it every
                    // periodic checkpoint).
                    let mut job = job;
                    let mut result = Ok(());
                    while let Some(batch) = job.stream.next().await {
                        if let Err(e) = batch {
                            result = Err(e);
                            break;
                        }
                    }
                    if let Ok(mut s) = state.lock()
                        && matches!(*s, JobState::Running)
                    {
                        *s = match result {
                            Ok(()) => JobState::Finished,
                            Err(e) => {
                                log::warn!("job {id} failed: {e}");
                                if let Some((name, table)) = &view_table {
                                    table.job_failed(&SqlStateError {
                                        code: sqlstate(&e),
                                        message: format!(
                                            "materialized view {name} is not up to date: its \
                                             job {id} failed: {}",
                                            e.strip_backtrace()
                                        ),
                                    });
                                }
                                JobState::Failed(e.strip_backtrace())
                            }
                        };
                    }
                });
                (Some(context), Some(task))
            }
            Started::AlreadyFinished(_) => {
                if let Ok(mut s) = state.lock() {
                    *s = JobState::Finished;
                }
                (None, None)
            }
        };
        self.lock()?.insert(
            id,
            Job {
                sql: sql.trim().to_string(),
                view_table: view.as_ref().and_then(|v| v.table.clone()),
                view: view.map(|v| v.name),
                state,
                context,
                task,
            },
        );
        Ok(())
    }

    /// `FLUSH`: waits until every running materialized view holds the effect of every change
    /// made so far to the memory tables (and views) it reads. In the order the views were
    /// created (a view reads only views older than itself): once the live readers handed on
    /// every change, a barrier injected into the view's job follows those changes, and the
    /// view holds them when all its writers passed it. Fails after `timeout`.
    pub async fn flush(&self, timeout: std::time::Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let views: Vec<FlushedView> = {
            let jobs = self.lock()?;
            jobs.iter()
                .filter(|(_, j)| j.view.is_some())
                .filter_map(|(id, j)| {
                    Some((
                        *id,
                        Arc::clone(j.context.as_ref()?),
                        Arc::clone(j.view_table.as_ref()?),
                        Arc::clone(&j.state),
                    ))
                })
                .collect()
        };
        let running =
            |state: &Mutex<JobState>| state.lock().is_ok_and(|s| matches!(*s, JobState::Running));
        let pause = std::time::Duration::from_millis(1);
        for (id, context, table, state) in views {
            // The changes made so far, including those of the views flushed before this one.
            let target = crate::connectors::memory::last_change();
            let late = || {
                exec_err!(
                    "FLUSH waited {timeout:?} for materialized view job {id} to catch up; it is \
                     still behind (SHOW JOBS shows its progress)"
                )
            };
            while !crate::connectors::memory::caught_up(target) {
                if tokio::time::Instant::now() >= deadline {
                    return late();
                }
                tokio::time::sleep(pause).await;
            }
            let epoch = loop {
                if !running(&state) {
                    break None;
                }
                if let Some(epoch) = context.request_barrier() {
                    break Some(epoch);
                }
                if tokio::time::Instant::now() >= deadline {
                    return late();
                }
                tokio::time::sleep(pause).await;
            };
            let Some(epoch) = epoch else {
                continue; // it ended: nothing more will change its view
            };
            while running(&state) && !table.passed_barrier(epoch) {
                if tokio::time::Instant::now() >= deadline {
                    return late();
                }
                tokio::time::sleep(pause).await;
            }
            if let Ok(s) = state.lock()
                && let JobState::Failed(e) = &*s
            {
                return exec_err!(
                    "FLUSH: materialized view job {id} failed, so its view is not up to date: {e}"
                );
            }
        }
        Ok(())
    }

    /// Stops job `id`.
    pub fn cancel(&self, id: u64) -> Result<()> {
        let jobs = self.lock()?;
        let Some(job) = jobs.get(&id) else {
            return exec_err!("there is no job {id}; SHOW JOBS lists them");
        };
        let mut state = job.state.lock().map_err(poisoned)?;
        if matches!(*state, JobState::Running) {
            if let Some(task) = &job.task {
                task.abort();
            }
            *state = JobState::Canceled;
        }
        Ok(())
    }

    /// True if job `id` exists.
    pub fn contains(&self, id: u64) -> bool {
        self.lock().map(|j| j.contains_key(&id)).unwrap_or(false)
    }

    /// `SHOW JOBS`: id, SQL, state, events in, late rows, watermark, last checkpoint, rows
    /// out, and the rows and bytes of state its operators hold.
    pub fn table(&self) -> Result<RecordBatch> {
        let jobs = self.lock()?;
        let mut ids = Vec::new();
        let mut sqls = Vec::new();
        let mut states = Vec::new();
        let mut events = Vec::new();
        let mut late = Vec::new();
        let mut watermarks = Vec::new();
        let mut checkpoints = Vec::new();
        let mut rows_out = Vec::new();
        let mut state_rows = Vec::new();
        let mut state_bytes = Vec::new();
        for (id, job) in jobs.iter() {
            ids.push(*id as i64);
            sqls.push(job.sql.clone());
            states.push(match &*job.state.lock().map_err(poisoned)? {
                JobState::Running => "running".to_string(),
                JobState::Finished => "finished".to_string(),
                JobState::Canceled => "canceled".to_string(),
                JobState::Failed(e) => format!("failed: {e}"),
            });
            match &job.context {
                Some(c) => {
                    events.push(c.stats.events_in());
                    late.push(c.stats.late_rows());
                    watermarks.push(format_watermark(c.stats.watermark()));
                    checkpoints.push(c.completed_epoch());
                    rows_out.push(c.stats.rows_out());
                    let (rows, bytes) = crate::metrics::global().job_state(c.job_id);
                    state_rows.push(rows);
                    state_bytes.push(bytes);
                }
                None => {
                    events.push(0);
                    late.push(0);
                    watermarks.push(String::new());
                    checkpoints.push(0);
                    rows_out.push(0);
                    state_rows.push(0);
                    state_bytes.push(0);
                }
            }
        }
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("sql", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("events_in", DataType::UInt64, false),
            Field::new("late_rows", DataType::UInt64, false),
            Field::new("watermark", DataType::Utf8, false),
            Field::new("last_checkpoint", DataType::UInt64, false),
            Field::new("rows_out", DataType::UInt64, false),
            Field::new("state_rows", DataType::UInt64, false),
            Field::new("state_bytes", DataType::UInt64, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids)),
            Arc::new(StringArray::from(sqls)),
            Arc::new(StringArray::from(states)),
            Arc::new(UInt64Array::from(events)),
            Arc::new(UInt64Array::from(late)),
            Arc::new(StringArray::from(watermarks)),
            Arc::new(UInt64Array::from(checkpoints)),
            Arc::new(UInt64Array::from(rows_out)),
            Arc::new(UInt64Array::from(state_rows)),
            Arc::new(UInt64Array::from(state_bytes)),
        ];
        Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
    }

    /// Stops every running job (server shutdown).
    pub fn stop_all(&self) {
        if let Ok(jobs) = self.lock() {
            for job in jobs.values() {
                if let Some(task) = &job.task {
                    task.abort();
                }
            }
        }
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, BTreeMap<u64, Job>>> {
        self.jobs.lock().map_err(poisoned)
    }
}

fn poisoned<T>(_: T) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Internal("job registry lock poisoned".into())
}
