//! JSON lines: one object per line, fields matched to columns by name.
//!
//! Missing fields are NULL, unknown fields are ignored, timestamps accept ISO-8601
//! (`2024-01-01T10:00:00Z`) and `yyyy-MM-dd HH:mm:ss[.fff]`.

use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::json::LineDelimitedWriter;
use datafusion::arrow::json::reader::{Decoder, ReaderBuilder};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};

use super::{DecimalText, LineChunk, LineDecoder, LineEncoder, decode_line_by_line};

/// Decodes JSON lines (see the module docs).
pub struct JsonDecoder {
    schema: SchemaRef,
    /// Decimal columns, read as text first (see [`DecimalText`]).
    decimals: Option<DecimalText>,
    ignore_errors: bool,
    skipped: u64,
    kept: Option<Vec<usize>>,
}

impl JsonDecoder {
    /// A decoder producing `schema`; with `ignore_parse_errors`, malformed lines are skipped
    /// and counted.
    pub fn new(schema: SchemaRef, ignore_parse_errors: bool) -> Self {
        Self {
            decimals: DecimalText::of(&schema),
            schema,
            ignore_errors: ignore_parse_errors,
            skipped: 0,
            kept: None,
        }
    }

    fn new_decoder(&self, rows: usize) -> Result<Decoder> {
        new_decoder(&self.schema, self.decimals.as_ref(), rows)
    }

    /// Decodes `lines` at once; a failure's cause as text, without its place (no skipping).
    pub(super) fn decode_plain(
        &self,
        lines: &[Vec<u8>],
    ) -> std::result::Result<Option<RecordBatch>, String> {
        let mut text = Vec::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        let mut decoder = self.new_decoder(lines.len()).map_err(|e| e.to_string())?;
        decode_checked(&mut decoder, self.decimals.as_ref(), &text)
    }

    /// Fast path: every record through one decoder, accepted only when each non-blank record
    /// gave exactly one row, so that rows map to records (a value split over two records, or
    /// two values in one, takes the record-by-record path, which names or skips them). A
    /// record may span lines (a pretty-printed Kafka value). The batch and, when blank records
    /// gave no row, the records the rows came from.
    #[allow(clippy::type_complexity)]
    fn decode_aligned(
        &self,
        lines: &[Vec<u8>],
    ) -> Option<(Option<RecordBatch>, Option<Vec<usize>>)> {
        let mut decoder = self.new_decoder(lines.len()).ok()?;
        let mut kept = Vec::with_capacity(lines.len());
        for (i, line) in lines.iter().enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            // The line break ends a value the record left open to more (a bare number).
            if decoder.decode(line).ok()? != line.len()
                || decoder.decode(b"\n").ok()? != 1
                || decoder.has_partial_record()
                || decoder.len() != kept.len() + 1
            {
                return None;
            }
            kept.push(i);
        }
        let batch = decoder.flush().ok()?;
        let batch = match (batch, self.decimals.as_ref()) {
            (Some(batch), Some(d)) => Some(d.parse(batch).ok()?),
            (batch, _) => batch,
        };
        let kept = (kept.len() != lines.len()).then_some(kept);
        Some((batch, kept))
    }
}

/// Arrow's JSON decoder for `schema`; with decimal columns, they are read as text (from JSON
/// numbers or strings, as any text column then is, as Flink's JSON format reads them).
fn new_decoder(schema: &SchemaRef, decimals: Option<&DecimalText>, rows: usize) -> Result<Decoder> {
    let builder = match decimals {
        Some(d) => ReaderBuilder::new(d.text_schema.clone()).with_coerce_primitive(true),
        None => ReaderBuilder::new(schema.clone()),
    };
    Ok(builder.with_batch_size(rows.max(1)).build_decoder()?)
}

/// [`decode_all`], then the decimal columns parsed.
fn decode_checked(
    decoder: &mut Decoder,
    decimals: Option<&DecimalText>,
    text: &[u8],
) -> std::result::Result<Option<RecordBatch>, String> {
    let batch = decode_all(decoder, text)?;
    match (batch, decimals) {
        (Some(batch), Some(d)) => d.parse(batch).map(Some),
        (batch, _) => Ok(batch),
    }
}

fn decode_all(
    decoder: &mut Decoder,
    text: &[u8],
) -> std::result::Result<Option<RecordBatch>, String> {
    let mut offset = 0;
    while offset < text.len() {
        let read = decoder.decode(&text[offset..]).map_err(|e| e.to_string())?;
        if read == 0 {
            break;
        }
        offset += read;
    }
    // The decoder stops when its batch (one row per record) is full: anything left means a
    // record held more than one JSON value.
    if !text[offset..].iter().all(u8::is_ascii_whitespace) {
        return Err("a record holds more than one JSON value; write one object per record".into());
    }
    decoder.flush().map_err(|e| e.to_string())
}

impl LineDecoder for JsonDecoder {
    fn decode_text(
        &mut self,
        origin: &str,
        first_line: usize,
        text: &[u8],
        lines: usize,
    ) -> Result<Option<RecordBatch>> {
        // Fast path: the whole text at once, accepted when it gave one row per line (blank
        // lines and bad records take the line-by-line path, which skips, names or counts them).
        let mut decoder = self.new_decoder(lines)?;
        if let Ok(Some(batch)) = decode_checked(&mut decoder, self.decimals.as_ref(), text)
            && batch.num_rows() == lines
        {
            self.kept = None;
            return Ok(Some(batch));
        }
        let split = super::split_lines(text);
        self.decode(LineChunk::of_file(origin, first_line, &split))
    }

