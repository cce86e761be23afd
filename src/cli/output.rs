//! Printing result rows as they arrive: an aligned table, CSV, or one JSON object per line.

use std::io::Write;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{DataFusionError, Result};

/// How `sabot run` prints rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// Aligned columns with a header.
    #[default]
    Table,
    /// Comma-separated values with a header line.
    Csv,
    /// One JSON object per row.
    Json,
}

impl std::str::FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(OutputFormat::Table),
            "csv" => Ok(OutputFormat::Csv),
            "json" => Ok(OutputFormat::Json),
            other => Err(format!("unknown format '{other}'; use table, csv or json")),
        }
    }
}

/// Prints the rows of one result (see the module docs).
pub struct ResultPrinter<W: Write> {
    format: OutputFormat,
    schema: SchemaRef,
    out: W,
    widths: Option<Vec<usize>>,
    rows: usize,
}

fn io(e: std::io::Error) -> DataFusionError {
    DataFusionError::Execution(format!("cannot write output: {e}"))
}

impl<W: Write> ResultPrinter<W> {
    /// A printer for rows of `schema`.
    pub fn new(format: OutputFormat, schema: SchemaRef, out: W) -> Self {
        Self {
            format,
            schema,
            out,
            widths: None,
            rows: 0,
        }
    }

    /// Rows printed so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    fn cells(batch: &RecordBatch) -> Result<Vec<Vec<String>>> {
        let options = FormatOptions::default().with_null("NULL");
        let formatters = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok((0..batch.num_rows())
            .map(|r| formatters.iter().map(|f| f.value(r).to_string()).collect())
            .collect())
    }

    /// Prints the rows of `batch`.
    pub fn print(&mut self, batch: &RecordBatch) -> Result<()> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        match self.format {
            OutputFormat::Table => self.print_table(batch)?,
            OutputFormat::Csv => {
                let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                    .with_header(self.rows == 0)
                    .build(&mut self.out);
                writer.write(batch)?;
            }
            OutputFormat::Json => {
                let mut writer = datafusion::arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build::<_, datafusion::arrow::json::writer::LineDelimited>(&mut self.out);
                writer.write(batch)?;
                writer.finish()?;
            }
        }
        self.rows += batch.num_rows();
        self.out.flush().map_err(io)
    }

    fn print_table(&mut self, batch: &RecordBatch) -> Result<()> {
        let cells = Self::cells(batch)?;
        let width = |text: &str| text.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        if self.widths.is_none() {
            // Column widths from the header and the first rows; later wider values just push on.
            let mut widths: Vec<usize> = self
                .schema
                .fields()
                .iter()
                .map(|f| f.name().len())
                .collect();
            for row in &cells {
                for (w, c) in widths.iter_mut().zip(row) {
                    *w = (*w).max(width(c));
                }
            }
            let header: Vec<String> = self
                .schema
                .fields()
                .iter()
                .zip(&widths)
                .map(|(f, w)| format!(" {:<w$} ", f.name(), w = *w))
                .collect();
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(w + 2)).collect();
            writeln!(self.out, "{}", header.join("|").trim_end()).map_err(io)?;
            writeln!(self.out, "{}", rule.join("+")).map_err(io)?;
            self.widths = Some(widths);
        }
        let widths = self.widths.clone().unwrap_or_default();
        for row in cells {
            // A multi-line value (an EXPLAIN plan) continues on the following lines.
            let lines: Vec<Vec<&str>> = row.iter().map(|c| c.lines().collect()).collect();
            let height = lines.iter().map(|l| l.len()).max().unwrap_or(1).max(1);
            for i in 0..height {
                let line: Vec<String> = lines
                    .iter()
                    .zip(&widths)
                    .map(|(l, w)| format!(" {:<w$} ", l.get(i).copied().unwrap_or(""), w = *w))
                    .collect();
                writeln!(self.out, "{}", line.join("|").trim_end()).map_err(io)?;
            }
        }
        Ok(())
    }

    /// Ends the result (a row count for tables).
    pub fn finish(&mut self) -> Result<()> {
        if self.format == OutputFormat::Table {
            if self.widths.is_none() {
                let header: Vec<&str> = self
                    .schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .collect();
                writeln!(self.out, " {}", header.join(" | ")).map_err(io)?;
            }
            let plural = if self.rows == 1 { "" } else { "s" };
            writeln!(self.out, "({} row{plural})", self.rows).map_err(io)?;
        }
        self.out.flush().map_err(io)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use std::sync::Arc;

    fn batch() -> RecordBatch {
        RecordBatch::try_from_iter(vec![
            ("k", Arc::new(Int64Array::from(vec![Some(1), None])) as _),
            (
                "name",
                Arc::new(StringArray::from(vec!["a", "bbbbbb"])) as _,
            ),
        ])
        .unwrap()
    }

    fn render(format: OutputFormat) -> String {
        let b = batch();
        let mut out = Vec::new();
        let mut p = ResultPrinter::new(format, b.schema(), &mut out);
        p.print(&b).unwrap();
        p.finish().unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table() {
        assert_eq!(
            render(OutputFormat::Table),
            " k    | name\n------+--------\n 1    | a\n NULL | bbbbbb\n(2 rows)\n"
        );
    }

    #[test]
    fn multi_line_values_continue_on_the_next_lines() {
        let b = RecordBatch::try_from_iter(vec![
            (
                "plan_type",
                Arc::new(StringArray::from(vec!["physical"])) as _,
            ),
            ("plan", Arc::new(StringArray::from(vec!["A\n  B"])) as _),
        ])
        .unwrap();
        let mut out = Vec::new();
        let mut p = ResultPrinter::new(OutputFormat::Table, b.schema(), &mut out);
        p.print(&b).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            " plan_type | plan\n-----------+------\n physical  | A\n           |   B\n"
        );
    }

    #[test]
    fn csv_and_json() {
        assert_eq!(render(OutputFormat::Csv), "k,name\n1,a\n,bbbbbb\n");
        assert_eq!(
            render(OutputFormat::Json),
            "{\"k\":1,\"name\":\"a\"}\n{\"k\":null,\"name\":\"bbbbbb\"}\n"
        );
    }
}
