//! Records: JSON, CSV and raw values (valid records with extreme values, mutated records,
//! random bytes, invalid UTF-8, huge numbers, negative and far-future timestamps), decoded
//! the two ways the readers decode them (a whole block of text in place, and line by line);
//! Kafka records (some spanning lines) with random keys and timestamps assembled with their
//! metadata columns, and each decoded alone; the
//! same records as an upsert-kafka topic (some keys repeated, some tombstones); and,
//! every few inputs, the same lines as a file read by a windowed query.
//!
//! Oracle: no panic; both decodings agree (the same rows, or both an error); every error
//! names where the bad record is (a line or an offset); assembled Kafka records give the rows
//! and offsets of the records decoded alone; an upsert changelog only takes back
//! rows it gave and holds at most one row per key; a windowed query over the file ends within
//! its time bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use sabot::SabotConfig;
use sabot::catalog::options::TableOptions;
use sabot::connectors::format::{FormatOptions, LineChunk, LineDecoder};
use sabot::connectors::kafka::records::{BatchAssembler, OutputColumn, RecordBuffer};

use super::harness::{self, Outcome};

#[derive(Arbitrary, Debug)]
struct Input {
    format: Format,
    ignore_errors: bool,
    delimiter: Option<u8>,
    lines: Vec<Line>,
    keys: Vec<(Option<Vec<u8>>, Option<i64>)>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Format {
    Json,
    Csv,
    Raw,
}

#[derive(Arbitrary, Debug)]
enum Line {
    Valid(Values),
    Mutated(Values, u16, u8),
    Bytes(Vec<u8>),
    Text(String),
}

#[derive(Arbitrary, Debug)]
struct Values {
    k: Number,
    v: Number,
    s: String,
    b: bool,
    ts: Timestamp,
    d: Number,
    day: Timestamp,
}

#[derive(Arbitrary, Debug)]
enum Number {
    Int(i64),
    Float(f64),
    Huge(u8),
    Null,
    Text(String),
}

#[derive(Arbitrary, Debug)]
enum Timestamp {
    Millis(i64),
    Year(i32, u8, u8),
    Text(String),
    Null,
}

fn number(n: &Number, json: bool) -> String {
    match n {
        Number::Int(i) => i.to_string(),
        Number::Float(f) if f.is_finite() => format!("{f:?}"),
        Number::Float(_) => "NaN".into(),
        Number::Huge(i) => [
            "18446744073709551616",
            "-9223372036854775809",
            "1e400",
            "-0",
            "1.7976931348623157e308",
            "99999999999999999999999999999999999999.99",
            "0x10",
            "1_000",
        ][*i as usize % 8]
            .into(),
        Number::Null if json => "null".into(),
        Number::Null => String::new(),
        Number::Text(t) if json => format!("{t:?}"),
        Number::Text(t) => t.clone(),
    }
}

fn timestamp(t: &Timestamp, json: bool) -> String {
    let text = match t {
        Timestamp::Millis(ms) => match chrono::DateTime::from_timestamp_millis(*ms) {
            Some(t) => t.naive_utc().format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            None => ms.to_string(),
        },
        Timestamp::Year(y, m, d) => format!("{y:04}-{:02}-{:02} 00:00:00", m % 14, d % 33),
        Timestamp::Text(t) => t.clone(),
        Timestamp::Null if json => return "null".into(),
        Timestamp::Null => return String::new(),
    };
    if json { format!("{text:?}") } else { text }
}

fn line(format: Format, delimiter: u8, l: &Line) -> Vec<u8> {
    let values = |v: &Values| -> String {
        match format {
            Format::Json => format!(
                "{{\"k\": {}, \"v\": {}, \"s\": {:?}, \"b\": {}, \"ts\": {}, \"d\": {}, \"day\": {}}}",
                number(&v.k, true),
                number(&v.v, true),
                v.s,
                v.b,
                timestamp(&v.ts, true),
                number(&v.d, true),
                timestamp(&v.day, true)
            ),
            _ => {
                let d = (delimiter as char).to_string();
                [
                    number(&v.k, false),
                    number(&v.v, false),
                    v.s.clone(),
                    v.b.to_string(),
                    timestamp(&v.ts, false),
                    number(&v.d, false),
                    timestamp(&v.day, false),
                ]
                .join(&d)
            }
        }
    };
    match l {
        Line::Valid(v) => values(v).into_bytes(),
        Line::Mutated(v, at, byte) => {
            let mut bytes = values(v).into_bytes();
            let at = *at as usize % (bytes.len() + 1);
            match byte % 3 {
                0 => bytes.insert(at, *byte),
                1 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
            bytes
        }
        Line::Bytes(b) => b.clone(),
        Line::Text(t) => t.clone().into_bytes(),
    }
    .into_iter()
    .filter(|b| *b != b'\n')
    .collect::<Vec<u8>>()
    // A line as a reader hands it out: without its terminator (CR LF included).
    .trim_ascii_end_matches_cr()
}

trait TrimCr {
    fn trim_ascii_end_matches_cr(self) -> Vec<u8>;
}

impl TrimCr for Vec<u8> {
    fn trim_ascii_end_matches_cr(mut self) -> Vec<u8> {
        while self.last() == Some(&b'\r') {
            self.pop();
        }
        self
    }
}

fn schema(format: Format) -> SchemaRef {
    match format {
        Format::Raw => Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, true)])),
        _ => Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new("v", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("b", DataType::Boolean, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("d", DataType::Decimal128(10, 2), true),
            Field::new("day", DataType::Date32, true),
        ])),
    }
}

