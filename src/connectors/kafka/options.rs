//! Typed Kafka table options, read once when the table is declared ([`KafkaOptions`]): the
//! topic and brokers, the record format, where reading starts, where a bounded read stops, and
//! how the sink keys and delivers its records.

use std::collections::BTreeMap;
use std::time::Duration;

use datafusion::common::{Result, plan_datafusion_err, plan_err};

use super::{DEFAULT_CONNECT_TIMEOUT, FORMATS, VALUE_FORMATS};
use crate::catalog::options::{OptionSpec, TableOptions};
use crate::connectors::format::{CsvOptions, FORMAT_OPTIONS, Format, FormatOptions};

/// The WITH options of a Kafka table (their keys already validated).
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `topic`: the topic read or written.
    pub topic: String,
    /// `properties.bootstrap.servers`: the brokers to bootstrap from.
    pub servers: String,
    /// Every `properties.*` option, without the prefix, for librdkafka.
    pub properties: Vec<(String, String)>,
    /// `connect.timeout`: how long to wait for brokers (default [`DEFAULT_CONNECT_TIMEOUT`]).
    pub timeout: Duration,
    /// `format` (json, csv or raw) and the options of that format: how record values are
    /// written.
    pub value: FormatOptions,
    /// The options only the source reads.
    pub source: KafkaSourceOptions,
    /// The options only the sink reads.
    pub sink: KafkaSinkOptions,
}

/// The options of a Kafka table's source side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSourceOptions {
    /// `scan.startup.mode` and its companions: where reading starts.
    pub startup: StartupMode,
    /// `scan.bounded.mode` and its companions: where a bounded read stops.
    pub bounded: BoundedMode,
    /// `max-parallelism`: at most this many readers (default: the session's parallelism).
    pub max_parallelism: Option<usize>,
    /// `batch-size`: records per batch (default: the session's batch size).
    pub batch_size: Option<usize>,
}

/// The options of a Kafka table's sink side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSinkOptions {
    /// `key.fields`: the columns forming the record key, in order (empty: records without
    /// a key).
    pub key_fields: Vec<String>,
    /// `key.format` (default raw for one key field, json otherwise) and, for csv, the csv
    /// options the key is written with.
    pub key: FormatOptions,
    /// `sink.delivery-guarantee` (default at-least-once).
    pub guarantee: DeliveryGuarantee,
    /// `sink.transactional-id-prefix`: the prefix of the exactly-once writers' transactional
    /// ids.
    pub transactional_id_prefix: Option<String>,
}

/// What makes a Kafka table an `upsert-kafka` table (Flink's connector of that name): its
/// primary key is the record key, written in its own format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpsertOptions {
    /// `key.format` and its options (`key.json.*`, `key.csv.*`).
    pub key: FormatOptions,
    /// `key.fields-prefix`: what the key columns' names start with and the record key's field
    /// names do not (default: nothing).
    pub key_prefix: String,
    /// `value.fields-include` = 'EXCEPT_KEY': the value holds only the columns outside the key
    /// (default 'ALL': every physical column).
    pub except_key: bool,
}

/// `scan.startup.mode`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartupMode {
    /// The first offset still in each partition.
    Earliest,
    /// The end of each partition when the job starts.
    Latest,
    /// The consumer group's committed offsets; partitions without one follow
    /// `properties.auto.offset.reset` (default `earliest`).
    GroupOffsets,
    /// The first record with a timestamp at or after these epoch milliseconds.
    Timestamp(i64),
    /// Given offsets per partition; unlisted partitions start as `group-offsets`.
    SpecificOffsets(BTreeMap<i32, i64>),
}

/// `scan.bounded.mode`: where a bounded read stops (exclusive).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BoundedMode {
    /// Never stops.
    Unbounded,
    /// The end of each partition when the job starts.
    Latest,
    /// Before the first record with a timestamp at or after these epoch milliseconds.
    Timestamp(i64),
    /// Before the given offsets; unlisted partitions stop at their end when the job starts.
    SpecificOffsets(BTreeMap<i32, i64>),
}

