//! [`NexmarkGenerator`]: one split's walk over the shared event timeline, producing batches of
//! the requested columns for the events of its table's kind, and [`NexmarkConfig`], the timeline.

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::plan_err;
use datafusion::error::Result;

use super::columns::{
    Col, ColKind, OutputColumn, int_array, int_values, resolve_columns, string_column,
    timestamp_array,
};
use super::model::{NUM_EVENTS_FOR_AUCTIONS, NexmarkTable, TOTAL_PROPORTION, event_kind};
use super::random::{S_EXPIRES, below, rnd};

/// Batches are capped so that a `Utf8` (i32 offsets) column can never overflow
/// (the longest values, auction `extra`, are < 600 bytes).
const MAX_BATCH_ROWS: usize = 1 << 20;

/// Event-time configuration shared by all splits of a Nexmark source.
#[derive(Debug, Clone)]
pub struct NexmarkConfig {
    /// Event time of event number 0, in ms since the epoch.
    pub base_time_ms: i64,
    /// Events per second of event time (all three kinds together), >= 1.
    pub tps: u64,
}

/// Generates the events of one table for one parallel split: event numbers
/// `split, split + num_splits, split + 2*num_splits, ...` below `max_events` (None = unbounded),
/// keeping only the events of `table`'s kind.
#[derive(Debug)]
pub struct NexmarkGenerator {
    config: NexmarkConfig,
    table: NexmarkTable,
    schema: SchemaRef,
    columns: Vec<OutputColumn>,
    split: u64,
    num_splits: u64,
    /// Exclusive bound on event numbers (`u64::MAX` when unbounded).
    limit: u64,
    /// Next event number to look at (always `≡ split (mod num_splits)` or `>= limit`).
    next: u64,
    /// False when the split's event numbers never hit this table's kind.
    reachable: bool,
    /// Scratch buffer with the event numbers of the batch being built.
    events: Vec<u64>,
}

impl NexmarkGenerator {
    /// `schema` lists the columns the user declared. Each field name is matched case-insensitively
    /// against the table's columns, accepting snake_case or the reference camelCase
    /// (dateTime, emailAddress, creditCard, itemName, initialBid). Types: id/number columns must be
    /// Int64 (also accept Int32, cast), string columns Utf8 (also accept LargeUtf8/Utf8View; produce that type),
    /// date_time/expires Timestamp of any unit and timezone (produce exactly the declared type, converting ms).
    /// An unknown column name or an unsupported type is `plan_err!` naming the column, the table kind
    /// and listing the valid column names.
    pub fn try_new(
        config: NexmarkConfig,
        table: NexmarkTable,
        schema: SchemaRef,
        split: u64,
        num_splits: u64,
        max_events: Option<u64>,
    ) -> Result<Self> {
        if config.tps == 0 {
            return plan_err!("nexmark: tps (events per second) must be at least 1");
        }
        if num_splits == 0 || split >= num_splits {
            return plan_err!("nexmark: split {split} is out of range for {num_splits} splits");
        }
        let columns = resolve_columns(table, &schema)?;
        // Split `s` of `k` visits exactly the residues r (mod 50) with r ≡ s (mod gcd(k, 50)).
        let g = gcd(num_splits, TOTAL_PROPORTION);
        let reachable = (0..TOTAL_PROPORTION).any(|r| r % g == split % g && event_kind(r) == table);
        Ok(Self {
            config,
            table,
            schema,
            columns,
            split,
            num_splits,
            limit: max_events.unwrap_or(u64::MAX),
            next: split,
            reachable,
            events: Vec::new(),
        })
    }

    /// Next batch of at most `max_rows` rows (>= 1), or None once all events of this split are done.
    /// Every returned batch has >= 1 row.
    pub fn next_batch(&mut self, max_rows: usize) -> Result<Option<RecordBatch>> {
        if !self.reachable {
            return Ok(None);
        }
        let target = max_rows.clamp(1, MAX_BATCH_ROWS);
        let mut events = std::mem::take(&mut self.events);
        events.clear();
        events.reserve(target);
        let residues = self.table.residues();
        let mut n = self.next;
        while n < self.limit && events.len() < target {
            let r = n % TOTAL_PROPORTION;
            if residues.contains(&r) {
                events.push(n);
                n = n.saturating_add(self.num_splits);
            } else if self.num_splits == 1 {
                // Jump straight to the next event of this kind (persons are 1 in 50).
                let block = n - r;
                n = if r < residues.start {
                    block.saturating_add(residues.start)
                } else {
                    block.saturating_add(TOTAL_PROPORTION + residues.start)
                };
            } else {
                n = n.saturating_add(self.num_splits);
            }
        }
        self.next = n;
        if events.is_empty() {
            self.events = events;
            return Ok(None);
        }
        let arrays = self
            .columns
            .iter()
            .map(|c| self.build_column(c, &events))
            .collect::<Result<Vec<_>>>()?;
        // An explicit row count also supports an empty projection (e.g. `count(*)`).
        let options = RecordBatchOptions::new().with_row_count(Some(events.len()));
        let batch = RecordBatch::try_new_with_options(Arc::clone(&self.schema), arrays, &options)?;
        self.events = events;
        Ok(Some(batch))
    }

