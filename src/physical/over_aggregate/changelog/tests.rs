//! Unit tests of the OVER aggregate over a changelog: its changes after every batch of random
//! inserts, updates and deletes against DataFusion's batch answer over the rows held, in
//! memory and in RocksDB.

use super::*;
use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::windows::BoundedWindowAggExec;
use datafusion::prelude::SessionContext;

use crate::state::keyed_db::KeyedDb;
use RowKind::{Delete as D, Insert as I, UpdateAfter as UA, UpdateBefore as UB};

const SQL: &str = "SELECT k, v, name, \
    SUM(v) OVER (PARTITION BY k ORDER BY v DESC, name ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING), \
    COUNT(*) OVER (PARTITION BY k ORDER BY v DESC, name ROWS BETWEEN 2 PRECEDING AND 1 FOLLOWING) \
    FROM t";

/// The window node DataFusion plans for [`SQL`] over `rows` (k, v, name).
async fn window(ctx: &SessionContext, rows: &[(i64, i64, String)]) -> Arc<dyn ExecutionPlan> {
    let values: Vec<String> = rows
        .iter()
        .map(|(k, v, n)| format!("({k}, {v}, '{n}')"))
        .collect();
    let values = if values.is_empty() {
        "SELECT CAST(0 AS BIGINT) AS k, CAST(0 AS BIGINT) AS v, 'x' AS name WHERE false".to_string()
    } else {
        format!(
            "SELECT CAST(column1 AS BIGINT) AS k, CAST(column2 AS BIGINT) AS v, column3 AS \
             name FROM (VALUES {})",
            values.join(", ")
        )
    };
    ctx.sql("DROP VIEW IF EXISTS t").await.unwrap();
    ctx.sql(&format!("CREATE VIEW t AS {values}"))
        .await
        .unwrap();
    ctx.sql(SQL)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

/// A changelog OVER aggregation of [`SQL`]'s window, in RocksDB under `dir` (written back
/// after every batch) if given.
async fn stream(dir: Option<&std::path::Path>) -> ChangelogOverStream {
    let ctx = SessionContext::new();
    let plan = window(&ctx, &[(0, 0, "a".into())]).await;
    let mut node = plan;
    let w = loop {
        if let Some(w) = node.downcast_ref::<BoundedWindowAggExec>() {
            break w;
        }
        node = Arc::clone(node.children()[0]);
    };
    let exprs = w.window_expr().to_vec();
    let input = w.input().schema();
    let def = OverAggregation {
        partition_by: exprs[0].partition_by().to_vec(),
        exprs: exprs.clone(),
        order: super::super::OverOrder::Changelog(ChangelogFrames {
            order_by: exprs[0].order_by().to_vec(),
            back: 2,
            ahead: 1,
        }),
        ttl: None,
    };
    let frames = match &def.order {
        super::super::OverOrder::Changelog(f) => f.clone(),
        super::super::OverOrder::EventTime(_) => unreachable!(),
    };
    let mut s = ChangelogOverStream::try_new(
        def,
        frames,
        RowCodec::try_new(vec![DataType::Int64], "keys").unwrap(),
        RowCodec::of_schema(&input, "rows").unwrap(),
        &input,
        w.schema(),
    )
    .unwrap();
    if let Some(dir) = dir {
        let mut rocks = RocksState::new(KeyedDb::try_new(dir, "test", 2).unwrap(), 0, 1);
        rocks.capacity = 0;
        s.rocks = Some(rocks);
    }
    s
}

/// Feeds changes `(k, v, name, kind)`; the output as `op|k|v|name|sum|count` lines.
fn feed(s: &mut ChangelogOverStream, rows: &[(i64, i64, String, RowKind)]) -> Vec<String> {
    let batch = RecordBatch::try_new(
        Arc::clone(&s.nullable),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.2))),
        ],
    )
    .unwrap();
    let kinds = Int8Array::from_iter_values(rows.iter().map(|r| r.3 as i8));
    let inputs = [NO_WATERMARK];
    let mut out = Vec::new();
    let mut ctx = Context::for_test(&inputs, &mut out);
    s.on_data(0, StreamBatch::new(batch).with_kinds(Some(kinds)), &mut ctx)
        .unwrap();
    let mut lines = Vec::new();
    for b in out {
        for i in 0..b.batch.num_rows() {
            let kind = kind_at(b.kinds.as_deref(), i).unwrap();
            let cells: Vec<String> = b
                .batch
                .columns()
                .iter()
                .map(|c| array_value_to_string(c, i).unwrap())
                .collect();
            lines.push(format!("{}|{}", kind.short(), cells.join("|")));
        }
    }
    lines
}

