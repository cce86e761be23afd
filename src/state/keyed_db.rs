//! Keyed operator state in RocksDB behind a write-back cache in memory (`state.backend` =
//! `rocksdb`), for the operators whose state is a value per key: the regular join (per side
//! and join key, the rows), the top-N (per partition key, the ranked rows), the temporal join
//! (per join key, the versions) and the OVER aggregates (per partition key, the rows).
//!
//! The operator keeps its state in memory as before; that state becomes a cache of the keys
//! recent batches touched, and the database holds every key's value. A key is stored under its
//! *space* (one byte: a join's side, or a kind of state) and its bytes (Arrow's row format of
//! the key columns); the value is the operator's encoding of the key's state.
//!
//! A batch first [`load`](KeyedDb::load)s the keys it touches that the cache lacks (one
//! multi-get); when the cache holds more rows or keys than the operator's capacity
//! ([`KeyedDb::full`]), and at every checkpoint barrier, every touched key is
//! [written back](KeyedDb::write_back) (or deleted, when its state is empty) and the operator
//! empties its cache. So memory holds about one batch's keys beyond the capacity, however many
//! keys the operator keeps. Keys in the database expire (`table.exec.state.ttl`) when they are
//! next loaded, or when RocksDB compacts their files ([`Expiry`]), whichever comes first; a
//! restored database's keys live a whole time to live from the restore ([`KeyedDb::written`]).
//!
//! Checkpoints are RocksDB checkpoints: restored at the same parallelism a partition
//! [adopts](KeyedDb::adopt) its database, at another it takes the entries whose keys hash to it
//! from every old database ([`restore_rekeyed`](KeyedDb::restore_rekeyed)).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use datafusion::common::{Result, exec_datafusion_err, internal_err};
use rocksdb::WriteBatch;

use super::redistribute::partitions_of;
use super::rocks::{Expiry, RowCodec, StateDb, ordered_prefix, ordered_prefix_of, scan_prefix};

/// Entries re-keyed at a time when restoring at another parallelism.
const REKEY_CHUNK: usize = 65_536;

/// See the module docs.
pub struct KeyedDb {
    db: StateDb,
    /// The directory of the databases and this partition's instance name (to adopt one).
    root: PathBuf,
    label: String,
    /// Per space, the keys loaded or changed since the last write-back (the cache's keys).
    touched: Vec<HashSet<Box<[u8]>>>,
    /// How its entries expire (`table.exec.state.ttl`), if they do; it also knows when the
    /// database was restored.
    expiry: Option<Expiry>,
}

/// When an entry of key space 0 was last written, for stores whose values there start with it
/// (the top-N's keys, the temporal join's versions, the OVER aggregates' rows); the entries of
/// other key spaces (rows waiting for the watermark) do not expire. See [`Expiry`].
pub fn written_first_in_space_0(key: &[u8], value: &[u8]) -> Option<i64> {
    (key.first() == Some(&0))
        .then(|| super::rocks::leading_i64(value))
        .flatten()
}

fn db_key(space: usize, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(space as u8);
    k.extend_from_slice(key);
    k
}

impl KeyedDb {
    /// An empty store of `spaces` key spaces (at most 256) in a new database under `root`.
    pub fn try_new(root: &Path, label: &str, spaces: usize) -> Result<Self> {
        Self::try_new_expiring(root, label, spaces, None)
    }

    /// [`Self::try_new`], its entries dropped by `expiry` when RocksDB compacts them. The
    /// stored keys it reads start with their key space's byte.
    pub fn try_new_expiring(
        root: &Path,
        label: &str,
        spaces: usize,
        expiry: Option<Expiry>,
    ) -> Result<Self> {
        if spaces == 0 || spaces > 256 {
            return internal_err!("a keyed RocksDB store of {spaces} key spaces");
        }
        Ok(Self {
            db: StateDb::create_expiring(root, label, expiry.as_ref())?,
            root: root.to_path_buf(),
            label: label.to_string(),
            touched: vec![HashSet::new(); spaces],
            expiry,
        })
    }

