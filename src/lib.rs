//! # Sabot: streaming SQL on Apache DataFusion
//!
//! Sabot runs continuous SQL over event streams: Flink-style DDL declares sources with event
//! time and watermarks, and TUMBLE, HOP and SESSION windows aggregate them with every DataFusion
//! aggregate function. DataFusion parses, types, optimizes and computes; Sabot adds the streaming
//! parts: unbounded sources, watermarks, windows, exchanges that keep control messages in order,
//! and sinks.
//!
//! ## The data path
//!
//! SQL goes through DataFusion's parser after two small rewriters ([`planner::window_syntax`]),
//! is planned by DataFusion's SQL planner with a relation planner for window table functions
//! ([`planner::window_tvf`]), and optimized by DataFusion's optimizer with one extra rule that
//! turns a `GROUP BY window_start, window_end` into a window aggregation
//! ([`planner::window_aggregate_rule`]). The physical plan is DataFusion's, with Sabot's
//! operators ([`physical`]) for sources, windows, exchanges and sinks, and a last rule
//! ([`planner::streaming_rule`]) that swaps stock stateless operators inside a stream for their
//! streaming twins, and stock joins for broadcast, window and interval joins
//! ([`physical::broadcast_join`], [`physical::joins`]).
//!
//! ## The control path
//!
//! Inside a pipeline every partition is one ordered stream of messages: data batches,
//! watermarks, idleness notices and checkpoint barriers ([`physical::message`]). A source derives
//! its watermark from the table's `WATERMARK FOR` expression per split; every operator that joins
//! streams takes the minimum and never moves it back; a window fires exactly once, when the
//! watermark passes its end. Barriers are injected at the sources and aligned wherever streams
//! merge, so everything before barrier N is exactly the data of checkpoint N.
//!
//! Every stateful operator (window aggregation, SESSION, the window and interval joins)
//! implements one lifecycle, [`physical::operator::Operator`]: restore, on data, on watermark,
//! snapshot at a barrier, end. One driver, [`physical::operator::Driver`], owns the message loop
//! for all of them: barrier alignment, per-input watermarks, late rows, metrics
//! ([`metrics`]) and the state's memory reservation.
//!
//! ## The guarantees
//!
//! - Results are event-time correct and independent of batch sizes and arrival timing within a
//!   source split: lateness is decided per record, against the watermark in force before it.
//! - Late rows are dropped and counted, never silently; malformed records fail the query with
//!   file, line and cause, or are skipped and counted when asked.
//! - At the end of a bounded input the watermark jumps to +infinity and every open window fires,
//!   so a streaming query over files gives exactly the batch answer.
//!
//! ## Embedding
//!
//! One call gives a session; statements go through `sql`, and a query's rows are an ordinary
//! DataFusion record batch stream that yields windows as they close:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> datafusion::error::Result<()> {
//! use futures::StreamExt;
//!
//! let ctx = sabot::session_context(sabot::SabotConfig::default());
//! ctx.sql(
//!     "CREATE TABLE bids (auction BIGINT, price BIGINT, date_time TIMESTAMP(3),
//!        WATERMARK FOR date_time AS date_time - INTERVAL '1' SECOND
//!      ) WITH ('connector' = 'nexmark', 'nexmark.table.type' = 'bid',
//!              'events.num' = '100000', 'tps' = '10000', 'throttle' = 'false',
//!              'base-time' = '2024-01-01 00:00:00')",
//! )
//! .await?;
//! let mut windows = ctx
//!     .sql(
//!         "SELECT window_start, COUNT(*) AS bids, MAX(price) AS top
//!          FROM TABLE(TUMBLE(TABLE bids, DESCRIPTOR(date_time), INTERVAL '1' SECOND))
//!          GROUP BY window_start, window_end",
//!     )
//!     .await?
//!     .execute_stream()
//!     .await?;
//! let mut windows_seen = 0;
//! while let Some(batch) = windows.next().await {
//!     windows_seen += batch?.num_rows();
//! }
//! // 100,000 events at 10,000 per second of event time span 10 one-second windows.
//! assert_eq!(windows_seen, 10);
//! # Ok(())
//! # }
//! ```
//!
//! An *updating* query, a GROUP BY without a window over a stream, has a result that changes
//! as rows arrive. Its rows are a changelog ([`changelog`]): read it with [`result_stream`],
//! which puts an `op` column first, `+I` for a new group, `-U` and `+U` for the old and new row
//! of a group that changed, `-D` for a group that went away. (Its plain `execute_stream`
//! refuses: rows without their kinds would read as facts.) Over a bounded input a GROUP BY
//! answers once, at the end, unless `execution.runtime-mode` is `streaming`:
//!
//! ```
//! # #[tokio::main(flavor = "multi_thread")]
//! # async fn main() -> datafusion::error::Result<()> {
//! use std::collections::HashMap;
//!
//! use datafusion::arrow::array::AsArray;
//! use datafusion::arrow::datatypes::Int64Type;
//! use futures::TryStreamExt;
//!
//! let ctx = sabot::session_context(sabot::SabotConfig::default());
//! ctx.sql(
//!     "CREATE TABLE bids (auction BIGINT, price BIGINT) WITH ('connector' = 'nexmark',
//!        'nexmark.table.type' = 'bid', 'events.num' = '10000', 'throttle' = 'false')",
//! )
//! .await?;
//! ctx.sql("SET 'execution.runtime-mode' = 'streaming'").await?;
//! let query = ctx.sql("SELECT auction, COUNT(*) AS bids FROM bids GROUP BY auction").await?;
//! let changes = sabot::result_stream(query).await?;
//! assert!(changes.updating);
//! // Apply the changelog: the last +I or +U row of an auction is its count.
//! let mut counts = HashMap::new();
//! for batch in changes.batches.try_collect::<Vec<_>>().await? {
//!     let (ops, auctions) = (batch.column(0).as_string::<i32>(), batch.column(1));
//!     let bids = batch.column(2).as_primitive::<Int64Type>();
//!     for row in 0..batch.num_rows() {
//!         let auction = auctions.as_primitive::<Int64Type>().value(row);
//!         match ops.value(row) {
//!             "+I" | "+U" => counts.insert(auction, bids.value(row)),
//!             _ => counts.remove(&auction),
//!         };
//!     }
//! }
//! // The changelog ends in the batch answer: every bid counted once.
//! let all: i64 = counts.values().sum();
//! ctx.sql("SET 'execution.runtime-mode' = 'automatic'").await?;
//! let batch = ctx.sql("SELECT COUNT(*) FROM bids").await?.collect().await?;
//! assert_eq!(all, batch[0].column(0).as_primitive::<Int64Type>().value(0));
//! # Ok(())
//! # }
//! ```
//!
//! The `sabot` binary runs the same SQL from a script (`sabot run query.sql`) or serves it over
//! the Postgres wire protocol to psql and drivers (`sabot serve`, [`server`]).
//!
//! ## The order of the modules
//!
//! Each module uses only the modules above it in this list; no module, and no file, imports
//! another that imports it back (`tests/architecture.rs` checks both).
//!
//! 1. [`error`], [`functions`], [`metrics`], [`config`], [`changelog`]: SQLSTATE errors,
//!    Flink's functions, the metrics registry, the settings, what a changelog row does. They
//!    use nothing else of Sabot.
//! 2. [`state`]: state encodings, RocksDB, re-keying, and where state lives
//!    ([`state::backend`]).
//! 3. [`statement`]: one statement, read once into what it is.
//! 4. [`catalog`]: what a `CREATE TABLE` declared, and its WITH options.
//! 5. [`connectors`]: sources and sinks built from a declaration.
//! 6. [`checkpoint`]: the coordinator, manifests, the checkpoint store, sink commits.
//! 7. [`physical`]: the streaming operators, their lifecycle and driver, and the context the
//!    operators of one job share ([`physical::job_context`]).
//! 8. [`planner`]: from SQL to a streaming physical plan, and statement dispatch.
//! 9. [`context`]: the session an embedder gets.
//! 10. [`runtime`]: running a plan as a job with checkpoints.
//! 11. [`cli`] and [`server`]: `sabot run` and `sabot bench`, and `sabot serve`.

pub mod catalog;
pub mod changelog;
pub mod checkpoint;
pub mod cli;
pub mod config;
pub mod connectors;
pub mod context;
pub mod error;
pub mod functions;
pub mod metrics;
pub mod physical;
pub mod planner;
pub mod runtime;
pub mod server;
pub mod state;
pub mod statement;

pub use config::SabotConfig;
pub use context::{ResultStream, SabotContext, result_stream, session_context};
