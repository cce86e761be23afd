//! Runs every `sqllogictest/*.slt` file through the embedded engine.
//!
//! Each file gets a fresh session. Queries run to completion (streaming queries in the tests
//! read bounded inputs, which end with the final watermark), and their rows are compared as
//! text: NULL as `NULL`, the empty string as `(empty)`, timestamps in ISO form.
//! `cargo test --test sqllogictest -- <filter>` runs only the files whose name contains filter.

use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use sabot::SabotConfig;
use sabot::context::SabotContext;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};

struct SabotDb {
    ctx: SabotContext,
}

fn column_type(t: &DataType) -> DefaultColumnType {
    match t {
        DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64 => DefaultColumnType::Integer,
        DataType::Float16
        | DataType::Float32
        | DataType::Float64
        | DataType::Decimal32(_, _)
        | DataType::Decimal64(_, _)
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => DefaultColumnType::FloatingPoint,
        _ => DefaultColumnType::Text,
    }
}

#[async_trait]
impl AsyncDB for SabotDb {
    type Error = DataFusionError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DataFusionError> {
        let df = self.ctx.sql(sql).await?;
        let schema = df.schema().inner().clone();
        let batches = df.collect().await?;
        if schema.fields().is_empty() {
            return Ok(DBOutput::StatementComplete(0));
        }
        let types = schema
            .fields()
            .iter()
            .map(|f| column_type(f.data_type()))
            .collect();
        let options = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for batch in &batches {
            let formatters = batch
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
                .collect::<Result<Vec<_>, _>>()?;
            for r in 0..batch.num_rows() {
                let cells: Vec<String> = formatters
                    .iter()
                    .map(|f| {
                        let v = f.value(r).to_string();
                        if v.is_empty() {
                            "(empty)".to_string()
                        } else {
                            v
                        }
                    })
                    .collect();
                push_row(&mut rows, cells);
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "sabot"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

/// Adds a row; a multi-line cell (an EXPLAIN plan) becomes one row per line, numbered and with
/// its indentation drawn as dashes, after a row of the other cells (as DataFusion's own tests).
fn push_row(rows: &mut Vec<Vec<String>>, cells: Vec<String>) {
    if !cells.iter().any(|c| c.contains('\n')) {
        rows.push(cells);
        return;
    }
    let (multi, single): (Vec<String>, Vec<String>) =
        cells.into_iter().partition(|c| c.contains('\n'));
    rows.push(single);
    for cell in multi {
        for (i, line) in cell.lines().enumerate() {
            let trimmed = line.trim_start();
            let indent = line.len() - trimmed.len();
            rows.push(vec![format!(
                "{:02}){}{}",
                i + 1,
                "-".repeat(indent),
                trimmed.trim_end()
            )]);
        }
    }
}

fn main() {
    let filter: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sqllogictest");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("sqllogictest directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .filter(|p| {
            filter.as_ref().is_none_or(|f| {
                p.file_name()
                    .is_some_and(|n| n.to_string_lossy().contains(f.as_str()))
            })
        })
        .collect();
    files.sort();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut failures = Vec::new();
    for file in &files {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let result = runtime.block_on(async {
            let mut runner = Runner::new(|| async {
                Ok(SabotDb {
                    ctx: sabot::session_context(SabotConfig::default()),
                })
            });
            runner.run_file_async(file).await
        });
        match result {
            Ok(()) => println!("ok      {name}"),
            Err(e) => {
                println!("FAILED  {name}\n{e}\n");
                failures.push(name);
            }
        }
    }
    println!(
        "\nsqllogictest: {} files, {} passed, {} failed",
        files.len(),
        files.len() - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        println!("failed: {}", failures.join(", "));
        std::process::exit(1);
    }
}
