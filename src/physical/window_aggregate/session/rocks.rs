//! SESSION rows in RocksDB (`state.backend` = `rocksdb`).
//!
//! The buffered rows of open sessions, the bulk of SESSION state, live in RocksDB on local disk;
//! the index of open sessions (bounds, partition key, where their rows are) stays in memory.
//!
//! Rows are stored in *segments*: a session gets a new segment when it opens, and its rows go to
//! its first segment. Sessions that merge keep their segments, so a merge moves no rows. The key
//! of a row is `r`, its segment (8 bytes, big-endian) and a row number (8 bytes); its value is the
//! row's group keys, aggregate arguments and FILTER masks in Arrow's row format. A session fires
//! by reading its segments in key order, and its rows are deleted as they are read.
//!
//! At a checkpoint the index is written into the database too, one entry per open session under
//! `i` and its first segment: bounds, segments with their row counts, and the partition key in
//! row format. The database is then checkpointed (RocksDB's checkpoint API). Restoring at the same
//! parallelism adopts the database and reads the index back; at another one, each session whose
//! partition key hashes to the task is copied, rows and all, into new segments.

use std::path::Path;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::row::Rows;
use datafusion::common::{Result, exec_datafusion_err};
use rocksdb::{DB, WriteBatch};

use crate::physical::aggregation::AggregateInputs;
use crate::state::rocks::{Entry, RowCodec, StateDb, scan_prefix};

const ROW: u8 = b'r';
const INDEX: u8 = b'i';

/// Rows read before they are decoded and aggregated.
pub const CHUNK_ROWS: usize = 65_536;

fn segment_prefix(segment: u64) -> [u8; 9] {
    let mut key = [ROW; 9];
    key[1..].copy_from_slice(&segment.to_be_bytes());
    key
}

fn row_key(segment: u64, row: u64) -> [u8; 17] {
    let mut key = [ROW; 17];
    key[1..9].copy_from_slice(&segment.to_be_bytes());
    key[9..].copy_from_slice(&row.to_be_bytes());
    key
}

/// An open session as the index stores it.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct IndexEntry {
    pub start: i64,
    pub end: i64,
    /// (segment, rows stored under it).
    pub segments: Vec<(u64, usize)>,
    /// The partition key in row format.
    pub partition: Vec<u8>,
}

impl IndexEntry {
    fn key(&self) -> [u8; 9] {
        let mut key = segment_prefix(self.segments.first().map_or(0, |s| s.0));
        key[0] = INDEX;
        key
    }

    fn encode(&self) -> Vec<u8> {
        let mut value = Vec::with_capacity(20 + 16 * self.segments.len() + self.partition.len());
        value.extend_from_slice(&self.start.to_be_bytes());
        value.extend_from_slice(&self.end.to_be_bytes());
        value.extend_from_slice(&(self.segments.len() as u32).to_be_bytes());
        for &(segment, rows) in &self.segments {
            value.extend_from_slice(&segment.to_be_bytes());
            value.extend_from_slice(&(rows as u64).to_be_bytes());
        }
        value.extend_from_slice(&self.partition);
        value
    }

    fn decode(value: &[u8]) -> Result<Self> {
        let malformed = || exec_datafusion_err!("RocksDB state: a malformed SESSION index entry");
        let u64_at = |at: usize| -> Result<u64> {
            let bytes = value.get(at..at + 8).ok_or_else(malformed)?;
            Ok(u64::from_be_bytes(
                bytes.try_into().map_err(|_| malformed())?,
            ))
        };
        let start = u64_at(0)? as i64;
        let end = u64_at(8)? as i64;
        let count = value.get(16..20).ok_or_else(malformed)?;
        let count = u32::from_be_bytes(count.try_into().map_err(|_| malformed())?) as usize;
        let mut segments = Vec::with_capacity(count);
        let mut at = 20;
        for _ in 0..count {
            segments.push((u64_at(at)?, u64_at(at + 8)? as usize));
            at += 16;
        }
        if segments.is_empty() {
            return Err(malformed());
        }
        Ok(Self {
            start,
            end,
            segments,
            partition: value.get(at..).ok_or_else(malformed)?.to_vec(),
        })
    }
}

/// Where and how the rows of open sessions are stored (see the module docs).
pub(super) struct RocksRows {
    db: StateDb,
    /// Group keys, aggregate arguments, FILTER masks.
    values: RowCodec,
    partition: RowCodec,
    keys: usize,
    arguments: Vec<usize>,
    filtered: Vec<bool>,
    next_segment: u64,
    next_row: u64,
}

