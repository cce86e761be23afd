//! The two faces of a streaming operator.
//!
//! Every streaming node is an ordinary DataFusion [`ExecutionPlan`]: its `execute` yields plain
//! record batches, so embedders, `collect` and stock operators *above* a streaming pipeline see
//! nothing unusual. Inside the pipeline, operators talk through [`StreamingExec::execute_stream`],
//! which yields the typed [`StreamMessage`]s (data, watermarks, idleness, barriers).
//!
//! A streaming node also says what the job needs to know about it, instead of the job keeping
//! lists of node types: whether it takes part in checkpoints, which output columns are window
//! bounds, which carry event time, and what state it keeps where (EXPLAIN shows that per node as
//! `state=memory per [keys], freed when ...`).
//!
//! [`execute_input`] is how an operator opens its input: the message stream of a streaming
//! child, or, for a stock bounded child (a dimension table, an in-memory table), its batches
//! followed by the final watermark. A stock child over an unbounded input would have lost the
//! control messages; that is a planner bug and reported as an internal error.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::internal_err;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    ExecutionPlan, ExecutionPlanProperties, Partitioning, PlanProperties,
};
use futures::StreamExt;

use super::message::{END_OF_TIME, MessageStream, StreamBatch, StreamMessage};
use crate::changelog::{ChangelogMode, changelog_schema, updating_data_face_error, with_op_column};
use crate::physical::window_spec::WindowField;
use crate::state::backend::StateBackend;

/// A physical operator that speaks the in-band streaming protocol.
pub trait StreamingExec: ExecutionPlan {
    /// Opens partition `partition` as a stream of messages.
    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream>;

    /// True if each of its partitions hands state to the job's checkpoints (a source's
    /// positions, a stateful operator's state) and acknowledges every barrier.
    fn checkpointed(&self) -> bool {
        false
    }

    /// The inputs whose nodes take part in the job's checkpoints: all of them, unless an input
    /// is read whole at every start (a broadcast join's table).
    fn checkpointed_inputs(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.children()
    }

    /// The output columns that are window bounds, by index.
    fn window_columns(&self) -> HashMap<usize, WindowField> {
        HashMap::new()
    }

    /// The output columns that carry event time: a source's WATERMARK column, a window's
    /// `window_end` and `window_time`, traced through the nodes that keep them. The watermark
    /// of the stream bounds exactly these columns.
    fn time_attributes(&self) -> HashSet<usize> {
        HashSet::new()
    }

    /// True if it declares a watermark (a source with a WATERMARK).
    fn declares_watermark(&self) -> bool {
        false
    }

    /// What its output is: appended rows or a changelog ([`crate::changelog`]). By default
    /// its inputs' mode: a row-wise node passes the kinds of its rows on.
    fn changelog(&self) -> ChangelogMode {
        ChangelogMode::of_inputs(self.children().into_iter().map(changelog_mode))
    }

    /// True if it handles changelog input (rows with kinds); the planner refuses a node that
    /// does not over an updating input.
    fn accepts_changes(&self) -> bool {
        false
    }

    /// The state it keeps between messages, if it is a stateful operator.
    fn state(&self) -> Option<OperatorState> {
        None
    }

    /// This node with its state in `backend`: the planner's choice for the session
    /// ([`crate::state::backend`]). `None` keeps the node as it is: it keeps no state, or keeps
    /// it only in memory (and its [`state`](Self::state) says so).
    fn with_state_backend(
        &self,
        _backend: &StateBackend,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(None)
    }
}

/// What a stateful operator keeps (see [`StreamingExec::state`]); EXPLAIN shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorState {
    /// Where it lives.
    pub backend: StateBackend,
    /// What it is kept per (the group or join keys, and the window or session).
    pub keys: Vec<String>,
    /// What frees it as the watermark advances.
    pub freed: &'static str,
}

impl std::fmt::Display for OperatorState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} per [{}], freed {}",
            self.backend,
            self.keys.join(", "),
            self.freed
        )
    }
}

