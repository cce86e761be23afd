//! SESSION state in checkpoints: the buffered rows of open sessions.
//!
//! A snapshot is one Arrow batch with a row per buffered row: the session's bounds
//! (`__start`, `__end`), the partition key values (`p0..`), the group keys (`k0..`), the
//! aggregate arguments (`a{i}_{j}`) and FILTER masks (`f{i}`). Restoring interns the partition
//! keys again and rebuilds each session from the rows with the same key and bounds, all in one
//! buffer. At another parallelism each task keeps the rows whose partition keys hash to it, as
//! the exchange routes their future rows (`OperatorCheckpoint::batches`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Int64Array, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::EmitTo;
use serde::{Deserialize, Serialize};

use super::rocks::{IndexEntry, read_index};
use super::{Buffered, Session, SessionAggregateStream};
use crate::physical::aggregation::AggregateInputs;
use crate::physical::message::NO_WATERMARK;
use crate::physical::operator::RestoredWatermarks;
use crate::physical::operator::checkpoint::{
    OperatorCheckpoint, Restored, RestoredDatabases, SavedBackend, min_watermark,
};
use crate::state::redistribute::partitions_of;
use crate::state::rocks::StateDb;

/// What a partition of a SESSION aggregation records in a checkpoint besides its rows.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SessionMeta {
    /// The input's watermark.
    watermark: i64,
    /// Partition key columns of the rows (after `__start` and `__end`).
    partition_keys: usize,
    /// Group key columns.
    keys: usize,
    /// RocksDB: the next segment number to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_segment: Option<u64>,
    /// RocksDB: the next row number to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next_row: Option<u64>,
    /// RocksDB: says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<SavedBackend>,
}

impl SessionAggregateStream {
    pub(super) fn meta(&self, watermark: i64) -> SessionMeta {
        let counters = self.rocks.as_ref().map(|rocks| rocks.counters());
        SessionMeta {
            watermark,
            partition_keys: self.partition_exprs.len(),
            keys: self.keys.len(),
            next_segment: counters.map(|(segment, _)| segment),
            next_row: counters.map(|(_, row)| row),
            backend: counters.map(|_| SavedBackend::Rocksdb),
        }
    }

    /// RocksDB: writes the index of open sessions into the database, checkpoints it and hands
    /// its files to the checkpoint coordinator.
    pub(super) fn snapshot_rocks(
        &mut self,
        epoch: u64,
        watermark: i64,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        let partition_values = self.partition_values()?;
        let meta = self.meta(watermark);
        let Some(rocks) = self.rocks.as_mut() else {
            return Ok(());
        };
        let partition_rows = rocks.partition_rows(&partition_values)?;
        let partition_rows = &partition_rows;
        let entries = self.sessions.iter().enumerate().flat_map(|(pk, list)| {
            list.iter().map(move |s| IndexEntry {
                start: s.start,
                end: s.end,
                segments: s.rows.clone(),
                partition: partition_rows
                    .as_ref()
                    .map_or_else(Vec::new, |r| r.row(pk).data().to_vec()),
            })
        });
        rocks.write_index(entries)?;
        checkpoint.snapshot_db(epoch, &meta, rocks.db())
    }

    /// The interned partition key values, in id order (none without partition keys).
    fn partition_values(&mut self) -> Result<Vec<ArrayRef>> {
        let Some(ids) = self.partition_ids.as_mut() else {
            return Ok(Vec::new());
        };
        let values = ids.emit(EmitTo::All)?;
        // Interning them again in order gives every key its id back.
        ids.intern(&values, &mut self.scratch)?;
        if self.scratch.iter().enumerate().any(|(i, id)| *id != i) {
            return internal_err!("SESSION partition keys changed ids when re-interned");
        }
        Ok(values)
    }

