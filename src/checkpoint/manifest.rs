//! The manifest of a checkpoint: what was snapshotted, where, and how to verify it.
//!
//! A checkpoint is the directory `chk-<epoch>/` of the checkpoint store. Operators write their
//! state files into it first; the manifest `_MANIFEST.json` is written last and atomically, so
//! a checkpoint exists exactly when its manifest does. The manifest lists, per operator and
//! partition, the connector-level metadata (source positions, sink commits, watermarks) and the
//! state file with its size and CRC-32, and names the job and engine version that wrote it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// File name of a checkpoint's manifest.
pub const MANIFEST_FILE: &str = "_MANIFEST.json";

/// A state file of a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the checkpoint store's root.
    pub path: String,
    /// Length in bytes.
    pub size: u64,
    /// CRC-32 (IEEE) of the contents.
    pub crc32: u32,
}

/// What one partition of an operator snapshotted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionSnapshot {
    /// The partition.
    pub partition: usize,
    /// The operator's partition count when the snapshot was taken.
    pub num_partitions: usize,
    /// Small state: source positions, watermarks, sink commits.
    pub meta: serde_json::Value,
    /// Large state (Arrow IPC), if any.
    pub file: Option<FileEntry>,
    /// The files of a RocksDB checkpoint (`state.backend` = `rocksdb`): SST files shared
    /// between checkpoints under `shared/`, the others in the checkpoint's directory.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FileEntry>,
}

/// A complete checkpoint (see the module docs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Version of the engine that wrote it.
    pub engine_version: String,
    /// Fingerprint of the job's SQL; a different job refuses to restore it.
    pub job: String,
    /// Checkpoint epoch (barrier number).
    pub epoch: u64,
    /// True for the checkpoint written when the job's input ended: the job is done.
    pub finished: bool,
    /// Wall-clock time of completion, ms since the epoch.
    pub created_ms: i64,
    /// Snapshots by operator id, one per partition.
    pub operators: BTreeMap<String, Vec<PartitionSnapshot>>,
}

impl Manifest {
    /// Every state file the manifest references.
    pub fn files(&self) -> impl Iterator<Item = &FileEntry> {
        self.operators
            .values()
            .flatten()
            .flat_map(|p| p.file.iter().chain(&p.files))
    }
}

/// Directory of the files shared between checkpoints, relative to the store root.
pub const SHARED_DIR: &str = "shared";

/// The directory of checkpoint `epoch`, relative to the store root.
pub fn checkpoint_dir(epoch: u64) -> String {
    format!("chk-{epoch:010}")
}

/// The epoch of a checkpoint directory name, if it is one.
pub fn parse_checkpoint_dir(name: &str) -> Option<u64> {
    name.strip_prefix("chk-")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_dirs_sort_by_epoch_and_parse_back() {
        assert_eq!(checkpoint_dir(7), "chk-0000000007");
        assert!(checkpoint_dir(9) < checkpoint_dir(10));
        assert_eq!(parse_checkpoint_dir("chk-0000000010"), Some(10));
        assert_eq!(parse_checkpoint_dir("chk-x"), None);
        assert_eq!(parse_checkpoint_dir("other"), None);
    }
}
