//! CSV: one record per line, fields by position in declaration order (as Flink's csv format).
//!
//! Options: `csv.field-delimiter` (default `,`), `csv.quote-character` (default `"`),
//! `csv.ignore-parse-errors`, and `csv.header` (default `false`; when `true` the first line of
//! each file is a header and skipped), read once into [`CsvOptions`] and
//! [`FormatOptions`](super::FormatOptions).

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, ArrowPrimitiveType, PrimitiveBuilder, StringArray, StringViewArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::compute::kernels::cast_utils::Parser;
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::csv::reader::ReaderBuilder;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, plan_err};

use super::{DecimalText, LineChunk, LineDecoder, LineEncoder, decode_line_by_line, text_schema};
use crate::catalog::options::TableOptions;

/// The `csv.*` options that shape the text (see the module docs), read once when the table is
/// declared. `csv.ignore-parse-errors` is in [`FormatOptions`](super::FormatOptions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvOptions {
    /// `csv.field-delimiter`: the field separator (default `,`; `\t` stands for a tab).
    pub delimiter: u8,
    /// `csv.quote-character`: encloses a field holding the delimiter, when reading
    /// (default `"`).
    pub quote: u8,
    /// `csv.header`: each file starts with a header line, which reading skips and writing
    /// writes (default `false`).
    pub header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            delimiter: b',',
            quote: b'"',
            header: false,
        }
    }
}

impl CsvOptions {
    /// Reads `csv.field-delimiter`, `csv.quote-character` and `csv.header`.
    pub fn parse(options: &TableOptions) -> Result<Self> {
        Ok(Self {
            delimiter: single_byte(options, "csv.field-delimiter", b',')?,
            quote: single_byte(options, "csv.quote-character", b'"')?,
            header: options.get_bool("csv.header")?.unwrap_or(false),
        })
    }
}

/// A one-character option (`\t` stands for a tab).
/// `line` without the line ends (`\n`, `\r`) it ends in.
fn without_line_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b'\n' | b'\r'))
        .map_or(0, |i| i + 1);
    &line[..end]
}

fn single_byte(options: &TableOptions, key: &str, default: u8) -> Result<u8> {
    match options.get(key) {
        None => Ok(default),
        Some(v) => {
            let v = match v {
                "\\t" => "\t",
                other => other,
            };
            if v.len() == 1 {
                Ok(v.as_bytes()[0])
            } else {
                plan_err!(
                    "option '{key}' of table {} must be a single character, got '{v}'",
                    options.table()
                )
            }
        }
    }
}

/// Decodes CSV lines (see the module docs).
pub struct CsvDecoder {
    /// All source columns (CSV fields are positional), decimals as text (see
    /// [`DecimalText`]).
    full_schema: SchemaRef,
    projection: Vec<usize>,
    output_schema: SchemaRef,
    /// Decimal columns of the output, parsed from their text.
    decimals: Option<DecimalText>,
    /// The output schema with decimals as text: what the decoding produces before
    /// [`DecimalText::parse`].
    read_schema: SchemaRef,
    delimiter: u8,
    quote: u8,
    ignore_errors: bool,
    skipped: u64,
    kept: Option<Vec<usize>>,
    /// Every projected column has a type [`decode_plain`](Self::decode_plain) builds.
    plain: bool,
}

/// Types the plain path builds, with arrow's CSV decoder's parsing.
fn plain_type(data_type: &DataType) -> bool {
    use DataType::*;
    matches!(
        data_type,
        Int8 | Int16
            | Int32
            | Int64
            | UInt8
            | UInt16
            | UInt32
            | UInt64
            | Float32
            | Float64
            | Utf8
            | Utf8View
    )
}

/// Parses every field with `T::parse` (as arrow's CSV decoder does); empty is NULL.
fn plain_primitive<'a, T>(fields: impl Iterator<Item = &'a str>, rows: usize) -> Option<ArrayRef>
where
    T: ArrowPrimitiveType + Parser,
{
    let mut builder = PrimitiveBuilder::<T>::with_capacity(rows);
    for s in fields {
        if s.is_empty() {
            builder.append_null();
        } else {
            builder.append_value(T::parse(s)?);
        }
    }
    Some(Arc::new(builder.finish()))
}

