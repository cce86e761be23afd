//! One partition of a regular join, run by the operator
//! [`Driver`](crate::physical::operator::Driver): each row is matched against the other side's
//! rows of its key, the pairs (or the rows of a semi or anti join, or the NULL-padded rows of an
//! outer join) are emitted or taken back, and the row is kept or removed.

use datafusion::arrow::array::{Array, Int8Array, UInt32Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::Rows;
use datafusion::common::Result;
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_plan::joins::utils::JoinFilter;

use super::super::window::{join_keys, typed_join_keys};
use super::super::{Emit, Gather, JoinOutput, filter_pairs};
use super::rocks::RocksSides;
use super::side::{Entry, EntryCodec, SideState};
use crate::changelog::{RowKind, kind_at};
use crate::physical::message::{END_OF_TIME, NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{
    InputWatermarks, OperatorCheckpoint, Restored, RestoredDatabases,
};
use crate::physical::operator::{Context, Operator, RestoredWatermarks, StateSize, Watermarks};
use crate::state::rocks::RowCodec;
use crate::state::ttl::{TimeToLive, now_ms};

/// Rows per snapshot batch.
const SNAPSHOT_ROWS: usize = 8192;

/// Output rows per batch, at most (one input row's pairs may go beyond).
const OUTPUT_ROWS: usize = 8192;

/// One partition of a regular join.
pub(super) struct RegularJoinStream {
    pub(super) codec: EntryCodec,
    pub(super) output: JoinOutput,
    /// Each input's schema with every column nullable (rows read back from the state).
    pub(super) nullable: [SchemaRef; 2],
    pub(super) on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    pub(super) filter: Option<JoinFilter>,
    /// `IS NOT DISTINCT FROM` keys: NULL keys match each other.
    pub(super) null_equals_null: bool,
    /// Key types (the left's; right keys are cast to them).
    pub(super) key_types: Vec<DataType>,
    /// The keys' row format (without keys, every row has the same, empty key).
    pub(super) keys: RowCodec,
    /// Each side's rows' row format.
    pub(super) rows: [RowCodec; 2],
    pub(super) sides: [SideState; 2],
    /// The output only appends (an inner or semi join of inputs that only append).
    pub(super) append_only: bool,
    /// Retractions of rows a side did not hold (ignored, as Flink does), and those logged.
    pub(super) unknown: u64,
    pub(super) warned: u64,
    /// `table.exec.state.ttl`: rows not written for this long are dropped.
    pub(super) ttl: Option<TimeToLive>,
    /// With `state.backend` = `rocksdb`: the database `sides` cache.
    pub(super) rocks: Option<RocksSides>,
    /// This partition and the partitions of the join (to re-key a restored database).
    pub(super) partition: usize,
    pub(super) partitions: usize,
}

/// The output rows of one batch being built: each pairs a row of the batch (by index) with a
/// row of the other side's state (by its bytes), either possibly NULL.
#[derive(Default)]
struct Out {
    batch_rows: Vec<Option<u32>>,
    state_rows: Vec<Box<[u8]>>,
    state_index: Vec<Option<u32>>,
    kinds: Vec<i8>,
}

impl Out {
    /// `copies` output rows of `kind`: batch row `mine`, the other side's row `theirs`.
    fn push(&mut self, kind: RowKind, mine: Option<u32>, theirs: Option<&[u8]>, copies: u64) {
        let theirs = theirs.map(|row| {
            self.state_rows.push(row.into());
            (self.state_rows.len() - 1) as u32
        });
        for _ in 0..copies {
            self.batch_rows.push(mine);
            self.state_index.push(theirs);
            self.kinds.push(kind as i8);
        }
    }
}

fn no_columns() -> datafusion::common::DataFusionError {
    datafusion::common::DataFusionError::Internal("a regular join input without columns".into())
}

/// The two sides, the one of index `x` first.
fn both(sides: &mut [SideState; 2], x: usize) -> (&mut SideState, &mut SideState) {
    let (left, right) = sides.split_at_mut(1);
    if x == 0 {
        (&mut left[0], &mut right[0])
    } else {
        (&mut right[0], &mut left[0])
    }
}

impl RegularJoinStream {
    /// The join key of each row of `rows` (of side `side`) in the key row format (`None`: the
    /// empty key of a join without keys), and whether it can match (no NULL key, unless NULLs
    /// match).
    fn key_bytes(&self, side: usize, rows: &RecordBatch) -> Result<(Option<Rows>, Vec<bool>)> {
        let keys = typed_join_keys(&self.on, side, rows, &self.key_types)?;
        let valid = (0..rows.num_rows())
            .map(|i| self.null_equals_null || keys.iter().all(|k| k.is_valid(i)))
            .collect();
        Ok((self.keys.convert(&keys)?, valid))
    }

    /// Drops the rows `table.exec.state.ttl` expired by `now`, if a sweep is due.
    fn expire(&mut self, now: i64) {
        if let Some(oldest) = self.ttl.as_mut().and_then(|t| t.sweep(now)) {
            let expired = self.sides[0].expire(oldest) + self.sides[1].expire(oldest);
            if expired > 0 {
                log::debug!("regular join: {expired} row(s) expired (table.exec.state.ttl)");
            }
        }
    }

    /// Matches one input batch of side `x` against the other side's rows, emits what changes,
    /// and keeps or removes its rows.
    fn process(&mut self, x: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        let now = now_ms();
        self.expire(now);
        let y = 1 - x;
        let rows = &batch.batch;
        let n = rows.num_rows();
        if n == 0 {
            return Ok(());
        }
        let (keys, valid) = self.key_bytes(x, rows)?;
        let key = |i: usize| -> &[u8] { keys.as_ref().map_or(&[], |k| k.row(i).data()) };
        // With RocksDB: the rows of this batch's keys, both sides, into the cache.
        if let Some(rocks) = self.rocks.as_mut() {
            let oldest = self.ttl.as_ref().map(|t| t.oldest(now));
            for side in 0..2 {
                rocks.load(side, (0..n).map(key), &mut self.sides[side], oldest)?;
            }
        }
        let encoded = self.rows[x]
            .convert(rows.columns())?
            .ok_or_else(no_columns)?;

        // Candidates by key (in row order), then the join filter over all of them at once.
        let mut cand_rows: Vec<u32> = Vec::new();
        let mut cand_entries: Vec<usize> = Vec::new();
        for (i, &is_valid) in valid.iter().enumerate().take(n) {
            if !is_valid {
                continue;
            }
            if let Some(entries) = self.sides[y].by_key.get(key(i)) {
                for j in 0..entries.len() {
                    cand_rows.push(i as u32);
                    cand_entries.push(j);
                }
            }
        }
        let keep: Vec<bool> = match &self.filter {
            Some(filter) if !cand_rows.is_empty() => {
                let theirs = self.rows[y].decode_batch(
                    &self.nullable[y],
                    cand_rows
                        .iter()
                        .zip(&cand_entries)
                        .map(|(&i, &j)| &*self.sides[y].by_key[key(i as usize)][j].row),
                )?;
                let mine_idx = UInt32Array::from(cand_rows.clone());
                let theirs_idx = UInt32Array::from_iter_values(0..cand_rows.len() as u32);
                let a = Gather::Batch(rows, &mine_idx);
                let b = Gather::Batch(&theirs, &theirs_idx);
                let (l, r) = if x == 0 { (&a, &b) } else { (&b, &a) };
                filter_pairs(filter, &self.output.inputs, l, r)?
                    .values()
                    .iter()
                    .collect()
            }
            _ => vec![true; cand_rows.len()],
        };

        // Row by row, in order: what the row changes, then the row kept or removed.
        let emit = self.output.emit;
        let mut out = Out::default();
        let mut next = 0;
        let emitter = Emitter {
            rows: &self.rows[y],
            nullable: &self.nullable[y],
            output: &self.output,
            append_only: self.append_only,
        };
        let (mine, theirs) = both(&mut self.sides, x);
        let mut matched: Vec<usize> = Vec::new();
        for (i, &is_valid) in valid.iter().enumerate().take(n) {
            let kind = kind_at(batch.kinds.as_deref(), i)?;
            matched.clear();
            while next < cand_rows.len() && cand_rows[next] as usize == i {
                if keep[next] {
                    matched.push(cand_entries[next]);
                }
                next += 1;
            }
            // A row whose key cannot match is only kept where it comes out alone (an outer
            // or anti side); elsewhere it never matters.
            if !is_valid && !emit.keeps_unmatched(x) {
                // (A row restored from an older checkpoint may still be held.)
                if !kind.adds() {
                    mine.remove(key(i), encoded.row(i).as_ref());
                }
                continue;
            }
            let row = encoded.row(i);
            let row = row.as_ref();
            let me = Some(i as u32);
            if !kind.adds() && mine.remove(key(i), row).is_none() {
                self.unknown += 1;
                continue;
            }
            let entries = if matched.is_empty() {
                None
            } else {
                theirs.by_key.get_mut(key(i))
            };
            let total: u64 = entries
                .as_ref()
                .map_or(0, |e| matched.iter().map(|&j| e[j].count).sum());
            match (emit, kind.adds()) {
                (Emit::Pairs(outer), true) => match entries {
                    None => {
                        if outer[x] {
                            out.push(RowKind::Insert, me, None, 1);
                        }
                    }
                    Some(entries) => {
                        for &j in &matched {
                            let e = &mut entries[j];
                            if outer[y] && e.matches == 0 {
                                out.push(RowKind::Delete, None, Some(&e.row), e.count);
                            }
                            out.push(RowKind::Insert, me, Some(&e.row), e.count);
                            e.matches += 1;
                            e.written = now;
                        }
                    }
                },
                (Emit::Pairs(outer), false) => match entries {
                    None => {
                        if outer[x] {
                            out.push(RowKind::Delete, me, None, 1);
                        }
                    }
                    Some(entries) => {
                        for &j in &matched {
                            let e = &mut entries[j];
                            out.push(RowKind::Delete, me, Some(&e.row), e.count);
                            e.matches = e.matches.saturating_sub(1);
                            e.written = now;
                            if outer[y] && e.matches == 0 {
                                out.push(RowKind::Insert, None, Some(&e.row), e.count);
                            }
                        }
                    }
                },
                // The rows of this side are the output.
                (Emit::Semi(s) | Emit::Anti(s), adds) if s == x => {
                    let semi = matches!(emit, Emit::Semi(_));
                    if semi == (total > 0) {
                        let kind = if adds {
                            RowKind::Insert
                        } else {
                            RowKind::Delete
                        };
                        out.push(kind, me, None, 1);
                    }
                    if let Some(entries) = entries {
                        for &j in &matched {
                            let e = &mut entries[j];
                            e.matches = if adds {
                                e.matches + 1
                            } else {
                                e.matches.saturating_sub(1)
                            };
                            e.written = now;
                        }
                    }
                }
                // The other side's rows are the output: they come or go as their matches
                // reach or leave 0.
                (Emit::Semi(_) | Emit::Anti(_), adds) => {
                    let semi = matches!(emit, Emit::Semi(_));
                    if let Some(entries) = entries {
                        for &j in &matched {
                            let e = &mut entries[j];
                            let before = e.matches;
                            e.matches = if adds {
                                before + 1
                            } else {
                                before.saturating_sub(1)
                            };
                            e.written = now;
                            let (was, is) = (before > 0, e.matches > 0);
                            if was != is {
                                // Semi: a row with a match is in the result; anti: without.
                                let inserted = is == semi;
                                let kind = if inserted {
                                    RowKind::Insert
                                } else {
                                    RowKind::Delete
                                };
                                out.push(kind, None, Some(&e.row), e.count);
                            }
                        }
                    }
                }
            }
            if kind.adds() {
                mine.add(key(i), row, total, now);
            }
            // A hot key can pair one row with very many: output goes in bounded batches.
            if out.kinds.len() >= OUTPUT_ROWS {
                emitter.emit(x, rows, &mut out, ctx)?;
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
                "regular join: {} retraction(s) of rows its state does not hold were ignored",
                self.unknown - self.warned
            );
            self.warned = self.unknown;
        }
        emitter.emit(x, rows, &mut out, ctx)?;
        if let Some(rocks) = self.rocks.as_mut() {
            rocks.write_back(&mut self.sides, false)?;
        }
        Ok(())
    }
}

/// What output batches are built with: the other side's row format and nullable schema, the
/// output assembly, and whether the output only appends.
struct Emitter<'a> {
    rows: &'a RowCodec,
    nullable: &'a SchemaRef,
    output: &'a JoinOutput,
    append_only: bool,
}

impl Emitter<'_> {
    /// Builds and emits the output rows `out` of a batch `rows` of side `x`, and empties `out`.
    fn emit(
        &self,
        x: usize,
        rows: &RecordBatch,
        out: &mut Out,
        ctx: &mut Context<'_>,
    ) -> Result<()> {
        if out.kinds.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(out);
        let theirs = self
            .rows
            .decode_batch(self.nullable, out.state_rows.iter().map(|r| &**r))?;
        let mine_idx = UInt32Array::from(out.batch_rows);
        let theirs_idx = UInt32Array::from(out.state_index);
        let a = Gather::Batch(rows, &mine_idx);
        let b = Gather::Batch(&theirs, &theirs_idx);
        let batch = if x == 0 {
            self.output.batch(a, b)?
        } else {
            self.output.batch(b, a)?
        };
        if self.append_only {
            ctx.emit(batch);
        } else {
            ctx.emit_changes(batch, Int8Array::from(out.kinds));
        }
        Ok(())
    }
}

