//! Where a reader starts and stops in each of its partitions.

use std::collections::HashMap;

use datafusion::common::{Result, exec_err};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::connectors::kafka::options::{BoundedMode, StartupMode};
use crate::connectors::kafka::records::RecordBuffer;

use super::reader::{ReadPlan, Split, broker_request};

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