/// [`plain_primitive`] for a numeric `data_type`.
fn plain_numbers<'a>(
    data_type: &DataType,
    fields: impl Iterator<Item = &'a str>,
    rows: usize,
) -> Option<ArrayRef> {
    use datafusion::arrow::datatypes::*;
    match data_type {
        DataType::Int8 => plain_primitive::<Int8Type>(fields, rows),
        DataType::Int16 => plain_primitive::<Int16Type>(fields, rows),
        DataType::Int32 => plain_primitive::<Int32Type>(fields, rows),
        DataType::Int64 => plain_primitive::<Int64Type>(fields, rows),
        DataType::UInt8 => plain_primitive::<UInt8Type>(fields, rows),
        DataType::UInt16 => plain_primitive::<UInt16Type>(fields, rows),
        DataType::UInt32 => plain_primitive::<UInt32Type>(fields, rows),
        DataType::UInt64 => plain_primitive::<UInt64Type>(fields, rows),
        DataType::Float32 => plain_primitive::<Float32Type>(fields, rows),
        DataType::Float64 => plain_primitive::<Float64Type>(fields, rows),
        _ => None,
    }
}

impl CsvDecoder {
    /// A decoder of lines with the fields of `full_schema`, producing the `projection` columns;
    /// with `ignore_parse_errors`, malformed lines are skipped and counted.
    pub fn try_new(
        full_schema: SchemaRef,
        projection: Vec<usize>,
        csv: &CsvOptions,
        ignore_parse_errors: bool,
    ) -> Result<Self> {
        let output_schema = Arc::new(full_schema.project(&projection)?);
        let decimals = DecimalText::of(&output_schema);
        let read_schema = decimals
            .as_ref()
            .map_or_else(|| Arc::clone(&output_schema), |d| d.text_schema.clone());
        let full_schema = text_schema(&full_schema);
        let plain = projection.iter().all(|&i| {
            full_schema
                .fields()
                .get(i)
                .is_some_and(|f| plain_type(f.data_type()))
        });
        Ok(Self {
            full_schema,
            projection,
            output_schema,
            decimals,
            read_schema,
            delimiter: csv.delimiter,
            quote: csv.quote,
            ignore_errors: ignore_parse_errors,
            skipped: 0,
            kept: None,
            plain,
        })
    }

    /// The fast path for plain text: no quote character and no carriage return anywhere,
    /// valid UTF-8, every line with exactly the schema's fields, and projected columns of
    /// [`plain_type`]s. Fields are split at the delimiter and the line end (as arrow's CSV
    /// decoder splits such text) and parsed as it parses them. `None` when any of that does
    /// not hold or a value does not parse: the caller then decodes with arrow's decoder.
    fn decode_plain(&self, text: &[u8], lines: usize) -> Option<RecordBatch> {
        if !self.plain || memchr::memchr2(self.quote, b'\r', text).is_some() {
            return None;
        }
        let text = std::str::from_utf8(text).ok()?;
        let width = self.full_schema.fields().len();
        // End of every field, row after row.
        let mut ends = Vec::with_capacity(lines * width);
        let mut in_line = 0;
        for position in memchr::memchr2_iter(self.delimiter, b'\n', text.as_bytes()) {
            ends.push(position);
            in_line += 1;
            if text.as_bytes()[position] == b'\n' {
                if in_line != width {
                    return None;
                }
                in_line = 0;
            }
        }
        if in_line != 0 || ends.len() != lines * width {
            return None;
        }
        let field = |row: usize, column: usize| -> &str {
            let at = row * width + column;
            let start = if at == 0 { 0 } else { ends[at - 1] + 1 };
            &text[start..ends[at]]
        };
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.projection.len());
        for &c in &self.projection {
            let values = (0..lines).map(|r| field(r, c));
            let array: ArrayRef = match self.full_schema.field(c).data_type() {
                DataType::Utf8 => Arc::new(
                    values
                        .map(|s| (!s.is_empty()).then_some(s))
                        .collect::<StringArray>(),
                ),
                DataType::Utf8View => Arc::new(
                    values
                        .map(|s| (!s.is_empty()).then_some(s))
                        .collect::<StringViewArray>(),
                ),
                other => plain_numbers(other, values, lines)?,
            };
            columns.push(array);
        }
        let batch = RecordBatch::try_new(Arc::clone(&self.read_schema), columns).ok()?;
        self.parse_decimals(Some(batch)).ok().flatten()
    }

    /// `batch` with its decimal columns parsed from their text (see [`DecimalText`]).
    fn parse_decimals(
        &self,
        batch: Option<RecordBatch>,
    ) -> std::result::Result<Option<RecordBatch>, String> {
        match (batch, &self.decimals) {
            (Some(batch), Some(d)) => d.parse(batch).map(Some),
            (batch, _) => Ok(batch),
        }
    }

    fn decode_bytes(
        &self,
        text: &[u8],
        rows: usize,
    ) -> std::result::Result<Option<RecordBatch>, String> {
        let mut decoder = ReaderBuilder::new(Arc::clone(&self.full_schema))
            .with_header(false)
            .with_delimiter(self.delimiter)
            .with_quote(self.quote)
            .with_projection(self.projection.clone())
            .with_batch_size(rows.max(1))
            .build_decoder();
        let mut offset = 0;
        while offset < text.len() {
            let read = decoder.decode(&text[offset..]).map_err(|e| e.to_string())?;
            if read == 0 {
                break;
            }
            offset += read;
        }
        // The decoder stops when its batch (one row per record) is full: anything left means a
        // record held more than one CSV line.
        if !text[offset..].iter().all(u8::is_ascii_whitespace) {
            return Err("a record holds more than one CSV line; write one row per record".into());
        }
        // The end of the text ends a record only inside a quoted field that never closed
        // (otherwise that record would be dropped without a word).
        let room = decoder.capacity();
        decoder.decode(&[]).map_err(|e| e.to_string())?;
        if decoder.capacity() != room {
            return Err(format!(
                "a quoted field is not closed; close it with {:?}",
                self.quote as char
            ));
        }
        let batch = decoder.flush().map_err(|e| e.to_string())?;
        self.parse_decimals(batch)
    }
}

