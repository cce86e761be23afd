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
//! slow read. State: the per-split watermarks (positions come with the checkpoint issue).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{exec_datafusion_err, internal_err, plan_err};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::event_time::to_millis;
use super::message::{
    CheckpointBarrier, END_OF_TIME, MessageStream, NO_WATERMARK, StreamBatch, StreamMessage,
};
use super::streaming::{StreamingExec, data_only};
use super::watermark_tracker::WatermarkTracker;
use crate::checkpoint::coordinator::{Checkpointing, RestoredPartition};
use crate::connectors::{SavedPosition, SourceBatch, SourceConnector};
use crate::physical::job_context::JobContext;

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
            position: None,
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

/// What a source partition checkpoints (its `meta` in the manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SourceMeta {
    /// The reader's position after the last batch taken ([`SourceBatch::position`], the
    /// reader's own layout); `null` while the reader has given none, and then it resumes
    /// nothing.
    #[serde(default)]
    position: Option<serde_json::Value>,
    /// The watermark of every split of the reader ([`NO_WATERMARK`] before its first row).
    watermarks: Vec<i64>,
}

struct SourceState {
    rx: mpsc::Receiver<Result<Option<SourceBatch>>>,
    _reading: SpawnedTask<()>,
    barrier_requests: Option<watch::Receiver<u64>>,
    computed: Vec<ComputedColumn>,
    watermark: Option<WatermarkStrategy>,
    output_projection: Vec<usize>,
    schema: SchemaRef,
    tracker: WatermarkTracker,
    split_watermarks: Vec<i64>,
    last_data: Vec<Instant>,
    idle: Vec<bool>,
    pending: std::collections::VecDeque<StreamMessage>,
    finished: bool,
    all_idle_announced: bool,
    baseline: BaselineMetrics,
    future_rows: Count,
    future_warned: bool,
    job: Option<Arc<JobContext>>,
    watermark_cell: Option<Arc<AtomicI64>>,
    table: String,
    /// The checkpoint coordinator and this operator's id, when checkpointing.
    checkpoint: Option<(Arc<Checkpointing>, String)>,
    partition: usize,
    partitions: usize,
    /// Reader position after the last batch taken.
    position: Option<serde_json::Value>,
    /// What the reader handed over after the rows drained before a barrier, to take next.
    deferred: Option<Result<Option<SourceBatch>>>,
}

