//! `debezium-json`: a changelog as Debezium's JSON change events, one per line, as Flink's
//! `debezium-json` format reads and writes them.
//!
//! A record is `{"before": {...}, "after": {...}, "op": "..."}` (or the same inside a
//! `"payload"` object, as Debezium writes it with its schema included), the row objects being
//! the table's columns as the `json` format has them:
//!
//! - `"c"` (create) and `"r"` (read, a snapshot) are an insert of `after` (`+I`);
//! - `"u"` (update) takes back `before` and adds `after` (`-U`, `+U`); `before` is required,
//!   as in Flink (a Postgres source needs `REPLICA IDENTITY FULL`);
//! - `"d"` (delete) takes back `before` (`-D`).
//!
//! Blank lines and Kafka tombstones are skipped. Written rows are one event each, as Flink
//! writes them: inserts and update-afters as `"c"` with `after`, deletes and update-befores as
//! `"d"` with `before`.

use datafusion::arrow::array::Int8Array;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err};
use serde_json::Value;

use super::json::{JsonDecoder, JsonEncoder};
use super::{LineChunk, LineDecoder, LineEncoder, decode_line_by_line};
use crate::changelog::RowKind;

/// Decodes Debezium change events (see the module docs).
pub struct DebeziumJsonDecoder {
    /// Decodes the row objects, with the table's schema.
    rows: JsonDecoder,
    ignore_errors: bool,
    skipped: u64,
    /// The line each row of the last batch came from.
    kept: Vec<usize>,
    /// The kind of each row of the last batch.
    kinds: Vec<i8>,
}

impl DebeziumJsonDecoder {
    /// A decoder producing `schema`; with `ignore_parse_errors`, malformed events are skipped
    /// and counted.
    pub fn new(schema: SchemaRef, ignore_parse_errors: bool) -> Self {
        Self {
            rows: JsonDecoder::new(schema, false),
            ignore_errors: ignore_parse_errors,
            skipped: 0,
            kept: Vec::new(),
            kinds: Vec::new(),
        }
    }
}

/// The row objects of one event (as JSON lines) and what each does.
fn split_event(line: &[u8]) -> std::result::Result<Vec<(Vec<u8>, RowKind)>, String> {
    let event: Value =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON object: {e}"))?;
    let Value::Object(mut event) = event else {
        return Err("not a JSON object".into());
    };
    if !event.contains_key("op")
        && let Some(Value::Object(payload)) = event.remove("payload")
    {
        event = payload;
    }
    let op = match event.get("op") {
        Some(Value::String(op)) => op.clone(),
        Some(other) => return Err(format!("\"op\" is {other}, not a string")),
        None => return Err("no \"op\" field (c, r, u or d)".into()),
    };
    let mut row = |field: &str| -> std::result::Result<Option<Vec<u8>>, String> {
        match event.remove(field) {
            None | Some(Value::Null) => Ok(None),
            Some(object @ Value::Object(_)) => serde_json::to_vec(&object)
                .map(Some)
                .map_err(|e| e.to_string()),
            Some(other) => Err(format!("\"{field}\" is {other}, not an object")),
        }
    };
    let (before, after) = (row("before")?, row("after")?);
    let required = |value: Option<Vec<u8>>, field: &str| {
        value.ok_or_else(|| {
            let hint = if op == "u" {
                " (a Postgres source writes it only with REPLICA IDENTITY FULL)"
            } else {
                ""
            };
            format!("an \"op\": \"{op}\" event without its \"{field}\" row{hint}")
        })
    };
    Ok(match op.as_str() {
        "c" | "r" => vec![(required(after, "after")?, RowKind::Insert)],
        "u" => vec![
            (required(before, "before")?, RowKind::UpdateBefore),
            (required(after, "after")?, RowKind::UpdateAfter),
        ],
        "d" => vec![(required(before, "before")?, RowKind::Delete)],
        other => return Err(format!("unknown \"op\" {other:?} (c, r, u or d)")),
    })
}

