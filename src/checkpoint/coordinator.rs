//! The checkpoint coordinator of one job.
//!
//! 1. Every `checkpoint.interval` the job's barrier timer asks [`Checkpointing::begin`] whether
//!    a checkpoint may start (one at a time; one that outlives `checkpoint.timeout` is aborted)
//!    and injects barrier N at every source partition.
//! 2. Each participant (source partitions, window operators, sink writers) hands its snapshot
//!    for N to [`Checkpointing::snapshot`] when the barrier passes it: small state as JSON
//!    metadata, large state as Arrow batches written to the store as one IPC file. Participants
//!    whose input has ended are [`finished`](Checkpointing::finished) and count as having
//!    acknowledged every later checkpoint with their final snapshot.
//! 3. When every participant partition has acknowledged N, the manifest is written (atomically,
//!    last), then the sinks commit what they pre-committed at barrier N, then old checkpoints
//!    are garbage-collected. A failed upload or manifest write aborts N; it never becomes the
//!    latest checkpoint and its files are deleted.
//! 4. At the end of a bounded job, [`Checkpointing::finish_job`] writes a final manifest marked
//!    `finished` that carries the sinks' last pre-commits, then commits them.
//!
//! Recovery ([`Checkpointing::open`]) picks the newest intact checkpoint, loads every state
//! file, verifies its checksum, and re-applies the sink commits of that checkpoint (commits
//! are idempotent), so a crash between manifest and commit loses nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;

use super::failpoint::{self, Failpoint};
use super::manifest::{FileEntry, MANIFEST_FORMAT, Manifest, PartitionSnapshot};
use super::sinks;
pub use super::sinks::Participant;
use super::store::CheckpointStore;
use crate::state::snapshot;

/// Checkpoint settings of a job.
#[derive(Debug, Clone)]
pub struct CheckpointConfig {
    /// `state.dir`: where checkpoints go.
    pub location: String,
    /// `checkpoint.retained`: complete checkpoints kept.
    pub retained: usize,
    /// `checkpoint.timeout`: a checkpoint not complete by then is aborted.
    pub timeout: Duration,
    /// Local directory where restored RocksDB checkpoints are downloaded
    /// (`state.backend.rocksdb.localdir`).
    pub local_dir: std::path::PathBuf,
}

/// The restored snapshot of one partition of an operator.
#[derive(Debug, Clone)]
pub struct RestoredPartition {
    /// Partition that wrote it.
    pub partition: usize,
    /// Partition count of the operator then.
    pub num_partitions: usize,
    /// Its metadata.
    pub meta: serde_json::Value,
    /// Its state batches.
    pub batches: Vec<RecordBatch>,
    /// Its RocksDB checkpoint, downloaded into this local directory.
    pub db_dir: Option<std::path::PathBuf>,
    /// The manifest's entries of those files.
    pub db_files: Vec<FileEntry>,
}

impl RestoredPartition {
    /// Its metadata, as the operator's own type `M` (what it wrote with `serde`); an error
    /// naming `what` if it does not read as one: written by another version, or damaged.
    pub fn meta<M: serde::de::DeserializeOwned>(&self, what: &str) -> Result<M> {
        M::deserialize(&self.meta).map_err(|e| {
            datafusion::common::exec_datafusion_err!(
                "the checkpointed {what} state of partition {} does not read as this version \
                 writes it ({e}); it was written by another version",
                self.partition
            )
        })
    }
}

/// A file of a RocksDB checkpoint to upload (see [`Checkpointing::snapshot_files`]).
#[derive(Debug, Clone)]
pub struct StateFile {
    /// Where it is now.
    pub local: std::path::PathBuf,
    /// Where it goes, relative to the store root.
    pub remote: String,
    /// Already uploaded by an earlier checkpoint (an immutable SST file): its entry.
    pub uploaded: Option<FileEntry>,
}

/// Files an operator partition uploaded, by local file name, for later checkpoints to share.
pub type UploadedFiles = Arc<Mutex<HashMap<String, FileEntry>>>;

#[derive(Debug)]
struct Pending {
    started: Instant,
    snapshots: BTreeMap<String, BTreeMap<usize, PartitionSnapshot>>,
    /// Every participant acknowledged; the manifest and sink commits are being written. The
    /// checkpoint stays pending until that ends, so the next barrier never overtakes a commit.
    completing: bool,
}

