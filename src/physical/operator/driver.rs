//! [`Driver`]: the message loop of every stateful operator (see the module docs of
//! `operator`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use datafusion::common::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, Gauge, MetricBuilder,
};

use super::inputs::{Event, Inputs};
use super::{Context, Operator, Watermarks};
use crate::metrics::OperatorSeries;
use crate::physical::job_context::JobContext;
use crate::physical::message::{
    CheckpointBarrier, MessageStream, NO_WATERMARK, StreamBatch, StreamMessage,
};
use crate::physical::operator::checkpoint::OperatorCheckpoint;
use crate::physical::state_memory::StateMemory;
use crate::state::ttl::now_ms;

/// One partition of a stateful operator, run (see the module docs of `operator`).
pub struct Driver<O: Operator> {
    op: O,
    inputs: Inputs,
    /// The watermark last forwarded.
    emitted: i64,
    pending: VecDeque<StreamMessage>,
    /// Where the operator's callbacks put their rows.
    output: Vec<StreamBatch>,
    checkpoint: Option<OperatorCheckpoint>,
    memory: StateMemory,
    metrics: Metrics,
    job: Option<Arc<JobContext>>,
    /// This partition's series in the process's metrics (under a job).
    series: Option<Arc<OperatorSeries>>,
    /// Every input ended.
    ended: bool,
    /// Debug builds: the last barrier and watermark forwarded.
    last_barrier: u64,
    last_watermark: i64,
}

/// What the loop waited for.
enum Next {
    Input(Option<Result<Event>>),
    Timer,
}

/// The metrics every operator has, per partition.
struct Metrics {
    baseline: BaselineMetrics,
    input_rows: Count,
    late_rows: Count,
    null_time_rows: Count,
    state_rows: Gauge,
    state_bytes: Gauge,
}

impl<O: Operator> Driver<O> {
    /// Runs `op` as partition `partition` of `exec` (whose metrics are `metrics`) over
    /// `inputs`, restoring the checkpoint the job resumes from first, if any.
    pub fn open(
        exec: &dyn ExecutionPlan,
        metrics: &ExecutionPlanMetricsSet,
        inputs: Vec<MessageStream>,
        partition: usize,
        context: &Arc<TaskContext>,
        op: O,
    ) -> Result<MessageStream> {
        let builder = || MetricBuilder::new(metrics);
        let mut driver = Self {
            op,
            inputs: Inputs::new(inputs),
            emitted: NO_WATERMARK,
            pending: VecDeque::new(),
            output: Vec::new(),
            checkpoint: OperatorCheckpoint::open(exec, context, partition),
            memory: StateMemory::new(context, exec.name(), partition),
            metrics: Metrics {
                baseline: BaselineMetrics::new(metrics, partition),
                input_rows: builder().counter("input_rows", partition),
                late_rows: builder().counter("late_rows", partition),
                null_time_rows: builder().counter("null_time_rows", partition),
                state_rows: builder().gauge("state_rows", partition),
                state_bytes: builder().gauge("state_bytes", partition),
            },
            series: JobContext::of(context).and_then(|j| j.operator_series(exec, partition)),
            job: JobContext::of(context),
            ended: false,
            last_barrier: 0,
            last_watermark: NO_WATERMARK,
        };
        driver.restore()?;
        Ok(Box::pin(futures::stream::unfold(
            driver,
            |mut d| async move { d.next_message().await.map(|m| (m, d)) },
        )))
    }

    fn restore(&mut self) -> Result<()> {
        let Some(checkpoint) = &self.checkpoint else {
            return Ok(());
        };
        let Some(restored) = checkpoint.restored() else {
            return Ok(());
        };
        let watermarks = self.op.restore(checkpoint, &restored)?;
        self.inputs.restore_watermarks(&watermarks.inputs);
        self.emitted = watermarks.output;
        self.track_state()
    }

