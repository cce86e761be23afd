//! The `nexmark` connector: the Nexmark benchmark's auction events, generated in process.
//!
//! One table reads one event kind: `'nexmark.table.type'` = `bid`, `auction` or `person`. All
//! tables share one event timeline, so joins between them (Nexmark q3, q8) line up. Columns are
//! matched by name (snake_case or the reference camelCase); only declared columns are generated.
//!
//! Options (defaults in parentheses):
//! - `nexmark.table.type` (required): `bid` | `auction` | `person`;
//! - `events.num` (unbounded): total events of all kinds; the table sees its share
//!   (bids are 46 of every 50);
//! - `tps` (10000): events per second of *event time*;
//! - `throttle` (true): emit in real time at `tps`; `false` generates as fast as possible;
//! - `base-time` (the wall clock at start): event time of event 0, as
//!   `yyyy-MM-dd HH:mm:ss[.fff]`, ISO-8601, or epoch milliseconds.
//!
//! Parallel readers interleave event numbers (reader `p` of `n` takes `p, p+n, ...`), so their
//! watermarks advance together.

pub mod generator;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, exec_datafusion_err, plan_datafusion_err, plan_err};
use serde::{Deserialize, Serialize};

use self::generator::{NexmarkConfig, NexmarkGenerator, NexmarkTable};
use super::{SavedPosition, SourceBatch, SourceConnector, SourceReader, same_partition_position};
use crate::catalog::options::{OptionSpec, SOURCE_COMMON_OPTIONS};
use crate::catalog::table_definition::TableDefinition;

/// Options of Nexmark tables.
pub const NEXMARK_OPTIONS: &[OptionSpec] = &[
    OptionSpec::required("nexmark.table.type", "bid, auction or person"),
    OptionSpec::optional(
        "events.num",
        "total events of all kinds (default: unbounded)",
    ),
    OptionSpec::optional("tps", "events per second of event time (default: 10000)"),
    OptionSpec::optional("throttle", "emit in real time at tps (default: true)"),
    OptionSpec::optional("base-time", "event time of the first event (default: now)"),
];

/// Default `tps`.
pub const DEFAULT_TPS: u64 = 10_000;

/// A Nexmark table's source.
#[derive(Debug)]
pub struct NexmarkConnector {
    table: NexmarkTable,
    schema: SchemaRef,
    config: NexmarkConfig,
    events: Option<u64>,
    throttle: bool,
}

/// Parses `base-time`: epoch milliseconds or a timestamp string.
fn parse_base_time(text: &str) -> Option<i64> {
    if let Ok(ms) = text.trim().parse::<i64>() {
        return Some(ms);
    }
    let parsed =
        datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text.trim())
            .ok()?;
    Some(parsed.div_euclid(1_000_000))
}

/// Builds the source of a Nexmark table.
pub fn build(def: &TableDefinition) -> Result<Arc<dyn SourceConnector>> {
    let options = &def.options;
    options.validate("nexmark", &[NEXMARK_OPTIONS, SOURCE_COMMON_OPTIONS])?;
    let kind = options.required("nexmark.table.type")?;
    let Some(table) = NexmarkTable::parse(kind) else {
        return plan_err!(
            "option 'nexmark.table.type' of table {} is '{kind}', but it must be one of: bid, \
             auction, person",
            def.name
        );
    };
    if let Some(c) = def.metadata_columns().first() {
        return plan_err!(
            "column {} of nexmark table {} is a METADATA column; generated events have no \
             record metadata",
            c.name,
            def.name
        );
    }
    let tps = options.get_u64("tps")?.unwrap_or(DEFAULT_TPS);
    if tps == 0 {
        return plan_err!("option 'tps' of table {} must be at least 1", def.name);
    }
    let base_time_ms = match options.get("base-time") {
        Some(text) => match parse_base_time(text) {
            Some(ms) => ms,
            None => {
                return plan_err!(
                    "option 'base-time' of table {} is '{text}', but it must be a timestamp \
                     such as '2024-01-01 00:00:00' or epoch milliseconds",
                    def.name
                );
            }
        },
        None => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    };
    let schema = def.source_schema();
    // Check the declared columns now, so a typo is a DDL error rather than a query error.
    NexmarkGenerator::try_new(
        NexmarkConfig { base_time_ms, tps },
        table,
        Arc::clone(&schema),
        0,
        1,
        Some(0),
    )?;
    Ok(Arc::new(NexmarkConnector {
        table,
        schema,
        config: NexmarkConfig { base_time_ms, tps },
        events: options.get_u64("events.num")?,
        throttle: options.get_bool("throttle")?.unwrap_or(true),
    }))
}

