//! One partition of a temporal join, run by the operator
//! [`Driver`](crate::physical::operator::Driver): versioned rows go into the
//! [`VersionedTable`], probe rows wait until the watermark passes their time, then each meets
//! the version of its key valid at its time (see the module docs of `temporal`).
//!
//! With `state.backend` = `rocksdb` the versioned table is a cache of the keys recent batches
//! touched over a [`KeyedDb`] (key space 0: per join key, its versions): the keys of a batch's
//! versions, and of the probe rows the watermark lets through, are loaded before they are
//! used, and every key is written back past [`CACHE_VERSIONS`] versions and at checkpoints.
//! The waiting probe rows stay in memory; a checkpoint puts them into the database (key space
//! 1: the join key, time and arrival number) for the checkpoint and takes them out again.

use std::collections::BTreeMap;

use datafusion::arrow::array::{Array, Int8Array, UInt32Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err};
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_plan::joins::utils::JoinFilter;

use super::super::regular::side::EntryCodec;
use super::super::window::{join_keys, typed_join_keys};
use super::super::{Gather, JoinOutput, filter_pairs};
use super::versions::VersionedTable;
use crate::changelog::{RowKind, kind_at};
use crate::physical::event_time::to_millis;
use crate::physical::message::{END_OF_TIME, NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{
    InputWatermarks, OperatorCheckpoint, Restored, RestoredDatabases,
};
use crate::physical::operator::{Context, Operator, RestoredWatermarks, StateSize, Watermarks};
use crate::state::keyed_db::{KeyedDb, parse_timed_key, timed_key};
use crate::state::rocks::{RowCodec, nullable};
use crate::state::ttl::{TimeToLive, now_ms};

/// With RocksDB: versions cached in memory before they are written back.
pub(super) const CACHE_VERSIONS: usize = 262_144;

/// The key spaces of the database: per join key, its versions; the waiting probe rows.
const VERSIONS: usize = 0;
const WAITING: usize = 1;

/// With `state.backend` = `rocksdb`: the database the versioned table caches.
pub(super) struct RocksState {
    pub(super) store: KeyedDb,
    /// This partition and the number of partitions (to re-key a restored database).
    pub(super) partition: usize,
    pub(super) partitions: usize,
    /// [`CACHE_VERSIONS`] (smaller in tests).
    pub(super) capacity: usize,
}

/// Output rows per batch, and rows per snapshot batch.
const BATCH_ROWS: usize = 8192;

/// Bytes a waiting probe row costs besides its row and key.
const WAITING_OVERHEAD: usize = 48;

/// The snapshot's names for its two numbers per row: a probe row's arrival number and kind; a
/// version's kind (`+I` a row, `-D` a deletion).
pub(super) const SNAPSHOT_NUMBERS: [&str; 2] = ["__arrival", "__kind"];

/// A probe row waiting for the watermark.
#[derive(Debug)]
struct Waiting {
    /// Its join key (`None`: a NULL key, which matches nothing).
    key: Option<Box<[u8]>>,
    row: Box<[u8]>,
    kind: RowKind,
}

/// One partition of a temporal join.
pub(super) struct TemporalJoinStream {
    /// The input index of the probe side (the other is the versioned side).
    pub(super) probe: usize,
    /// A LEFT join: a probe row without a version comes padded with NULLs.
    pub(super) outer: bool,
    pub(super) output: JoinOutput,
    pub(super) on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    /// The join filter without the `FOR SYSTEM_TIME AS OF` marker.
    pub(super) filter: Option<JoinFilter>,
    /// Per input, its time column.
    pub(super) times: [usize; 2],
    pub(super) key_types: Vec<DataType>,
    pub(super) keys: RowCodec,
    /// Per input, its rows' row format and its schema with every column nullable.
    pub(super) rows: [RowCodec; 2],
    pub(super) nullable: [SchemaRef; 2],
    pub(super) codec: EntryCodec,
    /// The probe side's rows come with kinds (a changelog), which the output keeps.
    pub(super) changes: bool,
    pub(super) table: VersionedTable,
    /// Probe rows by (time, arrival).
    pending: BTreeMap<(i64, u64), Waiting>,
    pending_bytes: usize,
    arrived: u64,
    /// `table.exec.state.ttl`: keys no version came for this long are dropped.
    pub(super) ttl: Option<TimeToLive>,
    /// With `state.backend` = `rocksdb`: the database `table` caches.
    pub(super) rocks: Option<RocksState>,
}

impl TemporalJoinStream {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        probe: usize,
        outer: bool,
        output: JoinOutput,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        times: [usize; 2],
        key_types: Vec<DataType>,
        changes: bool,
    ) -> Result<Self> {
        let inputs = output.inputs.clone();
        let what = "the rows of a temporal join";
        Ok(Self {
            probe,
            outer,
            on,
            filter,
            times,
            keys: RowCodec::try_new(key_types.clone(), "temporal join keys")?,
            key_types,
            rows: [
                RowCodec::of_schema(&inputs[0], what)?,
                RowCodec::of_schema(&inputs[1], what)?,
            ],
            nullable: [nullable(&inputs[0]), nullable(&inputs[1])],
            codec: EntryCodec::with_numbers(inputs, SNAPSHOT_NUMBERS),
            output,
            changes,
            table: VersionedTable::default(),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            arrived: 0,
            ttl: None,
            rocks: None,
        })
    }

    /// With RocksDB: brings the stored versions of `keys` the cache lacks into it (none for a
    /// key `table.exec.state.ttl` expired, which the next write-back deletes).
    fn load<'a>(&mut self, keys: impl IntoIterator<Item = &'a [u8]>) -> Result<()> {
        let Some(rocks) = self.rocks.as_mut() else {
            return Ok(());
        };
        let oldest = self.ttl.as_ref().map(|t| t.oldest(now_ms()));
        let restored = rocks.store.written(i64::MIN);
        for (key, value) in rocks.store.load(VERSIONS, keys)? {
            self.table.load(key, &value, oldest, restored)?;
        }
        Ok(())
    }

    /// With RocksDB: writes every cached key's versions back (deleting keys without any) and
    /// empties the cache, if it holds more than its capacity or `always`.
    fn write_back(&mut self, always: bool) -> Result<()> {
        let Some(rocks) = self.rocks.as_mut() else {
            return Ok(());
        };
        if !always && !rocks.store.full(self.table.versions, rocks.capacity) {
            return Ok(());
        }
        let table = &self.table;
        rocks.store.write_back(|_, key| table.encode(key))?;
        self.table.clear();
        Ok(())
    }

    /// The join keys of `rows` (of input `side`) in the key row format, `None` for a row whose
    /// key has a NULL (it matches nothing).
    fn keys_of(&self, side: usize, rows: &RecordBatch) -> Result<Vec<Option<Box<[u8]>>>> {
        let keys = typed_join_keys(&self.on, side, rows, &self.key_types)?;
        let encoded = self.keys.convert(&keys)?;
        Ok((0..rows.num_rows())
            .map(|i| {
                keys.iter().all(|k| k.is_valid(i)).then(|| {
                    encoded
                        .as_ref()
                        .map_or_else(|| Box::from(&[][..]), |e| e.row(i).data().into())
                })
            })
            .collect())
    }

    /// Each row's event time (ms) in column `times[side]`.
    fn times_of(
        &self,
        side: usize,
        rows: &RecordBatch,
    ) -> Result<datafusion::arrow::array::Int64Array> {
        to_millis(rows.column(self.times[side]))
    }

    fn wait(&mut self, time: i64, key: Option<Box<[u8]>>, row: Box<[u8]>, kind: RowKind) {
        self.pending_bytes += row.len() + key.as_ref().map_or(0, |k| k.len()) + WAITING_OVERHEAD;
        self.pending
            .insert((time, self.arrived), Waiting { key, row, kind });
        self.arrived += 1;
    }

    /// Probe rows wait; versioned rows become versions (`-U` is skipped: the `+U` after it
    /// is the new version).
    fn process(&mut self, side: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        let rows = &batch.batch;
        let n = rows.num_rows();
        if n == 0 {
            return Ok(());
        }
        let times = self.times_of(side, rows)?;
        let keys = self.keys_of(side, rows)?;
        let Some(encoded) = self.rows[side].convert(rows.columns())? else {
            return exec_err!("a temporal join input without columns");
        };
        let now = now_ms();
        self.expire(now);
        if side != self.probe {
            self.load(keys.iter().flatten().map(|k| &**k))?;
        }
        let mut null_time = 0;
        let mut earliest = i64::MAX;
        for (i, key) in keys.into_iter().enumerate() {
            let kind = kind_at(batch.kinds.as_deref(), i)?;
            if times.is_null(i) {
                null_time += 1;
                continue;
            }
            let time = times.value(i);
            let row: Box<[u8]> = encoded.row(i).as_ref().into();
            if side == self.probe {
                earliest = earliest.min(time);
                self.wait(time, key, row, kind);
            } else if let Some(key) = key {
                match kind {
                    RowKind::Insert | RowKind::UpdateAfter => {
                        self.table.put(&key, time, &row, false, now)
                    }
                    RowKind::Delete => self.table.put(&key, time, &row, true, now),
                    RowKind::UpdateBefore => {}
                }
            }
        }
        ctx.null_time(null_time);
        // Probe rows the watermark already passed come out now (Flink joins them at the next
        // watermark, with the same versions).
        let watermark = ctx.watermarks().active_min();
        if earliest <= watermark {
            self.fire(watermark, ctx)?;
        }
        Ok(())
    }

    /// Drops the keys `table.exec.state.ttl` expired by `now`, if a sweep is due: a later
    /// probe row of such a key finds no version (as after a deletion).
    fn expire(&mut self, now: i64) {
        if let Some(oldest) = self.ttl.as_mut().and_then(|t| t.sweep(now)) {
            let expired = self.table.expire(oldest);
            if expired > 0 {
                log::debug!("temporal join: {expired} version(s) expired (table.exec.state.ttl)");
            }
        }
    }

    /// Joins the probe rows at or before `watermark` with their versions, in arrival order,
    /// then prunes the versions no later probe row reaches.
    fn fire(&mut self, watermark: i64, ctx: &mut Context<'_>) -> Result<()> {
        let due = if watermark == END_OF_TIME {
            std::mem::take(&mut self.pending)
        } else {
            let later = self.pending.split_off(&(watermark.saturating_add(1), 0));
            std::mem::replace(&mut self.pending, later)
        };
        let mut due: Vec<((i64, u64), Waiting)> = due.into_iter().collect();
        due.sort_by_key(|((_, arrival), _)| *arrival);
        self.load(due.iter().filter_map(|(_, w)| w.key.as_deref()))?;
        for chunk in due.chunks(BATCH_ROWS) {
            self.join(chunk, ctx)?;
        }
        for ((_, _), w) in &due {
            self.pending_bytes = self.pending_bytes.saturating_sub(
                w.row.len() + w.key.as_ref().map_or(0, |k| k.len()) + WAITING_OVERHEAD,
            );
        }
        self.table.prune(watermark);
        Ok(())
    }

    /// Emits the output rows of due probe rows `chunk`.
    fn join(&self, chunk: &[((i64, u64), Waiting)], ctx: &mut Context<'_>) -> Result<()> {
        let probe = self.probe;
        let build = 1 - probe;
        let probe_rows = self.rows[probe]
            .decode_batch(&self.nullable[probe], chunk.iter().map(|(_, w)| &*w.row))?;
        // Each probe row's version, by index into the versions' batch.
        let mut versions: Vec<&[u8]> = Vec::new();
        let mut version_of: Vec<Option<u32>> = Vec::with_capacity(chunk.len());
        for ((time, _), w) in chunk {
            let found = w.key.as_ref().and_then(|k| self.table.as_of(k, *time));
            version_of.push(found.map(|row| {
                versions.push(row);
                (versions.len() - 1) as u32
            }));
        }
        let version_rows = self.rows[build].decode_batch(&self.nullable[build], versions)?;
        // The rest of the ON condition, over the probe rows that found a version.
        if let Some(filter) = &self.filter {
            let matched: Vec<u32> = (0..chunk.len() as u32)
                .filter(|&i| version_of[i as usize].is_some())
                .collect();
            if !matched.is_empty() {
                let probe_idx = UInt32Array::from(matched.clone());
                let build_idx: UInt32Array =
                    matched.iter().map(|&i| version_of[i as usize]).collect();
                let a = Gather::Batch(&probe_rows, &probe_idx);
                let b = Gather::Batch(&version_rows, &build_idx);
                let (l, r) = if probe == 0 { (&a, &b) } else { (&b, &a) };
                let keep = filter_pairs(filter, &self.output.inputs, l, r)?;
                for (k, &i) in matched.iter().enumerate() {
                    if !keep.value(k) {
                        version_of[i as usize] = None;
                    }
                }
            }
        }
        let out: Vec<u32> = (0..chunk.len() as u32)
            .filter(|&i| self.outer || version_of[i as usize].is_some())
            .collect();
        if out.is_empty() {
            return Ok(());
        }
        let probe_idx = UInt32Array::from(out.clone());
        let build_idx: UInt32Array = out.iter().map(|&i| version_of[i as usize]).collect();
        let a = Gather::Batch(&probe_rows, &probe_idx);
        let b = if version_rows.num_rows() == 0 {
            Gather::Nulls(out.len())
        } else {
            Gather::Batch(&version_rows, &build_idx)
        };
        let batch = if probe == 0 {
            self.output.batch(a, b)?
        } else {
            self.output.batch(b, a)?
        };
        if self.changes {
            let kinds: Int8Array = out
                .iter()
                .map(|&i| Some(chunk[i as usize].1.kind as i8))
                .collect();
            ctx.emit_changes(batch, kinds);
        } else {
            ctx.emit(batch);
        }
        Ok(())
    }
}

