//! OVER aggregation state in RocksDB (`state.backend` = `rocksdb`): per partition key, its
//! rows ([`KeyedDb`] key space [`KEYS`]: over an appending stream the rows later frames reach,
//! over a changelog every row with the values last emitted for it), cached in memory for the
//! keys recent batches touched. Rows waiting for the watermark (over an appending stream) stay
//! in memory and go into the checkpoint's database (key space [`WAITING`], keyed by
//! [`timed_key`](crate::state::keyed_db::timed_key): the partition key, the row's time and
//! arrival number).

use datafusion::common::Result;

use crate::state::keyed_db::{KeyedDb, parse_timed_key};
use crate::state::rocks::RowCodec;

/// Rows cached in memory before they are written back.
pub(super) const CACHE_ROWS: usize = 262_144;

/// The key spaces: per partition key, its rows; the waiting rows.
pub(super) const KEYS: usize = 0;
pub(super) const WAITING: usize = 1;

/// With `state.backend` = `rocksdb`: the database a partition's state caches.
pub(super) struct RocksState {
    pub(super) store: KeyedDb,
    /// This partition and the number of partitions (to re-key a restored database).
    pub(super) partition: usize,
    pub(super) partitions: usize,
    /// [`CACHE_ROWS`] (smaller in tests).
    pub(super) capacity: usize,
}

impl RocksState {
    pub(super) fn new(store: KeyedDb, partition: usize, partitions: usize) -> Self {
        Self {
            store,
            partition,
            partitions,
            capacity: CACHE_ROWS,
        }
    }

    /// Adds the entries of the databases `dirs` (saved at another parallelism) whose partition
    /// keys (`keys` their row format) belong to this partition.
    pub(super) fn restore_rekeyed(
        &mut self,
        dirs: Vec<&std::path::Path>,
        keys: &RowCodec,
    ) -> Result<()> {
        let (partition, partitions) = (self.partition, self.partitions);
        self.store
            .restore_rekeyed_by_hash(
                dirs,
                keys,
                partition,
                partitions,
                |space, key| match space {
                    WAITING => Ok(parse_timed_key(key)?.0),
                    _ => Ok(Some(key)),
                },
            )
    }
}