    async fn next_message(&mut self) -> Option<Result<StreamMessage>> {
        loop {
            if let Some(msg) = self.pending.pop_front() {
                self.check_protocol(&msg);
                return Some(Ok(msg));
            }
            if self.ended {
                return None;
            }
            let next = match self.op.next_timer() {
                None => Next::Input(self.inputs.next().await),
                Some(at) => match u64::try_from(at.saturating_sub(now_ms())) {
                    Ok(wait) if wait > 0 => {
                        let sleep = tokio::time::sleep(Duration::from_millis(wait));
                        // Reading an input is cancel-safe: a message is taken only when ready.
                        tokio::select! {
                            event = self.inputs.next() => Next::Input(event),
                            () = sleep => Next::Timer,
                        }
                    }
                    _ => Next::Timer,
                },
            };
            let event = match next {
                Next::Timer => {
                    if let Err(e) = self.timer() {
                        return Some(Err(e));
                    }
                    continue;
                }
                Next::Input(event) => event,
            };
            let event = match event {
                Some(Ok(event)) => event,
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    return self.end().err().map(Err);
                }
            };
            if let Err(e) = self.handle(event).await {
                return Some(Err(e));
            }
        }
    }

    async fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Data(input, batch) => {
                let rows = batch.num_rows();
                self.metrics.input_rows.add(rows);
                if let Some(series) = &self.series {
                    series.add_rows_in(rows);
                }
                let elapsed = self.metrics.baseline.elapsed_compute().clone();
                let timer = elapsed.timer();
                let watermarks = Watermarks {
                    inputs: self.inputs.watermarks(),
                    idle: self.inputs.idle(),
                    output: self.emitted,
                };
                let mut ctx = Context::new(watermarks, &mut self.output);
                let result = self.op.on_data(input, batch, &mut ctx);
                let (late, null_time) = (ctx.late, ctx.null_time);
                timer.done();
                self.count(late, null_time);
                debug_assert!(late + null_time <= rows, "more rows dropped than came in");
                result?;
                self.emit_output();
                self.track_state()
            }
            Event::Watermark => {
                if let Some(series) = &self.series {
                    let inputs = self.inputs.watermarks();
                    series.set_watermark(inputs.iter().copied().min().unwrap_or(NO_WATERMARK));
                }
                let elapsed = self.metrics.baseline.elapsed_compute().clone();
                let timer = elapsed.timer();
                let watermarks = Watermarks {
                    inputs: self.inputs.watermarks(),
                    idle: self.inputs.idle(),
                    output: self.emitted,
                };
                let mut ctx = Context::new(watermarks, &mut self.output);
                let result = self.op.on_watermark(&mut ctx).await;
                let (late, null_time) = (ctx.late, ctx.null_time);
                timer.done();
                self.count(late, null_time);
                let output = result?;
                self.emit_output();
                if output > self.emitted {
                    self.emitted = output;
                    self.pending.push_back(StreamMessage::Watermark(output));
                }
                self.track_state()
            }
            Event::Idle => {
                if self.op.may_idle() {
                    self.pending.push_back(StreamMessage::Idle);
                }
                Ok(())
            }
            Event::Barrier(epoch) => {
                if let Some(checkpoint) = &self.checkpoint {
                    let watermarks = Watermarks {
                        inputs: self.inputs.watermarks(),
                        idle: self.inputs.idle(),
                        output: self.emitted,
                    };
                    self.op.snapshot(epoch, &watermarks, checkpoint)?;
                }
                self.pending
                    .push_back(StreamMessage::Barrier(CheckpointBarrier { epoch }));
                Ok(())
            }
        }
    }

    /// The operator's timer is due.
    fn timer(&mut self) -> Result<()> {
        let elapsed = self.metrics.baseline.elapsed_compute().clone();
        let timer = elapsed.timer();
        let watermarks = Watermarks {
            inputs: self.inputs.watermarks(),
            idle: self.inputs.idle(),
            output: self.emitted,
        };
        let mut ctx = Context::new(watermarks, &mut self.output);
        let result = self.op.on_timer(now_ms(), &mut ctx);
        timer.done();
        let output = result?;
        self.emit_output();
        if output > self.emitted {
            self.emitted = output;
            self.pending.push_back(StreamMessage::Watermark(output));
        }
        self.track_state()
    }

    /// Every input ended: the final metadata to the checkpoint.
    fn end(&mut self) -> Result<()> {
        self.ended = true;
        let watermarks = Watermarks {
            inputs: self.inputs.watermarks(),
            idle: self.inputs.idle(),
            output: self.emitted,
        };
        let meta = self.op.end(&watermarks);
        self.metrics.baseline.done();
        match &mut self.checkpoint {
            Some(checkpoint) => checkpoint.finish(&meta),
            None => Ok(()),
        }
    }

    /// Queues what the last callback emitted.
    fn emit_output(&mut self) {
        for batch in self.output.drain(..) {
            self.metrics.baseline.record_output(batch.num_rows());
            if let Some(series) = &self.series {
                series.add_rows_out(batch.num_rows());
            }
            self.pending.push_back(StreamMessage::Data(batch));
        }
    }

    fn count(&mut self, late: usize, null_time: usize) {
        if late > 0 {
            self.metrics.late_rows.add(late);
            if let Some(series) = &self.series {
                series.add_late_rows(late);
            }
            if let Some(job) = &self.job {
                job.stats.add_late_rows(late as u64);
            }
        }
        if null_time > 0 {
            self.metrics.null_time_rows.add(null_time);
        }
    }

    /// Publishes the state's size and reserves its memory.
    fn track_state(&mut self) -> Result<()> {
        let size = self.op.state_size();
        self.metrics.state_rows.set(size.rows);
        self.metrics.state_bytes.set(size.bytes);
        if let Some(series) = &self.series {
            series.set_state(size.rows, size.bytes);
        }
        self.memory.track(size.bytes)
    }

    /// Debug builds: the protocol this operator emits holds (see the module docs).
    fn check_protocol(&mut self, msg: &StreamMessage) {
        if cfg!(debug_assertions) {
            match msg {
                StreamMessage::Barrier(b) => {
                    assert!(
                        b.epoch > self.last_barrier,
                        "barrier {} after barrier {}",
                        b.epoch,
                        self.last_barrier
                    );
                    self.last_barrier = b.epoch;
                }
                StreamMessage::Watermark(w) => {
                    assert!(
                        *w > self.last_watermark,
                        "watermark {w} forwarded after {}",
                        self.last_watermark
                    );
                    self.last_watermark = *w;
                }
                StreamMessage::Data(_) | StreamMessage::Idle => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::physical::message::END_OF_TIME;
    use crate::physical::operator::checkpoint::Restored;
    use crate::physical::operator::{RestoredWatermarks, StateSize};
    use datafusion::arrow::array::{Array, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::physical_plan::empty::EmptyExec;
    use futures::StreamExt;

    /// Holds rows until the watermark passes their value (like a window); a row at or below
    /// its input's watermark is late.
    #[derive(Default)]
    struct Hold {
        held: Vec<i64>,
    }

    fn batch(values: Vec<i64>) -> RecordBatch {
        RecordBatch::try_from_iter(vec![("v", Arc::new(Int64Array::from(values)) as _)]).unwrap()
    }

    fn values(batch: &RecordBatch) -> Vec<i64> {
        let column = batch
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        (0..column.len()).map(|i| column.value(i)).collect()
    }

    impl Operator for Hold {
        fn restore(
            &mut self,
            _: &OperatorCheckpoint,
            _: &Restored<'_>,
        ) -> Result<RestoredWatermarks> {
            unreachable!("no checkpoints here")
        }

        fn on_data(&mut self, input: usize, b: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
            let watermark = ctx.watermarks().inputs()[input];
            for v in values(&b.batch) {
                if v <= watermark {
                    ctx.late(1);
                } else {
                    self.held.push(v);
                }
            }
            Ok(())
        }

        async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
            let watermark = ctx.watermark();
            let (due, kept): (Vec<i64>, Vec<i64>) =
                self.held.iter().partition(|v| **v <= watermark);
            self.held = kept;
            ctx.emit(batch(due));
            Ok(watermark)
        }

        fn may_idle(&self) -> bool {
            self.held.is_empty()
        }

        fn snapshot(&mut self, _: u64, _: &Watermarks<'_>, _: &OperatorCheckpoint) -> Result<()> {
            unreachable!("no checkpoints here")
        }

        type Meta = ();

        fn end(&mut self, _: &Watermarks<'_>) {}

        fn state_size(&self) -> StateSize {
            StateSize {
                rows: self.held.len(),
                bytes: self.held.len() * 8,
            }
        }
    }

    fn data(values: Vec<i64>) -> Result<StreamMessage> {
        Ok(StreamMessage::Data(StreamBatch::new(batch(values))))
    }

    fn wm(w: i64) -> Result<StreamMessage> {
        Ok(StreamMessage::Watermark(w))
    }

    fn barrier(epoch: u64) -> Result<StreamMessage> {
        Ok(StreamMessage::Barrier(CheckpointBarrier { epoch }))
    }

    /// What came out, as text: `d[..]`, `w..`, `idle`, `b..`; and the late rows counted.
    async fn run(inputs: Vec<Vec<Result<StreamMessage>>>) -> (Vec<String>, usize) {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let exec = EmptyExec::new(schema);
        let metrics = ExecutionPlanMetricsSet::new();
        let context = Arc::new(TaskContext::default());
        let inputs = inputs
            .into_iter()
            .map(|messages| Box::pin(futures::stream::iter(messages)) as MessageStream)
            .collect();
        let mut out = Driver::open(&exec, &metrics, inputs, 0, &context, Hold::default()).unwrap();
        let mut seen = Vec::new();
        while let Some(msg) = out.next().await {
            seen.push(match msg.unwrap() {
                StreamMessage::Data(b) => format!("d{:?}", values(&b.batch)),
                StreamMessage::Watermark(END_OF_TIME) => "w+inf".to_string(),
                StreamMessage::Watermark(w) => format!("w{w}"),
                StreamMessage::Idle => "idle".to_string(),
                StreamMessage::Barrier(b) => format!("b{}", b.epoch),
            });
        }
        let late = metrics
            .clone_inner()
            .sum_by_name("late_rows")
            .map_or(0, |v| v.as_usize());
        (seen, late)
    }

    /// Emits the clock's time once its timer is due, and moves the output watermark there.
    struct Alarm {
        at: Option<i64>,
    }

    impl Operator for Alarm {
        fn restore(
            &mut self,
            _: &OperatorCheckpoint,
            _: &Restored<'_>,
        ) -> Result<RestoredWatermarks> {
            unreachable!("no checkpoints here")
        }

        fn on_data(&mut self, _: usize, _: StreamBatch, _: &mut Context<'_>) -> Result<()> {
            Ok(())
        }

        async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
            Ok(ctx.watermarks().output())
        }

        fn next_timer(&self) -> Option<i64> {
            self.at
        }

        fn on_timer(&mut self, now: i64, ctx: &mut Context<'_>) -> Result<i64> {
            assert!(now >= self.at.unwrap_or(i64::MAX), "the timer fired early");
            self.at = None;
            ctx.emit(batch(vec![now]));
            Ok(now)
        }

        fn snapshot(&mut self, _: u64, _: &Watermarks<'_>, _: &OperatorCheckpoint) -> Result<()> {
            unreachable!("no checkpoints here")
        }

        type Meta = ();

        fn end(&mut self, _: &Watermarks<'_>) {}

        fn state_size(&self) -> StateSize {
            StateSize::default()
        }
    }

    /// A timer fires while the input has nothing to say (it never ends here), emitting its
    /// rows and watermark.
    #[tokio::test]
    async fn a_timer_fires_while_the_input_is_silent() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Int64, false)]));
        let exec = EmptyExec::new(schema);
        let metrics = ExecutionPlanMetricsSet::new();
        let context = Arc::new(TaskContext::default());
        let silent = Box::pin(futures::stream::pending()) as MessageStream;
        let at = now_ms() + 50;
        let alarm = Alarm { at: Some(at) };
        let mut out = Driver::open(&exec, &metrics, vec![silent], 0, &context, alarm).unwrap();
        let first = tokio::time::timeout(std::time::Duration::from_secs(10), out.next())
            .await
            .expect("the timer fires")
            .unwrap()
            .unwrap();
        let StreamMessage::Data(rows) = first else {
            panic!("rows first, got {first:?}");
        };
        let fired = values(&rows.batch)[0];
        assert!(fired >= at, "fired at {fired}, due at {at}");
        let second = out.next().await.unwrap().unwrap();
        assert!(
            matches!(second, StreamMessage::Watermark(w) if w == fired),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn the_output_watermark_is_the_minimum_over_inputs_and_never_goes_back() {
        // Turns alternate: L w5, R w7, L w10, R w3, L ends, R w12, R ends.
        let (seen, _) = run(vec![vec![wm(5), wm(10)], vec![wm(7), wm(3), wm(12)]]).await;
        assert_eq!(seen, ["w5", "w7", "w12", "w+inf"]);
    }

    #[tokio::test]
    async fn rows_wait_for_the_watermark_and_late_rows_are_counted_per_input() {
        // L: 4 and 6 held; w5 on L alone moves nothing (R has none); R: w8, then 3 is late on
        // R (3 <= 8) but 7 on L is not (L's watermark is 5).
        let (seen, late) = run(vec![
            vec![data(vec![4, 6]), wm(5), data(vec![7])],
            vec![wm(8), data(vec![3, 9])],
        ])
        .await;
        assert_eq!(late, 1);
        // L d[4,6], R w8 (min -inf), L w5 -> min 5: 4 fires; R d[3,9]: 3 late; L d[7];
        // R ends (min stays 5); L ends: 6, 9 and 7 fire, in the order they came.
        assert_eq!(seen, ["d[4]", "w5", "d[6, 9, 7]", "w+inf"]);
    }

    #[tokio::test]
    async fn barriers_are_aligned_and_forwarded_once() {
        let (seen, _) = run(vec![
            vec![data(vec![1]), barrier(1), data(vec![2])],
            vec![data(vec![10]), data(vec![11]), barrier(1), data(vec![12])],
        ])
        .await;
        // The rows are held until the end; the barrier comes out once, before the end.
        // The rows before the barrier (1, 10, 11) were all read before it.
        assert_eq!(seen, ["b1", "d[1, 10, 11, 2, 12]", "w+inf"]);
    }

    #[tokio::test]
    async fn idleness_passes_only_when_every_input_is_idle_and_nothing_is_held() {
        let idle = || Ok(StreamMessage::Idle);
        let (seen, _) = run(vec![vec![data(vec![5]), idle()], vec![idle()]]).await;
        // Both idle while 5 is held: no Idle; the end fires 5.
        assert_eq!(seen, ["d[5]", "w+inf"]);
        let (seen, _) = run(vec![vec![idle()], vec![idle()]]).await;
        assert_eq!(seen, ["idle", "w+inf"]);
    }
}
