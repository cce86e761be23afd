//! The `kafka` connector: topics as partition-parallel sources and as (transactional) sinks,
//! through librdkafka.
//!
//! - [`source`]: partitions are discovered when the scan is planned; the scan runs
//!   `min(partitions, max-parallelism)` readers, reader `i` of `n` taking the partitions
//!   `p` with `p % n == i`. Each reader consumes on its own thread and decodes records straight
//!   into Arrow batches of one Kafka partition each, so every partition has its own watermark.
//!   The engine, not the consumer group, owns positions: every batch carries the next offset of
//!   each of the reader's partitions, which checkpoints store and recovery seeks to.
//! - [`sink`]: rows become records (value from the physical columns, key from `key.fields`);
//!   `sink.delivery-guarantee` chooses between flushing at every barrier (`at-least-once`) and
//!   one Kafka transaction per checkpoint (`exactly-once`).
//!
//! Any `properties.*` option goes to librdkafka unchanged (`properties.bootstrap.servers`,
//! `properties.group.id`, `properties.isolation.level`, ...). Every option is read once, when
//! the table is declared, into [`options::KafkaOptions`].

pub mod options;
pub mod records;
pub mod sink;
pub mod source;
pub mod upsert;

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::compute::can_cast_types;
use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef, TimeUnit};
use datafusion::common::{DataFusionError, Result, plan_err};
use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;

use self::options::KafkaOptions;
use self::upsert::UpsertLayout;
use super::format::{FORMAT_OPTIONS, Format, FormatOptions};
use super::{SinkConnector, SourceConnector};
use crate::catalog::options::{OptionSpec, SOURCE_COMMON_OPTIONS};
use crate::catalog::table_definition::{ColumnKind, TableDefinition};

/// Options of Kafka and upsert-kafka tables (source and sink).
pub const KAFKA_SHARED_OPTIONS: &[OptionSpec] = &[
    OptionSpec::required("topic", "the topic to read or write"),
    OptionSpec::required(
        "properties.bootstrap.servers",
        "brokers to bootstrap from, host:port[,host:port...]",
    ),
    OptionSpec::optional(
        "properties.*",
        "passed to librdkafka unchanged, e.g. properties.group.id",
    ),
    OptionSpec::optional(
        "connect.timeout",
        "how long to wait for brokers when planning and starting (default: 30 s)",
    ),
    OptionSpec::optional(
        "scan.bounded.mode",
        "unbounded, latest-offset, timestamp or specific-offsets (default: unbounded)",
    ),
    OptionSpec::optional(
        "scan.bounded.timestamp-millis",
        "stop time for scan.bounded.mode = timestamp",
    ),
    OptionSpec::optional(
        "scan.bounded.specific-offsets",
        "stop offsets (exclusive) for scan.bounded.mode = specific-offsets",
    ),
    OptionSpec::optional(
        "max-parallelism",
        "at most this many readers (default: the session's parallelism)",
    ),
    OptionSpec::optional(
        "batch-size",
        "records per batch (default: the session's batch size)",
    ),
    OptionSpec::optional(
        "sink.delivery-guarantee",
        "none, at-least-once or exactly-once (default: at-least-once)",
    ),
    OptionSpec::optional(
        "sink.transactional-id-prefix",
        "prefix of the sink's Kafka transactional ids (needed for exactly-once)",
    ),
];

/// Options only Kafka tables take.
pub const KAFKA_OPTIONS: &[OptionSpec] = &[
    OptionSpec::required(
        "format",
        "json, csv, raw (the whole value as one column) or debezium-json",
    ),
    OptionSpec::optional(
        "scan.startup.mode",
        "earliest-offset, latest-offset, group-offsets, timestamp or specific-offsets \
         (default: group-offsets, falling back to properties.auto.offset.reset, default earliest)",
    ),
    OptionSpec::optional(
        "scan.startup.timestamp-millis",
        "start time for scan.startup.mode = timestamp",
    ),
    OptionSpec::optional(
        "scan.startup.specific-offsets",
        "start offsets for specific-offsets: 'partition:0,offset:42;partition:1,offset:7'",
    ),
    OptionSpec::optional(
        "key.fields",
        "sink: columns forming the record key, 'a;b' (default: no key)",
    ),
    OptionSpec::optional(
        "key.format",
        "sink: json, csv or raw encoding of the key (default: json; raw for one column)",
    ),
];

