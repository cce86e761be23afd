//! `ConnectorTable`: a declared table as a DataFusion `TableProvider`.
//!
//! A scan reads only what the query needs: the requested columns, the columns the needed
//! computed columns use, and the columns of the watermark expression. It becomes a
//! [`StreamSourceExec`] with the computed columns and the watermark compiled by DataFusion.
//! `INSERT INTO` becomes a [`StreamSinkExec`] writing the table's physical columns.

use std::any::Any;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, Result, plan_err};
use datafusion::datasource::{TableProvider, TableType};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::table_definition::{ColumnKind, TableDefinition};
use crate::config::{LiveTables, parse_duration};
use crate::connectors::memory::MemoryStore;
use crate::connectors::registry;
use crate::connectors::{SinkConnector, SourceConnector};
use crate::physical::dml::DmlExec;
use crate::physical::sink::StreamSinkExec;
use crate::physical::source::{ComputedColumn, StreamSourceExec, WatermarkStrategy};

/// Default of `scan.watermark.future-tolerance`.
pub const DEFAULT_FUTURE_TOLERANCE: Duration = Duration::from_secs(86_400);

/// A connector table (see the module docs).
#[derive(Debug)]
pub struct ConnectorTable {
    definition: Arc<TableDefinition>,
    source: Option<Arc<dyn SourceConnector>>,
    sink: Option<Arc<dyn SinkConnector>>,
    schema: SchemaRef,
}

impl ConnectorTable {
    /// A table over the given connector sides.
    pub fn new(
        definition: Arc<TableDefinition>,
        source: Option<Arc<dyn SourceConnector>>,
        sink: Option<Arc<dyn SinkConnector>>,
    ) -> Self {
        let schema = definition.schema();
        Self {
            definition,
            source,
            sink,
            schema,
        }
    }

    /// The table a declaration becomes: its connector's sides, as its `connector` option names
    /// ([`registry::connect`]).
    pub fn build(definition: TableDefinition) -> Result<Self> {
        let definition = Arc::new(definition);
        let (source, sink) = registry::connect(&definition)?;
        Ok(Self::new(definition, source, sink))
    }

    /// The declaration.
    pub fn definition(&self) -> &Arc<TableDefinition> {
        &self.definition
    }

    /// The sink side, if the connector writes.
    pub fn sink(&self) -> Option<&Arc<dyn SinkConnector>> {
        self.sink.as_ref()
    }

    /// Its source as a query reads it: live (a memory table's rows, then every change; see
    /// [`LiveTables`]) when `live`.
    pub fn source_read(&self, live: bool) -> Option<Arc<dyn SourceConnector>> {
        let source = self.source.as_ref()?;
        match live.then(|| source.live()).flatten() {
            Some(live) => Some(live),
            None => Some(Arc::clone(source)),
        }
    }

    /// True if reading it (live when `live`) reads a stream, bounded or not: a source
    /// connector's, not the rows of a memory table or a materialized view (a snapshot).
    pub fn is_stream(&self, live: bool) -> bool {
        self.source_read(live)
            .is_some_and(|s| s.name() != "memory" || !s.is_bounded())
    }

    /// True if its rows (read live when `live`) are a changelog (a source in a changelog
    /// format such as `debezium-json`, or a memory table read live).
    pub fn is_changelog(&self, live: bool) -> bool {
        self.source_read(live)
            .is_some_and(|s| s.changelog().is_updating())
    }

    /// True if reading it (live when `live`) gives an unbounded stream (its source never
    /// ends).
    pub fn is_unbounded(&self, live: bool) -> bool {
        self.source_read(live).is_some_and(|s| !s.is_bounded())
    }

    fn connector_name(&self) -> &str {
        self.definition.connector().unwrap_or("memory")
    }
}

/// Indices (into `columns`) of the columns an expression reads.
fn referenced(expr: &Expr, schema: &Schema) -> Vec<usize> {
    expr.column_refs()
        .iter()
        .filter_map(|c| schema.index_of(&c.name).ok())
        .collect()
}

