//! Record formats: lines of text to Arrow batches and back.
//!
//! Decoders take a chunk of complete lines and decode it in one go with arrow's JSON or CSV
//! decoder. Only when that fails are the lines decoded one by one, to name the exact line and
//! cause, or, with `<format>.ignore-parse-errors`, to skip the bad lines and count them. The
//! fast path therefore costs nothing for error reporting.
//!
//! A table's `format` and the options of that format are read once, when the table is
//! declared, into [`FormatOptions`]; decoders and encoders are built from it.

pub mod csv;
pub mod debezium;
pub mod json;
pub mod raw;

pub use csv::CsvOptions;

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Int8Array, PrimitiveArray, StringArray};
use datafusion::arrow::compute::kernels::cast_utils::parse_decimal;
use datafusion::arrow::datatypes::{
    DataType, Decimal32Type, Decimal64Type, Decimal128Type, Decimal256Type, DecimalType, Schema,
    SchemaRef,
};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{Result, exec_err, internal_err, plan_err};

use crate::catalog::options::{OptionSpec, TableOptions};

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

    /// Whether each line is a whole record (of a topic), so that a value never spans two and
    /// each must give its own row; a file's record may span lines (a quoted line break in
    /// CSV, pretty-printed JSON).
    pub fn lines_are_records(&self) -> bool {
        self.offsets.is_some()
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

    /// Decodes `text`: `lines` complete lines of `origin`, each ending in `\n`, the first
    /// being line `first_line`. The same result as [`decode`](Self::decode) of the lines; a
    /// decoder overrides it to decode the text in place, without splitting it.
    fn decode_text(
        &mut self,
        origin: &str,
        first_line: usize,
        text: &[u8],
        lines: usize,
    ) -> Result<Option<RecordBatch>> {
        let _ = lines;
        let split = split_lines(text);
        self.decode(LineChunk::of_file(origin, first_line, &split))
    }

    /// Lines skipped as malformed so far.
    fn skipped(&self) -> u64;

    /// For each row the last `decode` produced, the index of the line it came from, when that
    /// is not simply every line in turn (blank or malformed lines were skipped, or a line
    /// gave several rows); `None` when every line produced its row, or when a record of a
    /// file spanned lines (see [`LineChunk::lines_are_records`]).
    fn kept(&self) -> Option<&[usize]>;

    /// A changelog format's row kinds (`RowKind` numbers) of the rows the last `decode`
    /// produced; `None` for formats whose rows are all inserts.
    fn take_kinds(&mut self) -> Option<Int8Array> {
        None
    }
}

/// The lines of `text` (each ending in `\n`), without their terminators (`\n`, `\r\n`).
pub(crate) fn split_lines(text: &[u8]) -> Vec<Vec<u8>> {
    let text = text.strip_suffix(b"\n").unwrap_or(text);
    if text.is_empty() {
        return vec![Vec::new()];
    }
    text.split(|b| *b == b'\n')
        .map(|line| {
            let mut end = line.len();
            while end > 0 && line[end - 1] == b'\r' {
                end -= 1;
            }
            line[..end].to_vec()
        })
        .collect()
}

/// Encodes batches as lines of one format.
pub trait LineEncoder: Send + Sync {
    /// Appends the rows of `batch`, one line each, to `out`.
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()>;

    /// Appends changelog rows, `kinds` saying what each does (`RowKind` numbers); only for a
    /// format that [is a changelog](Format::is_changelog).
    fn encode_changes(
        &mut self,
        _batch: &RecordBatch,
        _kinds: &Int8Array,
        _out: &mut Vec<u8>,
    ) -> Result<()> {
        internal_err!("this format cannot write changelog rows")
    }

    /// File name extension.
    fn extension(&self) -> &'static str;
}

/// The formats a line-based connector accepts.
pub const FORMATS: &[&str] = &["json", "csv", "debezium-json"];

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
    OptionSpec::optional(
        "debezium-json.ignore-parse-errors",
        "skip and count malformed change events (default: false)",
    ),
    OptionSpec::optional("csv.field-delimiter", "field separator (default: ,)"),
    OptionSpec::optional("csv.quote-character", "quote character (default: \")"),
];

/// A record format, as the `format` option (or Kafka's `key.format`) names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON lines: one object per record, fields matched to columns by name.
    Json,
    /// CSV: one line per record, fields by position.
    Csv,
    /// The whole record value is the one column (Kafka only).
    Raw,
    /// Debezium's JSON change events: a changelog ([`debezium`]).
    DebeziumJson,
}