    fn decode(&mut self, chunk: LineChunk<'_>) -> Result<Option<RecordBatch>> {
        if let Some((batch, kept)) = self.decode_aligned(chunk.lines) {
            self.kept = kept;
            return Ok(batch);
        }
        // A file's value may span lines (pretty-printed JSON).
        if !chunk.lines_are_records()
            && let Ok(batch) = self.decode_plain(chunk.lines)
        {
            self.kept = None;
            return Ok(batch);
        }
        // Slow path: find (or skip) the bad lines.
        let schema = self.schema.clone();
        let decimals = self.decimals.clone();
        let mut kept = self.kept.take().unwrap_or_default();
        let batches = decode_line_by_line(
            chunk,
            self.ignore_errors,
            &mut self.skipped,
            &mut kept,
            "json",
            |line| {
                let mut one =
                    new_decoder(&schema, decimals.as_ref(), 1).map_err(|e| e.to_string())?;
                let mut text = line.to_vec();
                text.push(b'\n');
                decode_checked(&mut one, decimals.as_ref(), &text)
            },
        )?;
        self.kept = Some(kept);
        if batches.is_empty() {
            return Ok(None);
        }
        Ok(Some(concat_batches(&self.schema, &batches)?))
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }

    fn kept(&self) -> Option<&[usize]> {
        self.kept.as_deref()
    }
}

/// Encodes rows as JSON lines.
pub struct JsonEncoder;

impl LineEncoder for JsonEncoder {
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        let mut writer = LineDelimitedWriter::new(out);
        writer.write(batch)?;
        writer
            .finish()
            .map_err(|e| DataFusionError::ArrowError(Box::new(e), None))
    }

    fn extension(&self) -> &'static str {
        "json"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::options::TableOptions;
    use crate::connectors::format::{Format, FormatOptions};
    use datafusion::arrow::array::{Array, AsArray, Int64Array};
    use datafusion::arrow::datatypes::{
        DataType, Field, Schema, TimeUnit, TimestampMillisecondType,
    };
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
        ]))
    }

    fn options(pairs: &[(&str, &str)]) -> TableOptions {
        TableOptions::of_pairs(pairs)
    }

    /// The decoder of a json table with the WITH options `pairs`.
    fn decoder(pairs: &[(&str, &str)]) -> JsonDecoder {
        let format = FormatOptions::parse_for(Format::Json, &options(pairs)).unwrap();
        JsonDecoder::new(schema(), format.ignore_parse_errors)
    }

    fn lines(text: &[&str]) -> Vec<Vec<u8>> {
        text.iter().map(|l| l.as_bytes().to_vec()).collect()
    }

    #[test]
    fn both_timestamp_spellings() {
        let mut d = decoder(&[]);
        let l = lines(&[
            r#"{"id": 1, "ts": "2024-01-01T00:00:01Z"}"#,
            r#"{"id": 2, "ts": "2024-01-01 00:00:02.500", "other": true}"#,
            r#"{"id": 3}"#,
        ]);
        let b = d.decode(LineChunk::of_file("f", 1, &l)).unwrap().unwrap();
        let ts = b.column(1).as_primitive::<TimestampMillisecondType>();
        assert_eq!(ts.value(0), 1_704_067_201_000);
        assert_eq!(ts.value(1), 1_704_067_202_500);
        assert!(ts.is_null(2));
    }

    #[test]
    fn bad_line_is_reported_with_its_number() {
        let mut d = decoder(&[]);
        let l = lines(&[r#"{"id": 1}"#, r#"{"id": "x"#, r#"{"id": 3}"#]);
        let err = d
            .decode(LineChunk::of_file("data/bids.json", 10, &l))
            .unwrap_err()
            .to_string();
        assert!(err.contains("data/bids.json at line 11"), "{err}");
    }

    #[test]
    fn bad_lines_are_skipped_and_counted_when_asked() {
        let mut d = decoder(&[("json.ignore-parse-errors", "true")]);
        let l = lines(&[
            r#"{"id": 1}"#,
            "not json",
            r#"{"id": "seven"}"#,
            r#"{"id": 4}"#,
        ]);
        let b = d.decode(LineChunk::of_file("f", 1, &l)).unwrap().unwrap();
        let ids = b
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(ids.values().to_vec(), vec![1, 4]);
        assert_eq!(d.skipped(), 2);
    }

    #[test]
    fn two_values_in_one_record_are_malformed() {
        let mut d = decoder(&[]);
        let l = lines(&[r#"{"id": 1}"#, r#"{"id": 2}{"id": 3}"#, r#"{"id": 4}"#]);
        let err = d
            .decode(LineChunk::of_file("f", 1, &l))
            .unwrap_err()
            .to_string();
        assert!(err.contains("f at line 2"), "{err}");
        assert!(err.contains("more than one JSON value"), "{err}");
    }

    #[test]
    fn encoder_writes_lines() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![1, 2]))],
        )
        .unwrap();
        let mut out = Vec::new();
        JsonEncoder.encode(&batch, &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"id\":1}\n{\"id\":2}\n");
    }
}
