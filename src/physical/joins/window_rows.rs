//! The buffered rows of a window join's open windows, in memory or in RocksDB
//! (`state.backend` = `rocksdb`).
//!
//! In RocksDB the rows of one side falling into one window are stored in entries: the key is
//! the window end (8 bytes, ordered), the side (1 byte) and a sequence number (8 bytes); the
//! value is an Arrow IPC stream, so every column type is stored as is. Input batches are
//! gathered in memory, up to [`FLUSH_ROWS`] rows over all windows, and written one entry per
//! window and side (and at every checkpoint). A window that fires is read back, both sides, and
//! deleted: joining needs memory for the firing window only, not for every open window.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_datafusion_err};
use rocksdb::WriteBatch;

use crate::state::rocks::{StateDb, ordered_prefix, ordered_prefix_of, scan_prefix};
use crate::state::snapshot;

/// Buffered rows by window end and side (see the module docs).
pub(super) enum WindowRows {
    /// Window end -> rows of each side, and their memory in bytes.
    Memory(BTreeMap<i64, [Vec<RecordBatch>; 2]>, usize),
    Rocks(Box<RocksWindowRows>),
}

/// Rows of open windows in RocksDB.
pub(super) struct RocksWindowRows {
    db: StateDb,
    /// Ends of the windows with rows (stored or gathered).
    ends: BTreeSet<i64>,
    next: u64,
    schemas: [SchemaRef; 2],
    /// Rows gathered in memory, not written yet, by window end and side.
    gathered: BTreeMap<(i64, usize), Vec<RecordBatch>>,
    gathered_rows: usize,
    gathered_bytes: usize,
}

/// Rows gathered in memory before they are written to RocksDB.
pub const FLUSH_ROWS: usize = 65_536;

impl WindowRows {
    /// Rows in memory, none yet.
    pub fn memory() -> Self {
        Self::Memory(BTreeMap::new(), 0)
    }

    /// Memory the rows held in memory take, in bytes (gathered rows, under RocksDB); kept up
    /// to date as rows come and go.
    pub fn memory_size(&self) -> usize {
        match self {
            Self::Memory(_, bytes) => *bytes,
            Self::Rocks(rocks) => rocks.gathered_bytes,
        }
    }

    /// Rows in RocksDB, in a new database under `root`.
    pub fn rocks(root: &Path, label: &str, schemas: [SchemaRef; 2]) -> Result<Self> {
        Ok(Self::Rocks(Box::new(RocksWindowRows {
            db: StateDb::create(root, label)?,
            ends: BTreeSet::new(),
            next: 0,
            schemas,
            gathered: BTreeMap::new(),
            gathered_rows: 0,
            gathered_bytes: 0,
        })))
    }

