//! Typed Kafka table options: where reading starts, where a bounded read stops, and how the
//! sink delivers.

use std::collections::BTreeMap;

use datafusion::common::{Result, plan_datafusion_err, plan_err};

use crate::connectors::options::TableOptions;

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
    /// Reads `sink.delivery-guarantee` (default `at-least-once`).
    pub fn parse(options: &TableOptions) -> Result<Self> {
        let guarantee = match options
            .get_choice("sink.delivery-guarantee", GUARANTEES)?
            .unwrap_or("at-least-once")
        {
            "none" => Self::None,
            "exactly-once" => Self::ExactlyOnce,
            _ => Self::AtLeastOnce,
        };
        if guarantee == Self::ExactlyOnce && options.get("sink.transactional-id-prefix").is_none() {
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
        TableOptions::new(
            "t",
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
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
            DeliveryGuarantee::parse(&opts(&[])).unwrap(),
            DeliveryGuarantee::AtLeastOnce
        );
        let err = DeliveryGuarantee::parse(&opts(&[("sink.delivery-guarantee", "exactly-once")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sink.transactional-id-prefix"), "{err}");
    }
}
