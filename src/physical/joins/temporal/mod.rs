//! `TemporalJoinExec`: an event-time temporal join (Flink's
//! `JOIN versioned FOR SYSTEM_TIME AS OF probe.ts ON probe.k = versioned.k`).
//!
//! Each probe row is joined with the row its key had in the versioned table at the probe row's
//! time: the versioned side is a changelog (an upsert source, a deduplicating view) or an
//! appending stream, each of its rows a version of its join key valid from its event time
//! until the next version; a `-D` ends the key's row. As Flink's `TemporalRowTimeJoinOperator`:
//!
//! - probe rows wait until the watermark of *both* inputs passes their time, so every version
//!   that could be valid then has come; then each meets the latest version of its key at or
//!   before its time (and the rest of the ON condition). INNER drops a probe row without one,
//!   LEFT pads it with NULLs. Probe rows come out in the order they arrived; their kind (a
//!   probe changelog's `-U`, `+U`, `-D`) is kept, so a probe side that only appends gives an
//!   output that only appends;
//! - a probe row that arrives behind the watermark is joined at once with the versions held.
//!   So does a retraction (`-U`, `-D`) of a probe changelog, which carries its row's old
//!   time: once the watermark passed that time, the versions it met may be pruned, and it
//!   meets the latest one held (or none): as in Flink, such a retraction may not take back
//!   exactly the row the insert gave;
//! - state: the waiting probe rows, and per key the versions later probe rows can still reach:
//!   the latest one at or before the watermark and those after it. It grows with the number
//!   of keys of the versioned table, not with time;
//! - the output's watermark is the smaller of the inputs'; its event-time column is the probe
//!   side's (the versioned side's time column becomes an ordinary column, as in Flink). An
//!   idle input does not hold the watermark back (Flink combines two inputs' watermarks so):
//!   a versioned table that rarely changes, read with `scan.watermark.idle-timeout`, lets the
//!   probe rows through on the probe side's watermark alone.
//!
//! The versions of a key are its join key's: the ON condition must pair the versioned table's
//! primary key (as Flink requires), and versions are kept per value of the join key.
//!
//! - `exec`: the plan node, found by the `FOR SYSTEM_TIME AS OF` marker in a join's filter.
//! - [`marker`]: reading the marker off a join's filter.
//! - `stream`: one partition: waiting, joining, pruning, snapshots and restore.
//! - [`versions`]: the versioned table of a partition.

mod exec;
mod marker;
mod stream;
mod versions;

pub use exec::TemporalJoinExec;
pub use marker::{SystemTimeMarker, system_time_marker};
