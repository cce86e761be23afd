//! One partition of an interval join: matching, buffering, eviction, snapshots; run by the
//! operator [`Driver`](crate::physical::operator::Driver).

use datafusion::arrow::array::{Array, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::RowConverter;
use datafusion::common::{Result, internal_err};
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_plan::joins::utils::JoinFilter;
use serde::{Deserialize, Serialize};

use super::super::state::SideCodec;
use super::super::window::{join_keys, typed_join_keys};
use super::super::{Emit, Gather, JoinOutput, filter_pairs};
use super::bound::TimeBound;
use super::buffer::{Keys, SideBuffer};
use crate::physical::event_time::to_millis;
use crate::physical::message::{NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{
    OperatorCheckpoint, Restored, min_input_watermarks, min_watermark,
};
use crate::physical::operator::{Context, Operator, RestoredWatermarks, StateSize, Watermarks};

/// One partition of an interval join.
pub(super) struct IntervalJoinStream {
    pub(super) codec: SideCodec,
    pub(super) output: JoinOutput,
    pub(super) on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    pub(super) filter: JoinFilter,
    pub(super) bound: TimeBound,
    /// Key types (the left's; right keys are cast to them).
    pub(super) key_types: Vec<DataType>,
    /// `None` for one integer key (used as is).
    pub(super) converter: Option<RowConverter>,
    pub(super) buffers: [SideBuffer; 2],
    /// Rows emitted by the callback running, handed to the driver when it returns.
    pub(super) out: Vec<RecordBatch>,
}

impl IntervalJoinStream {
    pub(super) fn keys(&self, side: usize, rows: &RecordBatch) -> Result<(Keys, Vec<bool>)> {
        let keys = typed_join_keys(&self.on, side, rows, &self.key_types)?;
        let valid = (0..rows.num_rows())
            .map(|i| keys.iter().all(|k| k.is_valid(i)))
            .collect();
        let encoded = match (&self.converter, keys.as_slice()) {
            (None, [key]) => {
                let key = cast(key, &DataType::Int64)?;
                let key = key.as_primitive::<Int64Type>();
                Keys::Int(key.values().to_vec())
            }
            (Some(converter), _) => Keys::Rows(converter.convert_columns(&keys)?),
            (None, _) => return internal_err!("interval join: one integer key expected"),
        };
        Ok((encoded, valid))
    }

    pub(super) fn emit(&mut self, batch: RecordBatch) {
        self.out.push(batch);
    }

    /// Matches one input batch against the other side's buffer, then buffers it.
    pub(super) fn process(
        &mut self,
        x: usize,
        batch: StreamBatch,
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        let y = 1 - x;
        let rows = &batch.batch;
        let n = rows.num_rows();
        let times = to_millis(rows.column(self.bound.columns[x]))?;
        let watermark = ctx.watermarks().inputs()[x];
        let (keys, valid) = self.keys(x, rows)?;

        // Rows that take part: event time set and not late.
        let mut eligible = vec![false; n];
        let mut late = 0usize;
        let mut null_time: Vec<u32> = Vec::new();
        for (i, e) in eligible.iter_mut().enumerate() {
            if times.is_null(i) {
                null_time.push(i as u32);
                continue;
            }
            if times.value(i) <= batch.row_watermark(i, watermark) {
                late += 1;
            } else {
                *e = true;
            }
        }
        ctx.late(late);
        // A row without event time can meet nothing: kept as unmatched on an outer or anti
        // side (as in batch SQL), otherwise dropped; counted either way.
        if !null_time.is_empty() {
            ctx.null_time(null_time.len());
            if self.output.emit.keeps_unmatched(x) {
                let idx = UInt32Array::from(null_time);
                let out = self.side_rows(x, Gather::Batch(rows, &idx))?;
                self.emit(out);
            }
        }

        // Candidate partners by key, then the whole filter.
        let other = &self.buffers[y];
        let mut mine: Vec<u32> = Vec::new();
        let mut theirs: Vec<(usize, usize)> = Vec::new();
        for i in 0..n {
            if !eligible[i] || !valid[i] {
                continue;
            }
            other.matches(keys.get(i), |pos, row| {
                mine.push(i as u32);
                theirs.push((pos, row));
            });
        }
        let mut matched = vec![false; n];
        if !mine.is_empty() {
            let segments: Vec<&RecordBatch> = other.segments.iter().map(|s| &s.rows).collect();
            let mine_idx = UInt32Array::from(std::mem::take(&mut mine));
            let mask = {
                let a = Gather::Batch(rows, &mine_idx);
                let b = Gather::Buffered(&segments, &theirs);
                let (l, r) = if x == 0 { (&a, &b) } else { (&b, &a) };
                filter_pairs(&self.filter, &self.output.inputs, l, r)?
            };
            let mut kept_mine = Vec::with_capacity(mine_idx.len());
            let mut kept_theirs = Vec::with_capacity(mine_idx.len());
            let mut newly_matched = Vec::new();
            for (k, keep) in mask.values().iter().enumerate() {
                if keep {
                    let (pos, row) = theirs[k];
                    kept_mine.push(mine_idx.value(k));
                    kept_theirs.push((pos, row));
                    matched[mine_idx.value(k) as usize] = true;
                    if !self.buffers[y].segments[pos].matched[row] {
                        newly_matched.push((pos, row));
                    }
                }
            }
            for &(pos, row) in &newly_matched {
                self.buffers[y].segments[pos].matched[row] = true;
            }
            let segments: Vec<&RecordBatch> =
                self.buffers[y].segments.iter().map(|s| &s.rows).collect();
            let out = match self.output.emit {
                Emit::Pairs(_) => {
                    let mine_idx = UInt32Array::from(kept_mine);
                    let a = Gather::Batch(rows, &mine_idx);
                    let b = Gather::Buffered(&segments, &kept_theirs);
                    Some(if x == 0 {
                        self.output.batch(a, b)?
                    } else {
                        self.output.batch(b, a)?
                    })
                }
                Emit::Semi(s) if s == y => {
                    newly_matched.sort_unstable();
                    newly_matched.dedup();
                    Some(self.side_rows(y, Gather::Buffered(&segments, &newly_matched))?)
                }
                Emit::Semi(_) => {
                    let idx: UInt32Array = (0..n as u32).filter(|&i| matched[i as usize]).collect();
                    Some(self.side_rows(x, Gather::Batch(rows, &idx))?)
                }
                Emit::Anti(_) => None,
            };
            if let Some(out) = out {
                self.emit(out);
            }
        }

        // Buffer the rows that can still meet future rows of the other side; the others are
        // done now (emitted with NULLs if they are on a kept side and never matched).
        let own_threshold = self.buffers[x].threshold;
        let mut keep: Vec<u32> = Vec::new();
        let mut done_unmatched: Vec<u32> = Vec::new();
        for i in 0..n {
            if !eligible[i] {
                continue;
            }
            if valid[i] && times.value(i) > own_threshold {
                keep.push(i as u32);
            } else if !matched[i] && self.output.emit.keeps_unmatched(x) {
                done_unmatched.push(i as u32);
            }
        }
        if !done_unmatched.is_empty() {
            let idx = UInt32Array::from(done_unmatched);
            let out = self.side_rows(x, Gather::Batch(rows, &idx))?;
            self.emit(out);
        }
        if !keep.is_empty() {
            let idx = UInt32Array::from(keep);
            let kept = if idx.len() == n {
                rows.clone()
            } else {
                take_record_batch(rows, &idx)?
            };
            let (kept_keys, _) = self.keys(x, &kept)?;
            let kept_times = idx
                .values()
                .iter()
                .map(|&i| times.value(i as usize))
                .collect();
            let kept_matched = idx.values().iter().map(|&i| matched[i as usize]).collect();
            self.buffers[x].insert(kept, kept_keys, kept_times, kept_matched);
        }
        Ok(())
    }

    /// An output batch of rows of one side alone (NULLs for the other side in pair joins).
    pub(super) fn side_rows(&self, side: usize, rows: Gather<'_>) -> Result<RecordBatch> {
        let nulls = Gather::Nulls(match &rows {
            Gather::Batch(_, idx) => idx.len(),
            Gather::Buffered(_, r) => r.len(),
            Gather::Nulls(n) => *n,
        });
        if side == 0 {
            self.output.batch(rows, nulls)
        } else {
            self.output.batch(nulls, rows)
        }
    }

    /// Drops the rows that can no longer match; returns the output watermark.
    fn evict(&mut self, [l, r]: [i64; 2]) -> Result<i64> {
        let thresholds = [self.bound.left_threshold(r), self.bound.right_threshold(l)];
        for (side, threshold) in thresholds.into_iter().enumerate() {
            let gone = self.buffers[side].evict(threshold);
            if !gone.is_empty() && self.output.emit.keeps_unmatched(side) {
                let segments: Vec<&RecordBatch> = self.buffers[side]
                    .segments
                    .iter()
                    .map(|s| &s.rows)
                    .collect();
                let out = self.side_rows(side, Gather::Buffered(&segments, &gone))?;
                self.emit(out);
            }
            self.buffers[side].compact();
        }
        Ok(self.bound.output_watermark([l, r]))
    }

    /// Hands what the last callback emitted to the driver.
    fn flush(&mut self, ctx: &mut Context<'_>) {
        for batch in self.out.drain(..) {
            ctx.emit(batch);
        }
    }
}

/// What a partition of an interval join records in a checkpoint besides its rows.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct IntervalJoinMeta {
    /// Each input's watermark.
    watermarks: Vec<i64>,
    /// The watermark the output carried (at barriers; not recorded at the end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    emitted: Option<i64>,
}

impl Operator for IntervalJoinStream {
    type Meta = IntervalJoinMeta;

    /// Restores both buffers and the watermarks of the checkpoint the job resumes from.
    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let metas: Vec<IntervalJoinMeta> = restored.metas("interval join")?;
        let inputs = min_input_watermarks(metas.iter().map(|m| m.watermarks.as_slice()), 2);
        let watermarks = [inputs[0], inputs[1]];
        let emitted = metas.iter().map(|m| m.emitted.unwrap_or(NO_WATERMARK));
        let output = min_watermark(emitted, NO_WATERMARK);
        let codec = self.codec.clone();
        let on = self.on.clone();
        let batches = checkpoint.batches_by(restored, |batch| {
            let side = codec.side_of(batch)?;
            let (rows, _) = codec.decode(batch, side)?;
            join_keys(&on, side, &rows)
        })?;
        let [l, r] = watermarks;
        self.buffers[0].threshold = self.bound.left_threshold(r);
        self.buffers[1].threshold = self.bound.right_threshold(l);
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let side = self.codec.side_of(&batch)?;
            let (rows, matched) = self.codec.decode(&batch, side)?;
            let times = to_millis(rows.column(self.bound.columns[side]))?;
            let (keys, _) = self.keys(side, &rows)?;
            self.buffers[side].insert(
                rows,
                keys,
                times.values().to_vec(),
                matched.values().iter().collect(),
            );
        }
        Ok(RestoredWatermarks {
            inputs: watermarks.to_vec(),
            output,
        })
    }

    fn on_data(&mut self, side: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        let result = self.process(side, batch, ctx);
        self.flush(ctx);
        result
    }

    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        let inputs = ctx.watermarks().inputs();
        let result = self.evict([inputs[0], inputs[1]]);
        self.flush(ctx);
        result
    }

    /// Idle only when nothing is held: buffered rows may still come out (as outer rows) and
    /// must not find a downstream watermark that moved on without them.
    fn may_idle(&self) -> bool {
        self.buffers[0].alive + self.buffers[1].alive == 0
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        let mut batches = Vec::new();
        for (side, buffer) in self.buffers.iter().enumerate() {
            for (pos, segment) in buffer.segments.iter().enumerate() {
                let alive: UInt32Array = buffer.alive_rows(pos).collect();
                if alive.is_empty() {
                    continue;
                }
                let rows = take_record_batch(&segment.rows, &alive)?;
                let matched: BooleanArray = alive
                    .values()
                    .iter()
                    .map(|&r| Some(segment.matched[r as usize]))
                    .collect();
                batches.push(self.codec.encode(side, &rows, &matched)?);
            }
        }
        let meta = IntervalJoinMeta {
            watermarks: watermarks.inputs().to_vec(),
            emitted: Some(watermarks.output()),
        };
        checkpoint.snapshot(epoch, &meta, batches)
    }

    fn end(&mut self, watermarks: &Watermarks<'_>) -> IntervalJoinMeta {
        IntervalJoinMeta {
            watermarks: watermarks.inputs().to_vec(),
            emitted: None,
        }
    }

    fn state_size(&self) -> StateSize {
        StateSize {
            rows: self.buffers[0].alive + self.buffers[1].alive,
            bytes: self.buffers.iter().map(SideBuffer::memory_size).sum(),
        }
    }
}