fn options(input: &Input, delimiter: u8) -> TableOptions {
    let mut values = BTreeMap::new();
    let format = match input.format {
        Format::Json => "json",
        Format::Csv => "csv",
        Format::Raw => "raw",
    };
    values.insert("format".to_string(), format.to_string());
    values.insert(
        format!("{format}.ignore-parse-errors"),
        input.ignore_errors.to_string(),
    );
    if matches!(input.format, Format::Csv) {
        values.insert(
            "csv.field-delimiter".to_string(),
            (delimiter as char).to_string(),
        );
    }
    TableOptions::new("fuzzed", values)
}

fn decoder(input: &Input, delimiter: u8) -> Result<Box<dyn LineDecoder>, String> {
    let schema = schema(input.format);
    let projection: Vec<usize> = (0..schema.fields().len()).collect();
    let format = FormatOptions::parse(
        &options(input, delimiter),
        sabot::connectors::kafka::FORMATS,
    )
    .map_err(|e| format!("valid format options were refused: {e}"))?;
    sabot::connectors::format::decoder(&format, Arc::clone(&schema), schema, &projection)
        .map_err(|e| format!("the decoder of valid options failed: {e}"))
}

fn names_the_place(e: &datafusion::error::DataFusionError) -> bool {
    let m = e.to_string();
    m.contains("line") || m.contains("offset")
}

/// Decodes the lines in place and line by line; both must agree.
fn decode_both(input: &Input) -> Result<Outcome, String> {
    let delimiter = match input.delimiter {
        Some(b) if b.is_ascii_punctuation() || b == b'\t' => b,
        _ => b',',
    };
    let lines: Vec<Vec<u8>> = input
        .lines
        .iter()
        .take(64)
        .map(|l| line(input.format, delimiter, l))
        .collect();
    if lines.is_empty() {
        // Readers decode only when they have lines.
        return Ok("no lines".into());
    }
    let mut text = Vec::new();
    for l in &lines {
        text.extend_from_slice(l);
        text.push(b'\n');
    }
    let mut whole = decoder(input, delimiter)?;
    let mut each = decoder(input, delimiter)?;
    let in_place = whole.decode_text("fuzzed.txt", 1, &text, lines.len());
    let by_line = each.decode(LineChunk::of_file("fuzzed.txt", 1, &lines));
    match (&in_place, &by_line) {
        (Ok(a), Ok(b)) => {
            if a != b {
                return Err(format!(
                    "decoding in place gave {a:?}, line by line {b:?} (lines {lines:?})"
                ));
            }
            if whole.skipped() != each.skipped() {
                return Err(format!(
                    "skipped {} in place, {} line by line",
                    whole.skipped(),
                    each.skipped()
                ));
            }
            Ok(format!(
                "{:?}: {} rows",
                input.format,
                if a.is_some() { "some" } else { "no" }
            ))
        }
        (Err(a), Err(b)) => {
            for e in [a, b] {
                if !names_the_place(e) && !matches!(input.format, Format::Raw) {
                    return Err(format!("an error that names no line: {e}"));
                }
            }
            Ok(format!("{:?}: error", input.format))
        }
        (a, b) => Err(format!(
            "decoding in place gave {a:?}, line by line {b:?} (lines {lines:?})"
        )),
    }
}

