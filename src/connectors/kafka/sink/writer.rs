//! One input partition's writer: its producer and, exactly-once, its transaction.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::array::Int8Array;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, exec_datafusion_err, exec_err};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::deliveries::{Deliveries, KafkaProducer};
use super::encoder::RecordEncoder;
use super::poisoned;
use super::transaction::{KafkaPreCommit, Phase, Transactional};
use crate::connectors::SinkWriter;
use crate::connectors::kafka::KafkaTable;
use crate::connectors::kafka::options::DeliveryGuarantee;

/// Writes one input partition's rows.
pub(super) struct KafkaWriter {
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
    /// Rows (and their changelog kinds) that arrived while a transaction waited for its
    /// commit.
    held: Vec<(RecordBatch, Option<Int8Array>)>,
    records: RecordEncoder,
}

impl KafkaWriter {
    /// A writer producing with `producer`, in `transaction` (its id and shared phase) when
    /// exactly-once.
    pub(super) fn new(
        table: KafkaTable,
        guarantee: DeliveryGuarantee,
        (producer, deliveries): (Arc<KafkaProducer>, Arc<Deliveries>),
        transaction: Option<(String, Arc<Transactional>)>,
        records: RecordEncoder,
    ) -> Self {
        Self {
            table,
            guarantee,
            producer,
            deliveries,
            transaction,
            initialised: false,
            in_transaction: false,
            generation: 0,
            written: HashMap::new(),
            held: Vec::new(),
            records,
        }
    }

    /// Writes rows (changelog rows with `kinds`): sent now, or held while the last
    /// checkpoint's transaction waits for its commit.
    async fn write_rows(&mut self, batch: &RecordBatch, kinds: Option<&Int8Array>) -> Result<()> {
        if self.transaction.is_none() {
            return self.send(batch, kinds).await;
        }
        match self.phase()? {
            // Rows after a barrier wait until that checkpoint's transaction is committed.
            Phase::PreCommitted(_) => {
                self.held.push((batch.clone(), kinds.cloned()));
                return Ok(());
            }
            Phase::Committed(_) => self.in_transaction = false,
            Phase::Open => {}
        }
        self.ensure_transaction().await?;
        for (held, held_kinds) in std::mem::take(&mut self.held) {
            self.send(&held, held_kinds.as_ref()).await?;
        }
        self.send(batch, kinds).await
    }

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

    /// Sends rows (changelog rows with `kinds`), retrying while librdkafka's queue is full.
    async fn send(&mut self, batch: &RecordBatch, kinds: Option<&Int8Array>) -> Result<()> {
        let records = self.records.encode(batch, kinds)?;
        for one in &records {
            loop {
                let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&self.table.topic);
                if let Some(v) = &one.value {
                    record = record.payload(v.as_slice());
                }
                if let Some(k) = &one.key {
                    record = record.key(k.as_slice());
                }
                if let Some(ts) = one.timestamp {
                    record = record.timestamp(ts);
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
            for (batch, kinds) in std::mem::take(&mut self.held) {
                self.send(&batch, kinds.as_ref()).await?;
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
        self.write_rows(batch, None).await
    }

    async fn write_changes(&mut self, batch: &RecordBatch, kinds: &Int8Array) -> Result<()> {
        self.write_rows(batch, Some(kinds)).await
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
