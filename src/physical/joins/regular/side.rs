//! One side's rows of a regular join, per join key, and their checkpoint encoding.
//!
//! Each row is kept with the number of rows of the other side it matches (what an outer, semi
//! or anti join needs to know when that number reaches or leaves 0), and a number of copies:
//! rows are appended as they come (no search for an identical one, which would cost a scan of
//! the key's rows per row), and a checkpoint restores them as stored. Taking a row back
//! searches its key's rows for an identical one.
//!
//! A snapshot batch holds the rows of one side: `__side` (0 left, 1 right), `__count`,
//! `__matches`, then every column of the left input and every column of the right input, all
//! nullable; the other side's columns are NULL.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, AsArray, BooleanArray, UInt8Array, UInt64Array, new_null_array,
};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt8Type, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{HashMap, Result, exec_err};

/// One distinct row of a side.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// The row in its side's row format.
    pub row: Box<[u8]>,
    /// Copies of it held.
    pub count: u64,
    /// Rows of the other side it matches (keys and filter).
    pub matches: u64,
    /// When it was last written (stored, or its matches changed), in processing-time
    /// milliseconds: `table.exec.state.ttl` counts from here.
    pub written: i64,
}

/// One side's rows by join key (see the module docs).
#[derive(Debug, Default)]
pub(super) struct SideState {
    /// Entries per join key (its bytes in the key row format).
    pub by_key: HashMap<Box<[u8]>, Vec<Entry>>,
    /// Rows held, copies counted.
    pub rows: u64,
    /// Bytes of keys and rows held.
    pub bytes: usize,
}

impl SideState {
    /// Adds `row` under `key`, matching `matches` rows of the other side, written at `now`.
    pub fn add(&mut self, key: &[u8], row: &[u8], matches: u64, now: i64) {
        self.rows += 1;
        let entries = match self.by_key.get_mut(key) {
            Some(entries) => entries,
            None => {
                self.bytes += key.len() + 64;
                self.by_key.entry(key.into()).or_default()
            }
        };
        self.bytes += row.len() + 40;
        entries.push(Entry {
            row: row.into(),
            count: 1,
            matches,
            written: now,
        });
    }

    /// Drops the entries last written before `oldest` (`table.exec.state.ttl`); the rows
    /// dropped.
    pub fn expire(&mut self, oldest: i64) -> u64 {
        let before = self.rows;
        let (mut rows, mut bytes) = (self.rows, self.bytes);
        self.by_key.retain(|key, entries| {
            entries.retain(|e| {
                let keep = e.written >= oldest;
                if !keep {
                    rows -= e.count;
                    bytes -= (e.row.len() + 40).min(bytes);
                }
                keep
            });
            if entries.is_empty() {
                bytes -= (key.len() + 64).min(bytes);
            }
            !entries.is_empty()
        });
        (self.rows, self.bytes) = (rows, bytes);
        before - rows
    }

    /// Adds a restored entry.
    pub fn restore(&mut self, key: &[u8], entry: Entry) {
        self.rows += entry.count;
        let entries = match self.by_key.get_mut(key) {
            Some(entries) => entries,
            None => {
                self.bytes += key.len() + 64;
                self.by_key.entry(key.into()).or_default()
            }
        };
        self.bytes += entry.row.len() + 40;
        entries.push(entry);
    }

    /// Takes one copy of `row` under `key` back; returns the rows of the other side it matched,
    /// or `None` if the side holds no such row.
    pub fn remove(&mut self, key: &[u8], row: &[u8]) -> Option<u64> {
        let entries = self.by_key.get_mut(key)?;
        let at = entries.iter().rposition(|e| *e.row == *row)?;
        let matches = entries[at].matches;
        self.rows -= 1;
        entries[at].count -= 1;
        if entries[at].count == 0 {
            let gone = entries.swap_remove(at);
            self.bytes -= (gone.row.len() + 40).min(self.bytes);
            if entries.is_empty() {
                self.by_key.remove(key);
                self.bytes -= (key.len() + 64).min(self.bytes);
            }
        }
        Some(matches)
    }
}

/// Encodes and decodes the entries of both sides (see the module docs). The temporal join
/// stores its rows the same way, with its own names for the two numbers.
#[derive(Debug, Clone)]
pub(in crate::physical::joins) struct EntryCodec {
    schema: SchemaRef,
    inputs: [SchemaRef; 2],
}

impl EntryCodec {
    pub fn new(inputs: [SchemaRef; 2]) -> Self {
        Self::with_numbers(inputs, ["__count", "__matches"])
    }

