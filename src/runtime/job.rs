//! Starting a query as a job.
//!
//! A job is a DataFrame's physical plan executed with a [`JobContext`] in its task context, so
//! that sources emit barriers when asked and every operator reports progress. While the job
//! runs, a timer injects a barrier every `checkpoint.interval`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use datafusion::common::Result;
use datafusion::common::runtime::SpawnedTask;
use datafusion::dataframe::DataFrame;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, execute_stream};

use super::job_context::JobContext;

static NEXT_JOB_ID: AtomicU64 = AtomicU64::new(1);

/// A started job: its result rows and its live state.
pub struct RunningJob {
    /// Live counters and barrier state.
    pub context: Arc<JobContext>,
    /// The physical plan (for EXPLAIN-style inspection and metrics).
    pub plan: Arc<dyn ExecutionPlan>,
    /// Result rows (for INSERT: one row with the count, at the end).
    pub stream: SendableRecordBatchStream,
    _barriers: Option<SpawnedTask<()>>,
}

impl RunningJob {
    /// True if the job's input is unbounded (it runs until cancelled).
    pub fn is_unbounded(&self) -> bool {
        self.plan.boundedness().is_unbounded()
    }
}

/// Plans `df` and starts it as a job, injecting barriers every `checkpoint_interval`.
pub async fn start_job(df: DataFrame, checkpoint_interval: Option<Duration>) -> Result<RunningJob> {
    let job_id = NEXT_JOB_ID.fetch_add(1, Ordering::Relaxed);
    let (state, logical) = df.into_parts();
    let plan = state.create_physical_plan(&logical).await?;
    let context = Arc::new(JobContext::new(job_id));
    let config = state.config().clone().with_extension(Arc::clone(&context));
    let task = Arc::new(TaskContext::from(&state).with_session_config(config));
    let stream = execute_stream(Arc::clone(&plan), task)?;
    let barriers = checkpoint_interval.map(|interval| {
        let job = Arc::clone(&context);
        SpawnedTask::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                job.inject_barrier();
            }
        })
    });
    Ok(RunningJob {
        context,
        plan,
        stream,
        _barriers: barriers,
    })
}
