//! One partition of an OVER aggregation over a changelog (see the module docs of
//! `over_aggregate`), run by the operator [`Driver`](crate::physical::operator::Driver).
//!
//! Each partition key's rows are a sorted map from their place, (the `ORDER BY` values in
//! Arrow's row format, whose bytes compare in the `ORDER BY`'s order, followed by the row's
//! own bytes; and a copy number), to the values last emitted for the row. Rows that tie in the
//! `ORDER BY` are thus ordered by their contents, whatever order they arrived in, and the
//! result does not depend on arrival order; only equal rows count in arrival order, and they
//! are interchangeable.
//!
//! A row added or taken back changes the frames that reach its place: with frames reaching
//! `back` rows back and `ahead` rows ahead, the `ahead` rows before it and the `back` rows
//! after it. A batch's changes are applied one by one, gathering every row they reach (a row
//! whose frame differs between before and after the batch was reached by one of them), then
//! the reached rows still held are evaluated in one batch: each run of them with the `back`
//! rows before and `ahead` rows after, through DataFusion's window expressions. Each row's new
//! values are compared with those emitted: `-U` and `+U` where they differ, `+I` for a new
//! row, `-D` with the old values for a row taken back.
//!
//! A snapshot batch holds every input column, then every aggregate's value (nullable), then
//! `__copy`. With `state.backend` = `rocksdb` the partitions in memory are a cache of the keys
//! recent batches touched over RocksDB, which holds each partition key's rows as one value
//! ([`Partition::encode`]); a checkpoint is the database's, and its metadata records the next
//! copy number.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Int8Array, UInt32Array, UInt64Array};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{HashMap, Result, exec_err, plan_err};

use super::rocks::{KEYS, RocksState};
use super::{ChangelogFrames, OverAggregation};
use crate::changelog::{RowKind, kind_at};
use crate::physical::message::{END_OF_TIME, NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{
    ArrivalsMeta, OperatorCheckpoint, Restored, RestoredDatabases,
};
use crate::physical::operator::{Context, Operator, RestoredWatermarks, StateSize, Watermarks};
use crate::state::keyed_db::{ValueReader, put_bytes};
use crate::state::rocks::RowCodec;
use crate::state::ttl::{TimeToLive, now_ms};

/// Rows per output batch and per snapshot batch.
const BATCH_ROWS: usize = 8192;

/// The name of the snapshot's copy-number column.
const COPY: &str = "__copy";

/// Bytes a held row costs besides its place and values.
const ROW_OVERHEAD: usize = 64;

/// A row's place: its `ORDER BY` bytes followed by its own bytes, and a copy number that tells
/// equal rows apart.
type Place = (Box<[u8]>, u64);

/// A row held.
#[derive(Debug)]
struct Held {
    /// Where the row's own bytes start in its place.
    row_at: u32,
    /// The aggregates' values last emitted for it (in the values' row format); `None` until
    /// its first batch is evaluated.
    values: Option<Box<[u8]>>,
}

/// One partition key's rows, and when rows last came for it.
#[derive(Debug, Default)]
struct Partition {
    rows: BTreeMap<Place, Held>,
    /// Processing time (ms) of its last change: `table.exec.state.ttl` counts from here.
    written: i64,
}

impl Partition {
    /// A partition key's rows as RocksDB stores them: when rows last came, then per row its
    /// place (bytes and copy number), where its own bytes start, and its values (empty before
    /// its first evaluation, which a write-back never meets).
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.rows.len() * 64);
        out.extend_from_slice(&self.written.to_le_bytes());
        for ((bytes, copy), held) in &self.rows {
            put_bytes(&mut out, bytes);
            out.extend_from_slice(&copy.to_le_bytes());
            out.extend_from_slice(&u64::from(held.row_at).to_le_bytes());
            put_bytes(&mut out, held.values.as_deref().unwrap_or_default());
        }
        out
    }

    /// A partition key's rows as [`Self::encode`] stored them.
    fn decode(value: &[u8]) -> Result<Self> {
        let mut r = ValueReader::new(value, "an OVER aggregation");
        let mut partition = Partition {
            rows: BTreeMap::new(),
            written: r.i64()?,
        };
        while !r.is_empty() {
            let place: Place = (r.bytes()?.into(), r.u64()?);
            let Ok(row_at) = u32::try_from(r.u64()?) else {
                return exec_err!("an OVER aggregation's RocksDB entry is damaged");
            };
            let values = Some(r.bytes()?.into());
            partition.rows.insert(place, Held { row_at, values });
        }
        Ok(partition)
    }
}