/// `sink.delivery-guarantee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryGuarantee {
    /// Fire and forget: no flush at barriers.
    None,
    /// Flush and wait for every acknowledgement at each barrier.
    AtLeastOnce,
    /// One Kafka transaction per checkpoint, committed once the checkpoint is durable.
    ExactlyOnce,
}

const STARTUP_MODES: &[&str] = &[
    "earliest-offset",
    "latest-offset",
    "group-offsets",
    "timestamp",
    "specific-offsets",
];
const BOUNDED_MODES: &[&str] = &[
    "unbounded",
    "latest-offset",
    "timestamp",
    "specific-offsets",
];
const GUARANTEES: &[&str] = &["none", "at-least-once", "exactly-once"];

/// Parses `partition:0,offset:42;partition:1,offset:300` (Flink's spelling).
pub fn parse_specific_offsets(options: &TableOptions, key: &str) -> Result<BTreeMap<i32, i64>> {
    let text = options.required(key)?;
    let bad = |part: &str, why: &str| {
        plan_datafusion_err!(
            "option '{key}' of table {} has '{part}': {why}. Write \
             'partition:0,offset:42;partition:1,offset:300'",
            options.table()
        )
    };
    let mut offsets = BTreeMap::new();
    for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
        let mut partition = None;
        let mut offset = None;
        for field in part.split(',') {
            let (name, value) = field
                .split_once(':')
                .ok_or_else(|| bad(part, "expected name:value pairs"))?;
            match name.trim() {
                "partition" => {
                    partition = Some(
                        value
                            .trim()
                            .parse::<i32>()
                            .ok()
                            .filter(|p| *p >= 0)
                            .ok_or_else(|| bad(part, "the partition is not a number"))?,
                    )
                }
                "offset" => {
                    offset = Some(
                        value
                            .trim()
                            .parse::<i64>()
                            .ok()
                            .filter(|o| *o >= 0)
                            .ok_or_else(|| bad(part, "the offset is not a non-negative number"))?,
                    )
                }
                other => return Err(bad(part, &format!("unknown field '{other}'"))),
            }
        }
        match (partition, offset) {
            (Some(p), Some(o)) => {
                if offsets.insert(p, o).is_some() {
                    return Err(bad(part, "the partition is listed twice"));
                }
            }
            _ => return Err(bad(part, "both partition and offset are needed")),
        }
    }
    if offsets.is_empty() {
        return Err(bad(text, "no partition is listed"));
    }
    Ok(offsets)
}

fn timestamp_millis(options: &TableOptions, key: &str) -> Result<i64> {
    options.required(key)?;
    options.get_i64(key).map(|v| v.unwrap_or_default())
}

impl KafkaOptions {
    /// Reads every option of a Kafka table.
    pub fn parse(options: &TableOptions) -> Result<Self> {
        let value = FormatOptions::parse(options, VALUE_FORMATS)?;
        let sink = KafkaSinkOptions::parse(options, &value)?;
        Self::with(options, value, KafkaSourceOptions::parse(options)?, sink)
    }

    /// The options both kinds of Kafka table share, with the parts that differ.
    fn with(
        options: &TableOptions,
        value: FormatOptions,
        source: KafkaSourceOptions,
        sink: KafkaSinkOptions,
    ) -> Result<Self> {
        let properties = options
            .values()
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix("properties.")?.to_string(), v.clone())))
            .collect();
        Ok(Self {
            topic: options.required("topic")?.to_string(),
            servers: options
                .required("properties.bootstrap.servers")?
                .to_string(),
            properties,
            timeout: options
                .get_duration("connect.timeout")?
                .unwrap_or(DEFAULT_CONNECT_TIMEOUT),
            value,
            source,
            sink,
        })
    }
}

/// What the options under `key.` or `value.` of an upsert-kafka table may be, once the prefix
/// is taken off.
const KEY_OR_VALUE_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional("format", "json, csv or raw"),
    OptionSpec::optional("fields-prefix", "key only: the key columns' name prefix"),
    OptionSpec::optional("fields-include", "value only: ALL or EXCEPT_KEY"),
];

