//! One partition of a top-N, run by the operator [`Driver`](crate::physical::operator::Driver):
//! each partition key's rows in rank order, the changes of a batch worked out by comparing the
//! ranks before and after it.
//!
//! A partition key's rows are a sorted map from (order-by values in Arrow's row format, whose
//! bytes compare in the `ORDER BY`'s order, and a tie number) to the row. The tie number is the
//! row's arrival number (or its complement where later rows win ties), so equal rows rank in
//! arrival order and every row held has an identity of its own.
//!
//! A snapshot batch holds every input column, nullable, then `__tie`. With `state.backend` =
//! `rocksdb` the partitions in memory are a write-back cache of the keys recent batches
//! touched, and RocksDB holds every key's rows ([`KeyedDb`], one entry per partition key:
//! [`Ranked::encode`]); a checkpoint is the database's, and the metadata records the next
//! arrival number, so that rows arriving after a restore rank after the rows they tie with.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int8Array, UInt64Array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::{HashMap, HashSet, Result, exec_err, plan_err};

use super::TopN;
use super::ranked::Ranked;
use crate::changelog::{RowKind, kind_at};
use crate::physical::message::{END_OF_TIME, NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{
    ArrivalsMeta, OperatorCheckpoint, Restored, RestoredDatabases,
};
use crate::physical::operator::{Context, Operator, RestoredWatermarks, StateSize, Watermarks};
use crate::state::keyed_db::KeyedDb;
use crate::state::rocks::RowCodec;
use crate::state::ttl::{TimeToLive, now_ms};

/// With RocksDB: rows cached in memory before they are written back.
const CACHE_ROWS: usize = 262_144;

/// With `state.backend` = `rocksdb`: the database the partitions cache.
pub(super) struct RocksState {
    store: KeyedDb,
    /// This partition and the number of partitions (to re-key a restored database).
    partition: usize,
    partitions: usize,
    /// [`CACHE_ROWS`] (smaller in tests).
    capacity: usize,
}

/// Rows per snapshot batch and per output batch.
const BATCH_ROWS: usize = 8192;

/// The name of the snapshot's tie column.
const TIE: &str = "__tie";

/// How rows rank: the definition, and the order-by values' row format (bytes that compare in
/// the `ORDER BY`'s order, directions and NULL placement included).
pub(super) struct Ranking {
    def: TopN,
    order: RowConverter,
}

impl Ranking {
    pub(super) fn try_new(def: &TopN, schema: &Schema) -> Result<Self> {
        let fields = def
            .order_by
            .iter()
            .map(|s| {
                Ok(SortField::new_with_options(
                    s.expr.data_type(schema)?,
                    s.options,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        if fields.is_empty() {
            return plan_err!("a top-N needs an ORDER BY");
        }
        if !RowConverter::supports_fields(&fields) {
            return plan_err!(
                "a top-N cannot order by {}: a type of theirs has no order",
                def.order_by
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        Ok(Self {
            def: def.clone(),
            order: RowConverter::new(fields)?,
        })
    }

    /// The order-by values of `batch`'s rows.
    fn order_of(&self, batch: &RecordBatch) -> Result<Rows> {
        let columns = self
            .def
            .order_by
            .iter()
            .map(|s| s.expr.evaluate(batch)?.into_array(batch.num_rows()))
            .collect::<Result<Vec<_>>>()?;
        Ok(self.order.convert_columns(&columns)?)
    }

    /// The partition keys of `batch`'s rows.
    fn keys_of(&self, batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
        self.def
            .partition_by
            .iter()
            .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
            .collect()
    }

    /// The tie number of the row that arrived `seq`-th.
    fn tie(&self, seq: u64) -> u64 {
        if self.def.later_wins_ties {
            u64::MAX - seq
        } else {
            seq
        }
    }
}

/// A rank's row as it was: its tie number and bytes.
type Held = (u64, Box<[u8]>);

/// One partition of a top-N.
pub(super) struct TopNStream {
    ranking: Ranking,
    /// The partition keys' row format (without keys, every row has the same, empty key).
    keys: RowCodec,
    /// The input rows' row format.
    rows: RowCodec,
    /// The input's schema with every column nullable (rows read back from the state).
    nullable: SchemaRef,
    output: SchemaRef,
    /// The input retracts: keep every row, not only the first `rank_end`.
    keep_all: bool,
    partitions: HashMap<Vec<u8>, Ranked>,
    /// Rows arrived so far (the next row's arrival number).
    arrived: u64,
    size: StateSize,
    /// Retractions of rows not held (ignored, as Flink does), and those logged.
    unknown: u64,
    warned: u64,
    /// `table.exec.state.ttl`: keys not written for this long are dropped.
    ttl: Option<TimeToLive>,
    /// A deduplication keeping the last row by event time: the output carries the input's
    /// watermark (see `TopNExec::keeps_event_time`).
    event_time: bool,
    /// With `state.backend` = `rocksdb`: the database `partitions` caches.
    rocks: Option<RocksState>,
}

/// The rows of `key`, created empty (holding at most `bound` rows) if it has none.
fn ranked_mut<'a>(
    partitions: &'a mut HashMap<Vec<u8>, Ranked>,
    size: &mut StateSize,
    key: &[u8],
    bound: Option<usize>,
    now: i64,
) -> &'a mut Ranked {
    partitions.entry_ref(key).or_insert_with(|| {
        size.bytes += key.len() + 64;
        Ranked::new(bound, now)
    })
}

/// The changes of one batch being built.
#[derive(Default)]
struct Changes {
    rows: Vec<Box<[u8]>>,
    ranks: Vec<u64>,
    kinds: Vec<i8>,
}

impl Changes {
    fn push(&mut self, kind: RowKind, row: &[u8], rank: usize) {
        self.rows.push(row.into());
        self.ranks.push(rank as u64 + 1);
        self.kinds.push(kind as i8);
    }
}

impl TopNStream {
    pub(super) fn new(
        ranking: Ranking,
        keys: RowCodec,
        rows: RowCodec,
        input: SchemaRef,
        output: SchemaRef,
        keep_all: bool,
    ) -> Self {
        let ttl = ranking.def.ttl.map(TimeToLive::new);
        let nullable = crate::state::rocks::nullable(&input);
        Self {
            ranking,
            keys,
            rows,
            nullable,
            output,
            keep_all,
            partitions: HashMap::new(),
            arrived: 0,
            size: StateSize::default(),
            unknown: 0,
            warned: 0,
            ttl,
            event_time: false,
            rocks: None,
        }
    }

    /// This top-N with its rows in RocksDB (`store`), as partition `partition` of `partitions`.
    pub(super) fn with_rocksdb(
        mut self,
        store: KeyedDb,
        partition: usize,
        partitions: usize,
    ) -> Self {
        self.rocks = Some(RocksState {
            store,
            partition,
            partitions,
            capacity: CACHE_ROWS,
        });
        self
    }

    /// With RocksDB: brings the stored rows of `keys` the cache lacks into it, dropping keys
    /// `table.exec.state.ttl` expired by `now` (which the next write-back deletes).
    fn load<'a>(&mut self, keys: impl IntoIterator<Item = &'a [u8]>, now: i64) -> Result<()> {
        let bound = (!self.keep_all).then(|| self.rank_end());
        let oldest = self.ttl.as_ref().map(|t| t.oldest(now));
        let Some(rocks) = self.rocks.as_mut() else {
            return Ok(());
        };
        let restored = rocks.store.written(i64::MIN);
        for (key, value) in rocks.store.load(0, keys)? {
            let mut ranked = Ranked::decode(&value, bound)?;
            ranked.written = ranked.written.max(restored);
            if oldest.is_some_and(|oldest| ranked.written < oldest) {
                continue;
            }
            self.size.rows += ranked.len();
            self.size.bytes += ranked.held_bytes() + key.len() + 64;
            self.partitions.insert(key.to_vec(), ranked);
        }
        Ok(())
    }

    /// With RocksDB: writes every cached key back (deleting those without rows) and empties
    /// the cache, if it holds more than its capacity or `always`.
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
                .filter(|ranked| !ranked.is_empty())
                .map(Ranked::encode)
        })?;
        self.partitions.clear();
        self.size = StateSize::default();
        Ok(())
    }

    /// This top-N forwarding its input's watermark if `event_time`.
    pub(super) fn with_event_time(mut self, event_time: bool) -> Self {
        self.event_time = event_time;
        self
    }

    /// Drops the keys `table.exec.state.ttl` expired by `now`, if a sweep is due.
    fn expire(&mut self, now: i64) {
        let Some(oldest) = self.ttl.as_mut().and_then(|t| t.sweep(now)) else {
            return;
        };
        let size = &mut self.size;
        let mut expired = 0;
        self.partitions.retain(|key, ranked| {
            if ranked.written >= oldest {
                return true;
            }
            expired += 1;
            size.rows = size.rows.saturating_sub(ranked.len());
            size.bytes = size
                .bytes
                .saturating_sub(ranked.held_bytes() + key.len() + 64);
            false
        });
        if expired > 0 {
            log::debug!("top-N: {expired} key(s) expired (table.exec.state.ttl)");
        }
    }

    fn rank_end(&self) -> usize {
        usize::try_from(self.ranking.def.rank_end).unwrap_or(usize::MAX)
    }

    /// Applies one input batch and emits what it changed in the ranks emitted.
    fn process(&mut self, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        let now = now_ms();
        self.expire(now);
        let rows = &batch.batch;
        let n = rows.num_rows();
        if n == 0 {
            return Ok(());
        }
        let keys = self.keys.convert(&self.ranking.keys_of(rows)?)?;
        let key = |i: usize| -> &[u8] { keys.as_ref().map_or(&[], |k| k.row(i).data()) };
        let order = self.ranking.order_of(rows)?;
        let Some(encoded) = self.rows.convert(rows.columns())? else {
            return exec_err!("a top-N input without columns");
        };
        self.load((0..n).map(key), now)?;
        let end = self.rank_end();
        // The first `end` rows of each key this batch changed, as they were before it.
        let mut before: Vec<(Box<[u8]>, Vec<Held>)> = Vec::new();
        let mut touched: HashSet<Box<[u8]>> = HashSet::new();
        let mut remember = |key: &[u8], ranked: Option<&Ranked>| {
            if !touched.contains(key) {
                touched.insert(key.into());
                let first = ranked.map_or_else(Vec::new, |r| {
                    r.iter()
                        .take(end)
                        .map(|(tie, row)| (tie, row.into()))
                        .collect()
                });
                before.push((key.into(), first));
            }
        };
        for i in 0..n {
            let kind = kind_at(batch.kinds.as_deref(), i)?;
            let (key, order, row) = (key(i), order.row(i), encoded.row(i));
            let (order, row) = (order.as_ref(), row.as_ref());
            if kind.adds() {
                let tie = self.ranking.tie(self.arrived);
                self.arrived += 1;
                let ranked = self.partitions.get(key);
                // Over rows that only append, a row behind the first `end` never ranks.
                if !self.keep_all
                    && let Some(ranked) = ranked
                    && ranked.len() >= end
                    && ranked.last().is_some_and(|last| last < (order, tie))
                {
                    continue;
                }
                remember(key, ranked);
                let bound = (!self.keep_all).then_some(end);
                let ranked = ranked_mut(&mut self.partitions, &mut self.size, key, bound, now);
                ranked.insert((order.into(), tie), row.into());
                ranked.written = now;
                self.size.rows += 1;
                self.size.bytes += order.len() + row.len() + 48;
                if !self.keep_all
                    && ranked.len() > end
                    && let Some(((o, _), r)) = ranked.pop_last()
                {
                    self.size.rows -= 1;
                    self.size.bytes -= o.len() + r.len() + 48;
                }
            } else {
                let Some(ranked) = self.partitions.get(key) else {
                    self.unknown += 1;
                    continue;
                };
                remember(key, Some(ranked));
                // The last copy: taking it back changes the fewest ranks.
                let removed = self.partitions.get_mut(key).and_then(|ranked| {
                    ranked.written = now;
                    ranked.remove(order, row)
                });
                match removed {
                    Some(((o, _), r)) => {
                        self.size.rows -= 1;
                        self.size.bytes -= o.len() + r.len() + 48;
                    }
                    None => self.unknown += 1,
                }
            }
        }
        if self.unknown > self.warned {
            // With a time to live, retractions of expired rows are expected.
            let level = if self.ttl.is_some() {
                log::Level::Debug
            } else {
                log::Level::Warn
            };
            log::log!(
                level,
                "top-N: {} retraction(s) of rows its state does not hold were ignored",
                self.unknown - self.warned
            );
            self.warned = self.unknown;
        }
        let mut changes = Changes::default();
        for (key, old) in before {
            let new: Vec<(u64, &[u8])> = self
                .partitions
                .get(key.as_ref())
                .map_or_else(Vec::new, |r| r.iter().take(end).collect());
            self.diff(&old, &new, &mut changes);
            if new.is_empty()
                && let Some(ranked) = self.partitions.get(key.as_ref())
                && ranked.is_empty()
            {
                self.partitions.remove(key.as_ref());
                self.size.bytes = self.size.bytes.saturating_sub(key.len() + 64);
            }
            if changes.kinds.len() >= BATCH_ROWS {
                self.emit(&mut changes, ctx)?;
            }
        }
        self.emit(&mut changes, ctx)?;
        self.write_back(false)
    }

    /// The changes from `old` to `new` (a key's first rows before and after a batch) in the
    /// ranks emitted.
    fn diff(&self, old: &[Held], new: &[(u64, &[u8])], changes: &mut Changes) {
        let first = usize::try_from(self.ranking.def.rank_start - 1).unwrap_or(usize::MAX);
        let range = |len: usize| first.min(len)..len;
        // A versioned view's replaced row is an update of its key (`-U`, `+U`, as Flink's
        // deduplication emits), not a deletion: a temporal join reads `-D` as the end of the
        // key's row.
        if self.ranking.def.rank_column || self.event_time {
            for rank in first..old.len().max(new.len()) {
                match (old.get(rank), new.get(rank)) {
                    (Some((a, _)), Some((b, _))) if a == b => {}
                    (Some((_, was)), Some((_, is))) => {
                        changes.push(RowKind::UpdateBefore, was, rank);
                        changes.push(RowKind::UpdateAfter, is, rank);
                    }
                    (Some((_, was)), None) => changes.push(RowKind::Delete, was, rank),
                    (None, Some((_, is))) => changes.push(RowKind::Insert, is, rank),
                    (None, None) => {}
                }
            }
            return;
        }
        let old = &old[range(old.len())];
        let new = &new[range(new.len())];
        let old_ties: HashSet<u64> = old.iter().map(|(t, _)| *t).collect();
        let new_ties: HashSet<u64> = new.iter().map(|(t, _)| *t).collect();
        for (rank, (tie, row)) in old.iter().enumerate() {
            if !new_ties.contains(tie) {
                changes.push(RowKind::Delete, row, first + rank);
            }
        }
        for (rank, (tie, row)) in new.iter().enumerate() {
            if !old_ties.contains(tie) {
                changes.push(RowKind::Insert, row, first + rank);
            }
        }
    }

    /// Emits `changes` as one batch, and empties it.
    fn emit(&self, changes: &mut Changes, ctx: &mut Context<'_>) -> Result<()> {
        if changes.kinds.is_empty() {
            return Ok(());
        }
        let changes = std::mem::take(changes);
        let mut columns = self.rows.decode(&changes.rows)?;
        if self.ranking.def.rank_column {
            columns.push(Arc::new(UInt64Array::from(changes.ranks)));
        }
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.output),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(changes.kinds.len())),
        )?;
        ctx.emit_changes(batch, Int8Array::from(changes.kinds));
        Ok(())
    }

    /// The schema of a snapshot batch.
    fn snapshot_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .nullable
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(
            TIE,
            datafusion::arrow::datatypes::DataType::UInt64,
            false,
        ));
        Arc::new(Schema::new(fields))
    }
}

