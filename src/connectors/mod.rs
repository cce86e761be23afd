//! Connectors: where rows come from and where they go.
//!
//! A connector is one folder (or file) behind two small traits. A [`SourceConnector`] is
//! planned once per table scan and opens one [`SourceReader`] per parallel partition; the
//! reader yields Arrow batches of the table's physical and metadata columns. Watermarks,
//! computed columns and barriers are *not* the connector's business: the
//! [`StreamSourceExec`](crate::physical::source::StreamSourceExec) adds them around any reader.
//! A [`SinkConnector`] opens one [`SinkWriter`] per input partition; writers make their output
//! visible at barriers and at the end of input.
//!
//! A connector is built from a table's declaration
//! ([`TableDefinition`](crate::catalog::table_definition::TableDefinition)) by [`registry`]; its
//! WITH options are checked by [`TableOptions`](crate::catalog::options::TableOptions): every
//! connector lists the keys it accepts, and an unknown or misspelled key is a plan error naming
//! the valid ones. Then each option is read once, while the table is declared, into the
//! connector's typed options (e.g. [`filesystem::FilesystemOptions`],
//! [`kafka::options::KafkaOptions`], [`format::FormatOptions`]): readers, writers, decoders and
//! encoders take those, never the raw map, so a bad value is an error of `CREATE TABLE`.

pub mod blackhole;
pub mod datagen;
pub mod filesystem;
pub mod format;
pub mod kafka;
pub mod memory;
pub mod nexmark;
pub mod print;
pub mod registry;
mod splitmix;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::Int8Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::memory_pool::MemoryPool;
use serde::{Deserialize, Serialize};

use crate::changelog::ChangelogMode;

/// Rows read by a source reader, tagged with the split (e.g. Kafka partition) they came from.
#[derive(Debug, Clone)]
pub struct SourceBatch {
    /// The rows, in the reader's projected schema.
    pub batch: RecordBatch,
    /// Index of the split within the reader, `0..num_splits()`.
    pub split: usize,
    /// The reader's position after these rows, for checkpoints (`None`: not resumable).
    pub position: Option<serde_json::Value>,
    /// What each row does, from a changelog format (`RowKind` numbers); `None`: inserts.
    pub kinds: Option<Int8Array>,
}

impl SourceBatch {
    /// Rows of split 0.
    pub fn new(batch: RecordBatch) -> Self {
        Self {
            batch,
            split: 0,
            position: None,
            kinds: None,
        }
    }

    /// Sets the reader position after these rows.
    pub fn with_position(mut self, position: serde_json::Value) -> Self {
        self.position = Some(position);
        self
    }

    /// Sets what each row does (a changelog format's kinds).
    pub fn with_kinds(mut self, kinds: Option<Int8Array>) -> Self {
        self.kinds = kinds;
        self
    }
}

/// A reader position saved in a checkpoint.
#[derive(Debug, Clone)]
pub struct SavedPosition {
    /// Reader partition that saved it.
    pub partition: usize,
    /// Partition count then.
    pub num_partitions: usize,
    /// The position (as in [`SourceBatch::position`]).
    pub position: serde_json::Value,
}

/// The saved position of reader `partition` of `num_partitions`, for readers whose positions
/// only make sense with the same partitioning; an error names `connector` otherwise.
pub fn same_partition_position<'a>(
    connector: &str,
    saved: &'a [SavedPosition],
    partition: usize,
    num_partitions: usize,
) -> Result<Option<&'a serde_json::Value>> {
    if let Some(other) = saved.iter().find(|s| s.num_partitions != num_partitions) {
        return datafusion::common::plan_err!(
            "a {connector} source checkpointed with {} partitions cannot resume with \
             {num_partitions}; restore it with the same parallelism",
            other.num_partitions
        );
    }
    Ok(saved
        .iter()
        .find(|s| s.partition == partition)
        .map(|s| &s.position))
}

/// Reads the rows of one parallel partition of a source.
#[async_trait]
pub trait SourceReader: Send {
    /// Number of independently ordered splits this reader interleaves; each gets its own
    /// watermark. 1 unless the reader reads several Kafka partitions.
    fn num_splits(&self) -> usize {
        1
    }

    /// The next batch, or `None` at the end of a bounded input.
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>>;

    /// Records that could not be decoded and were skipped so far.
    fn malformed_records(&self) -> u64 {
        0
    }

    /// Resumes reader `partition` of `num_partitions` after the positions of a checkpoint
    /// (those of every reader of the run that wrote it).
    fn restore(
        &mut self,
        partition: usize,
        num_partitions: usize,
        saved: &[SavedPosition],
    ) -> Result<()> {
        let _ = (partition, num_partitions, saved);
        datafusion::common::plan_err!(
            "this source cannot resume from a checkpoint; run the job without --state-dir"
        )
    }

    /// After [`restore`](Self::restore), the position it resumes from, as a batch would carry
    /// it: what a checkpoint taken before the reader hands over its first batch records, so
    /// that it does not forget where to resume (`None`: nothing to record).
    fn restored_position(&self) -> Option<serde_json::Value> {
        None
    }
}

/// A table's source side (see the module docs).
pub trait SourceConnector: Debug + Send + Sync {
    /// Connector name, e.g. `nexmark`.
    fn name(&self) -> &'static str;

    /// Physical and metadata columns the readers produce.
    fn schema(&self) -> SchemaRef;

    /// True if the input ends.
    fn is_bounded(&self) -> bool;

    /// What its rows are: appended rows, or a changelog (a changelog format such as
    /// `debezium-json`), whose batches carry their kinds ([`SourceBatch::kinds`]).
    fn changelog(&self) -> ChangelogMode {
        ChangelogMode::Append
    }