#[async_trait]
impl TableProvider for ConnectorTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn get_table_definition(&self) -> Option<&str> {
        Some(&self.definition.sql)
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(source) = self.source_read(LiveTables::of(state.config_options())) else {
            return plan_err!(
                "table {} (connector '{}') is a sink: it can be written with INSERT INTO but not \
                 read",
                self.definition.name,
                self.connector_name()
            );
        };
        let def = &self.definition;
        let all: Vec<usize> = (0..def.columns.len()).collect();
        let wanted: Vec<usize> = projection.cloned().unwrap_or(all);
        let schema = self.schema.as_ref();

        // Computed columns needed by the output or the watermark.
        let mut computed_needed: BTreeSet<usize> = wanted
            .iter()
            .copied()
            .filter(|&i| def.columns[i].is_computed())
            .collect();
        if let Some(w) = &def.watermark {
            for i in referenced(&w.expr, schema) {
                if def.columns[i].is_computed() {
                    computed_needed.insert(i);
                }
            }
        }
        // Source columns needed by the output, the computed columns and the watermark.
        let mut source_needed: BTreeSet<usize> = wanted
            .iter()
            .copied()
            .filter(|&i| !def.columns[i].is_computed())
            .collect();
        let mut exprs: Vec<&Expr> = Vec::new();
        for &i in &computed_needed {
            if let ColumnKind::Computed { expr, .. } = &def.columns[i].kind {
                exprs.push(expr);
            }
        }
        if let Some(w) = &def.watermark {
            exprs.push(&w.expr);
        }
        for e in exprs {
            for i in referenced(e, schema) {
                if !def.columns[i].is_computed() {
                    source_needed.insert(i);
                }
            }
        }