/// The row bytes of a place.
fn row_of<'a>(place: &'a Place, held: &Held) -> &'a [u8] {
    place.0.get(held.row_at as usize..).unwrap_or_default()
}

/// The changes of one batch being built: rows, their values, kinds.
#[derive(Default)]
struct Changes {
    rows: Vec<Box<[u8]>>,
    values: Vec<Box<[u8]>>,
    kinds: Vec<i8>,
}

impl Changes {
    fn push(&mut self, kind: RowKind, row: &[u8], values: &[u8]) {
        self.rows.push(row.into());
        self.values.push(values.into());
        self.kinds.push(kind as i8);
    }
}

/// One partition of an OVER aggregation over a changelog.
pub(super) struct ChangelogOverStream {
    def: OverAggregation,
    frames: ChangelogFrames,
    /// The `ORDER BY` values' row format: bytes that compare in the `ORDER BY`'s order.
    order: RowConverter,
    /// The partition keys' row format (without keys, every row has the same, empty key).
    keys: RowCodec,
    /// The input rows' row format.
    rows: RowCodec,
    /// The aggregates' values' row format.
    values: RowCodec,
    /// The input's schema with every column nullable (rows read back from the state).
    nullable: SchemaRef,
    output: SchemaRef,
    partitions: HashMap<Vec<u8>, Partition>,
    /// Rows arrived so far (the next row's copy number).
    arrived: u64,
    size: StateSize,
    /// Retractions of rows not held (ignored, as Flink does), and those logged.
    unknown: u64,
    warned: u64,
    /// `table.exec.state.ttl`: keys no rows came for this long are dropped.
    ttl: Option<TimeToLive>,
    /// With `state.backend` = `rocksdb`: the database `partitions` caches.
    pub(super) rocks: Option<RocksState>,
}