impl RocksRows {
    /// An empty store in a new database under `root`, for rows of the given column types.
    pub fn try_new(
        root: &Path,
        label: &str,
        partition_types: Vec<DataType>,
        key_types: Vec<DataType>,
        argument_types: Vec<Vec<DataType>>,
        filtered: Vec<bool>,
    ) -> Result<Self> {
        let mut value_types = key_types.clone();
        for types in &argument_types {
            value_types.extend(types.iter().cloned());
        }
        value_types.extend(filtered.iter().filter(|f| **f).map(|_| DataType::Boolean));
        Ok(Self {
            values: RowCodec::try_new(value_types, "SESSION rows")?,
            partition: RowCodec::try_new(partition_types, "SESSION partition keys")?,
            keys: key_types.len(),
            arguments: argument_types.iter().map(Vec::len).collect(),
            filtered,
            db: StateDb::create(root, label)?,
            next_segment: 0,
            next_row: 0,
        })
    }

    /// Replaces the (empty) database with one restored from a checkpoint (its files in `files`,
    /// moved under `root`) and returns its index; `next_segment` and `next_row` are the
    /// counters saved with it.
    pub fn adopt(
        &mut self,
        root: &Path,
        label: &str,
        files: &Path,
        next_segment: u64,
        next_row: u64,
    ) -> Result<Vec<IndexEntry>> {
        self.db = StateDb::adopt(root, label, files)?;
        self.next_segment = next_segment;
        self.next_row = next_row;
        read_index(self.db.db())
    }

    /// The database (checkpoints: after [`write_index`](Self::write_index)).
    pub fn db(&self) -> &StateDb {
        &self.db
    }

    /// The counters to save with a checkpoint: next segment and next row number.
    pub fn counters(&self) -> (u64, u64) {
        (self.next_segment, self.next_row)
    }

    /// Segments below `next` are handed out.
    pub fn set_next_segment(&mut self, next: u64) {
        self.next_segment = next;
    }

    pub fn new_segment(&mut self) -> u64 {
        self.next_segment += 1;
        self.next_segment - 1
    }

    /// Stores rows of one input batch: `placed` lists (row, segment) of the rows to keep.
    pub fn write(
        &mut self,
        keys: &[ArrayRef],
        inputs: &AggregateInputs,
        placed: &[(usize, u64)],
    ) -> Result<()> {
        if placed.is_empty() {
            return Ok(());
        }
        let mut columns: Vec<ArrayRef> = keys.to_vec();
        for args in &inputs.values {
            columns.extend(args.iter().cloned());
        }
        for mask in inputs.filters.iter().flatten() {
            columns.push(std::sync::Arc::new(mask.clone()));
        }
        let rows = self.values.convert(&columns)?;
        let mut batch = WriteBatch::default();
        for &(row, segment) in placed {
            let value = rows.as_ref().map_or(&[][..], |r| r.row(row).data());
            batch.put(row_key(segment, self.next_row), value);
            self.next_row += 1;
        }
        self.db.write(batch)
    }

