//! `StreamSourceExec`: reads a connector and puts it on the streaming protocol.
//!
//! One partition per connector reader. For each batch the reader yields, the source
//!
//! 1. computes the table's computed columns (`c AS expr`),
//! 2. evaluates the `WATERMARK FOR col AS expr` expression per row and keeps, per split, the
//!    running maximum. Each row carries the watermark in force *before* it (as if the watermark
//!    advanced after every record), so lateness downstream never depends on batch sizes. The
//!    partition's watermark is the minimum over its splits ([`WatermarkTracker`]).
//!    Event times further than `scan.watermark.future-tolerance` ahead of the wall clock are
//!    counted and do not advance the watermark: one absurd timestamp cannot make every later
//!    row late,
//! 3. emits the projected rows, then the watermark if it advanced.
//!
//! A split without data for `scan.watermark.idle-timeout` is idle and stops holding back the
//! watermark; when all are idle the partition emits [`StreamMessage::Idle`]. At the end of a
//! bounded input the watermark jumps to [`END_OF_TIME`], firing every open window.
//!
//! Barriers: when the job asks for a checkpoint, the source emits `Barrier(epoch)` between two
//! batches. Reading runs in its own task, one batch ahead, so the barrier is never delayed by a
//! slow read. State: the reader's position and the per-split watermarks.
//!
//! - this file: the plan node, and opening a partition (restoring its reader and watermarks);
//! - [`state`]: one running partition, from the reader's batches to messages.

mod state;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_err, plan_err};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use tokio::sync::mpsc;

use super::message::{END_OF_TIME, MessageStream, NO_WATERMARK};
use super::streaming::{StreamingExec, data_only};
use super::watermark_tracker::WatermarkTracker;
use crate::checkpoint::coordinator::RestoredPartition;
use crate::connectors::{SavedPosition, SourceBatch, SourceConnector};
use crate::physical::job_context::JobContext;
use state::{SourceMeta, SourceState};

/// A computed column: name and expression over the read columns.
#[derive(Debug, Clone)]
pub struct ComputedColumn {
    /// Output field.
    pub field: Field,
    /// Expression over the connector's projected columns.
    pub expr: Arc<dyn PhysicalExpr>,
}

/// How a source derives its watermark.
#[derive(Debug, Clone)]
pub struct WatermarkStrategy {
    /// The event-time column (`WATERMARK FOR col`).
    pub column: String,
    /// `WATERMARK FOR col AS <expr>` over the read + computed columns.
    pub expr: Arc<dyn PhysicalExpr>,
    /// Human-readable form for EXPLAIN.
    pub display: String,
    /// `scan.watermark.idle-timeout`.
    pub idle_timeout: Option<Duration>,
    /// `scan.watermark.future-tolerance`.
    pub future_tolerance: Duration,
}

