//! Boundedness, partitions, projection and rate limiting.

use std::time::{Duration, Instant};

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;

use super::fixtures::{column, connector, i64s, read};
use crate::connectors::SourceConnector;
use crate::connectors::datagen::reader::{offset_of, partition_rate};

#[tokio::test]
async fn sequence_partitions_union_to_the_sequence() {
    let c = connector(
        vec![column("id", DataType::Int64)],
        &[
            ("rows-per-second", "0"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "1"),
            ("fields.id.end", "10"),
        ],
    );
    assert!(c.is_bounded());
    assert_eq!(c.num_partitions(2).unwrap(), 2);
    assert_eq!(c.num_partitions(64).unwrap(), 10);
    let p0 = i64s(&read(&c, 0, 2, &[0], 3).await, 0);
    let p1 = i64s(&read(&c, 1, 2, &[0], 3).await, 0);
    assert_eq!(p0, vec![1, 3, 5, 7, 9]);
    assert_eq!(p1, vec![2, 4, 6, 8, 10]);
    let mut all: Vec<i64> = p0.into_iter().chain(p1).collect();
    all.sort();
    assert_eq!(all, (1..=10).collect::<Vec<_>>());
    // One partition: the same rows, in order.
    assert_eq!(
        i64s(&read(&c, 0, 1, &[0], 4).await, 0),
        (1..=10).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn number_of_rows_bounds_the_table() {
    let c = connector(
        vec![column("x", DataType::Int32)],
        &[("rows-per-second", "0"), ("number-of-rows", "25")],
    );
    assert!(c.is_bounded());
    assert_eq!(c.num_partitions(100).unwrap(), 25);
    let counts: Vec<usize> = futures::future::join_all((0..3).map(|p| {
        let c = c.clone();
        async move {
            read(&c, p, 3, &[0], 4)
                .await
                .iter()
                .map(|b| b.num_rows())
                .sum()
        }
    }))
    .await;
    assert_eq!(counts, vec![9, 8, 8]);
    // The shorter of number-of-rows and a sequence wins.
    let c = connector(
        vec![column("id", DataType::Int64)],
        &[
            ("number-of-rows", "5"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "0"),
            ("fields.id.end", "99"),
        ],
    );
    assert_eq!(c.total_rows(), Some(5));
    assert_eq!(
        c.explain(),
        "rows-per-second=10000, number-of-rows=5, sequences=[id=0..=99]"
    );
}

#[tokio::test]
async fn unbounded_without_rows_or_sequence() {
    let c = connector(
        vec![column("x", DataType::Int64)],
        &[("rows-per-second", "0")],
    );
    assert!(!c.is_bounded());
    assert_eq!(c.num_partitions(4).unwrap(), 4);
    assert_eq!(c.explain(), "rows-per-second=0");
    let mut reader = c.open(0, 1, &[0], 7).unwrap();
    for _ in 0..3 {
        assert_eq!(
            reader.next_batch().await.unwrap().unwrap().batch.num_rows(),
            7
        );
    }
}

#[tokio::test]
async fn projection_order_and_values_independent_of_projection() {
    let c = connector(
        vec![
            column("a", DataType::Int64),
            column("b", DataType::Utf8),
            column("c", DataType::Int64),
        ],
        &[
            ("rows-per-second", "0"),
            ("fields.a.kind", "sequence"),
            ("fields.a.start", "0"),
            ("fields.a.end", "4"),
            ("fields.b.length", "5"),
            ("fields.c.kind", "sequence"),
            ("fields.c.start", "100"),
            ("fields.c.end", "200"),
        ],
    );
    let projected = read(&c, 0, 1, &[2, 1, 0], 100).await;
    let schema = projected[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, vec!["c", "b", "a"]);
    assert_eq!(i64s(&projected, 0), vec![100, 101, 102, 103, 104]);
    assert_eq!(i64s(&projected, 2), vec![0, 1, 2, 3, 4]);
    let full = read(&c, 0, 1, &[0, 1, 2], 2).await;
    let strings = |batches: &[RecordBatch], col: usize| -> Vec<String> {
        batches
            .iter()
            .flat_map(|b| {
                b.column(col)
                    .as_string::<i32>()
                    .iter()
                    .map(|s| s.unwrap().to_string())
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    assert_eq!(strings(&projected, 1), strings(&full, 1));
    // No columns at all: only row counts.
    let empty = read(&c, 0, 1, &[], 3).await;
    assert_eq!(empty.iter().map(|b| b.num_rows()).sum::<usize>(), 5);
    assert_eq!(empty[0].num_columns(), 0);
}

#[tokio::test]
async fn rate_limit_paces_and_splits_batches() {
    let c = connector(
        vec![column("x", DataType::Int64)],
        &[("rows-per-second", "100"), ("number-of-rows", "20")],
    );
    let started = Instant::now();
    let batches = read(&c, 0, 1, &[0], 1000).await;
    let elapsed = started.elapsed();
    // Row i is due 10 ms * i after the start; at most 100 ms (10 rows) per batch.
    assert!(batches.iter().all(|b| b.num_rows() <= 10));
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 20);
    assert!(elapsed >= Duration::from_millis(185), "{elapsed:?}");
    // Partitions share the rate, remainder first, at least 1 row per second each.
    assert_eq!(partition_rate(3, 0, 2), Some(2));
    assert_eq!(partition_rate(3, 1, 2), Some(1));
    assert_eq!(partition_rate(1, 3, 4), Some(1));
    assert_eq!(partition_rate(0, 0, 4), None);
    assert_eq!(offset_of(2, 2), Duration::from_secs(1));
}

/// A restored reader says where it resumes before it hands over a batch (what a checkpoint
/// taken then records), and that is the position it was restored from.
#[tokio::test]
async fn a_restored_reader_reports_where_it_resumes() {
    let c = connector(
        vec![column("id", DataType::Int64)],
        &[
            ("rows-per-second", "0"),
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "1"),
            ("fields.id.end", "10"),
        ],
    );
    let mut first = c.open(0, 1, &[0], 4).unwrap();
    let batch = first.next_batch().await.unwrap().unwrap();
    let position = batch
        .position
        .clone()
        .expect("a datagen batch has a position");
    let mut restored = c.open(0, 1, &[0], 4).unwrap();
    restored
        .restore(
            0,
            1,
            &[crate::connectors::SavedPosition {
                partition: 0,
                num_partitions: 1,
                position: position.clone(),
            }],
        )
        .unwrap();
    assert_eq!(restored.restored_position(), Some(position));
    let next = restored.next_batch().await.unwrap().unwrap();
    assert_eq!(i64s(&[next.batch], 0), vec![5, 6, 7, 8]);
}