    /// The stored rows of `segment`, in the order they were written.
    pub fn rows_of(&self, segment: u64) -> impl Iterator<Item = Result<Entry>> + '_ {
        scan_prefix(self.db.db(), segment_prefix(segment))
    }

    /// Decodes stored rows into group keys and aggregate inputs.
    pub fn decode(&self, values: &[Box<[u8]>]) -> Result<(Vec<ArrayRef>, AggregateInputs)> {
        let mut columns = self.values.decode(values)?.into_iter();
        let keys = columns.by_ref().take(self.keys).collect();
        let values = self
            .arguments
            .iter()
            .map(|n| columns.by_ref().take(*n).collect())
            .collect();
        let filters = self
            .filtered
            .iter()
            .map(|f| {
                f.then(|| columns.next().map(|c| c.as_boolean().clone()))
                    .flatten()
            })
            .collect();
        Ok((keys, AggregateInputs { values, filters }))
    }

    /// Deletes the stored rows with `keys`.
    pub fn delete(&self, keys: &[Box<[u8]>]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for key in keys {
            batch.delete(key);
        }
        self.db.write(batch)
    }

    /// The partition keys of `entries` as columns (none without partition keys).
    pub fn partition_columns(&self, entries: &[IndexEntry]) -> Result<Vec<ArrayRef>> {
        let rows: Vec<&[u8]> = entries.iter().map(|e| e.partition.as_slice()).collect();
        self.partition.decode(&rows)
    }

    /// Partition key values in row format (`None` without partition keys).
    pub fn partition_rows(&self, columns: &[ArrayRef]) -> Result<Option<Rows>> {
        self.partition.convert(columns)
    }

    /// Replaces the stored index with `entries` (before a checkpoint).
    pub fn write_index(&mut self, entries: impl Iterator<Item = IndexEntry>) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete_range([INDEX], [INDEX + 1]);
        for entry in entries {
            batch.put(entry.key(), entry.encode());
        }
        self.db.write(batch)
    }

    /// Where a checkpoint of `epoch` is staged.
    /// Copies the rows of `segment` of the restored database `old` into a new segment, in
    /// order, numbered as new rows; the new segment.
    pub fn copy_segment(&mut self, old: &DB, segment: u64) -> Result<u64> {
        let to = self.new_segment();
        let mut batch = WriteBatch::default();
        for entry in scan_prefix(old, segment_prefix(segment)) {
            let (_, value) = entry?;
            batch.put(row_key(to, self.next_row), value);
            self.next_row += 1;
            if batch.len() >= CHUNK_ROWS {
                self.db.write(std::mem::take(&mut batch))?;
            }
        }
        self.db.write(batch)?;
        Ok(to)
    }
}

/// The index stored in `db` by the last checkpoint.
pub(super) fn read_index(db: &DB) -> Result<Vec<IndexEntry>> {
    scan_prefix(db, [INDEX])
        .map(|entry| IndexEntry::decode(&entry?.1))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(root: &Path) -> RocksRows {
        RocksRows::try_new(
            root,
            "session",
            vec![DataType::Int64],
            vec![DataType::Utf8],
            vec![vec![DataType::Int64]],
            vec![false],
        )
        .unwrap()
    }

    fn inputs(values: Vec<i64>) -> AggregateInputs {
        AggregateInputs {
            values: vec![vec![std::sync::Arc::new(
                datafusion::arrow::array::Int64Array::from(values),
            )]],
            filters: vec![None],
        }
    }

    /// Rows copied into a new segment (restoring at another parallelism) are renumbered, so
    /// rows added to that segment later never replace them.
    #[test]
    fn copied_segments_keep_every_row_and_take_new_ones() {
        let root = tempfile::tempdir().unwrap();
        let mut old = store(root.path());
        let segment = old.new_segment();
        let keys: Vec<ArrayRef> = vec![std::sync::Arc::new(
            datafusion::arrow::array::StringArray::from(vec!["a", "b", "c"]),
        )];
        old.write(
            &keys,
            &inputs(vec![1, 2, 3]),
            &[(0, segment), (1, segment), (2, segment)],
        )
        .unwrap();
        let mut new = store(root.path());
        let copied = new.copy_segment(old.db.db(), segment).unwrap();
        let one: Vec<ArrayRef> = vec![std::sync::Arc::new(
            datafusion::arrow::array::StringArray::from(vec!["d"]),
        )];
        new.write(&one, &inputs(vec![4]), &[(0, copied)]).unwrap();
        let values: Vec<Box<[u8]>> = new.rows_of(copied).map(|e| e.unwrap().1).collect();
        let (keys, inputs) = new.decode(&values).unwrap();
        let keys: Vec<&str> = keys[0].as_string::<i32>().iter().flatten().collect();
        assert_eq!(keys, vec!["a", "b", "c", "d"]);
        let sums = inputs.values[0][0].as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(sums.values().to_vec(), vec![1, 2, 3, 4]);
    }

    #[test]
    fn index_entries_round_trip() {
        let entry = IndexEntry {
            start: -5,
            end: 1_700_000_000_000,
            segments: vec![(7, 3), (2, 1)],
            partition: vec![1, 2, 3],
        };
        assert_eq!(IndexEntry::decode(&entry.encode()).unwrap(), entry);
        assert!(IndexEntry::decode(&entry.encode()[..30]).is_err());
    }

    #[test]
    fn row_keys_of_a_segment_share_its_prefix_and_sort_by_row() {
        assert!(row_key(3, 9).starts_with(&segment_prefix(3)));
        assert!(!row_key(4, 0).starts_with(&segment_prefix(3)));
        assert!(row_key(3, 255) < row_key(3, 256));
        assert!(row_key(3, u64::MAX) < row_key(4, 0));
    }
}