impl ChangelogOverStream {
    pub(super) fn try_new(
        def: OverAggregation,
        frames: ChangelogFrames,
        keys: RowCodec,
        rows: RowCodec,
        input: &Schema,
        output: SchemaRef,
    ) -> Result<Self> {
        let fields = frames
            .order_by
            .iter()
            .map(|s| {
                Ok(SortField::new_with_options(
                    s.expr.data_type(input)?,
                    s.options,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        if fields.is_empty() || !RowConverter::supports_fields(&fields) {
            return plan_err!(
                "an OVER aggregate over a changelog needs an ORDER BY of columns that have an \
                 order"
            );
        }
        let value_types = output
            .fields()
            .iter()
            .skip(input.fields().len())
            .map(|f| f.data_type().clone())
            .collect();
        let ttl = def.ttl.map(TimeToLive::new);
        Ok(Self {
            def,
            frames,
            order: RowConverter::new(fields)?,
            keys,
            rows,
            values: RowCodec::try_new(value_types, "the values of OVER aggregates")?,
            nullable: crate::state::rocks::nullable(input),
            output,
            partitions: HashMap::new(),
            arrived: 0,
            size: StateSize::default(),
            unknown: 0,
            warned: 0,
            ttl,
            rocks: None,
        })
    }

    /// With RocksDB: brings the stored rows of `keys` the cache lacks into it (none for a key
    /// `table.exec.state.ttl` expired by `now`, which the next write-back deletes).
    fn load<'a>(&mut self, keys: impl IntoIterator<Item = &'a [u8]>, now: i64) -> Result<()> {
        let Some(rocks) = self.rocks.as_mut() else {
            return Ok(());
        };
        let oldest = self.ttl.as_ref().map(|t| t.oldest(now));
        let restored = rocks.store.written(i64::MIN);
        for (key, value) in rocks.store.load(KEYS, keys)? {
            let mut partition = Partition::decode(&value)?;
            partition.written = partition.written.max(restored);
            if oldest.is_some_and(|oldest| partition.written < oldest) {
                continue;
            }
            for (place, held) in &partition.rows {
                self.size.rows += 1;
                self.size.bytes += held_bytes(place, held);
            }
            self.size.bytes += key.len() + 64;
            self.partitions.insert(key.to_vec(), partition);
        }
        Ok(())
    }

    /// With RocksDB: writes every cached key's rows back (deleting keys without any) and
    /// empties the cache, if it holds more rows than its capacity or `always`.
    fn write_back(&mut self, always: bool) -> Result<()> {
        let Some(rocks) = self.rocks.as_mut() else {
            return Ok(());
        };
        if !always && !rocks.store.full(self.size.rows, rocks.capacity) {
            return Ok(());
        }
        let partitions = &self.partitions;
        rocks.store.write_back(|_, key| {
            partitions
                .get(key)
                .filter(|p| !p.rows.is_empty())
                .map(Partition::encode)
        })?;
        self.partitions.clear();
        self.size = StateSize::default();
        Ok(())
    }

    /// The partition keys of `batch`'s rows.
    fn keys_of(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        self.def
            .partition_by
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
            .collect()
    }

    /// The `ORDER BY` values of `batch`'s rows.
    fn order_of(&self, batch: &RecordBatch) -> Result<Rows> {
        let columns = self
            .frames
            .order_by
            .iter()
            .map(|s| s.expr.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.order.convert_columns(&columns)?)
    }

    /// Drops the keys `table.exec.state.ttl` expired by `now`, if a sweep is due.
    fn expire(&mut self, now: i64) {
        let Some(oldest) = self.ttl.as_mut().and_then(|t| t.sweep(now)) else {
            return;
        };
        let size = &mut self.size;
        let mut expired = 0;
        self.partitions.retain(|key, partition| {
            if partition.written >= oldest {
                return true;
            }
            expired += 1;
            for (place, held) in &partition.rows {
                size.rows = size.rows.saturating_sub(1);
                size.bytes = size.bytes.saturating_sub(held_bytes(place, held));
            }
            size.bytes = size.bytes.saturating_sub(key.len() + 64);
            false
        });
        if expired > 0 {
            log::debug!("OVER aggregate: {expired} key(s) expired (table.exec.state.ttl)");
        }
    }

    /// Applies one input batch and emits what it changed.
    fn process(&mut self, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        let now = now_ms();
        self.expire(now);
        let input = &batch.batch;
        let n = input.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = self.keys.convert(&self.keys_of(input)?)?;
        let order = self.order_of(input)?;
        let Some(encoded) = self.rows.convert(input.columns())? else {
            return exec_err!("an OVER aggregation over an input without columns");
        };
        self.load(
            (0..n).map(|i| keys.as_ref().map_or(&[][..], |k| k.row(i).data())),
            now,
        )?;
        let (back, ahead) = (self.frames.back, self.frames.ahead);
        // By key, so that changes come out in the same order however keys hash.
        let mut reached: BTreeMap<Vec<u8>, BTreeSet<Place>> = BTreeMap::new();
        let mut changes = Changes::default();
        for i in 0..n {
            let kind = kind_at(batch.kinds.as_deref(), i)?;
            let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
            let (order, row) = (order.row(i), encoded.row(i));
            let (order, row) = (order.as_ref(), row.as_ref());
            let mut bytes = Vec::with_capacity(order.len() + row.len());
            bytes.extend_from_slice(order);
            bytes.extend_from_slice(row);
            let bytes: Box<[u8]> = bytes.into();
            if kind.adds() {
                let Ok(row_at) = u32::try_from(order.len()) else {
                    return exec_err!("an OVER aggregate's ORDER BY values of over 4 GiB");
                };
                let place = (bytes, self.arrived);
                self.arrived += 1;
                let partition = self.partitions.entry_ref(key).or_insert_with(|| {
                    self.size.bytes += key.len() + 64;
                    Partition::default()
                });
                partition.written = now;
                let held = Held {
                    row_at,
                    values: None,
                };
                self.size.rows += 1;
                self.size.bytes += held_bytes(&place, &held);
                let reach = reached.entry(key.to_vec()).or_default();
                neighbours(&partition.rows, &place, ahead, back, reach);
                reach.insert(place.clone());
                partition.rows.insert(place, held);
            } else {
                // The last copy of an equal row: the fewest copy numbers change.
                let partition = self.partitions.get_mut(key);
                let found = partition.and_then(|p| {
                    let from = (bytes.clone(), 0);
                    let to = (bytes, u64::MAX);
                    let place = p
                        .rows
                        .range(from..=to)
                        .next_back()
                        .map(|(p, _)| p.clone())?;
                    Some((p, place))
                });
                let Some((partition, place)) = found else {
                    self.unknown += 1;
                    continue;
                };
                partition.written = now;
                let reach = reached.entry(key.to_vec()).or_default();
                neighbours(&partition.rows, &place, ahead, back, reach);
                reach.remove(&place);
                if let Some((place, held)) = partition.rows.remove_entry(&place) {
                    self.size.rows = self.size.rows.saturating_sub(1);
                    self.size.bytes = self.size.bytes.saturating_sub(held_bytes(&place, &held));
                    if let Some(values) = &held.values {
                        changes.push(RowKind::Delete, row_of(&place, &held), values);
                    }
                }
            }
        }
        self.log_unknown();
        // Only the keys changed can have been emptied.
        let changed: Vec<Vec<u8>> = reached.keys().cloned().collect();
        self.evaluate(reached, &mut changes)?;
        for key in changed {
            if self.partitions.get(&key).is_some_and(|p| p.rows.is_empty()) {
                self.partitions.remove(&key);
                self.size.bytes = self.size.bytes.saturating_sub(key.len() + 64);
            }
        }
        self.emit(changes, ctx)?;
        self.write_back(false)
    }

    fn log_unknown(&mut self) {
        if self.unknown > self.warned {
            // With a time to live, retractions of expired rows are expected.
            let level = if self.ttl.is_some() {
                log::Level::Debug
            } else {
                log::Level::Warn
            };
            log::log!(
                level,
                "OVER aggregate: {} retraction(s) of rows its state does not hold were ignored",
                self.unknown - self.warned
            );
            self.warned = self.unknown;
        }
    }

    /// Evaluates the rows `reached` (per key) still held, and adds the changes of their values
    /// to `changes`.
    fn evaluate(
        &mut self,
        reached: BTreeMap<Vec<u8>, BTreeSet<Place>>,
        changes: &mut Changes,
    ) -> Result<()> {
        let (back, ahead) = (self.frames.back, self.frames.ahead);
        // Every run of reached rows with its context, one after the other: the rows' bytes,
        // each run's (start, length), and where each reached row is.
        let mut all: Vec<&[u8]> = Vec::new();
        let mut runs: Vec<(usize, usize)> = Vec::new();
        let mut at: Vec<u32> = Vec::new();
        let mut evaluated: Vec<(&[u8], &Place)> = Vec::new();
        for (key, set) in &reached {
            let Some(partition) = self.partitions.get(key.as_slice()) else {
                continue;
            };
            let rows = &partition.rows;
            let mut places = set.iter().filter(|p| rows.contains_key(*p)).peekable();
            while let Some(first) = places.next() {
                // A run: reached rows whose contexts touch or overlap (at most `back + ahead`
                // rows between two of them), from `back` rows before the first to `ahead`
                // rows after the last.
                let start = rows
                    .range(..first)
                    .rev()
                    .take(back)
                    .last()
                    .map_or(first, |(p, _)| p);
                let mut last = first;
                let mut end = nth_after(rows, last, ahead);
                let gap = back.saturating_add(ahead).saturating_add(1);
                while let Some(next) = places.peek() {
                    if *next > nth_after(rows, last, gap) {
                        break;
                    }
                    last = places.next().unwrap_or(last);
                    end = end.max(nth_after(rows, last, ahead));
                }
                let run_start = all.len();
                let mut reached_in_run = set
                    .range::<Place, _>((Bound::Included(first), Bound::Included(last)))
                    .peekable();
                for (place, held) in rows.range(start..=end) {
                    while reached_in_run.next_if(|p| *p < place).is_some() {}
                    if reached_in_run.next_if(|p| *p == place).is_some() {
                        let Ok(index) = u32::try_from(all.len()) else {
                            return exec_err!("an OVER aggregation batch of over 2^32 rows");
                        };
                        at.push(index);
                        evaluated.push((key.as_slice(), place));
                    }
                    all.push(row_of(place, held));
                }
                runs.push((run_start, all.len() - run_start));
            }
        }
        if at.is_empty() {
            return Ok(());
        }
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.nullable),
            self.rows.decode(&all)?,
            &RecordBatchOptions::new().with_row_count(Some(all.len())),
        )?;
        let indices = UInt32Array::from(at);
        let mut columns = Vec::with_capacity(self.def.exprs.len());
        for expr in &self.def.exprs {
            let mut parts = Vec::with_capacity(runs.len());
            for &(start, len) in &runs {
                parts.push(expr.evaluate(&batch.slice(start, len))?);
            }
            let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
            columns.push(take(&concat(&parts)?, &indices, None)?);
        }
        let values = self.values.encode(&columns, indices.len())?;
        // The places to update, owned (the rows' bytes borrowed the state).
        let evaluated: Vec<(Vec<u8>, Place)> = evaluated
            .into_iter()
            .map(|(key, place)| (key.to_vec(), place.clone()))
            .collect();
        drop(all);
        for ((key, place), value) in evaluated.into_iter().zip(values) {
            let Some(held) = self
                .partitions
                .get_mut(key.as_slice())
                .and_then(|p| p.rows.get_mut(&place))
            else {
                continue;
            };
            let row = row_of(&place, held);
            match &held.values {
                Some(old) if old.as_ref() == value.as_slice() => continue,
                Some(old) => {
                    changes.push(RowKind::UpdateBefore, row, old);
                    changes.push(RowKind::UpdateAfter, row, &value);
                    self.size.bytes = self.size.bytes.saturating_sub(old.len());
                }
                None => changes.push(RowKind::Insert, row, &value),
            }
            self.size.bytes += value.len();
            held.values = Some(value.into());
        }
        Ok(())
    }

    /// Emits `changes` in batches of at most [`BATCH_ROWS`] rows.
    fn emit(&self, changes: Changes, ctx: &mut Context<'_>) -> Result<()> {
        let total = changes.kinds.len();
        let mut from = 0;
        while from < total {
            let to = total.min(from + BATCH_ROWS);
            let mut columns = self.rows.decode(&changes.rows[from..to])?;
            columns.extend(self.values.decode(&changes.values[from..to])?);
            let batch = RecordBatch::try_new_with_options(
                Arc::clone(&self.output),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(to - from)),
            )?;
            ctx.emit_changes(batch, Int8Array::from(changes.kinds[from..to].to_vec()));
            from = to;
        }
        Ok(())
    }

