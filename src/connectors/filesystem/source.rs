//! Reading files line by line into Arrow batches.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{Result, exec_datafusion_err, exec_err};

use crate::catalog::table_definition::TableDefinition;
use crate::connectors::format::{LineChunk, LineDecoder, decoder};
use crate::connectors::options::TableOptions;
use crate::connectors::{SavedPosition, SourceBatch, SourceConnector, SourceReader};

/// The source side of a filesystem table.
#[derive(Debug)]
pub struct FileSource {
    path: String,
    schema: SchemaRef,
    options: TableOptions,
}

impl FileSource {
    /// A source reading `path`.
    pub fn new(def: &TableDefinition, path: String) -> Self {
        Self {
            path,
            schema: def.source_schema(),
            options: def.options.clone(),
        }
    }

    /// The files to read, in name order.
    fn files(&self) -> Result<Vec<PathBuf>> {
        let path = Path::new(&self.path);
        let meta = std::fs::metadata(path).map_err(|e| {
            exec_datafusion_err!(
                "cannot read path '{}' of table {}: {e}",
                self.path,
                self.options.table()
            )
        })?;
        if meta.is_file() {
            return Ok(vec![path.to_path_buf()]);
        }
        let mut files = Vec::new();
        let entries = std::fs::read_dir(path)
            .map_err(|e| exec_datafusion_err!("cannot list directory '{}': {e}", self.path))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| exec_datafusion_err!("cannot list '{}': {e}", self.path))?;
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
            &self.options,
            output_schema,
            Arc::clone(&self.schema),
            projection,
        )?;
        let header = self.options.get("format") == Some("csv")
            && self.options.get_bool("csv.header")?.unwrap_or(false);
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
            self.path,
            self.options.get("format").unwrap_or("json")
        )
    }
}

struct OpenFile {
    name: String,
    reader: BufReader<File>,
    line: usize,
    /// Bytes consumed so far.
    offset: u64,
}

/// Reads the files of one partition in order.
///
/// Position (for checkpoints): the files finished and the byte offset and line number reached
/// in the current one. Positions name files, not partitions, so a job restored with a different
/// parallelism resumes every file where it stopped.
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

impl FileReader {
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
            self.current = Some(OpenFile {
                name,
                reader: BufReader::with_capacity(1 << 20, file),
                line,
                offset,
            });
            return Ok(true);
        }
        let mut open = OpenFile {
            name,
            reader: BufReader::with_capacity(1 << 20, file),
            line: 1,
            offset: 0,
        };
        if self.header {
            let mut skip = Vec::new();
            open.reader
                .read_until(b'\n', &mut skip)
                .map_err(|e| exec_datafusion_err!("cannot read {}: {e}", open.name))?;
            open.line += 1;
            open.offset += skip.len() as u64;
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
            let mut lines: Vec<Vec<u8>> = Vec::with_capacity(self.batch_size);
            while lines.len() < self.batch_size {
                let mut line = Vec::new();
                let read = file
                    .reader
                    .read_until(b'\n', &mut line)
                    .map_err(|e| exec_datafusion_err!("cannot read {}: {e}", file.name))?;
                if read == 0 {
                    break;
                }
                file.offset += read as u64;
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                lines.push(line);
            }
            file.line += lines.len();
            if lines.is_empty() {
                let finished = file.name.clone();
                self.done.push(finished);
                self.current = None;
                continue;
            }
            let position = serde_json::json!({
                "done": self.done,
                "file": file.name,
                "offset": file.offset,
                "line": file.line,
            });
            let chunk = LineChunk {
                origin: &file.name,
                first_line,
                lines: &lines,
                offsets: None,
            };
            if let Some(batch) = self.decoder.decode(chunk)?
                && batch.num_rows() > 0
            {
                return Ok(Some(SourceBatch::new(batch).with_position(position)));
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
            let p = &s.position;
            for name in p
                .get("done")
                .and_then(|d| d.as_array())
                .into_iter()
                .flatten()
            {
                if let Some(name) = name.as_str() {
                    done.insert(name.to_string());
                }
            }
            if let (Some(file), Some(offset), Some(line)) = (
                p.get("file").and_then(|v| v.as_str()),
                p.get("offset").and_then(|v| v.as_u64()),
                p.get("line").and_then(|v| v.as_u64()),
            ) {
                self.resume
                    .insert(file.to_string(), (offset, line as usize));
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
}
