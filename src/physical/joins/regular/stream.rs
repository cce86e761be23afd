//! One partition of a regular join, run by the operator
//! [`Driver`](crate::physical::operator::Driver): each row is matched against the other side's
//! rows of its key, the pairs (or the rows of a semi or anti join, or the NULL-padded rows of an
//! outer join) are emitted or taken back, and the row is kept or removed.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, Int8Array, UInt32Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::row::{RowConverter, Rows};
use datafusion::common::Result;
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_plan::joins::utils::JoinFilter;
use serde::{Deserialize, Serialize};

use super::super::window::join_keys;
use super::super::{Emit, Gather, JoinOutput, filter_pairs};
use super::side::{Entry, EntryCodec, SideState};
use crate::changelog::{RowKind, kind_at};
use crate::physical::message::{NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{
    OperatorCheckpoint, Restored, min_input_watermarks, min_watermark,
};
use crate::physical::operator::{Context, Operator, RestoredWatermarks, StateSize, Watermarks};

/// Rows per snapshot batch.
const SNAPSHOT_ROWS: usize = 8192;

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
    /// The keys' row format; `None` without keys (every row has the same, empty key).
    pub(super) keys: Option<RowConverter>,
    /// Each side's rows' row format.
    pub(super) rows: [RowConverter; 2],
    pub(super) sides: [SideState; 2],
    /// The output only appends (an inner or semi join of inputs that only append).
    pub(super) append_only: bool,
    /// Retractions of rows a side did not hold (ignored, as Flink does), and those logged.
    pub(super) unknown: u64,
    pub(super) warned: u64,
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
        let n = rows.num_rows();
        let Some(converter) = &self.keys else {
            return Ok((None, vec![true; n]));
        };
        let keys = join_keys(&self.on, side, rows)?
            .into_iter()
            .zip(&self.key_types)
            .map(|(k, t)| {
                if k.data_type() == t {
                    Ok(k)
                } else {
                    Ok(cast(&k, t)?)
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let valid = (0..n)
            .map(|i| self.null_equals_null || keys.iter().all(|k| k.is_valid(i)))
            .collect();
        Ok((Some(converter.convert_columns(&keys)?), valid))
    }

    /// Matches one input batch of side `x` against the other side's rows, emits what changes,
    /// and keeps or removes its rows.
    fn process(&mut self, x: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        let y = 1 - x;
        let rows = &batch.batch;
        let n = rows.num_rows();
        if n == 0 {
            return Ok(());
        }
        let (keys, valid) = self.key_bytes(x, rows)?;
        let key = |i: usize| -> &[u8] { keys.as_ref().map_or(&[], |k| k.row(i).data()) };
        let encoded = self.rows[x].convert_columns(rows.columns())?;

        // Candidates by key (in row order), then the join filter over all of them at once.
        let mut cand_rows: Vec<u32> = Vec::new();
        let mut cand_entries: Vec<usize> = Vec::new();
        for i in 0..n {
            if !valid[i] {
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
                let parser = self.rows[y].parser();
                let theirs =
                    self.rows[y].convert_rows(cand_rows.iter().zip(&cand_entries).map(
                        |(&i, &j)| parser.parse(&self.sides[y].by_key[key(i as usize)][j].row),
                    ))?;
                let theirs = RecordBatch::try_new_with_options(
                    Arc::clone(&self.nullable[y]),
                    theirs,
                    &RecordBatchOptions::new().with_row_count(Some(cand_rows.len())),
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
        let (mine, theirs) = both(&mut self.sides, x);
        let mut matched: Vec<usize> = Vec::new();
        for i in 0..n {
            let kind = kind_at(batch.kinds.as_deref(), i)?;
            matched.clear();
            while next < cand_rows.len() && cand_rows[next] as usize == i {
                if keep[next] {
                    matched.push(cand_entries[next]);
                }
                next += 1;
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
                mine.add(key(i), row, total);
            }
        }
        if self.unknown > self.warned {
            log::warn!(
                "regular join: {} retraction(s) of rows its state does not hold were ignored",
                self.unknown - self.warned
            );
            self.warned = self.unknown;
        }
        self.emit(x, rows, out, ctx)
    }

    /// Builds and emits the output rows of one batch of side `x`.
    fn emit(&self, x: usize, rows: &RecordBatch, out: Out, ctx: &mut Context<'_>) -> Result<()> {
        if out.kinds.is_empty() {
            return Ok(());
        }
        let y = 1 - x;
        let parser = self.rows[y].parser();
        let theirs = self.rows[y].convert_rows(out.state_rows.iter().map(|r| parser.parse(r)))?;
        let theirs = RecordBatch::try_new_with_options(
            Arc::clone(&self.nullable[y]),
            theirs,
            &RecordBatchOptions::new().with_row_count(Some(out.state_rows.len())),
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

/// What a partition of a regular join records in a checkpoint besides its rows.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct RegularJoinMeta {
    /// Each input's watermark.
    watermarks: Vec<i64>,
}

impl Operator for RegularJoinStream {
    type Meta = RegularJoinMeta;

    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let metas: Vec<RegularJoinMeta> = restored.metas("regular join")?;
        let inputs = min_input_watermarks(metas.iter().map(|m| m.watermarks.as_slice()), 2);
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
            let encoded = self.rows[side].convert_columns(rows.columns())?;
            for i in 0..rows.num_rows() {
                let key: &[u8] = keys.as_ref().map_or(&[], |k| k.row(i).data());
                self.sides[side].restore(
                    key,
                    Entry {
                        row: encoded.row(i).as_ref().into(),
                        count: counts[i],
                        matches: matches[i],
                    },
                );
            }
        }
        let output = min_watermark(inputs.iter().copied(), NO_WATERMARK);
        Ok(RestoredWatermarks {
            inputs: inputs.to_vec(),
            output,
        })
    }

    fn on_data(&mut self, side: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        self.process(side, batch, ctx)
    }

    /// Rows are emitted as they come; the output's watermark is the inputs' smallest.
    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        Ok(ctx.watermark())
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        let mut batches = Vec::new();
        for (side, state) in self.sides.iter().enumerate() {
            let entries: Vec<&Entry> = state.by_key.values().flatten().collect();
            for chunk in entries.chunks(SNAPSHOT_ROWS) {
                let parser = self.rows[side].parser();
                let columns =
                    self.rows[side].convert_rows(chunk.iter().map(|e| parser.parse(&e.row)))?;
                let rows = RecordBatch::try_new_with_options(
                    Arc::clone(&self.nullable[side]),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(chunk.len())),
                )?;
                batches.push(self.codec.encode(
                    side,
                    &rows,
                    chunk.iter().map(|e| e.count).collect(),
                    chunk.iter().map(|e| e.matches).collect(),
                )?);
            }
        }
        let meta = RegularJoinMeta {
            watermarks: watermarks.inputs().to_vec(),
        };
        checkpoint.snapshot(epoch, &meta, batches)
    }

    fn end(&mut self, watermarks: &Watermarks<'_>) -> RegularJoinMeta {
        RegularJoinMeta {
            watermarks: watermarks.inputs().to_vec(),
        }
    }

    fn state_size(&self) -> StateSize {
        StateSize {
            rows: (self.sides[0].rows + self.sides[1].rows) as usize,
            bytes: self.sides[0].bytes + self.sides[1].bytes,
        }
    }
}