impl Format {
    /// The option value naming the format.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Csv => "csv",
            Self::Raw => "raw",
            Self::DebeziumJson => "debezium-json",
        }
    }

    /// True if its records are changes (inserts, updates, deletes), not only rows to append.
    pub fn is_changelog(self) -> bool {
        self == Self::DebeziumJson
    }

    /// Reads option `key`, one of `choices` (format names, matched case-insensitively);
    /// `None` when it is not set.
    pub fn parse(
        options: &TableOptions,
        key: &str,
        choices: &[&'static str],
    ) -> Result<Option<Self>> {
        let Some(name) = options.get_choice(key, choices)? else {
            return Ok(None);
        };
        match [Self::Json, Self::Csv, Self::Raw, Self::DebeziumJson]
            .into_iter()
            .find(|f| f.name() == name)
        {
            Some(format) => Ok(Some(format)),
            None => internal_err!("option '{key}' accepts '{name}', which is not a format"),
        }
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How a table's records are written: the `format` option and the options of that format,
/// read once when the table is declared. Only the chosen format's options are read: a json
/// table never looks at `csv.*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatOptions {
    /// `format` (default `json`).
    pub format: Format,
    /// `json.ignore-parse-errors` or `csv.ignore-parse-errors`, whichever belongs to `format`:
    /// skip and count malformed records instead of failing (default `false`; always `false`
    /// for raw).
    pub ignore_parse_errors: bool,
    /// The `csv.*` options; their defaults unless `format` is csv.
    pub csv: CsvOptions,
}

impl FormatOptions {
    /// `format` with every option at its default.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            ignore_parse_errors: false,
            csv: CsvOptions::default(),
        }
    }

    /// Reads `format` (one of `choices`, default `json`) and the options of that format.
    pub fn parse(options: &TableOptions, choices: &[&'static str]) -> Result<Self> {
        let format = Format::parse(options, "format", choices)?.unwrap_or(Format::Json);
        Self::parse_for(format, options)
    }

    /// Reads the options of `format`.
    pub fn parse_for(format: Format, options: &TableOptions) -> Result<Self> {
        match format {
            Format::Json => Ok(Self {
                ignore_parse_errors: options
                    .get_bool("json.ignore-parse-errors")?
                    .unwrap_or(false),
                ..Self::new(format)
            }),
            Format::Csv => {
                let csv = CsvOptions::parse(options)?;
                Ok(Self {
                    format,
                    ignore_parse_errors: options
                        .get_bool("csv.ignore-parse-errors")?
                        .unwrap_or(false),
                    csv,
                })
            }
            Format::Raw => Ok(Self::new(format)),
            Format::DebeziumJson => Ok(Self {
                ignore_parse_errors: options
                    .get_bool("debezium-json.ignore-parse-errors")?
                    .unwrap_or(false),
                ..Self::new(format)
            }),
        }
    }
}

/// Builds the decoder of `options.format` producing `schema`, the columns `projection` of
/// `full_schema` (CSV fields are positional, so the CSV decoder needs them all; raw fills the
/// one column of `schema`).
pub fn decoder(
    options: &FormatOptions,
    schema: SchemaRef,
    full_schema: SchemaRef,
    projection: &[usize],
) -> Result<Box<dyn LineDecoder>> {
    match options.format {
        Format::Json => Ok(Box::new(json::JsonDecoder::new(
            schema,
            options.ignore_parse_errors,
        ))),
        Format::Csv => Ok(Box::new(csv::CsvDecoder::try_new(
            full_schema,
            projection.to_vec(),
            &options.csv,
            options.ignore_parse_errors,
        )?)),
        Format::Raw => Ok(Box::new(raw::RawDecoder::new(schema))),
        Format::DebeziumJson => Ok(Box::new(debezium::DebeziumJsonDecoder::new(
            schema,
            options.ignore_parse_errors,
        ))),
    }
}

/// Builds the line encoder of `options.format` (json or csv).
pub fn encoder(options: &FormatOptions) -> Result<Box<dyn LineEncoder>> {
    match options.format {
        Format::Json => Ok(Box::new(json::JsonEncoder)),
        Format::Csv => Ok(Box::new(csv::CsvEncoder::new(&options.csv))),
        Format::Raw => plan_err!("format raw cannot be encoded as lines"),
        Format::DebeziumJson => Ok(Box::new(debezium::DebeziumJsonEncoder)),
    }
}