impl LineDecoder for CsvDecoder {
    fn decode_text(
        &mut self,
        origin: &str,
        first_line: usize,
        text: &[u8],
        lines: usize,
    ) -> Result<Option<RecordBatch>> {
        // Fast paths: the whole text at once, plain text split here or any text by arrow's
        // decoder, accepted when they gave one row per line. Blank lines, records over several
        // lines and bad records take the line-by-line path, which skips, names or counts them.
        // (With a single column a blank line would be a row here, so that case always takes
        // it.)
        if self.full_schema.fields().len() > 1 {
            let whole = match self.decode_plain(text, lines) {
                Some(batch) => Some(batch),
                None => self
                    .decode_bytes(text, lines)
                    .ok()
                    .flatten()
                    .filter(|b| b.num_rows() == lines),
            };
            if let Some(batch) = whole {
                self.kept = None;
                return Ok(Some(batch));
            }
        }
        let split = super::split_lines(text);
        self.decode(LineChunk::of_file(origin, first_line, &split))
    }

    fn decode(&mut self, chunk: LineChunk<'_>) -> Result<Option<RecordBatch>> {
        // Fast path: the non-blank lines at once, accepted when each gave one row, so that
        // rows map to lines, or, for a file, when a quoted line break joined lines. A record
        // of a topic holding a line break could hold two rows, or end in the next one's
        // quote: such chunks take the record-by-record path.
        let mut text = Vec::with_capacity(chunk.lines.iter().map(|l| l.len() + 1).sum());
        let mut kept = Vec::with_capacity(chunk.lines.len());
        let mut breaks = false;
        for (i, line) in chunk.lines.iter().enumerate() {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            // (A line end a producer left on its record is no break: outside a quote it ends
            // the row as the joining one does, inside one the quote is unclosed either way.)
            let line = without_line_end(line);
            breaks |= chunk.lines_are_records() && memchr::memchr2(b'\n', b'\r', line).is_some();
            text.extend_from_slice(line);
            text.push(b'\n');
            kept.push(i);
        }
        if kept.is_empty() {
            self.kept = None;
            return Ok(None);
        }
        if !breaks && let Ok(batch) = self.decode_bytes(&text, kept.len()) {
            if batch.as_ref().map_or(0, RecordBatch::num_rows) == kept.len() {
                self.kept = (kept.len() != chunk.lines.len()).then_some(kept);
                return Ok(batch);
            }
            if !chunk.lines_are_records() {
                self.kept = None;
                return Ok(batch);
            }
        }
        let mut skipped = self.skipped;
        let mut kept = self.kept.take().unwrap_or_default();
        let batches = decode_line_by_line(
            chunk,
            self.ignore_errors,
            &mut skipped,
            &mut kept,
            "csv",
            |line| {
                let mut text = line.to_vec();
                text.push(b'\n');
                self.decode_bytes(&text, 1)
            },
        )?;
        self.skipped = skipped;
        self.kept = Some(kept);
        if batches.is_empty() {
            return Ok(None);
        }
        Ok(Some(concat_batches(&self.output_schema, &batches)?))
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }

