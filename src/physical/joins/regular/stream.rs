//! One partition of a regular join, run by the operator
//! [`Driver`](crate::physical::operator::Driver): each row is matched against the other side's
//! rows of its key, the pairs (or the rows of a semi or anti join, or the NULL-padded rows of an
//! outer join) are emitted or taken back, and the row is kept or removed.

use std::sync::Arc;

use datafusion::arrow::array::{Array, Int8Array, UInt32Array};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
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
use crate::state::redistribute::partitions_of;
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
    /// With `state.backend` = `rocksdb`: the database `sides` cache, its directory and this
    /// partition's instance name.
    pub(super) rocks: Option<RocksSides>,
    pub(super) rocksdb: Option<(std::path::PathBuf, String)>,
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

/// Rows stored in `codec`'s row format as a batch of `schema` (every column nullable).
fn decode<'a>(
    codec: &RowCodec,
    schema: &SchemaRef,
    rows: impl IntoIterator<Item = &'a [u8]>,
) -> Result<RecordBatch> {
    let rows: Vec<&[u8]> = rows.into_iter().collect();
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        codec.decode(&rows)?,
        &RecordBatchOptions::new().with_row_count(Some(rows.len())),
    )?)
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
                let theirs = decode(
                    &self.rows[y],
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
        let theirs = decode(
            self.rows,
            self.nullable,
            out.state_rows.iter().map(|r| &**r),
        )?;
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
        match (restored.databases(self.rocks.is_some())?, &self.rocksdb) {
            (RestoredDatabases::Own(saved, dir), Some((root, label))) => {
                if let Some(rocks) = self.rocks.as_mut() {
                    rocks.adopt(root, label, dir)?;
                }
                checkpoint.adopted(saved);
                return Ok(RestoredWatermarks {
                    inputs: inputs.to_vec(),
                    output: NO_WATERMARK,
                });
            }
            (RestoredDatabases::Others(dirs), Some(_)) => {
                let (partition, partitions) = (self.partition, self.partitions);
                let keys = &self.keys;
                if let Some(rocks) = self.rocks.as_mut() {
                    for dir in dirs {
                        rocks.restore_rekeyed(dir, |chunk| {
                            let bytes: Vec<&[u8]> = chunk.iter().map(|(_, k)| *k).collect();
                            let columns = keys.decode(&bytes)?;
                            Ok(partitions_of(&columns, bytes.len(), partitions)?
                                .into_iter()
                                .map(|p| p == partition)
                                .collect())
                        })?;
                    }
                }
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
                let rows = decode(
                    &self.rows[side],
                    &self.nullable[side],
                    chunk.iter().map(|e| &*e.row),
                )?;
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
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::util::display::array_value_to_string;
    use datafusion::common::JoinType;
    use datafusion::physical_expr::expressions::Column;

    /// A join of `(k, v)` with `(k, w)` on `k`.
    fn join(join_type: JoinType) -> RegularJoinStream {
        let side = |v: &str| {
            Arc::new(Schema::new(vec![
                Field::new("k", DataType::Int64, true),
                Field::new(v, DataType::Utf8, true),
            ]))
        };
        let inputs = [side("v"), side("w")];
        let emit = Emit::of(join_type).unwrap();
        let fields: Vec<Field> = match emit {
            Emit::Pairs(_) => inputs
                .iter()
                .flat_map(|s| s.fields().iter().map(|f| f.as_ref().clone()))
                .collect(),
            Emit::Semi(s) | Emit::Anti(s) => inputs[s]
                .fields()
                .iter()
                .map(|f| f.as_ref().clone())
                .collect(),
        };
        let row_format = |s: &SchemaRef| {
            let types = s.fields().iter().map(|f| f.data_type().clone()).collect();
            RowCodec::try_new(types, "join rows").unwrap()
        };
        let key: PhysicalExprRef = Arc::new(Column::new("k", 0));
        RegularJoinStream {
            codec: EntryCodec::new(inputs.clone()),
            nullable: inputs.clone(),
            rows: [row_format(&inputs[0]), row_format(&inputs[1])],
            output: JoinOutput {
                inputs,
                schema: Arc::new(Schema::new(fields)),
                projection: None,
                emit,
            },
            on: vec![(Arc::clone(&key), key)],
            filter: None,
            null_equals_null: false,
            key_types: vec![DataType::Int64],
            keys: RowCodec::try_new(vec![DataType::Int64], "join keys").unwrap(),
            sides: [SideState::default(), SideState::default()],
            append_only: false,
            unknown: 0,
            warned: 0,
            ttl: None,
            rocks: None,
            rocksdb: None,
            partition: 0,
            partitions: 1,
        }
    }

    /// Feeds rows `(key, value, kind)` to side `side`; the output as `op|col|col...` lines.
    fn feed(
        join: &mut RegularJoinStream,
        side: usize,
        rows: &[(Option<i64>, &str, RowKind)],
    ) -> Vec<String> {
        let schema = Arc::clone(&join.output.inputs[side]);
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(
                    rows.iter().map(|r| r.0).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap();
        let kinds = Int8Array::from(rows.iter().map(|r| r.2 as i8).collect::<Vec<_>>());
        let mut out = Vec::new();
        let inputs = [NO_WATERMARK; 2];
        let mut ctx = Context::for_test(&inputs, &mut out);
        join.on_data(
            side,
            StreamBatch::new(batch).with_kinds(Some(kinds)),
            &mut ctx,
        )
        .unwrap();
        let mut lines = Vec::new();
        for b in out {
            for i in 0..b.batch.num_rows() {
                let kind = crate::changelog::kind_at(b.kinds.as_deref(), i).unwrap();
                let cells: Vec<String> = b
                    .batch
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, i).unwrap())
                    .collect();
                lines.push(format!("{}|{}", kind.short(), cells.join("|")));
            }
        }
        lines
    }

    use RowKind::{Delete as D, Insert as I};

    /// A left row is padded until its first partner comes, paired with each partner, and
    /// padded again when the last partner goes; copies come and go one by one; a NULL key never
    /// matches; a retraction of a row not held changes nothing.
    #[test]
    fn left_join_takes_padding_back_and_gives_it_back() {
        let mut j = join(JoinType::Left);
        assert_eq!(feed(&mut j, 0, &[(Some(1), "a", I)]), ["+I|1|a||"]);
        assert_eq!(
            feed(&mut j, 1, &[(Some(1), "x", I)]),
            ["-D|1|a||", "+I|1|a|1|x"]
        );
        assert_eq!(feed(&mut j, 1, &[(Some(1), "y", I)]), ["+I|1|a|1|y"]);
        assert_eq!(feed(&mut j, 1, &[(Some(1), "x", D)]), ["-D|1|a|1|x"]);
        assert_eq!(
            feed(&mut j, 1, &[(Some(1), "y", D)]),
            ["-D|1|a|1|y", "+I|1|a||"]
        );
        assert_eq!(feed(&mut j, 0, &[(Some(1), "a", D)]), ["-D|1|a||"]);
        // Two copies of a left row: each padded, each paired.
        assert_eq!(
            feed(&mut j, 0, &[(Some(2), "b", I), (Some(2), "b", I)]),
            ["+I|2|b||", "+I|2|b||"]
        );
        assert_eq!(
            feed(&mut j, 1, &[(Some(2), "z", I)]),
            ["-D|2|b||", "+I|2|b|2|z", "-D|2|b||", "+I|2|b|2|z"]
        );
        assert_eq!(feed(&mut j, 0, &[(Some(2), "b", D)]), ["-D|2|b|2|z"]);
        assert_eq!(feed(&mut j, 1, &[(Some(3), "q", D)]), Vec::<String>::new());
        assert_eq!(j.unknown, 1);
        // A NULL key: padded on the outer side, never matched.
        assert_eq!(feed(&mut j, 0, &[(None, "n", I)]), ["+I||n||"]);
        assert_eq!(feed(&mut j, 1, &[(None, "m", I)]), Vec::<String>::new());
        assert_eq!(feed(&mut j, 0, &[(None, "n", D)]), ["-D||n||"]);
        assert_eq!((j.sides[0].rows, j.sides[1].rows), (1, 1));
    }

    /// With RocksDB and a cache written back after every batch, the join gives the same
    /// changes as in memory: every batch reads its keys' rows back from the database.
    #[test]
    fn rocksdb_state_gives_the_same_changes() {
        let root = tempfile::tempdir().unwrap();
        let mut j = join(JoinType::Left);
        let mut rocks = RocksSides::try_new(root.path(), "regular-join-test").unwrap();
        rocks.capacity = 0;
        j.rocks = Some(rocks);
        assert_eq!(feed(&mut j, 0, &[(Some(1), "a", I)]), ["+I|1|a||"]);
        assert_eq!((j.sides[0].rows, j.sides[1].rows), (0, 0), "written back");
        assert_eq!(
            feed(&mut j, 1, &[(Some(1), "x", I)]),
            ["-D|1|a||", "+I|1|a|1|x"]
        );
        assert_eq!(feed(&mut j, 1, &[(Some(1), "y", I)]), ["+I|1|a|1|y"]);
        assert_eq!(feed(&mut j, 1, &[(Some(1), "x", D)]), ["-D|1|a|1|x"]);
        assert_eq!(
            feed(&mut j, 1, &[(Some(1), "y", D)]),
            ["-D|1|a|1|y", "+I|1|a||"]
        );
        assert_eq!(feed(&mut j, 0, &[(Some(1), "a", D)]), ["-D|1|a||"]);
        // Deleted keys stay deleted: a new right row meets no left row.
        assert_eq!(feed(&mut j, 1, &[(Some(1), "z", I)]), Vec::<String>::new());
        assert_eq!(feed(&mut j, 1, &[(Some(3), "q", D)]), Vec::<String>::new());
        assert_eq!(j.unknown, 1);
        // A NULL key: padded on the outer side, kept, and taken back.
        assert_eq!(feed(&mut j, 0, &[(None, "n", I)]), ["+I||n||"]);
        assert_eq!(feed(&mut j, 0, &[(None, "n", D)]), ["-D||n||"]);
    }

    /// With a time to live, the timer sweeps expired rows while no rows come.
    #[test]
    fn the_timer_sweeps_expired_rows() {
        let mut j = join(JoinType::Inner);
        j.ttl = Some(TimeToLive::new(std::time::Duration::from_millis(20)));
        assert_eq!(j.next_timer(), None);
        feed(&mut j, 0, &[(Some(1), "a", I)]);
        let due = j.next_timer().expect("a sweep is due while rows are held");
        let inputs = [NO_WATERMARK, NO_WATERMARK];
        let mut out = Vec::new();
        let mut ctx = Context::for_test(&inputs, &mut out);
        j.on_timer(due.max(now_ms()) + 100, &mut ctx).unwrap();
        assert_eq!((j.sides[0].rows, j.sides[1].rows), (0, 0));
        assert_eq!(j.next_timer(), None);
        assert!(out.is_empty(), "expiry emits nothing");
    }

    /// With a time to live, a row not written for that long is forgotten: a partner arriving
    /// later meets nothing, and nothing is taken back.
    #[test]
    fn expired_rows_meet_no_partner() {
        let mut j = join(JoinType::Inner);
        j.ttl = Some(TimeToLive::new(std::time::Duration::from_millis(20)));
        assert_eq!(feed(&mut j, 0, &[(Some(1), "a", I)]), Vec::<String>::new());
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(feed(&mut j, 1, &[(Some(1), "x", I)]), Vec::<String>::new());
        assert_eq!((j.sides[0].rows, j.sides[1].rows), (0, 1));
        // Within the time to live, rows meet.
        let mut j = join(JoinType::Inner);
        j.ttl = Some(TimeToLive::new(std::time::Duration::from_secs(3600)));
        feed(&mut j, 0, &[(Some(1), "a", I)]);
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert_eq!(feed(&mut j, 1, &[(Some(1), "x", I)]), ["+I|1|a|1|x"]);
    }

    /// Rows of both sides in one batch each way, an inner join: pairs come and go.
    #[test]
    fn inner_join_pairs_and_takes_pairs_back() {
        let mut j = join(JoinType::Inner);
        assert_eq!(
            feed(
                &mut j,
                0,
                &[(Some(1), "a", I), (Some(2), "b", I), (None, "n", I)]
            ),
            Vec::<String>::new()
        );
        // The NULL key of an inner side is not even kept.
        assert_eq!(j.sides[0].rows, 2);
        assert_eq!(
            feed(
                &mut j,
                1,
                &[(Some(1), "x", I), (Some(1), "x", D), (Some(2), "y", I)]
            ),
            ["+I|1|a|1|x", "-D|1|a|1|x", "+I|2|b|2|y"]
        );
        assert_eq!(feed(&mut j, 0, &[(Some(2), "b", D)]), ["-D|2|b|2|y"]);
    }

    /// A hot key's pairs come in bounded batches, not one batch of every pair of the input.
    #[test]
    fn many_pairs_come_in_several_batches() {
        let mut j = join(JoinType::Inner);
        let left: Vec<String> = (0..5000).map(|i| format!("l{i}")).collect();
        let rows: Vec<(Option<i64>, &str, RowKind)> =
            left.iter().map(|v| (Some(1), v.as_str(), I)).collect();
        feed(&mut j, 0, &rows);
        let batch = RecordBatch::try_new(
            Arc::clone(&j.output.inputs[1]),
            vec![
                Arc::new(Int64Array::from(vec![1, 1, 1])),
                Arc::new(StringArray::from(vec!["x", "y", "z"])),
            ],
        )
        .unwrap();
        let mut out = Vec::new();
        let inputs = [NO_WATERMARK; 2];
        let mut ctx = Context::for_test(&inputs, &mut out);
        j.on_data(1, StreamBatch::new(batch), &mut ctx).unwrap();
        let sizes: Vec<usize> = out.iter().map(|b| b.batch.num_rows()).collect();
        assert_eq!(sizes, [10_000, 5_000]);
    }

    /// Semi: a row comes with its first partner and goes with its last; anti the other way.
    #[test]
    fn semi_and_anti_rows_follow_their_partners() {
        let mut semi = join(JoinType::LeftSemi);
        assert_eq!(
            feed(&mut semi, 0, &[(Some(1), "a", I)]),
            Vec::<String>::new()
        );
        assert_eq!(feed(&mut semi, 1, &[(Some(1), "x", I)]), ["+I|1|a"]);
        assert_eq!(
            feed(&mut semi, 1, &[(Some(1), "y", I)]),
            Vec::<String>::new()
        );
        assert_eq!(
            feed(&mut semi, 1, &[(Some(1), "x", D)]),
            Vec::<String>::new()
        );
        assert_eq!(feed(&mut semi, 1, &[(Some(1), "y", D)]), ["-D|1|a"]);
        assert_eq!(feed(&mut semi, 1, &[(Some(1), "y", I)]), ["+I|1|a"]);
        assert_eq!(feed(&mut semi, 0, &[(Some(1), "a", D)]), ["-D|1|a"]);

        let mut anti = join(JoinType::LeftAnti);
        assert_eq!(feed(&mut anti, 0, &[(Some(1), "a", I)]), ["+I|1|a"]);
        assert_eq!(feed(&mut anti, 1, &[(Some(1), "x", I)]), ["-D|1|a"]);
        assert_eq!(feed(&mut anti, 1, &[(Some(1), "x", D)]), ["+I|1|a"]);
        assert_eq!(feed(&mut anti, 0, &[(None, "n", I)]), ["+I||n"]);

        // The right side's rows as the output.
        let mut right_semi = join(JoinType::RightSemi);
        assert_eq!(
            feed(&mut right_semi, 1, &[(Some(5), "r", I)]),
            Vec::<String>::new()
        );
        assert_eq!(
            feed(&mut right_semi, 0, &[(Some(5), "l", I), (Some(5), "m", I)]),
            ["+I|5|r"]
        );
        assert_eq!(
            feed(&mut right_semi, 0, &[(Some(5), "l", D)]),
            Vec::<String>::new()
        );
        assert_eq!(feed(&mut right_semi, 0, &[(Some(5), "m", D)]), ["-D|5|r"]);
    }
}