/// Kafka records with random keys and timestamps, with their metadata columns. Each record
/// is decoded alone too: the assembled rows must be those rows, with the offsets of the
/// records they came from (a value never runs into the next record), or an error naming a
/// record when one alone is malformed and errors are not skipped.
fn assemble_kafka(input: &Input) -> Result<Outcome, String> {
    let values_schema = schema(input.format);
    let mut fields: Vec<Field> = values_schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(Field::new("key", DataType::Utf8, true));
    fields.push(Field::new("raw_key", DataType::Binary, true));
    fields.push(Field::new(
        "at",
        DataType::Timestamp(TimeUnit::Millisecond, None),
        true,
    ));
    fields.push(Field::new("part", DataType::Int32, true));
    fields.push(Field::new("off", DataType::Int64, true));
    let mut columns: Vec<OutputColumn> = (0..values_schema.fields().len())
        .map(OutputColumn::Value)
        .collect();
    for key in ["key", "key", "timestamp", "partition", "offset"] {
        columns.push(OutputColumn::Metadata(key.to_string()));
    }
    let mut assembler = BatchAssembler {
        schema: Arc::new(Schema::new(fields)),
        columns,
        decoder: Some(decoder(input, b',')?),
        topic: "fuzzed".into(),
    };
    let mut buffer = RecordBuffer::default();
    let mut alone: Vec<datafusion::arrow::record_batch::RecordBatch> = Vec::new();
    let mut offsets: Vec<i64> = Vec::new();
    let mut malformed = false;
    // Per record: its value, timestamp and key.
    type Record<'a> = (Vec<u8>, Option<i64>, Option<&'a [u8]>);
    let mut records: Vec<Record> = Vec::new();
    for (i, l) in input.lines.iter().take(64).enumerate() {
        let mut value = line(input.format, b',', l);
        let (key, at) = input
            .keys
            .get(i)
            .map_or((None, Some(i as i64)), |(k, t)| (k.as_deref(), *t));
        // Some values span lines, as a pretty-printed JSON value does; some are split over
        // two records.
        match at.map(|t| t.rem_euclid(4)) {
            Some(1) => {
                if let Some(space) = value.iter().position(|b| *b == b' ') {
                    value[space] = b'\n';
                }
            }
            Some(2) if value.len() > 1 => {
                let cut = 1 + (at.unwrap_or(0) / 4).unsigned_abs() as usize % (value.len() - 1);
                let rest = value.split_off(cut);
                records.push((value, at, key));
                value = rest;
            }
            _ => {}
        }
        records.push((value, at, key));
    }
    for (i, (value, at, key)) in records.into_iter().enumerate() {
        let offset = i as i64 * 7;
        let mut one = decoder(input, b',')?;
        match one.decode(LineChunk {
            origin: "topic fuzzed partition 3",
            first_line: 1,
            lines: std::slice::from_ref(&value),
            offsets: Some(&[offset]),
        }) {
            Ok(Some(batch)) => {
                offsets.extend(std::iter::repeat_n(offset, batch.num_rows()));
                alone.push(batch);
            }
            Ok(None) => {}
            Err(_) => malformed = true,
        }
        buffer.push(Some(&value), offset, at, key);
    }
    if buffer.is_empty() {
        return Ok("kafka: empty".into());
    }
    match assembler.assemble(3, &mut buffer) {
        Ok(got) => {
            if malformed && !input.ignore_errors {
                return Err("a malformed record was read without an error".into());
            }
            let width = values_schema.fields().len();
            let (values, got_offsets) = match &got {
                Some((batch, _)) => {
                    let offsets = batch
                        .column(width + 4)
                        .as_any()
                        .downcast_ref::<datafusion::arrow::array::Int64Array>()
                        .map(|a| a.values().to_vec())
                        .unwrap_or_default();
                    (
                        Some(batch.project(&(0..width).collect::<Vec<_>>())),
                        offsets,
                    )
                }
                None => (None, Vec::new()),
            };
            if got_offsets != offsets {
                return Err(format!(
                    "rows came from the records at offsets {got_offsets:?}, decoded alone \
                     from {offsets:?}"
                ));
            }
            if let Some(values) = values {
                let values = values.map_err(|e| e.to_string())?;
                let expected = datafusion::arrow::compute::concat_batches(&values.schema(), &alone)
                    .map_err(|e| e.to_string())?;
                if values != expected {
                    return Err(format!(
                        "the assembled rows {values:?} differ from the records decoded alone \
                         {expected:?}"
                    ));
                }
            }
            Ok("kafka: ok".into())
        }
        Err(e) => {
            let m = e.to_string();
            if m.contains("Internal error") || !m.contains("offset") {
                return Err(format!("a Kafka record error that names no record: {m}"));
            }
            if !malformed {
                return Err(format!("every record decodes alone, together: {m}"));
            }
            Ok("kafka: error".into())
        }
    }
}