    /// True if the cache holds more than `capacity` rows (`rows`, as the operator counts them)
    /// or keys: it is to be written back.
    pub fn full(&self, rows: usize, capacity: usize) -> bool {
        rows > capacity || self.touched.iter().map(HashSet::len).sum::<usize>() > capacity
    }

    /// The time a key last written at `written` counts its time to live from (see
    /// [`Expiry::written`]; without a time to live, `written`).
    pub fn written(&self, written: i64) -> i64 {
        self.expiry.as_ref().map_or(written, |e| e.written(written))
    }

    /// [`Self::try_new_expiring`] for a store whose values in key space 0 start with their
    /// write time ([`written_first_in_space_0`]), expiring after `ttl`.
    pub fn try_new_with_ttl(
        root: &Path,
        label: &str,
        spaces: usize,
        ttl: Option<std::time::Duration>,
    ) -> Result<Self> {
        let expiry = ttl.map(|ttl| Expiry::new(ttl, written_first_in_space_0));
        Self::try_new_expiring(root, label, spaces, expiry)
    }

    /// Replaces the (empty) database with one restored from a checkpoint.
    pub fn adopt(&mut self, files: &Path) -> Result<()> {
        self.db = StateDb::adopt_expiring(&self.root, &self.label, files, self.expiry.as_ref())?;
        self.touched.iter_mut().for_each(HashSet::clear);
        Ok(())
    }

    /// The database (for checkpoints).
    pub fn db(&self) -> &StateDb {
        &self.db
    }

    /// Marks `key` of `space` as cached (state restored into the cache from a checkpoint in
    /// memory, or created there).
    pub fn touch(&mut self, space: usize, key: &[u8]) {
        if let Some(touched) = self.touched.get_mut(space)
            && !touched.contains(key)
        {
            touched.insert(key.into());
        }
    }

    /// The stored values of those of `keys` (of `space`) the cache lacks, which are cached
    /// from now on: each key stored, with its value.
    pub fn load<'a>(
        &mut self,
        space: usize,
        keys: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Vec<(&'a [u8], Vec<u8>)>> {
        let Some(touched) = self.touched.get_mut(space) else {
            return internal_err!("a keyed RocksDB store has no key space {space}");
        };
        let mut missing: Vec<&[u8]> = Vec::new();
        for key in keys {
            if !touched.contains(key) {
                touched.insert(key.into());
                missing.push(key);
            }
        }
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let db_keys: Vec<Vec<u8>> = missing.iter().map(|k| db_key(space, k)).collect();
        let mut found = Vec::new();
        for (key, value) in missing.into_iter().zip(self.db.db().multi_get(&db_keys)) {
            let value =
                value.map_err(|e| exec_datafusion_err!("RocksDB state: read failed: {e}"))?;
            if let Some(value) = value {
                found.push((key, value));
            }
        }
        Ok(found)
    }

    /// Writes every cached key back: its value as `value_of(space, key)` gives it, or deleted
    /// if that gives none. The operator then empties its cache.
    pub fn write_back(
        &mut self,
        mut value_of: impl FnMut(usize, &[u8]) -> Option<Vec<u8>>,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (space, touched) in self.touched.iter_mut().enumerate() {
            for key in touched.drain() {
                let db_key = db_key(space, &key);
                match value_of(space, &key) {
                    Some(value) => batch.put(db_key, value),
                    None => batch.delete(db_key),
                }
            }
        }
        self.db.write(batch)
    }