impl SourceConnector for NexmarkConnector {
    fn name(&self) -> &'static str {
        "nexmark"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        self.events.is_some()
    }

    fn num_partitions(&self, parallelism: usize) -> Result<usize> {
        Ok(parallelism.max(1))
    }

    fn open(
        &self,
        partition: usize,
        num_partitions: usize,
        projection: &[usize],
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        let schema = Arc::new(self.schema.project(projection)?);
        let generator = NexmarkGenerator::try_new(
            self.config.clone(),
            self.table,
            schema,
            partition as u64,
            num_partitions.max(1) as u64,
            self.events,
        )?;
        Ok(Box::new(NexmarkReader {
            generator,
            batch_size,
            throttle: self.throttle.then(Instant::now),
            base_time_ms: self.config.base_time_ms,
            tps: self.config.tps,
        }))
    }

    fn explain(&self) -> String {
        let events = self
            .events
            .map(|e| e.to_string())
            .unwrap_or_else(|| "unbounded".to_string());
        format!(
            "table={:?}, events={events}, tps={}, throttle={}",
            self.table, self.config.tps, self.throttle
        )
        .to_lowercase()
    }
}

/// The checkpoint position of a Nexmark reader: a bare JSON number.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
struct NexmarkPosition {
    /// The next event number the reader's split looks at ([`NexmarkGenerator::position`]).
    next_event: u64,
}

struct NexmarkReader {
    generator: NexmarkGenerator,
    batch_size: usize,
    /// When throttled: the instant event time `base_time_ms` corresponds to.
    throttle: Option<Instant>,
    base_time_ms: i64,
    tps: u64,
}

#[async_trait]
impl SourceReader for NexmarkReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        let mut max_rows = self.batch_size;
        if let Some(start) = self.throttle {
            // Keep event time in step with the wall clock: wait until the next event is due,
            // and never emit more than ~100 ms of events at once.
            let next = self.generator.position();
            let due_ms = self.generator.event_time_ms(next) - self.base_time_ms;
            let due = start + Duration::from_millis(due_ms.max(0) as u64);
            tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
            max_rows = max_rows.min((self.tps / 10).max(1) as usize);
        }
        let batch = self.generator.next_batch(max_rows)?;
        let position = NexmarkPosition {
            next_event: self.generator.position(),
        };
        let position = serde_json::to_value(position)
            .map_err(|e| exec_datafusion_err!("the position of a nexmark reader: {e}"))?;
        Ok(batch.map(|b| SourceBatch::new(b).with_position(position)))
    }

    fn restore(
        &mut self,
        partition: usize,
        num_partitions: usize,
        saved: &[SavedPosition],
    ) -> Result<()> {
        let saved = same_partition_position("nexmark", saved, partition, num_partitions)?;
        if let Some(position) = saved {
            let restored = NexmarkPosition::deserialize(position).map_err(|e| {
                plan_datafusion_err!(
                    "nexmark checkpoint position {position} is not an event number ({e})"
                )
            })?;
            self.generator.seek(restored.next_event);
            if self.throttle.is_some() {
                // Resume the pacing where the restored events are due, not from the start.
                let due_ms =
                    self.generator.event_time_ms(self.generator.position()) - self.base_time_ms;
                let now = Instant::now();
                self.throttle = Some(
                    now.checked_sub(Duration::from_millis(due_ms.max(0) as u64))
                        .unwrap_or(now),
                );
            }
        }
        Ok(())
    }

    /// Where it resumes, recorded by a checkpoint taken before its first batch (or after it
    /// ended at once: a finished bounded reader must not start over on the next restore).
    fn restored_position(&self) -> Option<serde_json::Value> {
        serde_json::to_value(NexmarkPosition {
            next_event: self.generator.position(),
        })
        .ok()
    }
}