/// Reads the format under `prefix` (`key.` or `value.`) of an upsert-kafka table and that
/// format's options (Flink's `key.json.ignore-parse-errors`, `value.csv.field-delimiter`, ...).
fn upsert_format(options: &TableOptions, prefix: &str) -> Result<FormatOptions> {
    let under = options.under(prefix);
    under.validate(
        &format!("upsert-kafka, under '{prefix}'"),
        &[KEY_OR_VALUE_OPTIONS, FORMAT_OPTIONS],
    )?;
    let format =
        Format::parse(options, &format!("{prefix}format"), FORMATS)?.unwrap_or(Format::Json);
    FormatOptions::parse_for(format, &under)
}

impl KafkaOptions {
    /// Reads every option of an `upsert-kafka` table: the shared ones, `key.format` and
    /// `value.format` with their options, and how key and value divide the columns. It always
    /// reads from the earliest offset (what a key holds is its last record).
    pub fn parse_upsert(options: &TableOptions) -> Result<(Self, UpsertOptions)> {
        let value = upsert_format(options, "value.")?;
        let key = upsert_format(options, "key.")?;
        let except_key = options
            .get_choice("value.fields-include", &["ALL", "EXCEPT_KEY"])?
            .is_some_and(|c| c == "EXCEPT_KEY");
        let key_prefix = options.get("key.fields-prefix").unwrap_or("").to_string();
        if !key_prefix.is_empty() && !except_key {
            return plan_err!(
                "table {} sets 'key.fields-prefix', which needs 'value.fields-include' = \
                 'EXCEPT_KEY' (the value cannot also hold the prefixed key columns)",
                options.table()
            );
        }
        let transactional_id_prefix = options
            .get("sink.transactional-id-prefix")
            .map(str::to_string);
        let guarantee = DeliveryGuarantee::parse(options, transactional_id_prefix.as_deref())?;
        let source = KafkaSourceOptions {
            startup: StartupMode::Earliest,
            ..KafkaSourceOptions::parse(options)?
        };
        let sink = KafkaSinkOptions {
            // The primary key, which the table's definition holds.
            key_fields: Vec::new(),
            key: key.clone(),
            guarantee,
            transactional_id_prefix,
        };
        let kafka = Self::with(options, value, source, sink)?;
        Ok((
            kafka,
            UpsertOptions {
                key,
                key_prefix,
                except_key,
            },
        ))
    }
}

impl KafkaSourceOptions {
    /// Reads the options of the source side.
    pub fn parse(options: &TableOptions) -> Result<Self> {
        let positive = |key: &str| -> Result<Option<usize>> {
            match options.get_u64(key)? {
                Some(0) => plan_err!(
                    "option '{key}' of table {} must be at least 1",
                    options.table()
                ),
                v => Ok(v.map(|v| v as usize)),
            }
        };
        Ok(Self {
            startup: StartupMode::parse(options)?,
            bounded: BoundedMode::parse(options)?,
            max_parallelism: positive("max-parallelism")?,
            batch_size: positive("batch-size")?,
        })
    }
}