/// The records as an upsert-kafka topic: keyed by `{"k": i % 5}` (or the random key), a
/// one- or zero-byte value is a tombstone.
fn normalize_upserts(input: &Input) -> Result<Outcome, String> {
    use sabot::connectors::kafka::upsert::{Normalizer, RowOrigin, UpsertLayout};

    let values = schema(Format::Json);
    let format = FormatOptions {
        ignore_parse_errors: input.ignore_errors,
        ..FormatOptions::new(sabot::connectors::format::Format::Json)
    };
    let key_schema = Arc::new(Schema::new(vec![Field::new("k", DataType::Int64, true)]));
    let layout = UpsertLayout {
        key: vec![0],
        key_schema,
        key_format: format.clone(),
        value: (0..values.fields().len()).collect(),
    };
    let mut fields: Vec<Field> = values.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new("off", DataType::Int64, true));
    let mut origins: Vec<RowOrigin> = (0..values.fields().len()).map(RowOrigin::Value).collect();
    origins.push(RowOrigin::Metadata("offset".into()));
    let all: Vec<usize> = (0..fields.len()).collect();
    let mut normalizer = Normalizer::try_new(
        &layout,
        (&format, Arc::clone(&values)),
        (Arc::new(Schema::new(fields)), origins),
        all,
        "fuzzed".into(),
    )
    .map_err(|e| format!("the normalizer of a valid layout failed: {e}"))?;
    let mut buffer = RecordBuffer::default();
    let mut keys = std::collections::BTreeSet::new();
    for (i, l) in input.lines.iter().take(64).enumerate() {
        let value = line(Format::Json, b',', l);
        let key = match input.keys.get(i) {
            Some((Some(k), _)) if i % 3 == 0 => k.clone(),
            _ => format!("{{\"k\": {}}}", i % 5).into_bytes(),
        };
        keys.insert(key.clone());
        let tombstone = matches!(l, Line::Bytes(b) if b.len() < 2);
        buffer.push(
            (!tombstone).then_some(&value[..]),
            i as i64,
            None,
            Some(&key),
        );
    }
    // In two halves, the first replayed, the second handed on.
    let mut held: BTreeMap<String, i64> = BTreeMap::new();
    for (half, emit) in [(0usize, false), (1, true)] {
        let mut part = RecordBuffer::default();
        for i in 0..buffer.len() {
            if (i * 2 >= buffer.len()) as usize == half {
                part.push(
                    buffer.present[i].then_some(&buffer.values[i][..]),
                    buffer.offsets[i],
                    None,
                    buffer.keys[i].as_deref(),
                );
            }
        }
        if part.is_empty() {
            continue;
        }
        match normalizer.apply(1, &mut part, emit) {
            Ok(None) => {}
            Ok(Some((batch, kinds))) => {
                if !emit {
                    return Err("a replay handed on changes".into());
                }
                for i in 0..batch.num_rows() {
                    let row: Vec<String> = batch
                        .columns()
                        .iter()
                        .map(|c| {
                            datafusion::arrow::util::display::array_value_to_string(c, i)
                                .unwrap_or_default()
                        })
                        .collect();
                    let row = row.join("|");
                    match kinds.value(i) {
                        0 | 2 => *held.entry(row).or_default() += 1,
                        _ => {
                            // Rows of the replayed half were never handed on here.
                            if let Some(n) = held.get_mut(&row) {
                                *n -= 1;
                                if *n == 0 {
                                    held.remove(&row);
                                }
                            }
                        }
                    }
                }
            }
            Err(e) => {
                let m = e.to_string();
                if !m.contains("offset") {
                    return Err(format!("an upsert record error that names no record: {m}"));
                }
                return Ok("upsert: error".into());
            }
        }
    }
    if normalizer.keys_held() > keys.len() {
        return Err(format!(
            "{} keys held after {} distinct keys",
            normalizer.keys_held(),
            keys.len()
        ));
    }
    if held.values().sum::<i64>() as usize > normalizer.keys_held() {
        return Err(format!(
            "the changelog holds {held:?}, more rows than the {} keys held",
            normalizer.keys_held()
        ));
    }
    Ok("upsert: ok".into())
}

