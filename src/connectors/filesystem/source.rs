//! Reading files line by line into Arrow batches.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, exec_datafusion_err, exec_err};
use serde::{Deserialize, Serialize};

use super::FilesystemOptions;
use crate::catalog::table_definition::TableDefinition;
use crate::changelog::ChangelogMode;
use crate::connectors::format::{LineDecoder, decoder};
use crate::connectors::{SavedPosition, SourceBatch, SourceConnector, SourceReader};

/// The source side of a filesystem table.
#[derive(Debug)]
pub struct FileSource {
    options: FilesystemOptions,
    schema: SchemaRef,
}

impl FileSource {
    /// The source of `def`, reading `options.path`.
    pub fn new(def: &TableDefinition, options: FilesystemOptions) -> Self {
        Self {
            options,
            schema: def.source_schema(),
        }
    }

    /// The files to read, in name order.
    fn files(&self) -> Result<Vec<PathBuf>> {
        let path = Path::new(&self.options.path);
        let meta = std::fs::metadata(path).map_err(|e| {
            exec_datafusion_err!(
                "cannot read path '{}' of table {}: {e}",
                self.options.path,
                self.options.table
            )
        })?;
        if meta.is_file() {
            return Ok(vec![path.to_path_buf()]);
        }
        let mut files = Vec::new();
        let entries = std::fs::read_dir(path).map_err(|e| {
            exec_datafusion_err!("cannot list directory '{}': {e}", self.options.path)
        })?;
        for entry in entries {
            let entry = entry
                .map_err(|e| exec_datafusion_err!("cannot list '{}': {e}", self.options.path))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            // Hidden and in-progress files are not data.
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            if entry.file_type().is_ok_and(|t| t.is_file()) {
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
        let decoder = decoder(
            &self.options.format,
            output_schema,
            Arc::clone(&self.schema),
            projection,
        )?;
        // Set only for csv files (the csv options keep their defaults otherwise).
        let header = self.options.format.csv.header;
        Ok(Box::new(FileReader {
            files,
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
            if let Some(batch) = decoded?
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
        self.files
            .retain(|f| !done.contains(&f.display().to_string()));
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
