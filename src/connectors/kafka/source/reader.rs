//! One reader: its partitions polled on a thread of its own, decoded (or normalized, for
//! upsert-kafka) and handed over with their positions.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, exec_datafusion_err, exec_err};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::connectors::format::Format;
use crate::connectors::kafka::options::BoundedMode;
use crate::connectors::{SavedPosition, SourceBatch, SourceReader};

use super::plan::{ReadPlan, Split, resolve_offsets};

/// How long one poll waits when nothing is buffered.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// Reads the partitions of one reader on a thread of its own.
pub(super) struct KafkaReader {
    /// Taken when the thread starts.
    pub(super) plan: Option<ReadPlan>,
    pub(super) rx: Option<mpsc::Receiver<Result<Option<SourceBatch>>>>,
    pub(super) thread: Option<JoinHandle<()>>,
    pub(super) malformed: Arc<AtomicU64>,
    pub(super) splits: usize,
}

#[async_trait]
impl SourceReader for KafkaReader {
    fn num_splits(&self) -> usize {
        match &self.plan {
            Some(plan) => plan.partitions.len().max(1),
            None => self.splits,
        }
    }

    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        if let Some(plan) = self.plan.take() {
            self.splits = plan.partitions.len().max(1);
            let (tx, rx) = mpsc::channel(4);
            let malformed = Arc::clone(&self.malformed);
            let name = format!("kafka-{}", plan.table.topic);
            let thread = std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    // The end is said explicitly: a channel closed without it is a crash.
                    let end = match read_partitions(plan, &tx, &malformed) {
                        Ok(()) => Ok(None),
                        Err(e) => Err(e),
                    };
                    let _ = tx.blocking_send(end);
                })
                .map_err(|e| DataFusionError::Execution(format!("cannot start a thread: {e}")))?;
            self.thread = Some(thread);
            self.rx = Some(rx);
        }
        let Some(rx) = self.rx.as_mut() else {
            return Ok(None);
        };
        match rx.recv().await {
            Some(Ok(Some(batch))) => Ok(Some(batch)),
            Some(Ok(None)) => {
                self.rx = None;
                Ok(None)
            }
            Some(Err(e)) => {
                self.rx = None;
                Err(e)
            }
            None => {
                self.rx = None;
                exec_err!("the Kafka reader thread stopped unexpectedly (it panicked)")
            }
        }
    }

    fn malformed_records(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    /// The restored offsets of the reader's partitions (a checkpoint taken before the reader
    /// thread sends its starting offsets must not record "no position", which would make the
    /// next restore start over).
    fn restored_position(&self) -> Option<serde_json::Value> {
        self.resumed()
    }

    fn restore(
        &mut self,
        _partition: usize,
        _num_partitions: usize,
        saved: &[SavedPosition],
    ) -> Result<()> {
        let Some(plan) = self.plan.as_mut() else {
            return exec_err!("a Kafka reader can only be restored before it starts");
        };
        // Positions are per Kafka partition, so any parallelism can resume any other's.
        for s in saved {
            let position = KafkaPosition::deserialize(&s.position).map_err(|e| {
                exec_datafusion_err!(
                    "the checkpointed position of Kafka table {} does not read as this version \
                     writes it ({e}): {}",
                    plan.table.table,
                    s.position
                )
            })?;
            // Offsets handed out only move forward: of two entries for a partition, the
            // larger is safe.
            for (p, offset) in position.offsets {
                plan.resume
                    .entry(p)
                    .and_modify(|o| *o = (*o).max(offset))
                    .or_insert(offset);
            }
        }
        Ok(())
    }
}

impl KafkaReader {
    fn resumed(&self) -> Option<serde_json::Value> {
        let plan = self.plan.as_ref()?;
        // Only this reader's partitions: the restored map holds every old reader's.
        let offsets: BTreeMap<i32, i64> = plan
            .partitions
            .iter()
            .filter_map(|p| Some((*p, *plan.resume.get(p)?)))
            .collect();
        if offsets.is_empty() {
            return None;
        }
        serde_json::to_value(KafkaPosition { offsets }).ok()
    }
}

impl Drop for KafkaReader {
    fn drop(&mut self) {
        // Closing the channel stops the thread at its next send or poll.
        self.rx = None;
        drop(self.thread.take());
    }
}

