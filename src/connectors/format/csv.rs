//! CSV: one record per line, fields by position in declaration order (as Flink's csv format).
//!
//! Options: `csv.field-delimiter` (default `,`), `csv.quote-character` (default `"`),
//! `csv.ignore-parse-errors`, and `csv.header` (default `false`; when `true` the first line of
//! each file is a header and skipped).

use std::sync::Arc;

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::csv::WriterBuilder;
use datafusion::arrow::csv::reader::ReaderBuilder;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, plan_err};

use super::{LineChunk, LineDecoder, LineEncoder, decode_line_by_line};
use crate::connectors::options::TableOptions;

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
    /// All source columns (CSV fields are positional).
    full_schema: SchemaRef,
    projection: Vec<usize>,
    output_schema: SchemaRef,
    delimiter: u8,
    quote: u8,
    ignore_errors: bool,
    skipped: u64,
    kept: Option<Vec<usize>>,
}

impl CsvDecoder {
    /// A decoder of lines with the fields of `full_schema`, producing the `projection` columns.
    pub fn try_new(
        full_schema: SchemaRef,
        projection: Vec<usize>,
        options: &TableOptions,
    ) -> Result<Self> {
        let output_schema = Arc::new(full_schema.project(&projection)?);
        Ok(Self {
            full_schema,
            projection,
            output_schema,
            delimiter: single_byte(options, "csv.field-delimiter", b',')?,
            quote: single_byte(options, "csv.quote-character", b'"')?,
            ignore_errors: options
                .get_bool("csv.ignore-parse-errors")?
                .unwrap_or(false),
            skipped: 0,
            kept: None,
        })
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
        decoder.flush().map_err(|e| e.to_string())
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
        // Fast path: the whole text at once, accepted when it gave one row per line. Blank
        // lines, records over several lines and bad records take the line-by-line path,
        // which skips, names or counts them. (With a single column a blank line would be a
        // row here, so that case always takes it.)
        if self.full_schema.fields().len() > 1
            && let Ok(Some(batch)) = self.decode_bytes(text, lines)
            && batch.num_rows() == lines
        {
            self.kept = None;
            return Ok(Some(batch));
        }
        let split = super::split_lines(text);
        self.decode(LineChunk::of_file(origin, first_line, &split))
    }

    fn decode(&mut self, chunk: LineChunk<'_>) -> Result<Option<RecordBatch>> {
        let mut text = Vec::with_capacity(chunk.lines.iter().map(|l| l.len() + 1).sum());
        let mut rows = 0;
        for line in chunk.lines {
            if line.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            text.extend_from_slice(line);
            text.push(b'\n');
            rows += 1;
        }
        if rows == 0 {
            self.kept = None;
            return Ok(None);
        }
        if let Ok(batch) = self.decode_bytes(&text, rows) {
            self.kept = None;
            return Ok(batch);
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
    /// An encoder configured by the table options.
    pub fn try_new(options: &TableOptions) -> Result<Self> {
        Ok(Self {
            delimiter: single_byte(options, "csv.field-delimiter", b',')?,
            header: options.get_bool("csv.header")?.unwrap_or(false),
            wrote_header: false,
        })
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
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::collections::BTreeMap;

    fn options(pairs: &[(&str, &str)]) -> TableOptions {
        TableOptions::new(
            "t",
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<BTreeMap<_, _>>(),
        )
    }

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("a", DataType::Int64, true),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Int64, true),
        ]))
    }

    #[test]
    fn two_rows_in_one_record_are_malformed() {
        let mut d = CsvDecoder::try_new(schema(), vec![0, 1, 2], &options(&[])).unwrap();
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
        let mut d = CsvDecoder::try_new(
            schema(),
            vec![2, 0],
            &options(&[("csv.field-delimiter", "|")]),
        )
        .unwrap();
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
        let mut d = CsvDecoder::try_new(schema(), vec![0], &options(&[])).unwrap();
        let err = d
            .decode(LineChunk::of_file("in.csv", 5, &lines))
            .unwrap_err()
            .to_string();
        assert!(err.contains("in.csv at line 6"), "{err}");
        let mut d = CsvDecoder::try_new(
            schema(),
            vec![0],
            &options(&[("csv.ignore-parse-errors", "true")]),
        )
        .unwrap();
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
}
