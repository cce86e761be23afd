//! `TopNExec`: the first rows of each partition of a stream in an order, kept up to date as
//! rows come and go (Flink's `Rank` over a stream: top-N, deduplication, and a global
//! `ORDER BY ... LIMIT` over a stream).
//!
//! It replaces `ROW_NUMBER() OVER (PARTITION BY k ORDER BY x) AS rn ... WHERE rn <= N` (or
//! `rn < N`, `rn = 1`, `rn BETWEEN a AND b`), and `ORDER BY x LIMIT N` (one partition), over a
//! stream or a changelog. Its output is a changelog of the rows whose rank lies in the range:
//!
//! - without the rank column (it is not selected), a row entering the range is `+I`, a row
//!   leaving it `-D` (pushed out by a better row, or taken back and replaced by the next);
//! - with it, each rank whose row changed is `-U` of the old row and rank, `+U` of the new
//!   (`+I` / `-D` where a rank is filled or emptied), as Flink's `AppendOnlyTopNFunction` and
//!   `RetractableTopNFunction` emit.
//!
//! Changes are worked out per input batch: a batch's rows are applied to the partitions they
//! touch, then each touched partition's range is compared with what it was. Rows that tie in
//! the order rank in arrival order, except for deduplication keeping the last row (`rn = 1`
//! over `ORDER BY` a timestamp `DESC`), where the later of two rows with the same time wins, as
//! Flink's `RowTimeDeduplicateFunction` keeps it.
//!
//! State: over an input that only appends, each partition keeps only its first `rank_end` rows
//! (a row pushed out can never come back); over a changelog, every row not taken back (one
//! taken back from the range is replaced by the next). Like the regular join's, the output
//! carries no event time: its watermark stays back until the input ends. Except for a
//! deduplication keeping each key's last row by event time over rows that only append
//! (Flink's versioned view): each row it emits is an input row as it comes, so its output
//! keeps the input's event-time column and watermark, and a temporal join
//! (`FOR SYSTEM_TIME AS OF`) reads it as a versioned table.
//!
//! - `ranked`: one partition key's rows in rank order.
//! - `stream`: one partition: ranking, changes, snapshots and restore.
//! - `exec`: the plan node.

mod exec;
mod ranked;
mod stream;

pub use exec::{TopN, TopNExec};
