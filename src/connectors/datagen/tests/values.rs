//! Generated values: ranges, strings, NULLs, seeds, timestamps, dates, decimals and booleans.

use std::time::{SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Decimal128Type, Float64Type, Int8Type, Int32Type, TimeUnit, UInt64Type,
};

use super::fixtures::{column, connector, read};
use crate::connectors::SourceConnector;

#[tokio::test]
async fn random_ints_respect_min_max() {
    let c = connector(
        vec![column("x", DataType::Int8), column("u", DataType::UInt64)],
        &[
            ("rows-per-second", "0"),
            ("number-of-rows", "1000"),
            ("fields.x.min", "-3"),
            ("fields.x.max", "3"),
        ],
    );
    let batches = read(&c, 0, 1, &[0, 1], 256).await;
    let mut seen = std::collections::BTreeSet::new();
    for b in &batches {
        for v in b.column(0).as_primitive::<Int8Type>().values() {
            assert!((-3..=3).contains(v), "{v}");
            seen.insert(*v);
        }
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    // The full UInt64 range reaches values above i64::MAX.
    let big = batches
        .iter()
        .flat_map(|b| b.column(1).as_primitive::<UInt64Type>().values().to_vec())
        .filter(|v| *v > i64::MAX as u64)
        .count();
    assert!(big > 300, "{big}");
}

#[tokio::test]
async fn floats_default_to_0_1000() {
    let c = connector(
        vec![column("f", DataType::Float64)],
        &[("rows-per-second", "0"), ("number-of-rows", "500")],
    );
    for b in read(&c, 0, 1, &[0], 100).await {
        for v in b.column(0).as_primitive::<Float64Type>().values() {
            assert!((0.0..=1000.0).contains(v), "{v}");
        }
    }
}

#[tokio::test]
async fn string_lengths_and_alphabet() {
    let c = connector(
        vec![
            column("s", DataType::Utf8),
            column("d", DataType::Utf8View),
            column("l", DataType::LargeUtf8),
        ],
        &[
            ("rows-per-second", "0"),
            ("number-of-rows", "50"),
            ("fields.s.length", "7"),
        ],
    );
    let batches = read(&c, 0, 1, &[0, 1, 2], 64).await;
    for b in &batches {
        for s in b.column(0).as_string::<i32>().iter() {
            let s = s.unwrap();
            assert_eq!(s.len(), 7);
            assert!(
                s.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "{s}"
            );
        }
        for s in b.column(1).as_string_view().iter() {
            assert_eq!(s.unwrap().len(), 100);
        }
        for s in b.column(2).as_string::<i64>().iter() {
            assert_eq!(s.unwrap().len(), 100);
        }
    }
}

#[tokio::test]
async fn null_rate_zero_and_one() {
    let c = connector(
        vec![column("a", DataType::Int32), column("b", DataType::Int32)],
        &[
            ("rows-per-second", "0"),
            ("number-of-rows", "200"),
            ("fields.a.null-rate", "0"),
            ("fields.b.null-rate", "1.0"),
        ],
    );
    for b in read(&c, 0, 1, &[0, 1], 64).await {
        assert_eq!(b.column(0).null_count(), 0);
        assert_eq!(b.column(1).null_count(), b.num_rows());
    }
    let c = connector(
        vec![column("a", DataType::Int32)],
        &[
            ("rows-per-second", "0"),
            ("number-of-rows", "1000"),
            ("fields.a.null-rate", "0.5"),
        ],
    );
    let nulls: usize = read(&c, 0, 1, &[0], 1000)
        .await
        .iter()
        .map(|b| b.column(0).null_count())
        .sum();
    assert!((350..650).contains(&nulls), "{nulls}");
}

#[tokio::test]
async fn seed_makes_runs_reproducible() {
    let values = |seed: &'static str| async move {
        let c = connector(
            vec![column("x", DataType::Int32)],
            &[
                ("rows-per-second", "0"),
                ("number-of-rows", "20"),
                ("seed", seed),
            ],
        );
        read(&c, 0, 1, &[0], 20).await[0]
            .column(0)
            .as_primitive::<Int32Type>()
            .values()
            .to_vec()
    };
    assert_eq!(values("1").await, values("1").await);
    assert_ne!(values("1").await, values("2").await);
}

#[tokio::test]
async fn timestamps_dates_decimals_bools() {
    let c = connector(
        vec![
            column(
                "ts",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            ),
            column("d", DataType::Date32),
            column("m", DataType::Decimal128(10, 2)),
            column("b", DataType::Boolean),
            column("q", DataType::Decimal128(5, 1)),
        ],
        &[
            ("rows-per-second", "0"),
            ("number-of-rows", "100"),
            ("fields.ts.max-past", "5 s"),
            ("fields.m.min", "1.50"),
            ("fields.m.max", "2"),
            ("fields.q.kind", "sequence"),
            ("fields.q.start", "7"),
            ("fields.q.end", "1000"),
        ],
    );
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let batches = read(&c, 0, 1, &[0, 1, 2, 3, 4], 100).await;
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let b = &batches[0];
    assert_eq!(
        b.schema().field(0).data_type(),
        c.schema().field(0).data_type()
    );
    let ts = b
        .column(0)
        .as_primitive::<datafusion::arrow::datatypes::TimestampMillisecondType>();
    for v in ts.values() {
        assert!(*v >= before - 5000 && *v <= after, "{v}");
    }
    let dates = b
        .column(1)
        .as_primitive::<datafusion::arrow::datatypes::Date32Type>();
    assert!(
        dates
            .values()
            .iter()
            .all(|d| i64::from(*d) == after / 86_400_000 || i64::from(*d) == before / 86_400_000)
    );
    let m = b.column(2).as_primitive::<Decimal128Type>();
    assert!(m.values().iter().all(|v| (150..=200).contains(v)));
    let bools = b.column(3).as_boolean();
    assert!(bools.true_count() > 20 && bools.false_count() > 20);
    let q = b.column(4).as_primitive::<Decimal128Type>();
    assert_eq!(q.value(0), 70);
    assert_eq!(q.value(3), 100);
}

#[tokio::test]
async fn string_sequence() {
    let c = connector(
        vec![column("k", DataType::Utf8)],
        &[
            ("fields.k.kind", "sequence"),
            ("fields.k.start", "-1"),
            ("fields.k.end", "1"),
        ],
    );
    let b = read(&c, 0, 1, &[0], 10).await;
    let v: Vec<&str> = b[0]
        .column(0)
        .as_string::<i32>()
        .iter()
        .map(|s| s.unwrap())
        .collect();
    assert_eq!(v, vec!["-1", "0", "1"]);
}