/// Options only upsert-kafka tables take.
pub const UPSERT_KAFKA_OPTIONS: &[OptionSpec] = &[
    OptionSpec::required(
        "key.format",
        "json, csv or raw: the format of the record key (the PRIMARY KEY columns)",
    ),
    OptionSpec::required("value.format", "json, csv or raw: the format of the value"),
    OptionSpec::optional(
        "value.fields-include",
        "ALL (the value holds every column) or EXCEPT_KEY (all but the key; default: ALL)",
    ),
    OptionSpec::optional(
        "key.fields-prefix",
        "the key columns' name prefix, not written in the key (needs EXCEPT_KEY)",
    ),
    OptionSpec::optional(
        "key.json.*",
        "options of a json key, e.g. ignore-parse-errors",
    ),
    OptionSpec::optional("key.csv.*", "options of a csv key, e.g. field-delimiter"),
    OptionSpec::optional(
        "value.json.*",
        "options of a json value, e.g. ignore-parse-errors",
    ),
    OptionSpec::optional(
        "value.csv.*",
        "options of a csv value, e.g. field-delimiter",
    ),
];

/// Default `connect.timeout`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Record formats of Kafka record keys.
pub const FORMATS: &[&str] = &["json", "csv", "raw"];

/// Record formats of Kafka record values: the key formats and the changelog format.
pub const VALUE_FORMATS: &[&str] = &["json", "csv", "raw", "debezium-json"];

/// Metadata a Kafka source fills, with the type it is produced in (cast to the declared type).
pub const METADATA_KEYS: &[(&str, DataType)] = &[
    ("topic", DataType::Utf8),
    ("partition", DataType::Int32),
    ("offset", DataType::Int64),
    (
        "timestamp",
        DataType::Timestamp(TimeUnit::Millisecond, None),
    ),
    ("key", DataType::Binary),
];

/// What both sides of a Kafka table share.
#[derive(Debug, Clone)]
pub struct KafkaTable {
    /// Table name, for messages.
    pub table: String,
    /// The topic.
    pub topic: String,
    /// `properties.bootstrap.servers`.
    pub servers: String,
    /// Every `properties.*` option, without the prefix.
    pub properties: Vec<(String, String)>,
    /// `connect.timeout`.
    pub timeout: Duration,
    /// The record format of values and its options.
    pub value: FormatOptions,
    /// Physical columns, in declaration order (what the value holds, unless it is an
    /// upsert-kafka table's with 'EXCEPT_KEY').
    pub physical: SchemaRef,
    /// An upsert-kafka table's key and value columns.
    pub upsert: Option<Arc<UpsertLayout>>,
}

impl KafkaTable {
    /// The shared part of table `def` with the parsed `options`.
    fn new(def: &TableDefinition, options: &KafkaOptions) -> Result<Self> {
        let physical = Arc::new(Schema::new(
            def.physical_columns()
                .iter()
                .map(|c| c.field())
                .collect::<Vec<_>>(),
        ));
        Ok(Self {
            table: def.name.clone(),
            topic: options.topic.clone(),
            servers: options.servers.clone(),
            properties: options.properties.clone(),
            timeout: options.timeout,
            value: options.value.clone(),
            physical,
            upsert: None,
        })
    }