    /// Adds rows of `side` in the window ending at `end`.
    pub fn push(&mut self, end: i64, side: usize, rows: RecordBatch) -> Result<()> {
        match self {
            Self::Memory(windows, bytes) => {
                *bytes += rows.get_array_memory_size();
                windows.entry(end).or_default()[side].push(rows);
                Ok(())
            }
            Self::Rocks(r) => {
                r.gathered_rows += rows.num_rows();
                r.gathered_bytes += rows.get_array_memory_size();
                r.gathered.entry((end, side)).or_default().push(rows);
                r.ends.insert(end);
                if r.gathered_rows >= FLUSH_ROWS {
                    r.flush()?;
                }
                Ok(())
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        match self {
            Self::Memory(windows, _) => windows.is_empty(),
            Self::Rocks(r) => r.ends.is_empty(),
        }
    }

    /// The end of the first open window.
    pub fn first_end(&self) -> Option<i64> {
        match self {
            Self::Memory(windows, _) => windows.keys().next().copied(),
            Self::Rocks(r) => r.ends.first().copied(),
        }
    }

    /// Removes the window ending at `end`; its rows of each side.
    pub fn take(&mut self, end: i64) -> Result<[Vec<RecordBatch>; 2]> {
        match self {
            Self::Memory(windows, bytes) => {
                let sides = windows.remove(&end).unwrap_or_default();
                let freed: usize = sides
                    .iter()
                    .flatten()
                    .map(RecordBatch::get_array_memory_size)
                    .sum();
                *bytes = bytes.saturating_sub(freed);
                Ok(sides)
            }
            Self::Rocks(r) => {
                let mut sides: [Vec<RecordBatch>; 2] = Default::default();
                let mut delete = WriteBatch::default();
                for entry in scan_prefix(r.db.db(), ordered_prefix(end)) {
                    let (key, value) = entry?;
                    let side = usize::from(key.get(8).copied().unwrap_or(0) == 1);
                    let batches = snapshot::decode(&value.into_vec().into(), "window join rows")?;
                    sides[side].extend(batches);
                    delete.delete(key);
                }
                r.db.write(delete)?;
                // Then the rows gathered since (in arrival order).
                for (side, rows) in sides.iter_mut().enumerate() {
                    if let Some(gathered) = r.gathered.remove(&(end, side)) {
                        r.gathered_rows -= gathered.iter().map(|b| b.num_rows()).sum::<usize>();
                        r.gathered_bytes = r.gathered_bytes.saturating_sub(
                            gathered
                                .iter()
                                .map(RecordBatch::get_array_memory_size)
                                .sum(),
                        );
                        rows.extend(gathered);
                    }
                }
                r.ends.remove(&end);
                Ok(sides)
            }
        }
    }
}

impl RocksWindowRows {
    /// The database (checkpoints: after [`flush`](Self::flush)).
    pub fn db(&self) -> &StateDb {
        &self.db
    }

    /// Window ends with stored rows (saved with a checkpoint).
    pub fn ends(&self) -> Vec<i64> {
        self.ends.iter().copied().collect()
    }

    pub fn next(&self) -> u64 {
        self.next
    }

    /// Writes the gathered rows, one entry per window and side.
    pub fn flush(&mut self) -> Result<()> {
        let mut batch = WriteBatch::default();
        for ((end, side), rows) in std::mem::take(&mut self.gathered) {
            let mut key = Vec::with_capacity(17);
            key.extend_from_slice(&ordered_prefix(end));
            key.push(side as u8);
            key.extend_from_slice(&self.next.to_be_bytes());
            self.next += 1;
            batch.put(key, snapshot::encode(&self.schemas[side], &rows)?);
        }
        self.gathered_rows = 0;
        self.gathered_bytes = 0;
        self.db.write(batch)
    }

    /// Replaces the (empty) database with one restored from a checkpoint (its files in `files`,
    /// moved under `root`), with the window ends and sequence number saved with it.
    pub fn adopt(
        &mut self,
        root: &Path,
        label: &str,
        files: &Path,
        ends: Vec<i64>,
        next: u64,
    ) -> Result<()> {
        self.db = StateDb::adopt(root, label, files)?;
        self.ends = ends.into_iter().collect();
        self.next = next;
        Ok(())
    }
}

/// Calls `f(window end, side, rows)` for every stored batch of a restored database (opened
/// read-only from `files`), one at a time: restoring at another parallelism.
pub(super) fn for_each_stored(
    files: &Path,
    mut f: impl FnMut(i64, usize, RecordBatch) -> Result<()>,
) -> Result<()> {
    let db = StateDb::open_read_only(files)?;
    for entry in scan_prefix(&db, []) {
        let (key, value) = entry?;
        let end = ordered_prefix_of(&key)
            .ok_or_else(|| exec_datafusion_err!("RocksDB state: a join key without its window"))?;
        let side = usize::from(key.get(8).copied().unwrap_or(0) == 1);
        for batch in snapshot::decode(&value.into_vec().into(), "window join rows")? {
            f(end, side, batch)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;

    fn batch(values: &[i64]) -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            (
                "k",
                Arc::new(Int64Array::from(values.to_vec())) as datafusion::arrow::array::ArrayRef,
            ),
            (
                "s",
                Arc::new(StringArray::from(
                    values.iter().map(|v| format!("r{v}")).collect::<Vec<_>>(),
                )) as _,
            ),
        ])
        .unwrap()
    }

    /// Windows come out in end order with each side's rows, negative ends included, and a
    /// checkpoint holds exactly the windows still open.
    #[test]
    fn rocks_rows_equal_memory_rows() {
        let root = tempfile::tempdir().unwrap();
        let schema = batch(&[]).schema();
        let mut rocks =
            WindowRows::rocks(root.path(), "join", [Arc::clone(&schema), schema]).unwrap();
        let mut memory = WindowRows::memory();
        let input = [
            (2_000, 0, vec![1, 2]),
            (-1_000, 1, vec![3]),
            (2_000, 1, vec![4]),
            (2_000, 0, vec![5]),
            (4_000, 0, vec![6]),
        ];
        for (end, side, values) in &input {
            rocks.push(*end, *side, batch(values)).unwrap();
            memory.push(*end, *side, batch(values)).unwrap();
        }
        for expected_end in [-1_000, 2_000] {
            assert_eq!(rocks.first_end(), Some(expected_end));
            assert_eq!(memory.first_end(), Some(expected_end));
            assert_eq!(
                rocks.take(expected_end).unwrap(),
                memory.take(expected_end).unwrap()
            );
        }
        let WindowRows::Rocks(r) = &mut rocks else {
            unreachable!()
        };
        let staged = root.path().join("chk");
        r.flush().unwrap();
        r.db().checkpoint(&staged).unwrap();
        assert_eq!(r.ends(), vec![4_000]);
        let mut stored = Vec::new();
        for_each_stored(&staged, |end, side, rows| {
            stored.push((end, side, rows));
            Ok(())
        })
        .unwrap();
        assert_eq!(stored, vec![(4_000, 0, batch(&[6]))]);
        // Window 4 s: its stored rows (written by the checkpoint), then rows gathered since.
        rocks.push(4_000, 0, batch(&[7])).unwrap();
        assert!(!rocks.is_empty());
        let [left, right] = rocks.take(4_000).unwrap();
        assert_eq!(left, vec![batch(&[6]), batch(&[7])]);
        assert!(right.is_empty());
        assert!(rocks.is_empty());
        // More rows than are gathered in memory: written as they come, read back the same.
        let many: Vec<i64> = (0..FLUSH_ROWS as i64 + 10).collect();
        rocks.push(6_000, 1, batch(&many[..10])).unwrap();
        rocks.push(6_000, 1, batch(&many[10..])).unwrap();
        let WindowRows::Rocks(r) = &rocks else {
            unreachable!()
        };
        assert_eq!(r.gathered_rows, 0);
        let [left, right] = rocks.take(6_000).unwrap();
        assert!(left.is_empty());
        let schema = batch(&[]).schema();
        let right = datafusion::arrow::compute::concat_batches(&schema, &right).unwrap();
        assert_eq!(right, batch(&many));
    }
}