impl Operator for TemporalJoinStream {
    type Meta = InputWatermarks;

    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let metas: Vec<InputWatermarks> = restored.metas("temporal join")?;
        let inputs = InputWatermarks::restored(&metas, 2);
        // Probe rows from every old task, numbered again in their old order (each old task
        // numbered its own; a key's rows all come from one).
        let mut waiting: Vec<(u64, i64, Waiting)> = Vec::new();
        let keys = &self.keys;
        match (
            restored.databases(self.rocks.is_some())?,
            self.rocks.as_mut(),
        ) {
            (RestoredDatabases::Own(saved, dir), Some(rocks)) => {
                rocks.store.adopt(dir)?;
                checkpoint.adopted(saved);
            }
            (RestoredDatabases::Others(dirs), Some(rocks)) => {
                // A waiting row without a join key goes to the first partition.
                let (partition, partitions) = (rocks.partition, rocks.partitions);
                rocks.store.restore_rekeyed_by_hash(
                    dirs,
                    keys,
                    partition,
                    partitions,
                    |space, key| match space {
                        WAITING => Ok(parse_timed_key(key)?.0),
                        _ => Ok(Some(key)),
                    },
                )?;
            }
            _ => {}
        }
        if let Some(rocks) = self.rocks.as_mut() {
            for (key, value) in rocks.store.take_all(WAITING)? {
                let (join_key, time, arrival) = parse_timed_key(&key)?;
                let kind = value.first().and_then(|&k| RowKind::of(k as i8));
                let Some(kind) = kind else {
                    return exec_err!(
                        "a temporal join's RocksDB entry of a waiting row is cut short"
                    );
                };
                let w = Waiting {
                    key: join_key.map(Box::from),
                    row: value[1..].into(),
                    kind,
                };
                waiting.push((arrival, time, w));
            }
        }
        let codec = self.codec.clone();
        let on = self.on.clone();
        let batches = checkpoint.batches_by(restored, |batch| {
            let side = codec.side_of(batch)?;
            let (rows, _, _) = codec.decode(batch, side)?;
            join_keys(&on, side, &rows)
        })?;
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let side = self.codec.side_of(&batch)?;
            let (rows, arrivals, kinds) = self.codec.decode(&batch, side)?;
            let times = self.times_of(side, &rows)?;
            let keys = self.keys_of(side, &rows)?;
            let Some(encoded) = self.rows[side].convert(rows.columns())? else {
                return exec_err!("a temporal join input without columns");
            };
            for (i, key) in keys.into_iter().enumerate() {
                if times.is_null(i) {
                    return exec_err!("a temporal join snapshot holds a row without a time");
                }
                let kind = u8::try_from(kinds[i])
                    .ok()
                    .and_then(|k| RowKind::of(k as i8));
                let Some(kind) = kind else {
                    return exec_err!("a temporal join snapshot holds a row of kind {}", kinds[i]);
                };
                let row: Box<[u8]> = encoded.row(i).as_ref().into();
                if side == self.probe {
                    waiting.push((arrivals[i], times.value(i), Waiting { key, row, kind }));
                } else if let Some(key) = key {
                    // A restored key lives a whole time to live again.
                    let deleted = kind == RowKind::Delete;
                    self.table
                        .put(&key, times.value(i), &row, deleted, now_ms());
                    if let Some(rocks) = self.rocks.as_mut() {
                        rocks.store.touch(VERSIONS, &key);
                    }
                }
            }
        }
        waiting.sort_by_key(|w| w.0);
        for (_, time, w) in waiting {
            self.wait(time, w.key, w.row, w.kind);
        }
        let output = inputs.iter().copied().min().unwrap_or(NO_WATERMARK);
        Ok(RestoredWatermarks { inputs, output })
    }

    fn on_data(&mut self, input: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        self.process(input, batch, ctx)?;
        self.write_back(false)
    }

    /// The probe rows the watermark of both inputs passed come out; then the output carries
    /// that watermark (the probe side's time column keeps its meaning). An idle input holds
    /// nothing back (as in Flink): a versioned table that stopped changing (its source's
    /// `scan.watermark.idle-timeout` passed) lets the probe rows through on the probe side's
    /// watermark alone.
    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        let watermark = ctx.watermarks().active_min();
        self.fire(watermark, ctx)?;
        self.write_back(false)?;
        Ok(watermark)
    }

    /// With a time to live, sweeps come by the clock, whether rows arrive or not.
    fn next_timer(&self) -> Option<i64> {
        let ttl = self.ttl.as_ref()?;
        (!self.table.is_empty()).then(|| ttl.next_sweep())
    }

    fn on_timer(&mut self, now: i64, ctx: &mut Context<'_>) -> Result<i64> {
        self.expire(now);
        Ok(ctx.watermarks().output())
    }

    /// Probe rows still waiting will come out behind the watermark they wait for.
    fn may_idle(&self) -> bool {
        self.pending.is_empty()
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        // With RocksDB every cached version goes into the database, and the waiting rows too
        // for the checkpoint's time.
        if self.rocks.is_some() {
            self.write_back(true)?;
            let waiting = self.pending.iter().map(|((time, arrival), w)| {
                let key = timed_key(w.key.as_deref(), *time, *arrival);
                let mut value = Vec::with_capacity(w.row.len() + 1);
                value.push(w.kind as u8);
                value.extend_from_slice(&w.row);
                (key, value)
            });
            if let Some(rocks) = self.rocks.as_mut() {
                rocks.store.put_all(WAITING, waiting)?;
                let meta = InputWatermarks::of(watermarks);
                checkpoint.snapshot_db(epoch, &meta, rocks.store.db())?;
                rocks.store.take_all(WAITING)?;
            }
            return Ok(());
        }
        let mut batches = Vec::new();
        let waiting: Vec<(&[u8], u64, u64)> = self
            .pending
            .iter()
            .map(|((_, arrival), w)| (&*w.row, *arrival, w.kind as u64))
            .collect();
        let versions: Vec<(&[u8], u64, u64)> = self
            .table
            .iter()
            .map(|(_, _, v)| {
                let kind = if v.deleted {
                    RowKind::Delete
                } else {
                    RowKind::Insert
                };
                (&*v.row, 0, kind as u64)
            })
            .collect();
        for (side, held) in [(self.probe, waiting), (1 - self.probe, versions)] {
            for chunk in held.chunks(BATCH_ROWS) {
                let rows = self.rows[side]
                    .decode_batch(&self.nullable[side], chunk.iter().map(|h| h.0))?;
                batches.push(self.codec.encode(
                    side,
                    &rows,
                    chunk.iter().map(|h| h.1).collect(),
                    chunk.iter().map(|h| h.2).collect(),
                )?);
            }
        }
        checkpoint.snapshot(epoch, &InputWatermarks::of(watermarks), batches)
    }

    fn end(&mut self, watermarks: &Watermarks<'_>) -> InputWatermarks {
        InputWatermarks::of(watermarks)
    }

    fn state_size(&self) -> StateSize {
        StateSize {
            rows: self.pending.len() + self.table.versions,
            bytes: self.pending_bytes + self.table.bytes,
        }
    }
}

#[cfg(test)]
mod tests;
