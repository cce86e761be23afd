//! The lifecycle of a stateful streaming operator, and the one driver that runs every one.
//!
//! A stateful operator (TUMBLE/HOP and SESSION aggregation, the window and interval joins)
//! implements [`Operator`]: what it does with rows, with an advancing watermark, at a barrier
//! and at the end, and how it restores a checkpoint. It never sees the message stream. The
//! [`Driver`] does, the same way for every operator (RisingWave's executors match on their
//! messages the same way; Arroyo's operators get the same callbacks):
//!
//! - it reads the inputs ([`inputs`]), taking turns, and aligns barriers: an input that
//!   delivered barrier `n` is not read again until every unfinished input has;
//! - it keeps each input's watermark (never backwards; a finished input's is
//!   [`END_OF_TIME`](super::message::END_OF_TIME)) and calls
//!   [`on_watermark`](Operator::on_watermark) when one advanced; the operator answers with
//!   the watermark its output may carry, which the driver forwards when it advanced;
//! - it forwards idleness once every input is idle and the operator holds nothing that could
//!   still come out ([`may_idle`](Operator::may_idle));
//! - it hands the operator's snapshot to the checkpoint at each barrier, then forwards the
//!   barrier; at the end it hands over the final metadata;
//! - it counts rows out, late rows and rows without event time, times the operator's work,
//!   reserves the state's memory in the session's pool after each message
//!   ([`StateMemory`](super::state_memory::StateMemory)) and publishes the watermark and the
//!   state's size as metrics;
//! - in debug builds it checks the protocol it emits: watermarks never go back, barriers come
//!   in increasing order, nothing follows the end.
//!
//! [`checkpoint`] is what the driver and the operators use to hand a partition's state to the
//! job's checkpoint at a barrier and to restore it (re-keyed when the parallelism changed).

pub mod checkpoint;
mod driver;
pub mod inputs;

use std::future::Future;

use datafusion::arrow::array::Int8Array;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use driver::Driver;

use super::message::{NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{OperatorCheckpoint, Restored};

/// What an operator restored from a checkpoint: its inputs' watermarks and the watermark its
/// output had carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoredWatermarks {
    /// Per input.
    pub inputs: Vec<i64>,
    /// The output's last watermark.
    pub output: i64,
}

impl RestoredWatermarks {
    /// Every input at `watermark`, and the output too.
    pub fn all(inputs: usize, watermark: i64) -> Self {
        Self {
            inputs: vec![watermark; inputs],
            output: watermark,
        }
    }
}

/// A stateful streaming operator's side of the lifecycle (see the module docs). One value
/// serves one partition.
pub trait Operator: Send + 'static {
    /// What a partition records in a checkpoint besides its state rows (watermarks, counters),
    /// read back by [`restore`](Self::restore) through [`Restored::metas`].
    type Meta: Serialize + DeserializeOwned;

    /// Restores the state of the checkpoint the job resumes from (called once, before any
    /// message, and only when there is one).
    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks>;

    /// Rows from input `input`; lateness is judged against [`Context::watermarks`] (or the
    /// batch's per-row watermarks).
    fn on_data(&mut self, input: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()>;

    /// An input's watermark advanced (see [`Context::watermarks`]): fire what is due. Returns
    /// the watermark the output may carry now.
    fn on_watermark(&mut self, ctx: &mut Context<'_>) -> impl Future<Output = Result<i64>> + Send;

    /// Processing-time operators: when the clock (milliseconds since the epoch) next calls
    /// [`on_timer`](Self::on_timer), if ever. Asked before every wait for input.
    fn next_timer(&self) -> Option<i64> {
        None
    }

    /// The clock reached [`next_timer`](Self::next_timer) (it reads `now`): fire what is due.
    /// Returns the watermark the output may carry now.
    fn on_timer(&mut self, _now: i64, ctx: &mut Context<'_>) -> Result<i64> {
        Ok(ctx.watermarks().output())
    }

    /// True when the operator holds nothing that could still come out, so idleness may pass:
    /// a downstream watermark must not move on without rows still to come.
    fn may_idle(&self) -> bool {
        true
    }

    /// Barrier `epoch`: hands the state to `checkpoint` (called only when the job
    /// checkpoints).
    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()>;

    /// Every input ended (after the final watermark was handled): the metadata later
    /// checkpoints hold for this partition.
    fn end(&mut self, watermarks: &Watermarks<'_>) -> Self::Meta;

    /// Rows and bytes of state held in memory (under RocksDB, what is buffered in memory).
    fn state_size(&self) -> StateSize;
}

/// The size of an operator's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateSize {
    /// Rows (or groups) held.
    pub rows: usize,
    /// Bytes held in memory.
    pub bytes: usize,
}

/// The watermarks the driver keeps for an operator.
#[derive(Debug, Clone, Copy)]
pub struct Watermarks<'a> {
    inputs: &'a [i64],
    /// Per input, whether it is idle (empty: none is).
    idle: &'a [bool],
    output: i64,
}

