//! Unit tests of the formats: decimals, format options, decoding text in place against line
//! by line, and records of a topic giving one row each.

use super::*;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use std::sync::Arc;

/// Found by the records fuzz target: `1e40000` in a DECIMAL field overflowed arrow's
/// decimal parser (a panic in a debug build, a wrong value in a release build).
#[test]
fn decimals_with_absurd_exponents_are_malformed_records() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("d", DataType::Decimal128(10, 2), true),
    ]));
    for (format, good, expected, bad) in [
        ("csv", "1,12.5e1\n", "125.00", "1,1e40000\n"),
        (
            "json",
            "{\"a\":1,\"d\":12.5e1}\n",
            "125.00",
            "{\"a\":1,\"d\":1e40000}\n",
        ),
        (
            "json",
            "{\"a\":1,\"d\":\"1.25\"}\n",
            "1.25",
            "{\"a\":1,\"d\":\"-2E+65536\"}\n",
        ),
    ] {
        let options = format_options(format, &[]);
        let mut d = decoder(&options, schema.clone(), schema.clone(), &[0, 1]).unwrap();
        let batch = d.decode_text("f", 1, good.as_bytes(), 1).unwrap().unwrap();
        let value = batch
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Decimal128Type>();
        assert_eq!(value.value_as_string(0), expected, "{format} {good}");
        let e = d
            .decode_text("f", 1, bad.as_bytes(), 1)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f at line 1") && e.contains("exponent"),
            "{format}: {e}"
        );
    }
}

fn options(pairs: &[(&str, &str)]) -> TableOptions {
    TableOptions::of_pairs(pairs)
}

/// The format options of a table with `'format' = format` and the WITH options `pairs`.
fn format_options(format: &str, pairs: &[(&str, &str)]) -> FormatOptions {
    let mut pairs = pairs.to_vec();
    pairs.push(("format", format));
    FormatOptions::parse(&options(&pairs), FORMATS).unwrap()
}

/// Only the chosen format's options are read, each with its default when unset; the
/// format is matched case-insensitively and must be one of the connector's.
#[test]
fn format_options_read_the_chosen_format() {
    assert_eq!(
        FormatOptions::parse(&options(&[]), FORMATS).unwrap(),
        FormatOptions {
            format: Format::Json,
            ignore_parse_errors: false,
            csv: CsvOptions {
                delimiter: b',',
                quote: b'"',
                header: false,
            },
        }
    );
    // A json table reads json.ignore-parse-errors and never looks at csv.*.
    let json = options(&[
        ("format", "json"),
        ("json.ignore-parse-errors", "true"),
        ("csv.header", "yes"),
        ("csv.field-delimiter", ";;"),
    ]);
    let parsed = FormatOptions::parse(&json, FORMATS).unwrap();
    assert_eq!(parsed.format, Format::Json);
    assert!(parsed.ignore_parse_errors);
    assert_eq!(parsed.csv, CsvOptions::default());
    // A csv table reads csv.*, not json.ignore-parse-errors.
    let csv = options(&[
        ("format", " CSV "),
        ("csv.header", "true"),
        ("csv.field-delimiter", "|"),
        ("json.ignore-parse-errors", "maybe"),
    ]);
    let parsed = FormatOptions::parse(&csv, FORMATS).unwrap();
    assert_eq!(parsed.format, Format::Csv);
    assert!(!parsed.ignore_parse_errors);
    assert_eq!(
        parsed.csv,
        CsvOptions {
            delimiter: b'|',
            quote: b'"',
            header: true,
        }
    );
    let bad_header = options(&[("format", "csv"), ("csv.header", "yes")]);
    let err = FormatOptions::parse(&bad_header, FORMATS)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("option 'csv.header' of table t is 'yes', but it must be 'true' or"),
        "{err}"
    );
    // raw is a format only where the connector lists it.
    let raw = options(&[("format", "raw")]);
    let err = FormatOptions::parse(&raw, FORMATS).unwrap_err().to_string();
    assert!(
        err.contains("option 'format' of table t is 'raw', but it must be one of: json, csv"),
        "{err}"
    );
    assert_eq!(
        FormatOptions::parse(&raw, &["json", "csv", "raw"]).unwrap(),
        FormatOptions::new(Format::Raw)
    );
}

