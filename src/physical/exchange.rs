//! `StreamExchangeExec`: moves rows between parallel tasks without losing control messages.
//!
//! Every input partition runs in its own task and routes its rows to the output partitions:
//! by key hash (so keyed operators see every row of a key in one task), round-robin, or all
//! into one. Control messages are broadcast to every output, keeping their position relative to
//! the rows of that input.
//!
//! Each output partition merges one channel per input:
//! - **Watermarks:** the output watermark is the minimum over the inputs that are not idle or
//!   finished ([`WatermarkTracker`]), never going backwards. Per-row watermarks are refined
//!   with the other inputs' watermarks, so lateness stays exact per record.
//! - **Barriers:** aligned. When barrier N arrives from one input, that input is no longer read
//!   (its channel fills and back-pressures its task) until N arrived from every input that has
//!   not finished; then N is forwarded once. Rows after a barrier can therefore never overtake
//!   it.
//! - **Idle:** forwarded once when every unfinished input is idle.
//!
//! State: none beyond the tracker; channels are bounded, so memory is too.

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use datafusion::arrow::array::{Array, AsArray, Int64Array, UInt32Array};
use datafusion::arrow::compute::take;
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::Int8Type;
use datafusion::common::hash_utils::create_hashes;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::repartition::REPARTITION_RANDOM_STATE;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::message::{MessageStream, StreamBatch, StreamMessage};
use super::streaming::{StreamingExec, data_only, execute_input, fmt_changelog};
use super::watermark_tracker::WatermarkTracker;
use crate::physical::window_spec::WindowField;

/// Messages buffered per (input, output) channel.
const CHANNEL_CAPACITY: usize = 4;

/// How rows are routed.
#[derive(Debug, Clone)]
pub enum ExchangeMode {
    /// By hash of these key expressions.
    Hash(Vec<Arc<dyn PhysicalExpr>>),
    /// Batch by batch in turn.
    RoundRobin,
    /// Everything to one output partition.
    Single,
}

type Channel = mpsc::Receiver<Result<StreamMessage>>;

struct Started {
    /// Per output partition, its receivers (one per input); taken on execute.
    outputs: Vec<Option<Vec<Channel>>>,
    tasks: Arc<Vec<SpawnedTask<()>>>,
}

/// Streaming exchange (see the module docs).
pub struct StreamExchangeExec {
    input: Arc<dyn ExecutionPlan>,
    mode: ExchangeMode,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
    started: Mutex<Option<Started>>,
}

impl fmt::Debug for StreamExchangeExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamExchangeExec")
            .field("mode", &self.mode)
            .field(
                "partitions",
                &self.properties.partitioning.partition_count(),
            )
            .finish()
    }
}

impl StreamExchangeExec {
    /// An exchange from `input`'s partitions into `partitions` outputs.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        mode: ExchangeMode,
        partitions: usize,
    ) -> Result<Self> {
        let partitions = match mode {
            ExchangeMode::Single => 1,
            _ => partitions.max(1),
        };
        let partitioning = match &mode {
            ExchangeMode::Hash(exprs) => Partitioning::Hash(exprs.clone(), partitions),
            ExchangeMode::RoundRobin => Partitioning::RoundRobinBatch(partitions),
            ExchangeMode::Single => Partitioning::UnknownPartitioning(1),
        };
        let properties = PlanProperties::new(
            EquivalenceProperties::new(input.schema()),
            partitioning,
            EmissionType::Incremental,
            input.boundedness(),
        );
        Ok(Self {
            input,
            mode,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
            started: Mutex::new(None),
        })
    }

    /// The routing mode.
    pub fn mode(&self) -> &ExchangeMode {
        &self.mode
    }

    fn start(&self, context: &Arc<TaskContext>) -> Result<Started> {
        let inputs = self.input.output_partitioning().partition_count();
        let outputs = self.properties.partitioning.partition_count();
        let mut senders: Vec<Vec<mpsc::Sender<Result<StreamMessage>>>> = Vec::new();
        let mut receivers: Vec<Vec<Channel>> = (0..outputs).map(|_| Vec::new()).collect();
        for _ in 0..inputs {
            let mut row = Vec::with_capacity(outputs);
            for receiver_list in receivers.iter_mut() {
                let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
                row.push(tx);
                receiver_list.push(rx);
            }
            senders.push(row);
        }
        let mut tasks = Vec::with_capacity(inputs);
        for (i, outs) in senders.into_iter().enumerate() {
            let stream = execute_input(&self.input, i, Arc::clone(context))?;
            let router = Router {
                mode: self.mode.clone(),
                outputs: outs,
                next: i,
                hashes: Vec::new(),
            };
            tasks.push(SpawnedTask::spawn(router.run(stream)));
        }
        Ok(Started {
            outputs: receivers.into_iter().map(Some).collect(),
            tasks: Arc::new(tasks),
        })
    }
}

