//! Writing rows to a Kafka topic (see the module docs of [`super`]).
//!
//! With `exactly-once`, each writer owns one transactional producer (transactional id
//! `<prefix>-<writer>`). A barrier flushes the open transaction and returns it as the
//! pre-commit; the transaction is committed by [`KafkaSink::commit`] once the checkpoint's
//! manifest is durable. Rows that arrive while a transaction waits for its commit are held in
//! memory and sent in the next transaction, so one transaction never holds rows of two
//! checkpoints. The coordinator starts no checkpoint while another completes, so at the next
//! barrier the waiting transaction is either committed or its checkpoint was aborted; then the
//! held rows join it and it is pre-committed again with the new barrier.
//! A restarted job re-initialises the same transactional ids, which fences the crashed run's
//! producers and aborts what they left open.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, exec_datafusion_err, exec_err, plan_err};
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use super::KafkaTable;
use super::options::{DeliveryGuarantee, KafkaSinkOptions};
use crate::catalog::table_definition::{ColumnKind, TableDefinition};
use crate::connectors::format::{Format, FormatOptions, LineEncoder, encoder as line_encoder};
use crate::connectors::{SinkConnector, SinkWriter};

/// Counts acknowledgements, keeps the first delivery error and, per partition, the offset of
/// the first record delivered since [`Deliveries::take_offsets`].
#[derive(Default)]
pub struct Deliveries {
    acked: AtomicU64,
    error: Mutex<Option<String>>,
    offsets: Mutex<HashMap<i32, i64>>,
}

impl Deliveries {
    /// The first offset delivered per partition, since the last call.
    fn take_offsets(&self) -> Result<HashMap<i32, i64>> {
        Ok(std::mem::take(
            &mut *self.offsets.lock().map_err(|_| poisoned())?,
        ))
    }
}

/// The producer context: hands delivery reports to [`Deliveries`].
pub struct DeliveryContext(Arc<Deliveries>);

impl ClientContext for DeliveryContext {}

impl ProducerContext for DeliveryContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(message) => {
                self.0.acked.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut offsets) = self.0.offsets.lock() {
                    let first = offsets.entry(message.partition()).or_insert(i64::MAX);
                    *first = (*first).min(message.offset());
                }
            }
            Err((e, _)) => {
                if let Ok(mut first) = self.0.error.lock()
                    && first.is_none()
                {
                    *first = Some(e.to_string());
                }
            }
        }
    }
}

type KafkaProducer = ThreadedProducer<DeliveryContext>;

/// Where a writer's transaction stands, shared with [`KafkaSink::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No transaction, or one taking rows.
    Open,
    /// Flushed at a barrier; waiting for its checkpoint.
    PreCommitted(u64),
    /// Generation committed; the writer may begin the next.
    Committed(u64),
}

/// One exactly-once writer's producer and phase.
struct Transactional {
    producer: Arc<KafkaProducer>,
    phase: Mutex<Phase>,
}

/// The pre-commit of an exactly-once writer: its flushed transaction, committed by
/// [`KafkaSink::commit`] once the checkpoint is complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct KafkaPreCommit {
    /// The writer's transactional id, `<prefix>-<writer>`.
    transactional_id: String,
    /// Number of the transaction among the writer's (the first is 1).
    generation: u64,
    /// The topic written. Always written; absent in the pre-commits of versions before
    /// in-doubt transactions were resolved on recovery, which means the table's topic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    topic: Option<String>,
    /// Per partition (its id, a JSON object key), the offset of the transaction's first
    /// record, where recovery looks to learn whether the transaction was committed. Empty
    /// for a transaction without records; absent (read as empty) in the pre-commits of
    /// versions before in-doubt transactions were resolved on recovery.
    #[serde(default)]
    offsets: BTreeMap<i32, i64>,
}

/// The sink side of a Kafka table.
pub struct KafkaSink {
    table: KafkaTable,
    guarantee: DeliveryGuarantee,
    prefix: Option<String>,
    /// Indices (in the sink schema) of the value columns.
    value_columns: Vec<usize>,
    /// Indices of the key columns.
    key_columns: Vec<usize>,
    /// The key's format and options.
    key: FormatOptions,
    /// Index of a writable `timestamp` metadata column.
    timestamp_column: Option<usize>,
    /// Exactly-once writers by transactional id.
    transactions: Mutex<HashMap<String, Arc<Transactional>>>,
}