    /// Writes `entries` of `space` as they are, outside the cache: state an operator keeps in
    /// memory that its checkpoints must hold (a temporal join's waiting rows), taken out again
    /// with [`Self::take_all`].
    pub fn put_all(
        &mut self,
        space: usize,
        entries: impl IntoIterator<Item = (Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let mut batch = WriteBatch::default();
        for (key, value) in entries {
            batch.put(db_key(space, &key), value);
        }
        self.db.write(batch)
    }

    /// Takes every entry of `space` out of the database: (key, value), in key order.
    pub fn take_all(&mut self, space: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let prefix = [space as u8];
        let entries = scan_prefix(self.db.db(), prefix)
            .map(|entry| entry.map(|(key, value)| (key[1..].to_vec(), value.to_vec())))
            .collect::<Result<Vec<_>>>()?;
        let mut batch = WriteBatch::default();
        for (key, _) in &entries {
            batch.delete(db_key(space, key));
        }
        self.db.write(batch)?;
        Ok(entries)
    }

    /// Adds the entries of a database saved at another parallelism (opened read-only from
    /// `files`) whose keys `owned` keeps: `owned` gets a chunk of (space, key) and says which
    /// belong to this partition.
    pub fn restore_rekeyed(
        &mut self,
        files: &Path,
        mut owned: impl FnMut(&[(usize, &[u8])]) -> Result<Vec<bool>>,
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
            let mut keys: Vec<(usize, &[u8])> = Vec::with_capacity(chunk.len());
            for (key, _) in &chunk {
                let Some((&space, key)) = key.split_first() else {
                    return internal_err!("a keyed RocksDB entry without its key space");
                };
                keys.push((usize::from(space), key));
            }
            let mine = owned(&keys)?;
            if mine.len() != chunk.len() {
                return internal_err!(
                    "re-keying a RocksDB store: {} answers for {} entries",
                    mine.len(),
                    chunk.len()
                );
            }
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

/// Where an entry's key columns are in its stored key (of a key space), if it has any.
pub type KeyOf = fn(usize, &[u8]) -> Result<Option<&[u8]>>;

impl KeyedDb {
    /// Adds, from the databases `dirs` saved at another parallelism, the entries that belong
    /// to partition `partition` of `partitions`: those whose key columns (in `keys`' row
    /// format, as `key_of(space, stored key)` finds them) hash to it, as the exchange routes
    /// rows; an entry without key columns (`None`) goes to the first partition.
    pub fn restore_rekeyed_by_hash<'a>(
        &mut self,
        dirs: impl IntoIterator<Item = &'a Path>,
        keys: &RowCodec,
        partition: usize,
        partitions: usize,
        key_of: KeyOf,
    ) -> Result<()> {
        for dir in dirs {
            self.restore_rekeyed(dir, |chunk| {
                let routed = chunk
                    .iter()
                    .map(|(space, key)| key_of(*space, key))
                    .collect::<Result<Vec<_>>>()?;
                let bytes: Vec<&[u8]> = routed.iter().flatten().copied().collect();
                let columns = keys.decode(&bytes)?;
                let mut owners = partitions_of(&columns, bytes.len(), partitions)?.into_iter();
                Ok(routed
                    .iter()
                    .map(|k| match k {
                        Some(_) => owners.next() == Some(partition),
                        None => partition == 0,
                    })
                    .collect())
            })?;
        }
        Ok(())
    }
}

/// The key of a row kept in memory but put into a checkpoint's database (with
/// [`KeyedDb::put_all`]): whether it has key columns, their bytes, its time and arrival number.
pub fn timed_key(key: Option<&[u8]>, time: i64, arrival: u64) -> Vec<u8> {
    let bytes = key.unwrap_or_default();
    let mut out = Vec::with_capacity(bytes.len() + 17);
    out.push(u8::from(key.is_some()));
    out.extend_from_slice(bytes);
    out.extend_from_slice(&ordered_prefix(time));
    out.extend_from_slice(&arrival.to_be_bytes());
    out
}

/// The key columns' bytes (`None`: none), time and arrival number of a [`timed_key`].
pub fn parse_timed_key(key: &[u8]) -> Result<(Option<&[u8]>, i64, u64)> {
    let parsed = key.split_first().and_then(|(&flag, rest)| {
        let (columns, numbers) = rest.split_at_checked(rest.len().checked_sub(16)?)?;
        let time = ordered_prefix_of(numbers)?;
        let arrival = u64::from_be_bytes(numbers.get(8..)?.try_into().ok()?);
        Some(((flag == 1).then_some(columns), time, arrival))
    });
    parsed.ok_or_else(|| exec_datafusion_err!("a RocksDB entry of a waiting row is cut short"))
}

/// Reads the little-endian numbers and length-prefixed byte strings of a stored value, as
/// operators encode their state; every read fails on a value cut short.
pub struct ValueReader<'a> {
    value: &'a [u8],
    what: &'static str,
}

impl<'a> ValueReader<'a> {
    /// A reader of `value`, naming `what` holds it in errors.
    pub fn new(value: &'a [u8], what: &'static str) -> Self {
        Self { value, what }
    }