impl LineDecoder for DebeziumJsonDecoder {
    fn decode(&mut self, chunk: LineChunk<'_>) -> Result<Option<RecordBatch>> {
        self.kept.clear();
        self.kinds.clear();
        // Fast path: every event well formed, all rows decoded at once.
        let mut rows: Vec<Vec<u8>> = Vec::new();
        let mut well_formed = true;
        for (i, line) in chunk.lines.iter().enumerate() {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            match split_event(line) {
                Ok(event) => {
                    for (row, kind) in event {
                        rows.push(row);
                        self.kinds.push(kind as i8);
                        self.kept.push(i);
                    }
                }
                Err(_) => {
                    well_formed = false;
                    break;
                }
            }
        }
        if well_formed {
            if rows.is_empty() {
                return Ok(None);
            }
            if let Ok(Some(batch)) = self.rows.decode_plain(&rows)
                && batch.num_rows() == rows.len()
            {
                return Ok(Some(batch));
            }
        }
        // Slow path: event by event, to name (or skip) the bad one.
        self.kinds.clear();
        let mut kinds = Vec::new();
        let mut kept = Vec::new();
        let mut skipped = self.skipped;
        let batches = decode_line_by_line(
            chunk,
            self.ignore_errors,
            &mut skipped,
            &mut kept,
            "debezium-json",
            |line| {
                let event = split_event(line)?;
                let lines: Vec<Vec<u8>> = event.iter().map(|(row, _)| row.clone()).collect();
                let batch = self.rows.decode_plain(&lines)?;
                if batch.as_ref().map_or(0, RecordBatch::num_rows) != event.len() {
                    return Err("a row object did not decode to one row".into());
                }
                kinds.extend(event.iter().map(|(_, kind)| *kind as i8));
                Ok(batch)
            },
        )?;
        self.skipped = skipped;
        self.kept = kept;
        self.kinds = kinds;
        if batches.is_empty() {
            self.kept.clear();
            self.kinds.clear();
            return Ok(None);
        }
        let schema = batches[0].schema();
        Ok(Some(concat_batches(&schema, &batches)?))
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Always: an update event gives two rows.
    fn kept(&self) -> Option<&[usize]> {
        Some(&self.kept)
    }

    fn take_kinds(&mut self) -> Option<Int8Array> {
        Some(Int8Array::from(std::mem::take(&mut self.kinds)))
    }
}

/// Encodes changelog rows as Debezium change events (see the module docs).
pub struct DebeziumJsonEncoder;

impl LineEncoder for DebeziumJsonEncoder {
    fn encode(&mut self, batch: &RecordBatch, out: &mut Vec<u8>) -> Result<()> {
        let inserts = Int8Array::from(vec![RowKind::Insert as i8; batch.num_rows()]);
        self.encode_changes(batch, &inserts, out)
    }

    fn encode_changes(
        &mut self,
        batch: &RecordBatch,
        kinds: &Int8Array,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let mut rows = Vec::new();
        JsonEncoder.encode(batch, &mut rows)?;
        let mut lines = rows.split(|b| *b == b'\n');
        for i in 0..batch.num_rows() {
            let (Some(row), Some(kind)) = (lines.next(), RowKind::of(kinds.value(i))) else {
                return exec_err!("debezium-json: row {i} has no JSON object or no valid kind");
            };
            if kind.adds() {
                out.extend_from_slice(b"{\"before\":null,\"after\":");
                out.extend_from_slice(row);
                out.extend_from_slice(b",\"op\":\"c\"}\n");
            } else {
                out.extend_from_slice(b"{\"before\":");
                out.extend_from_slice(row);
                out.extend_from_slice(b",\"after\":null,\"op\":\"d\"}\n");
            }
        }
        Ok(())
    }

    fn extension(&self) -> &'static str {
        "json"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use std::sync::Arc;

