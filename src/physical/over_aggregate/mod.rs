//! `OverAggregateExec`: aggregates `OVER (PARTITION BY k ORDER BY ... ROWS|RANGE BETWEEN ...)`
//! over a stream, of two kinds ([`OverOrder`]).
//!
//! **Over an appending stream**, ordered by event time, with frames ending at the current row:
//! Flink's semantics (its `RowTimeRangeBoundedPrecedingFunction` and
//! `RowTimeRowsBoundedPrecedingFunction`). Every input row comes out once, with the aggregates over its frame, when the watermark
//! passes its time: then no row that belongs before it can still come. A row at or below the
//! watermark when it arrives is late, dropped and counted. Rows of equal time come out
//! together; in a RANGE frame they are each other's peers (each sees them all), in a ROWS frame
//! they count in arrival order.
//!
//! State, per partition key: the rows waiting for the watermark, and the rows emitted that
//! later frames still reach (the last `n` rows of a `ROWS n PRECEDING` frame, the rows within
//! the interval of a `RANGE` frame, behind the watermark). When the watermark passes rows, each
//! key's kept rows and its due rows are decoded into one batch, in time order, and DataFusion's
//! window expressions evaluate it; the due rows' values are the output. A row thus costs its
//! frame's size, as Flink's functions without retraction do. The output appends and keeps the
//! input's event time: its watermark is the input's.
//!
//! A snapshot batch holds every input column, nullable, then `__due` (still waiting) and
//! `__seq` (arrival number, which orders rows of equal time).
//!
//! **Over a changelog** (which Flink refuses), in any `ORDER BY`, with `ROWS` frames bounded on
//! both sides: RisingWave's semantics. Every row comes out as it arrives, and its values are
//! updated (`-U`, `+U`) as rows enter and leave its frame; the output is a changelog (see
//! `changelog`).
//!
//! With `state.backend` = `rocksdb` both kinds keep their rows per partition key in RocksDB
//! behind a cache (`rocks`).
//!
//! - `exec`: the plan node.
//! - `stream`: one partition over an appending stream: holding rows, evaluating frames,
//!   snapshots and restore.
//! - `changelog`: one partition over a changelog.
//! - `rocks`: the state in RocksDB.

mod changelog;
mod exec;
mod rocks;
mod stream;

pub use exec::{ChangelogFrames, EventTimeFrames, OverAggregateExec, OverAggregation, OverOrder};