/// Found by the records fuzz target: a JSON value begun in one Kafka record and ended in
/// the next decoded as one row for two records, so that rows and their records' offsets
/// (and an upsert topic's keys) no longer matched. Each record of a topic gives its own
/// row or is malformed; blank records give none and say so; a file's record may still
/// span lines.
#[test]
fn records_of_a_topic_give_one_row_each() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Utf8, true),
    ]));
    let make = |format: &str, pairs: &[(&str, &str)]| {
        decoder(
            &format_options(format, pairs),
            Arc::clone(&schema),
            Arc::clone(&schema),
            &[0, 1],
        )
        .unwrap()
    };
    let lines = |l: &[&str]| -> Vec<Vec<u8>> { l.iter().map(|l| l.as_bytes().to_vec()).collect() };
    let records = |l: &'static [Vec<u8>]| LineChunk {
        origin: "topic t partition 0",
        first_line: 1,
        lines: l,
        offsets: Some(&[10, 11, 12][..l.len()]),
    };
    let leak = |l: Vec<Vec<u8>>| -> &'static [Vec<u8>] { Box::leak(l.into_boxed_slice()) };
    // Per format: a value split over two records, a record holding a line break, a plain
    // record.
    for (format, split, spanning, whole) in [
        (
            "json",
            ["{\"a\": 1,", "\"b\": \"x\"}"],
            "{\"a\": 1,\n\"b\": \"x\"}",
            "{\"a\": 2}",
        ),
        ("csv", ["1,\"x", "y\""], "1,\"x\ny\"", "2,z"),
    ] {
        // Malformed, named by the first one's offset (CSV: its quote never closes); both
        // skipped when asked.
        let split = leak(lines(&split));
        let err = make(format, &[])
            .decode(records(split))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at offset 10"), "{format}: {err}");
        let mut lenient = make(
            format,
            &[(&format!("{format}.ignore-parse-errors"), "true")],
        );
        assert_eq!(lenient.decode(records(split)).unwrap(), None, "{format}");
        assert_eq!(lenient.skipped(), 2, "{format}");
        // The same lines of a file are one record over two lines.
        let batch = make(format, &[])
            .decode(LineChunk::of_file("f", 1, split))
            .unwrap()
            .unwrap();
        assert_eq!(batch.num_rows(), 1, "{format}");
        // A record holding a line break, a blank one, a plain one: two rows, from records
        // 0 and 2.
        let three = leak(vec![
            spanning.as_bytes().to_vec(),
            Vec::new(),
            whole.as_bytes().to_vec(),
        ]);
        let mut d = make(format, &[]);
        let batch = d.decode(records(three)).unwrap().unwrap();
        let a = batch
            .column(0)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        assert_eq!(a.values().to_vec(), vec![1, 2], "{format}");
        assert_eq!(d.kept(), Some(&[0, 2][..]), "{format}");
    }
    // A carriage return ends a CSV row: after a quote left open in the record before, two
    // rows for two records, neither the row of its record.
    let crossed = leak(lines(&["1,\"x", "y\"\r2,z"]));
    let err = make("csv", &[])
        .decode(records(crossed))
        .unwrap_err()
        .to_string();
    assert!(err.contains("at offset 10"), "{err}");
    // Records a producer ended with a line end are rows as they are.
    let ended = leak(lines(&["1,a\r\n", "2,b\n"]));
    let mut d = make("csv", &[]);
    assert_eq!(d.decode(records(ended)).unwrap().unwrap().num_rows(), 2);
    assert_eq!(d.kept(), None);
    // A file's line may hold a carriage return inside quotes beside a record over two
    // lines.
    let file = leak(lines(&["1,\"a\rb\"", "2,\"x", "y\""]));
    let batch = make("csv", &[])
        .decode(LineChunk::of_file("f", 1, file))
        .unwrap()
        .unwrap();
    assert_eq!(batch.num_rows(), 2);
}

/// Decoding text in place gives what decoding its lines gives: the same rows, the same
/// errors (naming the same line), the same skips.
#[test]
fn decode_text_is_decode_of_the_lines() {
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Int64, true),
        Field::new("b", DataType::Utf8, true),
    ]));
    let one = Arc::new(Schema::new(vec![Field::new("b", DataType::Utf8, true)]));
    type Case<'a> = (
        &'a str,
        SchemaRef,
        Vec<usize>,
        &'a str,
        &'a [(&'a str, &'a str)],
    );
    let cases: Vec<Case> = vec![
        ("csv", schema.clone(), vec![0, 1], "1,x\r\n2,y\n", &[]),
        ("csv", schema.clone(), vec![1], "1,x\n\n  \n2,\"y\"\n", &[]),
        ("csv", schema.clone(), vec![0, 1], "1,x\nbad,y\n3,z\n", &[]),
        (
            "csv",
            schema.clone(),
            vec![0, 1],
            "1,x\nbad,y\n3,z\n",
            &[("csv.ignore-parse-errors", "true")],
        ),
        ("csv", schema.clone(), vec![0, 1], "1,\"x\n2\",y\n", &[]),
        ("csv", one.clone(), vec![0], "x\n \ny\n", &[]),
        (
            "json",
            schema.clone(),
            vec![0, 1],
            "{\"a\":1,\"b\":\"x\"}\n\n{\"a\":2}\r\n",
            &[],
        ),
        (
            "json",
            schema.clone(),
            vec![0, 1],
            "{\"a\":1}\n{\"a\":\"q\"}\n",
            &[],
        ),
        (
            "json",
            schema.clone(),
            vec![0, 1],
            "{\"a\":1} {\"a\":2}\n{\"a\":3}\n",
            &[],
        ),
    ];
    for (format, full, projection, text, opts) in cases {
        let out = Arc::new(full.project(&projection).unwrap());
        let options = format_options(format, opts);
        let make = || decoder(&options, Arc::clone(&out), Arc::clone(&full), &projection).unwrap();
        let lines = text.matches('\n').count();
        let mut fast = make();
        let got = fast.decode_text("f", 7, text.as_bytes(), lines);
        let split = split_lines(text.as_bytes());
        let mut slow = make();
        let expected = slow.decode(LineChunk::of_file("f", 7, &split));
        match (got, expected) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{format} {text:?}"),
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{format} {text:?}"),
            (a, b) => panic!("{format} {text:?}: {a:?} vs {b:?}"),
        }
        assert_eq!(fast.skipped(), slow.skipped(), "{format} {text:?}");
        assert_eq!(fast.kept(), slow.kept(), "{format} {text:?}");
    }
}
