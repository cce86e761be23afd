//! Reading Kafka partitions into Arrow batches (see the module docs of [`super`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, exec_datafusion_err, exec_err};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::KafkaTable;
use super::options::{BoundedMode, KafkaSourceOptions, StartupMode};
use super::records::{BatchAssembler, OutputColumn, RecordBuffer};
use super::upsert::{Normalizer, RowOrigin};
use crate::catalog::table_definition::{ColumnKind, TableDefinition};
use crate::changelog::ChangelogMode;
use crate::connectors::format::{Format, decoder};
use crate::connectors::{SavedPosition, SourceBatch, SourceConnector, SourceReader};

/// How long one poll waits when nothing is buffered.
const POLL_WAIT: Duration = Duration::from_millis(100);

/// The source side of a Kafka table.
#[derive(Debug)]
pub struct KafkaSource {
    table: KafkaTable,
    /// Physical and metadata columns in declaration order.
    schema: SchemaRef,
    /// Per column of `schema`: its index among the physical columns, or its metadata key.
    origins: Vec<Result<usize, String>>,
    startup: StartupMode,
    bounded: BoundedMode,
    max_parallelism: Option<usize>,
    batch_size: Option<usize>,
    /// Partition ids, discovered once.
    partitions: Mutex<Option<Vec<i32>>>,
}

impl KafkaSource {
    /// The source of `def`, reading with `options`.
    pub fn try_new(
        def: &TableDefinition,
        table: KafkaTable,
        options: KafkaSourceOptions,
    ) -> Result<Self> {
        let mut physical = 0;
        let origins = def
            .source_columns()
            .iter()
            .map(|c| match &c.kind {
                ColumnKind::Metadata { key, .. } => Err(key.clone()),
                _ => {
                    physical += 1;
                    Ok(physical - 1)
                }
            })
            .collect();
        let KafkaSourceOptions {
            startup,
            bounded,
            max_parallelism,
            batch_size,
        } = options;
        Ok(Self {
            schema: def.source_schema(),
            origins,
            startup,
            bounded,
            max_parallelism,
            batch_size,
            partitions: Mutex::new(None),
            table,
        })
    }

    fn consumer_config(&self) -> rdkafka::ClientConfig {
        let group = format!("sabot-{}", self.table.table);
        let mut config = self.table.client_config(&[
            ("group.id", &group),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
        ]);
        config.set("bootstrap.servers", &self.table.servers);
        config
    }

    /// The topic's partition ids, asked of the brokers once.
    pub fn partitions(&self) -> Result<Vec<i32>> {
        let mut known = self.partitions.lock().map_err(|_| poisoned())?;
        if let Some(p) = known.as_ref() {
            return Ok(p.clone());
        }
        let consumer: BaseConsumer = self
            .consumer_config()
            .create()
            .map_err(|e| self.table.broker_error("creating a consumer", e))?;
        let metadata = consumer
            .fetch_metadata(Some(&self.table.topic), self.table.timeout)
            .map_err(|e| self.table.broker_error("fetching the partitions", e))?;
        let topic = metadata
            .topics()
            .iter()
            .find(|t| t.name() == self.table.topic);
        let mut ids: Vec<i32> = topic
            .filter(|t| t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if ids.is_empty() {
            return exec_err!(
                "Kafka topic '{}' of table {} does not exist on brokers {}; create the topic, or \
                 fix the 'topic' option",
                self.table.topic,
                self.table.table,
                self.table.servers
            );
        }
        ids.sort_unstable();
        *known = Some(ids.clone());
        Ok(ids)
    }
}

fn poisoned() -> DataFusionError {
    DataFusionError::Internal("Kafka partition list lock poisoned".into())
}

impl SourceConnector for KafkaSource {
    fn name(&self) -> &'static str {
        if self.table.upsert.is_some() {
            "upsert-kafka"
        } else {
            "kafka"
        }
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn changelog(&self) -> ChangelogMode {
        ChangelogMode::of_changes(
            self.table.value.format.is_changelog() || self.table.upsert.is_some(),
        )
    }

    fn is_bounded(&self) -> bool {
        self.bounded != BoundedMode::Unbounded
    }

    fn num_partitions(&self, parallelism: usize) -> Result<usize> {
        let partitions = self.partitions()?.len();
        let limit = self.max_parallelism.unwrap_or(parallelism).max(1);
        Ok(partitions.min(limit).max(1))
    }

    fn open(
        &self,
        partition: usize,
        num_partitions: usize,
        projection: &[usize],
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        let assigned: Vec<i32> = self
            .partitions()?
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % num_partitions.max(1) == partition)
            .map(|(_, p)| p)
            .collect();
        let schema = Arc::new(self.schema.project(projection)?);
        let mut value_projection = Vec::new();
        let mut columns = Vec::with_capacity(projection.len());
        for &i in projection {
            match &self.origins[i] {
                Ok(physical) => {
                    columns.push(OutputColumn::Value(value_projection.len()));
                    value_projection.push(*physical);
                }
                Err(key) => columns.push(OutputColumn::Metadata(key.clone())),
            }
        }
        // A changelog format is decoded even when no value column is read: it says what each
        // record does (and how many rows it gives).
        let decoder = if value_projection.is_empty() && !self.table.value.format.is_changelog() {
            None
        } else {
            let values = Arc::new(self.table.physical.project(&value_projection)?);
            Some(decoder(
                &self.table.value,
                values,
                Arc::clone(&self.table.physical),
                &value_projection,
            )?)
        };
        let upsert = self.normalizer(projection)?;
        let wants_key = upsert.is_some()
            || columns
                .iter()
                .any(|c| matches!(c, OutputColumn::Metadata(k) if k == "key"));
        Ok(Box::new(KafkaReader {
            plan: Some(ReadPlan {
                table: self.table.clone(),
                config: self.consumer_config(),
                partitions: assigned,
                startup: self.startup.clone(),
                bounded: self.bounded.clone(),
                resume: HashMap::new(),
                batch_size: self.batch_size.unwrap_or(batch_size).max(1),
                wants_key,
                upsert,
                assembler: BatchAssembler {
                    schema,
                    columns,
                    decoder,
                    topic: self.table.topic.clone(),
                },
            }),
            rx: None,
            thread: None,
            malformed: Arc::new(AtomicU64::new(0)),
            splits: 0,
        }))
    }