    /// The connector reading the same table live, if it has one: its rows now, then every
    /// change made to it (a memory table, read so by a materialized view's job).
    fn live(&self) -> Option<Arc<dyn SourceConnector>> {
        None
    }

    /// The rows `UPDATE` and `DELETE` change, if they can (a memory table's).
    fn memory_store(&self) -> Option<Arc<memory::MemoryStore>> {
        None
    }

    /// Number of parallel readers, given the session's parallelism (a Kafka source asks its
    /// brokers, which may fail).
    fn num_partitions(&self, parallelism: usize) -> Result<usize>;

    /// Opens reader `partition` of `num_partitions`, producing the columns `projection` of
    /// [`schema`](Self::schema) (in that order) in batches of at most `batch_size` rows.
    fn open(
        &self,
        partition: usize,
        num_partitions: usize,
        projection: &[usize],
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>>;

    /// Parameters shown by EXPLAIN, e.g. `path=/data/bids.json, format=json`.
    fn explain(&self) -> String;
}

/// Writes the rows of one input partition of a sink.
#[async_trait]
pub trait SinkWriter: Send {
    /// Writes rows (in the sink table's schema).
    async fn write(&mut self, batch: &RecordBatch) -> Result<()>;

    /// Writes changelog rows: `kinds` says what each does (`RowKind` numbers: `+I`, `-U`, `+U`,
    /// `-D`). Only called on sinks whose connector [accepts
    /// changes](SinkConnector::accepts_changes).
    async fn write_changes(&mut self, _batch: &RecordBatch, _kinds: &Int8Array) -> Result<()> {
        datafusion::common::internal_err!("this sink cannot write changelog rows")
    }

    /// Barrier `epoch` passed: make everything written so far durable and return how to make
    /// it visible (a pre-commit, `Null` for nothing), applied by
    /// [`SinkConnector::commit`] once the checkpoint is complete. When the next barrier (or
    /// [`finish`](Self::finish)) comes, the previous checkpoint has completed, with its
    /// commits applied, or was aborted.
    async fn on_barrier(&mut self, epoch: u64) -> Result<serde_json::Value>;

    /// End of input: flush, close, and return the last pre-commit.
    async fn finish(&mut self) -> Result<serde_json::Value>;

    /// The memory pool of the writing job's session: a writer that keeps rows in this
    /// process (a memory table, a materialized view) reserves them there, so that a view
    /// outgrowing the memory limit fails its job instead of the process.
    fn reserve_in(&mut self, pool: &Arc<dyn MemoryPool>) {
        let _ = pool;
    }
}

/// What a sink partition checkpoints (its `meta` in the manifest): a JSON array of every
/// pre-commit of its writer not known to be committed yet (those of aborted checkpoints too),
/// oldest first. Written by [`StreamSinkExec`](crate::physical::sink::StreamSinkExec), applied
/// by the checkpoint's sink commits and read back on recovery.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SinkMeta {
    /// The pre-commits (as [`SinkWriter::on_barrier`] returned them, never `Null`).
    pub pre_commits: Vec<serde_json::Value>,
}

/// A table's sink side (see the module docs).
pub trait SinkConnector: Debug + Send + Sync {
    /// Connector name, e.g. `print`.
    fn name(&self) -> &'static str;

    /// True if it takes the changelog of an updating query (inserts, updates, deletes);
    /// otherwise the planner refuses an updating query into it.
    fn accepts_changes(&self) -> bool {
        false
    }

    /// Opens the writer of input partition `partition` of `num_partitions`.
    fn open_writer(
        &self,
        schema: SchemaRef,
        partition: usize,
        num_partitions: usize,
    ) -> Result<Box<dyn SinkWriter>>;

    /// Makes a writer's pre-commit visible. Must be idempotent: recovery re-applies the
    /// commits of the checkpoint it restores.
    fn commit(&self, pre_commit: &serde_json::Value) -> Result<()> {
        let _ = pre_commit;
        Ok(())
    }

    /// Takes back a pre-commit of a damaged checkpoint that recovery skips, to resume from an
    /// older one: its rows will be written again. `Ok` once nothing of it is published (or
    /// nothing was); an error when it cannot be taken back. Must be idempotent.
    fn uncommit(&self, pre_commit: &serde_json::Value) -> Result<()> {
        if pre_commit.is_null() {
            return Ok(());
        }
        datafusion::common::plan_err!(
            "the {} sink cannot take back output it published",
            self.name()
        )
    }

    /// Which pre-commits of a crashed run's newest checkpoint were committed, for sinks whose
    /// commits cannot be re-applied by another process (Kafka transactions): one entry per
    /// pre-commit, `Some(false)` if its output is lost (recovery must then restore an older
    /// checkpoint), `None` where it cannot tell or it does not apply.
    fn committed(&self, pre_commits: &[&serde_json::Value]) -> Result<Vec<Option<bool>>> {
        Ok(vec![None; pre_commits.len()])
    }

    /// The job writing into this table failed with `error`. A table that is read as a
    /// job's result (a materialized view) answers its readers with the error from then on;
    /// other sinks ignore it.
    fn job_failed(&self, error: &crate::error::SqlStateError) {
        let _ = error;
    }

    /// True once every writer of the table passed checkpoint barrier `epoch`, so that the
    /// table holds everything its job wrote before it (a memory table: `FLUSH` waits for
    /// it); other sinks say true.
    fn passed_barrier(&self, epoch: u64) -> bool {
        let _ = epoch;
        true
    }

    /// Parameters shown by EXPLAIN.
    fn explain(&self) -> String;
}
