//! Where checkpoints live: an `object_store` location (a local directory by default).
//!
//! Layout under the root: `chk-<epoch>/<operator>-<partition>.arrow` state files and
//! `chk-<epoch>/_MANIFEST.json`, written last. Finding the checkpoint to restore lists the
//! checkpoint directories newest first and takes the first whose manifest parses, belongs to
//! this job and whose every file has the recorded size and CRC-32; a damaged checkpoint is
//! reported and skipped. Garbage collection keeps the newest `retained` complete checkpoints
//! and removes everything older (complete or not).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use datafusion::common::{DataFusionError, Result, exec_datafusion_err, plan_err};
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::failpoint::{self, Failpoint};
use super::manifest::{
    FileEntry, MANIFEST_FILE, Manifest, SHARED_DIR, checkpoint_dir, parse_checkpoint_dir,
};

/// A checkpoint location (see the module docs).
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    location: String,
    writes: Arc<AtomicU64>,
    /// The directory of a local store, whose emptied checkpoint directories are removed too
    /// (an object store has no directories; a local file system keeps them).
    local_dir: Option<std::path::PathBuf>,
}

/// The checkpoint chosen for recovery, and what was wrong with newer ones.
#[derive(Debug)]
pub struct Recovery {
    /// The newest complete, intact checkpoint.
    pub manifest: Manifest,
    /// The newer checkpoints that were skipped, newest first.
    pub skipped: Vec<SkippedCheckpoint>,
}

/// A complete checkpoint recovery could not use.
#[derive(Debug, Clone)]
pub struct SkippedCheckpoint {
    pub epoch: u64,
    /// What is wrong with it.
    pub why: String,
    /// Its manifest, when that could be read (a state file is damaged): what its sinks
    /// published.
    pub manifest: Option<Manifest>,
}

impl std::fmt::Display for SkippedCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "checkpoint {}: {}", self.epoch, self.why)
    }
}

fn store_err(what: &str, e: object_store::Error) -> DataFusionError {
    exec_datafusion_err!("checkpoint store: {what}: {e}")
}