impl std::fmt::Debug for KafkaSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSink")
            .field("topic", &self.table.topic)
            .field("guarantee", &self.guarantee)
            .finish()
    }
}

impl KafkaSink {
    /// The sink of `def`, writing with `options`.
    pub fn try_new(
        def: &TableDefinition,
        table: KafkaTable,
        options: KafkaSinkOptions,
    ) -> Result<Self> {
        let written: Vec<_> = def.columns.iter().filter(|c| !c.is_computed()).collect();
        let value_columns = written
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.kind, ColumnKind::Physical))
            .map(|(i, _)| i)
            .collect();
        let timestamp_column = written.iter().position(|c| {
            matches!(&c.kind, ColumnKind::Metadata { key, is_virtual: false } if key == "timestamp")
        });
        let mut key_columns = Vec::new();
        for name in &options.key_fields {
            match written
                .iter()
                .position(|c| c.name == *name && matches!(c.kind, ColumnKind::Physical))
            {
                Some(i) => key_columns.push(i),
                None => {
                    return plan_err!(
                        "'key.fields' of table {} names '{name}', which is not a physical \
                         column; list columns separated by ';'",
                        def.name
                    );
                }
            }
        }
        if options.key.format == Format::Raw && key_columns.len() > 1 {
            return plan_err!(
                "'key.format' = 'raw' of table {} takes one key field, not {}; use json or csv",
                def.name,
                key_columns.len()
            );
        }
        Ok(Self {
            prefix: options.transactional_id_prefix,
            guarantee: options.guarantee,
            value_columns,
            key_columns,
            key: options.key,
            timestamp_column,
            transactions: Mutex::new(HashMap::new()),
            table,
        })
    }

    fn producer(
        &self,
        transactional_id: Option<&str>,
    ) -> Result<(Arc<KafkaProducer>, Arc<Deliveries>)> {
        let mut config = self.table.client_config(&[("linger.ms", "5")]);
        config.set("bootstrap.servers", &self.table.servers);
        if let Some(id) = transactional_id {
            config.set("transactional.id", id);
        }
        let deliveries = Arc::new(Deliveries::default());
        let producer: KafkaProducer = config
            .create_with_context(DeliveryContext(Arc::clone(&deliveries)))
            .map_err(|e| self.table.broker_error("creating a producer", e))?;
        Ok((Arc::new(producer), deliveries))
    }
}

/// How long a transaction whose records a `read_committed` consumer cannot reach yet may take
/// to show its commit (see [`KafkaSink::record_is_committed`]).
const COMMIT_MARKER_GRACE: Duration = Duration::from_secs(2);

/// How long recovery tries to read one record of a transaction left in doubt.
const COMMIT_CHECK_TIMEOUT: Duration = Duration::from_secs(10);

impl KafkaSink {
    /// True if a `read_committed` consumer sees the record at `offset` of `partition`; false if
    /// it skips it (aborted) or ends the partition there (the transaction is still open);
    /// `None` if it cannot reach it within [`COMMIT_CHECK_TIMEOUT`] (an earlier open
    /// transaction, of another producer, holds the partition back).
    fn record_is_committed(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
    ) -> Result<Option<bool>> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let mut config = self.table.client_config(&[]);
        config
            .set("bootstrap.servers", &self.table.servers)
            .set("group.id", "sabot-transaction-check")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            // A record deleted by retention must not look like the end of the partition.
            .set("auto.offset.reset", "error")
            .set("isolation.level", "read_committed");
        let consumer: BaseConsumer = config
            .create()
            .map_err(|e| self.table.broker_error("creating a consumer", e))?;
        let mut assignment = rdkafka::TopicPartitionList::new();
        assignment
            .add_partition_offset(topic, partition, rdkafka::Offset::Offset(offset))
            .map_err(|e| self.table.broker_error("assigning a partition", e))?;
        consumer
            .assign(&assignment)
            .map_err(|e| self.table.broker_error("assigning a partition", e))?;
        let deadline = Instant::now() + COMMIT_CHECK_TIMEOUT.min(self.table.timeout);
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
                        self.table.table
                    );
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Ok(open_until.map(|_| false))
    }
}

