//! What a reader reads: its plan, its partitions (splits) and where each read starts and
//! (bounded) stops.

use std::collections::HashMap;
use std::time::Duration;

use datafusion::common::{Result, exec_err};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::connectors::kafka::KafkaTable;
use crate::connectors::kafka::options::{BoundedMode, StartupMode};
use crate::connectors::kafka::records::{BatchAssembler, RecordBuffer};
use crate::connectors::kafka::upsert::Normalizer;

/// Everything a reader thread needs.
pub(super) struct ReadPlan {
    pub(super) table: KafkaTable,
    pub(super) config: rdkafka::ClientConfig,
    /// The Kafka partitions of this reader; split `i` is `partitions[i]`.
    pub(super) partitions: Vec<i32>,
    pub(super) startup: StartupMode,
    pub(super) bounded: BoundedMode,
    /// Next offsets restored from a checkpoint.
    pub(super) resume: HashMap<i32, i64>,
    pub(super) batch_size: usize,
    pub(super) wants_key: bool,
    /// An upsert-kafka reader's last rows per key, which turn its records into changes.
    pub(super) upsert: Option<Normalizer>,
    pub(super) assembler: BatchAssembler,
}

/// One Kafka partition of a reader.
pub(super) struct Split {
    pub(super) partition: i32,
    pub(super) buffer: RecordBuffer,
    /// Next offset to consume.
    pub(super) consumed: i64,
    /// Next offset after the rows handed out (what a checkpoint stores).
    pub(super) emitted: i64,
    /// Records before this offset were handed out before the checkpoint this reader resumes
    /// from: an upsert-kafka reader reads them again only to learn each key's last row.
    pub(super) replay_until: i64,
    /// True if `buffer` holds records being replayed.
    pub(super) buffer_replays: bool,
    /// Exclusive end of a bounded read.
    pub(super) stop: Option<i64>,
    /// `timestamp` startup: records are skipped until the first one at or after this time
    /// (exact even where the broker's lookup by time only gives an earlier offset).
    pub(super) skip_before: Option<i64>,
    /// `timestamp` bounded mode: the read ends before the first record at or after this time.
    pub(super) stop_at_time: Option<i64>,
    pub(super) done: bool,
}

/// Runs one broker request with a short timeout; [`read_partitions`] retries the whole
/// resolution until `connect.timeout`.
pub(super) fn broker_request<T>(
    table: &KafkaTable,
    what: &str,
    request: impl FnOnce(Duration) -> rdkafka::error::KafkaResult<T>,
) -> Result<T> {
    request(table.timeout.min(Duration::from_secs(2))).map_err(|e| table.broker_error(what, e))
}