    /// The schema of a snapshot batch: the output's columns, nullable, and the copy number.
    fn snapshot_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .output
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        fields.push(Field::new(COPY, DataType::UInt64, false));
        Arc::new(Schema::new(fields))
    }
}

/// The bytes a held row costs.
fn held_bytes(place: &Place, held: &Held) -> usize {
    place.0.len() + held.values.as_ref().map_or(0, |v| v.len()) + ROW_OVERHEAD
}

/// Adds to `into` the `before` rows before `place` and the `after` rows after it: the rows
/// whose frames reach it.
fn neighbours(
    rows: &BTreeMap<Place, Held>,
    place: &Place,
    before: usize,
    after: usize,
    into: &mut BTreeSet<Place>,
) {
    for (p, _) in rows.range(..place).rev().take(before) {
        into.insert(p.clone());
    }
    let later = (Bound::Excluded(place), Bound::Unbounded);
    for (p, _) in rows.range::<Place, _>(later).take(after) {
        into.insert(p.clone());
    }
}

/// The place `n` rows after `place` (or the last one).
fn nth_after<'a>(rows: &'a BTreeMap<Place, Held>, place: &'a Place, n: usize) -> &'a Place {
    let later = (Bound::Excluded(place), Bound::Unbounded);
    rows.range::<Place, _>(later)
        .take(n)
        .last()
        .map_or(place, |(p, _)| p)
}