impl KafkaSink {
    /// Reads back a pre-commit of [`KafkaWriter::settle_and_pre_commit`] (`None` for `Null`:
    /// nothing to commit).
    fn pre_commit_of(&self, pre_commit: &serde_json::Value) -> Result<Option<KafkaPreCommit>> {
        if pre_commit.is_null() {
            return Ok(None);
        }
        KafkaPreCommit::deserialize(pre_commit)
            .map(Some)
            .map_err(|e| {
                exec_datafusion_err!(
                    "the checkpointed transaction of Kafka table {} does not read as this version \
                 writes it ({e}): {pre_commit}",
                    self.table.table
                )
            })
    }

    /// Whether each transaction was committed (see [`SinkConnector::committed`]); `None`
    /// entries are pre-commits without a transaction.
    fn verdicts(&self, pre_commits: &[Option<KafkaPreCommit>]) -> Result<Vec<Option<bool>>> {
        // Where each transaction's records begin: (topic, partition, first offset, which).
        let mut starts = Vec::new();
        for (i, pre_commit) in pre_commits.iter().enumerate() {
            let Some(pre_commit) = pre_commit else {
                continue;
            };
            let topic = pre_commit.topic.as_deref().unwrap_or(&self.table.topic);
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
                    let v = self.record_is_committed(topic, *partition, *offset)?;
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
}

impl SinkConnector for KafkaSink {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn open_writer(
        &self,
        _schema: SchemaRef,
        partition: usize,
        _num_partitions: usize,
    ) -> Result<Box<dyn SinkWriter>> {
        let transactional_id = match (self.guarantee, &self.prefix) {
            (DeliveryGuarantee::ExactlyOnce, Some(prefix)) => Some(format!("{prefix}-{partition}")),
            _ => None,
        };
        let (producer, deliveries) = self.producer(transactional_id.as_deref())?;
        let transaction = match &transactional_id {
            Some(id) => {
                let t = Arc::new(Transactional {
                    producer: Arc::clone(&producer),
                    phase: Mutex::new(Phase::Open),
                });
                self.transactions
                    .lock()
                    .map_err(|_| poisoned())?
                    .insert(id.clone(), Arc::clone(&t));
                Some((id.clone(), t))
            }
            None => None,
        };
        let value = encoder(&self.table.value)?;
        let key = (!self.key_columns.is_empty())
            .then(|| encoder(&self.key))
            .transpose()?;
        Ok(Box::new(KafkaWriter {
            table: self.table.clone(),
            guarantee: self.guarantee,
            producer,
            deliveries,
            transaction,
            initialised: false,
            in_transaction: false,
            generation: 0,
            written: HashMap::new(),
            held: Vec::new(),
            value,
            key,
            value_columns: self.value_columns.clone(),
            key_columns: self.key_columns.clone(),
            timestamp_column: self.timestamp_column,
        }))
    }

    fn commit(&self, pre_commit: &serde_json::Value) -> Result<()> {
        let Some(KafkaPreCommit {
            transactional_id: id,
            generation,
            ..
        }) = self.pre_commit_of(pre_commit)?
        else {
            return Ok(());
        };
        let transaction = self
            .transactions
            .lock()
            .map_err(|_| poisoned())?
            .get(&id)
            .cloned();
        let Some(transaction) = transaction else {
            // A transaction of an earlier run: restarting fenced its producer, which aborted
            // it if it was still open.
            log::warn!(
                "Kafka transaction {id} (generation {generation}) of table {} belongs to an \
                 earlier run and cannot be committed from this one",
                self.table.table
            );
            return Ok(());
        };
        let mut phase = transaction.phase.lock().map_err(|_| poisoned())?;
        match *phase {
            Phase::PreCommitted(g) if g == generation => {
                let deadline = Instant::now() + self.table.timeout;
                loop {
                    match transaction.producer.commit_transaction(self.table.timeout) {
                        Ok(()) => break,
                        // librdkafka says when a commit may simply be tried again.
                        Err(KafkaError::Transaction(e))
                            if e.is_retriable() && Instant::now() < deadline =>
                        {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(e) => {
                            return Err(self.table.broker_error(
                                &format!("committing transaction {id} (generation {g})"),
                                e,
                            ));
                        }
                    }
                }
                *phase = Phase::Committed(g);
                Ok(())
            }
            // Already committed (commits are re-applied), or not this generation's.
            _ => Ok(()),
        }
    }

    /// A transaction that was not committed publishes nothing (the restarted producer aborts
    /// it); a committed one cannot be taken back.
    fn uncommit(&self, pre_commit: &serde_json::Value) -> Result<()> {
        let Some(transaction) = self.pre_commit_of(pre_commit)? else {
            return Ok(());
        };
        // Without records there is nothing to take back.
        if transaction.offsets.is_empty() {
            return Ok(());
        }
        let id = transaction.transactional_id.clone();
        match self
            .verdicts(&[Some(transaction)])?
            .first()
            .copied()
            .flatten()
        {
            Some(false) => Ok(()),
            Some(true) => Err(datafusion::common::DataFusionError::Plan(format!(
                "its Kafka transaction {id} was committed: its records stay in topic {}",
                self.table.topic
            ))),
            None => Err(datafusion::common::DataFusionError::Plan(format!(
                "whether its Kafka transaction {id} was committed cannot be told"
            ))),
        }
    }

    fn committed(&self, pre_commits: &[&serde_json::Value]) -> Result<Vec<Option<bool>>> {
        let pre_commits = pre_commits
            .iter()
            .map(|c| self.pre_commit_of(c))
            .collect::<Result<Vec<_>>>()?;
        self.verdicts(&pre_commits)
    }

    fn explain(&self) -> String {
        format!(
            "topic={}, format={}, servers={}, delivery={:?}",
            self.table.topic, self.table.value.format, self.table.servers, self.guarantee
        )
    }
}

fn poisoned() -> DataFusionError {
    DataFusionError::Internal("Kafka transaction lock poisoned".into())
}

/// Encodes rows one record each.
enum RowEncoder {
    /// JSON or CSV lines, split into records.
    Lines(Box<dyn LineEncoder>),
    /// The one column's bytes.
    Raw,
}

/// The encoder of records of `options.format`.
fn encoder(options: &FormatOptions) -> Result<RowEncoder> {
    Ok(match options.format {
        Format::Raw => RowEncoder::Raw,
        Format::Json | Format::Csv => RowEncoder::Lines(line_encoder(options)?),
    })
}

impl RowEncoder {
    /// One payload per row (`None` for a NULL raw value).
    fn encode(&mut self, batch: &RecordBatch) -> Result<Vec<Option<Vec<u8>>>> {
        let rows = batch.num_rows();
        match self {
            RowEncoder::Raw => {
                let Some(column) = batch.columns().first() else {
                    return Ok(vec![None; rows]);
                };
                let column = match column.data_type() {
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                        cast(column, &DataType::Binary)?
                    }
                    _ => cast(&cast(column, &DataType::Utf8)?, &DataType::Binary)?,
                };
                let bytes = column.as_binary::<i32>();
                Ok((0..rows)
                    .map(|i| (!bytes.is_null(i)).then(|| bytes.value(i).to_vec()))
                    .collect())
            }
            RowEncoder::Lines(encoder) => {
                let mut out = Vec::new();
                encoder.encode(batch, &mut out)?;
                let lines: Vec<&[u8]> = out
                    .strip_suffix(b"\n")
                    .unwrap_or(&out)
                    .split(|b| *b == b'\n')
                    .collect();
                if lines.len() == rows {
                    return Ok(lines.into_iter().map(|l| Some(l.to_vec())).collect());
                }
                // A CSV field with a line break: encode row by row.
                let mut records = Vec::with_capacity(rows);
                for i in 0..rows {
                    let mut one = Vec::new();
                    encoder.encode(&batch.slice(i, 1), &mut one)?;
                    if one.last() == Some(&b'\n') {
                        one.pop();
                    }
                    records.push(Some(one));
                }
                Ok(records)
            }
        }
    }
}

/// Writes one input partition's rows.
struct KafkaWriter {
    table: KafkaTable,
    guarantee: DeliveryGuarantee,
    producer: Arc<KafkaProducer>,
    deliveries: Arc<Deliveries>,
    /// Exactly-once: the transactional id and shared state.
    transaction: Option<(String, Arc<Transactional>)>,
    initialised: bool,
    in_transaction: bool,
    /// Number of the current transaction.
    generation: u64,
    /// The first offset of the open transaction's records per partition.
    written: HashMap<i32, i64>,
    /// Rows that arrived while a transaction waited for its commit.
    held: Vec<RecordBatch>,
    value: RowEncoder,
    key: Option<RowEncoder>,
    value_columns: Vec<usize>,
    key_columns: Vec<usize>,
    timestamp_column: Option<usize>,
}

impl KafkaWriter {
    /// Runs a blocking producer call off the async threads.
    async fn blocking<F>(&self, what: &str, f: F) -> Result<()>
    where
        F: FnOnce(&KafkaProducer) -> std::result::Result<(), KafkaError> + Send + 'static,
    {
        let producer = Arc::clone(&self.producer);
        let result = tokio::task::spawn_blocking(move || f(&producer))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        result.map_err(|e| self.table.broker_error(what, e))
    }

    fn check_deliveries(&self) -> Result<()> {
        if let Some(e) = self
            .deliveries
            .error
            .lock()
            .map_err(|_| poisoned())?
            .as_ref()
        {
            return exec_err!(
                "a record for Kafka topic '{}' of table {} was not delivered: {e}",
                self.table.topic,
                self.table.table
            );
        }
        Ok(())
    }

    /// The phase of the exactly-once transaction.
    fn phase(&self) -> Result<Phase> {
        match &self.transaction {
            Some((_, t)) => Ok(*t.phase.lock().map_err(|_| poisoned())?),
            None => Ok(Phase::Open),
        }
    }

    fn set_phase(&self, phase: Phase) -> Result<()> {
        if let Some((_, t)) = &self.transaction {
            *t.phase.lock().map_err(|_| poisoned())? = phase;
        }
        Ok(())
    }

    /// Exactly-once: begins a transaction if none is open (after fencing earlier runs once).
    async fn ensure_transaction(&mut self) -> Result<()> {
        if self.transaction.is_none() || self.in_transaction {
            return Ok(());
        }
        if !self.initialised {
            let timeout = self.table.timeout;
            self.blocking("initialising transactions", move |p| {
                p.init_transactions(timeout)
            })
            .await?;
            self.initialised = true;
        }
        self.producer
            .begin_transaction()
            .map_err(|e| self.table.broker_error("beginning a transaction", e))?;
        self.in_transaction = true;
        self.written.clear();
        self.deliveries.take_offsets()?;
        self.generation += 1;
        self.set_phase(Phase::Open)
    }

    /// Sends rows, retrying while librdkafka's queue is full.
    async fn send(&mut self, batch: &RecordBatch) -> Result<()> {
        let values = self.value.encode(&batch.project(&self.value_columns)?)?;
        let keys = match &mut self.key {
            Some(encoder) => Some(encoder.encode(&batch.project(&self.key_columns)?)?),
            None => None,
        };
        let timestamps = match self.timestamp_column {
            Some(i) => {
                let ts = cast(
                    batch.column(i),
                    &DataType::Timestamp(TimeUnit::Millisecond, None),
                )?;
                let ts = ts
                    .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>()
                    .clone();
                Some(ts)
            }
            None => None,
        };
        for (i, value) in values.iter().enumerate() {
            loop {
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.table.topic);
                if let Some(v) = value {
                    record = record.payload(v.as_slice());
                }
                if let Some(Some(k)) = keys.as_ref().map(|k| &k[i]) {
                    record = record.key(k.as_slice());
                }
                if let Some(ts) = &timestamps
                    && !ts.is_null(i)
                {
                    record = record.timestamp(ts.value(i));
                }
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err((e, _)) => return Err(self.table.broker_error("producing a record", e)),
                }
            }
        }
        self.check_deliveries()
    }