/// The coordinator (see the module docs).
#[derive(Debug)]
pub struct Checkpointing {
    store: CheckpointStore,
    job: String,
    config: CheckpointConfig,
    participants: Vec<Participant>,
    restored_epoch: u64,
    restored: HashMap<String, Vec<RestoredPartition>>,
    pending: Mutex<BTreeMap<u64, Pending>>,
    /// Final snapshots of partitions whose input ended, each with the last epoch the
    /// partition snapshotted before: it stands in only for later checkpoints.
    finished: Mutex<BTreeMap<String, BTreeMap<usize, FinishedPartition>>>,
    /// The last epoch each operator partition handed a snapshot over for.
    handed: Mutex<HashMap<(String, usize), u64>>,
    /// Snapshots handed over and not yet acknowledged (being encoded or uploaded).
    uploads: Arc<std::sync::atomic::AtomicUsize>,
    completing: tokio::sync::Mutex<()>,
    latest: AtomicU64,
    completed: tokio::sync::watch::Sender<u64>,
    history: Mutex<Vec<CheckpointStats>>,
    metrics: OnceLock<Arc<crate::metrics::JobSeries>>,
    /// Where restored RocksDB checkpoints were downloaded; removed with the coordinator.
    restore_dir: Option<std::path::PathBuf>,
}

impl Drop for Checkpointing {
    fn drop(&mut self) {
        if let Some(dir) = &self.restore_dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// What one completed checkpoint took.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct CheckpointStats {
    /// The checkpoint.
    pub epoch: u64,
    /// From barrier injection to its sink commits (or to the manifest for the final one).
    pub duration_ms: f64,
    /// Bytes of state files.
    pub state_bytes: u64,
}

/// What [`Checkpointing::open`] found.
pub enum Opened {
    /// Run the job (from a restored checkpoint or from the start).
    Run(Arc<Checkpointing>),
    /// The job already finished in an earlier run; its output is committed.
    AlreadyFinished {
        /// Epoch of the final checkpoint.
        epoch: u64,
    },
}

impl Checkpointing {
    /// Opens the checkpoint store of job `job` with `participants`, restoring the newest
    /// intact checkpoint if there is one.
    pub async fn open(
        config: CheckpointConfig,
        job: String,
        participants: Vec<Participant>,
    ) -> Result<Opened> {
        let store = CheckpointStore::open(&config.location)?;
        let recovery = sinks::recover_committed(&store, &job, &participants).await?;
        let mut restored = HashMap::new();
        let mut restored_epoch = 0;
        let mut restore_dir = None;
        if let Some(recovery) = recovery {
            for skipped in &recovery.skipped {
                log::warn!("skipped a damaged checkpoint: {skipped}");
                eprintln!("warning: skipped a damaged checkpoint: {skipped}");
            }
            let manifest = recovery.manifest;
            restored_epoch = manifest.epoch;
            // What the skipped checkpoints published is written again from the restored one.
            sinks::take_back(&participants, &recovery.skipped, restored_epoch).await?;
            // Commits are idempotent: what the crashed run may not have committed is now.
            sinks::commit_sinks(&participants, &manifest.operators, None)?;
            if manifest.finished {
                return Ok(Opened::AlreadyFinished {
                    epoch: manifest.epoch,
                });
            }
            for (operator, partitions) in &manifest.operators {
                let mut list = Vec::with_capacity(partitions.len());
                for p in partitions {
                    let batches = match &p.file {
                        Some(file) => {
                            let bytes = store.read_state(file).await?;
                            snapshot::decode(&bytes, &file.path)?
                        }
                        None => vec![],
                    };
                    let db_dir = if p.files.is_empty() {
                        None
                    } else {
                        let root = restore_dir.get_or_insert_with(|| {
                            config
                                .local_dir
                                .join(crate::state::rocks::StateDb::new_instance_name(&format!(
                                    "restore-{}",
                                    manifest.epoch
                                )))
                        });
                        let dir = root.join(format!("{}-{}", sanitize(operator), p.partition));
                        download(&store, &p.files, &dir).await?;
                        Some(dir)
                    };
                    list.push(RestoredPartition {
                        partition: p.partition,
                        num_partitions: p.num_partitions,
                        meta: p.meta.clone(),
                        batches,
                        db_dir,
                        db_files: p.files.clone(),
                    });
                }
                restored.insert(operator.clone(), list);
            }
            for p in &participants {
                if !restored.contains_key(&p.operator) {
                    return datafusion::common::plan_err!(
                        "checkpoint {restored_epoch} in '{}' has no state for operator {}: the \
                         plan changed since it was written; use another --state-dir",
                        config.location,
                        p.operator
                    );
                }
            }
        }
        let (completed, _) = tokio::sync::watch::channel(restored_epoch);
        Ok(Opened::Run(Arc::new(Self {
            store,
            job,
            config,
            participants,
            restored_epoch,
            restored,
            pending: Mutex::new(BTreeMap::new()),
            finished: Mutex::new(BTreeMap::new()),
            handed: Mutex::new(HashMap::new()),
            uploads: Arc::default(),
            completing: tokio::sync::Mutex::new(()),
            latest: AtomicU64::new(restored_epoch),
            history: Mutex::new(Vec::new()),
            metrics: OnceLock::new(),
            completed,
            restore_dir,
        })))
    }

