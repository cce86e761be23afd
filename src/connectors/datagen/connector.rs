//! [`DatagenConnector`]: the source of one `datagen` table. It validates the options, knows
//! whether the table is bounded and how many rows it has, and opens one reader per partition.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{exec_err, plan_err};
use datafusion::error::Result;

use super::options::{DATAGEN_OPTIONS, DEFAULT_ROWS_PER_SECOND, field_gen, field_keys};
use super::reader::{DatagenReader, partition_rate};
use super::values::{FieldGen, Values};
use crate::catalog::options::SOURCE_COMMON_OPTIONS;
use crate::catalog::table_definition::{ColumnKind, TableDefinition};
use crate::connectors::{SourceConnector, SourceReader};

/// Batches never exceed this many rows.
const MAX_BATCH_ROWS: usize = 1 << 20;
/// Bytes of string data per column and batch (keeps `Utf8` offsets far from overflowing).
const MAX_BATCH_STRING_BYTES: usize = 1 << 28;
/// A rate-limited batch holds at most this much time worth of rows.
const MAX_BATCH_TIME: Duration = Duration::from_millis(100);

/// Validates the options of a `datagen` table and returns its source (see the module docs).
pub fn build(def: &TableDefinition) -> Result<Arc<dyn SourceConnector>> {
    Ok(Arc::new(DatagenConnector::try_new(def)?))
}

/// The `datagen` source of one table (see the module docs).
#[derive(Debug, Clone)]
pub struct DatagenConnector {
    schema: SchemaRef,
    fields: Arc<Vec<FieldGen>>,
    rows_per_second: u64,
    /// Total rows if bounded: `number-of-rows` and every sequence length, whichever is least.
    total_rows: Option<u64>,
    seed: u64,
}

impl DatagenConnector {
    /// Validates the table's options and columns.
    pub fn try_new(def: &TableDefinition) -> Result<Self> {
        let table = &def.name;
        def.options
            .validate("datagen", &[DATAGEN_OPTIONS, SOURCE_COMMON_OPTIONS])?;
        for column in &def.columns {
            if let ColumnKind::Metadata { key, .. } = &column.kind {
                return plan_err!(
                    "datagen table {table}: column {} is a metadata column (METADATA FROM \
                     '{key}'), but datagen has no metadata. Make it a physical or computed column.",
                    column.name
                );
            }
        }
        let options = &def.options;
        let rows_per_second = options
            .get_u64("rows-per-second")?
            .unwrap_or(DEFAULT_ROWS_PER_SECOND);
        let number_of_rows = options.get_u64("number-of-rows")?;
        let seed = options.get_u64("seed")?.unwrap_or(0);
        let mut keys = field_keys(def)?;
        let mut fields = Vec::new();
        for (index, column) in def.source_columns().into_iter().enumerate() {
            let column_keys = keys.remove(&index).unwrap_or_default();
            fields.push(field_gen(def, column, index, &column_keys, seed)?);
        }
        let mut total_rows = number_of_rows;
        for field in &fields {
            if let Values::Sequence { start, end } = field.values {
                let len = (end as u128).wrapping_sub(start as u128).saturating_add(1);
                let len = u64::try_from(len).unwrap_or(u64::MAX);
                total_rows = Some(total_rows.map_or(len, |t| t.min(len)));
            }
        }
        Ok(Self {
            schema: def.source_schema(),
            fields: Arc::new(fields),
            rows_per_second,
            total_rows,
            seed,
        })
    }

    /// Total number of rows, if bounded.
    pub fn total_rows(&self) -> Option<u64> {
        self.total_rows
    }
}

impl SourceConnector for DatagenConnector {
    fn name(&self) -> &'static str {
        "datagen"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn is_bounded(&self) -> bool {
        self.total_rows.is_some()
    }

    fn num_partitions(&self, parallelism: usize) -> Result<usize> {
        let n = parallelism.max(1);
        Ok(match self.total_rows {
            Some(total) => n.min(usize::try_from(total).unwrap_or(usize::MAX)).max(1),
            None => n,
        })
    }

    fn open(
        &self,
        partition: usize,
        num_partitions: usize,
        projection: &[usize],
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        if num_partitions == 0 || partition >= num_partitions {
            return exec_err!("datagen: partition {partition} of {num_partitions} does not exist");
        }
        let mut fields = Vec::with_capacity(projection.len());
        for &i in projection {
            match self.fields.get(i) {
                Some(f) => fields.push(f.clone()),
                None => {
                    return exec_err!(
                        "datagen: projection index {i} out of range ({} columns)",
                        self.fields.len()
                    );
                }
            }
        }
        let schema = Arc::new(self.schema.project(projection)?);
        let n = num_partitions as u64;
        let p = partition as u64;
        let rate = partition_rate(self.rows_per_second, p, n);
        let mut max_rows = batch_size.clamp(1, MAX_BATCH_ROWS);
        if let Some(rate) = rate {
            let per_window = rate.saturating_mul(MAX_BATCH_TIME.as_millis() as u64) / 1000;
            max_rows = max_rows.min(usize::try_from(per_window).unwrap_or(usize::MAX).max(1));
        }
        for field in &fields {
            if let Some(rows) = MAX_BATCH_STRING_BYTES.checked_div(field.max_string_len()) {
                max_rows = max_rows.min(rows.max(1));
            }
        }
        Ok(Box::new(DatagenReader {
            fields,
            schema,
            next_row: p,
            step: n,
            total_rows: self.total_rows,
            max_rows,
            rate,
            start: None,
            emitted: 0,
        }))
    }

    fn explain(&self) -> String {
        let mut out = format!("rows-per-second={}", self.rows_per_second);
        if let Some(rows) = self.total_rows {
            out.push_str(&format!(", number-of-rows={rows}"));
        }
        if self.seed != 0 {
            out.push_str(&format!(", seed={}", self.seed));
        }
        let sequences: Vec<String> = self
            .fields
            .iter()
            .filter_map(|f| match f.values {
                Values::Sequence { start, end } => Some(format!("{}={start}..={end}", f.name)),
                _ => None,
            })
            .collect();
        if !sequences.is_empty() {
            out.push_str(&format!(", sequences=[{}]", sequences.join(", ")));
        }
        out
    }
}
