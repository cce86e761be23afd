//! The versioned table of a temporal join partition: per join key, the rows of the versioned
//! side by their event time, each a version valid from its time until the next one.
//!
//! A version is a row (`+I`, `+U`) or a deletion (`-D`: from its time on the key has no row).
//! A version at a time already held replaces it, as a later write of the same key and time
//! does in Flink. Once the watermark passes a time, no probe row before it can still come, so
//! of the versions at or before the watermark only the latest is needed (and not even that one
//! when it is a deletion): [`VersionedTable::prune`] drops the others.
//!
//! With `state.backend` = `rocksdb` the table is a cache of the keys recent batches touched:
//! a key's versions are [loaded](VersionedTable::load) (and pruned at the last watermark) before
//! they are read or written, and [encoded](VersionedTable::encode) when written back.

use std::collections::BTreeMap;

use datafusion::common::{HashMap, Result};

use crate::physical::message::NO_WATERMARK;
use crate::state::keyed_db::{ValueReader, put_bytes};

/// Bytes a version costs besides its row.
const VERSION_OVERHEAD: usize = 48;

/// One version of a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Version {
    /// The row, in the versioned side's row format (a deletion keeps the deleted row, whose
    /// key routes it when a checkpoint is restored at another parallelism).
    pub row: Box<[u8]>,
    pub deleted: bool,
}

/// A key's versions by time, and when one was last put (processing time, ms):
/// `table.exec.state.ttl` counts from there.
#[derive(Debug, Default)]
struct KeyVersions {
    versions: BTreeMap<i64, Version>,
    written: i64,
}

/// See the module docs.
#[derive(Debug, Default)]
pub(super) struct VersionedTable {
    by_key: HashMap<Box<[u8]>, KeyVersions>,
    /// The keys to prune once the watermark reaches a time (a key per version put).
    prune_at: BTreeMap<i64, Vec<Box<[u8]>>>,
    /// Versions held.
    pub versions: usize,
    /// Bytes held.
    pub bytes: usize,
    /// The watermark of the last prune (versions loaded are pruned to it).
    pruned: Option<i64>,
}

impl VersionedTable {
    /// Puts the version of `key` valid from `time`, at processing time `now`.
    pub fn put(&mut self, key: &[u8], time: i64, row: &[u8], deleted: bool, now: i64) {
        let entry = match self.by_key.get_mut(key) {
            Some(v) => v,
            None => {
                self.bytes += key.len() + VERSION_OVERHEAD;
                self.by_key.entry(key.into()).or_default()
            }
        };
        entry.written = now;
        let versions = &mut entry.versions;
        let version = Version {
            row: row.into(),
            deleted,
        };
        self.bytes += row.len() + VERSION_OVERHEAD;
        match versions.insert(time, version) {
            // (The key is to be pruned at this time already.)
            Some(old) => self.bytes = self.bytes.saturating_sub(old.row.len() + VERSION_OVERHEAD),
            None => {
                self.versions += 1;
                self.prune_at.entry(time).or_default().push(key.into());
            }
        }
    }

    /// The row of `key` valid at `time`: its latest version at or before `time`, unless that
    /// is a deletion.
    pub fn as_of(&self, key: &[u8], time: i64) -> Option<&[u8]> {
        let (_, version) = self.by_key.get(key)?.versions.range(..=time).next_back()?;
        (!version.deleted).then_some(&*version.row)
    }

    /// Drops the versions no probe row after `watermark` can reach (see the module docs);
    /// returns how many.
    pub fn prune(&mut self, watermark: i64) -> usize {
        self.pruned = Some(watermark);
        let later = match watermark.checked_add(1) {
            Some(next) => self.prune_at.split_off(&next),
            None => BTreeMap::new(),
        };
        let due = std::mem::replace(&mut self.prune_at, later);
        let before = self.versions;
        for key in due.into_values().flatten() {
            self.prune_key(&key, watermark);
        }
        before - self.versions
    }

    /// Drops the versions of `key` no probe row after `watermark` can reach.
    fn prune_key(&mut self, key: &[u8], watermark: i64) {
        let Some(versions) = self.by_key.get_mut(key).map(|k| &mut k.versions) else {
            return;
        };
        // The latest version at or before the watermark stays, unless it is a deletion.
        let Some((latest, deleted)) = versions
            .range(..=watermark)
            .next_back()
            .map(|(&t, v)| (t, v.deleted))
        else {
            return;
        };
        let keep_from = if deleted {
            latest.saturating_add(1)
        } else {
            latest
        };
        let kept = versions.split_off(&keep_from);
        let dropped = std::mem::replace(versions, kept);
        for v in dropped.values() {
            self.bytes = self.bytes.saturating_sub(v.row.len() + VERSION_OVERHEAD);
        }
        self.versions -= dropped.len();
        if versions.is_empty() {
            self.by_key.remove(key);
            self.bytes = self.bytes.saturating_sub(key.len() + VERSION_OVERHEAD);
        }
    }