impl Operator for RegularJoinStream {
    type Meta = InputWatermarks;

    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let metas: Vec<InputWatermarks> = restored.metas("regular join")?;
        let inputs = InputWatermarks::restored(&metas, 2);
        match (
            restored.databases(self.rocks.is_some())?,
            self.rocks.as_mut(),
        ) {
            (RestoredDatabases::Own(saved, dir), Some(rocks)) => {
                rocks.adopt(dir)?;
                checkpoint.adopted(saved);
                return Ok(RestoredWatermarks {
                    inputs: inputs.to_vec(),
                    output: NO_WATERMARK,
                });
            }
            (RestoredDatabases::Others(dirs), Some(rocks)) => {
                rocks.restore_rekeyed(dirs, &self.keys, self.partition, self.partitions)?;
            }
            _ => {}
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
            let (rows, counts, matches) = self.codec.decode(&batch, side)?;
            let (keys, _) = self.key_bytes(side, &rows)?;
            let encoded = self.rows[side]
                .convert(rows.columns())?
                .ok_or_else(no_columns)?;
            for i in 0..rows.num_rows() {
                let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
                if let Some(rocks) = self.rocks.as_mut() {
                    rocks.touch(side, key);
                }
                self.sides[side].restore(
                    key,
                    Entry {
                        row: encoded.row(i).as_ref().into(),
                        count: counts[i],
                        matches: matches[i],
                        // A restored row lives a whole time to live again.
                        written: now_ms(),
                    },
                );
            }
        }
        Ok(RestoredWatermarks {
            inputs: inputs.to_vec(),
            output: NO_WATERMARK,
        })
    }

    /// With a time to live, sweeps come by the clock, whether rows arrive or not.
    fn next_timer(&self) -> Option<i64> {
        let ttl = self.ttl.as_ref()?;
        (self.sides[0].rows + self.sides[1].rows > 0).then(|| ttl.next_sweep())
    }

    fn on_timer(&mut self, now: i64, ctx: &mut Context<'_>) -> Result<i64> {
        self.expire(now);
        Ok(ctx.watermarks().output())
    }

    fn on_data(&mut self, side: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        self.process(side, batch, ctx)
    }

    /// Rows of any age can still come out (a partner may arrive at any time), so the output
    /// carries no event time: its watermark stays back until every input ended (as Flink's
    /// regular join drops its inputs' time attributes). Windows over it fire at the end only,
    /// and never drop its rows as late.
    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        let ended = ctx.watermarks().inputs().iter().all(|&w| w == END_OF_TIME);
        Ok(if ended { END_OF_TIME } else { NO_WATERMARK })
    }

    /// Never: its rows carry no event time the watermark could bound, and an idle join must
    /// not let a downstream watermark move on past rows it may still emit.
    fn may_idle(&self) -> bool {
        false
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        // With RocksDB every cached row goes into the database, and so into the checkpoint.
        if let Some(rocks) = self.rocks.as_mut() {
            rocks.write_back(&mut self.sides, true)?;
            return checkpoint.snapshot_db(epoch, &InputWatermarks::of(watermarks), rocks.db());
        }
        let mut batches = Vec::new();
        for (side, state) in self.sides.iter().enumerate() {
            let entries: Vec<&Entry> = state.by_key.values().flatten().collect();
            for chunk in entries.chunks(SNAPSHOT_ROWS) {
                let rows = self.rows[side]
                    .decode_batch(&self.nullable[side], chunk.iter().map(|e| &*e.row))?;
                batches.push(self.codec.encode(
                    side,
                    &rows,
                    chunk.iter().map(|e| e.count).collect(),
                    chunk.iter().map(|e| e.matches).collect(),
                )?);
            }
        }
        let meta = InputWatermarks::of(watermarks);
        checkpoint.snapshot(epoch, &meta, batches)
    }

    fn end(&mut self, watermarks: &Watermarks<'_>) -> InputWatermarks {
        InputWatermarks::of(watermarks)
    }

    fn state_size(&self) -> StateSize {
        StateSize {
            rows: (self.sides[0].rows + self.sides[1].rows) as usize,
            bytes: self.sides[0].bytes + self.sides[1].bytes,
        }
    }
}

#[cfg(test)]
mod tests;