    /// Epoch of the restored checkpoint (0: started from scratch).
    pub fn restored_epoch(&self) -> u64 {
        self.restored_epoch
    }

    /// Restored snapshots of `operator` (all partitions of the run that wrote them).
    pub fn restored(&self, operator: &str) -> Option<&[RestoredPartition]> {
        self.restored.get(operator).map(|v| v.as_slice())
    }

    /// Newest complete checkpoint.
    pub fn latest(&self) -> u64 {
        self.latest.load(Ordering::SeqCst)
    }

    /// A receiver of completed checkpoint epochs.
    pub fn completed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.completed.subscribe()
    }

    fn record(&self, epoch: u64, started: Instant, state_bytes: u64) {
        let seconds = started.elapsed().as_secs_f64();
        if let Some(metrics) = self.metrics.get() {
            metrics.checkpoint_completed(seconds, state_bytes);
        }
        if let Ok(mut history) = self.history.lock() {
            history.push(CheckpointStats {
                epoch,
                duration_ms: seconds * 1000.0,
                state_bytes,
            });
        }
    }

    /// Where completed checkpoints are reported, besides [`history`](Self::history).
    pub fn set_metrics(&self, metrics: Arc<crate::metrics::JobSeries>) {
        let _ = self.metrics.set(metrics);
    }

    /// Completed checkpoints of this run, oldest first.
    pub fn history(&self) -> Vec<CheckpointStats> {
        self.history.lock().map(|h| h.clone()).unwrap_or_default()
    }

    /// Waits until no checkpoint up to `epoch` is completing, and none up to `epoch` waits
    /// for acknowledgements (it completes, fails or times out), so a sink that passed barrier
    /// `epoch` knows whether its pre-commits were committed. `u64::MAX`: only completions.
    pub async fn wait_resolved(&self, epoch: u64) {
        loop {
            let busy = match self.pending.lock() {
                Ok(p) => p.iter().any(|(e, p)| {
                    if epoch == u64::MAX {
                        p.completing
                    } else {
                        *e <= epoch && (p.completing || p.started.elapsed() <= self.config.timeout)
                    }
                }),
                Err(_) => false,
            };
            if !busy {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Aborts checkpoints older than the timeout; true if checkpoint `epoch` may start now.
    pub fn begin(self: &Arc<Self>, epoch: u64) -> bool {
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        let expired: Vec<u64> = pending
            .iter()
            .filter(|(_, p)| !p.completing && p.started.elapsed() > self.config.timeout)
            .map(|(e, _)| *e)
            .collect();
        for e in expired {
            pending.remove(&e);
            log::warn!(
                "checkpoint {e} did not complete within {:?} and was aborted",
                self.config.timeout
            );
            self.delete_later(e);
        }
        if !pending.is_empty() {
            return false;
        }
        pending.insert(
            epoch,
            Pending {
                started: Instant::now(),
                snapshots: BTreeMap::new(),
                completing: false,
            },
        );
        true
    }

    fn delete_later(self: &Arc<Self>, epoch: u64) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            if let Err(e) = this.store.delete_checkpoint(epoch).await {
                log::warn!("cannot delete aborted checkpoint {epoch}: {e}");
            }
        });
    }