    /// The versions of `key` as RocksDB stores them: when one was last put, then per version
    /// its time, whether it is a deletion and its row. `None` if the key has none.
    pub fn encode(&self, key: &[u8]) -> Option<Vec<u8>> {
        let k = self.by_key.get(key).filter(|k| !k.versions.is_empty())?;
        let mut out = Vec::with_capacity(8 + k.versions.len() * 24);
        out.extend_from_slice(&k.written.to_le_bytes());
        for (time, v) in &k.versions {
            out.extend_from_slice(&time.to_le_bytes());
            out.extend_from_slice(&u64::from(v.deleted).to_le_bytes());
            put_bytes(&mut out, &v.row);
        }
        Some(out)
    }

    /// Adds the versions of `key` (not held) as [`Self::encode`] stored them, pruned at the
    /// last watermark; none if `table.exec.state.ttl` expired the key (none put since
    /// `oldest`, counting from `restored` at the latest).
    pub fn load(
        &mut self,
        key: &[u8],
        value: &[u8],
        oldest: Option<i64>,
        restored: i64,
    ) -> Result<()> {
        let mut r = ValueReader::new(value, "a temporal join");
        let written = r.i64()?.max(restored);
        if oldest.is_some_and(|oldest| written < oldest) {
            return Ok(());
        }
        let mut versions = BTreeMap::new();
        while !r.is_empty() {
            let time = r.i64()?;
            let deleted = r.u64()? != 0;
            let row: Box<[u8]> = r.bytes()?.into();
            self.bytes += row.len() + VERSION_OVERHEAD;
            versions.insert(time, Version { row, deleted });
        }
        let watermark = self.pruned.unwrap_or(NO_WATERMARK);
        // Versions after the last prune are pruned when the watermark passes them.
        for &time in versions.keys().filter(|&&t| t > watermark) {
            self.prune_at.entry(time).or_default().push(key.into());
        }
        self.versions += versions.len();
        self.bytes += key.len() + VERSION_OVERHEAD;
        self.by_key
            .insert(key.into(), KeyVersions { versions, written });
        self.prune_key(key, watermark);
        Ok(())
    }

    /// Empties the table (every key written back to RocksDB), keeping the last watermark.
    pub fn clear(&mut self) {
        self.by_key.clear();
        self.prune_at.clear();
        (self.versions, self.bytes) = (0, 0);
    }

    /// Drops the keys no version was put for since `oldest` (`table.exec.state.ttl`); returns
    /// how many versions went.
    pub fn expire(&mut self, oldest: i64) -> usize {
        let (mut versions, mut bytes) = (self.versions, self.bytes);
        self.by_key.retain(|key, k| {
            let keep = k.written >= oldest;
            if !keep {
                versions -= k.versions.len();
                let held: usize = k
                    .versions
                    .values()
                    .map(|v| v.row.len() + VERSION_OVERHEAD)
                    .sum();
                bytes = bytes.saturating_sub(held + key.len() + VERSION_OVERHEAD);
            }
            keep
        });
        let gone = self.versions - versions;
        (self.versions, self.bytes) = (versions, bytes);
        gone
    }