impl KafkaSinkOptions {
    /// Reads the options of the sink side; `value` are the value's format options, whose csv
    /// options a csv key shares.
    pub fn parse(options: &TableOptions, value: &FormatOptions) -> Result<Self> {
        let key_fields: Vec<String> = options
            .get("key.fields")
            .map(|fields| {
                fields
                    .split(';')
                    .map(str::trim)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let key_format =
            Format::parse(options, "key.format", FORMATS)?.unwrap_or(if key_fields.len() == 1 {
                Format::Raw
            } else {
                Format::Json
            });
        // Keys are only written, so only a csv key has options (the csv ones, read once for
        // both key and value).
        let key = match (key_format, value.format) {
            (Format::Csv, Format::Csv) => FormatOptions {
                ignore_parse_errors: false,
                ..value.clone()
            },
            (Format::Csv, _) => FormatOptions {
                csv: CsvOptions::parse(options)?,
                ..FormatOptions::new(Format::Csv)
            },
            (format, _) => FormatOptions::new(format),
        };
        let transactional_id_prefix = options
            .get("sink.transactional-id-prefix")
            .map(str::to_string);
        let guarantee = DeliveryGuarantee::parse(options, transactional_id_prefix.as_deref())?;
        Ok(Self {
            key_fields,
            key,
            guarantee,
            transactional_id_prefix,
        })
    }
}

impl StartupMode {
    /// Reads `scan.startup.mode` and its companions.
    pub fn parse(options: &TableOptions) -> Result<Self> {
        Ok(
            match options
                .get_choice("scan.startup.mode", STARTUP_MODES)?
                .unwrap_or("group-offsets")
            {
                "earliest-offset" => Self::Earliest,
                "latest-offset" => Self::Latest,
                "timestamp" => {
                    Self::Timestamp(timestamp_millis(options, "scan.startup.timestamp-millis")?)
                }
                "specific-offsets" => Self::SpecificOffsets(parse_specific_offsets(
                    options,
                    "scan.startup.specific-offsets",
                )?),
                _ => Self::GroupOffsets,
            },
        )
    }
}

impl BoundedMode {
    /// Reads `scan.bounded.mode` and its companions.
    pub fn parse(options: &TableOptions) -> Result<Self> {
        Ok(
            match options
                .get_choice("scan.bounded.mode", BOUNDED_MODES)?
                .unwrap_or("unbounded")
            {
                "latest-offset" => Self::Latest,
                "timestamp" => {
                    Self::Timestamp(timestamp_millis(options, "scan.bounded.timestamp-millis")?)
                }
                "specific-offsets" => Self::SpecificOffsets(parse_specific_offsets(
                    options,
                    "scan.bounded.specific-offsets",
                )?),
                _ => Self::Unbounded,
            },
        )
    }
}

impl DeliveryGuarantee {
    /// Reads `sink.delivery-guarantee` (default `at-least-once`); exactly-once needs
    /// `transactional_id_prefix`, the value of `sink.transactional-id-prefix`.
    pub fn parse(options: &TableOptions, transactional_id_prefix: Option<&str>) -> Result<Self> {
        let guarantee = match options
            .get_choice("sink.delivery-guarantee", GUARANTEES)?
            .unwrap_or("at-least-once")
        {
            "none" => Self::None,
            "exactly-once" => Self::ExactlyOnce,
            _ => Self::AtLeastOnce,
        };
        if guarantee == Self::ExactlyOnce && transactional_id_prefix.is_none() {
            return plan_err!(
                "table {} has 'sink.delivery-guarantee' = 'exactly-once' but no \
                 'sink.transactional-id-prefix'; set a prefix unique to this job, e.g. \
                 'sink.transactional-id-prefix' = '{}-sink'",
                options.table(),
                options.table()
            );
        }
        Ok(guarantee)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> TableOptions {
        TableOptions::of_pairs(pairs)
    }

    #[test]
    fn specific_offsets_in_flink_spelling() {
        let o = opts(&[(
            "scan.startup.specific-offsets",
            "partition:0,offset:42; partition:3,offset:7",
        )]);
        let offsets = parse_specific_offsets(&o, "scan.startup.specific-offsets").unwrap();
        assert_eq!(offsets, BTreeMap::from([(0, 42), (3, 7)]));
        for bad in [
            "partition:0",
            "partition:x,offset:1",
            "partition:0,offset:-1",
            "partition:0,offset:1;partition:0,offset:2",
            "part:0,offset:1",
            ";",
        ] {
            let o = opts(&[("scan.startup.specific-offsets", bad)]);
            let err = parse_specific_offsets(&o, "scan.startup.specific-offsets")
                .unwrap_err()
                .to_string();
            assert!(err.contains("partition:0,offset:42"), "{bad}: {err}");
        }
    }

    #[test]
    fn modes_and_defaults() {
        assert_eq!(
            StartupMode::parse(&opts(&[])).unwrap(),
            StartupMode::GroupOffsets
        );
        assert_eq!(
            StartupMode::parse(&opts(&[
                ("scan.startup.mode", "timestamp"),
                ("scan.startup.timestamp-millis", "1700000000000")
            ]))
            .unwrap(),
            StartupMode::Timestamp(1_700_000_000_000)
        );
        let err = StartupMode::parse(&opts(&[("scan.startup.mode", "timestamp")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("scan.startup.timestamp-millis"), "{err}");
        let err = StartupMode::parse(&opts(&[("scan.startup.mode", "newest")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("earliest-offset, latest-offset"), "{err}");
        assert_eq!(
            BoundedMode::parse(&opts(&[])).unwrap(),
            BoundedMode::Unbounded
        );
        assert_eq!(
            DeliveryGuarantee::parse(&opts(&[]), None).unwrap(),
            DeliveryGuarantee::AtLeastOnce
        );
        let err =
            DeliveryGuarantee::parse(&opts(&[("sink.delivery-guarantee", "exactly-once")]), None)
                .unwrap_err()
                .to_string();
        assert!(err.contains("sink.transactional-id-prefix"), "{err}");
    }

    /// Every option lands in its field once; a key of one field defaults to raw, of several to
    /// json; a csv key shares the value's csv options or reads its own.
    #[test]
    fn kafka_options_and_key_defaults() {
        let o = KafkaOptions::parse(&opts(&[
            ("topic", "bids"),
            ("properties.bootstrap.servers", "k1:9092"),
            ("properties.group.id", "g"),
            ("format", "csv"),
            ("csv.field-delimiter", "|"),
            ("key.fields", " auction ;"),
            ("max-parallelism", "4"),
        ]))
        .unwrap();
        assert_eq!(o.topic, "bids");
        assert_eq!(o.servers, "k1:9092");
        assert_eq!(
            o.properties,
            vec![
                ("bootstrap.servers".to_string(), "k1:9092".to_string()),
                ("group.id".to_string(), "g".to_string()),
            ]
        );
        assert_eq!(o.timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(o.value.format, Format::Csv);
        assert_eq!(o.value.csv.delimiter, b'|');
        assert_eq!(
            o.source,
            KafkaSourceOptions {
                startup: StartupMode::GroupOffsets,
                bounded: BoundedMode::Unbounded,
                max_parallelism: Some(4),
                batch_size: None,
            }
        );
        assert_eq!(o.sink.key_fields, vec!["auction".to_string()]);
        assert_eq!(o.sink.key, FormatOptions::new(Format::Raw));
        assert_eq!(o.sink.guarantee, DeliveryGuarantee::AtLeastOnce);
        assert_eq!(o.sink.transactional_id_prefix, None);

        let json_value = FormatOptions::new(Format::Json);
        let two = opts(&[("key.fields", "a;b")]);
        assert_eq!(
            KafkaSinkOptions::parse(&two, &json_value).unwrap().key,
            FormatOptions::new(Format::Json)
        );
        let csv_key = opts(&[
            ("key.fields", "a;b"),
            ("key.format", "csv"),
            ("csv.field-delimiter", ";"),
            ("sink.delivery-guarantee", "exactly-once"),
            ("sink.transactional-id-prefix", "bids-sink"),
        ]);
        let sink = KafkaSinkOptions::parse(&csv_key, &json_value).unwrap();
        assert_eq!(sink.key.format, Format::Csv);
        assert_eq!(sink.key.csv.delimiter, b';');
        assert_eq!(sink.guarantee, DeliveryGuarantee::ExactlyOnce);
        assert_eq!(sink.transactional_id_prefix.as_deref(), Some("bids-sink"));

        let err = KafkaSourceOptions::parse(&opts(&[("batch-size", "0")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("option 'batch-size' of table t must be at least 1"),
            "{err}"
        );
    }
}
