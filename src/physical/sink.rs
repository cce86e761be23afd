//! `StreamSinkExec`: INSERT INTO a connector table.
//!
//! Runs every input partition in its own task with its own [`SinkWriter`]. Data is written as it
//! arrives; at a barrier the writer makes everything before it durable and visible, then the
//! partition acknowledges the barrier to the job (the checkpoint issue will wait for these
//! acknowledgements before committing). At the end of input the writers finish and the node
//! yields one row: the number of rows written, as DataFusion's INSERT does.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, exec_datafusion_err, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::StreamExt;

use super::message::StreamMessage;
use super::streaming::{changelog_mode, execute_input};
use crate::connectors::{SinkConnector, SinkMeta};
use crate::physical::event_time::to_millis;
use crate::physical::job_context::JobContext;

/// Streaming sink (see the module docs).
#[derive(Debug)]
pub struct StreamSinkExec {
    input: Arc<dyn ExecutionPlan>,
    table: String,
    sink: Arc<dyn SinkConnector>,
    /// Columns of the input handed to the writers (computed columns are not written).
    projection: Vec<usize>,
    /// Schema of the rows handed to the writers.
    sink_schema: SchemaRef,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

/// True if reading `plan` from outside gives a changelog: its output is updating and it is
/// not a sink (whose output is the count of rows written, whatever its input).
pub fn is_updating_result(plan: &Arc<dyn ExecutionPlan>) -> bool {
    !plan.is::<StreamSinkExec>() && changelog_mode(plan).is_updating()
}

fn count_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]))
}

impl StreamSinkExec {
    /// The sink connector.
    pub fn sink(&self) -> &Arc<dyn SinkConnector> {
        &self.sink
    }

    /// The sink table's name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Number of writers (input partitions).
    pub fn writers(&self) -> usize {
        self.input.output_partitioning().partition_count()
    }

