//! The sink side of a Kafka table: opens one writer per input partition and commits their
//! transactions once a checkpoint is durable.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result, plan_err};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;

use super::deliveries::{Deliveries, DeliveryContext, KafkaProducer};
use super::encoder::RecordEncoder;
use super::poisoned;
use super::recovery::{pre_commit_of, verdicts};
use super::transaction::{KafkaPreCommit, Phase, Transactional};
use super::writer::KafkaWriter;
use crate::catalog::table_definition::{ColumnKind, TableDefinition};
use crate::connectors::format::{Format, FormatOptions};
use crate::connectors::kafka::KafkaTable;
use crate::connectors::kafka::options::{DeliveryGuarantee, KafkaSinkOptions};
use crate::connectors::{SinkConnector, SinkWriter};

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
        let physical: Vec<usize> = written
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c.kind, ColumnKind::Physical))
            .map(|(i, _)| i)
            .collect();
        let value_columns = match &table.upsert {
            Some(layout) => layout.value.iter().map(|&p| physical[p]).collect(),
            None => physical,
        };
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

impl SinkConnector for KafkaSink {
    fn name(&self) -> &'static str {
        if self.table.upsert.is_some() {
            "upsert-kafka"
        } else {
            "kafka"
        }
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
        let records = RecordEncoder::try_new(
            &self.table.value,
            self.value_columns.clone(),
            (&self.key, self.key_columns.clone()),
            self.timestamp_column,
            self.table
                .upsert
                .as_ref()
                .map(|u| Arc::clone(&u.key_schema)),
        )?;
        Ok(Box::new(KafkaWriter::new(
            self.table.clone(),
            self.guarantee,
            (producer, deliveries),
            transaction,
            records,
        )))
    }

    fn commit(&self, pre_commit: &serde_json::Value) -> Result<()> {
        let Some(KafkaPreCommit {
            transactional_id: id,
            generation,
            ..
        }) = pre_commit_of(&self.table, pre_commit)?
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
        let Some(transaction) = pre_commit_of(&self.table, pre_commit)? else {
            return Ok(());
        };
        // Without records there is nothing to take back.
        if transaction.offsets.is_empty() {
            return Ok(());
        }
        let id = transaction.transactional_id.clone();
        match verdicts(&self.table, &[Some(transaction)])?
            .first()
            .copied()
            .flatten()
        {
            Some(false) => Ok(()),
            Some(true) => Err(DataFusionError::Plan(format!(
                "its Kafka transaction {id} was committed: its records stay in topic {}",
                self.table.topic
            ))),
            None => Err(DataFusionError::Plan(format!(
                "whether its Kafka transaction {id} was committed cannot be told"
            ))),
        }
    }

    fn committed(&self, pre_commits: &[&serde_json::Value]) -> Result<Vec<Option<bool>>> {
        let pre_commits = pre_commits
            .iter()
            .map(|c| pre_commit_of(&self.table, c))
            .collect::<Result<Vec<_>>>()?;
        verdicts(&self.table, &pre_commits)
    }

    /// With a changelog format (`debezium-json`), or as upsert-kafka.
    fn accepts_changes(&self) -> bool {
        self.table.value.format.is_changelog() || self.table.upsert.is_some()
    }

    fn explain(&self) -> String {
        if self.table.upsert.is_some() {
            return format!(
                "topic={}, upsert on its PRIMARY KEY, value format={}, servers={}, delivery={:?}",
                self.table.topic, self.table.value.format, self.table.servers, self.guarantee
            );
        }
        format!(
            "topic={}, format={}, servers={}, delivery={:?}",
            self.table.topic, self.table.value.format, self.table.servers, self.guarantee
        )
    }
}