    fn abort(self: &Arc<Self>, epoch: u64, why: &str) {
        if let Ok(mut pending) = self.pending.lock()
            && pending.remove(&epoch).is_some()
        {
            log::warn!("checkpoint {epoch} aborted: {why}");
            eprintln!("warning: checkpoint {epoch} aborted: {why}");
            self.delete_later(epoch);
        }
    }

    /// Hands over the snapshot of `operator`'s `partition` for checkpoint `epoch`: `meta`
    /// and optionally `state` batches (encoded now, uploaded in the background).
    pub fn snapshot(
        self: &Arc<Self>,
        epoch: u64,
        operator: &str,
        partition: usize,
        num_partitions: usize,
        meta: serde_json::Value,
        state: Option<(SchemaRef, Vec<RecordBatch>)>,
    ) -> Result<()> {
        let guard = self.hand_over(operator, partition, epoch);
        let encoded = match &state {
            Some((schema, batches)) => Some(snapshot::encode(schema, batches)?),
            None => None,
        };
        failpoint::check(Failpoint::AfterOperatorSnapshot, epoch);
        let this = Arc::clone(self);
        let operator = operator.to_string();
        tokio::spawn(async move {
            let _guard = guard;
            let file = match encoded {
                Some(bytes) => {
                    let name = format!("{}-{partition}.arrow", sanitize(&operator));
                    match this.store.put_state(epoch, &name, bytes).await {
                        Ok(entry) => Some(entry),
                        Err(e) => {
                            this.abort(epoch, &e.to_string());
                            return;
                        }
                    }
                }
                None => None,
            };
            let snapshot = PartitionSnapshot {
                partition,
                num_partitions,
                meta,
                file,
                files: vec![],
            };
            this.acknowledge(epoch, operator, snapshot);
        });
        Ok(())
    }

    /// Hands over a RocksDB checkpoint of `operator`'s `partition` for checkpoint `epoch`:
    /// uploads the `files` not uploaded before (in the background), records every uploaded
    /// file in `uploaded` (for later checkpoints to share) while the checkpoint is still
    /// live, removes the local `staged` directory and acknowledges.
    #[allow(clippy::too_many_arguments)]
    pub fn snapshot_files(
        self: &Arc<Self>,
        epoch: u64,
        operator: &str,
        partition: usize,
        num_partitions: usize,
        meta: serde_json::Value,
        files: Vec<StateFile>,
        staged: std::path::PathBuf,
        uploaded: UploadedFiles,
    ) -> Result<()> {
        let guard = self.hand_over(operator, partition, epoch);
        failpoint::check(Failpoint::AfterOperatorSnapshot, epoch);
        let this = Arc::clone(self);
        let operator = operator.to_string();
        tokio::spawn(async move {
            let _guard = guard;
            let mut entries = Vec::with_capacity(files.len());
            let mut new = Vec::new();
            for file in files {
                if let Some(entry) = file.uploaded {
                    entries.push(entry);
                    continue;
                }
                let result = match tokio::fs::read(&file.local).await {
                    Ok(bytes) => {
                        this.store
                            .put_file(epoch, file.remote, Bytes::from(bytes))
                            .await
                    }
                    Err(e) => Err(datafusion::common::exec_datafusion_err!(
                        "cannot read {}: {e}",
                        file.local.display()
                    )),
                };
                match result {
                    Ok(entry) => {
                        if let Some(name) = file.local.file_name() {
                            new.push((name.to_string_lossy().to_string(), entry.clone()));
                        }
                        entries.push(entry);
                    }
                    Err(e) => {
                        let _ = tokio::fs::remove_dir_all(&staged).await;
                        this.abort(epoch, &e.to_string());
                        return;
                    }
                }
            }
            let _ = tokio::fs::remove_dir_all(&staged).await;
            // Shared files of an aborted checkpoint are garbage: never reuse them.
            if let Ok(pending) = this.pending.lock()
                && pending.contains_key(&epoch)
                && let Ok(mut uploaded) = uploaded.lock()
            {
                uploaded.extend(new);
            }
            let snapshot = PartitionSnapshot {
                partition,
                num_partitions,
                meta,
                file: None,
                files: entries,
            };
            this.acknowledge(epoch, operator, snapshot);
        });
        Ok(())
    }

