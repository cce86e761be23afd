//! Reading files line by line into Arrow batches.
//!
//! A table `PARTITIONED BY (dt, hm)` reads the files under `path/dt=.../hm=.../` (the layout
//! the sink writes): the files hold the other columns, and each file's partition columns are
//! the values its directories name (unescaped; `__DEFAULT_PARTITION__` is NULL), cast to the
//! columns' types.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{Result, exec_datafusion_err, exec_err};
use serde::{Deserialize, Serialize};

use super::FilesystemOptions;
use super::sink::DEFAULT_PARTITION;
use crate::catalog::table_definition::TableDefinition;
use crate::changelog::ChangelogMode;
use crate::connectors::format::{LineDecoder, decoder};
use crate::connectors::{SavedPosition, SourceBatch, SourceConnector, SourceReader};

/// The source side of a filesystem table.
#[derive(Debug)]
pub struct FileSource {
    options: FilesystemOptions,
    schema: SchemaRef,
    /// `PARTITIONED BY` columns: name and index in `schema`.
    partitions: Vec<(String, usize)>,
}

/// Where a column of a partitioned table's output comes from.
#[derive(Debug, Clone)]
enum Slot {
    /// The next column the decoder gives.
    Data,
    /// The file's value of partition column `.0` (in `PARTITIONED BY` order), as `.1`.
    Partition(usize, DataType),
}

