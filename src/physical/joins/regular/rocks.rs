//! Both sides of a regular join in RocksDB (`state.backend` = `rocksdb`).
//!
//! The [`SideState`]s in memory become a write-back cache of the join keys recent batches
//! touched; the database holds every key's rows. One entry per side and key: the key is the
//! side (one byte) then the join key in Arrow's row format; the value is the key's entries,
//! each as the row's length (4 bytes), the row, its copies, its matches and when it was last
//! written (8 bytes each, little-endian).
//!
//! A batch first loads the keys it touches on both sides that the cache lacks (one multi-get);
//! after a batch that leaves more than [`CACHE_ROWS`] rows cached, and at every checkpoint
//! barrier, every touched key is written back (or deleted, when its last row went) and the
//! cache emptied. So memory holds the rows of about one batch's keys beyond the cache, however
//! many rows the join keeps.
//!
//! `table.exec.state.ttl` sweeps the cache; rows in the database expire when their key is next
//! read (a row loaded after its time to live is dropped then), so they never meet a partner.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use datafusion::common::{Result, exec_datafusion_err, internal_err};
use rocksdb::WriteBatch;

use super::side::{Entry, SideState};
use crate::state::rocks::{StateDb, scan_prefix};

/// Rows cached in memory (both sides) before they are written back.
pub const CACHE_ROWS: u64 = 262_144;

/// Entries re-keyed at a time when restoring at another parallelism.
const REKEY_CHUNK: usize = 65_536;

/// See the module docs.
pub(super) struct RocksSides {
    db: StateDb,
    /// The directory of the databases and this partition's instance name (to adopt one).
    root: PathBuf,
    label: String,
    /// Per side, the keys loaded or changed since the last write-back (the cache's keys).
    touched: [HashSet<Box<[u8]>>; 2],
    /// [`CACHE_ROWS`] (smaller in tests).
    pub capacity: u64,
}

fn db_key(side: usize, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(side as u8);
    k.extend_from_slice(key);
    k
}

/// A key's entries as stored (see the module docs).
fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.row.len() + 28).sum());
    for e in entries {
        out.extend_from_slice(&(e.row.len() as u32).to_le_bytes());
        out.extend_from_slice(&e.row);
        out.extend_from_slice(&e.count.to_le_bytes());
        out.extend_from_slice(&e.matches.to_le_bytes());
        out.extend_from_slice(&e.written.to_le_bytes());
    }
    out
}

