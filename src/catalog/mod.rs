//! The catalog: what a `CREATE TABLE` declared, independent of any connector.
//!
//! - [`table_definition`]: the parsed declaration (columns, computed columns, metadata
//!   columns, watermark, WITH options).
//! - [`options`]: the WITH options, validated against the keys a connector accepts and read
//!   as typed values.
//!
//! Connectors are built from a definition ([`crate::connectors::registry`]); the DataFusion
//! table a definition becomes is [`ConnectorTable`](crate::planner::connector_table::ConnectorTable).

pub mod options;
pub mod table_definition;
