//! One partition of an OVER aggregation, run by the operator
//! [`Driver`](crate::physical::operator::Driver) (see the module docs of `over_aggregate`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array, UInt64Array};
use datafusion::arrow::compute::{concat, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{HashMap, Result, exec_err};

use super::rocks::{KEYS, RocksState, WAITING};
use super::{EventTimeFrames, OverAggregation};
use crate::physical::event_time::to_millis;
use crate::physical::message::{NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{
    InputWatermarks, OperatorCheckpoint, Restored, RestoredDatabases,
};
use crate::physical::operator::{Context, Operator, RestoredWatermarks, StateSize, Watermarks};
use crate::state::keyed_db::{ValueReader, parse_timed_key, put_bytes, timed_key};
use crate::state::rocks::RowCodec;
use crate::state::ttl::{TimeToLive, now_ms};

/// Rows per evaluated batch (at least one key's), per output batch and per snapshot batch.
const BATCH_ROWS: usize = 8192;

/// A row held: its time, arrival number and bytes.
#[derive(Debug, Clone)]
struct Held {
    time: i64,
    seq: u64,
    row: Box<[u8]>,
}

/// A key's rows that later frames reach, in time order, and when rows last came for it.
#[derive(Debug, Default)]
struct Kept {
    rows: VecDeque<Held>,
    /// Processing time (ms) of the key's last rows: `table.exec.state.ttl` counts from here.
    written: i64,
}

/// A row's partition key and bytes.
type KeyedRow = (Box<[u8]>, Box<[u8]>);

/// Bytes a held row costs besides its own.
const ROW_OVERHEAD: usize = 40;

/// One partition of an OVER aggregation.
pub(super) struct OverStream {
    def: OverAggregation,
    /// The event time rows are ordered by, and how far back frames reach.
    frames: EventTimeFrames,
    /// The partition keys' row format (without keys, every row has the same, empty key).
    keys: RowCodec,
    /// The input rows' row format.
    rows: RowCodec,
    /// The input's schema with every column nullable (rows read back from the state).
    nullable: SchemaRef,
    output: SchemaRef,
    /// Rows waiting for the watermark, by (time, arrival), with their keys.
    pending: BTreeMap<(i64, u64), KeyedRow>,
    /// Per key, the rows emitted that later frames still reach, in time order.
    kept: HashMap<Vec<u8>, Kept>,
    /// Rows arrived so far (the next row's arrival number).
    arrived: u64,
    size: StateSize,
    /// The watermark at which every key's kept rows were last pruned.
    swept: i64,
    /// `table.exec.state.ttl`: keys no rows came for this long are dropped.
    ttl: Option<TimeToLive>,
    /// With `state.backend` = `rocksdb`: the database `kept` caches.
    pub(super) rocks: Option<RocksState>,
}

impl Kept {
    /// A key's rows as RocksDB stores them: when rows last came, then per row its time,
    /// arrival number and bytes.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + self.rows.len() * 32);
        out.extend_from_slice(&self.written.to_le_bytes());
        for h in &self.rows {
            out.extend_from_slice(&h.time.to_le_bytes());
            out.extend_from_slice(&h.seq.to_le_bytes());
            put_bytes(&mut out, &h.row);
        }
        out
    }

    /// A key's rows as [`Self::encode`] stored them.
    fn decode(value: &[u8]) -> Result<Self> {
        let mut r = ValueReader::new(value, "an OVER aggregation");
        let mut kept = Kept {
            rows: VecDeque::new(),
            written: r.i64()?,
        };
        while !r.is_empty() {
            let (time, seq) = (r.i64()?, r.u64()?);
            let row = r.bytes()?.into();
            kept.rows.push_back(Held { time, seq, row });
        }
        Ok(kept)
    }

    /// The bytes the rows cost as the state counts them.
    fn held_bytes(&self) -> usize {
        self.rows.iter().map(|h| h.row.len() + ROW_OVERHEAD).sum()
    }
}

impl OverStream {
    pub(super) fn new(
        def: OverAggregation,
        frames: EventTimeFrames,
        keys: RowCodec,
        rows: RowCodec,
        input: &Schema,
        output: SchemaRef,
    ) -> Self {
        let def_ttl = def.ttl.map(TimeToLive::new);
        let nullable = crate::state::rocks::nullable(input);
        Self {
            def,
            frames,
            keys,
            rows,
            nullable,
            output,
            pending: BTreeMap::new(),
            kept: HashMap::new(),
            arrived: 0,
            size: StateSize::default(),
            swept: NO_WATERMARK,
            ttl: def_ttl,
            rocks: None,
        }
    }

    /// With RocksDB: brings the stored rows of `keys` the cache lacks into it (none for a key
    /// `table.exec.state.ttl` expired, which the next write-back deletes).
    fn load<'a>(&mut self, keys: impl IntoIterator<Item = &'a [u8]>) -> Result<()> {
        let Some(rocks) = self.rocks.as_mut() else {
            return Ok(());
        };
        let oldest = self.ttl.as_ref().map(|t| t.oldest(now_ms()));
        let restored = rocks.store.written(i64::MIN);
        for (key, value) in rocks.store.load(KEYS, keys)? {
            let mut kept = Kept::decode(&value)?;
            kept.written = kept.written.max(restored);
            if oldest.is_some_and(|oldest| kept.written < oldest) {
                continue;
            }
            self.size.rows += kept.rows.len();
            self.size.bytes += kept.held_bytes() + key.len() + 64;
            self.kept.insert(key.to_vec(), kept);
        }
        Ok(())
    }

    /// With RocksDB: writes every cached key's rows back (deleting keys without any) and
    /// empties the cache, if it holds more rows than its capacity or `always`.
    fn write_back(&mut self, always: bool) -> Result<()> {
        let Some(rocks) = self.rocks.as_mut() else {
            return Ok(());
        };
        let cached = self.size.rows.saturating_sub(self.pending.len());
        if !always && !rocks.store.full(cached, rocks.capacity) {
            return Ok(());
        }
        let kept = &self.kept;
        rocks.store.write_back(|_, key| {
            kept.get(key)
                .filter(|k| !k.rows.is_empty())
                .map(Kept::encode)
        })?;
        for (key, kept) in self.kept.drain() {
            self.size.rows = self.size.rows.saturating_sub(kept.rows.len());
            let bytes = kept.held_bytes() + key.len() + 64;
            self.size.bytes = self.size.bytes.saturating_sub(bytes);
        }
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

    /// Holds a batch's rows until the watermark passes them; late rows are dropped.
    fn process(&mut self, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        let rows = &batch.batch;
        let n = rows.num_rows();
        if n == 0 {
            return Ok(());
        }
        let times = to_millis(&self.frames.time.evaluate(rows)?.into_array(n)?)?;
        let keys = self.keys.convert(&self.keys_of(rows)?)?;
        let Some(encoded) = self.rows.convert(rows.columns())? else {
            return exec_err!("an OVER aggregation over an input without columns");
        };
        let current = ctx.watermark();
        let (mut late, mut null_time) = (0, 0);
        for i in 0..n {
            if times.is_null(i) {
                null_time += 1;
                continue;
            }
            let time = times.value(i);
            if time <= batch.row_watermark(i, current) {
                late += 1;
                continue;
            }
            let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
            let row = encoded.row(i);
            self.size.rows += 1;
            self.size.bytes += key.len() + row.as_ref().len() + ROW_OVERHEAD;
            self.pending
                .insert((time, self.arrived), (key.into(), row.as_ref().into()));
            self.arrived += 1;
        }
        ctx.late(late);
        ctx.null_time(null_time);
        Ok(())
    }

    /// Emits the rows the watermark passed, with their aggregates, and keeps what later frames
    /// reach.
    fn fire(&mut self, watermark: i64, ctx: &mut Context<'_>) -> Result<()> {
        let later = self.pending.split_off(&(watermark.saturating_add(1), 0));
        let due = std::mem::replace(&mut self.pending, later);
        // Each key's due rows, in time order (the sort is stable and the rows come in time
        // order), then keys in groups of about BATCH_ROWS rows (kept and due), evaluated together.
        let mut due: Vec<((i64, u64), KeyedRow)> = due.into_iter().collect();
        due.sort_by(|(_, (a, _)), (_, (b, _))| a.cmp(b));
        self.load(due.iter().map(|(_, (key, _))| &**key))?;
        let mut group: Vec<(Box<[u8]>, Vec<Held>)> = Vec::new();
        let mut rows = 0;
        for ((time, seq), (key, row)) in due {
            self.size.rows -= 1;
            self.size.bytes -= (key.len() + row.len() + ROW_OVERHEAD).min(self.size.bytes);
            let held = Held { time, seq, row };
            match group.last_mut() {
                Some((last, held_rows)) if *last == key => held_rows.push(held),
                _ => {
                    if rows >= BATCH_ROWS {
                        self.evaluate(std::mem::take(&mut group), watermark, ctx)?;
                        rows = 0;
                    }
                    rows += self.kept.get(key.as_ref()).map_or(0, |k| k.rows.len());
                    group.push((key, vec![held]));
                }
            }
            rows += 1;
        }
        if !group.is_empty() {
            self.evaluate(group, watermark, ctx)?;
        }
        self.sweep(watermark);
        self.expire(now_ms());
        Ok(())
    }

    /// Evaluates the aggregates of the due rows of some keys, emits them, and keeps them.
    fn evaluate(
        &mut self,
        group: Vec<(Box<[u8]>, Vec<Held>)>,
        watermark: i64,
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        // One batch: per key, its kept rows then its due rows.
        let mut all: Vec<&[u8]> = Vec::new();
        let mut ranges = Vec::with_capacity(group.len());
        let mut due_at: Vec<u32> = Vec::new();
        for (key, due) in &group {
            let start = all.len();
            let kept = self.kept.get(key.as_ref());
            let kept_rows = kept.map_or(0, |k| k.rows.len());
            if let Some(kept) = kept {
                all.extend(kept.rows.iter().map(|h| h.row.as_ref()));
            }
            for h in due {
                let Ok(at) = u32::try_from(all.len()) else {
                    return exec_err!("an OVER aggregation frame of more than 2^32 rows");
                };
                due_at.push(at);
                all.push(h.row.as_ref());
            }
            ranges.push((start, kept_rows, due.len()));
        }
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.nullable),
            self.rows.decode(&all)?,
            &RecordBatchOptions::new().with_row_count(Some(all.len())),
        )?;
        let mut values: Vec<Vec<ArrayRef>> =
            vec![Vec::with_capacity(ranges.len()); self.def.exprs.len()];
        for &(start, kept, due) in &ranges {
            let rows = batch.slice(start, kept + due);
            for (e, expr) in self.def.exprs.iter().enumerate() {
                let value = expr.evaluate(&rows)?;
                values[e].push(value.slice(kept, due));
            }
        }
        let indices = UInt32Array::from(due_at);
        let mut columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .map(|c| Ok(take(c, &indices, None)?))
            .collect::<Result<_>>()?;
        for parts in values {
            let parts: Vec<&dyn datafusion::arrow::array::Array> =
                parts.iter().map(|a| a.as_ref()).collect();
            columns.push(concat(&parts)?);
        }
        let out = RecordBatch::try_new_with_options(
            Arc::clone(&self.output),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(indices.len())),
        )?;
        let mut offset = 0;
        while offset < out.num_rows() {
            let len = BATCH_ROWS.min(out.num_rows() - offset);
            ctx.emit(out.slice(offset, len));
            offset += len;
        }
        // Keep the due rows, then forget what no later frame reaches.
        let now = now_ms();
        for (key, due) in group {
            let kept = match self.kept.get_mut(key.as_ref()) {
                Some(kept) => kept,
                None => {
                    self.size.bytes += key.len() + 64;
                    self.kept.entry(key.to_vec()).or_default()
                }
            };
            for h in due {
                self.size.rows += 1;
                self.size.bytes += h.row.len() + ROW_OVERHEAD;
                kept.rows.push_back(h);
            }
            kept.written = now;
            prune(&mut kept.rows, &self.frames, watermark, &mut self.size);
        }
        Ok(())
    }

    /// Prunes every key's kept rows once the watermark has moved on by the longest RANGE
    /// interval (at least a second), dropping keys left with nothing: under RANGE frames alone,
    /// a key no rows come for any more is forgotten (a ROWS frame keeps a key's last rows).
    fn sweep(&mut self, watermark: i64) {
        if self.swept != NO_WATERMARK
            && watermark.saturating_sub(self.swept) <= self.frames.keep_ms.max(1000)
        {
            return;
        }
        self.swept = watermark;
        let (def, size) = (&self.frames, &mut self.size);
        self.kept.retain(|key, kept| {
            prune(&mut kept.rows, def, watermark, size);
            if kept.rows.is_empty() {
                size.bytes = size.bytes.saturating_sub(key.len() + 64);
            }
            !kept.rows.is_empty()
        });
    }

    /// Drops the keys no rows came for within `table.exec.state.ttl`, if a sweep is due at
    /// `now`: their later rows' frames start empty.
    fn expire(&mut self, now: i64) {
        let Some(oldest) = self.ttl.as_mut().and_then(|t| t.sweep(now)) else {
            return;
        };
        let size = &mut self.size;
        self.kept.retain(|key, kept| {
            if kept.written >= oldest {
                return true;
            }
            for h in &kept.rows {
                size.rows = size.rows.saturating_sub(1);
                size.bytes = size.bytes.saturating_sub(h.row.len() + ROW_OVERHEAD);
            }
            size.bytes = size.bytes.saturating_sub(key.len() + 64);
            false
        });
    }

    /// The schema of a snapshot batch.
    fn snapshot_schema(&self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .nullable
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        fields.push(Field::new(DUE, DataType::Boolean, false));
        fields.push(Field::new(SEQ, DataType::UInt64, false));
        Arc::new(Schema::new(fields))
    }
}

