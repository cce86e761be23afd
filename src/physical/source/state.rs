//! One partition of a source at run time: takes the reader's batches, computes columns and
//! watermarks, and interleaves barriers, idleness and the end of input (see [`super`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, ArrayRef, Int64Array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::exec_datafusion_err;
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::metrics::{BaselineMetrics, Count};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::{ComputedColumn, WatermarkStrategy};
use crate::checkpoint::coordinator::Checkpointing;
use crate::connectors::SourceBatch;
use crate::physical::event_time::to_millis;
use crate::physical::job_context::JobContext;
use crate::physical::message::{CheckpointBarrier, END_OF_TIME, StreamBatch, StreamMessage};
use crate::physical::watermark_tracker::WatermarkTracker;

/// What a source partition checkpoints (its `meta` in the manifest).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct SourceMeta {
    /// The reader's position after the last batch taken ([`SourceBatch::position`], the
    /// reader's own layout); `null` while the reader has given none, and then it resumes
    /// nothing.
    #[serde(default)]
    pub(super) position: Option<serde_json::Value>,
    /// The watermark of every split of the reader
    /// ([`NO_WATERMARK`](crate::physical::message::NO_WATERMARK) before its first row).
    pub(super) watermarks: Vec<i64>,
}

pub(super) struct SourceState {
    pub(super) rx: mpsc::Receiver<Result<Option<SourceBatch>>>,
    pub(super) _reading: SpawnedTask<()>,
    pub(super) barrier_requests: Option<watch::Receiver<u64>>,
    pub(super) computed: Vec<ComputedColumn>,
    pub(super) watermark: Option<WatermarkStrategy>,
    pub(super) output_projection: Vec<usize>,
    pub(super) schema: SchemaRef,
    pub(super) tracker: WatermarkTracker,
    pub(super) split_watermarks: Vec<i64>,
    pub(super) last_data: Vec<Instant>,
    pub(super) idle: Vec<bool>,
    pub(super) pending: std::collections::VecDeque<StreamMessage>,
    pub(super) finished: bool,
    pub(super) all_idle_announced: bool,
    pub(super) baseline: BaselineMetrics,
    pub(super) future_rows: Count,
    pub(super) future_warned: bool,
    pub(super) job: Option<Arc<JobContext>>,
    pub(super) watermark_cell: Option<Arc<AtomicI64>>,
    pub(super) table: String,
    /// The checkpoint coordinator and this operator's id, when checkpointing.
    pub(super) checkpoint: Option<(Arc<Checkpointing>, String)>,
    pub(super) partition: usize,
    pub(super) partitions: usize,
    /// Reader position after the last batch taken.
    pub(super) position: Option<serde_json::Value>,
    /// What the reader handed over after the rows drained before a barrier, to take next.
    pub(super) deferred: Option<Result<Option<SourceBatch>>>,
}

impl SourceState {
    pub(super) async fn next_message(&mut self) -> Option<Result<StreamMessage>> {
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
    use crate::physical::message::NO_WATERMARK;
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
