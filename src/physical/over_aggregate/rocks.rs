//! OVER aggregation state in RocksDB (`state.backend` = `rocksdb`): per partition key, its
//! rows ([`KeyedDb`] key space [`KEYS`]: over an appending stream the rows later frames reach,
//! over a changelog every row with the values last emitted for it), cached in memory for the
//! keys recent batches touched. Rows waiting for the watermark (over an appending stream) stay
//! in memory and go into the checkpoint's database (key space [`WAITING`]: the partition key,
//! then the row's time and arrival number).

use datafusion::common::{Result, exec_datafusion_err};

use crate::state::keyed_db::KeyedDb;
use crate::state::redistribute::partitions_of;
use crate::state::rocks::{RowCodec, ordered_prefix, ordered_prefix_of};

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
        for dir in dirs {
            self.store.restore_rekeyed(dir, |chunk| {
                let mut bytes = Vec::with_capacity(chunk.len());
                for (space, key) in chunk {
                    bytes.push(match *space {
                        WAITING => parse_waiting_key(key)?.0,
                        _ => key,
                    });
                }
                let columns = keys.decode(&bytes)?;
                Ok(partitions_of(&columns, bytes.len(), partitions)?
                    .into_iter()
                    .map(|p| p == partition)
                    .collect())
            })?;
        }
        Ok(())
    }
}

/// A waiting row's key in the database: its partition key, time and arrival number.
pub(super) fn waiting_key(key: &[u8], time: i64, arrival: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 16);
    out.extend_from_slice(key);
    out.extend_from_slice(&ordered_prefix(time));
    out.extend_from_slice(&arrival.to_be_bytes());
    out
}

/// The partition key, time and arrival number of a [`waiting_key`].
pub(super) fn parse_waiting_key(key: &[u8]) -> Result<(&[u8], i64, u64)> {
    let parsed = key
        .len()
        .checked_sub(16)
        .and_then(|at| key.split_at_checked(at))
        .and_then(|(key, numbers)| {
            let time = ordered_prefix_of(numbers)?;
            let arrival = u64::from_be_bytes(numbers.get(8..)?.try_into().ok()?);
            Some((key, time, arrival))
        });
    parsed.ok_or_else(|| {
        exec_datafusion_err!("an OVER aggregation's RocksDB entry of a waiting row is cut short")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_keys_read_back() {
        let key = waiting_key(b"abc", -5, 7);
        assert_eq!(parse_waiting_key(&key).unwrap(), (&b"abc"[..], -5, 7));
        assert_eq!(parse_waiting_key(&key[3..]).unwrap(), (&b""[..], -5, 7));
        assert!(parse_waiting_key(&key[4..]).is_err());
    }
}
