//! Where an exactly-once writer's transaction stands, and what a checkpoint keeps of it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::deliveries::KafkaProducer;

/// Where a writer's transaction stands, shared with [`super::KafkaSink`]'s commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// No transaction, or one taking rows.
    Open,
    /// Flushed at a barrier; waiting for its checkpoint.
    PreCommitted(u64),
    /// Generation committed; the writer may begin the next.
    Committed(u64),
}

/// One exactly-once writer's producer and phase.
pub(super) struct Transactional {
    pub(super) producer: Arc<KafkaProducer>,
    pub(super) phase: Mutex<Phase>,
}

/// The pre-commit of an exactly-once writer: its flushed transaction, committed by
/// [`super::KafkaSink`]'s commit once the checkpoint is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct KafkaPreCommit {
    /// The writer's transactional id, `<prefix>-<writer>`.
    pub(super) transactional_id: String,
    /// Number of the transaction among the writer's (the first is 1).
    pub(super) generation: u64,
    /// The topic written. Always written; absent in the pre-commits of versions before
    /// in-doubt transactions were resolved on recovery, which means the table's topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) topic: Option<String>,
    /// Per partition (its id, a JSON object key), the offset of the transaction's first
    /// record, where recovery looks to learn whether the transaction was committed. Empty
    /// for a transaction without records; absent (read as empty) in the pre-commits of
    /// versions before in-doubt transactions were resolved on recovery.
    #[serde(default)]
    pub(super) offsets: BTreeMap<i32, i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pre-commit in the layout this version writes reads back and writes out unchanged;
    /// one of a version before in-doubt resolution (no topic, no offsets) still reads.
    #[test]
    fn pre_commit_layout() {
        let written = serde_json::json!({
            "transactional_id": "orders-sink-1",
            "generation": 3,
            "topic": "orders",
            "offsets": {"0": 120, "2": 7},
        });
        let pre_commit = KafkaPreCommit::deserialize(&written).unwrap();
        assert_eq!(
            pre_commit,
            KafkaPreCommit {
                transactional_id: "orders-sink-1".to_string(),
                generation: 3,
                topic: Some("orders".to_string()),
                offsets: BTreeMap::from([(0, 120), (2, 7)]),
            }
        );
        assert_eq!(serde_json::to_value(&pre_commit).unwrap(), written);

        let older = serde_json::json!({"transactional_id": "orders-sink-0", "generation": 1});
        let pre_commit = KafkaPreCommit::deserialize(&older).unwrap();
        assert_eq!(pre_commit.topic, None);
        assert!(pre_commit.offsets.is_empty());
    }
}