/// `name` with Hive's `%XX` escapes decoded (a malformed escape stays as it is).
fn unescape(name: &str) -> String {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(
                std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("zz"),
                16,
            )
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl FileSource {
    /// The source of `def`, reading `options.path`.
    pub fn new(def: &TableDefinition, options: FilesystemOptions) -> Self {
        let schema = def.source_schema();
        let partitions = def
            .partition_by
            .iter()
            .filter_map(|name| Some((name.clone(), schema.index_of(name).ok()?)))
            .collect();
        Self {
            options,
            schema,
            partitions,
        }
    }

    /// The files to read, in name order: those of `path`, or of the directories under it of a
    /// partitioned table.
    fn files(&self) -> Result<Vec<PathBuf>> {
        if self.partitions.is_empty() {
            return self.files_in(Path::new(&self.options.path), false);
        }
        let mut dirs = vec![PathBuf::from(&self.options.path)];
        for _ in &self.partitions {
            let mut next = Vec::new();
            for dir in dirs {
                next.extend(self.files_in(&dir, true)?);
            }
            dirs = next;
        }
        let mut files = Vec::new();
        for dir in dirs {
            files.extend(self.files_in(&dir, false)?);
        }
        files.sort();
        Ok(files)
    }

    /// The partition values of `file`, in `PARTITIONED BY` order, from its directories.
    fn partition_values(&self, file: &Path) -> Result<Vec<Option<String>>> {
        let root = Path::new(&self.options.path);
        let relative = file.strip_prefix(root).unwrap_or(file);
        let mut values = Vec::with_capacity(self.partitions.len());
        let dirs: Vec<String> = relative
            .parent()
            .map(|p| {
                p.components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        for ((name, _), dir) in self.partitions.iter().zip(&dirs) {
            let Some((key, value)) = dir.split_once('=') else {
                return exec_err!(
                    "{}: directory {dir} is not {name}=<value> (table {} is PARTITIONED BY {name})",
                    file.display(),
                    self.options.table
                );
            };
            if unescape(key) != *name {
                return exec_err!(
                    "{}: directory {dir} names {key}, not {name} (the table's PARTITIONED BY)",
                    file.display()
                );
            }
            values.push((value != DEFAULT_PARTITION).then(|| unescape(value)));
        }
        if values.len() != self.partitions.len() {
            return exec_err!(
                "{}: not under one directory per partition column",
                file.display()
            );
        }
        Ok(values)
    }

    /// The files (or, with `dirs`, the `name=value` directories) of `dir`.
    fn files_in(&self, dir: &Path, dirs: bool) -> Result<Vec<PathBuf>> {
        let path = dir;
        let meta = std::fs::metadata(path).map_err(|e| {
            let (code, fix) = match e.kind() {
                std::io::ErrorKind::NotFound => (
                    crate::error::UNDEFINED_FILE,
                    "create it, or point the table's 'path' option at a file or directory that \
                     exists",
                ),
                _ => (crate::error::IO_ERROR, "check that the server may read it"),
            };
            crate::error::with_sqlstate(
                code,
                format!(
                    "cannot read path '{}' of table {}: {e}; {fix}",
                    path.display(),
                    self.options.table
                ),
            )
        })?;
        if meta.is_file() {
            return Ok(if dirs {
                vec![]
            } else {
                vec![path.to_path_buf()]
            });
        }
        let mut files = Vec::new();
        let entries = std::fs::read_dir(path)
            .map_err(|e| exec_datafusion_err!("cannot list directory '{}': {e}", path.display()))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| exec_datafusion_err!("cannot list '{}': {e}", path.display()))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Hidden and in-progress files are not data (a partition directory is named
            // after its column, which may start with '_').
            if name.starts_with('.') || name.starts_with('_') && !(dirs && name.contains('=')) {
                continue;
            }
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if dirs && is_dir && name.contains('=') || !dirs && !is_dir {
                files.push(entry.path());
            }
        }
        files.sort();
        Ok(files)
    }
}

impl SourceConnector for FileSource {
    fn name(&self) -> &'static str {
        "filesystem"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn changelog(&self) -> ChangelogMode {
        ChangelogMode::of_changes(self.options.format.format.is_changelog())
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn num_partitions(&self, parallelism: usize) -> Result<usize> {
        let files = self.files().map(|f| f.len()).unwrap_or(1);
        Ok(files.clamp(1, parallelism.max(1)))
    }

    fn open(
        &self,
        partition: usize,
        num_partitions: usize,
        projection: &[usize],
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        let files: Vec<PathBuf> = self
            .files()?
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % num_partitions.max(1) == partition)
            .map(|(_, f)| f)
            .collect();
        let output_schema = Arc::new(self.schema.project(projection)?);
        // A partitioned table's files hold the other columns; the decoder reads those.
        let data: Vec<usize> = (0..self.schema.fields().len())
            .filter(|i| !self.partitions.iter().any(|(_, p)| p == i))
            .collect();
        let data_schema = Arc::new(self.schema.project(&data)?);
        let mut slots = Vec::with_capacity(projection.len());
        let mut data_projection = Vec::new();
        for &c in projection {
            match self.partitions.iter().position(|(_, p)| *p == c) {
                Some(k) => slots.push(Slot::Partition(k, self.schema.field(c).data_type().clone())),
                None => {
                    slots.push(Slot::Data);
                    data_projection.push(data.iter().position(|&d| d == c).unwrap_or(0));
                }
            }
        }
        let decoder = decoder(
            &self.options.format,
            Arc::new(data_schema.project(&data_projection)?),
            data_schema,
            &data_projection,
        )?;
        let partition_values = if self.partitions.is_empty() {
            Vec::new()
        } else {
            files
                .iter()
                .map(|f| self.partition_values(f))
                .collect::<Result<Vec<_>>>()?
        };
        // Set only for csv files (the csv options keep their defaults otherwise).
        let header = self.options.format.csv.header;
        Ok(Box::new(FileReader {
            files,
            partition_values,
            slots: (!self.partitions.is_empty()).then_some(slots),
            output_schema,
            next_file: 0,
            current: None,
            decoder,
            batch_size,
            header,
            resume: std::collections::HashMap::new(),
            done: Vec::new(),
        }))
    }

    fn explain(&self) -> String {
        format!(
            "path={}, format={}",
            self.options.path, self.options.format.format
        )
    }
}

/// Bytes read from a file at a time.
const READ_SIZE: u64 = 4 << 20;

struct OpenFile {
    name: String,
    file: File,
    /// Bytes read and not yet handed out: `buf[start..]`.
    buf: Vec<u8>,
    start: usize,
    /// Bytes to read at a time ([`READ_SIZE`]; small in tests).
    read_size: u64,
    eof: bool,
    /// A `\n` was added after the last line, which had none.
    appended: bool,
    /// Number of the next line.
    line: usize,
    /// Bytes handed out so far (the position to resume at).
    offset: u64,
}

impl OpenFile {
    fn new(name: String, file: File, line: usize, offset: u64) -> Self {
        Self {
            name,
            file,
            buf: Vec::new(),
            start: 0,
            read_size: READ_SIZE,
            eof: false,
            appended: false,
            line,
            offset,
        }
    }

    /// The next (up to) `max_lines` complete lines as a range of `buf`, each line ending in
    /// `\n` (one is added after a last line without it), and their count. Zero lines at the
    /// end of the file. The caller consumes them with [`advance`](Self::advance).
    fn next_lines(&mut self, max_lines: usize) -> Result<(std::ops::Range<usize>, usize)> {
        use std::io::Read;
        let max_lines = max_lines.max(1);
        let mut scanned = self.start;
        let mut count = 0;
        loop {
            for pos in memchr::memchr_iter(b'\n', &self.buf[scanned..]) {
                count += 1;
                if count == max_lines {
                    return Ok((self.start..scanned + pos + 1, count));
                }
            }
            scanned = self.buf.len();
            if self.eof {
                if self.buf.len() > self.start && self.buf.last() != Some(&b'\n') {
                    self.buf.push(b'\n');
                    self.appended = true;
                    count += 1;
                }
                return Ok((self.start..self.buf.len(), count));
            }
            if self.start > 0 {
                self.buf.drain(..self.start);
                scanned -= self.start;
                self.start = 0;
            }
            let read = (&mut self.file)
                .take(self.read_size)
                .read_to_end(&mut self.buf)
                .map_err(|e| exec_datafusion_err!("cannot read {}: {e}", self.name))?;
            self.eof = read == 0;
        }
    }

    /// Consumes the lines of `next_lines`.
    fn advance(&mut self, range: std::ops::Range<usize>, lines: usize) {
        // A `\n` added after an unterminated last line is not in the file.
        let added = usize::from(self.appended && range.end == self.buf.len());
        self.offset += (range.len() - added) as u64;
        self.line += lines;
        self.start = range.end;
    }
}

/// Reads the files of one partition in order.
///
/// Position (for checkpoints): the files finished, the byte offset and line number reached
/// in the current one, and where the reader's files not opened yet resume (restored from
/// another reader's position). Positions name files, not partitions, so a job restored with a
/// different parallelism resumes every file where it stopped.
struct FileReader {
    files: Vec<PathBuf>,
    /// A partitioned table's: each file's partition values, and where each output column
    /// comes from (`None`: the decoder gives every column).
    partition_values: Vec<Vec<Option<String>>>,
    slots: Option<Vec<Slot>>,
    output_schema: SchemaRef,
    next_file: usize,
    current: Option<OpenFile>,
    decoder: Box<dyn LineDecoder>,
    batch_size: usize,
    header: bool,
    /// Restored positions within files: byte offset and line.
    resume: std::collections::HashMap<String, (u64, usize)>,
    /// Files finished, by name.
    done: Vec<String>,
}

/// The checkpoint position of a [`FileReader`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FilePosition {
    /// Files finished, by name.
    done: Vec<String>,
    /// The file being read.
    file: String,
    /// Bytes of `file` handed out: where reading resumes.
    offset: u64,
    /// Number of the next line of `file`.
    line: usize,
    /// Restored offset and line of files of this reader not opened yet: kept until they are,
    /// so that a later restore does not read them from the start.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    resumed: std::collections::BTreeMap<String, (u64, usize)>,
}

impl FileReader {
    /// The restored positions of the files not opened yet.
    fn pending_resumes(&self) -> std::collections::BTreeMap<String, (u64, usize)> {
        self.files[self.next_file.min(self.files.len())..]
            .iter()
            .filter_map(|f| {
                let name = f.display().to_string();
                let at = *self.resume.get(&name)?;
                Some((name, at))
            })
            .collect()
    }

    fn open_next(&mut self) -> Result<bool> {
        let Some(path) = self.files.get(self.next_file) else {
            return Ok(false);
        };
        self.next_file += 1;
        let name = path.display().to_string();
        let mut file =
            File::open(path).map_err(|e| exec_datafusion_err!("cannot open {name}: {e}"))?;
        if let Some(&(offset, line)) = self.resume.get(&name) {
            use std::io::{Seek, SeekFrom};
            file.seek(SeekFrom::Start(offset))
                .map_err(|e| exec_datafusion_err!("cannot resume {name} at byte {offset}: {e}"))?;
            self.current = Some(OpenFile::new(name, file, line, offset));
            return Ok(true);
        }
        let mut open = OpenFile::new(name, file, 1, 0);
        if self.header {
            let (range, lines) = open.next_lines(1)?;
            open.advance(range, lines);
        }
        self.current = Some(open);
        Ok(true)
    }
}

#[async_trait]
impl SourceReader for FileReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        loop {
            if self.current.is_none() && !self.open_next()? {
                return Ok(None);
            }
            let Some(file) = self.current.as_mut() else {
                return exec_err!("no open file");
            };
            let first_line = file.line;
            let (range, lines) = file.next_lines(self.batch_size)?;
            if lines == 0 {
                let finished = file.name.clone();
                self.done.push(finished);
                self.current = None;
                continue;
            }
            let decoded =
                self.decoder
                    .decode_text(&file.name, first_line, &file.buf[range.clone()], lines);
            file.advance(range, lines);
            let position = FilePosition {
                done: self.done.clone(),
                file: file.name.clone(),
                offset: file.offset,
                line: file.line,
                resumed: self.pending_resumes(),
            };
            let position = serde_json::to_value(&position)
                .map_err(|e| exec_datafusion_err!("the position of the filesystem source: {e}"))?;
            let kinds = self.decoder.take_kinds();
            let decoded = match (decoded?, &self.slots) {
                (Some(batch), Some(slots)) => {
                    let values = self.partition_values.get(self.next_file - 1);
                    Some(with_partitions(&batch, slots, values, &self.output_schema)?)
                }
                (decoded, _) => decoded,
            };
            if let Some(batch) = decoded
                && batch.num_rows() > 0
            {
                return Ok(Some(
                    SourceBatch::new(batch)
                        .with_position(position)
                        .with_kinds(kinds),
                ));
            }
        }
    }

    fn restore(
        &mut self,
        _partition: usize,
        _num_partitions: usize,
        saved: &[SavedPosition],
    ) -> Result<()> {
        let mut done = std::collections::HashSet::new();
        for s in saved {
            let p = FilePosition::deserialize(&s.position).map_err(|e| {
                exec_datafusion_err!(
                    "the checkpointed position of the filesystem source does not read as this \
                     version writes it ({e}): {}",
                    s.position
                )
            })?;
            done.extend(p.done);
            // Of two positions in a file, the further one is safe (offsets only move on).
            let entries = (!p.file.is_empty())
                .then_some((p.file, (p.offset, p.line)))
                .into_iter()
                .chain(p.resumed);
            for (file, at) in entries {
                self.resume
                    .entry(file)
                    .and_modify(|old| {
                        if at.0 > old.0 {
                            *old = at;
                        }
                    })
                    .or_insert(at);
            }
        }
        if self.partition_values.len() == self.files.len() {
            let kept: Vec<(PathBuf, Vec<Option<String>>)> = std::mem::take(&mut self.files)
                .into_iter()
                .zip(std::mem::take(&mut self.partition_values))
                .filter(|(f, _)| !done.contains(&f.display().to_string()))
                .collect();
            (self.files, self.partition_values) = kept.into_iter().unzip();
        } else {
            self.files
                .retain(|f| !done.contains(&f.display().to_string()));
        }
        self.done = done.into_iter().collect();
        self.done.sort();
        Ok(())
    }

    fn malformed_records(&self) -> u64 {
        self.decoder.skipped()
    }

    /// The files finished and where the others resume, recorded by a checkpoint taken before
    /// the first batch (or after the reader ended at once).
    fn restored_position(&self) -> Option<serde_json::Value> {
        serde_json::to_value(FilePosition {
            done: self.done.clone(),
            file: String::new(),
            offset: 0,
            line: 0,
            resumed: self.pending_resumes(),
        })
        .ok()
    }
}

