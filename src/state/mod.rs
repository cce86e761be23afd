//! Operator state in checkpoints.
//!
//! Operators keep their state in memory as DataFusion structures (group values and
//! accumulators) and, at a barrier, turn it into Arrow record batches: accumulators through
//! `GroupsAccumulator::state`, restored through `merge_batch`, so every aggregate function is
//! restorable. [`snapshot`] encodes those batches as Arrow IPC for the checkpoint store, and
//! [`redistribute`] picks the rows of a restored keyed state that belong to a partition when a
//! job restarts with a different parallelism. With `state.backend` = `rocksdb`, TUMBLE and HOP
//! window state lives in a [`rocks::StateDb`] on local disk instead, checkpointed with RocksDB's
//! checkpoint API. [`backend`] is where each stateful operator's state lives, chosen when the
//! physical plan is built.

pub mod backend;
pub mod keyed_db;
pub mod redistribute;
pub mod rocks;
pub mod snapshot;
pub mod ttl;
