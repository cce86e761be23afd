//! The catalog: what a `CREATE TABLE` declared, and the DataFusion table it becomes.
//!
//! - [`table_definition`]: the parsed declaration (columns, computed columns, metadata
//!   columns, watermark, WITH options), independent of any connector.
//! - [`connector_table`]: the `TableProvider` for a connector table. Scans become
//!   [`StreamSourceExec`](crate::physical::source::StreamSourceExec) with the computed columns
//!   and the watermark compiled in; `INSERT INTO` becomes
//!   [`StreamSinkExec`](crate::physical::sink::StreamSinkExec).

pub mod connector_table;
pub mod table_definition;
