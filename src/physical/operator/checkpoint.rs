//! What every stateful operator (TUMBLE/HOP, SESSION, the stream-stream joins) shares for
//! checkpoints: handing a partition's state to the coordinator at a barrier and at the end, and
//! choosing the saved state to restore (re-keyed when the parallelism changed).

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, plan_err};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::checkpoint::coordinator::{
    Checkpointing, RestoredPartition, StateFile, UploadedFiles, sanitize,
};
use crate::checkpoint::manifest::{SHARED_DIR, checkpoint_dir};
use crate::physical::job_context::JobContext;
use crate::physical::message::NO_WATERMARK;
use crate::state::redistribute::rows_of_partition;
use crate::state::rocks::StateDb;

/// One partition of a stateful operator under a checkpointing job.
pub struct OperatorCheckpoint {
    coordinator: Arc<Checkpointing>,
    operator: String,
    partition: usize,
    partitions: usize,
    ended: bool,
    /// RocksDB files uploaded so far, shared by later checkpoints.
    uploaded: UploadedFiles,
}

/// The saved partitions this partition restores from.
pub struct Restored<'a> {
    /// Saved at the same parallelism: only this partition's own state.
    same: bool,
    mine: Vec<&'a RestoredPartition>,
}

impl OperatorCheckpoint {
    /// `None` unless the job checkpoints.
    pub fn open(
        exec: &dyn ExecutionPlan,
        context: &Arc<TaskContext>,
        partition: usize,
    ) -> Option<Self> {
        let job = JobContext::of(context)?;
        Some(Self {
            coordinator: Arc::clone(job.checkpointing()?),
            operator: job.operator_id(exec)?.to_string(),
            partition,
            partitions: exec.properties().partitioning.partition_count(),
            ended: false,
            uploaded: UploadedFiles::default(),
        })
    }

    /// Hands the state (`batches`, possibly none) and `meta` of barrier `epoch` over.
    pub fn snapshot<M: Serialize>(
        &self,
        epoch: u64,
        meta: &M,
        batches: Vec<RecordBatch>,
    ) -> Result<()> {
        let meta = to_json(meta)?;
        let state = batches.first().map(|b| b.schema()).map(|s| (s, batches));
        self.coordinator.snapshot(
            epoch,
            &self.operator,
            self.partition,
            self.partitions,
            meta,
            state,
        )
    }

    /// Checkpoints `db` (RocksDB's checkpoint API, staged next to it) and hands its files and
    /// `meta` of barrier `epoch` over. SST files are immutable: each is uploaded once, to
    /// `shared/`, and referenced by every later checkpoint that still contains it; the other
    /// files go to the checkpoint's directory.
    pub fn snapshot_db<M: Serialize>(&self, epoch: u64, meta: &M, db: &StateDb) -> Result<()> {
        let meta = to_json(meta)?;
        let staged = db.staging_dir(epoch);
        // Left over from an aborted checkpoint of a crashed run.
        let _ = std::fs::remove_dir_all(&staged);
        let files = db.checkpoint(&staged)?;
        let instance = db.instance();
        let base = format!("{}-{}", sanitize(&self.operator), self.partition);
        let uploaded = self.uploaded.lock().map(|u| u.clone()).unwrap_or_default();
        let files = files
            .into_iter()
            .map(|local| {
                let name = local
                    .file_name()
                    .map(|n| n.to_string_lossy().to_string())
                    .unwrap_or_default();
                if name.ends_with(".sst") {
                    StateFile {
                        remote: format!("{SHARED_DIR}/{base}-{instance}/{name}"),
                        uploaded: uploaded.get(&name).cloned(),
                        local,
                    }
                } else {
                    StateFile {
                        remote: format!("{}/{base}.rocksdb/{name}", checkpoint_dir(epoch)),
                        uploaded: None,
                        local,
                    }
                }
            })
            .collect();
        self.coordinator.snapshot_files(
            epoch,
            &self.operator,
            self.partition,
            self.partitions,
            meta,
            files,
            staged,
            std::sync::Arc::clone(&self.uploaded),
        )
    }

    /// A restored RocksDB checkpoint was adopted as this partition's database: its SST files
    /// (named as in `restored`) are already uploaded.
    pub fn adopted(&self, restored: &RestoredPartition) {
        if let Ok(mut uploaded) = self.uploaded.lock() {
            for entry in &restored.db_files {
                if let Some(name) = entry.path.rsplit('/').next()
                    && name.ends_with(".sst")
                {
                    uploaded.insert(name.to_string(), entry.clone());
                }
            }
        }
    }

    /// The input ended: later checkpoints use `meta` for this partition.
    pub fn finish<M: Serialize>(&mut self, meta: &M) -> Result<()> {
        let meta = to_json(meta)?;
        if !self.ended {
            self.ended = true;
            self.coordinator
                .finished(&self.operator, self.partition, self.partitions, meta);
        }
        Ok(())
    }

    /// The saved state to restore, if the job resumes from a checkpoint.
    pub fn restored(&self) -> Option<Restored<'_>> {
        let saved = self.coordinator.restored(&self.operator)?;
        let same = saved.iter().all(|p| p.num_partitions == self.partitions);
        let mine = saved
            .iter()
            .filter(|p| !same || p.partition == self.partition)
            .collect();
        Some(Restored { same, mine })
    }

    /// The rows of the restored batches this partition owns: all of its own at the same
    /// parallelism, otherwise those whose `key_columns` hash to it (as the exchange routes).
    pub fn batches(
        &self,
        restored: &Restored<'_>,
        key_columns: Range<usize>,
    ) -> Result<Vec<RecordBatch>> {
        self.batches_by(restored, |batch| {
            Ok(batch.columns()[key_columns.clone()].to_vec())
        })
    }

    /// Like [`Self::batches`], with the routing keys of a batch computed by `keys`.
    pub fn batches_by(
        &self,
        restored: &Restored<'_>,
        keys: impl Fn(&RecordBatch) -> Result<Vec<ArrayRef>>,
    ) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        for p in &restored.mine {
            for batch in &p.batches {
                batches.push(if restored.same {
                    batch.clone()
                } else {
                    rows_of_partition(batch, &keys(batch)?, self.partition, self.partitions)?
                });
            }
        }
        Ok(batches)
    }
}