        // Map table column index -> index in the connector's (source-only) schema.
        let source_index: Vec<Option<usize>> = {
            let mut next = 0;
            def.columns
                .iter()
                .map(|c| {
                    if c.is_computed() {
                        None
                    } else {
                        next += 1;
                        Some(next - 1)
                    }
                })
                .collect()
        };
        let read_projection: Vec<usize> = source_needed
            .iter()
            .filter_map(|&i| source_index[i])
            .collect();
        // Layout produced by the source before the output projection: read, then computed.
        let layout: Vec<usize> = source_needed
            .iter()
            .copied()
            .chain(computed_needed.iter().copied())
            .collect();
        let read_schema =
            Arc::new(schema.project(&source_needed.iter().copied().collect::<Vec<_>>())?);
        let read_dfschema = DFSchema::try_from(Arc::clone(&read_schema))?;
        let mut computed = Vec::with_capacity(computed_needed.len());
        for &i in &computed_needed {
            let column = &def.columns[i];
            if let ColumnKind::Computed { expr, .. } = &column.kind {
                computed.push(ComputedColumn {
                    field: column.field(),
                    expr: state.create_physical_expr(expr.clone(), &read_dfschema)?,
                });
            }
        }
        let full_schema = Arc::new(schema.project(&layout)?);
        let watermark = match &def.watermark {
            Some(w) => {
                let full_dfschema = DFSchema::try_from(Arc::clone(&full_schema))?;
                let options = &def.options;
                let idle_timeout = options.get_duration("scan.watermark.idle-timeout")?;
                let future_tolerance = options
                    .get("scan.watermark.future-tolerance")
                    .and_then(parse_duration)
                    .unwrap_or(DEFAULT_FUTURE_TOLERANCE);
                Some(WatermarkStrategy {
                    column: w.column.clone(),
                    expr: state.create_physical_expr(w.expr.clone(), &full_dfschema)?,
                    display: w.sql.clone(),
                    idle_timeout,
                    future_tolerance,
                })
            }
            None => None,
        };
        let output_projection: Vec<usize> = wanted
            .iter()
            .map(|i| layout.iter().position(|l| l == i).unwrap_or(0))
            .collect();
        let config = state.config();
        Ok(Arc::new(StreamSourceExec::try_new(
            def.name.clone(),
            source,
            read_projection,
            computed,
            watermark,
            output_projection,
            config.target_partitions(),
            config.batch_size(),
        )?))
    }

    async fn delete_from(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let store = self.changeable("DELETE")?;
        let predicate = self.predicate(state, filters)?;
        Ok(Arc::new(DmlExec::new(
            format!("DELETE FROM {}", self.definition.name),
            Arc::new(move || store.delete_where(predicate.as_ref())),
        )))
    }

    async fn update(
        &self,
        state: &dyn Session,
        assignments: Vec<(String, Expr)>,
        filters: Vec<Expr>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let store = self.changeable("UPDATE")?;
        let source = store.schema();
        let dfschema = DFSchema::try_from(Arc::clone(&source))?;
        let assignments = assignments
            .into_iter()
            .map(|(column, value)| {
                let Ok(index) = source.index_of(&column) else {
                    return plan_err!(
                        "UPDATE of table {}: it has no column {column} it can set",
                        self.definition.name
                    );
                };
                Ok((index, state.create_physical_expr(value, &dfschema)?))
            })
            .collect::<Result<Vec<_>>>()?;
        let predicate = self.predicate(state, filters)?;
        Ok(Arc::new(DmlExec::new(
            format!("UPDATE {}", self.definition.name),
            Arc::new(move || store.update_where(predicate.as_ref(), &assignments)),
        )))
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(sink) = &self.sink else {
            return plan_err!(
                "table {} (connector '{}') is a source: it can be read but not written. Declare \
                 a sink table, e.g. WITH ('connector' = 'print'), and INSERT INTO that",
                self.definition.name,
                self.connector_name()
            );
        };
        if insert_op != InsertOp::Append {
            return plan_err!(
                "{insert_op} is not supported for table {}; use INSERT INTO",
                self.definition.name
            );
        }
        let projection: Vec<usize> = self
            .definition
            .columns
            .iter()
            .enumerate()
            .filter(|(_, c)| !c.is_computed())
            .map(|(i, _)| i)
            .collect();
        Ok(Arc::new(StreamSinkExec::try_new(
            input,
            self.definition.name.clone(),
            Arc::clone(sink),
            projection,
        )?))
    }
}

impl ConnectorTable {
    /// The rows `what` (`UPDATE`, `DELETE`) changes: a memory table's; other tables refuse.
    fn changeable(&self, what: &str) -> Result<Arc<MemoryStore>> {
        match self.source.as_ref().and_then(|s| s.memory_store()) {
            Some(store) if store.is_written() => plan_err!(
                "{what}: table {} is being written by a running job (a materialized view's, or \
                 an INSERT ... SELECT); changing its rows under the job would make its result \
                 wrong. Stop the job first (DROP MATERIALIZED VIEW, CANCEL JOB)",
                self.definition.name
            ),
            Some(store) => Ok(store),
            None => plan_err!(
                "{what} changes tables kept in memory (without 'connector', or 'connector' = \
                 'memory'); table {} (connector '{}') is read from or written to outside Sabot",
                self.definition.name,
                self.connector_name()
            ),
        }
    }

    /// The conjunction of a DML statement's `filters`, over the table's stored columns.
    fn predicate(
        &self,
        state: &dyn Session,
        filters: Vec<Expr>,
    ) -> Result<Option<Arc<dyn datafusion::physical_expr::PhysicalExpr>>> {
        let Some(condition) = datafusion::logical_expr::utils::conjunction(filters) else {
            return Ok(None);
        };
        let dfschema = DFSchema::try_from(self.definition.source_schema())?;
        Ok(Some(state.create_physical_expr(condition, &dfschema)?))
    }

    /// For downcasting from `dyn TableProvider`.
    pub fn as_any(&self) -> &dyn Any {
        self
    }
}