/// `plan` with every stateful node's state in `backend` (see
/// [`StreamingExec::with_state_backend`]).
pub fn with_state_backend(
    plan: Arc<dyn ExecutionPlan>,
    backend: &StateBackend,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        Ok(
            match as_streaming(&node)
                .map(|s| s.with_state_backend(backend))
                .transpose()?
                .flatten()
            {
                Some(changed) => Transformed::yes(changed),
                None => Transformed::no(node),
            },
        )
    })
    .map(|t| t.data)
}

/// [`StreamingExec::window_columns`] of `plan` (none for a node that is not streaming).
pub fn window_columns(plan: &Arc<dyn ExecutionPlan>) -> HashMap<usize, WindowField> {
    as_streaming(plan).map_or_else(HashMap::new, StreamingExec::window_columns)
}

/// [`StreamingExec::time_attributes`] of `plan` (none for a node that is not streaming).
pub fn time_attributes(plan: &Arc<dyn ExecutionPlan>) -> HashSet<usize> {
    as_streaming(plan).map_or_else(HashSet::new, StreamingExec::time_attributes)
}

/// The window columns that carry event time: `window_end` and `window_time`.
pub fn window_time_columns(columns: &HashMap<usize, WindowField>) -> HashSet<usize> {
    columns
        .iter()
        .filter(|(_, f)| matches!(f, WindowField::End | WindowField::Time))
        .map(|(i, _)| *i)
        .collect()
}

/// True if `plan` reads an event-time source (one with a WATERMARK).
pub fn reads_event_time(plan: &Arc<dyn ExecutionPlan>) -> bool {
    as_streaming(plan).is_some_and(StreamingExec::declares_watermark)
        || plan.children().into_iter().any(reads_event_time)
}

/// Returns the streaming face of `plan`, if it has one.
pub fn as_streaming(plan: &Arc<dyn ExecutionPlan>) -> Option<&dyn StreamingExec> {
    super::downcast_streaming(plan.as_ref())
}

/// True if `plan` speaks the streaming protocol.
pub fn is_streaming(plan: &Arc<dyn ExecutionPlan>) -> bool {
    as_streaming(plan).is_some()
}

/// Opens the input `plan` of a streaming operator as a message stream (see the module docs).
pub fn execute_input(
    plan: &Arc<dyn ExecutionPlan>,
    partition: usize,
    context: Arc<TaskContext>,
) -> Result<MessageStream> {
    if let Some(streaming) = as_streaming(plan) {
        return streaming.execute_stream(partition, context);
    }
    if plan.boundedness().is_unbounded() {
        return internal_err!(
            "{} over an unbounded input sits inside a streaming pipeline and would drop its \
             watermarks and barriers",
            plan.name()
        );
    }
    let batches = plan.execute(partition, context)?;
    let data = batches.map(|b| b.map(|batch| StreamMessage::Data(StreamBatch::new(batch))));
    let end = futures::stream::once(async { Ok(StreamMessage::Watermark(END_OF_TIME)) });
    Ok(Box::pin(data.chain(end)))
}

/// `properties` of a row-wise operator whose input became `input`: the partition count follows
/// the input's.
pub fn follow_partitions(
    properties: &Arc<PlanProperties>,
    input: &Arc<dyn ExecutionPlan>,
) -> Arc<PlanProperties> {
    let n = input.output_partitioning().partition_count();
    if properties.partitioning.partition_count() == n {
        Arc::clone(properties)
    } else {
        Arc::new(
            properties
                .as_ref()
                .clone()
                .with_partitioning(Partitioning::UnknownPartitioning(n)),
        )
    }
}

/// The changelog mode of `plan`'s output: a streaming node's own, or (for a stock node) its
/// inputs' (a stock node above a stream only ever sees its data face).
pub fn changelog_mode(plan: &Arc<dyn ExecutionPlan>) -> ChangelogMode {
    match as_streaming(plan) {
        Some(streaming) => streaming.changelog(),
        None => ChangelogMode::of_inputs(plan.children().into_iter().map(changelog_mode)),
    }
}

