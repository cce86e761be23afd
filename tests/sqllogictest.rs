//! Runs every `sqllogictest/*.slt` file twice: through the embedded engine, and over the
//! Postgres wire protocol against `sabot serve` (tokio-postgres, simple protocol).
//!
//! Each file gets a fresh session (and over the wire a fresh server). Queries run to completion
//! (streaming queries in the tests read bounded inputs, which end with the final watermark),
//! and their rows are compared as text: NULL as `NULL`, the empty string as `(empty)`,
//! timestamps in ISO form. Over the wire, PostgreSQL's text forms are read back into the
//! embedded forms (see [`WireDb`]), so both runs check the same expected results.
//! `cargo test --test sqllogictest -- <filter>` runs only the files whose name contains filter.

use std::path::PathBuf;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::DataFusionError;
use futures::TryStreamExt;
use sabot::SabotConfig;
use sabot::context::SabotContext;
use sabot::server::Server;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType, Runner};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

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
        // An updating query's rows are its changelog, with an `op` column first.
        let rows = sabot::result_stream(df).await?.batches;
        let schema = rows.schema();
        let batches: Vec<_> = rows.try_collect().await?;
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

/// `sabot serve` on a loopback port with one client connected to it.
///
/// Statements go through the simple protocol, as psql sends them. The session sets Flink's
/// `table.dml-sync`, so an `INSERT ... SELECT` runs to completion as it does embedded, and its
/// tag's row count (`INSERT 0 3`) is reported as the one-row count DataFusion returns. Column
/// types come from preparing the statement (the simple protocol's row description names no
/// types); cells in PostgreSQL's text form are read back into the embedded ones: `t`/`f` as
/// `true`/`false`, `2024-01-01 00:00:05.5` as `2024-01-01T00:00:05.500` (chrono's fraction of
/// 0, 3, 6 or 9 digits), a whole float `2` as `2.0`.
struct WireDb {
    client: Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A server error: its message, and its SQLSTATE for `statement error (XXXXX)` records.
#[derive(Debug)]
struct WireError {
    message: String,
    code: Option<String>,
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for WireError {}

impl From<tokio_postgres::Error> for WireError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => WireError {
                message: db.message().to_string(),
                code: Some(db.code().code().to_string()),
            },
            None => WireError {
                message: e.to_string(),
                code: None,
            },
        }
    }
}

impl WireDb {
    async fn start() -> Result<Self, WireError> {
        let failed = |what: &str, e: &dyn std::fmt::Display| WireError {
            message: format!("{what}: {e}"),
            code: None,
        };
        let server = Server::new(SabotConfig::default())
            .await
            .map_err(|e| failed("server", &e))?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| failed("bind", &e))?;
        let port = listener
            .local_addr()
            .map_err(|e| failed("address", &e))?
            .port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(listener, async move {
            let _ = stopped.await;
        }));
        let (client, connection) = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user=sabot dbname=sabot"),
            NoTls,
        )
        .await?;
        tokio::spawn(connection);
        client
            .batch_execute("SET 'table.dml-sync' = 'true'")
            .await?;
        Ok(WireDb {
            client,
            _stop: stop,
        })
    }
}

/// A cell of PostgreSQL text in the form the embedded run prints.
fn embedded_form(cell: &str, t: Option<&Type>) -> String {
    match t {
        Some(&Type::BOOL) => match cell {
            "t" => "true".to_string(),
            "f" => "false".to_string(),
            other => other.to_string(),
        },
        Some(&Type::TIMESTAMP) => {
            let (date_time, fraction) = match cell.split_once('.') {
                Some((dt, f)) => (dt, f),
                None => (cell, ""),
            };
            let mut out = date_time.replacen(' ', "T", 1);
            if !fraction.is_empty() {
                let digits = fraction.len().div_ceil(3) * 3;
                out.push('.');
                out.push_str(&format!("{fraction:0<digits$}"));
            }
            out
        }
        Some(&Type::FLOAT4 | &Type::FLOAT8) => match cell {
            "Infinity" => "inf".to_string(),
            "-Infinity" => "-inf".to_string(),
            c if c.bytes().all(|b| b.is_ascii_digit() || b == b'-') => format!("{c}.0"),
            c => c.to_string(),
        },
        _ => cell.to_string(),
    }
}

/// Whether a statement is an INSERT (its count comes back in the command tag).
fn is_insert(sql: &str) -> bool {
    sql.trim_start()
        .get(..6)
        .is_some_and(|w| w.eq_ignore_ascii_case("insert"))
}

#[async_trait]
impl AsyncDB for WireDb {
    type Error = WireError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, WireError> {
        // The column types; a statement that cannot be prepared fails again below, with its
        // own error.
        let types: Vec<Type> = match self.client.prepare(sql).await {
            Ok(statement) => statement
                .columns()
                .iter()
                .map(|c| c.type_().clone())
                .collect(),
            Err(_) => Vec::new(),
        };
        let messages = self.client.simple_query(sql).await?;
        let mut described = false;
        let mut rows = Vec::new();
        let mut count = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(_) => described = true,
                SimpleQueryMessage::Row(row) => {
                    described = true;
                    let cells = (0..row.len())
                        .map(|i| match row.get(i) {
                            None => "NULL".to_string(),
                            Some("") => "(empty)".to_string(),
                            Some(cell) => embedded_form(cell, types.get(i)),
                        })
                        .collect();
                    push_row(&mut rows, cells);
                }
                SimpleQueryMessage::CommandComplete(n) => count = n,
                _ => {}
            }
        }
        if described {
            let columns = rows.first().map_or(types.len(), Vec::len);
            return Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Any; columns],
                rows,
            });
        }
        if is_insert(sql) {
            return Ok(DBOutput::Rows {
                types: vec![DefaultColumnType::Integer],
                rows: vec![vec![count.to_string()]],
            });
        }
        Ok(DBOutput::StatementComplete(count))
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "sabot-wire"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }

    fn error_sql_state(err: &WireError) -> Option<String> {
        err.code.clone()
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
    // The first argument that is not a flag (or the value of `--skip`, which `cargo test --
    // --skip x` passes to every test binary) filters the files.
    let mut args = std::env::args().skip(1);
    let mut filter: Option<String> = None;
    while let Some(arg) = args.next() {
        if arg == "--skip" {
            args.next();
        } else if !arg.starts_with('-') {
            filter = Some(arg);
            break;
        }
    }
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
        let embedded = runtime.block_on(async {
            let mut runner = Runner::new(|| async {
                Ok(SabotDb {
                    ctx: sabot::session_context(SabotConfig::default()),
                })
            });
            runner.run_file_async(file).await
        });
        let wire = runtime.block_on(async {
            let mut runner = Runner::new(WireDb::start);
            runner.run_file_async(file).await
        });
        for (how, result) in [("embedded", embedded), ("wire", wire)] {
            match result {
                Ok(()) => println!("ok      {name} ({how})"),
                Err(e) => {
                    println!("FAILED  {name} ({how})\n{e}\n");
                    failures.push(format!("{name} ({how})"));
                }
            }
        }
    }
    let runs = 2 * files.len();
    println!(
        "\nsqllogictest: {} files, {runs} runs (embedded and over the wire), {} passed, {} failed",
        files.len(),
        runs - failures.len(),
        failures.len()
    );
    if !failures.is_empty() {
        println!("failed: {}", failures.join(", "));
        std::process::exit(1);
    }
}
