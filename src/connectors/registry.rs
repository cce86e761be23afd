//! Connector registry: from a table definition's `connector` option to its source and sink.

use std::sync::Arc;

use datafusion::common::{Result, plan_err};

use super::{SinkConnector, SourceConnector};
use crate::catalog::table_definition::TableDefinition;

/// Connectors and what they are, for error messages and docs.
pub const CONNECTORS: &[(&str, &str)] = &[
    (
        "filesystem",
        "bounded files (json lines, csv) as a source; rolling files as a sink",
    ),
    (
        "memory",
        "rows kept in this process (a streaming INSERT appends, reads see a snapshot)",
    ),
    ("datagen", "random or sequence rows"),
    ("nexmark", "the Nexmark auction benchmark's events"),
    ("print", "a sink printing every row"),
    ("blackhole", "a sink discarding every row"),
    (
        "kafka",
        "Kafka topics, read partition-parallel and written transactionally",
    ),
    (
        "upsert-kafka",
        "a Kafka topic holding the last row of each PRIMARY KEY (tombstones delete); read as a changelog",
    ),
];

/// The source and sink sides of a table; either may be missing.
pub type Sides = (
    Option<Arc<dyn SourceConnector>>,
    Option<Arc<dyn SinkConnector>>,
);

/// Builds the source and sink sides of a declared table, as its `connector` option names.
pub fn connect(def: &Arc<TableDefinition>) -> Result<Sides> {
    let (source, sink): Sides = match def.connector() {
        None | Some("memory") => {
            let memory = super::memory::build(def)?;
            (Some(Arc::new(memory.clone())), Some(Arc::new(memory)))
        }
        Some("filesystem") => {
            let (source, sink) = super::filesystem::build(def)?;
            (Some(source), Some(sink))
        }
        Some("datagen") => (Some(super::datagen::build(def)?), None),
        Some("nexmark") => (Some(super::nexmark::build(def)?), None),
        Some("print") => (None, Some(super::print::build(def)?)),
        Some("blackhole") => (None, Some(super::blackhole::build(def)?)),
        Some("kafka") => {
            let (source, sink) = super::kafka::build(def)?;
            (Some(source), Some(sink))
        }
        Some("upsert-kafka") => {
            let (source, sink) = super::kafka::build_upsert(def)?;
            (Some(source), Some(sink))
        }
        Some(other) => {
            let names: Vec<&str> = CONNECTORS.iter().map(|(n, _)| *n).collect();
            return plan_err!(
                "unknown connector '{other}' for table {}. Valid connectors: {}",
                def.name,
                names.join(", ")
            );
        }
    };
    if sink.is_some() && source.is_none() && def.watermark.is_some() {
        return plan_err!(
            "table {} is a sink ({}) and cannot have a WATERMARK; watermarks belong to sources",
            def.name,
            def.connector().unwrap_or("memory")
        );
    }
    Ok((source, sink))
}