    fn kept(&self) -> Option<&[usize]> {
        self.kept.as_deref()
    }
}

/// Encodes rows as CSV lines, without a header unless `csv.header` is true.
pub struct CsvEncoder {
    delimiter: u8,
    header: bool,
    wrote_header: bool,
}

impl CsvEncoder {
    /// An encoder with the delimiter and header of `csv`.
    pub fn new(csv: &CsvOptions) -> Self {
        Self {
            delimiter: csv.delimiter,
            header: csv.header,
            wrote_header: false,
        }
    }
}

impl LineEncoder for CsvEncoder {
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        let header = self.header && !self.wrote_header;
        self.wrote_header |= header;
        let mut writer = WriterBuilder::new()
            .with_header(header)
            .with_delimiter(self.delimiter)
            .build(out);
        writer.write(batch)?;
        Ok(())
    }

    fn extension(&self) -> &'static str {
        "csv"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::format::{Format, FormatOptions};
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};

    fn options(pairs: &[(&str, &str)]) -> TableOptions {
        TableOptions::of_pairs(pairs)
    }

    /// The decoder of a csv table with the WITH options `pairs`.
    fn decoder(
        full_schema: SchemaRef,
        projection: Vec<usize>,
        pairs: &[(&str, &str)],
    ) -> Result<CsvDecoder> {
        let format = FormatOptions::parse_for(Format::Csv, &options(pairs))?;
        CsvDecoder::try_new(
            full_schema,
            projection,
            &format.csv,
            format.ignore_parse_errors,
        )
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Int64, true),
        ]))
    }

    /// Unset options take their defaults, `\t` is a tab, and a delimiter is one character.
    #[test]
    fn csv_options_defaults_tab_and_single_characters() {
        assert_eq!(
            CsvOptions::parse(&options(&[])).unwrap(),
            CsvOptions {
                delimiter: b',',
                quote: b'"',
                header: false,
            }
        );
        let given = options(&[
            ("csv.field-delimiter", "\\t"),
            ("csv.quote-character", "'"),
            ("csv.header", "TRUE"),
        ]);
        assert_eq!(
            CsvOptions::parse(&given).unwrap(),
            CsvOptions {
                delimiter: b'\t',
                quote: b'\'',
                header: true,
            }
        );
        let err = CsvOptions::parse(&options(&[("csv.field-delimiter", ";;")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("option 'csv.field-delimiter' of table t must be a single character"),
            "{err}"
        );
    }

    #[test]
    fn two_rows_in_one_record_are_malformed() {
        let mut d = decoder(schema(), vec![0, 1, 2], &[]).unwrap();
        let lines = vec![
            b"1,a,2".to_vec(),
            b"3,b,4\n5,c,6".to_vec(),
            b"7,d,8".to_vec(),
        ];
        let err = d
            .decode(LineChunk::of_file("in.csv", 1, &lines))
            .unwrap_err()
            .to_string();
        assert!(err.contains("in.csv at line 2"), "{err}");
        assert!(err.contains("more than one CSV line"), "{err}");
    }

    #[test]
    fn projection_and_delimiter() {
        let mut d = decoder(schema(), vec![2, 0], &[("csv.field-delimiter", "|")]).unwrap();
        let lines: Vec<Vec<u8>> = vec![b"1|x|10".to_vec(), b"2|\"y|z\"|20".to_vec()];
        let b = d
            .decode(LineChunk::of_file("f", 1, &lines))
            .unwrap()
            .unwrap();
        assert_eq!(
            b.column(0).as_primitive::<Int64Type>().values().to_vec(),
            vec![10, 20]
        );
        assert_eq!(
            b.column(1).as_primitive::<Int64Type>().values().to_vec(),
            vec![1, 2]
        );
    }

    #[test]
    fn bad_line_named_or_skipped() {
        let lines: Vec<Vec<u8>> = vec![
            b"1,x,10".to_vec(),
            b"oops,y,20".to_vec(),
            b"3,z,30".to_vec(),
        ];
        let mut d = decoder(schema(), vec![0], &[]).unwrap();
        let err = d
            .decode(LineChunk::of_file("in.csv", 5, &lines))
            .unwrap_err()
            .to_string();
        assert!(err.contains("in.csv at line 6"), "{err}");
        let mut d = decoder(schema(), vec![0], &[("csv.ignore-parse-errors", "true")]).unwrap();
        let b = d
            .decode(LineChunk::of_file("in.csv", 5, &lines))
            .unwrap()
            .unwrap();
        assert_eq!(
            b.column(0).as_primitive::<Int64Type>().values().to_vec(),
            vec![1, 3]
        );
        assert_eq!(d.skipped(), 1);
    }
    /// The plain path gives exactly arrow's decoder's batch: integers of several widths,
    /// floats, strings (empty is NULL, multi-byte UTF-8), all columns or some; and it stands
    /// aside for anything else.
    #[test]
    fn plain_path_equals_arrow_decoder() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int8, true),
            Field::new("b", DataType::UInt16, true),
            Field::new("c", DataType::Int64, true),
            Field::new("d", DataType::Float64, true),
            Field::new("e", DataType::Utf8, true),
            Field::new("f", DataType::Utf8View, true),
            Field::new("g", DataType::Float32, true),
        ]));
        let words = ["", "x", "x y", "\u{e9}t\u{e9}", "-", "0", "a.b"];
        let mut state = 7u64;
        let mut next = |bound: u64| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) % bound
        };
        let mut text = String::new();
        let lines = 500;
        for _ in 0..lines {
            let a = next(256) as i64 - 128;
            let line = format!(
                "{},{},{},{},{},{},{}\n",
                if next(10) == 0 {
                    String::new()
                } else {
                    a.to_string()
                },
                next(65_536),
                next(u64::MAX >> 2) as i64 - (1 << 60),
                next(1_000_000) as f64 / 7.0,
                words[next(words.len() as u64) as usize],
                words[next(words.len() as u64) as usize],
                if next(5) == 0 {
                    "1e3".to_string()
                } else {
                    format!("{}.5", next(100))
                },
            );
            text.push_str(&line);
        }
        for projection in [vec![0, 1, 2, 3, 4, 5, 6], vec![4, 2], vec![6]] {
            let d = decoder(Arc::clone(&schema), projection.clone(), &[]).unwrap();
            let plain = d
                .decode_plain(text.as_bytes(), lines)
                .expect("plain text takes the plain path");
            let arrow = d.decode_bytes(text.as_bytes(), lines).unwrap().unwrap();
            assert_eq!(plain, arrow, "{projection:?}");
            assert!(plain.column(0).null_count() > 0 || projection == vec![6]);
        }
        let d = decoder(Arc::clone(&schema), vec![0, 4], &[]).unwrap();
        for other in [
            "300,1,1,1,x,x,1\n",   // out of range for Int8: arrow's error, line by line
            "1,1,1,1,\"x\",x,1\n", // quoted
            "1,1,1,1,x,x,1\r\n",   // carriage return
            "1,1,1,1,x,x\n",       // a field missing
            "1,1,1,1,x,x,1,1\n",   // one too many
        ] {
            assert!(d.decode_plain(other.as_bytes(), 1).is_none(), "{other:?}");
        }
        // A column of another type (a timestamp) always goes to arrow's decoder.
        let ts = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new(
                "t",
                DataType::Timestamp(datafusion::arrow::datatypes::TimeUnit::Millisecond, None),
                true,
            ),
        ]));
        let d = decoder(ts, vec![0, 1], &[]).unwrap();
        assert!(d.decode_plain(b"1,2024-01-01 00:00:00\n", 1).is_none());
    }
}