    /// True when no version is held.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Every version: key, time and version.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], i64, &Version)> {
        self.by_key
            .iter()
            .flat_map(|(k, kv)| kv.versions.iter().map(move |(t, v)| (&**k, *t, v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &str) -> Vec<u8> {
        s.as_bytes().to_vec()
    }

    /// Flink's example: versions 1 (+I), 4 (+U), 7 (+U), 9 (-D), 12 (+I). A probe at 6 sees
    /// version 4; at 10 the deletion at 9, so nothing; before 1 nothing; at 12 version 12.
    #[test]
    fn a_probe_sees_the_latest_version_at_or_before_its_time() {
        let mut t = VersionedTable::default();
        for (time, v, deleted) in [(1, "a", false), (4, "b", false), (7, "c", false)] {
            t.put(b"k", time, &row(v), deleted, 0);
        }
        t.put(b"k", 9, &row("c"), true, 0);
        t.put(b"k", 12, &row("d"), false, 0);
        assert_eq!(t.as_of(b"k", 6), Some(&b"b"[..]));
        assert_eq!(t.as_of(b"k", 4), Some(&b"b"[..]));
        assert_eq!(t.as_of(b"k", 10), None);
        assert_eq!(t.as_of(b"k", 0), None);
        assert_eq!(t.as_of(b"k", 12), Some(&b"d"[..]));
        assert_eq!(t.as_of(b"other", 12), None);
        assert_eq!(t.versions, 5);
        // The same time again replaces the version.
        t.put(b"k", 4, &row("B"), false, 0);
        assert_eq!(t.as_of(b"k", 5), Some(&b"B"[..]));
        assert_eq!(t.versions, 5);
    }

    /// Versions written back and loaded again are the same, pruned at the last watermark, and
    /// pruned again when the watermark passes the later ones; an expired key loads as none.
    #[test]
    fn versions_load_as_they_were_stored() {
        let mut t = VersionedTable::default();
        t.put(b"k", 1, &row("a"), false, 100);
        t.put(b"k", 4, &row("b"), false, 100);
        t.put(b"k", 7, &row("c"), false, 100);
        t.put(b"k", 9, &row("c"), true, 100);
        let stored = t.encode(b"k").unwrap();
        assert!(t.encode(b"none").is_none());
        // When the key was last put, as RocksDB's compaction reads it (key space 0).
        assert_eq!(
            crate::state::keyed_db::written_first_in_space_0(&[0, b'k'], &stored),
            Some(100)
        );
        t.prune(5);
        t.clear();
        assert_eq!((t.versions, t.bytes, t.as_of(b"k", 5)), (0, 0, None));
        t.load(b"k", &stored, Some(50), i64::MIN).unwrap();
        // Version 1 is pruned at the watermark 5; 4, 7 and the deletion at 9 stay.
        assert_eq!(t.versions, 3);
        assert_eq!(t.as_of(b"k", 3), None);
        assert_eq!(t.as_of(b"k", 5), Some(&b"b"[..]));
        assert_eq!(t.as_of(b"k", 8), Some(&b"c"[..]));
        assert_eq!(t.as_of(b"k", 9), None);
        assert_eq!(t.prune(9), 3, "the deletion passed: nothing is left");
        assert_eq!((t.versions, t.bytes), (0, 0));
        let mut expired = VersionedTable::default();
        expired.load(b"k", &stored, Some(101), i64::MIN).unwrap();
        assert!(expired.is_empty());
        // Restored since: alive again.
        expired.load(b"k", &stored, Some(101), 200).unwrap();
        assert_eq!(expired.as_of(b"k", 8), Some(&b"c"[..]));
        let mut cut = VersionedTable::default();
        assert!(
            cut.load(b"k", &stored[..stored.len() - 1], None, i64::MIN)
                .is_err()
        );
    }

    /// Keys not written for the time to live go with all their versions.
    #[test]
    fn keys_not_written_expire() {
        let mut t = VersionedTable::default();
        t.put(b"old", 1, &row("a"), false, 100);
        t.put(b"new", 1, &row("b"), false, 100);
        t.put(b"new", 2, &row("c"), false, 300);
        assert_eq!(t.expire(200), 1);
        assert_eq!(t.as_of(b"old", 5), None);
        assert_eq!(t.as_of(b"new", 5), Some(&b"c"[..]));
        assert_eq!(t.versions, 2);
        t.expire(1000);
        assert!(t.is_empty());
        assert_eq!(t.bytes, 0);
    }

    /// Pruning keeps the latest version at or before the watermark and every later one; a
    /// deletion as that latest version goes too, and with it a key left without versions.
    #[test]
    fn pruning_keeps_what_later_probes_can_reach() {
        let mut t = VersionedTable::default();
        t.put(b"k", 1, &row("a"), false, 0);
        t.put(b"k", 4, &row("b"), false, 0);
        t.put(b"k", 7, &row("c"), false, 0);
        assert_eq!(t.prune(5), 1);
        assert_eq!(t.as_of(b"k", 5), Some(&b"b"[..]));
        assert_eq!(t.as_of(b"k", 3), None, "version 1 is gone");
        assert_eq!(t.as_of(b"k", 8), Some(&b"c"[..]));
        // A later watermark keeps version 7 alone, and keeps it.
        assert_eq!(t.prune(100), 1);
        assert_eq!(t.prune(200), 0);
        assert_eq!(t.as_of(b"k", 300), Some(&b"c"[..]));
        // A deletion passed by the watermark leaves nothing.
        t.put(b"k", 300, &row("c"), true, 0);
        assert_eq!(t.prune(300), 2);
        assert_eq!((t.versions, t.by_key.len()), (0, 0));
        assert_eq!(t.bytes, 0, "every byte counted in is counted out");
        // A late version older than the kept one is dropped at the next watermark.
        t.put(b"j", 50, &row("x"), false, 0);
        t.prune(60);
        t.put(b"j", 40, &row("old"), false, 0);
        assert_eq!(t.prune(60), 1);
        assert_eq!(t.as_of(b"j", 45), None);
        assert_eq!(t.as_of(b"j", 55), Some(&b"x"[..]));
    }
}