/// Random changes (inserts, updates, deletes, equal rows) in small batches: the changelog
/// applied ends, after every batch, in DataFusion's batch answer over the rows then held;
/// with the rows in RocksDB (written back after every batch) the changes are the same.
#[tokio::test]
async fn ends_in_the_batch_answer_in_memory_and_in_rocksdb() {
    let dir = tempfile::tempdir().unwrap();
    let mut memory = stream(None).await;
    let mut rocks = stream(Some(dir.path())).await;
    let ctx = SessionContext::new();
    let mut held: Vec<(i64, i64, String)> = Vec::new();
    let mut result: std::collections::BTreeMap<String, usize> = Default::default();
    let mut seed = 3u64;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let mut updated = 0;
    for round in 0..60 {
        let mut changes = Vec::new();
        for _ in 0..1 + next(4) {
            let row = (
                next(3) as i64,
                next(12) as i64,
                ["a", "b", "c"][next(3) as usize].to_string(),
            );
            match next(4) {
                0 if !held.is_empty() => {
                    let old = held.remove(next(held.len() as u64) as usize);
                    changes.push((old.0, old.1, old.2, D));
                }
                1 if !held.is_empty() => {
                    let at = next(held.len() as u64) as usize;
                    let old = std::mem::replace(&mut held[at], row.clone());
                    changes.push((old.0, old.1, old.2, UB));
                    changes.push((row.0, row.1, row.2, UA));
                }
                _ => {
                    held.push(row.clone());
                    changes.push((row.0, row.1, row.2, I));
                }
            }
        }
        let got = feed(&mut rocks, &changes);
        assert_eq!(got, feed(&mut memory, &changes), "round {round}");
        for line in got {
            let (op, row) = line.split_once('|').unwrap();
            if op.starts_with('+') {
                *result.entry(row.to_string()).or_default() += 1;
            } else {
                updated += 1;
                let n = result
                    .get_mut(row)
                    .unwrap_or_else(|| panic!("{op} of {row}"));
                *n -= 1;
                if *n == 0 {
                    result.remove(row);
                }
            }
        }
        let plan = window(&ctx, &held).await;
        let batches = datafusion::physical_plan::collect(plan, ctx.task_ctx())
            .await
            .unwrap();
        let mut want: Vec<String> = Vec::new();
        for b in &batches {
            for i in 0..b.num_rows() {
                let cells: Vec<String> = b
                    .columns()
                    .iter()
                    .map(|c| array_value_to_string(c, i).unwrap())
                    .collect();
                want.push(cells.join("|"));
            }
        }
        want.sort();
        let got: Vec<String> = result
            .iter()
            .flat_map(|(row, n)| std::iter::repeat_n(row.clone(), *n))
            .collect();
        assert_eq!(got, want, "round {round}");
        assert!(rocks.partitions.is_empty(), "written back");
    }
    assert!(updated > 30, "{updated} rows taken back");
}

/// A partition key's rows read back as stored, and RocksDB's compaction reads when they were
/// written (key space 0).
#[test]
fn stored_partitions_read_back() {
    let mut partition = Partition {
        rows: BTreeMap::new(),
        written: 99,
    };
    partition.rows.insert(
        (b"kkrow"[..].into(), 1),
        Held {
            row_at: 2,
            values: Some(b"vals"[..].into()),
        },
    );
    let value = partition.encode();
    let back = Partition::decode(&value).unwrap();
    assert_eq!(back.written, 99);
    let (place, held) = back.rows.iter().next().unwrap();
    assert_eq!(
        (&place.0[..], place.1, held.row_at, held.values.as_deref()),
        (&b"kkrow"[..], 1, 2, Some(&b"vals"[..]))
    );
    assert_eq!(
        crate::state::keyed_db::written_first_in_space_0(&[0, b'k'], &value),
        Some(99)
    );
}