impl CheckpointStore {
    /// Opens `location`: a local directory (created if missing), or `s3://bucket/prefix`
    /// (any S3-compatible service, configured by the standard `AWS_*` environment variables:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`, and
    /// `AWS_ALLOW_HTTP=true` for an endpoint without TLS).
    pub fn open(location: &str) -> Result<Self> {
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return plan_err!(
                    "state.dir '{location}' names no bucket; write s3://BUCKET/PREFIX"
                );
            }
            let store = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| store_err(&format!("cannot open '{location}'"), e))?;
            let root = Path::from(prefix.trim_matches('/'));
            return Ok(Self::with_store(Arc::new(store), root, location));
        }
        if location.contains("://") && !location.starts_with("file://") {
            return plan_err!(
                "state.dir '{location}': the supported locations are a local directory \
                 (./sabot-state, file:///path) and s3://bucket/prefix"
            );
        }
        let dir = location.strip_prefix("file://").unwrap_or(location);
        std::fs::create_dir_all(dir)
            .map_err(|e| exec_datafusion_err!("cannot create state directory '{dir}': {e}"))?;
        let local = LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| store_err(&format!("cannot open '{dir}'"), e))?;
        let mut store = Self::with_store(Arc::new(local), Path::default(), location);
        store.local_dir = Some(std::path::PathBuf::from(dir));
        Ok(store)
    }

    /// A store over any `object_store` implementation.
    pub fn with_store(store: Arc<dyn ObjectStore>, root: Path, location: &str) -> Self {
        Self {
            store,
            root,
            location: location.to_string(),
            writes: Arc::new(AtomicU64::new(0)),
            local_dir: None,
        }
    }

    /// The location as the user gave it.
    pub fn location(&self) -> &str {
        &self.location
    }

    fn path(&self, relative: &str) -> Path {
        let mut path = self.root.clone();
        for part in relative.split('/') {
            path = path.clone().join(part);
        }
        path
    }

    async fn put(&self, relative: &str, bytes: Bytes) -> Result<()> {
        let n = self.writes.fetch_add(1, Ordering::SeqCst) + 1;
        if failpoint::fails_write(n) {
            return Err(exec_datafusion_err!(
                "checkpoint store: write {n} of {relative} failed (failpoint store-write)"
            ));
        }
        self.store
            .put(&self.path(relative), PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| store_err(&format!("cannot write {relative}"), e))?;
        Ok(())
    }

    /// Writes a state file of checkpoint `epoch`.
    pub async fn put_state(&self, epoch: u64, name: &str, bytes: Bytes) -> Result<FileEntry> {
        self.put_file(epoch, format!("{}/{name}", checkpoint_dir(epoch)), bytes)
            .await
    }

    /// Writes a file of checkpoint `epoch` at `path` (relative to the root; a shared file
    /// goes under [`SHARED_DIR`]).
    pub async fn put_file(&self, epoch: u64, path: String, bytes: Bytes) -> Result<FileEntry> {
        let entry = FileEntry {
            path: path.clone(),
            size: bytes.len() as u64,
            crc32: crc32fast::hash(&bytes),
        };
        if failpoint::hit(Failpoint::MidUpload, epoch) {
            // A torn upload: half the file, then the process dies.
            let half = bytes.slice(..bytes.len() / 2);
            self.put(&path, half).await?;
            failpoint::crash(Failpoint::MidUpload);
        }
        self.put(&path, bytes).await?;
        Ok(entry)
    }

    /// Reads a state file and checks its size and checksum.
    pub async fn read_state(&self, entry: &FileEntry) -> Result<Bytes> {
        let bytes = self
            .store
            .get(&self.path(&entry.path))
            .await
            .map_err(|e| store_err(&format!("state file {} is missing", entry.path), e))?
            .bytes()
            .await
            .map_err(|e| store_err(&format!("cannot read {}", entry.path), e))?;
        if bytes.len() as u64 != entry.size {
            return Err(exec_datafusion_err!(
                "state file {} has {} bytes, the manifest says {}",
                entry.path,
                bytes.len(),
                entry.size
            ));
        }
        let crc = crc32fast::hash(&bytes);
        if crc != entry.crc32 {
            return Err(exec_datafusion_err!(
                "state file {} is corrupt: CRC-32 {crc:08x}, the manifest says {:08x}",
                entry.path,
                entry.crc32
            ));
        }
        Ok(bytes)
    }

    /// Writes the manifest, completing the checkpoint.
    pub async fn put_manifest(&self, manifest: &Manifest) -> Result<()> {
        let mut manifest = manifest.clone();
        manifest
            .seal()
            .map_err(|e| exec_datafusion_err!("cannot encode manifest: {e}"))?;
        let json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| exec_datafusion_err!("cannot encode manifest: {e}"))?;
        let path = format!("{}/{MANIFEST_FILE}", checkpoint_dir(manifest.epoch));
        self.put(&path, Bytes::from(json)).await
    }

    /// Epochs of the checkpoint directories present, ascending.
    pub async fn epochs(&self) -> Result<Vec<u64>> {
        let prefix = if self.root.as_ref().is_empty() {
            None
        } else {
            Some(&self.root)
        };
        let listing = self
            .store
            .list_with_delimiter(prefix)
            .await
            .map_err(|e| store_err("cannot list checkpoints", e))?;
        let mut epochs: Vec<u64> = listing
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().and_then(parse_checkpoint_dir))
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// The manifest of checkpoint `epoch`; `None` if it has none (incomplete).
    pub async fn manifest(&self, epoch: u64) -> Result<Option<Manifest>> {
        let path = self.path(&format!("{}/{MANIFEST_FILE}", checkpoint_dir(epoch)));
        let bytes = match self.store.get(&path).await {
            Ok(r) => r
                .bytes()
                .await
                .map_err(|e| store_err("cannot read manifest", e))?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(store_err("cannot read manifest", e)),
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| exec_datafusion_err!("manifest of checkpoint {epoch} is corrupt: {e}"))?;
        manifest
            .verify()
            .map_err(|e| exec_datafusion_err!("manifest of checkpoint {epoch} is corrupt: {e}"))?;
        Ok(Some(manifest))
    }

    /// The newest complete and intact checkpoint of job `job` (see the module docs).
    ///
    /// `Ok(None)`: no checkpoint was ever completed here. An error: checkpoints exist but none
    /// can be used; starting over would duplicate output, so the caller must refuse.
    pub async fn recover(&self, job: &str) -> Result<Option<Recovery>> {
        self.recover_before(job, u64::MAX).await
    }

    /// Like [`recover`](Self::recover), among the checkpoints older than `before`.
    pub async fn recover_before(&self, job: &str, before: u64) -> Result<Option<Recovery>> {
        let mut skipped = Vec::new();
        for epoch in self.epochs().await?.into_iter().rev() {
            if epoch >= before {
                continue;
            }
            let manifest = match self.manifest(epoch).await {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    skipped.push(SkippedCheckpoint {
                        epoch,
                        why: e.to_string(),
                        manifest: None,
                    });
                    continue;
                }
            };
            if manifest.job != job {
                return plan_err!(
                    "the state directory '{}' holds checkpoints of a different job (fingerprint \
                     {}, this job is {job}); use another --state-dir or remove it to start over",
                    self.location,
                    manifest.job
                );
            }
            let mut broken = None;
            for file in manifest.files() {
                if let Err(e) = self.read_state(file).await {
                    broken = Some(e);
                    break;
                }
            }
            match broken {
                Some(e) => skipped.push(SkippedCheckpoint {
                    epoch,
                    why: e.to_string(),
                    manifest: Some(manifest),
                }),
                None => return Ok(Some(Recovery { manifest, skipped })),
            }
        }
        if skipped.is_empty() {
            Ok(None)
        } else {
            plan_err!(
                "no usable checkpoint in '{}': {}; refusing to start over, which would repeat \
                 output already written. Remove the state directory to start from scratch",
                self.location,
                skipped
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        }
    }

    /// Deletes checkpoint `epoch` entirely.
    pub async fn delete_checkpoint(&self, epoch: u64) -> Result<()> {
        let prefix = self.path(&checkpoint_dir(epoch));
        let files: Vec<_> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| store_err("cannot list a checkpoint", e))?;
        for file in files {
            match self.store.delete(&file).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err("cannot delete an old checkpoint", e)),
            }
        }
        if let Some(dir) = &self.local_dir {
            // Fails, harmlessly, when something else was put there.
            let _ = std::fs::remove_dir(dir.join(checkpoint_dir(epoch)));
        }
        Ok(())
    }

    /// Keeps the newest `retained` complete checkpoints up to `latest`; deletes older ones,
    /// and the shared files none of the kept ones references.
    pub async fn collect_garbage(&self, latest: u64, retained: usize) -> Result<()> {
        let mut complete = 0;
        let mut referenced = std::collections::HashSet::new();
        for epoch in self.epochs().await?.into_iter().rev() {
            if epoch > latest {
                continue; // in progress
            }
            let manifest = match self.manifest(epoch).await {
                Ok(Some(m)) if complete < retained.max(1) => m,
                _ => {
                    // Beyond the retained ones, or an aborted checkpoint.
                    self.delete_checkpoint(epoch).await?;
                    continue;
                }
            };
            complete += 1;
            referenced.extend(manifest.files().map(|f| f.path.clone()));
        }
        if complete == 0 {
            return Ok(());
        }
        let prefix = self.path(SHARED_DIR);
        let shared: Vec<_> = self
            .store
            .list(Some(&prefix))
            .map_ok(|m| m.location)
            .try_collect()
            .await
            .map_err(|e| store_err("cannot list shared state files", e))?;
        let root = self.root.as_ref();
        for location in shared {
            let relative = location
                .as_ref()
                .strip_prefix(root)
                .unwrap_or(location.as_ref())
                .trim_start_matches('/')
                .to_string();
            if referenced.contains(&relative) {
                continue;
            }
            match self.store.delete(&location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err("cannot delete an unused shared file", e)),
            }
            if let Some(dir) = &self.local_dir
                && let Some(parent) = std::path::Path::new(&relative).parent()
            {
                // Fails, harmlessly, while the directory still holds files.
                let _ = std::fs::remove_dir(dir.join(parent));
            }
        }
        Ok(())
    }
}