/// The RocksDB databases a partition restores from (see [`Restored::databases`]).
pub enum RestoredDatabases<'a> {
    /// None: the checkpoint holds no RocksDB state.
    None,
    /// Saved at the same parallelism: this partition's own database, to adopt.
    Own(&'a RestoredPartition, &'a Path),
    /// Saved at another parallelism: every database, to re-key.
    Others(Vec<&'a Path>),
}

impl<'a> Restored<'a> {
    /// The restored RocksDB databases; an error if there are some and this job does not keep
    /// its state in RocksDB (`rocksdb` false).
    pub fn databases(&self, rocksdb: bool) -> Result<RestoredDatabases<'a>> {
        let saved: Vec<(&'a RestoredPartition, &'a Path)> = self
            .mine
            .iter()
            .filter_map(|p| p.db_dir.as_deref().map(|d| (*p, d)))
            .collect();
        if saved.is_empty() {
            return Ok(RestoredDatabases::None);
        }
        if !rocksdb {
            return plan_err!(
                "the checkpoint to resume was written with 'state.backend' = 'rocksdb'; set it \
                 again to resume the job"
            );
        }
        Ok(match saved.as_slice() {
            [(own, dir)] if self.same => RestoredDatabases::Own(own, dir),
            _ => RestoredDatabases::Others(saved.into_iter().map(|(_, d)| d).collect()),
        })
    }

    /// The saved partitions restored from.
    pub fn partitions(&self) -> &[&'a RestoredPartition] {
        &self.mine
    }

    /// The metadata of every partition restored from, as the operator's type `M`; an error
    /// naming `what` if one does not read as `M`.
    pub fn metas<M: DeserializeOwned>(&self, what: &str) -> Result<Vec<M>> {
        self.mine.iter().map(|p| p.meta(what)).collect()
    }
}

/// Checkpoint metadata as JSON, the manifest's format for it.
fn to_json<M: Serialize>(meta: &M) -> Result<serde_json::Value> {
    serde_json::to_value(meta)
        .map_err(|e| datafusion::common::exec_datafusion_err!("checkpoint metadata: {e}"))
}

/// The smallest of `watermarks` (the most conservative when partitions merge), `default` if
/// there are none.
pub fn min_watermark(watermarks: impl IntoIterator<Item = i64>, default: i64) -> i64 {
    watermarks.into_iter().min().unwrap_or(default)
}

/// What an operator records in a checkpoint when its rows are all its state but for its inputs'
/// watermarks (`{"watermarks": [...]}`).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct InputWatermarks {
    /// Each input's watermark.
    watermarks: Vec<i64>,
}

impl InputWatermarks {
    /// The inputs' watermarks now.
    pub fn of(watermarks: &super::Watermarks<'_>) -> Self {
        Self {
            watermarks: watermarks.inputs().to_vec(),
        }
    }

    /// Per input of `inputs`, the smallest watermark `metas` (one per restored partition)
    /// recorded.
    pub fn restored(metas: &[Self], inputs: usize) -> Vec<i64> {
        min_input_watermarks(metas.iter().map(|m| m.watermarks.as_slice()), inputs)
    }
}

/// What an operator records whose state numbers its rows as they arrive, and whose snapshot
/// in RocksDB does not list them: its inputs' watermarks and the next arrival number (absent
/// from checkpoints written before it was recorded), so that rows arriving after a restore are
/// numbered after the restored ones.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct ArrivalsMeta {
    #[serde(flatten)]
    pub inputs: InputWatermarks,
    #[serde(default)]
    pub arrived: u64,
}

impl ArrivalsMeta {
    /// The inputs' watermarks now, and the next arrival number `arrived`.
    pub fn of(watermarks: &super::Watermarks<'_>, arrived: u64) -> Self {
        Self {
            inputs: InputWatermarks::of(watermarks),
            arrived,
        }
    }

    /// Per input of `inputs`, the smallest watermark `metas` recorded, and the largest next
    /// arrival number.
    pub fn restored(metas: Vec<Self>, inputs: usize) -> (Vec<i64>, u64) {
        let arrived = metas.iter().map(|m| m.arrived).max().unwrap_or(0);
        let metas: Vec<InputWatermarks> = metas.into_iter().map(|m| m.inputs).collect();
        (InputWatermarks::restored(&metas, inputs), arrived)
    }
}

/// Per input, the smallest of the restored partitions' watermarks of that input (a partition
/// that recorded none counts as [`NO_WATERMARK`]); [`NO_WATERMARK`] with no partitions.
pub fn min_input_watermarks<'a>(
    partitions: impl Iterator<Item = &'a [i64]> + Clone,
    inputs: usize,
) -> Vec<i64> {
    (0..inputs)
        .map(|input| {
            let of_input = partitions
                .clone()
                .map(|w| w.get(input).copied().unwrap_or(NO_WATERMARK));
            min_watermark(of_input, NO_WATERMARK)
        })
        .collect()
}

/// Marks the metadata of state kept in RocksDB (`"backend": "rocksdb"`), for people and tools
/// reading a manifest; the database's files are the state itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SavedBackend {
    /// The state is a RocksDB checkpoint.
    Rocksdb,
}