/// Drops the front rows of `kept` that no row after `watermark` reaches: beyond the last
/// `keep_rows`, at or before `watermark - keep_ms`.
fn prune(kept: &mut VecDeque<Held>, def: &EventTimeFrames, watermark: i64, size: &mut StateSize) {
    let oldest = watermark.saturating_sub(def.keep_ms);
    while kept.len() > def.keep_rows && kept.front().is_some_and(|h| h.time <= oldest) {
        if let Some(h) = kept.pop_front() {
            size.rows = size.rows.saturating_sub(1);
            size.bytes = size.bytes.saturating_sub(h.row.len() + ROW_OVERHEAD);
        }
    }
}

/// The names of the snapshot's columns after the input's.
const DUE: &str = "__due";
const SEQ: &str = "__seq";

impl Operator for OverStream {
    type Meta = InputWatermarks;

    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let metas: Vec<InputWatermarks> = restored.metas("OVER aggregation")?;
        let inputs = InputWatermarks::restored(&metas, 1);
        // Rows still waiting, from every old task: numbered again below (each old task numbered
        // its own rows, so two may share a number).
        let mut waiting: Vec<((i64, u64), KeyedRow)> = Vec::new();
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
        if let Some(rocks) = self.rocks.as_mut() {
            for (key, row) in rocks.store.take_all(WAITING)? {
                let (key, time, seq) = parse_timed_key(&key)?;
                let key = key.unwrap_or_default();
                self.size.rows += 1;
                self.size.bytes += key.len() + row.len() + ROW_OVERHEAD;
                waiting.push(((time, seq), (key.into(), row.into())));
            }
        }
        // The input's columns come first, so the partition keys read from a snapshot batch.
        let batches = checkpoint.batches_by(restored, |batch| self.keys_of(batch))?;
        let columns = self.nullable.fields().len();
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            if batch.num_columns() != columns + 2 {
                return exec_err!(
                    "an OVER aggregation snapshot has {} columns, the query's input {columns} \
                     and two more",
                    batch.num_columns()
                );
            }
            let rows = RecordBatch::try_new(
                Arc::clone(&self.nullable),
                batch.columns()[..columns].to_vec(),
            )?;
            let (Some(due), Some(seqs)) = (
                batch.column(columns).as_boolean_opt(),
                batch.column(columns + 1).as_primitive_opt::<UInt64Type>(),
            ) else {
                return exec_err!(
                    "an OVER aggregation snapshot's {DUE} or {SEQ} column is mistyped"
                );
            };
            let n = rows.num_rows();
            let times = to_millis(&self.frames.time.evaluate(&rows)?.into_array(n)?)?;
            let keys = self.keys.convert(&self.keys_of(&rows)?)?;
            let Some(encoded) = self.rows.convert(rows.columns())? else {
                return exec_err!("an OVER aggregation input without columns");
            };
            for i in 0..n {
                if times.is_null(i) {
                    return exec_err!("an OVER aggregation snapshot holds a row without a time");
                }
                let (time, seq) = (times.value(i), seqs.value(i));
                let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
                let row: Box<[u8]> = encoded.row(i).as_ref().into();
                self.arrived = self.arrived.max(seq.saturating_add(1));
                self.size.rows += 1;
                self.size.bytes += row.len() + ROW_OVERHEAD;
                if due.value(i) {
                    self.size.bytes += key.len();
                    waiting.push(((time, seq), (key.into(), row)));
                } else {
                    let kept = match self.kept.get_mut(key) {
                        Some(kept) => kept,
                        None => {
                            self.size.bytes += key.len() + 64;
                            self.kept.entry(key.to_vec()).or_default()
                        }
                    };
                    kept.rows.push_back(Held { time, seq, row });
                    // A restored key lives a whole time to live again.
                    kept.written = now_ms();
                    if let Some(rocks) = self.rocks.as_mut() {
                        rocks.store.touch(KEYS, key);
                    }
                }
            }
        }
        for kept in self.kept.values_mut() {
            kept.rows.make_contiguous().sort_by_key(|h| (h.time, h.seq));
        }
        // A key's rows all come from one old task, so (time, old number) keeps their order.
        waiting.sort_by_key(|(at, _)| *at);
        for ((time, _), row) in waiting {
            self.pending.insert((time, self.arrived), row);
            self.arrived += 1;
        }
        let output = inputs.iter().copied().min().unwrap_or(NO_WATERMARK);
        Ok(RestoredWatermarks { inputs, output })
    }

    fn on_data(&mut self, _input: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        self.process(batch, ctx)
    }

    /// Rows at or before the watermark come out first; the output's watermark is the input's.
    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        let watermark = ctx.watermark();
        self.fire(watermark, ctx)?;
        self.write_back(false)?;
        Ok(watermark)
    }

    /// With a time to live, sweeps come by the clock, whether rows arrive or not.
    fn next_timer(&self) -> Option<i64> {
        let ttl = self.ttl.as_ref()?;
        (!self.kept.is_empty()).then(|| ttl.next_sweep())
    }

    fn on_timer(&mut self, now: i64, ctx: &mut Context<'_>) -> Result<i64> {
        self.expire(now);
        Ok(ctx.watermarks().output())
    }

    /// Rows still waiting will come out behind the watermark they wait for.
    fn may_idle(&self) -> bool {
        self.pending.is_empty()
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        // With RocksDB every cached row goes into the database, and the waiting rows too for
        // the checkpoint's time.
        if self.rocks.is_some() {
            self.write_back(true)?;
            let waiting = self
                .pending
                .iter()
                .map(|((time, seq), (key, row))| (timed_key(Some(key), *time, *seq), row.to_vec()));
            if let Some(rocks) = self.rocks.as_mut() {
                rocks.store.put_all(WAITING, waiting)?;
                let meta = InputWatermarks::of(watermarks);
                checkpoint.snapshot_db(epoch, &meta, rocks.store.db())?;
                rocks.store.take_all(WAITING)?;
            }
            return Ok(());
        }
        let schema = self.snapshot_schema();
        let kept = self
            .kept
            .values()
            .flat_map(|k| k.rows.iter().map(|h| (false, h.seq, h.row.as_ref())));
        let pending = self
            .pending
            .iter()
            .map(|((_, seq), (_, row))| (true, *seq, row.as_ref()));
        let held: Vec<(bool, u64, &[u8])> = kept.chain(pending).collect();
        let batches = self.rows.batches(
            &schema,
            &held,
            BATCH_ROWS,
            |(_, _, r)| r,
            |part| {
                let due: BooleanArray = part.iter().map(|(d, _, _)| Some(*d)).collect();
                let seqs = UInt64Array::from_iter_values(part.iter().map(|(_, s, _)| *s));
                vec![Arc::new(due) as ArrayRef, Arc::new(seqs)]
            },
        )?;
        let meta = InputWatermarks::of(watermarks);
        checkpoint.snapshot(epoch, &meta, batches)
    }

    fn end(&mut self, watermarks: &Watermarks<'_>) -> InputWatermarks {
        InputWatermarks::of(watermarks)
    }

    fn state_size(&self) -> StateSize {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key's rows read back as stored, and RocksDB's compaction reads when they were written
    /// (key space [`KEYS`](super::super::rocks::KEYS)).
    #[test]
    fn kept_rows_read_back() {
        let mut kept = Kept {
            rows: VecDeque::new(),
            written: 4321,
        };
        for (time, seq, row) in [(5, 0, &b"a"[..]), (7, 1, b"")] {
            kept.rows.push_back(Held {
                time,
                seq,
                row: row.into(),
            });
        }
        let value = kept.encode();
        let back = Kept::decode(&value).unwrap();
        assert_eq!(back.written, 4321);
        let rows = |k: &Kept| -> Vec<(i64, u64, Vec<u8>)> {
            k.rows
                .iter()
                .map(|h| (h.time, h.seq, h.row.to_vec()))
                .collect()
        };
        assert_eq!(rows(&back), rows(&kept));
        assert!(Kept::decode(&value[..value.len() - 1]).is_err());
        assert_eq!(
            crate::state::keyed_db::written_first_in_space_0(&[0, b'k'], &value),
            Some(4321)
        );
        // A waiting row (key space 1) does not expire.
        assert_eq!(
            crate::state::keyed_db::written_first_in_space_0(&[1, b'k'], &value),
            None
        );
    }
}