    /// Records that `operator`'s `partition` snapshotted `epoch` (its acknowledgement may come
    /// later, after an upload); the upload holds the returned guard until it acknowledged or
    /// aborted.
    fn hand_over(&self, operator: &str, partition: usize, epoch: u64) -> UploadGuard {
        self.uploads.fetch_add(1, Ordering::SeqCst);
        let guard = UploadGuard(Arc::clone(&self.uploads));
        if let Ok(mut handed) = self.handed.lock() {
            let last = handed.entry((operator.to_string(), partition)).or_insert(0);
            *last = (*last).max(epoch);
        }
        guard
    }

    /// `operator`'s `partition` ended its input: `meta` is its final snapshot, valid for every
    /// later checkpoint and for the job's final one (a sink's `meta` holds its last
    /// pre-commits, committed when the job finishes).
    pub fn finished(
        self: &Arc<Self>,
        operator: &str,
        partition: usize,
        num_partitions: usize,
        meta: serde_json::Value,
    ) {
        let snapshot = PartitionSnapshot {
            partition,
            num_partitions,
            meta,
            file: None,
            files: vec![],
        };
        // Checkpoints whose barrier the partition saw wait for its own snapshot of them.
        let after = self
            .handed
            .lock()
            .ok()
            .and_then(|h| h.get(&(operator.to_string(), partition)).copied())
            .unwrap_or(0);
        if let Ok(mut finished) = self.finished.lock() {
            finished
                .entry(operator.to_string())
                .or_default()
                .insert(partition, (after, snapshot));
        }
        let epochs: Vec<u64> = match self.pending.lock() {
            Ok(p) => p.keys().copied().collect(),
            Err(_) => vec![],
        };
        for epoch in epochs {
            self.maybe_complete(epoch);
        }
    }

    fn acknowledge(self: &Arc<Self>, epoch: u64, operator: String, snapshot: PartitionSnapshot) {
        {
            let Ok(mut pending) = self.pending.lock() else {
                return;
            };
            let Some(p) = pending.get_mut(&epoch) else {
                return; // aborted
            };
            p.snapshots
                .entry(operator)
                .or_default()
                .insert(snapshot.partition, snapshot);
        }
        self.maybe_complete(epoch);
    }

