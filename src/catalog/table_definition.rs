//! `TableDefinition`: one `CREATE TABLE`, as declared.
//!
//! Columns come in three kinds (Flink's): physical columns read from the records, metadata
//! columns filled by the connector (`offset BIGINT METADATA FROM 'offset'`), and computed columns
//! (`ts AS TO_TIMESTAMP(epoch_ms)`) evaluated by the source. The optional watermark declares
//! which column carries event time and how far behind it the watermark trails.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::logical_expr::Expr;

use crate::catalog::options::TableOptions;

/// What a column is.
#[derive(Debug, Clone, PartialEq)]
pub enum ColumnKind {
    /// Read from the record.
    Physical,
    /// Filled by the connector from record metadata.
    Metadata {
        /// Metadata key (`offset`, `partition`, `timestamp`, `key`).
        key: String,
        /// VIRTUAL metadata is read-only: not written by INSERT.
        is_virtual: bool,
    },
    /// Computed from other columns of the same row.
    Computed {
        /// The expression as written.
        sql: String,
        /// The expression over the physical and metadata columns.
        expr: Expr,
    },
}

/// One declared column.
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnDefinition {
    /// Column name.
    pub name: String,
    /// Arrow type.
    pub data_type: DataType,
    /// May hold NULL.
    pub nullable: bool,
    /// Physical, metadata or computed.
    pub kind: ColumnKind,
}

impl ColumnDefinition {
    /// The column as an Arrow field (a `PROCTIME()` column marked as a processing-time
    /// attribute).
    pub fn field(&self) -> Field {
        let field = Field::new(&self.name, self.data_type.clone(), self.nullable);
        match &self.kind {
            ColumnKind::Computed { expr, .. }
                if crate::functions::proctime::is_proctime_call(expr) =>
            {
                crate::functions::proctime::mark(field)
            }
            _ => field,
        }
    }

    /// True for computed columns.
    pub fn is_computed(&self) -> bool {
        matches!(self.kind, ColumnKind::Computed { .. })
    }
}

/// `WATERMARK FOR column AS expr`.
#[derive(Debug, Clone, PartialEq)]
pub struct WatermarkDefinition {
    /// The event-time column.
    pub column: String,
    /// The watermark expression as written.
    pub sql: String,
    /// The expression over all columns.
    pub expr: Expr,
}

/// A declared table (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct TableDefinition {
    /// Table name.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<ColumnDefinition>,
    /// Watermark, if declared.
    pub watermark: Option<WatermarkDefinition>,
    /// `PRIMARY KEY (...) NOT ENFORCED` columns (informational).
    pub primary_key: Vec<String>,
    /// `PARTITIONED BY (...)` columns (a filesystem table's directories).
    pub partition_by: Vec<String>,
    /// WITH options.
    pub options: TableOptions,
    /// The statement text, for DESCRIBE and persistence.
    pub sql: String,
}

impl TableDefinition {
    /// The connector named in the options, if any.
    pub fn connector(&self) -> Option<&str> {
        self.options.get("connector")
    }

    /// All columns, in declaration order.
    pub fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.columns.iter().map(|c| c.field()).collect::<Vec<_>>(),
        ))
    }

    /// Physical and metadata columns (what a connector produces), in declaration order.
    pub fn source_columns(&self) -> Vec<&ColumnDefinition> {
        self.columns.iter().filter(|c| !c.is_computed()).collect()
    }

    /// Schema of [`source_columns`](Self::source_columns).
    pub fn source_schema(&self) -> SchemaRef {
        Arc::new(Schema::new(
            self.source_columns()
                .iter()
                .map(|c| c.field())
                .collect::<Vec<_>>(),
        ))
    }

    /// Physical columns only (what a sink writes), in declaration order.
    pub fn physical_columns(&self) -> Vec<&ColumnDefinition> {
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Physical))
            .collect()
    }

    /// Metadata columns.
    pub fn metadata_columns(&self) -> Vec<&ColumnDefinition> {
        self.columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Metadata { .. }))
            .collect()
    }
}