    /// Exactly-once, once the checkpoint of the waiting transaction is resolved (at a barrier,
    /// or at the end after the sink waited for it): the held rows go into the next transaction
    /// if it was committed, or into the same one if its checkpoint was aborted; then the open
    /// transaction is flushed and becomes this barrier's pre-commit.
    async fn settle_and_pre_commit(&mut self) -> Result<serde_json::Value> {
        let Some((id, _)) = &self.transaction else {
            return Ok(serde_json::Value::Null);
        };
        let id = id.clone();
        match self.phase()? {
            Phase::PreCommitted(_) => self.set_phase(Phase::Open)?,
            Phase::Committed(_) => self.in_transaction = false,
            Phase::Open => {}
        }
        if !self.held.is_empty() {
            self.ensure_transaction().await?;
            for batch in std::mem::take(&mut self.held) {
                self.send(&batch).await?;
            }
        }
        if !self.in_transaction {
            return Ok(serde_json::Value::Null);
        }
        self.flush().await?;
        for (partition, offset) in self.deliveries.take_offsets()? {
            let first = self.written.entry(partition).or_insert(i64::MAX);
            *first = (*first).min(offset);
        }
        self.set_phase(Phase::PreCommitted(self.generation))?;
        // Where the transaction's records begin: recovery looks them up to learn whether a
        // transaction left in doubt by a crash was committed.
        let pre_commit = KafkaPreCommit {
            transactional_id: id,
            generation: self.generation,
            topic: Some(self.table.topic.clone()),
            offsets: self.written.iter().map(|(&p, &o)| (p, o)).collect(),
        };
        serde_json::to_value(&pre_commit).map_err(|e| {
            exec_datafusion_err!("the pre-commit of Kafka table {}: {e}", self.table.table)
        })
    }