impl Operator for ChangelogOverStream {
    type Meta = ArrivalsMeta;

    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let (inputs, arrived) = ArrivalsMeta::restored(restored.metas("OVER aggregation")?, 1);
        self.arrived = arrived;
        match (
            restored.databases(self.rocks.is_some())?,
            self.rocks.as_mut(),
        ) {
            (RestoredDatabases::Own(saved, dir), Some(rocks)) => {
                rocks.store.adopt(dir)?;
                checkpoint.adopted(saved);
            }
            (RestoredDatabases::Others(dirs), Some(rocks)) => {
                rocks.restore_rekeyed(dirs, &self.keys)?;
            }
            _ => {}
        }
        // The input's columns come first, so the partition keys read from a snapshot batch.
        let batches = checkpoint.batches_by(restored, |batch| self.keys_of(batch))?;
        let columns = self.nullable.fields().len();
        let values = self.output.fields().len() - columns;
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            if batch.num_columns() != columns + values + 1 {
                return exec_err!(
                    "an OVER aggregation snapshot has {} columns, the query's output {} and \
                     the copy number",
                    batch.num_columns(),
                    columns + values
                );
            }
            let rows = RecordBatch::try_new(
                Arc::clone(&self.nullable),
                batch.columns()[..columns].to_vec(),
            )?;
            let Some(copies) = batch
                .column(columns + values)
                .as_primitive_opt::<UInt64Type>()
            else {
                return exec_err!("an OVER aggregation snapshot's {COPY} column is not UInt64");
            };
            let n = rows.num_rows();
            let keys = self.keys.convert(&self.keys_of(&rows)?)?;
            let order = self.order_of(&rows)?;
            let Some(encoded) = self.rows.convert(rows.columns())? else {
                return exec_err!("an OVER aggregation input without columns");
            };
            let value_bytes = self
                .values
                .encode(&batch.columns()[columns..columns + values], n)?;
            for (i, value) in value_bytes.into_iter().enumerate() {
                let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
                let (order, row) = (order.row(i), encoded.row(i));
                let Ok(row_at) = u32::try_from(order.as_ref().len()) else {
                    return exec_err!("an OVER aggregate's ORDER BY values of over 4 GiB");
                };
                let mut bytes = order.as_ref().to_vec();
                bytes.extend_from_slice(row.as_ref());
                let copy = copies.value(i);
                self.arrived = self.arrived.max(copy.saturating_add(1));
                let place = (bytes.into_boxed_slice(), copy);
                let held = Held {
                    row_at,
                    values: Some(value.into()),
                };
                self.size.rows += 1;
                self.size.bytes += held_bytes(&place, &held);
                let partition = self.partitions.entry_ref(key).or_insert_with(|| {
                    self.size.bytes += key.len() + 64;
                    Partition::default()
                });
                // A restored key lives a whole time to live again.
                partition.written = now_ms();
                partition.rows.insert(place, held);
                if let Some(rocks) = self.rocks.as_mut() {
                    rocks.store.touch(KEYS, key);
                }
            }
        }
        Ok(RestoredWatermarks {
            inputs,
            output: NO_WATERMARK,
        })
    }

    fn on_data(&mut self, _input: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        self.process(batch, ctx)
    }

    /// A row of any age can still change (or be taken back), so the output carries no event
    /// time: its watermark stays back until the input ended.
    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        let ended = ctx.watermarks().inputs().iter().all(|&w| w == END_OF_TIME);
        Ok(if ended { END_OF_TIME } else { NO_WATERMARK })
    }

    /// Never: a downstream watermark must not move on past changes it may still emit.
    fn may_idle(&self) -> bool {
        false
    }

    /// With a time to live, sweeps come by the clock, whether rows arrive or not.
    fn next_timer(&self) -> Option<i64> {
        let ttl = self.ttl.as_ref()?;
        (!self.partitions.is_empty()).then(|| ttl.next_sweep())
    }

    fn on_timer(&mut self, now: i64, ctx: &mut Context<'_>) -> Result<i64> {
        self.expire(now);
        Ok(ctx.watermarks().output())
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        let meta = ArrivalsMeta::of(watermarks, self.arrived);
        // With RocksDB every cached row goes into the database, and so into the checkpoint.
        if self.rocks.is_some() {
            self.write_back(true)?;
            if let Some(rocks) = &self.rocks {
                return checkpoint.snapshot_db(epoch, &meta, rocks.store.db());
            }
        }
        let schema = self.snapshot_schema();
        let held: Vec<(&[u8], &[u8], u64)> = self
            .partitions
            .values()
            .flat_map(|p| p.rows.iter())
            .filter_map(|(place, held)| {
                let values = held.values.as_deref()?;
                Some((row_of(place, held), values, place.1))
            })
            .collect();
        let mut batches = Vec::with_capacity(held.len().div_ceil(BATCH_ROWS));
        for part in held.chunks(BATCH_ROWS) {
            let rows: Vec<&[u8]> = part.iter().map(|(r, _, _)| *r).collect();
            let values: Vec<&[u8]> = part.iter().map(|(_, v, _)| *v).collect();
            let mut columns = self.rows.decode(&rows)?;
            columns.extend(self.values.decode(&values)?);
            columns.push(Arc::new(UInt64Array::from_iter_values(
                part.iter().map(|(_, _, c)| *c),
            )));
            batches.push(RecordBatch::try_new_with_options(
                Arc::clone(&schema),
                columns,
                &RecordBatchOptions::new().with_row_count(Some(part.len())),
            )?);
        }
        checkpoint.snapshot(epoch, &meta, batches)
    }

    fn end(&mut self, watermarks: &Watermarks<'_>) -> ArrivalsMeta {
        ArrivalsMeta::of(watermarks, self.arrived)
    }

    fn state_size(&self) -> StateSize {
        self.size
    }
}

#[cfg(test)]
mod tests;
