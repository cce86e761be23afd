//! The `print` connector: a sink that prints every row, as Flink's does.
//!
//! Rows are printed as `+I[v1, v2, ...]`, and the rows of an updating query with their kind
//! (`-U[...]`, `+U[...]`, `-D[...]`), prefixed by `print-identifier>` when set and by the partition number when the sink
//! runs in parallel: `id:2> +I[...]`. `standard-error` = `true` prints to standard error.

use std::io::Write;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::Int8Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{DataFusionError, Result};

use super::{SinkConnector, SinkWriter};
use crate::catalog::options::OptionSpec;
use crate::catalog::table_definition::TableDefinition;
use crate::changelog::RowKind;

/// Options of the print sink.
pub const PRINT_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "print-identifier",
        "prefix of every printed line (default: none)",
    ),
    OptionSpec::optional(
        "standard-error",
        "print to standard error instead of standard output (default: false)",
    ),
];

/// Prints rows.
#[derive(Debug)]
pub struct PrintConnector {
    identifier: Option<String>,
    stderr: bool,
}

/// Builds the sink.
pub fn build(def: &TableDefinition) -> Result<Arc<dyn SinkConnector>> {
    def.options.validate("print", &[PRINT_OPTIONS])?;
    Ok(Arc::new(PrintConnector {
        identifier: def.options.get("print-identifier").map(|s| s.to_string()),
        stderr: def.options.get_bool("standard-error")?.unwrap_or(false),
    }))
}

impl SinkConnector for PrintConnector {
    fn name(&self) -> &'static str {
        "print"
    }

    fn open_writer(
        &self,
        _schema: SchemaRef,
        partition: usize,
        num_partitions: usize,
    ) -> Result<Box<dyn SinkWriter>> {
        let prefix = match (&self.identifier, num_partitions > 1) {
            (Some(id), true) => format!("{id}:{partition}> "),
            (Some(id), false) => format!("{id}> "),
            (None, true) => format!("{partition}> "),
            (None, false) => String::new(),
        };
        Ok(Box::new(PrintWriter {
            prefix,
            stderr: self.stderr,
        }))
    }

    fn accepts_changes(&self) -> bool {
        true
    }

    fn explain(&self) -> String {
        if self.stderr { "stderr" } else { "stdout" }.to_string()
    }
}

struct PrintWriter {
    prefix: String,
    stderr: bool,
}

impl PrintWriter {
    fn print(&self, text: &str) -> Result<()> {
        let result = if self.stderr {
            std::io::stderr().lock().write_all(text.as_bytes())
        } else {
            std::io::stdout().lock().write_all(text.as_bytes())
        };
        result.map_err(|e| DataFusionError::Execution(format!("print sink: {e}")))
    }
}

/// Formats the rows of `batch` as Flink's print sink does: `+I[v1, v2]`, or with the kind of
/// each row, as `kinds` numbers them (`-U[v1, v2]`).
pub fn format_rows(prefix: &str, batch: &RecordBatch, kinds: Option<&Int8Array>) -> Result<String> {
    let options = FormatOptions::default().with_null("NULL");
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let mut out = String::new();
    for row in 0..batch.num_rows() {
        out.push_str(prefix);
        let kind = match kinds {
            Some(kinds) => RowKind::of(kinds.value(row)).ok_or_else(|| {
                DataFusionError::Internal(format!("print sink: row kind {}", kinds.value(row)))
            })?,
            None => RowKind::Insert,
        };
        out.push_str(kind.short());
        out.push('[');
        for (i, f) in formatters.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            out.push_str(&f.value(row).to_string());
        }
        out.push_str("]\n");
    }
    Ok(out)
}

#[async_trait]
impl SinkWriter for PrintWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.print(&format_rows(&self.prefix, batch, None)?)
    }

    async fn write_changes(&mut self, batch: &RecordBatch, kinds: &Int8Array) -> Result<()> {
        self.print(&format_rows(&self.prefix, batch, Some(kinds))?)
    }

    async fn on_barrier(&mut self, _epoch: u64) -> Result<serde_json::Value> {
        std::io::stdout()
            .flush()
            .map(|_| serde_json::Value::Null)
            .map_err(|e| DataFusionError::Execution(format!("print sink: {e}")))
    }

    async fn finish(&mut self) -> Result<serde_json::Value> {
        self.on_barrier(0).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    #[test]
    fn flink_style_rows() {
        let batch = RecordBatch::try_from_iter(vec![
            ("a", Arc::new(Int64Array::from(vec![Some(1), None])) as _),
            ("b", Arc::new(StringArray::from(vec!["x", "y"])) as _),
        ])
        .unwrap();
        assert_eq!(
            format_rows("out> ", &batch, None).unwrap(),
            "out> +I[1, x]\nout> +I[NULL, y]\n"
        );
    }
}
