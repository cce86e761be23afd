//! Choosing the rows of restored keyed state that belong to one partition.
//!
//! The hash exchange routes a row to partition `hash(keys) % n` with DataFusion's fixed-seed
//! repartition hash. State restored at a different parallelism is split the same way, so every
//! key's state lands in the task that will receive the key's future rows.

use datafusion::arrow::array::{ArrayRef, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;
use datafusion::common::hash_utils::create_hashes;
use datafusion::physical_plan::repartition::REPARTITION_RANDOM_STATE;

/// The rows of `batch` whose `keys` hash to `partition` of `partitions`.
pub fn rows_of_partition(
    batch: &RecordBatch,
    keys: &[ArrayRef],
    partition: usize,
    partitions: usize,
) -> Result<RecordBatch> {
    if partitions <= 1 || keys.is_empty() {
        return Ok(if partition == 0 {
            batch.clone()
        } else {
            batch.slice(0, 0)
        });
    }
    let indices: UInt32Array = partitions_of(keys, batch.num_rows(), partitions)?
        .iter()
        .enumerate()
        .filter(|(_, p)| **p == partition)
        .map(|(i, _)| i as u32)
        .collect();
    Ok(take_record_batch(batch, &indices)?)
}

/// The partition (of `partitions`) each of `rows` rows with `keys` belongs to, as the hash
/// exchange routes it (all 0 without keys).
pub fn partitions_of(keys: &[ArrayRef], rows: usize, partitions: usize) -> Result<Vec<usize>> {
    if partitions <= 1 || keys.is_empty() {
        return Ok(vec![0; rows]);
    }
    let mut hashes = vec![0u64; rows];
    create_hashes(keys, REPARTITION_RANDOM_STATE.random_state(), &mut hashes)?;
    Ok(hashes
        .iter()
        .map(|h| (h % partitions as u64) as usize)
        .collect())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int64Array};

    use super::*;

    #[test]
    fn every_row_goes_to_exactly_one_partition() {
        let keys: ArrayRef = Arc::new(Int64Array::from((0..1000).collect::<Vec<i64>>()));
        let batch = RecordBatch::try_from_iter(vec![("k", Arc::clone(&keys))]).unwrap();
        let parts: Vec<RecordBatch> = (0..3)
            .map(|p| rows_of_partition(&batch, &[Arc::clone(&keys)], p, 3).unwrap())
            .collect();
        assert_eq!(parts.iter().map(|b| b.num_rows()).sum::<usize>(), 1000);
        assert!(parts.iter().all(|b| b.num_rows() > 200));
        let mut seen: Vec<i64> = parts
            .iter()
            .flat_map(|b| {
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..1000).collect::<Vec<i64>>());
    }
}