impl DisplayAs for StreamExchangeExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let inputs = self.input.output_partitioning().partition_count();
        let outputs = self.properties.partitioning.partition_count();
        match &self.mode {
            ExchangeMode::Hash(exprs) => {
                let keys: Vec<String> = exprs.iter().map(|e| e.to_string()).collect();
                write!(
                    f,
                    "StreamExchangeExec: hash([{}]) {inputs} -> {outputs}",
                    keys.join(", ")
                )?
            }
            ExchangeMode::RoundRobin => {
                write!(f, "StreamExchangeExec: round_robin {inputs} -> {outputs}")?
            }
            ExchangeMode::Single => write!(f, "StreamExchangeExec: merge {inputs} -> 1")?,
        }
        write!(f, ", watermark=min over inputs, barriers=aligned")?;
        fmt_changelog(f, &self.input)
    }
}

impl ExecutionPlan for StreamExchangeExec {
    fn name(&self) -> &str {
        "StreamExchangeExec"
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

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        if let ExchangeMode::Hash(exprs) = &self.mode {
            for e in exprs {
                if f(e)? == TreeNodeRecursion::Stop {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return internal_err!("StreamExchangeExec needs exactly one child");
        };
        let partitions = self.properties.partitioning.partition_count();
        Ok(Arc::new(Self::try_new(
            input,
            self.mode.clone(),
            partitions,
        )?))
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

impl StreamingExec for StreamExchangeExec {
    /// Row by row: each row keeps its kind. Not round robin, which could send a row taken
    /// back to another partition than the row it takes back (the planner drops round robin
    /// over a changelog).
    fn accepts_changes(&self) -> bool {
        !matches!(self.mode, ExchangeMode::RoundRobin)
    }

    fn window_columns(&self) -> std::collections::HashMap<usize, WindowField> {
        super::streaming::window_columns(&self.input)
    }

    fn time_attributes(&self) -> std::collections::HashSet<usize> {
        super::streaming::time_attributes(&self.input)
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let mut guard = self
            .started
            .lock()
            .map_err(|_| DataFusionError::Internal("exchange state poisoned".into()))?;
        if guard.is_none() {
            *guard = Some(self.start(&context)?);
        }
        let Some(started) = guard.as_mut() else {
            return internal_err!("exchange did not start");
        };
        let Some(receivers) = started.outputs.get_mut(partition).and_then(|r| r.take()) else {
            return internal_err!("exchange partition {partition} executed twice or out of range");
        };
        let inputs = receivers.len();
        Ok(Box::pin(ExchangeOutput {
            receivers,
            tracker: WatermarkTracker::new(inputs),
            blocked: vec![false; inputs],
            finished: vec![false; inputs],
            barrier: None,
            next_poll: 0,
            idle_announced: false,
            _tasks: Arc::clone(&started.tasks),
            baseline: BaselineMetrics::new(&self.metrics, partition),
        }))
    }
}

/// Routes one input partition's messages to the output channels.
struct Router {
    mode: ExchangeMode,
    outputs: Vec<mpsc::Sender<Result<StreamMessage>>>,
    next: usize,
    hashes: Vec<u64>,
}

impl Router {
    async fn run(mut self, mut input: MessageStream) {
        while let Some(msg) = input.next().await {
            let delivered = match msg {
                Ok(StreamMessage::Data(batch)) => match self.route(batch).await {
                    Ok(any) => any,
                    Err(e) => {
                        self.broadcast_error(e).await;
                        return;
                    }
                },
                Ok(control) => self.broadcast(control).await,
                Err(e) => {
                    self.broadcast_error(e).await;
                    return;
                }
            };
            if !delivered {
                // Every output is gone: nobody needs this input any more.
                return;
            }
        }
    }

    async fn broadcast(&self, msg: StreamMessage) -> bool {
        let mut any = false;
        for out in &self.outputs {
            any |= out.send(Ok(msg.clone())).await.is_ok();
        }
        any
    }

    async fn broadcast_error(&self, e: DataFusionError) {
        let shared = Arc::new(e);
        for out in &self.outputs {
            let _ = out
                .send(Err(DataFusionError::Shared(Arc::clone(&shared))))
                .await;
        }
    }

    async fn route(&mut self, batch: StreamBatch) -> Result<bool> {
        let n = self.outputs.len();
        match &self.mode {
            ExchangeMode::Single => Ok(self.outputs[0]
                .send(Ok(StreamMessage::Data(batch)))
                .await
                .is_ok()),
            ExchangeMode::RoundRobin => {
                // Skip outputs whose reader is gone.
                for _ in 0..n {
                    let target = self.next % n;
                    self.next += 1;
                    if !self.outputs[target].is_closed() {
                        return Ok(self.outputs[target]
                            .send(Ok(StreamMessage::Data(batch)))
                            .await
                            .is_ok());
                    }
                }
                Ok(false)
            }
            ExchangeMode::Hash(exprs) => {
                let rows = batch.num_rows();
                let keys = exprs
                    .iter()
                    .map(|e| e.evaluate(&batch.batch).and_then(|v| v.into_array(rows)))
                    .collect::<Result<Vec<_>>>()?;
                self.hashes.clear();
                self.hashes.resize(rows, 0);
                // DataFusion's own repartitioning hash: a stock join fed by one of our exchanges
                // and a stock RepartitionExec on its other side must agree on where a key goes.
                // The seed is fixed, so a key also lands in the same partition in every run.
                create_hashes(
                    &keys,
                    REPARTITION_RANDOM_STATE.random_state(),
                    &mut self.hashes,
                )?;
                let mut indices: Vec<Vec<u32>> = vec![Vec::new(); n];
                for (row, h) in self.hashes.iter().enumerate() {
                    indices[(*h % n as u64) as usize].push(row as u32);
                }
                let mut any = false;
                for (target, idx) in indices.into_iter().enumerate() {
                    if idx.is_empty() {
                        continue;
                    }
                    let part = if idx.len() == rows {
                        batch.clone()
                    } else {
                        let idx = UInt32Array::from(idx);
                        let rows_part = take_record_batch(&batch.batch, &idx)?;
                        let wm = match &batch.row_watermarks {
                            Some(w) => Some(take_int64(w, &idx)?),
                            None => None,
                        };
                        let kinds = match &batch.kinds {
                            Some(k) => Some(
                                take(k.as_ref(), &idx, None)?
                                    .as_primitive::<Int8Type>()
                                    .clone(),
                            ),
                            None => None,
                        };
                        StreamBatch::with_row_watermarks(rows_part, wm).with_kinds(kinds)
                    };
                    any |= self.outputs[target]
                        .send(Ok(StreamMessage::Data(part)))
                        .await
                        .is_ok();
                }
                // A batch with no rows still counts as delivered.
                Ok(any || rows == 0 || self.outputs.iter().any(|o| !o.is_closed()))
            }
        }
    }
}

fn take_int64(array: &Int64Array, indices: &UInt32Array) -> Result<Int64Array> {
    let taken = take(array, indices, None)?;
    taken
        .as_any()
        .downcast_ref::<Int64Array>()
        .cloned()
        .ok_or_else(|| DataFusionError::Internal("take on Int64 did not give Int64".into()))
}

/// One output partition: merges the inputs' channels (see the module docs).
struct ExchangeOutput {
    receivers: Vec<Channel>,
    tracker: WatermarkTracker,
    blocked: Vec<bool>,
    finished: Vec<bool>,
    barrier: Option<u64>,
    next_poll: usize,
    idle_announced: bool,
    _tasks: Arc<Vec<SpawnedTask<()>>>,
    baseline: BaselineMetrics,
}

impl ExchangeOutput {
    /// Handles one message of input `i`; returns what to emit, if anything.
    fn handle(&mut self, i: usize, msg: StreamMessage) -> Result<Option<StreamMessage>> {
        Ok(match msg {
            StreamMessage::Data(mut batch) => {
                self.tracker.mark_active(i);
                self.idle_announced = false;
                if self.receivers.len() > 1 {
                    batch.row_watermarks = self
                        .tracker
                        .refine_row_watermarks(i, batch.row_watermarks.as_ref());
                }
                self.baseline.record_output(batch.num_rows());
                Some(StreamMessage::Data(batch))
            }
            StreamMessage::Watermark(w) => {
                self.idle_announced = false;
                self.tracker.update(i, w).map(StreamMessage::Watermark)
            }
            StreamMessage::Idle => match self.tracker.mark_idle(i) {
                Some(w) => Some(StreamMessage::Watermark(w)),
                None if self.tracker.all_idle() && !self.idle_announced => {
                    self.idle_announced = true;
                    Some(StreamMessage::Idle)
                }
                None => None,
            },
            StreamMessage::Barrier(b) => {
                match self.barrier {
                    None => self.barrier = Some(b.epoch),
                    Some(e) if e == b.epoch => {}
                    Some(e) => {
                        return internal_err!(
                            "barrier {} arrived while aligning barrier {e}",
                            b.epoch
                        );
                    }
                }
                self.blocked[i] = true;
                None
            }
        })
    }

    fn aligned(&self) -> bool {
        self.blocked
            .iter()
            .zip(&self.finished)
            .all(|(b, f)| *b || *f)
    }
}

impl Stream for ExchangeOutput {
    type Item = Result<StreamMessage>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some(epoch) = this.barrier
                && this.aligned()
            {
                this.barrier = None;
                this.blocked.iter_mut().for_each(|b| *b = false);
                return Poll::Ready(Some(Ok(StreamMessage::Barrier(
                    super::message::CheckpointBarrier { epoch },
                ))));
            }
            if this.finished.iter().all(|f| *f) {
                this.baseline.done();
                return Poll::Ready(None);
            }
            let n = this.receivers.len();
            let mut progressed = false;
            for k in 0..n {
                let i = (this.next_poll + k) % n;
                if this.blocked[i] || this.finished[i] {
                    continue;
                }
                match this.receivers[i].poll_recv(cx) {
                    Poll::Ready(Some(Ok(msg))) => {
                        this.next_poll = i + 1;
                        progressed = true;
                        match this.handle(i, msg) {
                            Ok(Some(out)) => return Poll::Ready(Some(Ok(out))),
                            Ok(None) => break,
                            Err(e) => return Poll::Ready(Some(Err(e))),
                        }
                    }
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e))),
                    Poll::Ready(None) => {
                        this.finished[i] = true;
                        progressed = true;
                        if let Some(w) = this.tracker.mark_finished(i) {
                            return Poll::Ready(Some(Ok(StreamMessage::Watermark(w))));
                        }
                        break;
                    }
                    Poll::Pending => {}
                }
            }
            if !progressed {
                return Poll::Pending;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
    use futures::StreamExt;

    use crate::physical::message::CheckpointBarrier;

    fn data(v: i64) -> StreamMessage {
        let batch =
            RecordBatch::try_from_iter(vec![("v", Arc::new(Int64Array::from(vec![v])) as _)])
                .unwrap();
        StreamMessage::Data(StreamBatch::new(batch))
    }

    fn value(msg: &StreamMessage) -> String {
        match msg {
            StreamMessage::Data(b) => format!(
                "d{}",
                b.batch
                    .column(0)
                    .as_any()
                    .downcast_ref::<Int64Array>()
                    .unwrap()
                    .value(0)
            ),
            StreamMessage::Watermark(w) => format!("w{w}"),
            StreamMessage::Idle => "idle".to_string(),
            StreamMessage::Barrier(b) => format!("b{}", b.epoch),
        }
    }

    /// An output merging the given per-input message lists (each input then ends).
    async fn merge(inputs: Vec<Vec<StreamMessage>>) -> Vec<String> {
        let mut receivers = Vec::new();
        for messages in inputs {
            let (tx, rx) = mpsc::channel(16);
            for m in messages {
                tx.send(Ok(m)).await.unwrap();
            }
            receivers.push(rx);
        }
        let n = receivers.len();
        let metrics = ExecutionPlanMetricsSet::new();
        let output = ExchangeOutput {
            receivers,
            tracker: WatermarkTracker::new(n),
            blocked: vec![false; n],
            finished: vec![false; n],
            barrier: None,
            next_poll: 0,
            idle_announced: false,
            _tasks: Arc::new(vec![]),
            baseline: BaselineMetrics::new(&metrics, 0),
        };
        output.map(|m| value(&m.unwrap())).collect().await
    }

    #[tokio::test]
    async fn barrier_is_aligned_across_inputs() {
        let barrier = StreamMessage::Barrier(CheckpointBarrier { epoch: 1 });
        let out = merge(vec![
            vec![data(1), barrier.clone(), data(2)],
            vec![data(10), data(11), barrier],
        ])
        .await;
        // Row 2 came after the barrier on input 0: it must not overtake the barrier, which is
        // forwarded once, after every pre-barrier row of both inputs.
        let barrier_at = out.iter().position(|m| m == "b1").unwrap();
        let mut before: Vec<&str> = out[..barrier_at].iter().map(|s| s.as_str()).collect();
        before.sort();
        assert_eq!(before, vec!["d1", "d10", "d11"]);
        let after: Vec<&String> = out[barrier_at + 1..]
            .iter()
            .filter(|m| m.starts_with('d'))
            .collect();
        assert_eq!(after, vec!["d2"]);
        assert_eq!(out.iter().filter(|m| *m == "b1").count(), 1);
    }

    #[tokio::test]
    async fn watermark_is_the_minimum_and_advances_when_inputs_finish() {
        let out = merge(vec![
            vec![StreamMessage::Watermark(10), StreamMessage::Watermark(30)],
            vec![StreamMessage::Watermark(20)],
        ])
        .await;
        let watermarks: Vec<i64> = out
            .iter()
            .filter_map(|m| m.strip_prefix('w'))
            .map(|w| w.parse().unwrap())
            .collect();
        // min(10, 20) = 10 first, then min(30, 20) = 20; 30 only once input 1 has ended; never
        // backwards; +inf when both have ended.
        assert_eq!(watermarks[..2], [10, 20]);
        assert!(watermarks.windows(2).all(|w| w[0] < w[1]), "{watermarks:?}");
        assert_eq!(watermarks.last(), Some(&i64::MAX));
    }

    #[tokio::test]
    async fn idle_input_does_not_hold_back_the_watermark() {
        let out = merge(vec![
            vec![StreamMessage::Watermark(100)],
            vec![StreamMessage::Idle],
        ])
        .await;
        assert_eq!(out.first().map(|s| s.as_str()), Some("w100"), "{out:?}");
    }
}
