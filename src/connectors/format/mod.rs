//! Record formats: lines of text to Arrow batches and back.
//!
//! Decoders take a chunk of complete lines and decode it in one go with arrow's JSON or CSV
//! decoder. Only when that fails are the lines decoded one by one, to name the exact line and
//! cause, or, with `<format>.ignore-parse-errors`, to skip the bad lines and count them. The
//! fast path therefore costs nothing for error reporting.

pub mod csv;
pub mod json;
pub mod raw;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err, plan_err};

use super::options::{OptionSpec, TableOptions};

/// A chunk of lines read from one place.
#[derive(Debug, Clone, Copy)]
pub struct LineChunk<'a> {
    /// Where the lines come from, for error messages (a file path, a topic/partition).
    pub origin: &'a str,
    /// Line number of the first line, 1-based.
    pub first_line: usize,
    /// The lines, without line terminators.
    pub lines: &'a [Vec<u8>],
    /// Record offsets (Kafka) of the lines, named in errors instead of line numbers.
    pub offsets: Option<&'a [i64]>,
}

impl<'a> LineChunk<'a> {
    /// Lines of a file, the first being line `first_line`.
    pub fn of_file(origin: &'a str, first_line: usize, lines: &'a [Vec<u8>]) -> Self {
        Self {
            origin,
            first_line,
            lines,
            offsets: None,
        }
    }

    /// Where line `i` of the chunk is, for error messages.
    fn locate(&self, i: usize) -> String {
        match self.offsets.and_then(|o| o.get(i)) {
            Some(offset) => format!("{} at offset {offset}", self.origin),
            None => format!("{} at line {}", self.origin, self.first_line + i),
        }
    }
}

/// Decodes lines of one format into batches of a fixed schema.
pub trait LineDecoder: Send {
    /// Decodes every line of `chunk` (empty lines are skipped).
    fn decode(&mut self, chunk: LineChunk<'_>) -> Result<Option<RecordBatch>>;

    /// Lines skipped as malformed so far.
    fn skipped(&self) -> u64;

    /// Indices of the lines the last `decode` produced rows for, when malformed lines were
    /// skipped; `None` when every non-blank line produced its row.
    fn kept(&self) -> Option<&[usize]>;
}

/// Encodes batches as lines of one format.
pub trait LineEncoder: Send + Sync {
    /// Appends the rows of `batch`, one line each, to `out`.
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()>;

    /// File name extension.
    fn extension(&self) -> &'static str;
}

/// The formats a line-based connector accepts.
pub const FORMATS: &[&str] = &["json", "csv"];

/// Options of the json and csv formats, shared by the connectors that read or write them.
pub const FORMAT_OPTIONS: &[OptionSpec] = &[
    OptionSpec::optional(
        "json.ignore-parse-errors",
        "skip and count malformed records (default: false)",
    ),
    OptionSpec::optional(
        "csv.ignore-parse-errors",
        "skip and count malformed records (default: false)",
    ),
    OptionSpec::optional("csv.field-delimiter", "field separator (default: ,)"),
    OptionSpec::optional("csv.quote-character", "quote character (default: \")"),
];

/// Builds the decoder named by the `format` option for `schema` (the columns to produce;
/// `csv_columns` maps them to positions in a CSV line).
pub fn decoder(
    options: &TableOptions,
    schema: SchemaRef,
    full_schema: SchemaRef,
    projection: &[usize],
) -> Result<Box<dyn LineDecoder>> {
    let format = options.get_choice("format", FORMATS)?.unwrap_or("json");
    decoder_for(format, options, schema, full_schema, projection)
}

/// Builds the decoder of `format` (`json`, `csv`, or `raw`: the one column of `schema`).
pub fn decoder_for(
    format: &str,
    options: &TableOptions,
    schema: SchemaRef,
    full_schema: SchemaRef,
    projection: &[usize],
) -> Result<Box<dyn LineDecoder>> {
    match format {
        "json" => Ok(Box::new(json::JsonDecoder::try_new(schema, options)?)),
        "csv" => Ok(Box::new(csv::CsvDecoder::try_new(
            full_schema,
            projection.to_vec(),
            options,
        )?)),
        "raw" => Ok(Box::new(raw::RawDecoder::new(schema))),
        other => plan_err!("format {other} cannot be decoded"),
    }
}

/// Builds the encoder named by the `format` option.
pub fn encoder(options: &TableOptions) -> Result<Box<dyn LineEncoder>> {
    let format = options.get_choice("format", FORMATS)?.unwrap_or("json");
    encoder_for(format, options)
}

/// Builds the line encoder of `format` (`json` or `csv`).
pub fn encoder_for(format: &str, options: &TableOptions) -> Result<Box<dyn LineEncoder>> {
    match format {
        "json" => Ok(Box::new(json::JsonEncoder)),
        "csv" => Ok(Box::new(csv::CsvEncoder::try_new(options)?)),
        other => plan_err!("format {other} cannot be encoded as lines"),
    }
}

/// Shared slow path: decodes lines one by one with `decode_one`, skipping (and counting) or
/// reporting the first bad line.
pub(crate) fn decode_line_by_line<F>(
    chunk: LineChunk<'_>,
    ignore_errors: bool,
    skipped: &mut u64,
    kept: &mut Vec<usize>,
    format: &str,
    mut decode_one: F,
) -> Result<Vec<RecordBatch>>
where
    F: FnMut(&[u8]) -> std::result::Result<Option<RecordBatch>, String>,
{
    let mut batches = Vec::new();
    kept.clear();
    for (i, line) in chunk.lines.iter().enumerate() {
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        match decode_one(line) {
            Ok(Some(b)) => {
                kept.extend(std::iter::repeat_n(i, b.num_rows()));
                batches.push(b);
            }
            Ok(None) => {}
            Err(cause) => {
                if ignore_errors {
                    *skipped += 1;
                    continue;
                }
                let text = String::from_utf8_lossy(line);
                let shown: String = text.chars().take(200).collect();
                return exec_err!(
                    "malformed {format} record in {}: {cause}. The record: {shown}. \
                     Fix the record, or set '{format}.ignore-parse-errors' = 'true' to skip \
                     (and count) malformed records",
                    chunk.locate(i)
                );
            }
        }
    }
    Ok(batches)
}