/// `batch` (the decoded columns) with the file's partition columns `values` put where
/// `slots` say, as `schema`.
fn with_partitions(
    batch: &RecordBatch,
    slots: &[Slot],
    values: Option<&Vec<Option<String>>>,
    schema: &SchemaRef,
) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let mut data = batch.columns().iter();
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(slots.len());
    for slot in slots {
        match slot {
            Slot::Data => match data.next() {
                Some(c) => columns.push(Arc::clone(c)),
                None => return exec_err!("a partitioned file gave fewer columns than expected"),
            },
            Slot::Partition(k, data_type) => {
                let value = values.and_then(|v| v.get(*k).cloned().flatten());
                let strings: ArrayRef = Arc::new(StringArray::from(vec![value.clone(); n]));
                let typed = cast_with_options(
                    &strings,
                    data_type,
                    &CastOptions {
                        safe: false,
                        ..Default::default()
                    },
                )
                .map_err(|e| {
                    exec_datafusion_err!(
                        "partition value {:?} is not a {data_type}: {e}",
                        value.unwrap_or_default()
                    )
                })?;
                columns.push(typed);
            }
        }
    }
    Ok(RecordBatch::try_new_with_options(
        Arc::clone(schema),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines come out whole across read boundaries; a last line without `\n` gets one; offsets
    /// count the file's bytes and line numbers advance by the lines handed out.
    #[test]
    fn lines_across_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.csv");
        std::fs::write(&path, b"h\r\nab\n\ncdef").unwrap();
        let mut open = OpenFile::new("in.csv".into(), File::open(&path).unwrap(), 1, 0);
        open.read_size = 3;
        let mut chunks = Vec::new();
        loop {
            let (range, lines) = open.next_lines(2).unwrap();
            if lines == 0 {
                break;
            }
            chunks.push((open.buf[range.clone()].to_vec(), lines));
            open.advance(range, lines);
            chunks.push((format!("{}:{}", open.offset, open.line).into_bytes(), 0));
        }
        let expected: Vec<(Vec<u8>, usize)> = vec![
            (b"h\r\nab\n".to_vec(), 2),
            (b"6:3".to_vec(), 0),
            (b"\ncdef\n".to_vec(), 2),
            (b"11:5".to_vec(), 0),
        ];
        assert_eq!(chunks, expected);
        assert_eq!(open.offset, std::fs::metadata(&path).unwrap().len());
    }

    /// A position in the layout readers have always written reads back and writes out
    /// unchanged.
    #[test]
    fn position_layout() {
        let written = serde_json::json!({
            "done": ["/data/in/a.json", "/data/in/b.json"],
            "file": "/data/in/c.json",
            "offset": 4096,
            "line": 57,
        });
        let position = FilePosition::deserialize(&written).unwrap();
        assert_eq!(
            position,
            FilePosition {
                done: vec!["/data/in/a.json".to_string(), "/data/in/b.json".to_string()],
                file: "/data/in/c.json".to_string(),
                offset: 4096,
                line: 57,
                resumed: Default::default(),
            }
        );
        assert_eq!(serde_json::to_value(&position).unwrap(), written);
    }

    /// Restored from two readers' positions, one reader keeps where its unopened file resumes
    /// in every position it hands out (before its first batch too), so that a second restore
    /// does not read that file from the start.
    #[tokio::test]
    async fn positions_keep_unopened_files_resume_points() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.csv");
        let b = dir.path().join("b.csv");
        std::fs::write(&a, "1\n2\n3\n").unwrap();
        std::fs::write(&b, "4\n5\n6\n").unwrap();
        let schema = Arc::new(datafusion::arrow::datatypes::Schema::new(vec![
            datafusion::arrow::datatypes::Field::new(
                "v",
                datafusion::arrow::datatypes::DataType::Int64,
                true,
            ),
        ]));
        let options =
            crate::connectors::format::FormatOptions::new(crate::connectors::format::Format::Csv);
        let decoder =
            crate::connectors::format::decoder(&options, Arc::clone(&schema), schema, &[0])
                .unwrap();
        let mut reader = FileReader {
            files: vec![a.clone(), b.clone()],
            partition_values: Vec::new(),
            slots: None,
            output_schema: Arc::new(datafusion::arrow::datatypes::Schema::empty()),
            next_file: 0,
            current: None,
            decoder,
            batch_size: 1,
            header: false,
            resume: Default::default(),
            done: Vec::new(),
        };
        let saved = |file: &PathBuf, offset: u64, line: usize| crate::connectors::SavedPosition {
            partition: 0,
            num_partitions: 2,
            position: serde_json::to_value(FilePosition {
                done: Vec::new(),
                file: file.display().to_string(),
                offset,
                line,
                resumed: Default::default(),
            })
            .unwrap(),
        };
        reader
            .restore(0, 1, &[saved(&a, 2, 2), saved(&b, 4, 3)])
            .unwrap();
        let before = FilePosition::deserialize(&reader.restored_position().unwrap()).unwrap();
        assert_eq!(before.resumed.len(), 2, "{before:?}");
        let first = reader.next_batch().await.unwrap().unwrap();
        let position = FilePosition::deserialize(&first.position.unwrap()).unwrap();
        assert_eq!(position.file, a.display().to_string());
        assert_eq!(
            position.resumed.get(&b.display().to_string()),
            Some(&(4, 3)),
            "{position:?}"
        );
    }
}
