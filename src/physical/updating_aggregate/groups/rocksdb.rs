//! The group table over RocksDB (`state.backend` = `rocksdb`): the table in memory is then a
//! write-back cache of the groups in the database ([`RocksGroups`]).

use std::collections::HashSet;
use std::path::Path;

use datafusion::arrow::row::Rows;
use datafusion::common::{Result, internal_err};

use super::GroupTable;
use crate::physical::updating_aggregate::rocks_groups::{RocksGroups, StoredGroup};
use crate::state::redistribute::partitions_of;
use crate::state::rocks::StateDb;

impl GroupTable {
    /// Keeps every group in a new RocksDB database under `root` (named after `label`), and
    /// only a cache of them in memory. (Set the time to live first: RocksDB's compactions
    /// apply it too.)
    pub fn with_rocksdb(mut self, root: &Path, label: &str) -> Result<Self> {
        let mut types = Vec::new();
        for mut accumulator in self.new_accumulators()? {
            types.extend(accumulator.state()?.iter().map(|v| v.data_type()));
        }
        let ttl = self
            .ttl_ms
            .map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
        self.store = Some(RocksGroups::try_new(root, label, types, ttl)?);
        Ok(self)
    }

    /// The RocksDB database, with `state.backend` = `rocksdb`.
    pub fn db(&self) -> Option<&StateDb> {
        self.store.as_ref().map(RocksGroups::db)
    }

    /// Sets how many groups the RocksDB cache holds (tests).
    #[cfg(test)]
    pub(super) fn set_cache_groups(&mut self, groups: usize) {
        if let Some(store) = &mut self.store {
            store.capacity = groups;
        }
    }

    /// Replaces the (empty) database with one restored from a checkpoint.
    pub fn adopt(&mut self, root: &Path, label: &str, files: &Path) -> Result<()> {
        match &mut self.store {
            Some(store) => store.adopt(root, label, files),
            None => internal_err!("an updating aggregate in memory was given a RocksDB checkpoint"),
        }
    }

    /// Adds the groups of a database saved at another parallelism (opened read-only from
    /// `files`) that belong to `partition` of `partitions`.
    pub fn restore_rekeyed(
        &mut self,
        files: &Path,
        partition: usize,
        partitions: usize,
    ) -> Result<()> {
        let Some(mut store) = self.store.take() else {
            return internal_err!("an updating aggregate in memory was given a RocksDB checkpoint");
        };
        let result = store.restore_rekeyed(files, |keys| {
            let columns = self.key_columns(keys)?;
            Ok(partitions_of(&columns, keys.len(), partitions)?
                .into_iter()
                .map(|p| p == partition)
                .collect())
        });
        self.store = Some(store);
        result
    }

    /// With RocksDB: writes every cached group back and empties the cache, if it holds more
    /// than its capacity or `always`.
    pub fn write_back(&mut self, always: bool) -> Result<()> {
        let Some(store) = &self.store else {
            return Ok(());
        };
        if !always && self.index.len() <= store.capacity {
            return Ok(());
        }
        let mut groups = Vec::with_capacity(self.index.len());
        for group in std::mem::take(&mut self.groups).into_iter().flatten() {
            let mut state = Vec::new();
            for mut accumulator in group.accumulators {
                state.extend(accumulator.state()?);
            }
            groups.push((
                group.key,
                StoredGroup {
                    rows: group.rows,
                    written: group.written,
                    state,
                },
            ));
        }
        self.index.clear();
        self.free.clear();
        self.bytes = 0;
        match &mut self.store {
            Some(store) => store.write(groups),
            None => Ok(()),
        }
    }

    /// With RocksDB: brings the groups of `key_rows` the cache lacks into it, leaving out
    /// (and deleting) those `table.exec.state.ttl` expired by `now`.
    pub(super) fn load(&mut self, key_rows: &Rows, now: i64) -> Result<()> {
        let oldest = self.ttl_ms.map(|ttl| now.saturating_sub(ttl));
        let Some(store) = &mut self.store else {
            return Ok(());
        };
        let mut missing: Vec<&[u8]> = Vec::new();
        let mut seen = HashSet::new();
        for row in key_rows.iter() {
            let key = row.data();
            if !self.index.contains_key(key) && seen.insert(key) {
                missing.push(key);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let stored = store.load(&missing)?;
        let mut found = Vec::with_capacity(stored.len());
        let mut expired = 0;
        for (key, group) in missing.into_iter().zip(stored) {
            let Some(mut group) = group else {
                continue;
            };
            group.written = store.written(group.written);
            if oldest.is_some_and(|oldest| group.written < oldest) {
                store.delete(key);
                expired += 1;
                continue;
            }
            found.push((Box::<[u8]>::from(key), group));
        }
        for (key, stored) in found {
            let mut group = self.stored_group(key, stored.rows, &stored.state)?;
            group.written = stored.written;
            self.insert_group(group);
        }
        if expired > 0 {
            log::debug!(
                "updating aggregate: {expired} stored group(s) expired (table.exec.state.ttl)"
            );
        }
        Ok(())
    }
}