/// Start (and for bounded reads, stop) offsets of every partition of the reader.
pub(super) fn resolve_offsets(plan: &ReadPlan, consumer: &BaseConsumer) -> Result<Vec<Split>> {
    let table = &plan.table;
    let topic = &table.topic;
    let mut ends = HashMap::new();
    for &p in &plan.partitions {
        let (low, high) = broker_request(
            table,
            &format!("reading the offsets of partition {p}"),
            |t| consumer.fetch_watermarks(topic, p, t),
        )?;
        ends.insert(p, (low, high));
    }
    let at_times = |ts: i64| -> Result<HashMap<i32, i64>> {
        let mut query = TopicPartitionList::new();
        for &p in &plan.partitions {
            query
                .add_partition_offset(topic, p, Offset::Offset(ts))
                .map_err(|e| table.broker_error("looking up offsets by time", e))?;
        }
        let found = broker_request(table, "looking up offsets by time", |t| {
            consumer.offsets_for_times(query.clone(), t)
        })?;
        Ok(plan
            .partitions
            .iter()
            .map(|&p| {
                let high = ends[&p].1;
                let offset = match found.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => o,
                    _ => high,
                };
                (p, offset)
            })
            .collect())
    };
    let group = |partitions: &[i32]| -> Result<HashMap<i32, i64>> {
        let mut query = TopicPartitionList::new();
        for &p in partitions {
            query
                .add_partition(topic, p)
                .set_offset(Offset::Invalid)
                .map_err(|e| table.broker_error("reading group offsets", e))?;
        }
        let committed = if partitions.is_empty() {
            query
        } else {
            broker_request(table, "reading the group's committed offsets", |t| {
                consumer.committed_offsets(query.clone(), t)
            })?
        };
        let reset = table
            .properties
            .iter()
            .find(|(k, _)| k == "auto.offset.reset")
            .map_or("earliest", |(_, v)| v.as_str());
        let mut offsets = HashMap::new();
        for &p in partitions {
            let (low, high) = ends[&p];
            let offset = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => match reset {
                    "latest" | "largest" | "end" => high,
                    "error" => {
                        return exec_err!(
                            "partition {p} of Kafka topic '{topic}' (table {}) has no committed \
                             offset and 'properties.auto.offset.reset' is 'error'; set \
                             'scan.startup.mode'",
                            table.table
                        );
                    }
                    _ => low,
                },
            };
            offsets.insert(p, offset);
        }
        Ok(offsets)
    };
    let fresh: Vec<i32> = plan
        .partitions
        .iter()
        .copied()
        .filter(|p| !plan.resume.contains_key(p))
        .collect();
    let starts: HashMap<i32, i64> = match &plan.startup {
        StartupMode::Earliest => fresh.iter().map(|&p| (p, ends[&p].0)).collect(),
        StartupMode::Latest => fresh.iter().map(|&p| (p, ends[&p].1)).collect(),
        StartupMode::Timestamp(ts) if !fresh.is_empty() => at_times(*ts)?,
        StartupMode::Timestamp(_) => HashMap::new(),
        StartupMode::GroupOffsets => group(&fresh)?,
        StartupMode::SpecificOffsets(given) => {
            let unlisted: Vec<i32> = fresh
                .iter()
                .copied()
                .filter(|p| !given.contains_key(p))
                .collect();
            let mut starts = group(&unlisted)?;
            for &p in &fresh {
                if let Some(&o) = given.get(&p) {
                    starts.insert(p, o);
                }
            }
            starts
        }
    };
    let stops: HashMap<i32, i64> = match &plan.bounded {
        BoundedMode::Unbounded => HashMap::new(),
        BoundedMode::Latest => plan.partitions.iter().map(|&p| (p, ends[&p].1)).collect(),
        // Never past the end seen at start; the time itself is checked per record.
        BoundedMode::Timestamp(_) => plan.partitions.iter().map(|&p| (p, ends[&p].1)).collect(),
        BoundedMode::SpecificOffsets(given) => plan
            .partitions
            .iter()
            .map(|&p| (p, given.get(&p).copied().unwrap_or(ends[&p].1)))
            .collect(),
    };
    Ok(plan
        .partitions
        .iter()
        .map(|&p| {
            let resumed = plan
                .resume
                .get(&p)
                .or_else(|| starts.get(&p))
                .copied()
                .unwrap_or(ends[&p].0);
            // An upsert-kafka reader starts over to learn the last rows, handing on only what
            // lies past the position it resumes from.
            let start = if plan.upsert.is_some() {
                ends[&p].0
            } else {
                resumed
            };
            let stop = stops.get(&p).copied();
            let skip_before = match &plan.startup {
                StartupMode::Timestamp(ts) if !plan.resume.contains_key(&p) => Some(*ts),
                _ => None,
            };
            let stop_at_time = match &plan.bounded {
                BoundedMode::Timestamp(ts) => Some(*ts),
                _ => None,
            };
            Split {
                partition: p,
                buffer: RecordBuffer::default(),
                consumed: start,
                emitted: resumed,
                replay_until: resumed,
                buffer_replays: false,
                stop,
                skip_before,
                stop_at_time,
                done: stop.is_some_and(|s| start >= s),
            }
        })
        .collect())
}