    /// The buffered rows of every open session as one batch (`None` without open sessions).
    pub(super) fn snapshot_rows(&self) -> Result<Option<RecordBatch>> {
        let (mut starts, mut ends, mut rows) = (Vec::new(), Vec::new(), Vec::new());
        for session in self.sessions.iter().flatten() {
            rows.extend_from_slice(&session.rows);
            starts.extend(std::iter::repeat_n(session.start, session.rows.len()));
            ends.extend(std::iter::repeat_n(session.end, session.rows.len()));
        }
        if rows.is_empty() {
            return Ok(None);
        }
        let gathered = self.gather(&rows, true)?;
        let mut fields = vec![
            Field::new("__start", DataType::Int64, false),
            Field::new("__end", DataType::Int64, false),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(starts)),
            Arc::new(Int64Array::from(ends)),
        ];
        let mut push = |name: String, column: ArrayRef| {
            fields.push(Field::new(name, column.data_type().clone(), true));
            columns.push(column);
        };
        for (p, column) in gathered.partition.into_iter().enumerate() {
            push(format!("p{p}"), column);
        }
        for (k, column) in gathered.keys.into_iter().enumerate() {
            push(format!("k{k}"), column);
        }
        let AggregateInputs { values, filters } = gathered.inputs;
        for (a, (args, filter)) in values.into_iter().zip(filters).enumerate() {
            for (v, column) in args.into_iter().enumerate() {
                push(format!("a{a}_{v}"), column);
            }
            if let Some(mask) = filter {
                push(format!("f{a}"), Arc::new(mask));
            }
        }
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            columns,
        )?))
    }

    /// Restores the sessions of the checkpoint the job resumes from.
    pub(super) fn restore_from(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let metas: Vec<SessionMeta> = restored.metas("SESSION")?;
        let watermark = min_watermark(metas.iter().map(|m| m.watermark), NO_WATERMARK);
        let watermarks = RestoredWatermarks::all(1, watermark);
        match (
            restored.databases(self.rocks.is_some())?,
            self.rocks.as_mut(),
        ) {
            (RestoredDatabases::Own(saved, dir), Some(rocks)) => {
                let Some((root, label)) = &self.rocks_dir else {
                    return internal_err!("RocksDB SESSION state without its directory");
                };
                let own: SessionMeta = saved.meta("SESSION")?;
                let (Some(next_segment), Some(next_row)) = (own.next_segment, own.next_row) else {
                    return internal_err!("a RocksDB SESSION checkpoint without its counters");
                };
                let entries = rocks.adopt(root, label, dir, next_segment, next_row)?;
                checkpoint.adopted(saved);
                self.add_indexed(entries)?;
            }
            (RestoredDatabases::Others(dirs), _) => {
                for dir in dirs {
                    self.restore_rekeyed(dir)?;
                }
            }
            _ => {}
        }
        // Rows: `__start`, `__end`, then the partition keys the exchange hashes.
        let batches = checkpoint.batches(restored, 2..2 + self.partition_exprs.len())?;
        let Some(first) = batches.first() else {
            return Ok(watermarks);
        };
        let rows = concat_batches(&first.schema(), &batches)?;
        if rows.num_rows() > 0 {
            self.restore_rows(&rows)?;
        }
        Ok(watermarks)
    }

    /// Adds the open sessions of a restored database (opened read-only from `files`) whose
    /// partition keys hash to this task, copying their rows: restoring at another parallelism.
    fn restore_rekeyed(&mut self, files: &Path) -> Result<()> {
        let old = StateDb::open_read_only(files)?;
        let entries = read_index(&old)?;
        let Some(rocks) = self.rocks.as_mut() else {
            return internal_err!("restoring RocksDB SESSION state without RocksDB");
        };
        let columns = rocks.partition_columns(&entries)?;
        let owners = partitions_of(&columns, entries.len(), self.partitions)?;
        let mut owned = Vec::new();
        for (mut entry, owner) in entries.into_iter().zip(owners) {
            if owner != self.partition {
                continue;
            }
            for segment in &mut entry.segments {
                segment.0 = rocks.copy_segment(&old, segment.0)?;
            }
            owned.push(entry);
        }
        self.add_indexed(owned)
    }

    /// Adds open sessions whose rows are in the database.
    fn add_indexed(&mut self, entries: Vec<IndexEntry>) -> Result<()> {
        let Some(rocks) = self.rocks.as_mut() else {
            return internal_err!("restoring RocksDB SESSION state without RocksDB");
        };
        let columns = rocks.partition_columns(&entries)?;
        let last_segment = entries
            .iter()
            .flat_map(|e| e.segments.iter().map(|s| s.0))
            .max();
        if let Some(last) = last_segment {
            let (next, _) = rocks.counters();
            rocks.set_next_segment(next.max(last + 1));
        }
        match self.partition_ids.as_mut() {
            Some(ids) => ids.intern(&columns, &mut self.scratch)?,
            None => {
                self.scratch.clear();
                self.scratch.resize(entries.len(), 0);
            }
        }
        for (i, entry) in entries.into_iter().enumerate() {
            let pk = self.scratch[i];
            if pk >= self.sessions.len() {
                self.sessions.resize_with(pk + 1, Vec::new);
            }
            self.min_end = self.min_end.min(entry.end);
            self.sessions[pk].push(Session {
                start: entry.start,
                end: entry.end,
                rows: entry.segments,
            });
        }
        for list in &mut self.sessions {
            list.sort_by_key(|s| s.start);
        }
        Ok(())
    }

    fn restore_rows(&mut self, rows: &RecordBatch) -> Result<()> {
        let n = rows.num_rows();
        let columns = rows.columns();
        let schema = rows.schema();
        let widths: usize = (0..self.aggregates.len())
            .map(|a| {
                let prefix = format!("a{a}_");
                let values = schema
                    .fields()
                    .iter()
                    .filter(|f| f.name().starts_with(&prefix));
                values.count() + usize::from(schema.index_of(&format!("f{a}")).is_ok())
            })
            .sum();
        let expected = 2 + self.partition_exprs.len() + self.keys.len() + widths;
        let bounds =
            |i: usize| columns[i].data_type() == &datafusion::arrow::datatypes::DataType::Int64;
        if columns.len() != expected || !bounds(0) || !bounds(1) {
            return datafusion::common::exec_err!(
                "the checkpointed SESSION state has {} columns where this query needs {expected}; \
                 it was written by another version of the query",
                columns.len()
            );
        }
        let starts = columns[0].as_primitive::<Int64Type>();
        let ends = columns[1].as_primitive::<Int64Type>();
        let mut at = 2;
        let mut take = |count: usize| {
            let taken = columns[at..at + count].to_vec();
            at += count;
            taken
        };
        let partition = take(self.partition_exprs.len());
        let keys = take(self.keys.len());
        let mut values = Vec::with_capacity(self.aggregates.len());
        let mut filters = Vec::with_capacity(self.aggregates.len());
        for a in 0..self.aggregates.len() {
            let width = schema
                .fields()
                .iter()
                .filter(|f| f.name().starts_with(&format!("a{a}_")))
                .count();
            values.push(take(width));
            let filter = schema.index_of(&format!("f{a}")).ok().map(|i| {
                let mask: BooleanArray = columns[i].as_boolean().clone();
                mask
            });
            if filter.is_some() {
                take(1);
            }
            filters.push(filter);
        }
        match self.partition_ids.as_mut() {
            Some(ids) => ids.intern(&partition, &mut self.scratch)?,
            None => {
                self.scratch.clear();
                self.scratch.resize(n, 0);
            }
        }
        let buffer_id = self.next_buffer;
        self.next_buffer += 1;
        // RocksDB: one new segment per restored session, and (row, segment) of every row.
        let mut next_segment = self.rocks.as_ref().map(|r| r.counters().0);
        let mut placed = Vec::new();
        let mut index: HashMap<(usize, i64, i64), usize> = HashMap::new();
        for i in 0..n {
            let (pk, start, end) = (self.scratch[i], starts.value(i), ends.value(i));
            if pk >= self.sessions.len() {
                self.sessions.resize_with(pk + 1, Vec::new);
            }
            let list = &mut self.sessions[pk];
            let j = *index.entry((pk, start, end)).or_insert_with(|| {
                let rows = match next_segment.as_mut() {
                    Some(segment) => {
                        *segment += 1;
                        vec![(*segment - 1, 0)]
                    }
                    None => Vec::new(),
                };
                list.push(Session { start, end, rows });
                list.len() - 1
            });
            if next_segment.is_some() {
                list[j].rows[0].1 += 1;
                placed.push((i, list[j].rows[0].0));
            } else {
                list[j].rows.push((buffer_id, i));
            }
            self.min_end = self.min_end.min(end);
        }
        for list in &mut self.sessions {
            list.sort_by_key(|s| s.start);
        }
        let inputs = AggregateInputs { values, filters };
        match self.rocks.as_mut() {
            Some(rocks) => {
                if let Some(segment) = next_segment {
                    rocks.set_next_segment(segment);
                }
                rocks.write(&keys, &inputs, &placed)
            }
            None => {
                self.buffers.insert(
                    buffer_id,
                    Buffered {
                        partition,
                        keys,
                        inputs,
                        live: n,
                    },
                );
                Ok(())
            }
        }
    }
}