fn decode(mut value: &[u8]) -> Result<Vec<Entry>> {
    let short = || exec_datafusion_err!("a regular join's RocksDB entry is cut short");
    let mut entries = Vec::new();
    while !value.is_empty() {
        let (len, rest) = value.split_first_chunk::<4>().ok_or_else(short)?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len + 24 {
            return Err(short());
        }
        let (row, rest) = rest.split_at(len);
        let (count, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
        let (matches, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
        let (written, rest) = rest.split_first_chunk::<8>().ok_or_else(short)?;
        entries.push(Entry {
            row: row.into(),
            count: u64::from_le_bytes(*count),
            matches: u64::from_le_bytes(*matches),
            written: i64::from_le_bytes(*written),
        });
        value = rest;
    }
    Ok(entries)
}

impl RocksSides {
    /// An empty store in a new database under `root`.
    pub fn try_new(root: &Path, label: &str) -> Result<Self> {
        Ok(Self {
            db: StateDb::create(root, label)?,
            root: root.to_path_buf(),
            label: label.to_string(),
            touched: [HashSet::new(), HashSet::new()],
            capacity: CACHE_ROWS,
        })
    }

    /// Replaces the (empty) database with one restored from a checkpoint.
    pub fn adopt(&mut self, files: &Path) -> Result<()> {
        self.db = StateDb::adopt(&self.root, &self.label, files)?;
        self.touched = [HashSet::new(), HashSet::new()];
        Ok(())
    }

    /// The database (for checkpoints).
    pub fn db(&self) -> &StateDb {
        &self.db
    }

    /// Marks `key` of `side` as cached (a row restored into the cache from a checkpoint in
    /// memory).
    pub fn touch(&mut self, side: usize, key: &[u8]) {
        if !self.touched[side].contains(key) {
            self.touched[side].insert(key.into());
        }
    }

    /// Brings the stored rows of `keys` (of `side`) the cache lacks into `state`, dropping
    /// rows last written before `oldest` (`table.exec.state.ttl`).
    pub fn load<'a>(
        &mut self,
        side: usize,
        keys: impl IntoIterator<Item = &'a [u8]>,
        state: &mut SideState,
        oldest: Option<i64>,
    ) -> Result<()> {
        let mut missing: Vec<&[u8]> = Vec::new();
        for key in keys {
            if !self.touched[side].contains(key) {
                self.touched[side].insert(key.into());
                missing.push(key);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let db_keys: Vec<Vec<u8>> = missing.iter().map(|k| db_key(side, k)).collect();
        for (key, value) in missing.iter().zip(self.db.db().multi_get(&db_keys)) {
            let value =
                value.map_err(|e| exec_datafusion_err!("RocksDB state: read failed: {e}"))?;
            let Some(value) = value else {
                continue;
            };
            for entry in decode(&value)? {
                if oldest.is_none_or(|oldest| entry.written >= oldest) {
                    state.restore(key, entry);
                }
            }
        }
        Ok(())
    }

    /// Writes the touched keys of both sides back (deleting those without rows) and empties
    /// the cache, if it holds more than its capacity or `always`.
    pub fn write_back(&mut self, sides: &mut [SideState; 2], always: bool) -> Result<()> {
        if !always && sides[0].rows + sides[1].rows <= self.capacity {
            return Ok(());
        }
        let mut batch = WriteBatch::default();
        for (side, state) in sides.iter_mut().enumerate() {
            for key in self.touched[side].drain() {
                let db_key = db_key(side, &key);
                match state.by_key.get(&key) {
                    Some(entries) if !entries.is_empty() => batch.put(db_key, encode(entries)),
                    _ => batch.delete(db_key),
                }
            }
            // Every cached key was touched, so all of them are written: the cache empties.
            *state = SideState::default();
        }
        self.db.write(batch)
    }

    /// Adds the entries of a database saved at another parallelism (opened read-only from
    /// `files`) whose join keys `owned` keeps: `owned` gets a chunk of (side, join key) and
    /// says which belong to this partition.
    pub fn restore_rekeyed(
        &mut self,
        files: &Path,
        mut owned: impl FnMut(&[(usize, &[u8])]) -> Result<Vec<bool>>,
    ) -> Result<()> {
        let old = StateDb::open_read_only(files)?;
        let mut entries = scan_prefix(&old, []);
        loop {
            let chunk = entries
                .by_ref()
                .take(REKEY_CHUNK)
                .collect::<Result<Vec<_>>>()?;
            if chunk.is_empty() {
                return Ok(());
            }
            let mut keys: Vec<(usize, &[u8])> = Vec::with_capacity(chunk.len());
            for (key, _) in &chunk {
                let Some((&side, join_key)) = key.split_first() else {
                    return internal_err!("a regular join's RocksDB key without its side");
                };
                keys.push((usize::from(side), join_key));
            }
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

    #[test]
    fn entries_round_trip() {
        let entries = vec![
            Entry {
                row: b"abc"[..].into(),
                count: 2,
                matches: 7,
                written: -5,
            },
            Entry {
                row: b""[..].into(),
                count: 1,
                matches: 0,
                written: 1_700_000_000_000,
            },
        ];
        let decoded = decode(&encode(&entries)).unwrap();
        assert_eq!(decoded.len(), 2);
        for (a, b) in entries.iter().zip(&decoded) {
            assert_eq!(
                (&a.row, a.count, a.matches, a.written),
                (&b.row, b.count, b.matches, b.written)
            );
        }
        assert!(
            decode(&encode(&entries)[..10]).is_err(),
            "a cut entry is an error"
        );
    }
}
