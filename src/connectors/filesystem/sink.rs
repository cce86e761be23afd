//! Writing rows into files that appear complete or not at all.
//!
//! Each writer owns one in-progress file at a time, `.part-<writer>-<partition>-<n>.<ext>.inprogress`
//! in the target directory, where `<writer>` is new for every writer a job opens (the time, the
//! process and a counter): two jobs writing into one table, or a job and its restarted run,
//! never write the same names. At a barrier or at the end of input the file is flushed and
//! synced (the pre-commit); committing renames it to `part-<writer>-<partition>-<n>.<ext>`. A rename
//! within one directory is atomic, so a reader sees each file either complete or not at all.
//! With checkpoints the commit happens only once the checkpoint's manifest is durable, and
//! recovery re-applies it (renaming is idempotent: a file already renamed is left alone), so a
//! crash never publishes rows twice or loses them. Empty files are never published.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::array::Int8Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_datafusion_err};
use serde::{Deserialize, Serialize};

use super::FilesystemOptions;
use crate::connectors::format::{LineEncoder, encoder};
use crate::connectors::{SinkConnector, SinkWriter};

/// The sink side of a filesystem table.
#[derive(Debug)]
pub struct FileSink {
    options: FilesystemOptions,
}

impl FileSink {
    /// A sink writing into the directory `options.path`.
    pub fn new(options: FilesystemOptions) -> Self {
        Self { options }
    }
}

/// A name part no other writer uses: every job, and every run of a job, opens its own writers
/// (one sink table is shared by all the jobs inserting into it). The time tells runs and
/// processes apart, the process id two processes started in the same instant, the counter
/// the writers of one process.
fn writer_id() -> String {
    static OPENED: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{:x}_{:x}_{:x}",
        nanos & 0xffff_ffff_ffff,
        std::process::id(),
        OPENED.fetch_add(1, Ordering::Relaxed)
    )
}

impl SinkConnector for FileSink {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn open_writer(
        &self,
        _schema: SchemaRef,
        partition: usize,
        _num_partitions: usize,
    ) -> Result<Box<dyn SinkWriter>> {
        let path = &self.options.path;
        std::fs::create_dir_all(path)
            .map_err(|e| exec_datafusion_err!("cannot create directory '{path}': {e}"))?;
        Ok(Box::new(FileWriter {
            dir: PathBuf::from(path),
            prefix: format!("part-{}-{partition}", writer_id()),
            encoder: encoder(&self.options.format)?,
            buffer: Vec::new(),
            file: None,
            sequence: 0,
        }))
    }

    /// With a changelog format (`debezium-json`).
    fn accepts_changes(&self) -> bool {
        self.options.format.format.is_changelog()
    }

    fn commit(&self, pre_commit: &serde_json::Value) -> Result<()> {
        commit_rename(pre_commit)
    }

    /// Deletes the file the pre-commit publishes (and its in-progress form).
    fn uncommit(&self, pre_commit: &serde_json::Value) -> Result<()> {
        if pre_commit.is_null() {
            return Ok(());
        }
        let (from, to) = rename_of(pre_commit)?;
        for file in [from, to] {
            match std::fs::remove_file(&file) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(exec_datafusion_err!(
                        "cannot delete {}: {e}",
                        file.display()
                    ));
                }
            }
        }
        Ok(())
    }

    fn explain(&self) -> String {
        format!(
            "path={}, format={}",
            self.options.path, self.options.format.format
        )
    }
}

/// The pre-commit of a [`FileWriter`]: the rename that publishes its finished file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RenamePreCommit {
    /// The in-progress path and the published path, as a two-element JSON array.
    rename: (String, String),
}

struct InProgress {
    file: File,
    temp: PathBuf,
    target: PathBuf,
}

struct FileWriter {
    dir: PathBuf,
    prefix: String,
    encoder: Box<dyn LineEncoder>,
    buffer: Vec<u8>,
    file: Option<InProgress>,
    sequence: usize,
}

impl FileWriter {
    /// Appends rows (changelog rows with `kinds`) to the in-progress file.
    fn write_rows(&mut self, batch: &RecordBatch, kinds: Option<&Int8Array>) -> Result<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        match kinds {
            Some(kinds) => self.encoder.encode_changes(batch, kinds, &mut buffer)?,
            None => self.encoder.encode(batch, &mut buffer)?,
        }
        let f = self.current()?;
        let result = f
            .file
            .write_all(&buffer)
            .map_err(|e| exec_datafusion_err!("cannot write {}: {e}", f.temp.display()));
        self.buffer = buffer;
        result
    }

    fn current(&mut self) -> Result<&mut InProgress> {
        if self.file.is_none() {
            let name = format!(
                "{}-{}.{}",
                self.prefix,
                self.sequence,
                self.encoder.extension()
            );
            self.sequence += 1;
            let temp = self.dir.join(format!(".{name}.inprogress"));
            let target = self.dir.join(name);
            let file = File::create(&temp)
                .map_err(|e| exec_datafusion_err!("cannot create {}: {e}", temp.display()))?;
            self.file = Some(InProgress { file, temp, target });
        }
        match self.file.as_mut() {
            Some(f) => Ok(f),
            None => Err(exec_datafusion_err!("no file open")),
        }
    }

    /// Closes the in-progress file durably; returns the rename that publishes it.
    fn pre_commit(&mut self) -> Result<serde_json::Value> {
        let Some(mut f) = self.file.take() else {
            return Ok(serde_json::Value::Null);
        };
        f.file
            .flush()
            .and_then(|_| f.file.sync_all())
            .map_err(|e| exec_datafusion_err!("cannot write {}: {e}", f.temp.display()))?;
        let pre_commit = RenamePreCommit {
            rename: (f.temp.display().to_string(), f.target.display().to_string()),
        };
        serde_json::to_value(&pre_commit)
            .map_err(|e| exec_datafusion_err!("the pre-commit of the filesystem sink: {e}"))
    }
}

/// The `(in-progress, published)` paths of a pre-commit of [`FileWriter::pre_commit`].
fn rename_of(pre_commit: &serde_json::Value) -> Result<(PathBuf, PathBuf)> {
    let RenamePreCommit { rename: (from, to) } =
        RenamePreCommit::deserialize(pre_commit).map_err(|e| {
            exec_datafusion_err!("filesystem sink: malformed commit record {pre_commit} ({e})")
        })?;
    Ok((PathBuf::from(from), PathBuf::from(to)))
}

/// Applies a pre-commit of [`FileWriter::pre_commit`] (idempotent).
fn commit_rename(pre_commit: &serde_json::Value) -> Result<()> {
    let (from, to) = rename_of(pre_commit)?;
    if !from.exists() && to.exists() {
        return Ok(()); // committed before
    }
    std::fs::rename(&from, &to).map_err(|e| {
        exec_datafusion_err!("cannot rename {} to {}: {e}", from.display(), to.display())
    })
}

#[async_trait]
impl SinkWriter for FileWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.write_rows(batch, None)
    }

    async fn write_changes(&mut self, batch: &RecordBatch, kinds: &Int8Array) -> Result<()> {
        self.write_rows(batch, Some(kinds))
    }

    async fn on_barrier(&mut self, _epoch: u64) -> Result<serde_json::Value> {
        self.pre_commit()
    }

    async fn finish(&mut self) -> Result<serde_json::Value> {
        self.pre_commit()
    }
}

impl Drop for FileWriter {
    fn drop(&mut self) {
        // An unfinished file (a cancelled or failed job) is removed, never published.
        if let Some(f) = self.file.take() {
            let _ = std::fs::remove_file(&f.temp);
        }
    }
}