    /// Writes the columns `projection` of `input` into `sink`.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        table: String,
        sink: Arc<dyn SinkConnector>,
        projection: Vec<usize>,
    ) -> Result<Self> {
        let sink_schema = Arc::new(input.schema().project(&projection)?);
        let boundedness = match input.boundedness() {
            Boundedness::Bounded => Boundedness::Bounded,
            Boundedness::Unbounded { .. } => Boundedness::Unbounded {
                requires_infinite_memory: false,
            },
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(count_schema()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            boundedness,
        );
        Ok(Self {
            input,
            table,
            sink,
            projection,
            sink_schema,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl DisplayAs for StreamSinkExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "StreamSinkExec: table={}, connector={}({}), partitions={}, commit=on barrier and end of input",
            self.table,
            self.sink.name(),
            self.sink.explain(),
            self.input.output_partitioning().partition_count()
        )
    }
}

impl ExecutionPlan for StreamSinkExec {
    fn name(&self) -> &str {
        "StreamSinkExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return internal_err!("StreamSinkExec needs exactly one child");
        };
        Ok(Arc::new(Self::try_new(
            input,
            self.table.clone(),
            Arc::clone(&self.sink),
            self.projection.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("StreamSinkExec has one output partition, asked for {partition}");
        }
        let inputs = self.input.output_partitioning().partition_count();
        let job = JobContext::of(&context);
        let checkpoint = job.as_ref().and_then(|j| {
            Some((
                Arc::clone(j.checkpointing()?),
                j.operator_id(self)?.to_string(),
            ))
        });
        let window_end = window_end_column(&self.sink_schema);
        let mut tasks = Vec::with_capacity(inputs);
        for i in 0..inputs {
            let messages = execute_input(&self.input, i, Arc::clone(&context))?;
            let mut writer = self
                .sink
                .open_writer(Arc::clone(&self.sink_schema), i, inputs)?;
            writer.reserve_in(context.memory_pool());
            if let Some(job) = &job {
                job.register_sink_partition();
            }
            let job = job.clone();
            let checkpoint = checkpoint.clone();
            let sink = Arc::clone(&self.sink);
            let projection = self.projection.clone();
            let baseline = BaselineMetrics::new(&self.metrics, i);
            tasks.push(SpawnedTask::spawn(async move {
                let mut writer = writer;
                let mut messages = messages;
                let mut written: u64 = 0;
                // Pre-commits not yet known to be committed, by epoch (see `Checkpointing`).
                let mut outstanding: Vec<(u64, serde_json::Value)> = Vec::new();
                let completed = checkpoint.as_ref().map(|(c, _)| c.completed());
                let mut last_barrier = 0;
                while let Some(msg) = messages.next().await {
                    match msg? {
                        StreamMessage::Data(batch) => {
                            let rows = batch.num_rows();
                            if rows == 0 {
                                continue;
                            }
                            let projected = batch.batch.project(&projection)?;
                            match &batch.kinds {
                                Some(kinds) => writer.write_changes(&projected, kinds).await?,
                                None => writer.write(&projected).await?,
                            }
                            written += rows as u64;
                            baseline.record_output(rows);
                            if let Some(job) = &job {
                                job.stats.add_rows_out(rows as u64);
                                if let Some(c) = window_end
                                    && job.stats.records_window_lags()
                                {
                                    let ends = to_millis(projected.column(c))?;
                                    job.stats
                                        .record_window_ends(ends.iter().flatten().collect());
                                }
                            }
                        }
                        StreamMessage::Barrier(b) => {
                            last_barrier = b.epoch;
                            let pre_commit = writer.on_barrier(b.epoch).await?;
                            match (&checkpoint, &completed) {
                                (Some((coordinator, operator)), Some(completed)) => {
                                    let done = *completed.borrow();
                                    outstanding.retain(|(epoch, _)| *epoch > done);
                                    if !pre_commit.is_null() {
                                        outstanding.push((b.epoch, pre_commit));
                                    }
                                    let meta = sink_meta(
                                        outstanding.iter().map(|(_, c)| c.clone()).collect(),
                                    )?;
                                    coordinator
                                        .snapshot(b.epoch, operator, i, inputs, meta, None)?;
                                }
                                // Without checkpoints a barrier publishes at once.
                                _ if !pre_commit.is_null() => sink.commit(&pre_commit)?,
                                _ => {}
                            }
                            if let Some(job) = &job {
                                job.acknowledge_barrier(b.epoch);
                            }
                        }
                        StreamMessage::Watermark(_) | StreamMessage::Idle => {}
                    }
                }
                // The writer learns whether its last pre-commit was committed before it
                // finishes (a transactional writer reuses an aborted checkpoint's transaction).
                if let Some((coordinator, _)) = &checkpoint {
                    coordinator.wait_resolved(last_barrier).await;
                }
                let last = writer.finish().await?;
                match (&checkpoint, &completed) {
                    (Some((coordinator, operator)), Some(completed)) => {
                        // Committed with the job's final manifest.
                        let done = *completed.borrow();
                        outstanding.retain(|(epoch, _)| *epoch > done);
                        let mut commits: Vec<serde_json::Value> =
                            outstanding.into_iter().map(|(_, c)| c).collect();
                        if !last.is_null() {
                            commits.push(last);
                        }
                        // Everything upstream has ended too, so any later checkpoint may
                        // publish these as well (commits are idempotent).
                        coordinator.finished(operator, i, inputs, sink_meta(commits)?);
                    }
                    _ if !last.is_null() => sink.commit(&last)?,
                    _ => {}
                }
                baseline.done();
                Ok::<u64, DataFusionError>(written)
            }));
        }
        let schema = count_schema();
        let out_schema = Arc::clone(&schema);
        let total = futures::stream::once(async move {
            // The first failing partition fails the INSERT; dropping the others cancels them.
            let joins = tasks.into_iter().map(|task| async move {
                task.join()
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?
            });
            let total: u64 = futures::future::try_join_all(joins)
                .await?
                .into_iter()
                .sum();
            let column: ArrayRef = Arc::new(UInt64Array::from(vec![total]));
            Ok(RecordBatch::try_new(out_schema, vec![column])?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, total)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// A sink partition's checkpoint meta holding `pre_commits` ([`SinkMeta`]).
fn sink_meta(pre_commits: Vec<serde_json::Value>) -> Result<serde_json::Value> {
    serde_json::to_value(SinkMeta { pre_commits })
        .map_err(|e| exec_datafusion_err!("the sink's checkpoint metadata: {e}"))
}

/// The sink column holding a window's end (`window_end`, or Nexmark's `endtime`), whose lag
/// behind the watermark the job's statistics record.
fn window_end_column(schema: &SchemaRef) -> Option<usize> {
    schema.fields().iter().position(|f| {
        matches!(f.data_type(), DataType::Timestamp(_, _))
            && (f.name().eq_ignore_ascii_case("window_end")
                || f.name().eq_ignore_ascii_case("endtime"))
    })
}