    /// Completes `epoch` in the background if every participant partition acknowledged it.
    fn maybe_complete(self: &Arc<Self>, epoch: u64) {
        let (operators, started) = {
            let (Ok(mut pending), Ok(finished)) = (self.pending.lock(), self.finished.lock())
            else {
                return;
            };
            let Some(p) = pending.get_mut(&epoch) else {
                return;
            };
            if p.completing {
                return;
            }
            let started = p.started;
            let mut operators = BTreeMap::new();
            for participant in &self.participants {
                let acked = p.snapshots.get(&participant.operator);
                let done = finished.get(&participant.operator);
                let mut list = Vec::with_capacity(participant.partitions);
                for partition in 0..participant.partitions {
                    match acked.and_then(|a| a.get(&partition)).or_else(|| {
                        done.and_then(|d| d.get(&partition))
                            .filter(|(after, _)| epoch > *after)
                            .map(|(_, s)| s)
                    }) {
                        Some(s) => list.push(s.clone()),
                        None => return,
                    }
                }
                operators.insert(participant.operator.clone(), list);
            }
            p.completing = true;
            (operators, started)
        };
        let state_bytes: u64 = operators
            .values()
            .flatten()
            .flat_map(|p| p.file.iter().chain(&p.files))
            .map(|f| f.size)
            .sum();
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let result = this.complete(epoch, operators, false).await;
            if result.is_ok() {
                this.record(epoch, started, state_bytes);
            }
            if let Ok(mut pending) = this.pending.lock() {
                pending.remove(&epoch);
            }
            if let Err(e) = result {
                log::warn!("checkpoint {epoch} failed: {e}");
                eprintln!("warning: checkpoint {epoch} failed: {e}");
                // A durable manifest stays: recovery restores it and re-applies its commits.
                if this.latest() < epoch {
                    this.delete_later(epoch);
                }
            }
        });
    }

    async fn complete(
        self: &Arc<Self>,
        epoch: u64,
        operators: BTreeMap<String, Vec<PartitionSnapshot>>,
        finished: bool,
    ) -> Result<()> {
        let _one_at_a_time = self.completing.lock().await;
        failpoint::check(Failpoint::BeforeManifest, epoch);
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            engine_version: env!("CARGO_PKG_VERSION").to_string(),
            job: self.job.clone(),
            epoch,
            finished,
            created_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            operators,
            crc32: None,
        };
        self.store.put_manifest(&manifest).await?;
        self.latest.fetch_max(epoch, Ordering::SeqCst);
        failpoint::check(Failpoint::AfterManifest, epoch);
        // Sink commits may block on a broker: not on the async worker threads.
        let participants = self.participants.clone();
        let operators = manifest.operators.clone();
        tokio::task::spawn_blocking(move || {
            sinks::commit_sinks(&participants, &operators, Some(epoch))
        })
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))??;
        failpoint::check(Failpoint::AfterSinkCommit, epoch);
        self.completed.send_replace(epoch);
        if let Err(e) = self
            .store
            .collect_garbage(epoch, self.config.retained)
            .await
        {
            log::warn!("checkpoint garbage collection: {e}");
        }
        Ok(())
    }

    /// The job's input ended and every operator finished: writes the final manifest with the
    /// sinks' last pre-commits and commits them.
    pub async fn finish_job(self: &Arc<Self>, last_epoch: u64) -> Result<()> {
        // Snapshots still uploading acknowledge (or abort) their checkpoints; then every
        // pending checkpoint either completes now, its other partitions having finished after
        // it, or can no longer complete: its barrier came after their input ended.
        while self.uploads.load(Ordering::SeqCst) > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let epochs: Vec<u64> = match self.pending.lock() {
            Ok(p) => p.keys().copied().collect(),
            Err(_) => vec![],
        };
        for epoch in epochs {
            self.maybe_complete(epoch);
        }
        self.wait_resolved(u64::MAX).await;
        let in_flight: Vec<u64> = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p).into_keys().collect(),
            Err(_) => vec![],
        };
        for epoch in in_flight {
            self.delete_later(epoch);
        }
        // The sinks' final snapshots carry their last pre-commits.
        let operators = match self.finished.lock() {
            Ok(finished) => self
                .participants
                .iter()
                .filter(|p| p.sink.is_some())
                .filter_map(|p| {
                    let parts = finished.get(&p.operator)?;
                    Some((
                        p.operator.clone(),
                        parts.values().map(|(_, s)| s.clone()).collect(),
                    ))
                })
                .collect(),
            Err(_) => BTreeMap::new(),
        };
        let epoch = last_epoch.max(self.latest()) + 1;
        self.complete(epoch, operators, true).await
    }
}

/// A partition's final snapshot and the last epoch it snapshotted before finishing.
type FinishedPartition = (u64, PartitionSnapshot);

/// Counts a snapshot handed over until its task ends.
struct UploadGuard(Arc<std::sync::atomic::AtomicUsize>);

impl Drop for UploadGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Downloads `files` (checked against their size and CRC-32) into the new directory `dir`.
async fn download(
    store: &CheckpointStore,
    files: &[FileEntry],
    dir: &std::path::Path,
) -> Result<()> {
    tokio::fs::create_dir_all(dir).await.map_err(|e| {
        datafusion::common::exec_datafusion_err!("cannot create {}: {e}", dir.display())
    })?;
    for file in files {
        let bytes = store.read_state(file).await?;
        let name = file.path.rsplit('/').next().unwrap_or(&file.path);
        tokio::fs::write(dir.join(name), &bytes)
            .await
            .map_err(|e| {
                datafusion::common::exec_datafusion_err!("cannot write restored state {name}: {e}")
            })?;
    }
    Ok(())
}

/// `operator` as a file name.
pub fn sanitize(operator: &str) -> String {
    operator
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}
