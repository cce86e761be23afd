//! The groups of an updating aggregate in RocksDB (`state.backend` = `rocksdb`).
//!
//! The [`GroupTable`](super::groups::GroupTable) in memory becomes a write-back cache of the
//! groups recent batches touched; the database holds every group. One entry per group: the key
//! is the group key in Arrow's row format (as the table keys it); the value is the number of
//! rows the group holds (8 bytes, little-endian, with the top bit set), when rows last came
//! for it (processing time in ms, 8 bytes, for `table.exec.state.ttl`), then its accumulators'
//! states in row format. Entries written before the write time was stored have the top bit of
//! the count clear and no write time; they count as written when the database was restored.
//!
//! A batch first loads the groups it touches that the cache lacks (one multi-get). After a
//! batch that leaves more than [`CACHE_GROUPS`] groups cached, and at every checkpoint barrier,
//! the cache is written back and emptied; groups whose last row was taken back are deleted then.
//! So memory holds at most one batch's groups beyond the cache, whatever the number of keys.

use std::collections::HashSet;
use std::path::Path;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{Result, ScalarValue, internal_err};
use rocksdb::WriteBatch;

use super::in_type;
use crate::state::rocks::{Expiry, RowCodec, StateDb, scan_prefix};

/// Set in the stored row count of an entry that holds its write time.
const HAS_WRITTEN: u64 = 1 << 63;

/// Groups cached in memory before they are written back.
pub const CACHE_GROUPS: usize = 65_536;

/// Entries re-keyed at a time when restoring at another parallelism.
const REKEY_CHUNK: usize = 65_536;

/// See the module docs.
pub(super) struct RocksGroups {
    db: StateDb,
    /// The accumulators' states, all aggregates' columns in a row.
    states: RowCodec,
    state_types: Vec<DataType>,
    /// Keys of groups deleted since the last write-back (still in the database until then).
    deleted: HashSet<Box<[u8]>>,
    /// [`CACHE_GROUPS`] (smaller in tests).
    pub capacity: usize,
    /// How entries expire (`table.exec.state.ttl`), if they do; it also knows when the
    /// database was restored.
    expiry: Option<Expiry>,
}

/// A group as stored: its rows, when rows last came for it, and its accumulators' state
/// values.
pub(super) struct StoredGroup {
    pub rows: i64,
    pub written: i64,
    pub state: Vec<ScalarValue>,
}

/// When an entry was last written (see [`Expiry`]). An entry without a write time comes from
/// a restored database (written before write times were stored) and counts from the restore;
/// one that cannot be read stays.
fn written_of(_key: &[u8], value: &[u8]) -> Option<i64> {
    split_entry(value).ok().map(|(_, written, _)| written)
}

/// The row count and write time an entry starts with, and the rest (the state).
fn split_entry(value: &[u8]) -> Result<(i64, i64, &[u8])> {
    let Some((count, rest)) = value.split_first_chunk::<8>() else {
        return internal_err!("an updating aggregate's RocksDB entry is too short");
    };
    let count = u64::from_le_bytes(*count);
    if count & HAS_WRITTEN == 0 {
        return Ok((count as i64, i64::MIN, rest));
    }
    let Some((written, state)) = rest.split_first_chunk::<8>() else {
        return internal_err!("an updating aggregate's RocksDB entry is too short");
    };
    Ok((
        (count & !HAS_WRITTEN) as i64,
        i64::from_le_bytes(*written),
        state,
    ))
}

impl RocksGroups {
    /// An empty store in a new database under `root`; `state_types` are the state columns of
    /// all aggregates, in order. With `ttl`, RocksDB's compactions drop the groups no rows came
    /// for that long.
    pub fn try_new(
        root: &Path,
        label: &str,
        state_types: Vec<DataType>,
        ttl: Option<std::time::Duration>,
    ) -> Result<Self> {
        let states = RowCodec::try_new(state_types.clone(), "the state of these aggregates")?;
        let expiry = ttl.map(|ttl| Expiry::new(ttl, written_of));
        Ok(Self {
            db: StateDb::create_expiring(root, label, expiry.as_ref())?,
            states,
            state_types,
            deleted: HashSet::new(),
            capacity: CACHE_GROUPS,
            expiry,
        })
    }

    /// Replaces the (empty) database with one restored from a checkpoint (its files in
    /// `files`, moved under `root`).
    pub fn adopt(&mut self, root: &Path, label: &str, files: &Path) -> Result<()> {
        self.db = StateDb::adopt_expiring(root, label, files, self.expiry.as_ref())?;
        self.deleted.clear();
        Ok(())
    }

    /// The time a group last written at `written` counts its time to live from (see
    /// [`Expiry::written`]; without a time to live, `written`).
    pub fn written(&self, written: i64) -> i64 {
        self.expiry.as_ref().map_or(written, |e| e.written(written))
    }

    /// The database (for checkpoints).
    pub fn db(&self) -> &StateDb {
        &self.db
    }

    /// Records that the group `key` is gone.
    pub fn delete(&mut self, key: &[u8]) {
        self.deleted.insert(key.into());
    }