/// The records as a file under a windowed query.
async fn query_file(input: &Input, dir: &std::path::Path, n: usize) -> Result<Outcome, String> {
    let format = match input.format {
        Format::Json => "json",
        _ => "csv",
    };
    let path = dir.join(format!("r{n}.{format}"));
    let mut text = Vec::new();
    for l in input.lines.iter().take(64) {
        text.extend_from_slice(&line(input.format, b',', l));
        text.push(b'\n');
    }
    std::fs::write(&path, &text).map_err(|e| e.to_string())?;
    let ctx = sabot::session_context(SabotConfig {
        parallelism: 2,
        checkpoint_interval: None,
        ..SabotConfig::default()
    });
    let create = format!(
        "CREATE TABLE r (k BIGINT, v DOUBLE, s VARCHAR, b BOOLEAN, ts TIMESTAMP(3), \
         d DECIMAL(10, 2), day DATE, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND) WITH \
         ('connector' = 'filesystem', 'path' = '{}', 'format' = '{format}', \
         '{format}.ignore-parse-errors' = '{}')",
        path.display(),
        input.ignore_errors
    );
    let run = async {
        ctx.sql(&create).await?.collect().await?;
        ctx.sql(
            "SELECT k, window_start, COUNT(*), SUM(v), MAX(ts) FROM \
             TABLE(HOP(TABLE r, DESCRIPTOR(ts), INTERVAL '1' SECOND, INTERVAL '3' SECOND)) \
             GROUP BY k, window_start, window_end",
        )
        .await?
        .collect()
        .await
    };
    let result = tokio::time::timeout(Duration::from_secs(20), run).await;
    let _ = std::fs::remove_file(&path);
    match result {
        Ok(Ok(_)) => Ok("file: ok".into()),
        Ok(Err(e)) => {
            if std::env::var_os("SABOT_FUZZ_VERBOSE").is_some() {
                eprintln!("file: {e}");
            }
            if !(names_the_place(&e) || e.to_string().contains("r.") || input.ignore_errors) {
                // Errors before reading (types, options) need not name a line.
                let m = e.to_string();
                if m.contains("parse") || m.contains("decode") {
                    return Err(format!("a record error that names no line: {m}"));
                }
            }
            Ok("file: error".into())
        }
        Err(_) => Err("a windowed query over a small file ran for more than 20 s".into()),
    }
}

/// The records target (see the module docs).
#[test]
fn fuzz_target_records() {
    let rt = harness::runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut n = 0usize;
    harness::run("records", 4_096, |data| {
        let mut u = Unstructured::new(data);
        let Ok(input) = Input::arbitrary(&mut u) else {
            return Ok("no input".into());
        };
        n += 1;
        let decoded = decode_both(&input)?;
        let kafka = assemble_kafka(&input)?;
        let upsert = normalize_upserts(&input)?;
        if n.is_multiple_of(10) {
            return rt.block_on(query_file(&input, dir.path(), n));
        }
        Ok(match n % 3 {
            0 => decoded,
            1 => kafka,
            _ => upsert,
        })
    });
}