/// Decimal columns read as text, then checked and parsed here.
///
/// Arrow's decimal parser (used by its CSV and JSON decoders and its casts) keeps the exponent
/// in 16 bits and counts digits in 16 bits: a field like `1e40000` overflows it, which panics
/// in a debug build and silently gives a wrong value otherwise. So decimal fields are decoded
/// as text, every value is checked to be short enough and its exponent small enough for any
/// DECIMAL, and only then parsed (an error otherwise, for the line-by-line path to name).
#[derive(Debug, Clone)]
pub(crate) struct DecimalText {
    /// The schema the format's decoder produces: the output's, decimals as UTF-8 text.
    pub text_schema: SchemaRef,
    /// The output schema.
    output: SchemaRef,
    /// Output columns that are decimals.
    decimals: Vec<usize>,
}

/// Longest text a DECIMAL value is read from (76 digits, a sign, a point, an exponent).
const MAX_DECIMAL_TEXT: usize = 128;

/// Largest exponent magnitude a DECIMAL value is read with.
const MAX_DECIMAL_EXPONENT: i64 = 1_000;

impl DecimalText {
    /// For decoders producing `output`; `None` when it has no decimal column.
    pub fn of(output: &SchemaRef) -> Option<Self> {
        let decimals: Vec<usize> = output
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| is_decimal(f.data_type()))
            .map(|(i, _)| i)
            .collect();
        if decimals.is_empty() {
            return None;
        }
        Some(Self {
            text_schema: text_schema(output),
            output: Arc::clone(output),
            decimals,
        })
    }

    /// `batch` (in [`text_schema`](Self::text_schema)) with its decimal columns parsed.
    pub fn parse(&self, batch: RecordBatch) -> std::result::Result<RecordBatch, String> {
        let mut columns = batch.columns().to_vec();
        for &i in &self.decimals {
            let target = self.output.field(i).data_type();
            let Some(text) = columns[i].as_string_opt::<i32>() else {
                return Err(format!(
                    "column {} was not decoded as text",
                    self.output.field(i).name()
                ));
            };
            for value in text.iter().flatten() {
                check_decimal_text(value, target)?;
            }
            columns[i] = parse_decimals(text, target)
                .map_err(|e| format!("column {}: {e}", self.output.field(i).name()))?;
        }
        RecordBatch::try_new_with_options(
            Arc::clone(&self.output),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )
        .map_err(|e| e.to_string())
    }
}

/// Checked decimal text (see [`check_decimal_text`]) parsed as arrow's decoders parse it.
fn parse_decimals(
    text: &StringArray,
    target: &DataType,
) -> std::result::Result<ArrayRef, ArrowError> {
    fn parse<T: DecimalType>(
        text: &StringArray,
        precision: u8,
        scale: i8,
    ) -> std::result::Result<ArrayRef, ArrowError> {
        let values = text
            .iter()
            .map(|v| {
                v.map(|v| parse_decimal::<T>(v, precision, scale))
                    .transpose()
            })
            .collect::<std::result::Result<PrimitiveArray<T>, ArrowError>>()?;
        Ok(Arc::new(values.with_precision_and_scale(precision, scale)?))
    }
    match target {
        DataType::Decimal32(p, s) => parse::<Decimal32Type>(text, *p, *s),
        DataType::Decimal64(p, s) => parse::<Decimal64Type>(text, *p, *s),
        DataType::Decimal128(p, s) => parse::<Decimal128Type>(text, *p, *s),
        DataType::Decimal256(p, s) => parse::<Decimal256Type>(text, *p, *s),
        other => Err(ArrowError::InvalidArgumentError(format!(
            "{other} is not a decimal"
        ))),
    }
}

fn is_decimal(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Decimal32(_, _)
            | DataType::Decimal64(_, _)
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _)
    )
}

/// `schema` with its decimal fields as UTF-8 text.
pub(crate) fn text_schema(schema: &SchemaRef) -> SchemaRef {
    Arc::new(Schema::new_with_metadata(
        schema
            .fields()
            .iter()
            .map(|f| {
                if is_decimal(f.data_type()) {
                    Arc::new(f.as_ref().clone().with_data_type(DataType::Utf8))
                } else {
                    Arc::clone(f)
                }
            })
            .collect::<Vec<_>>(),
        schema.metadata().clone(),
    ))
}

/// Refuses decimal text arrow's parser would overflow on (see [`DecimalText`]).
fn check_decimal_text(value: &str, target: &DataType) -> std::result::Result<(), String> {
    if value.len() > MAX_DECIMAL_TEXT {
        return Err(format!(
            "a value of {} characters is too long for a {target}",
            value.len()
        ));
    }
    if let Some(at) = value.find(['e', 'E']) {
        let exponent = value[at + 1..].trim_start_matches('+');
        let fits = exponent
            .parse::<i64>()
            .is_ok_and(|e| e.abs() <= MAX_DECIMAL_EXPONENT);
        if !fits {
            return Err(format!(
                "{value:?} is not a {target}: its exponent is out of range"
            ));
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests;
