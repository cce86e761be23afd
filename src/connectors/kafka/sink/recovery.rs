//! After a crash: whether each transaction a checkpoint left in doubt was committed, read back
//! from the topic by a `read_committed` consumer.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use datafusion::common::{Result, exec_datafusion_err};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use serde::Deserialize;

use super::transaction::KafkaPreCommit;
use crate::connectors::kafka::KafkaTable;

/// How long a transaction whose records a `read_committed` consumer cannot reach yet may take
/// to show its commit (see [`record_is_committed`]).
const COMMIT_MARKER_GRACE: Duration = Duration::from_secs(2);

/// How long recovery tries to read one record of a transaction left in doubt.
const COMMIT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// True if a `read_committed` consumer sees the record at `offset` of `partition`; false if
/// it skips it (aborted) or ends the partition there (the transaction is still open);
/// `None` if it cannot reach it within [`COMMIT_CHECK_TIMEOUT`] (an earlier open
/// transaction, of another producer, holds the partition back).
fn record_is_committed(
    table: &KafkaTable,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<Option<bool>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let mut config = table.client_config(&[]);
    config
        .set("bootstrap.servers", &table.servers)
        .set("group.id", "sabot-transaction-check")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        // A record deleted by retention must not look like the end of the partition.
        .set("auto.offset.reset", "error")
        .set("isolation.level", "read_committed");
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| table.broker_error("creating a consumer", e))?;
    let mut assignment = rdkafka::TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
        .map_err(|e| table.broker_error("assigning a partition", e))?;
    consumer
        .assign(&assignment)
        .map_err(|e| table.broker_error("assigning a partition", e))?;
    let deadline = Instant::now() + COMMIT_CHECK_TIMEOUT.min(table.timeout);
    // The end of what the consumer may read at `offset`: the transaction is open, or its
    // commit markers are still being written (a broker acknowledges a commit before its
    // markers are in every partition). Wait a little for the latter.
    let mut open_until: Option<Instant> = None;
    while Instant::now() < deadline {
        if open_until.is_some_and(|t| Instant::now() >= t) {
            return Ok(Some(false));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => continue,
            Some(Ok(message)) => return Ok(Some(message.offset() == offset)),
            Some(Err(KafkaError::PartitionEOF(_))) => {
                open_until.get_or_insert(Instant::now() + COMMIT_MARKER_GRACE);
            }
            // Out of range (retention), or a broker fault: try again until the deadline,
            // then the transaction counts as one that cannot be told.
            Some(Err(e)) => {
                log::warn!(
                    "Kafka table {}: reading {topic}/{partition} at offset {offset}: {e}",
                    table.table
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    Ok(open_until.map(|_| false))
}

/// Reads back a pre-commit of a writer (see [`super::writer`]) (`None` for `Null`:
/// nothing to commit).
pub(super) fn pre_commit_of(
    table: &KafkaTable,
    pre_commit: &serde_json::Value,
) -> Result<Option<KafkaPreCommit>> {
    if pre_commit.is_null() {
        return Ok(None);
    }
    KafkaPreCommit::deserialize(pre_commit)
        .map(Some)
        .map_err(|e| {
            exec_datafusion_err!(
                "the checkpointed transaction of Kafka table {} does not read as this version \
             writes it ({e}): {pre_commit}",
                table.table
            )
        })
}

/// Whether each transaction was committed (see [`crate::connectors::SinkConnector::committed`]); `None`
/// entries are pre-commits without a transaction.
pub(super) fn verdicts(
    table: &KafkaTable,
    pre_commits: &[Option<KafkaPreCommit>],
) -> Result<Vec<Option<bool>>> {
    // Where each transaction's records begin: (topic, partition, first offset, which).
    let mut starts = Vec::new();
    for (i, pre_commit) in pre_commits.iter().enumerate() {
        let Some(pre_commit) = pre_commit else {
            continue;
        };
        let topic = pre_commit.topic.as_deref().unwrap_or(&table.topic);
        for (&partition, &offset) in &pre_commit.offsets {
            starts.push((topic.to_string(), partition, offset, i));
        }
    }
    starts.sort();
    // A transaction pre-committed again (its checkpoint was aborted) is one transaction.
    let mut first_of: HashMap<(String, u64), usize> = HashMap::new();
    let same: Vec<usize> = pre_commits
        .iter()
        .enumerate()
        .map(|(i, c)| match c {
            Some(c) => *first_of
                .entry((c.transactional_id.clone(), c.generation))
                .or_insert(i),
            None => i,
        })
        .collect();
    starts.retain(|(_, _, _, i)| same[*i] == *i);
    // A read_committed consumer reads a partition up to its first open transaction (the
    // last stable offset). Looked up in offset order, each undecided transaction's first
    // record is either visible (committed), skipped (aborted) or the end of what the
    // consumer may read (still open); past an open one the partition tells nothing more.
    // One partition decides a transaction: it commits in all of them at once.
    let mut verdicts = vec![None; pre_commits.len()];
    let mut blocked: Option<(&str, i32)> = None;
    for (topic, partition, offset, i) in &starts {
        if blocked == Some((topic.as_str(), *partition)) {
            continue;
        }
        let verdict = match verdicts[*i] {
            Some(v) => Some(v),
            None => {
                let v = record_is_committed(table, topic, *partition, *offset)?;
                verdicts[*i] = v;
                v
            }
        };
        // Past an open or aborted transaction (or one that could not be read) the partition
        // tells nothing more (one not committed is enough to restore an older checkpoint).
        if verdict != Some(true) {
            blocked = Some((topic.as_str(), *partition));
        }
    }
    Ok(same.iter().map(|&first| verdicts[first]).collect())
}