    /// A codec whose two numbers per row are named `numbers`.
    pub fn with_numbers(inputs: [SchemaRef; 2], numbers: [&str; 2]) -> Self {
        let mut fields = vec![
            Field::new("__side", DataType::UInt8, false),
            Field::new(numbers[0], DataType::UInt64, false),
            Field::new(numbers[1], DataType::UInt64, false),
        ];
        for (side, schema) in inputs.iter().enumerate() {
            let prefix = if side == 0 { "l" } else { "r" };
            for (i, f) in schema.fields().iter().enumerate() {
                fields.push(Field::new(
                    format!("{prefix}{i}"),
                    f.data_type().clone(),
                    true,
                ));
            }
        }
        Self {
            schema: Arc::new(Schema::new(fields)),
            inputs,
        }
    }

    /// Rows of `side` with their counts and matches as one snapshot batch.
    pub fn encode(
        &self,
        side: usize,
        rows: &RecordBatch,
        counts: Vec<u64>,
        matches: Vec<u64>,
    ) -> Result<RecordBatch> {
        let n = rows.num_rows();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt8Array::from(vec![side as u8; n])),
            Arc::new(UInt64Array::from(counts)),
            Arc::new(UInt64Array::from(matches)),
        ];
        for (s, schema) in self.inputs.iter().enumerate() {
            for (i, f) in schema.fields().iter().enumerate() {
                columns.push(if s == side {
                    Arc::clone(rows.column(i))
                } else {
                    new_null_array(f.data_type(), n)
                });
            }
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// The side of a snapshot batch written by [`Self::encode`] (one side per batch).
    pub fn side_of(&self, batch: &RecordBatch) -> Result<usize> {
        self.check(batch)?;
        let sides = batch.column(0).as_primitive::<UInt8Type>();
        let side = if sides.is_empty() {
            0
        } else {
            sides.value(0) as usize
        };
        if side > 1 {
            return exec_err!("a checkpointed join batch of side {side}: the state is damaged");
        }
        Ok(side)
    }

    /// The rows of `side` in a snapshot batch, in that side's schema, with their counts and
    /// matches.
    pub fn decode(
        &self,
        batch: &RecordBatch,
        side: usize,
    ) -> Result<(RecordBatch, Vec<u64>, Vec<u64>)> {
        self.check(batch)?;
        let sides = batch.column(0).as_primitive::<UInt8Type>();
        let mask: BooleanArray = sides.iter().map(|s| Some(s == Some(side as u8))).collect();
        let rows = filter_record_batch(batch, &mask)?;
        let offset = 3 + if side == 0 {
            0
        } else {
            self.inputs[0].fields().len()
        };
        let width = self.inputs[side].fields().len();
        let columns = rows.columns()[offset..offset + width].to_vec();
        let counts = rows
            .column(1)
            .as_primitive::<UInt64Type>()
            .values()
            .to_vec();
        let matches = rows
            .column(2)
            .as_primitive::<UInt64Type>()
            .values()
            .to_vec();
        let nullable = crate::state::rocks::nullable(&self.inputs[side]);
        Ok((RecordBatch::try_new(nullable, columns)?, counts, matches))
    }

    fn check(&self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return exec_err!(
                "the checkpointed join state does not match this query's inputs (columns \
                 changed); restart the job without its checkpoint state (a fresh --state-dir)"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_leave_one_by_one() {
        let mut side = SideState::default();
        side.add(b"k", b"row", 2, 0);
        side.add(b"k", b"row", 2, 0);
        side.add(b"k", b"other", 0, 0);
        assert_eq!(side.rows, 3);
        assert_eq!(side.by_key[&b"k"[..]].len(), 3);
        assert_eq!(side.remove(b"k", b"row"), Some(2));
        assert_eq!(side.remove(b"k", b"missing"), None);
        assert_eq!(side.remove(b"x", b"row"), None);
        assert_eq!(side.remove(b"k", b"row"), Some(2));
        assert_eq!(side.remove(b"k", b"other"), Some(0));
        assert!(side.by_key.is_empty());
        assert_eq!((side.rows, side.bytes), (0, 0));
    }

    /// Entries written before the oldest time kept go, with their keys when nothing is left.
    #[test]
    fn old_entries_expire() {
        let mut side = SideState::default();
        side.add(b"k", b"old", 0, 100);
        side.add(b"k", b"new", 0, 200);
        side.add(b"j", b"old", 0, 150);
        assert_eq!(side.expire(160), 2);
        assert_eq!(side.rows, 1);
        assert_eq!(side.by_key.len(), 1);
        assert_eq!(&*side.by_key[&b"k"[..]][0].row, b"new");
        assert_eq!(side.expire(201), 1);
        assert_eq!((side.rows, side.bytes), (0, 0));
    }
}
