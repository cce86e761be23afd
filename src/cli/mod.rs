//! The `sabot` command line: `sabot run FILE.sql` and its output.
//!
//! - [`run`]: runs a script statement by statement, queries and INSERTs as jobs with a progress
//!   line and a summary, stopping cleanly on Ctrl-C.
//! - [`output`]: prints result rows as a table, CSV or JSON lines, as they arrive.
//! - [`bench`]: `sabot bench nexmark`, a measured run of one Nexmark query.
//! - [`bench_kafka`]: `sabot bench kafka`, the Kafka connector's produce and consume paths.
//! - [`bench_join`]: `sabot bench join`, the broadcast join's probe rate.
//! - [`bench_checkpoint`]: `sabot bench checkpoint`, checkpoints of large keyed window state.

pub mod bench;
pub mod bench_checkpoint;
pub mod bench_join;
pub mod bench_kafka;
pub mod output;
pub mod run;