/// Streaming scan of a connector table (see the module docs).
#[derive(Debug)]
pub struct StreamSourceExec {
    table: String,
    connector: Arc<dyn SourceConnector>,
    /// Columns of the connector schema to read.
    read_projection: Vec<usize>,
    computed: Vec<ComputedColumn>,
    watermark: Option<WatermarkStrategy>,
    /// Indices into read + computed columns to output.
    output_projection: Vec<usize>,
    batch_size: usize,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl StreamSourceExec {
    /// Builds the scan. `output_projection` indexes the read columns followed by the computed
    /// columns.
    #[allow(clippy::too_many_arguments)]
    pub fn try_new(
        table: String,
        connector: Arc<dyn SourceConnector>,
        read_projection: Vec<usize>,
        computed: Vec<ComputedColumn>,
        watermark: Option<WatermarkStrategy>,
        output_projection: Vec<usize>,
        parallelism: usize,
        batch_size: usize,
    ) -> Result<Self> {
        let connector_schema = connector.schema();
        let mut fields: Vec<Field> = Vec::new();
        for &i in &read_projection {
            if i >= connector_schema.fields().len() {
                return internal_err!("source projection index {i} out of range");
            }
            fields.push(connector_schema.field(i).clone());
        }
        fields.extend(computed.iter().map(|c| c.field.clone()));
        let mut output_fields = Vec::with_capacity(output_projection.len());
        for &i in &output_projection {
            match fields.get(i) {
                Some(f) => output_fields.push(f.clone()),
                None => return internal_err!("source output index {i} out of range"),
            }
        }
        let schema = Arc::new(Schema::new(output_fields));
        let partitions = connector.num_partitions(parallelism.max(1))?.max(1);
        let boundedness = if connector.is_bounded() {
            Boundedness::Bounded
        } else {
            Boundedness::Unbounded {
                requires_infinite_memory: false,
            }
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            boundedness,
        );
        if batch_size == 0 {
            return plan_err!("batch size must be at least 1");
        }
        Ok(Self {
            table,
            connector,
            read_projection,
            computed,
            watermark,
            output_projection,
            batch_size,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The table read.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// True if this source has a watermark definition.
    pub fn has_watermark(&self) -> bool {
        self.watermark.is_some()
    }

    /// The output column the watermark bounds, if the source has a watermark and outputs it.
    pub fn event_time_column(&self) -> Option<usize> {
        let w = self.watermark.as_ref()?;
        self.schema()
            .fields()
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(&w.column))
    }
}

impl DisplayAs for StreamSourceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let schema = self.schema();
        let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        write!(
            f,
            "StreamSourceExec: table={}, connector={}({}), partitions={}, columns=[{}]",
            self.table,
            self.connector.name(),
            self.connector.explain(),
            self.properties.partitioning.partition_count(),
            columns.join(", ")
        )?;
        match &self.watermark {
            Some(w) => {
                write!(f, ", watermark={}", w.display)?;
                if let Some(idle) = w.idle_timeout {
                    write!(f, ", idle_timeout={}ms", idle.as_millis())?;
                }
            }
            None => write!(f, ", watermark=none (end of input only)")?,
        }
        let mode = self.connector.changelog();
        if mode.is_updating() {
            write!(f, ", changelog={mode}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StreamSourceExec {
    fn name(&self) -> &str {
        "StreamSourceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for c in &self.computed {
            if f(&c.expr)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        if let Some(w) = &self.watermark {
            return f(&w.expr);
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !children.is_empty() {
            return internal_err!("StreamSourceExec has no children");
        }
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(data_only(
            self.schema(),
            self.execute_stream(partition, context)?,
        ))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

impl StreamingExec for StreamSourceExec {
    fn checkpointed(&self) -> bool {
        true
    }

    /// A changelog format's rows are changes.
    fn changelog(&self) -> crate::changelog::ChangelogMode {
        self.connector.changelog()
    }

    fn time_attributes(&self) -> std::collections::HashSet<usize> {
        self.event_time_column().into_iter().collect()
    }

    fn declares_watermark(&self) -> bool {
        self.has_watermark()
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let partitions = self.properties.partitioning.partition_count();
        let mut reader = self.connector.open(
            partition,
            partitions,
            &self.read_projection,
            self.batch_size,
        )?;
        let splits = reader.num_splits().max(1);
        let job = JobContext::of(&context);
        let checkpoint = job.as_ref().and_then(|j| {
            let coordinator = j.checkpointing()?;
            let operator = j.operator_id(self)?.to_string();
            Some((Arc::clone(coordinator), operator))
        });
        let mut restored_watermarks = None;
        let mut restored_position = None;
        if let Some((coordinator, operator)) = &checkpoint
            && let Some(saved) = coordinator.restored(operator)
        {
            let metas: Vec<(&RestoredPartition, SourceMeta)> = saved
                .iter()
                .map(|p| -> Result<_> { Ok((p, p.meta::<SourceMeta>("source")?)) })
                .collect::<Result<_>>()?;
            // A partition whose reader gave no position yet resumes nothing.
            let positions: Vec<SavedPosition> = metas
                .iter()
                .filter_map(|(p, meta)| {
                    Some(SavedPosition {
                        partition: p.partition,
                        num_partitions: p.num_partitions,
                        position: meta.position.clone()?,
                    })
                })
                .collect();
            reader.restore(partition, partitions, &positions)?;
            restored_position = reader.restored_position();
            // Same partitioning: this partition's split watermarks; otherwise the minimum of
            // all, which never moves time forward past what any old partition had seen.
            let own = metas
                .iter()
                .find(|(p, _)| p.partition == partition && p.num_partitions == partitions);
            restored_watermarks = match own {
                Some((_, meta)) => Some(meta.watermarks.clone()),
                None => metas
                    .iter()
                    .flat_map(|(_, meta)| meta.watermarks.iter().copied())
                    .min()
                    .map(|w| vec![w; splits]),
            };
        }
        let (tx, rx) = mpsc::channel::<Result<Option<SourceBatch>>>(2);
        let malformed_job = job.clone();
        let reading = SpawnedTask::spawn(async move {
            let mut reported = 0;
            loop {
                let next = reader.next_batch().await;
                let malformed = reader.malformed_records();
                if malformed > reported {
                    if let Some(job) = &malformed_job {
                        job.stats.add_malformed_records(malformed - reported);
                    }
                    reported = malformed;
                }
                let done = !matches!(next, Ok(Some(_)));
                if tx.send(next).await.is_err() || done {
                    break;
                }
            }
        });
        let barrier_requests = job.as_ref().map(|j| {
            let mut rx = j.barrier_requests();
            rx.mark_unchanged();
            rx
        });
        let watermark_cell = job.as_ref().map(|j| j.stats.register_source_partition());
        let mut state = SourceState {
            rx,
            _reading: reading,
            barrier_requests,
            computed: self.computed.clone(),
            watermark: self.watermark.clone(),
            output_projection: self.output_projection.clone(),
            schema: self.schema(),
            tracker: WatermarkTracker::new(splits),
            split_watermarks: vec![NO_WATERMARK; splits],
            last_data: vec![Instant::now(); splits],
            idle: vec![false; splits],
            pending: std::collections::VecDeque::new(),
            finished: false,
            all_idle_announced: false,
            baseline: BaselineMetrics::new(&self.metrics, partition),
            future_rows: MetricBuilder::new(&self.metrics).counter("future_event_times", partition),
            future_warned: false,
            job,
            watermark_cell,
            table: self.table.clone(),
            checkpoint,
            partition,
            partitions,
            // Until the reader hands over a batch, a checkpoint records where it resumes.
            position: restored_position,
            deferred: None,
        };
        if let Some(watermarks) = restored_watermarks {
            for (split, wm) in watermarks.into_iter().enumerate().take(splits) {
                if wm != NO_WATERMARK && wm != END_OF_TIME {
                    state.split_watermarks[split] = wm;
                    state.tracker.update(split, wm);
                }
            }
        }
        Ok(Box::pin(futures::stream::unfold(
            state,
            |mut state| async move {
                let next = state.next_message().await;
                next.map(|m| (m, state))
            },
        )))
    }
}