impl Operator for TopNStream {
    type Meta = ArrivalsMeta;

    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let (inputs, arrived) = ArrivalsMeta::restored(restored.metas("top-N")?, 1);
        self.arrived = arrived;
        let output = if self.event_time {
            inputs.iter().copied().min().unwrap_or(NO_WATERMARK)
        } else {
            NO_WATERMARK
        };
        let keys = &self.keys;
        match (
            restored.databases(self.rocks.is_some())?,
            self.rocks.as_mut(),
        ) {
            (RestoredDatabases::Own(saved, dir), Some(rocks)) => {
                rocks.store.adopt(dir)?;
                checkpoint.adopted(saved);
                return Ok(RestoredWatermarks { inputs, output });
            }
            (RestoredDatabases::Others(dirs), Some(rocks)) => {
                let (partition, partitions) = (rocks.partition, rocks.partitions);
                rocks.store.restore_rekeyed_by_hash(
                    dirs,
                    keys,
                    partition,
                    partitions,
                    |_, key| Ok(Some(key)),
                )?;
            }
            _ => {}
        }
        // The input's columns come first, so the partition keys read from a snapshot batch.
        let batches = checkpoint.batches_by(restored, |batch| self.ranking.keys_of(batch))?;
        let columns = self.nullable.fields().len();
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            if batch.num_columns() != columns + 1 {
                return exec_err!(
                    "a top-N snapshot has {} columns, the query's input {columns} and the tie",
                    batch.num_columns()
                );
            }
            let rows = RecordBatch::try_new(
                Arc::clone(&self.nullable),
                batch.columns()[..columns].to_vec(),
            )?;
            let Some(ties) = batch.column(columns).as_primitive_opt::<UInt64Type>() else {
                return exec_err!("a top-N snapshot's {TIE} column is not UInt64");
            };
            let keys = self.keys.convert(&self.ranking.keys_of(&rows)?)?;
            let order = self.ranking.order_of(&rows)?;
            let Some(encoded) = self.rows.convert(rows.columns())? else {
                return exec_err!("a top-N input without columns");
            };
            for i in 0..rows.num_rows() {
                let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
                let (order, row) = (order.row(i), encoded.row(i));
                let tie = ties.value(i);
                let seq = self.ranking.tie(tie); // the complement is its own inverse
                self.arrived = self.arrived.max(seq.saturating_add(1));
                let bound = (!self.keep_all).then(|| self.rank_end());
                ranked_mut(&mut self.partitions, &mut self.size, key, bound, now_ms())
                    .insert((order.as_ref().into(), tie), row.as_ref().into());
                if let Some(rocks) = self.rocks.as_mut() {
                    rocks.store.touch(0, key);
                }
                self.size.rows += 1;
                self.size.bytes += order.as_ref().len() + row.as_ref().len() + 48;
            }
        }
        Ok(RestoredWatermarks { inputs, output })
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

    fn on_data(&mut self, _input: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        self.process(batch, ctx)
    }

    /// A row of any age can still change the ranks (or be taken back), so the output carries
    /// no event time: its watermark stays back until the input ended. Except for a
    /// deduplication keeping the last row by event time, whose rows are the input's as they
    /// come: its output carries the input's watermark.
    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        if self.event_time {
            return Ok(ctx.watermark());
        }
        let ended = ctx.watermarks().inputs().iter().all(|&w| w == END_OF_TIME);
        Ok(if ended { END_OF_TIME } else { NO_WATERMARK })
    }

    /// Only when it carries its input's watermark (it holds no rows back); otherwise never: a
    /// downstream watermark must not move on past changes it may still emit.
    fn may_idle(&self) -> bool {
        self.event_time
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        // With RocksDB every cached row goes into the database, and so into the checkpoint.
        if self.rocks.is_some() {
            self.write_back(true)?;
            let meta = ArrivalsMeta::of(watermarks, self.arrived);
            if let Some(rocks) = &self.rocks {
                return checkpoint.snapshot_db(epoch, &meta, rocks.store.db());
            }
        }
        let schema = self.snapshot_schema();
        let held: Vec<(u64, &[u8])> = self
            .partitions
            .values()
            .flat_map(|ranked| ranked.iter())
            .collect();
        let batches = self.rows.batches(
            &schema,
            &held,
            BATCH_ROWS,
            |(_, r)| r,
            |part| {
                vec![
                    Arc::new(UInt64Array::from_iter_values(part.iter().map(|(t, _)| *t)))
                        as ArrayRef,
                ]
            },
        )?;
        checkpoint.snapshot(epoch, &ArrivalsMeta::of(watermarks, self.arrived), batches)
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
