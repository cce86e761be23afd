//! The manifest of a checkpoint: what was snapshotted, where, and how to verify it.
//!
//! A checkpoint is the directory `chk-<epoch>/` of the checkpoint store. Operators write their
//! state files into it first; the manifest `_MANIFEST.json` is written last and atomically, so
//! a checkpoint exists exactly when its manifest does. The manifest lists, per operator and
//! partition, the connector-level metadata (source positions, sink commits, watermarks) and the
//! state file with its size and CRC-32, and names the job and engine version that wrote it.
//! The manifest carries its own CRC-32 too (format 2): a damaged manifest that still parses,
//! say a flipped digit in a source offset, would otherwise restore wrong positions silently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 2;

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
    /// CRC-32 (IEEE) of the manifest's compact JSON without this field; see [`seal`] and
    /// [`verify`]. Absent only in format 1 manifests, which are read without a check.
    ///
    /// [`seal`]: Manifest::seal
    /// [`verify`]: Manifest::verify
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32: Option<u32>,
}

impl Manifest {
    /// The checksum of everything but [`crc32`](Manifest::crc32): the CRC-32 of the compact
    /// JSON the manifest serializes to without it. Computed over the parsed values, so the
    /// layout of the file (indentation, key order) does not matter, and every change of a
    /// value that a restore would read does.
    fn checksum(&self) -> Result<u32, String> {
        let mut bare = self.clone();
        bare.crc32 = None;
        serde_json::to_vec(&bare)
            .map(|json| crc32fast::hash(&json))
            .map_err(|e| e.to_string())
    }

    /// Sets [`crc32`](Manifest::crc32) to the manifest's checksum.
    pub fn seal(&mut self) -> Result<(), String> {
        self.crc32 = Some(self.checksum()?);
        Ok(())
    }

    /// Checks a manifest read back: its checksum must match (a format 1 manifest has none).
    pub fn verify(&self) -> Result<(), String> {
        match self.crc32 {
            Some(expected) => {
                let actual = self.checksum()?;
                if actual == expected {
                    Ok(())
                } else {
                    Err(format!(
                        "its CRC-32 is {actual:08x}, the manifest says {expected:08x}"
                    ))
                }
            }
            None if self.format <= 1 => Ok(()),
            None => Err(format!(
                "a format {} manifest without its CRC-32",
                self.format
            )),
        }
    }

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

    fn manifest() -> Manifest {
        let snapshot = PartitionSnapshot {
            partition: 1,
            num_partitions: 2,
            meta: serde_json::json!({
                "offsets": [[0, 1234567], [1, 98]],
                "watermark": 1_704_067_209_000_i64,
                "pending": ["out/part-1-7.csv"],
            }),
            file: Some(FileEntry {
                path: "chk-0000000003/WindowAggregateExec_0-1.arrow".into(),
                size: 4096,
                crc32: 0xdead_beef,
            }),
            files: vec![],
        };
        let mut m = Manifest {
            format: MANIFEST_FORMAT,
            engine_version: "0.1.0".into(),
            job: "3f2a".into(),
            epoch: 3,
            finished: false,
            created_ms: 1_764_000_000_000,
            operators: BTreeMap::from([("WindowAggregateExec_0".to_string(), vec![snapshot])]),
            crc32: None,
        };
        m.seal().expect("seal");
        m
    }

    /// Every single-byte change of a written manifest (each position, several bit patterns)
    /// either fails to parse, fails its check, or reads back as the same manifest.
    #[test]
    fn a_damaged_manifest_never_reads_as_a_different_one() {
        let original = manifest();
        let bytes = serde_json::to_vec_pretty(&original).expect("json");
        let back: Manifest = serde_json::from_slice(&bytes).expect("parse");
        assert_eq!(back.verify(), Ok(()));
        let mut caught = 0;
        for at in 0..bytes.len() {
            for bits in [0x01u8, 0x02, 0x04, 0x08, 0x10, 0x1a, 0x20, 0x40] {
                let mut damaged = bytes.clone();
                damaged[at] ^= bits;
                let Ok(read) = serde_json::from_slice::<Manifest>(&damaged) else {
                    continue;
                };
                match read.verify() {
                    Err(_) => caught += 1,
                    Ok(()) => assert_eq!(
                        read,
                        original,
                        "byte {at} ^ {bits:#x}: {}",
                        String::from_utf8_lossy(&damaged)
                    ),
                }
            }
        }
        // Digits flipped into other digits parse and are caught by the checksum alone.
        assert!(
            caught > 20,
            "{caught} damaged manifests caught by the checksum"
        );
    }

    #[test]
    fn format_1_manifests_without_a_checksum_still_read() {
        let mut old = manifest();
        old.crc32 = None;
        old.format = 1;
        assert_eq!(old.verify(), Ok(()));
        old.format = 2;
        assert!(old.verify().is_err());
    }
}
