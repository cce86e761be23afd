//! Writing rows to a Kafka topic (see the module docs of [`super`]).
//!
//! With `exactly-once`, each writer owns one transactional producer (transactional id
//! `<prefix>-<writer>`). A barrier flushes the open transaction and returns it as the
//! pre-commit; the transaction is committed by [`KafkaSink`]'s `commit` once the checkpoint's
//! manifest is durable. Rows that arrive while a transaction waits for its commit are held in
//! memory and sent in the next transaction, so one transaction never holds rows of two
//! checkpoints. The coordinator starts no checkpoint while another completes, so at the next
//! barrier the waiting transaction is either committed or its checkpoint was aborted; then the
//! held rows join it and it is pre-committed again with the new barrier.
//! A restarted job re-initialises the same transactional ids, which fences the crashed run's
//! producers and aborts what they left open.
//!
//! - [`connector`]: the table's sink side, which opens writers and commits their transactions;
//! - [`writer`]: one input partition's producer and its transaction;
//! - [`transaction`]: a writer's phase and its checkpointed pre-commit;
//! - [`recovery`]: whether a transaction left in doubt by a crash was committed;
//! - [`deliveries`]: the producer's delivery reports;
//! - [`encoder`]: one record per row.

use datafusion::common::DataFusionError;

mod connector;
mod deliveries;
mod encoder;
mod recovery;
mod transaction;
mod writer;

pub use connector::KafkaSink;

/// The error of a lock whose holder panicked.
fn poisoned() -> DataFusionError {
    DataFusionError::Internal("Kafka transaction lock poisoned".into())
}