    fn schema() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int64, true),
        ]))
    }

    fn lines(text: &str) -> Vec<Vec<u8>> {
        text.lines().map(|l| l.as_bytes().to_vec()).collect()
    }

    /// `(op, k, n)` of a decoded batch.
    fn rows(batch: &RecordBatch, kinds: &Int8Array) -> Vec<(&'static str, String, i64)> {
        (0..batch.num_rows())
            .map(|i| {
                (
                    RowKind::of(kinds.value(i)).unwrap().short(),
                    batch.column(0).as_string::<i32>().value(i).to_string(),
                    batch.column(1).as_primitive::<Int64Type>().value(i),
                )
            })
            .collect()
    }

    #[test]
    fn events_decode_into_changelog_rows() {
        let mut decoder = DebeziumJsonDecoder::new(schema(), false);
        let text = lines(concat!(
            r#"{"before":null,"after":{"k":"a","n":1},"op":"c"}"#,
            "\n",
            "\n",
            r#"{"before":{"k":"a","n":1},"after":{"k":"a","n":2},"op":"u"}"#,
            "\n",
            r#"{"schema":{},"payload":{"before":{"k":"b","n":7},"after":null,"op":"d"}}"#,
            "\n",
            r#"{"after":{"k":"c","n":3},"op":"r","source":{"db":"x"}}"#,
        ));
        let batch = decoder
            .decode(LineChunk::of_file("f", 1, &text))
            .unwrap()
            .unwrap();
        let kinds = decoder.take_kinds().unwrap();
        assert_eq!(
            rows(&batch, &kinds),
            vec![
                ("+I", "a".into(), 1),
                ("-U", "a".into(), 1),
                ("+U", "a".into(), 2),
                ("-D", "b".into(), 7),
                ("+I", "c".into(), 3),
            ]
        );
        // Each row names the line it came from (the update's two rows, line 3).
        assert_eq!(decoder.kept(), Some(&[0, 2, 2, 3, 4][..]));
    }

    #[test]
    fn a_malformed_event_is_named_or_skipped() {
        let text = lines(concat!(
            r#"{"before":null,"after":{"k":"a","n":1},"op":"c"}"#,
            "\n",
            r#"{"before":null,"after":{"k":"a","n":2},"op":"u"}"#,
            "\n",
            r#"{"before":null,"after":{"k":"b","n":"x"},"op":"c"}"#,
            "\n",
            r#"{"before":null,"after":{"k":"c","n":3},"op":"c"}"#,
        ));
        let mut strict = DebeziumJsonDecoder::new(schema(), false);
        let err = strict
            .decode(LineChunk::of_file("f.json", 1, &text))
            .unwrap_err()
            .to_string();
        assert!(err.contains("f.json at line 2"), "{err}");
        assert!(err.contains("without its \"before\" row"), "{err}");
        assert!(err.contains("debezium-json.ignore-parse-errors"), "{err}");

        let mut lenient = DebeziumJsonDecoder::new(schema(), true);
        let batch = lenient
            .decode(LineChunk::of_file("f.json", 1, &text))
            .unwrap()
            .unwrap();
        let kinds = lenient.take_kinds().unwrap();
        assert_eq!(
            rows(&batch, &kinds),
            vec![("+I", "a".into(), 1), ("+I", "c".into(), 3)]
        );
        assert_eq!(lenient.skipped(), 2);
        assert_eq!(lenient.kept(), Some(&[0, 3][..]));
    }

    #[test]
    fn written_events_read_back_as_the_same_changelog() {
        let batch = RecordBatch::try_new(
            schema(),
            vec![
                Arc::new(StringArray::from(vec![
                    Some("a"),
                    Some("a"),
                    Some("a"),
                    None,
                ])),
                Arc::new(Int64Array::from(vec![Some(1), Some(1), Some(2), Some(5)])),
            ],
        )
        .unwrap();
        let kinds = Int8Array::from(vec![
            RowKind::Insert as i8,
            RowKind::UpdateBefore as i8,
            RowKind::UpdateAfter as i8,
            RowKind::Delete as i8,
        ]);
        let mut out = Vec::new();
        DebeziumJsonEncoder
            .encode_changes(&batch, &kinds, &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            r#"{"before":null,"after":{"k":"a","n":1},"op":"c"}"#
        );
        let mut decoder = DebeziumJsonDecoder::new(schema(), false);
        let back = decoder
            .decode(LineChunk::of_file("f", 1, &lines(&text)))
            .unwrap()
            .unwrap();
        let back_kinds = decoder.take_kinds().unwrap();
        // -U is written as a delete and +U as an insert (as Flink writes them): the same rows,
        // and the same effect on any state built from them.
        let kind_names: Vec<&str> = (0..4)
            .map(|i| RowKind::of(back_kinds.value(i)).unwrap().short())
            .collect();
        assert_eq!(kind_names, vec!["+I", "-D", "+I", "-D"]);
        assert_eq!(
            back.column(1).as_primitive::<Int64Type>().values(),
            &[1, 1, 2, 5]
        );
        assert!(back.column(0).is_null(3));
    }
}