    fn explain(&self) -> String {
        match &self.table.upsert {
            Some(layout) => format!(
                "topic={}, upsert on key ({}) in {}, value format={}, servers={}",
                self.table.topic,
                layout
                    .key_schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                layout.key_format.format,
                self.table.value.format,
                self.table.servers
            ),
            None => format!(
                "topic={}, format={}, servers={}",
                self.table.topic, self.table.value.format, self.table.servers
            ),
        }
    }
}

impl KafkaSource {
    /// An upsert-kafka reader's normalizer, producing the columns `projection`; `None` for
    /// a plain Kafka table.
    fn normalizer(&self, projection: &[usize]) -> Result<Option<Normalizer>> {
        let Some(layout) = &self.table.upsert else {
            return Ok(None);
        };
        let origins = self
            .origins
            .iter()
            .map(|origin| match origin {
                Err(key) => RowOrigin::Metadata(key.clone()),
                Ok(physical) => match layout.value.iter().position(|v| v == physical) {
                    Some(i) => RowOrigin::Value(i),
                    None => RowOrigin::Key(
                        layout
                            .key
                            .iter()
                            .position(|k| k == physical)
                            .unwrap_or_default(),
                    ),
                },
            })
            .collect();
        let value_schema = Arc::new(self.table.physical.project(&layout.value)?);
        Normalizer::try_new(
            layout,
            (&self.table.value, value_schema),
            (Arc::clone(&self.schema), origins),
            projection.to_vec(),
            self.table.topic.clone(),
        )
        .map(Some)
    }
}

/// Everything a reader thread needs.
struct ReadPlan {
    table: KafkaTable,
    config: rdkafka::ClientConfig,
    /// The Kafka partitions of this reader; split `i` is `partitions[i]`.
    partitions: Vec<i32>,
    startup: StartupMode,
    bounded: BoundedMode,
    /// Next offsets restored from a checkpoint.
    resume: HashMap<i32, i64>,
    batch_size: usize,
    wants_key: bool,
    /// An upsert-kafka reader's last rows per key, which turn its records into changes.
    upsert: Option<Normalizer>,
    assembler: BatchAssembler,
}

/// Reads the partitions of one reader on a thread of its own.
struct KafkaReader {
    /// Taken when the thread starts.
    plan: Option<ReadPlan>,
    rx: Option<mpsc::Receiver<Result<Option<SourceBatch>>>>,
    thread: Option<JoinHandle<()>>,
    malformed: Arc<AtomicU64>,
    splits: usize,
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

/// One Kafka partition of a reader.
struct Split {
    partition: i32,
    buffer: RecordBuffer,
    /// Next offset to consume.
    consumed: i64,
    /// Next offset after the rows handed out (what a checkpoint stores).
    emitted: i64,
    /// Records before this offset were handed out before the checkpoint this reader resumes
    /// from: an upsert-kafka reader reads them again only to learn each key's last row.
    replay_until: i64,
    /// True if `buffer` holds records being replayed.
    buffer_replays: bool,
    /// Exclusive end of a bounded read.
    stop: Option<i64>,
    /// `timestamp` startup: records are skipped until the first one at or after this time
    /// (exact even where the broker's lookup by time only gives an earlier offset).
    skip_before: Option<i64>,
    /// `timestamp` bounded mode: the read ends before the first record at or after this time.
    stop_at_time: Option<i64>,
    done: bool,
}

/// Runs one broker request with a short timeout; [`read_partitions`] retries the whole
/// resolution until `connect.timeout`.
fn broker_request<T>(
    table: &KafkaTable,
    what: &str,
    request: impl FnOnce(Duration) -> rdkafka::error::KafkaResult<T>,
) -> Result<T> {
    request(table.timeout.min(Duration::from_secs(2))).map_err(|e| table.broker_error(what, e))
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
pub(super) fn is_blank(value: &[u8]) -> bool {
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
struct KafkaPosition {
    /// Per Kafka partition of the reader (its id, a JSON object key), the next offset after
    /// the rows handed out.
    offsets: BTreeMap<i32, i64>,
}

/// The checkpoint position: the next offset after the emitted rows of every partition.
fn position(splits: &[Split]) -> Result<serde_json::Value> {
    let position = KafkaPosition {
        offsets: splits.iter().map(|s| (s.partition, s.emitted)).collect(),
    };
    serde_json::to_value(&position)
        .map_err(|e| exec_datafusion_err!("the position of a Kafka reader: {e}"))
}

/// Start (and for bounded reads, stop) offsets of every partition of the reader.
fn resolve_offsets(plan: &ReadPlan, consumer: &BaseConsumer) -> Result<Vec<Split>> {
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
