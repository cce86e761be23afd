//! Starting a query as a job.
//!
//! A job is a DataFrame's physical plan executed with a [`JobContext`] in its task context, so
//! that sources emit barriers when asked and every operator reports progress. While the job
//! runs, a timer injects a barrier every `checkpoint.interval`. With a state directory the job
//! also checkpoints: plan nodes get stable ids (name and ordinal among same-named nodes), the
//! participants (sources, window operators, sink writers) are counted from the plan, the newest
//! intact checkpoint is restored before anything runs, and the end of a bounded job writes a
//! final checkpoint that commits the sinks' last output.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use datafusion::common::Result;
use datafusion::common::runtime::SpawnedTask;
use datafusion::dataframe::DataFrame;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, execute_stream};
use futures::StreamExt;

use crate::checkpoint::coordinator::{CheckpointConfig, Checkpointing, Opened, Participant};
use crate::checkpoint::failpoint::{self, Failpoint};
use crate::physical::job_context::JobContext;
use crate::physical::sink::{StreamSinkExec, is_updating_result};
use crate::physical::streaming::{StreamingExec, as_streaming, changelog_stream};

/// A short, stable fingerprint of a statement's SQL (whitespace-insensitive).
pub fn fingerprint(sql: &str) -> String {
    let normalized: Vec<&str> = sql.split_whitespace().collect();
    format!("{:08x}", crc32fast::hash(normalized.join(" ").as_bytes()))
}

static NEXT_JOB_ID: AtomicU64 = AtomicU64::new(1);

/// How to run a job.
#[derive(Debug, Clone, Default)]
pub struct JobOptions {
    /// Barrier interval; `None`: no barriers.
    pub checkpoint_interval: Option<Duration>,
    /// Checkpoint to a state directory, with the job's fingerprint.
    pub checkpoints: Option<(CheckpointConfig, String)>,
}

/// A started job: its result rows and its live state.
pub struct RunningJob {
    /// Live counters and barrier state.
    pub context: Arc<JobContext>,
    /// The physical plan (for EXPLAIN-style inspection and metrics).
    pub plan: Arc<dyn ExecutionPlan>,
    /// Result rows (for INSERT: one row with the count, at the end).
    pub stream: SendableRecordBatchStream,
    /// Epoch of the checkpoint the job resumed from (0: it started from scratch).
    pub restored_epoch: u64,
    _barriers: Option<SpawnedTask<()>>,
}

impl RunningJob {
    /// True if the job's input is unbounded (it runs until cancelled).
    pub fn is_unbounded(&self) -> bool {
        self.plan.boundedness().is_unbounded()
    }
}

/// What [`start_job`] did.
pub enum Started {
    /// The job runs.
    Running(RunningJob),
    /// Its state directory says it finished in an earlier run (at this checkpoint).
    AlreadyFinished(u64),
}

/// Stable ids of the plan's nodes (by address) and the checkpoint participants.
pub fn plan_participants(
    plan: &Arc<dyn ExecutionPlan>,
) -> (HashMap<usize, String>, Vec<Participant>) {
    fn walk(
        node: &Arc<dyn ExecutionPlan>,
        ids: &mut HashMap<usize, String>,
        counts: &mut HashMap<String, usize>,
        participants: &mut Vec<Participant>,
    ) {
        // Name and ordinal among the nodes of that name, in pre-order: stable when only
        // exchanges come and go (as they do between parallelism 1 and N).
        let count = counts.entry(node.name().to_string()).or_insert(0);
        let id = format!("{}-{count}", node.name());
        *count += 1;
        let address = Arc::as_ptr(node) as *const () as usize;
        ids.insert(address, id.clone());
        let plan = node.as_ref();
        let partitions = node.output_partitioning().partition_count();
        let streaming = as_streaming(node);
        if streaming.is_some_and(StreamingExec::checkpointed) {
            participants.push(Participant {
                operator: id,
                partitions,
                sink: None,
            });
        } else if let Some(sink) = plan.downcast_ref::<StreamSinkExec>() {
            participants.push(Participant {
                operator: id,
                partitions: sink.writers(),
                sink: Some(Arc::clone(sink.sink())),
            });
        }
        let children = match streaming {
            Some(s) => s.checkpointed_inputs(),
            None => node.children(),
        };
        for child in children {
            walk(child, ids, counts, participants);
        }
    }
    let mut ids = HashMap::new();
    let mut participants = Vec::new();
    walk(plan, &mut ids, &mut HashMap::new(), &mut participants);
    (ids, participants)
}

/// Plans `df` and starts it as a job (see the module docs).
pub async fn start_job(df: DataFrame, options: JobOptions) -> Result<Started> {
    let job_id = NEXT_JOB_ID.fetch_add(1, Ordering::Relaxed);
    let (state, logical) = df.into_parts();
    let plan = state.create_physical_plan(&logical).await?;
    let context = Arc::new(JobContext::new(job_id));
    let (ids, participants) = plan_participants(&plan);
    context.set_operator_ids(ids);
    let mut checkpointing = None;
    if let Some((config, fingerprint)) = options.checkpoints {
        match Checkpointing::open(config, fingerprint, participants).await? {
            Opened::Run(c) => {
                context.set_checkpointing(Arc::clone(&c));
                checkpointing = Some(c);
            }
            Opened::AlreadyFinished { epoch } => return Ok(Started::AlreadyFinished(epoch)),
        }
    }
    let restored_epoch = checkpointing.as_ref().map_or(0, |c| c.restored_epoch());
    let config = state.config().clone().with_extension(Arc::clone(&context));
    let task = Arc::new(TaskContext::from(&state).with_session_config(config));
    // An updating query's result is its changelog, `op` first (see `crate::changelog`).
    let inner = if is_updating_result(&plan) {
        changelog_stream(&plan, task)?
    } else {
        execute_stream(Arc::clone(&plan), task)?
    };
    let barriers = options.checkpoint_interval.map(|interval| {
        let job = Arc::clone(&context);
        SpawnedTask::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                // `None`: the previous checkpoint is still running.
                if let Some(epoch) = job.request_barrier() {
                    failpoint::check(Failpoint::AfterBarrierInjection, epoch);
                }
            }
        })
    });
    let stream = match checkpointing {
        Some(coordinator) => finish_with_checkpoint(inner, coordinator, Arc::clone(&context)),
        None => inner,
    };
    Ok(Started::Running(RunningJob {
        context,
        plan,
        stream,
        restored_epoch,
        _barriers: barriers,
    }))
}

/// Passes `inner` through; when it ends without error, writes the job's final checkpoint
/// before ending, so the sinks' last output is committed exactly once.
fn finish_with_checkpoint(
    inner: SendableRecordBatchStream,
    coordinator: Arc<Checkpointing>,
    job: Arc<JobContext>,
) -> SendableRecordBatchStream {
    let schema = inner.schema();
    let failed = Arc::new(AtomicBool::new(false));
    let seen = Arc::clone(&failed);
    let rows = inner.inspect(move |r| {
        if r.is_err() {
            seen.store(true, Ordering::SeqCst);
        }
    });
    let finish = futures::stream::once(async move {
        if failed.load(Ordering::SeqCst) {
            return Ok(()); // a failed job resumes from its last checkpoint instead
        }
        coordinator.finish_job(job.current_epoch()).await
    })
    .filter_map(|r| async move { r.err().map(Err) });
    Box::pin(RecordBatchStreamAdapter::new(schema, rows.chain(finish)))
}