impl<'a> Watermarks<'a> {
    /// Each input's watermark.
    pub fn inputs(&self) -> &'a [i64] {
        self.inputs
    }

    /// The smallest of the inputs' watermarks.
    pub fn min(&self) -> i64 {
        self.inputs.iter().copied().min().unwrap_or(NO_WATERMARK)
    }

    /// The smallest watermark of the inputs that are not idle, as Flink's two-input operators
    /// combine them (an idle input holds nothing back); of all of them when all are idle.
    pub fn active_min(&self) -> i64 {
        self.inputs
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.idle.get(*i).copied().unwrap_or(false))
            .map(|(_, w)| *w)
            .min()
            .unwrap_or_else(|| self.min())
    }

    /// The last watermark forwarded downstream.
    pub fn output(&self) -> i64 {
        self.output
    }
}

/// What an operator's callbacks see and produce: the watermarks, the output and the counters.
pub struct Context<'a> {
    watermarks: Watermarks<'a>,
    output: &'a mut Vec<StreamBatch>,
    late: usize,
    null_time: usize,
}

impl<'a> Context<'a> {
    /// A context for unit tests of an operator: inputs at `inputs`, output at `NO_WATERMARK`,
    /// rows emitted into `output`.
    #[cfg(test)]
    pub(crate) fn for_test(inputs: &'a [i64], output: &'a mut Vec<StreamBatch>) -> Self {
        Self::new(
            Watermarks {
                inputs,
                idle: &[],
                output: NO_WATERMARK,
            },
            output,
        )
    }

    /// [`Self::for_test`] with the inputs marked `idle` idle.
    #[cfg(test)]
    pub(crate) fn for_test_idle(
        inputs: &'a [i64],
        idle: &'a [bool],
        output: &'a mut Vec<StreamBatch>,
    ) -> Self {
        Self::new(
            Watermarks {
                inputs,
                idle,
                output: NO_WATERMARK,
            },
            output,
        )
    }

    fn new(watermarks: Watermarks<'a>, output: &'a mut Vec<StreamBatch>) -> Self {
        Self {
            watermarks,
            output,
            late: 0,
            null_time: 0,
        }
    }

    /// The watermarks.
    pub fn watermarks(&self) -> Watermarks<'a> {
        self.watermarks
    }

    /// The smallest of the inputs' watermarks.
    pub fn watermark(&self) -> i64 {
        self.watermarks.min()
    }

    /// Emits rows, inserts all (an empty batch is dropped).
    pub fn emit(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.output.push(StreamBatch::new(batch));
        }
    }

    /// Emits changelog rows, `kinds` saying what each does
    /// ([`RowKind`](crate::changelog::RowKind) numbers; an empty batch is dropped).
    pub fn emit_changes(&mut self, batch: RecordBatch, kinds: Int8Array) {
        if batch.num_rows() > 0 {
            self.output
                .push(StreamBatch::new(batch).with_kinds(Some(kinds)));
        }
    }

    /// Counts `rows` late rows, dropped.
    pub fn late(&mut self, rows: usize) {
        self.late += rows;
    }

    /// Counts `rows` rows dropped for a NULL event time.
    pub fn null_time(&mut self, rows: usize) {
        self.null_time += rows;
    }
}
