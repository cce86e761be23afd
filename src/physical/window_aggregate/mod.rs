//! `WindowAggregateExec`: TUMBLE and HOP aggregation, one row per key and window.
//!
//! - [`definition`]: what the aggregation computes, as the planner built it.
//! - [`exec`]: the plan node, its distribution (hash of the group keys), its state backend
//!   and EXPLAIN line.
//! - [`slices`]: the state, slices of `gcd(size, slide)` ms each holding a DataFusion group
//!   table, and how windows are assembled from them.
//! - [`rocks_slices`]: the same slices in RocksDB (`state.backend` = `rocksdb`).
//! - [`stream`]: the per-partition loop over data, watermarks and barriers.
//! - [`session`]: SESSION windows, which merge per key and so keep rows, not slices.
//! - [`checkpoint`]: what both streams share to snapshot and restore their state.
//!
//! **Semantics.** A row with event time `t` belongs to the slice `[s, s + slice)` containing
//! it. It is *late* (dropped and counted) if every window containing its slice has already
//! fired, judged against the watermark in force just before the row arrived. A HOP row whose
//! earliest windows fired but not its latest counts in those that have not fired (Flink's
//! window table functions): the windows its watermark passed fire first, then the row joins
//! its slice. A window `[start, end)` fires once, when the watermark reaches `end - 1`; its
//! row carries the final values. TUMBLE slices are whole windows and are finished directly;
//! HOP slices are frozen into partial aggregate state once their earliest window fires and
//! merged into each window that contains them, so a row costs one update however many windows
//! it is in.
//!
//! **State.** Open and frozen slices with their keys and accumulators. A slice is freed when
//! the last window containing it has fired, so state is bounded by the window size plus the
//! watermark delay, per key.
//!
//! **Barriers** are forwarded in order, after the partition's state (slices, or the rows of open
//! sessions) is handed to the checkpoint coordinator; **watermarks** are forwarded after the
//! windows they fire.

mod definition;
mod exec;
mod rocks_slices;
mod session;
mod slices;
mod stream;

pub use definition::WindowAggregation;
pub use exec::WindowAggregateExec;
