//! The reader of one `datagen` partition: generates its rows in batches and paces them at the
//! partition's share of `rows-per-second`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::error::Result;
use serde::{Deserialize, Serialize};

use super::values::FieldGen;
use crate::connectors::{SavedPosition, SourceBatch, SourceReader, same_partition_position};

/// A reader further behind its schedule than this re-bases the schedule.
const MAX_LAG: Duration = Duration::from_secs(1);

/// Reads one partition: global rows `partition, partition + n, ...`.
pub(super) struct DatagenReader {
    /// Generators of the projected columns.
    pub(super) fields: Vec<FieldGen>,
    pub(super) schema: SchemaRef,
    /// Global number of the next row.
    pub(super) next_row: u64,
    /// Number of partitions.
    pub(super) step: u64,
    pub(super) total_rows: Option<u64>,
    pub(super) max_rows: usize,
    /// This partition's rows per second, if limited.
    pub(super) rate: Option<u64>,
    /// Schedule origin: row `i` is due at `start + i / rate`.
    pub(super) start: Option<tokio::time::Instant>,
    /// Rows emitted so far.
    pub(super) emitted: u64,
}

/// The checkpoint position of a [`DatagenReader`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DatagenPosition {
    /// Global number of the next row.
    next_row: u64,
    /// Rows emitted so far (the pacing schedule resumes from there).
    emitted: u64,
}

/// Rows per second of partition `p` of `n` under a total of `rows_per_second` (0 = unlimited):
/// an equal share, the remainder going to the first partitions, at least 1.
pub(super) fn partition_rate(rows_per_second: u64, p: u64, n: u64) -> Option<u64> {
    let n = n.max(1);
    (rows_per_second > 0).then(|| (rows_per_second / n + u64::from(p < rows_per_second % n)).max(1))
}

/// Time of the `index`-th row at `rate` rows per second after the schedule origin.
pub(super) fn offset_of(index: u64, rate: u64) -> Duration {
    let nanos = u128::from(index) * 1_000_000_000 / u128::from(rate.max(1));
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

impl DatagenReader {
    /// Sleeps until the last of the next `rows` rows is due.
    async fn wait_for(&mut self, rows: u64) {
        let Some(rate) = self.rate else {
            return;
        };
        let now = tokio::time::Instant::now();
        // The schedule's origin: row `emitted` (0 at first, more after a restore) is due now.
        let resumed = now
            .checked_sub(offset_of(self.emitted, rate))
            .unwrap_or(now);
        let start = *self.start.get_or_insert(resumed);
        let offset = offset_of(self.emitted + rows - 1, rate);
        let Some(due) = start.checked_add(offset) else {
            return;
        };
        if due > now {
            tokio::time::sleep_until(due).await;
        } else if now.duration_since(due) > MAX_LAG {
            // Far behind (slow consumer): move the schedule rather than burst to catch up.
            if let Some(rebased) = now.checked_sub(offset) {
                self.start = Some(rebased);
            }
        }
    }
}

#[async_trait]
impl SourceReader for DatagenReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        let remaining = match self.total_rows {
            Some(total) if self.next_row >= total => return Ok(None),
            Some(total) => (total - self.next_row - 1) / self.step + 1,
            None => u64::MAX,
        };
        let rows = remaining.min(self.max_rows as u64);
        self.wait_for(rows).await;
        let numbers: Vec<u64> = (0..rows)
            .map(|i| self.next_row.wrapping_add(i.wrapping_mul(self.step)))
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let columns = self
            .fields
            .iter()
            .map(|f| f.generate(&numbers, now))
            .collect::<Result<Vec<_>>>()?;
        let options = RecordBatchOptions::new().with_row_count(Some(numbers.len()));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), columns, &options)?;
        self.next_row = self.next_row.saturating_add(rows.saturating_mul(self.step));
        self.emitted += rows;
        let position = DatagenPosition {
            next_row: self.next_row,
            emitted: self.emitted,
        };
        let position = serde_json::to_value(&position).map_err(|e| {
            datafusion::common::exec_datafusion_err!("the position of a datagen reader: {e}")
        })?;
        Ok(Some(SourceBatch::new(batch).with_position(position)))
    }

    fn restore(
        &mut self,
        partition: usize,
        num_partitions: usize,
        saved: &[SavedPosition],
    ) -> Result<()> {
        let saved = same_partition_position("datagen", saved, partition, num_partitions)?;
        if let Some(position) = saved {
            let restored = DatagenPosition::deserialize(position).map_err(|e| {
                datafusion::common::plan_datafusion_err!(
                    "datagen checkpoint position {position} does not read as this version \
                     writes it ({e})"
                )
            })?;
            self.next_row = restored.next_row;
            self.emitted = restored.emitted;
            // Pace from now on, as if starting fresh at the restored row.
            self.start = None;
        }
        Ok(())
    }

    /// Where it resumes, recorded by a checkpoint taken before its first batch (or after it
    /// ended at once: a finished bounded reader must not start over on the next restore).
    fn restored_position(&self) -> Option<serde_json::Value> {
        serde_json::to_value(DatagenPosition {
            next_row: self.next_row,
            emitted: self.emitted,
        })
        .ok()
    }
}