    async fn flush(&self) -> Result<()> {
        let timeout = self.table.timeout;
        self.blocking("flushing records", move |p| p.flush(timeout))
            .await?;
        self.check_deliveries()
    }
}

#[async_trait]
impl SinkWriter for KafkaWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        if self.transaction.is_none() {
            return self.send(batch).await;
        }
        match self.phase()? {
            // Rows after a barrier wait until that checkpoint's transaction is committed.
            Phase::PreCommitted(_) => {
                self.held.push(batch.clone());
                return Ok(());
            }
            Phase::Committed(_) => self.in_transaction = false,
            Phase::Open => {}
        }
        self.ensure_transaction().await?;
        for held in std::mem::take(&mut self.held) {
            self.send(&held).await?;
        }
        self.send(batch).await
    }

    async fn on_barrier(&mut self, _epoch: u64) -> Result<serde_json::Value> {
        match self.guarantee {
            DeliveryGuarantee::None => Ok(serde_json::Value::Null),
            DeliveryGuarantee::AtLeastOnce => {
                self.flush().await?;
                Ok(serde_json::Value::Null)
            }
            DeliveryGuarantee::ExactlyOnce => self.settle_and_pre_commit().await,
        }
    }

    async fn finish(&mut self) -> Result<serde_json::Value> {
        match self.guarantee {
            DeliveryGuarantee::ExactlyOnce => self.settle_and_pre_commit().await,
            _ => {
                self.flush().await?;
                Ok(serde_json::Value::Null)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn rows_become_one_record_each() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("s", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a\nb"), None])),
            ],
        )
        .unwrap();
        let json = encoder(&FormatOptions::new(Format::Json))
            .unwrap()
            .encode(&batch)
            .unwrap();
        assert_eq!(
            json,
            vec![
                Some(br#"{"id":1,"s":"a\nb"}"#.to_vec()),
                Some(br#"{"id":2}"#.to_vec())
            ]
        );
        let csv = encoder(&FormatOptions::new(Format::Csv))
            .unwrap()
            .encode(&batch)
            .unwrap();
        assert_eq!(
            csv,
            vec![Some(b"1,\"a\nb\"".to_vec()), Some(b"2,".to_vec())]
        );
        let raw = encoder(&FormatOptions::new(Format::Raw))
            .unwrap()
            .encode(&batch.project(&[1]).unwrap())
            .unwrap();
        assert_eq!(raw, vec![Some(b"a\nb".to_vec()), None]);
    }

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