    /// The stored groups among `keys` (each `None` if absent, or deleted since the last
    /// write-back).
    pub fn load(&self, keys: &[&[u8]]) -> Result<Vec<Option<StoredGroup>>> {
        let mut values: Vec<Option<Vec<u8>>> = Vec::with_capacity(keys.len());
        for (key, value) in keys.iter().zip(self.db.db().multi_get(keys)) {
            let value = value.map_err(|e| {
                datafusion::common::exec_datafusion_err!("RocksDB state: read failed: {e}")
            })?;
            values.push(value.filter(|_| !self.deleted.contains(*key)));
        }
        let present: Vec<&[u8]> = values.iter().flatten().map(|v| v.as_slice()).collect();
        let mut rows = Vec::with_capacity(present.len());
        let mut written = Vec::with_capacity(present.len());
        let mut encoded = Vec::with_capacity(present.len());
        for value in &present {
            let (count, at, state) = split_entry(value)?;
            rows.push(count);
            written.push(at);
            encoded.push(state);
        }
        let columns = self.states.decode(&encoded)?;
        let mut stored = Vec::with_capacity(values.len());
        let mut next = 0;
        for value in &values {
            if value.is_none() {
                stored.push(None);
                continue;
            }
            let state = columns
                .iter()
                .map(|c| ScalarValue::try_from_array(c, next))
                .collect::<Result<Vec<_>>>()?;
            stored.push(Some(StoredGroup {
                rows: rows[next],
                written: written[next],
                state,
            }));
            next += 1;
        }
        Ok(stored)
    }

    /// Writes `groups` (key, rows, state values) and the deletions since the last write-back.
    pub fn write(&mut self, groups: Vec<(Box<[u8]>, StoredGroup)>) -> Result<()> {
        let encoded = if groups.is_empty() {
            Vec::new()
        } else {
            let columns = (0..self.state_types.len())
                .map(|c| {
                    let values = groups
                        .iter()
                        .map(|(_, g)| g.state.get(c).cloned().unwrap_or(ScalarValue::Null));
                    in_type(ScalarValue::iter_to_array(values)?, &self.state_types[c])
                })
                .collect::<Result<Vec<ArrayRef>>>()?;
            self.states.encode(&columns, groups.len())?
        };
        let mut batch = WriteBatch::default();
        // Deletions first: a group deleted and created again since is put after.
        for key in self.deleted.drain() {
            batch.delete(&key);
        }
        for ((key, group), state) in groups.iter().zip(encoded) {
            let Some(count) = u64::try_from(group.rows)
                .ok()
                .filter(|&count| count & HAS_WRITTEN == 0)
            else {
                return internal_err!(
                    "an updating aggregate's group holds {} rows; it cannot be stored",
                    group.rows
                );
            };
            let mut value = Vec::with_capacity(16 + state.len());
            value.extend_from_slice(&(count | HAS_WRITTEN).to_le_bytes());
            value.extend_from_slice(&group.written.to_le_bytes());
            value.extend_from_slice(&state);
            batch.put(key, value);
        }
        self.db.write(batch)
    }

    /// Adds the entries of a restored database (opened read-only from `files`) that
    /// `owned(keys)` keeps: restoring at a different parallelism. `owned` gets a chunk of
    /// keys and says which belong to this partition.
    pub fn restore_rekeyed(
        &mut self,
        files: &Path,
        mut owned: impl FnMut(&[Box<[u8]>]) -> Result<Vec<bool>>,
    ) -> Result<()> {
        let old = StateDb::open_read_only(files)?;
        if let Some(expiry) = &self.expiry {
            expiry.restored();
        }
        let mut entries = scan_prefix(&old, []);
        loop {
            let chunk = entries
                .by_ref()
                .take(REKEY_CHUNK)
                .collect::<Result<Vec<_>>>()?;
            if chunk.is_empty() {
                return Ok(());
            }
            let keys: Vec<Box<[u8]>> = chunk.iter().map(|(k, _)| k.clone()).collect();
            let mine = owned(&keys)?;
            let mut batch = WriteBatch::default();
            for ((key, value), mine) in chunk.iter().zip(mine) {
                if mine {
                    batch.put(key, value);
                }
            }
            self.db.write(batch)?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry holds its write time after the flagged count; one written before write times
    /// were stored has neither, and reads as never written.
    #[test]
    fn entries_with_and_without_a_write_time() {
        let mut new = (3u64 | HAS_WRITTEN).to_le_bytes().to_vec();
        new.extend_from_slice(&1234i64.to_le_bytes());
        new.extend_from_slice(b"state");
        assert_eq!(split_entry(&new).unwrap(), (3, 1234, &b"state"[..]));
        let mut old = 7u64.to_le_bytes().to_vec();
        old.extend_from_slice(b"state");
        assert_eq!(split_entry(&old).unwrap(), (7, i64::MIN, &b"state"[..]));
        assert!(split_entry(&new[..12]).is_err());
        assert!(split_entry(&old[..5]).is_err());
        // As RocksDB's compaction reads them: an old entry counts from the restore.
        assert_eq!(written_of(b"k", &new), Some(1234));
        assert_eq!(written_of(b"k", &old), Some(i64::MIN));
        assert_eq!(written_of(b"k", &new[..12]), None);
    }
}
