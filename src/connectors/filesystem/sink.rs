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
//!
//! A table `PARTITIONED BY (dt, hm)` writes each row into the directory of its values,
//! `dt=2024-01-01/hm=10%3A00/` under `path` (Hive's and Flink's layout: the values escaped as
//! Hive escapes path names, NULL as `__DEFAULT_PARTITION__`), without the partition columns,
//! which the path holds. A writer then has one in-progress file per directory it wrote into,
//! all published together.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use datafusion::arrow::array::{Array, Int8Array, UInt32Array};
use datafusion::arrow::compute::{take, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::common::{Result, exec_datafusion_err, plan_err};
use serde::{Deserialize, Serialize};

use super::FilesystemOptions;
use crate::connectors::format::{LineEncoder, encoder};
use crate::connectors::{SinkConnector, SinkWriter};

/// The sink side of a filesystem table.
#[derive(Debug)]
pub struct FileSink {
    options: FilesystemOptions,
    /// `PARTITIONED BY` columns, by name.
    partition_by: Vec<String>,
}

impl FileSink {
    /// A sink writing into the directory `options.path`, into a directory per value of the
    /// columns `partition_by` (none: into `path` itself).
    pub fn new(options: FilesystemOptions, partition_by: Vec<String>) -> Self {
        Self {
            options,
            partition_by,
        }
    }
}

/// The name of the directory of a NULL partition value (Flink's `partition.default-name`).
pub const DEFAULT_PARTITION: &str = "__DEFAULT_PARTITION__";

/// `value` as a path name, escaped as Hive escapes partition values (`%` and two hex digits).
pub fn escape_partition_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        let escaped = matches!(
            c,
            '\u{0}'
                ..='\u{1f}'
                    | '"'
                    | '#'
                    | '%'
                    | '\''
                    | '*'
                    | '/'
                    | ':'
                    | '='
                    | '?'
                    | '\\'
                    | '\u{7f}'
                    | '{'
                    | '['
                    | ']'
                    | '^'
        );
        if escaped {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
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
        schema: SchemaRef,
        partition: usize,
        _num_partitions: usize,
    ) -> Result<Box<dyn SinkWriter>> {
        let path = &self.options.path;
        std::fs::create_dir_all(path)
            .map_err(|e| exec_datafusion_err!("cannot create directory '{path}': {e}"))?;
        let mut partitions = Vec::with_capacity(self.partition_by.len());
        for name in &self.partition_by {
            match schema.index_of(name) {
                Ok(i) => partitions.push((name.clone(), i)),
                Err(_) => {
                    return plan_err!(
                        "table {} is PARTITIONED BY {name}, a column its rows do not have",
                        self.options.table
                    );
                }
            }
        }
        let data_columns = (0..schema.fields().len())
            .filter(|i| !partitions.iter().any(|(_, p)| p == i))
            .collect();
        Ok(Box::new(FileWriter {
            dir: PathBuf::from(path),
            prefix: format!("part-{}-{partition}", writer_id()),
            encoder: encoder(&self.options.format)?,
            buffer: Vec::new(),
            files: BTreeMap::new(),
            sequence: 0,
            partitions,
            data_columns,
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
        for file in renames_of(pre_commit)?
            .into_iter()
            .flat_map(|(a, b)| [a, b])
        {
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
        let partitioned = if self.partition_by.is_empty() {
            String::new()
        } else {
            format!(", partitioned_by=[{}]", self.partition_by.join(", "))
        };
        format!(
            "path={}, format={}{partitioned}",
            self.options.path, self.options.format.format
        )
    }
}

/// The pre-commit of a [`FileWriter`]: the renames that publish its finished files, each
/// (in-progress path, published path). One file's is written as `rename` (as before tables
/// were partitioned), several as `renames`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RenamePreCommit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rename: Option<(String, String)>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    renames: Vec<(String, String)>,
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
    /// The in-progress files, by directory under `dir` (`""` for `dir` itself).
    files: BTreeMap<String, InProgress>,
    sequence: usize,
    /// `PARTITIONED BY` columns: name and index in the rows written.
    partitions: Vec<(String, usize)>,
    /// The columns written into the files (all but the partition columns).
    data_columns: Vec<usize>,
}

impl FileWriter {
    /// Appends rows (changelog rows with `kinds`) to the in-progress files of their
    /// directories.
    fn write_rows(&mut self, batch: &RecordBatch, kinds: Option<&Int8Array>) -> Result<()> {
        if self.partitions.is_empty() {
            return self.write_into(String::new(), batch, kinds);
        }
        // The rows of each directory, in their order. Each column's formatter is made once
        // per batch.
        let options = FormatOptions::default();
        let columns = self
            .partitions
            .iter()
            .map(|(name, c)| {
                let formatter = ArrayFormatter::try_new(batch.column(*c).as_ref(), &options)?;
                Ok((escape_partition_value(name), batch.column(*c), formatter))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut by_dir: BTreeMap<String, Vec<u32>> = BTreeMap::new();
        let mut dir = String::new();
        for i in 0..batch.num_rows() {
            dir.clear();
            for (name, column, formatter) in &columns {
                if !dir.is_empty() {
                    dir.push('/');
                }
                dir.push_str(name);
                dir.push('=');
                if column.is_null(i) {
                    dir.push_str(DEFAULT_PARTITION);
                } else {
                    dir.push_str(&escape_partition_value(&formatter.value(i).to_string()));
                }
            }
            match by_dir.get_mut(dir.as_str()) {
                Some(rows) => rows.push(i as u32),
                None => {
                    by_dir.insert(dir.clone(), vec![i as u32]);
                }
            }
        }
        let data = batch.project(&self.data_columns)?;
        for (dir, rows) in by_dir {
            let indices = UInt32Array::from(rows);
            let part = take_record_batch(&data, &indices)?;
            let part_kinds = match kinds {
                Some(k) => Some(
                    take(k, &indices, None)?
                        .as_any()
                        .downcast_ref::<Int8Array>()
                        .cloned()
                        .ok_or_else(|| exec_datafusion_err!("row kinds are not Int8"))?,
                ),
                None => None,
            };
            self.write_into(dir, &part, part_kinds.as_ref())?;
        }
        Ok(())
    }

    /// Appends rows to the in-progress file of directory `dir`.
    fn write_into(
        &mut self,
        dir: String,
        batch: &RecordBatch,
        kinds: Option<&Int8Array>,
    ) -> Result<()> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        match kinds {
            Some(kinds) => self.encoder.encode_changes(batch, kinds, &mut buffer)?,
            None => self.encoder.encode(batch, &mut buffer)?,
        }
        let f = self.current(dir)?;
        let result = f
            .file
            .write_all(&buffer)
            .map_err(|e| exec_datafusion_err!("cannot write {}: {e}", f.temp.display()));
        self.buffer = buffer;
        result
    }

    fn current(&mut self, dir: String) -> Result<&mut InProgress> {
        if !self.files.contains_key(&dir) {
            let name = format!(
                "{}-{}.{}",
                self.prefix,
                self.sequence,
                self.encoder.extension()
            );
            self.sequence += 1;
            let into = self.dir.join(&dir);
            if !dir.is_empty() {
                std::fs::create_dir_all(&into).map_err(|e| {
                    exec_datafusion_err!("cannot create directory {}: {e}", into.display())
                })?;
            }
            let temp = into.join(format!(".{name}.inprogress"));
            let target = into.join(name);
            let file = File::create(&temp)
                .map_err(|e| exec_datafusion_err!("cannot create {}: {e}", temp.display()))?;
            self.files
                .insert(dir.clone(), InProgress { file, temp, target });
        }
        match self.files.get_mut(&dir) {
            Some(f) => Ok(f),
            None => Err(exec_datafusion_err!("no file open")),
        }
    }

    /// Closes the in-progress files durably; returns the renames that publish them.
    fn pre_commit(&mut self) -> Result<serde_json::Value> {
        if self.files.is_empty() {
            return Ok(serde_json::Value::Null);
        }
        let mut renames = Vec::with_capacity(self.files.len());
        // Synced in place: if one fails, every file is still the writer's, and removed when it
        // drops.
        for f in self.files.values_mut() {
            f.file
                .flush()
                .and_then(|_| f.file.sync_all())
                .map_err(|e| exec_datafusion_err!("cannot write {}: {e}", f.temp.display()))?;
            renames.push((f.temp.display().to_string(), f.target.display().to_string()));
        }
        self.files.clear();
        let pre_commit = if renames.len() == 1 {
            RenamePreCommit {
                rename: renames.pop(),
                renames: Vec::new(),
            }
        } else {
            RenamePreCommit {
                rename: None,
                renames,
            }
        };
        serde_json::to_value(&pre_commit)
            .map_err(|e| exec_datafusion_err!("the pre-commit of the filesystem sink: {e}"))
    }
}

/// The `(in-progress, published)` paths of a pre-commit of [`FileWriter::pre_commit`].
fn renames_of(pre_commit: &serde_json::Value) -> Result<Vec<(PathBuf, PathBuf)>> {
    let RenamePreCommit { rename, renames } =
        RenamePreCommit::deserialize(pre_commit).map_err(|e| {
            exec_datafusion_err!("filesystem sink: malformed commit record {pre_commit} ({e})")
        })?;
    let all: Vec<(PathBuf, PathBuf)> = rename
        .into_iter()
        .chain(renames)
        .map(|(from, to)| (PathBuf::from(from), PathBuf::from(to)))
        .collect();
    if all.is_empty() {
        return Err(exec_datafusion_err!(
            "filesystem sink: a commit record without files: {pre_commit}"
        ));
    }
    Ok(all)
}

/// Applies a pre-commit of [`FileWriter::pre_commit`] (idempotent).
fn commit_rename(pre_commit: &serde_json::Value) -> Result<()> {
    for (from, to) in renames_of(pre_commit)? {
        if !from.exists() && to.exists() {
            continue; // committed before
        }
        std::fs::rename(&from, &to).map_err(|e| {
            exec_datafusion_err!("cannot rename {} to {}: {e}", from.display(), to.display())
        })?;
    }
    Ok(())
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
        for f in self.files.values() {
            let _ = std::fs::remove_file(&f.temp);
        }
    }
}
