//! Both sides of a regular join in RocksDB (`state.backend` = `rocksdb`).
//!
//! The [`SideState`]s in memory become a write-back cache of the join keys recent batches
//! touched; the database holds every key's rows ([`KeyedDb`], the sides its key spaces). One
//! entry per side and key: the key is the side (one byte) then the join key in Arrow's row
//! format; the value is the key's entries, each as the row's length (4 bytes), the row, its
//! copies, its matches and when it was last written (8 bytes each, little-endian).
//!
//! A batch first loads the keys it touches on both sides that the cache lacks (one multi-get);
//! after a batch that leaves more than [`CACHE_ROWS`] rows cached, and at every checkpoint
//! barrier, every touched key is written back (or deleted, when its last row went) and the
//! cache emptied. So memory holds the rows of about one batch's keys beyond the cache, however
//! many rows the join keeps.
//!
//! `table.exec.state.ttl` sweeps the cache; rows in the database expire when their key is next
//! read (a row loaded after its time to live is dropped then), so they never meet a partner.

use std::path::Path;

use datafusion::common::Result;

use super::side::{Entry, SideState};
use crate::state::keyed_db::{KeyedDb, ValueReader, put_bytes};
use crate::state::rocks::{Expiry, RowCodec, StateDb};

/// Rows cached in memory (both sides) before they are written back.
pub const CACHE_ROWS: u64 = 262_144;

/// See the module docs: the sides are the store's two key spaces.
pub(super) struct RocksSides {
    store: KeyedDb,
    /// [`CACHE_ROWS`] (smaller in tests).
    pub capacity: u64,
}

/// A key's entries as stored (see the module docs).
fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.iter().map(|e| e.row.len() + 28).sum());
    for e in entries {
        put_bytes(&mut out, &e.row);
        out.extend_from_slice(&e.count.to_le_bytes());
        out.extend_from_slice(&e.matches.to_le_bytes());
        out.extend_from_slice(&e.written.to_le_bytes());
    }
    out
}

fn decode(value: &[u8]) -> Result<Vec<Entry>> {
    let mut r = ValueReader::new(value, "a regular join");
    let mut entries = Vec::new();
    while !r.is_empty() {
        entries.push(Entry {
            row: r.bytes()?.into(),
            count: r.u64()?,
            matches: r.u64()?,
            written: r.i64()?,
        });
    }
    Ok(entries)
}

/// When a key's rows were last written: the latest of its entries' write times (the key goes
/// at compaction once every row expired), read without copying the rows (it runs on every
/// entry RocksDB compacts). See [`Expiry`].
fn written_of(_key: &[u8], value: &[u8]) -> Option<i64> {
    let mut r = ValueReader::new(value, "a regular join");
    let mut latest = None;
    while !r.is_empty() {
        r.bytes().ok()?;
        r.u64().ok()?;
        r.u64().ok()?;
        let written = r.i64().ok()?;
        latest = Some(latest.map_or(written, |l: i64| l.max(written)));
    }
    latest
}

impl RocksSides {
    /// An empty store in a new database under `root`; with `ttl`, RocksDB's compactions drop
    /// keys whose rows all expired.
    pub fn try_new(root: &Path, label: &str, ttl: Option<std::time::Duration>) -> Result<Self> {
        Ok(Self {
            store: KeyedDb::try_new_expiring(
                root,
                label,
                2,
                ttl.map(|ttl| Expiry::new(ttl, written_of)),
            )?,
            capacity: CACHE_ROWS,
        })
    }

    /// Replaces the (empty) database with one restored from a checkpoint.
    pub fn adopt(&mut self, files: &Path) -> Result<()> {
        self.store.adopt(files)
    }

    /// The database (for checkpoints).
    pub fn db(&self) -> &StateDb {
        self.store.db()
    }

    /// Marks `key` of `side` as cached (a row restored into the cache from a checkpoint in
    /// memory).
    pub fn touch(&mut self, side: usize, key: &[u8]) {
        self.store.touch(side, key);
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
        let restored = self.store.written(i64::MIN);
        for (key, value) in self.store.load(side, keys)? {
            for mut entry in decode(&value)? {
                entry.written = entry.written.max(restored);
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
        let rows = usize::try_from(sides[0].rows + sides[1].rows).unwrap_or(usize::MAX);
        let capacity = usize::try_from(self.capacity).unwrap_or(usize::MAX);
        if !always && !self.store.full(rows, capacity) {
            return Ok(());
        }
        self.store.write_back(|side, key| {
            sides[side]
                .by_key
                .get(key)
                .filter(|entries| !entries.is_empty())
                .map(|entries| encode(entries))
        })?;
        // Every cached key was touched, so all of them were written: the cache empties.
        *sides = [SideState::default(), SideState::default()];
        Ok(())
    }

    /// Adds the entries of the databases `dirs` saved at another parallelism whose join keys
    /// (`keys` their row format) hash to partition `partition` of `partitions`.
    pub fn restore_rekeyed(
        &mut self,
        dirs: Vec<&Path>,
        keys: &RowCodec,
        partition: usize,
        partitions: usize,
    ) -> Result<()> {
        self.store
            .restore_rekeyed_by_hash(dirs, keys, partition, partitions, |_, key| Ok(Some(key)))
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
        // A key's rows expire at compaction once the latest of them has.
        assert_eq!(
            written_of(b"\0k", &encode(&entries)),
            Some(1_700_000_000_000)
        );
        assert_eq!(written_of(b"\0k", &encode(&entries)[..10]), None);
    }
}