impl SourceState {
    async fn next_message(&mut self) -> Option<Result<StreamMessage>> {
        loop {
            if let Some(msg) = self.pending.pop_front() {
                return Some(Ok(msg));
            }
            if self.finished {
                return None;
            }
            if let Some(item) = self.deferred.take() {
                if let Some(failed) = self.take(Some(item)) {
                    return Some(failed);
                }
                continue;
            }
            let idle_deadline = self.next_idle_deadline();
            let barrier = async {
                match self.barrier_requests.as_mut() {
                    Some(rx) => match rx.changed().await {
                        Ok(()) => Some(*rx.borrow_and_update()),
                        Err(_) => None,
                    },
                    None => futures::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                epoch = barrier => match epoch {
                    Some(epoch) => {
                        // Rows the reader handed over already come before the barrier: a
                        // FLUSH waits for the changes a reader handed on to pass through. Only
                        // those: a fast reader refills the channel meanwhile.
                        for _ in 0..self.rx.len() {
                            let Ok(item) = self.rx.try_recv() else {
                                break;
                            };
                            if !matches!(item, Ok(Some(_))) {
                                self.deferred = Some(item);
                                break;
                            }
                            if let Some(failed) = self.take(Some(item)) {
                                return Some(failed);
                            }
                        }
                        if let Err(e) = self.snapshot(epoch) {
                            self.finished = true;
                            return Some(Err(e));
                        }
                        self.pending
                            .push_back(StreamMessage::Barrier(CheckpointBarrier { epoch }));
                    }
                    // The job went away: no more barriers.
                    None => self.barrier_requests = None,
                },
                item = self.rx.recv() => {
                    if let Some(failed) = self.take(item) {
                        return Some(failed);
                    }
                }
                _ = sleep_until(idle_deadline) => self.check_idle(),
            }
        }
    }

    /// Takes what the reader handed over (`None`: it went away); an error to end with.
    fn take(&mut self, item: Option<Result<Option<SourceBatch>>>) -> Option<Result<StreamMessage>> {
        let result = match item {
            Some(Ok(Some(batch))) => self.process(batch),
            Some(Ok(None)) | None => self.finish(),
            Some(Err(e)) => Err(e),
        };
        match result {
            Ok(()) => None,
            Err(e) => {
                self.finished = true;
                Some(Err(e))
            }
        }
    }

    fn next_idle_deadline(&self) -> Option<Instant> {
        let timeout = self.watermark.as_ref()?.idle_timeout?;
        self.last_data
            .iter()
            .zip(&self.idle)
            .filter(|(_, idle)| !**idle)
            .map(|(t, _)| *t + timeout)
            .min()
    }

    fn check_idle(&mut self) {
        let Some(timeout) = self.watermark.as_ref().and_then(|w| w.idle_timeout) else {
            return;
        };
        let now = Instant::now();
        for split in 0..self.idle.len() {
            if !self.idle[split] && now.duration_since(self.last_data[split]) >= timeout {
                self.idle[split] = true;
                if let Some(wm) = self.tracker.mark_idle(split) {
                    self.emit_watermark(wm);
                }
            }
        }
        if self.tracker.all_idle() && !self.all_idle_announced {
            self.all_idle_announced = true;
            self.pending.push_back(StreamMessage::Idle);
        }
    }

    fn emit_watermark(&mut self, wm: i64) {
        if let Some(cell) = &self.watermark_cell {
            cell.store(wm, Ordering::Relaxed);
        }
        self.pending.push_back(StreamMessage::Watermark(wm));
    }

    /// This partition's checkpoint metadata: reader position and split watermarks.
    fn meta(&self) -> Result<serde_json::Value> {
        let meta = SourceMeta {
            position: self.position.clone(),
            watermarks: self.split_watermarks.clone(),
        };
        serde_json::to_value(&meta).map_err(|e| {
            exec_datafusion_err!("the checkpoint metadata of source {}: {e}", self.table)
        })
    }

    fn snapshot(&self, epoch: u64) -> Result<()> {
        match &self.checkpoint {
            Some((coordinator, operator)) => coordinator.snapshot(
                epoch,
                operator,
                self.partition,
                self.partitions,
                self.meta()?,
                None,
            ),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<()> {
        if let Some((coordinator, operator)) = &self.checkpoint {
            coordinator.finished(operator, self.partition, self.partitions, self.meta()?);
        }
        self.finished = true;
        if self.tracker.current() != END_OF_TIME {
            for split in 0..self.tracker.num_inputs() {
                self.tracker.mark_finished(split);
            }
            self.emit_watermark(END_OF_TIME);
        }
        self.baseline.done();
        Ok(())
    }

    fn process(&mut self, input: SourceBatch) -> Result<()> {
        let elapsed = self.baseline.elapsed_compute().clone();
        let _timer = elapsed.timer();
        let split = input.split.min(self.split_watermarks.len() - 1);
        if input.position.is_some() {
            self.position = input.position;
        }
        let rows = input.batch.num_rows();
        if rows == 0 {
            // A position without rows (a reader's starting offsets).
            return Ok(());
        }
        self.last_data[split] = Instant::now();
        if self.idle[split] {
            self.idle[split] = false;
            self.all_idle_announced = false;
            self.tracker.mark_active(split);
        }

        // Read columns followed by computed columns.
        let mut columns: Vec<ArrayRef> = input.batch.columns().to_vec();
        let mut fields: Vec<Field> = input
            .batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        if !self.computed.is_empty() {
            let base = input.batch.clone();
            for c in &self.computed {
                let value = c.expr.evaluate(&base)?.into_array(rows)?;
                columns.push(value);
                fields.push(c.field.clone());
            }
        }
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let full =
            RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), columns, &options)?;

        let mut row_watermarks = None;
        let mut advanced = None;
        if let Some(strategy) = &self.watermark {
            let candidates = match constant_delay(&strategy.expr) {
                // `col - INTERVAL c`: the column's milliseconds minus c, without evaluating
                // interval arithmetic per row.
                Some((column, delay))
                    if full
                        .schema()
                        .fields()
                        .get(column)
                        .is_some_and(|f| f.name() == strategy.column.as_str()) =>
                {
                    to_millis(full.column(column))?.unary(|v: i64| v.saturating_sub(delay))
                }
                _ => to_millis(&strategy.expr.evaluate(&full)?.into_array(rows)?)?,
            };
            let limit =
                wall_clock_ms().saturating_add(strategy.future_tolerance.as_millis() as i64);
            let mut split_wm = self.split_watermarks[split];
            let mut before = Vec::with_capacity(rows);
            let mut future = 0usize;
            for i in 0..rows {
                before.push(split_wm);
                if candidates.is_valid(i) {
                    let c = candidates.value(i);
                    if c > limit {
                        future += 1;
                    } else if c > split_wm {
                        split_wm = c;
                    }
                }
            }
            if future > 0 {
                self.future_rows.add(future);
                if !self.future_warned {
                    self.future_warned = true;
                    log::warn!(
                        "table {}: {future} event time(s) more than {:?} ahead of the wall clock \
                         did not advance the watermark (scan.watermark.future-tolerance)",
                        self.table,
                        strategy.future_tolerance
                    );
                }
            }
            let before = Int64Array::from(before);
            row_watermarks = self.tracker.refine_row_watermarks(split, Some(&before));
            self.split_watermarks[split] = split_wm;
            advanced = self.tracker.update(split, split_wm);
        }

        let columns: Vec<ArrayRef> = self
            .output_projection
            .iter()
            .map(|&i| Arc::clone(full.column(i)))
            .collect();
        // A query reading no column (COUNT(*)) still needs the row count.
        let options = RecordBatchOptions::new().with_row_count(Some(rows));
        let output =
            RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        self.baseline.record_output(rows);
        if let Some(job) = &self.job {
            job.stats.add_events_in(rows as u64);
        }
        self.pending.push_back(StreamMessage::Data(
            StreamBatch::with_row_watermarks(output, row_watermarks).with_kinds(input.kinds),
        ));
        if let Some(wm) = advanced {
            self.emit_watermark(wm);
        }
        Ok(())
    }
}

/// For a watermark expression `column - INTERVAL c` where `c` is a whole number of
/// milliseconds with no day or month part (days and months depend on the calendar): the
/// column's index and `c` in milliseconds.
fn constant_delay(expr: &Arc<dyn PhysicalExpr>) -> Option<(usize, i64)> {
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
    let binary = expr.downcast_ref::<BinaryExpr>()?;
    if *binary.op() != Operator::Minus {
        return None;
    }
    let column = binary.left().downcast_ref::<Column>()?;
    let literal = binary.right().downcast_ref::<Literal>()?;
    let millis = match literal.value() {
        ScalarValue::IntervalMonthDayNano(Some(v))
            if v.months == 0 && v.days == 0 && v.nanoseconds % 1_000_000 == 0 =>
        {
            v.nanoseconds / 1_000_000
        }
        ScalarValue::IntervalDayTime(Some(v)) if v.days == 0 => i64::from(v.milliseconds),
        ScalarValue::DurationMillisecond(Some(v)) => *v,
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1000)?,
        _ => return None,
    };
    Some((column.index(), millis))
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
        None => futures::future::pending().await,
    }
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::TimestampMillisecondArray;
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use datafusion::common::DFSchema;
    use datafusion::execution::context::SessionContext;

    /// The fast path gives what evaluating the expression gives, and only applies to
    /// calendar-free constant intervals.
    #[test]
    fn constant_delay_matches_evaluation() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("x", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(vec![1, 2, 3])),
                Arc::new(TimestampMillisecondArray::from(vec![
                    Some(1_700_000_000_123),
                    None,
                    Some(-5),
                ])),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(schema.as_ref().clone()).unwrap();
        let plan = |sql: &str| {
            let expr = ctx.parse_sql_expr(sql, &df_schema).unwrap();
            ctx.create_physical_expr(expr, &df_schema).unwrap()
        };
        for (sql, delay) in [
            ("ts - INTERVAL '5' SECOND", Some(5_000)),
            ("ts - INTERVAL '250' MILLISECOND", Some(250)),
            ("ts - INTERVAL '1' MINUTE", Some(60_000)),
            ("ts - INTERVAL '1' DAY", None),
            ("ts - INTERVAL '1' MONTH", None),
            ("ts + INTERVAL '5' SECOND", None),
            ("ts", None),
        ] {
            let expr = plan(sql);
            let fast = constant_delay(&expr);
            assert_eq!(fast.map(|(_, d)| d), delay, "{sql}");
            if let Some((column, delay)) = fast {
                assert_eq!(column, 1, "{sql}");
                let expected =
                    to_millis(&expr.evaluate(&batch).unwrap().into_array(3).unwrap()).unwrap();
                let got = to_millis(batch.column(column))
                    .unwrap()
                    .unary::<_, datafusion::arrow::datatypes::Int64Type>(|v: i64| {
                    v.saturating_sub(delay)
                });
                assert_eq!(got, expected, "{sql}");
            }
        }
    }

    /// Checkpoint metadata in the layout sources have always written reads back and writes
    /// out unchanged; a partition whose reader gave no position keeps writing `null`.
    #[test]
    fn source_meta_layout() {
        let written: serde_json::Value = serde_json::from_str(
            r#"{"position": {"offsets": {"0": 42, "3": 7}},
                "watermarks": [1704067200000, -9223372036854775808]}"#,
        )
        .unwrap();
        let meta = SourceMeta::deserialize(&written).unwrap();
        assert_eq!(
            meta.position,
            Some(serde_json::json!({"offsets": {"0": 42, "3": 7}}))
        );
        assert_eq!(meta.watermarks, vec![1_704_067_200_000, NO_WATERMARK]);
        assert_eq!(serde_json::to_value(&meta).unwrap(), written);

        let unpositioned = serde_json::json!({"position": null, "watermarks": []});
        let meta = SourceMeta::deserialize(&unpositioned).unwrap();
        assert_eq!(meta.position, None);
        assert_eq!(serde_json::to_value(&meta).unwrap(), unpositioned);
    }
}
