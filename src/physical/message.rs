//! The in-band protocol spoken between streaming operators.
//!
//! Inside a streaming pipeline every partition is one ordered stream of [`StreamMessage`]s:
//! data batches, watermarks, idleness notices and checkpoint barriers. Because control travels
//! in the same stream as the data it refers to, an operator always knows exactly which rows came
//! before a watermark or a barrier: alignment is exact and never depends on timing.
//!
//! Watermarks are milliseconds since the Unix epoch. [`NO_WATERMARK`] means "nothing known yet"
//! and [`END_OF_TIME`] is the final watermark of a bounded input, which fires every open window.
//!
//! A [`StreamBatch`] may carry per-row watermarks: the watermark in force just *before* each row
//! arrived, had the watermark advanced after every record. Window operators use them to decide
//! lateness per record, which makes results independent of how the input was cut into batches.

use std::pin::Pin;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, Int8Array, Int64Array};
use datafusion::arrow::compute::filter;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::Int8Type;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use futures::Stream;

/// Watermark value meaning "no watermark yet": every event time is still acceptable.
pub const NO_WATERMARK: i64 = i64::MIN;

/// Watermark value of a finished bounded input: every window fires.
pub const END_OF_TIME: i64 = i64::MAX;

/// A checkpoint barrier: everything before it belongs to checkpoint `epoch`, everything after
/// it to the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointBarrier {
    /// Checkpoint number, strictly increasing within a job.
    pub epoch: u64,
}

/// Rows plus, optionally, the watermark in force before each row (see the module docs).
#[derive(Debug, Clone)]
pub struct StreamBatch {
    /// The rows.
    pub batch: RecordBatch,
    /// Per-row watermark (ms), same length as `batch`, never decreasing along the batch.
    /// `None` means the last [`StreamMessage::Watermark`] applies to every row.
    pub row_watermarks: Option<Int64Array>,
    /// Per-row [`RowKind`](crate::changelog::RowKind) numbers of a changelog, same length as
    /// `batch`; `None` means every row is an insert (an append-only stream carries none).
    /// Boxed: append-only batches, the common case, stay small.
    pub kinds: Option<Box<Int8Array>>,
}

impl StreamBatch {
    /// A batch without per-row watermarks.
    pub fn new(batch: RecordBatch) -> Self {
        Self {
            batch,
            row_watermarks: None,
            kinds: None,
        }
    }

    /// A batch with per-row watermarks.
    pub fn with_row_watermarks(batch: RecordBatch, row_watermarks: Option<Int64Array>) -> Self {
        Self {
            batch,
            row_watermarks,
            kinds: None,
        }
    }

    /// This batch with the row kinds `kinds` (see [`Self::kinds`]).
    pub fn with_kinds(mut self, kinds: Option<Int8Array>) -> Self {
        self.kinds = kinds.map(Box::new);
        self
    }

    /// Number of rows.
    pub fn num_rows(&self) -> usize {
        self.batch.num_rows()
    }

    /// Keeps the rows where `mask` is true, in both the batch and the per-row watermarks.
    pub fn filter(&self, mask: &BooleanArray) -> Result<Self> {
        let batch = filter_record_batch(&self.batch, mask)?;
        let row_watermarks = match &self.row_watermarks {
            Some(wm) => {
                let filtered = filter(wm, mask)?;
                Some(
                    filtered
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .cloned()
                        .ok_or_else(|| {
                            datafusion::error::DataFusionError::Internal(
                                "filtering row watermarks did not give Int64".into(),
                            )
                        })?,
                )
            }
            None => None,
        };
        let kinds = match &self.kinds {
            Some(kinds) => Some(Box::new(
                filter(kinds.as_ref(), mask)?
                    .as_primitive::<Int8Type>()
                    .clone(),
            )),
            None => None,
        };
        Ok(Self {
            batch,
            row_watermarks,
            kinds,
        })
    }

    /// The effective watermark of row `i`, given the operator's current watermark.
    #[inline]
    pub fn row_watermark(&self, i: usize, current: i64) -> i64 {
        match &self.row_watermarks {
            Some(wm) if wm.is_valid(i) => wm.value(i).max(current),
            _ => current,
        }
    }
}

/// One message of a streaming partition.
#[derive(Debug, Clone)]
pub enum StreamMessage {
    /// Rows.
    Data(StreamBatch),
    /// No row with an event time at or below this value (ms) will follow, except late rows.
    Watermark(i64),
    /// The partition has no data for now and must not hold back the watermark of the operators
    /// that combine it with other partitions. Ends with the next data or watermark.
    Idle,
    /// A checkpoint barrier.
    Barrier(CheckpointBarrier),
}

/// An ordered stream of messages: the unit an operator consumes and produces per partition.
pub type MessageStream = Pin<Box<dyn Stream<Item = Result<StreamMessage>> + Send>>;

/// Formats a watermark for people: `-inf`, `+inf` or an ISO timestamp.
pub fn format_watermark(wm: i64) -> String {
    match wm {
        NO_WATERMARK => "-inf".to_string(),
        END_OF_TIME => "+inf".to_string(),
        ms => match chrono::DateTime::from_timestamp_millis(ms) {
            Some(t) => t.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            None => format!("{ms}ms"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int32Array;
    use std::sync::Arc;

    #[test]
    fn filter_keeps_row_watermarks_aligned() {
        let batch = RecordBatch::try_from_iter(vec![(
            "a",
            Arc::new(Int32Array::from(vec![1, 2, 3, 4])) as _,
        )])
        .unwrap();
        let sb =
            StreamBatch::with_row_watermarks(batch, Some(Int64Array::from(vec![10, 20, 30, 40])));
        let out = sb
            .filter(&BooleanArray::from(vec![false, true, false, true]))
            .unwrap();
        assert_eq!(out.num_rows(), 2);
        assert_eq!(out.row_watermarks.unwrap().values().to_vec(), vec![20, 40]);
    }

    #[test]
    fn row_watermark_never_below_current() {
        let batch =
            RecordBatch::try_from_iter(vec![("a", Arc::new(Int32Array::from(vec![1, 2])) as _)])
                .unwrap();
        let sb = StreamBatch::with_row_watermarks(batch, Some(Int64Array::from(vec![5, 50])));
        assert_eq!(sb.row_watermark(0, 7), 7);
        assert_eq!(sb.row_watermark(1, 7), 50);
    }

    #[test]
    fn watermark_formatting() {
        assert_eq!(format_watermark(NO_WATERMARK), "-inf");
        assert_eq!(format_watermark(END_OF_TIME), "+inf");
        assert_eq!(format_watermark(1_000), "1970-01-01 00:00:01.000");
    }
}