/// The thread body: resolve offsets, assign, poll, decode, send.
fn read_partitions(
    mut plan: ReadPlan,
    tx: &mpsc::Sender<Result<Option<SourceBatch>>>,
    malformed: &AtomicU64,
) -> Result<()> {
    let table = plan.table.clone();
    // A fresh consumer per attempt: one created while a leader was down can keep a stale view.
    let deadline = Instant::now() + table.timeout;
    let (consumer, mut splits) = loop {
        let consumer: BaseConsumer = plan
            .config
            .create()
            .map_err(|e| table.broker_error("creating a consumer", e))?;
        match resolve_offsets(&plan, &consumer) {
            Ok(splits) => break (consumer, splits),
            Err(e) if Instant::now() < deadline => {
                log::debug!("Kafka table {}: {e}; retrying", table.table);
                std::thread::sleep(Duration::from_millis(300));
            }
            Err(e) => return Err(e),
        }
    };
    let mut assignment = TopicPartitionList::new();
    for s in splits.iter().filter(|s| !s.done) {
        assignment
            .add_partition_offset(&table.topic, s.partition, Offset::Offset(s.consumed))
            .map_err(|e| table.broker_error("assigning partitions", e))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| table.broker_error("assigning partitions", e))?;
    // The starting offsets are the position until rows come: a checkpoint before the first
    // batch must not make a restart resolve `latest-offset` (or a timestamp) again.
    let start = SourceBatch {
        batch: RecordBatch::new_empty(Arc::clone(&plan.assembler.schema)),
        split: 0,
        position: Some(position(&splits)?),
        kinds: None,
    };
    if tx.blocking_send(Ok(Some(start))).is_err() {
        return Ok(());
    }
    let index: HashMap<i32, usize> = splits
        .iter()
        .enumerate()
        .map(|(i, s)| (s.partition, i))
        .collect();
    let mut buffered = 0usize;
    loop {
        if tx.is_closed() {
            return Ok(());
        }
        if !splits.is_empty() && splits.iter().all(|s| s.done) {
            for i in 0..splits.len() {
                if !emit(&mut plan, &mut splits, i, tx, malformed)? {
                    return Ok(());
                }
            }
            return Ok(());
        }
        if splits.is_empty() {
            // No partition to read: an unbounded reader idles, a bounded one ends.
            if plan.bounded != BoundedMode::Unbounded {
                return Ok(());
            }
            std::thread::sleep(POLL_WAIT);
            continue;
        }
        let wait = if buffered > 0 {
            Duration::ZERO
        } else {
            POLL_WAIT
        };
        match consumer.poll(wait) {
            None => {
                // Drained what is available: hand out what is buffered.
                for i in 0..splits.len() {
                    if !emit(&mut plan, &mut splits, i, tx, malformed)? {
                        return Ok(());
                    }
                }
                buffered = 0;
            }
            Some(Ok(message)) => {
                let Some(&i) = index.get(&message.partition()) else {
                    continue;
                };
                let split = &mut splits[i];
                let offset = message.offset();
                if split.done || offset < split.consumed {
                    continue;
                }
                let time = message.timestamp().to_millis();
                if split.stop.is_some_and(|stop| offset >= stop)
                    || split
                        .stop_at_time
                        .is_some_and(|t| time.is_some_and(|time| time >= t))
                {
                    split.done = true;
                    continue;
                }
                // Records replayed and records handed on never share a batch. (Flushed before
                // this record counts as consumed: the flush's position must not cover it.)
                let replay = offset < split.replay_until;
                if replay != split.buffer_replays && !split.buffer.is_empty() {
                    buffered -= split.buffer.len();
                    if !emit(&mut plan, &mut splits, i, tx, malformed)? {
                        return Ok(());
                    }
                }
                let split = &mut splits[i];
                split.buffer_replays = replay;
                split.consumed = offset + 1;
                if let Some(t) = split.skip_before {
                    if time.is_none_or(|time| time < t) {
                        continue;
                    }
                    split.skip_before = None;
                }
                let key = if plan.wants_key { message.key() } else { None };
                if plan.upsert.is_some() {
                    // A tombstone deletes its key.
                    split.buffer.push(message.payload(), offset, time, key);
                    buffered += 1;
                } else if let Some(value) = message
                    .payload()
                    .filter(|v| table.value.format == Format::Raw || !is_blank(v))
                {
                    // Tombstones carry no row; nor do blank json/csv values (raw keeps them).
                    split.buffer.push(Some(value), offset, time, key);
                    buffered += 1;
                }
                if split.stop.is_some_and(|stop| split.consumed >= stop) {
                    split.done = true;
                }
                if split.buffer.len() >= plan.batch_size || split.done {
                    buffered -= split.buffer.len();
                    if !emit(&mut plan, &mut splits, i, tx, malformed)? {
                        return Ok(());
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                let Some(&i) = index.get(&partition) else {
                    continue;
                };
                // Past transaction markers, the consumer's position is beyond the last record.
                if let Ok(positions) = consumer.position()
                    && let Some(element) = positions.find_partition(&table.topic, partition)
                    && let Offset::Offset(position) = element.offset()
                {
                    let split = &mut splits[i];
                    split.consumed = split.consumed.max(position);
                    if split.stop.is_some_and(|stop| split.consumed >= stop) {
                        split.done = true;
                    }
                }
            }
            Some(Err(e)) => {
                if is_fatal(&e) {
                    return Err(table.broker_error("reading", e));
                }
                log::warn!(
                    "Kafka topic '{}' of table {}: {e} (retrying)",
                    table.topic,
                    table.table
                );
            }
        }
    }
}

/// True if `value` holds only whitespace (json and csv read no row from it).
pub(crate) fn is_blank(value: &[u8]) -> bool {
    value.iter().all(u8::is_ascii_whitespace)
}

/// Errors after which reading cannot go on; librdkafka retries the others itself.
fn is_fatal(e: &KafkaError) -> bool {
    let code = match e {
        KafkaError::MessageConsumption(code) | KafkaError::MessageConsumptionFatal(code) => *code,
        _ => return false,
    };
    matches!(e, KafkaError::MessageConsumptionFatal(_))
        || matches!(
            code,
            RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::UnknownTopic
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::OffsetOutOfRange
                | RDKafkaErrorCode::Fatal
        )
}

/// Hands out the buffered rows of split `i`; false if the receiver is gone.
fn emit(
    plan: &mut ReadPlan,
    splits: &mut [Split],
    i: usize,
    tx: &mpsc::Sender<Result<Option<SourceBatch>>>,
    malformed: &AtomicU64,
) -> Result<bool> {
    if splits[i].buffer.is_empty() {
        return Ok(true);
    }
    let split = &mut splits[i];
    let batch = match &mut plan.upsert {
        Some(normalizer) => {
            let changes =
                normalizer.apply(split.partition, &mut split.buffer, !split.buffer_replays)?;
            malformed.store(normalizer.skipped(), Ordering::Relaxed);
            changes.map(|(batch, kinds)| (batch, Some(kinds)))
        }
        None => {
            let batch = plan
                .assembler
                .assemble(split.partition, &mut split.buffer)?;
            if let Some(decoder) = &plan.assembler.decoder {
                malformed.store(decoder.skipped(), Ordering::Relaxed);
            }
            batch
        }
    };
    // Never back: records replayed lie before the position resumed from.
    split.emitted = split.emitted.max(split.consumed);
    let Some((batch, kinds)) = batch else {
        return Ok(true);
    };
    let batch = SourceBatch {
        batch,
        split: i,
        position: Some(position(splits)?),
        kinds,
    };
    Ok(tx.blocking_send(Ok(Some(batch))).is_ok())
}

/// The checkpoint position of a Kafka reader ([`SourceBatch::position`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct KafkaPosition {
    /// Per Kafka partition of the reader (its id, a JSON object key), the next offset after
    /// the rows handed out.
    pub(super) offsets: BTreeMap<i32, i64>,
}

/// The checkpoint position: the next offset after the emitted rows of every partition.
pub(super) fn position(splits: &[Split]) -> Result<serde_json::Value> {
    let position = KafkaPosition {
        offsets: splits.iter().map(|s| (s.partition, s.emitted)).collect(),
    };
    serde_json::to_value(&position)
        .map_err(|e| exec_datafusion_err!("the position of a Kafka reader: {e}"))
}
