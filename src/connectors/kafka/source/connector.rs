//! The source side of a Kafka table: partitions found once, readers opened per scan partition.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result, exec_err};
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::catalog::table_definition::{ColumnKind, TableDefinition};
use crate::changelog::ChangelogMode;
use crate::connectors::format::decoder;
use crate::connectors::kafka::KafkaTable;
use crate::connectors::kafka::options::{BoundedMode, KafkaSourceOptions, StartupMode};
use crate::connectors::kafka::records::{BatchAssembler, OutputColumn};
use crate::connectors::kafka::upsert::{Normalizer, RowOrigin};
use crate::connectors::{SourceConnector, SourceReader};

use super::plan::ReadPlan;
use super::reader::KafkaReader;

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