    /// A librdkafka configuration with every `properties.*` option and `extra` defaults
    /// (which the user's properties override).
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("log_level", "3");
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }

    /// An error about this table's brokers, saying what was tried and, when the brokers could
    /// not be reached, how to fix that.
    pub fn broker_error(&self, what: &str, e: KafkaError) -> DataFusionError {
        let text = format!("{e:?}");
        let unreachable = [
            "Transport",
            "TimedOut",
            "AllBrokersDown",
            "Resolve",
            "Timeout",
        ]
        .iter()
        .any(|k| text.contains(k));
        let hint = if unreachable {
            format!(
                " Brokers: {} (waited up to {} ms). Check 'properties.bootstrap.servers' and \
                 that the brokers are running",
                self.servers,
                self.timeout.as_millis()
            )
        } else {
            format!(" Brokers: {}", self.servers)
        };
        DataFusionError::Execution(format!(
            "{what} for Kafka topic '{}' of table {} failed: {e}.{hint}",
            self.topic, self.table
        ))
    }
}

/// Checks the metadata columns of a Kafka table.
fn check_metadata(def: &TableDefinition) -> Result<()> {
    for column in &def.columns {
        let ColumnKind::Metadata { key, .. } = &column.kind else {
            continue;
        };
        let Some((_, natural)) = METADATA_KEYS.iter().find(|(k, _)| k == key) else {
            let keys: Vec<&str> = METADATA_KEYS.iter().map(|(k, _)| *k).collect();
            return plan_err!(
                "column {} of Kafka table {} reads metadata '{key}', which Kafka records do not \
                 have. Valid keys: {}",
                column.name,
                def.name,
                keys.join(", ")
            );
        };
        if !can_cast_types(natural, &column.data_type) {
            return plan_err!(
                "column {} of Kafka table {} is {} but metadata '{key}' is {natural}; declare \
                 it with a compatible type",
                column.name,
                def.name,
                column.data_type
            );
        }
    }
    Ok(())
}

/// Builds both sides of a Kafka table.
pub fn build(def: &TableDefinition) -> Result<(Arc<dyn SourceConnector>, Arc<dyn SinkConnector>)> {
    def.options.validate(
        "kafka",
        &[
            KAFKA_SHARED_OPTIONS,
            KAFKA_OPTIONS,
            FORMAT_OPTIONS,
            SOURCE_COMMON_OPTIONS,
        ],
    )?;
    check_metadata(def)?;
    let options = KafkaOptions::parse(&def.options)?;
    let table = KafkaTable::new(def, &options)?;
    if options.value.format == Format::Raw {
        crate::connectors::format::raw::check_schema(&def.name, &table.physical)?;
    }
    let source = source::KafkaSource::try_new(def, table.clone(), options.source)?;
    let sink = sink::KafkaSink::try_new(def, table, options.sink)?;
    Ok((Arc::new(source), Arc::new(sink)))
}

/// Builds both sides of an upsert-kafka table ([`upsert`]).
pub fn build_upsert(
    def: &TableDefinition,
) -> Result<(Arc<dyn SourceConnector>, Arc<dyn SinkConnector>)> {
    def.options.validate(
        "upsert-kafka",
        &[
            KAFKA_SHARED_OPTIONS,
            UPSERT_KAFKA_OPTIONS,
            SOURCE_COMMON_OPTIONS,
        ],
    )?;
    check_metadata(def)?;
    let (mut options, upsert) = KafkaOptions::parse_upsert(&def.options)?;
    let mut table = KafkaTable::new(def, &options)?;
    let layout = UpsertLayout::try_new(def, &table.physical, &upsert, options.value.format)?;
    table.upsert = Some(Arc::new(layout));
    options.sink.key_fields = def.primary_key.clone();
    // Keys go where Kafka's Java clients put them (murmur2), so that every writer of the
    // topic puts a key in the same partition.
    if !table.properties.iter().any(|(k, _)| k == "partitioner") {
        table
            .properties
            .push(("partitioner".to_string(), "murmur2_random".to_string()));
    }
    let source = source::KafkaSource::try_new(def, table.clone(), options.source)?;
    let sink = sink::KafkaSink::try_new(def, table, options.sink)?;
    Ok((Arc::new(source), Arc::new(sink)))
}
