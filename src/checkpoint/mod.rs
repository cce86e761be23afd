//! Barrier-aligned checkpoints and recovery.
//!
//! - [`coordinator`]: starts checkpoints, collects the participants' snapshots, writes the
//!   manifest, commits sinks, aborts what times out, and restores on start.
//! - [`sinks`]: the participants of a checkpoint (stateful operators and sinks), sink commits
//!   after the manifest, and on recovery the check for sink output a
//!   crash lost (Kafka transactions left in doubt).
//! - [`manifest`]: the manifest format.
//! - [`store`]: the checkpoint location (`object_store`), checksums, recovery choice, GC.
//! - [`failpoint`]: crashes at chosen protocol steps, for tests.

pub mod coordinator;
pub mod failpoint;
pub mod manifest;
mod sinks;
pub mod store;