    /// True when everything was read.
    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    fn short(&self) -> datafusion::common::DataFusionError {
        exec_datafusion_err!("{}'s RocksDB entry is cut short", self.what)
    }

    /// The next 8 bytes as a `u64`.
    pub fn u64(&mut self) -> Result<u64> {
        let (n, rest) = self
            .value
            .split_first_chunk::<8>()
            .ok_or_else(|| self.short())?;
        self.value = rest;
        Ok(u64::from_le_bytes(*n))
    }

    /// The next 8 bytes as an `i64`.
    pub fn i64(&mut self) -> Result<i64> {
        Ok(self.u64()? as i64)
    }

    /// The next byte string (a 4-byte length, then the bytes).
    pub fn bytes(&mut self) -> Result<&'a [u8]> {
        let (len, rest) = self
            .value
            .split_first_chunk::<4>()
            .ok_or_else(|| self.short())?;
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            return Err(self.short());
        }
        let (bytes, rest) = rest.split_at(len);
        self.value = rest;
        Ok(bytes)
    }
}

/// Appends `bytes` as [`ValueReader::bytes`] reads them.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_keys_read_back() {
        let key = timed_key(Some(b"abc"), -5, 7);
        assert_eq!(parse_timed_key(&key).unwrap(), (Some(&b"abc"[..]), -5, 7));
        let none = timed_key(None, 3, 1);
        assert_eq!(parse_timed_key(&none).unwrap(), (None, 3, 1));
        assert!(parse_timed_key(&none[..16]).is_err());
    }

    #[test]
    fn values_read_back_and_cut_values_fail() {
        let mut value = Vec::new();
        put_bytes(&mut value, b"abc");
        value.extend_from_slice(&7u64.to_le_bytes());
        value.extend_from_slice(&(-5i64).to_le_bytes());
        put_bytes(&mut value, b"");
        let mut r = ValueReader::new(&value, "a test");
        assert_eq!(r.bytes().unwrap(), b"abc");
        assert_eq!(r.u64().unwrap(), 7);
        assert_eq!(r.i64().unwrap(), -5);
        assert_eq!(r.bytes().unwrap(), b"");
        assert!(r.is_empty());
        for cut in 0..value.len() {
            let mut r = ValueReader::new(&value[..cut], "a test");
            let read = (|| -> Result<()> {
                r.bytes()?;
                r.u64()?;
                r.i64()?;
                r.bytes()?;
                Ok(())
            })();
            assert!(read.is_err(), "cut at {cut}");
        }
    }

    /// Values loaded once per key until written back; written back, deleted and re-keyed.
    #[test]
    fn keys_load_once_write_back_and_rekey() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = KeyedDb::try_new(dir.path(), "test", 2).unwrap();
        store.touch(0, b"a");
        store.touch(1, b"a");
        store.touch(1, b"b");
        store
            .write_back(|space, key| match (space, key) {
                (0, b"a") => Some(b"zero-a".to_vec()),
                (1, b"a") => Some(b"one-a".to_vec()),
                _ => None,
            })
            .unwrap();
        let loaded = store.load(1, [&b"a"[..], b"b", b"a"]).unwrap();
        assert_eq!(loaded, vec![(&b"a"[..], b"one-a".to_vec())]);
        // Cached now: not loaded again.
        assert!(store.load(1, [&b"a"[..]]).unwrap().is_empty());
        assert_eq!(
            store.load(0, [&b"a"[..]]).unwrap(),
            vec![(&b"a"[..], b"zero-a".to_vec())]
        );
        // Written back: (1, a) deleted, (0, a) kept.
        store
            .write_back(|space, _| (space == 0).then(|| b"zero-a2".to_vec()))
            .unwrap();
        assert!(store.load(1, [&b"a"[..]]).unwrap().is_empty());
        let files = dir.path().join("saved");
        store.db().checkpoint(&files).unwrap();
        let other = tempfile::tempdir().unwrap();
        let mut rekeyed = KeyedDb::try_new(other.path(), "other", 2).unwrap();
        rekeyed
            .restore_rekeyed(&files, |chunk| {
                Ok(chunk.iter().map(|(space, _)| *space == 0).collect())
            })
            .unwrap();
        assert_eq!(
            rekeyed.load(0, [&b"a"[..]]).unwrap(),
            vec![(&b"a"[..], b"zero-a2".to_vec())]
        );
        // Entries put outside the cache are taken out whole, and only those of their space.
        rekeyed
            .put_all(
                1,
                [
                    (b"y".to_vec(), b"2".to_vec()),
                    (b"x".to_vec(), b"1".to_vec()),
                ],
            )
            .unwrap();
        assert_eq!(
            rekeyed.take_all(1).unwrap(),
            vec![
                (b"x".to_vec(), b"1".to_vec()),
                (b"y".to_vec(), b"2".to_vec())
            ]
        );
        assert!(rekeyed.take_all(1).unwrap().is_empty());
        rekeyed.touch(0, b"a");
        rekeyed.write_back(|_, _| Some(b"kept".to_vec())).unwrap();
        assert_eq!(rekeyed.take_all(0).unwrap().len(), 1);
    }

    /// With an expiry, compaction drops the entries written longer ago than the time to live,
    /// and keeps the fresh ones, those that do not expire, and (until a time to live after the
    /// restore) those of a restored database.
    #[test]
    fn compaction_drops_expired_entries() {
        let expiry = || {
            Expiry::new(
                std::time::Duration::from_secs(3600),
                written_first_in_space_0,
            )
        };
        let now = crate::state::ttl::now_ms();
        let stamped = |written: i64| written.to_le_bytes().to_vec();
        let dir = tempfile::tempdir().unwrap();
        let mut store = KeyedDb::try_new_expiring(dir.path(), "test", 2, Some(expiry())).unwrap();
        for key in [&b"old"[..], b"new", b"short"] {
            store.touch(0, key);
        }
        store.touch(1, b"old");
        store
            .write_back(|space, key| match (space, key) {
                (0, b"old") | (1, b"old") => Some(stamped(now - 2 * 3_600_000)),
                (0, b"new") => Some(stamped(now)),
                // Too short to hold a write time: kept.
                _ => Some(b"x".to_vec()),
            })
            .unwrap();
        let saved = dir.path().join("saved");
        store.db().checkpoint(&saved).unwrap();
        let compact = |store: &KeyedDb| {
            let db = store.db().db();
            db.flush().unwrap();
            db.compact_range(None::<&[u8]>, None::<&[u8]>);
        };
        compact(&store);
        let keys = [&b"old"[..], b"new", b"short"];
        let found = |store: &mut KeyedDb| -> Vec<(usize, Vec<u8>)> {
            let mut found: Vec<(usize, Vec<u8>)> = (0..2)
                .flat_map(|space| {
                    store
                        .load(space, keys)
                        .unwrap()
                        .into_iter()
                        .map(move |(k, _)| (space, k.to_vec()))
                })
                .collect();
            found.sort();
            found
        };
        assert_eq!(
            found(&mut store),
            vec![
                (0, b"new".to_vec()),
                (0, b"short".to_vec()),
                (1, b"old".to_vec())
            ]
        );
        // Restored, the old entry lives a whole time to live from the restore.
        let other = tempfile::tempdir().unwrap();
        let mut restored =
            KeyedDb::try_new_expiring(other.path(), "restored", 2, Some(expiry())).unwrap();
        restored.adopt(&saved).unwrap();
        compact(&restored);
        assert_eq!(found(&mut restored).len(), 4);
    }
}