/// The changelog of `plan` read from outside (see the module docs): every partition merged,
/// each batch with an `op` column first. For an append-only plan every `op` is `+I`.
pub fn changelog_stream(
    plan: &Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
) -> Result<SendableRecordBatchStream> {
    // LIMIT over an updating query: its first changes.
    let limit = if let Some(limit) = plan.downcast_ref::<GlobalLimitExec>() {
        Some((limit.input(), limit.skip(), limit.fetch()))
    } else {
        plan.downcast_ref::<LocalLimitExec>()
            .map(|limit| (limit.input(), 0, Some(limit.fetch())))
    };
    if let Some((input, skip, fetch)) = limit
        && changelog_mode(input).is_updating()
    {
        let changes = changelog_stream(input, context)?;
        return Ok(limit_rows(changes, skip, fetch));
    }
    let schema = changelog_schema(&plan.schema());
    let partitions = plan.output_partitioning().partition_count();
    let mut streams = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        streams.push(execute_input(plan, partition, Arc::clone(&context))?);
    }
    let out_schema = Arc::clone(&schema);
    let batches = futures::stream::select_all(streams).filter_map(move |msg| {
        let out = match msg {
            Ok(StreamMessage::Data(b)) if b.num_rows() > 0 => {
                Some(with_op_column(&out_schema, &b.batch, b.kinds.as_deref()))
            }
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        };
        futures::future::ready(out)
    });
    Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
}

/// The rows of `input` after the first `skip`, at most `fetch` of them; the input is dropped
/// (and its job stops) once they are out.
fn limit_rows(
    input: SendableRecordBatchStream,
    skip: usize,
    fetch: Option<usize>,
) -> SendableRecordBatchStream {
    let schema = input.schema();
    let left = fetch.unwrap_or(usize::MAX);
    // Ends as soon as the last row is out, without waiting for another batch.
    let rows = futures::stream::unfold(
        (input, skip, left),
        |(mut input, mut skip, mut left)| async move {
            while left > 0 {
                match input.next().await? {
                    Ok(batch) => {
                        let skipped = skip.min(batch.num_rows());
                        skip -= skipped;
                        let take = (batch.num_rows() - skipped).min(left);
                        left -= take;
                        if take > 0 {
                            return Some((Ok(batch.slice(skipped, take)), (input, skip, left)));
                        }
                    }
                    Err(e) => return Some((Err(e), (input, skip, 0))),
                }
            }
            None
        },
    );
    Box::pin(RecordBatchStreamAdapter::new(schema, rows))
}

/// For EXPLAIN: `, changelog=...` when `input`, whose rows a row-wise node passes on, is a
/// changelog (nothing for an append-only input, as for every node that only appends).
pub fn fmt_changelog(
    f: &mut std::fmt::Formatter<'_>,
    input: &Arc<dyn ExecutionPlan>,
) -> std::fmt::Result {
    let mode = changelog_mode(input);
    if mode.is_updating() {
        write!(f, ", changelog={mode}")?;
    }
    Ok(())
}

/// The data face of a message stream: keeps the rows, drops the control messages.
pub fn data_only(schema: SchemaRef, messages: MessageStream) -> SendableRecordBatchStream {
    let batches = messages.filter_map(|msg| async move {
        match msg {
            Ok(StreamMessage::Data(b)) if b.kinds.is_some() => {
                Some(Err(updating_data_face_error()))
            }
            Ok(StreamMessage::Data(b)) if b.num_rows() > 0 => Some(Ok(b.batch)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
    });
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

/// Applies `f` to every data batch of `input`, passing control messages through unchanged.
/// Batches that come out empty are dropped.
pub fn map_data<F>(input: MessageStream, mut f: F) -> MessageStream
where
    F: FnMut(StreamBatch) -> Result<StreamBatch> + Send + 'static,
{
    Box::pin(input.filter_map(move |msg| {
        let out = match msg {
            Ok(StreamMessage::Data(batch)) => match f(batch) {
                Ok(b) if b.num_rows() == 0 => None,
                Ok(b) => Some(Ok(StreamMessage::Data(b))),
                Err(e) => Some(Err(e)),
            },
            other => Some(other),
        };
        futures::future::ready(out)
    }))
}