    /// Next event number this split will look at (its position, for checkpoints).
    pub fn position(&self) -> u64 {
        self.next
    }

    /// Resume at a position previously returned by `position()`.
    ///
    /// A position that is not one of this split's event numbers is rounded up to the next one.
    pub fn seek(&mut self, position: u64) {
        self.next = if position <= self.split {
            self.split
        } else {
            let rem = (position - self.split) % self.num_splits;
            if rem == 0 {
                position
            } else {
                position.saturating_add(self.num_splits - rem)
            }
        };
    }

    /// Timestamp (ms) of the event number.
    pub fn event_time_ms(&self, event_number: u64) -> i64 {
        let offset = i128::from(event_number) * 1000 / i128::from(self.config.tps);
        clamp_i64(i128::from(self.config.base_time_ms) + offset)
    }

    fn build_column(&self, out: &OutputColumn, events: &[u64]) -> Result<ArrayRef> {
        match out.col.kind() {
            ColKind::Int => int_array(int_values(out.col, events)?, out),
            ColKind::Time => {
                let ms = if out.col == Col::Expires {
                    self.expires_ms(events)
                } else {
                    self.timestamps_ms(events)
                };
                timestamp_array(ms, out)
            }
            ColKind::Str => {
                let array = string_column(out.col, events)?;
                if out.data_type == DataType::Utf8 {
                    Ok(array)
                } else {
                    Ok(cast(&array, &out.data_type)?)
                }
            }
        }
    }

    /// `event_time_ms` of strictly increasing event numbers, computed incrementally: with
    /// `n * 1000 = q * tps + r`, stepping `n` by `d` adds `d * 1000 / tps` to `q` and the remainder
    /// to `r` (carrying into `q`), which avoids a 128-bit division per row. Steps repeat (the split
    /// stride, or block gaps), so their quotient is cached.
    fn timestamps_ms(&self, events: &[u64]) -> Vec<i64> {
        let tps = u128::from(self.config.tps);
        let base = i128::from(self.config.base_time_ms);
        let mut out = Vec::with_capacity(events.len());
        let (mut q, mut r) = (0u128, 0u128);
        let (mut step_n, mut step_q, mut step_r) = (0u64, 0u128, 0u128);
        let mut prev: Option<u64> = None;
        for &n in events {
            match prev {
                Some(p) if n > p => {
                    let d = n - p;
                    if d != step_n {
                        step_n = d;
                        step_q = u128::from(d) * 1000 / tps;
                        step_r = u128::from(d) * 1000 % tps;
                    }
                    q += step_q;
                    r += step_r;
                    if r >= tps {
                        r -= tps;
                        q += 1;
                    }
                }
                _ => {
                    q = u128::from(n) * 1000 / tps;
                    r = u128::from(n) * 1000 % tps;
                }
            }
            prev = Some(n);
            // q < 2^74, so the cast is lossless.
            out.push(clamp_i64(base + q as i128));
        }
        out
    }

    /// `nextAuctionLengthMs`: `1 + uniform(max(2 * horizon, 1))` after the auction's own time, where
    /// `horizon` is how far in event time the auction 100 auctions later lies.
    fn expires_ms(&self, events: &[u64]) -> Vec<i64> {
        events
            .iter()
            .map(|&n| {
                let ts = self.event_time_ms(n);
                let future = self.event_time_ms(n.saturating_add(NUM_EVENTS_FOR_AUCTIONS));
                let bound = future.saturating_sub(ts).saturating_mul(2).max(1) as u64;
                // below(..) < bound <= i64::MAX, so neither the cast nor the `+ 1` overflows.
                ts.saturating_add(1 + below(rnd(n, S_EXPIRES), bound) as i64)
            })
            .collect()
    }
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn clamp_i64(v: i128) -> i64 {
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}
