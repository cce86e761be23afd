//! Unit tests of the top-N partition stream: rows entering and leaving the ranks, rank
//! updates, versioned views and their watermark, expiry (on reads and by the timer), ties,
//! and RocksDB state against memory.

use super::*;
use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_expr::expressions::Column;

use RowKind::{Delete as D, Insert as I};

/// A top-N of `(k, name, price)` per `k` by price descending, ranks `start..=end`.
fn top(start: u64, end: u64, rank_column: bool, keep_all: bool) -> TopNStream {
    let input = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("price", DataType::Int64, true),
    ]));
    let mut fields: Vec<Field> = input.fields().iter().map(|f| f.as_ref().clone()).collect();
    if rank_column {
        fields.push(Field::new("rn", DataType::UInt64, false));
    }
    let def = TopN {
        partition_by: vec![Arc::new(Column::new("k", 0))],
        order_by: vec![PhysicalSortExpr::new(
            Arc::new(Column::new("price", 2)),
            SortOptions {
                descending: true,
                nulls_first: true,
            },
        )],
        rank_start: start,
        rank_end: end,
        rank_column,
        later_wins_ties: false,
        ttl: None,
    };
    TopNStream::new(
        Ranking::try_new(&def, &input).unwrap(),
        RowCodec::try_new(vec![DataType::Utf8], "keys").unwrap(),
        RowCodec::try_new(
            vec![DataType::Utf8, DataType::Utf8, DataType::Int64],
            "rows",
        )
        .unwrap(),
        Arc::clone(&input),
        Arc::new(Schema::new(fields)),
        keep_all,
    )
}

/// Feeds rows `(k, name, price, kind)`; the output as `op|col|col...` lines.
fn feed(top: &mut TopNStream, rows: &[(&str, &str, i64, RowKind)]) -> Vec<String> {
    let batch = RecordBatch::try_new(
        Arc::clone(&top.nullable),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )
    .unwrap();
    let kinds = Int8Array::from_iter_values(rows.iter().map(|r| r.3 as i8));
    let mut out = Vec::new();
    let inputs = [NO_WATERMARK];
    let mut ctx = Context::for_test(&inputs, &mut out);
    top.on_data(0, StreamBatch::new(batch).with_kinds(Some(kinds)), &mut ctx)
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

/// A versioned view (the last row per key by event time): a replaced row is an update
/// (`-U`, `+U`), and the output carries the input's watermark and may go idle; any other
/// top-N holds its watermark back.
#[test]
fn a_versioned_view_updates_and_forwards_the_watermark() {
    let mut t = top(1, 1, false, false).with_event_time(true);
    assert_eq!(feed(&mut t, &[("a", "x", 10, I)]), ["+I|a|x|10"]);
    assert_eq!(
        feed(&mut t, &[("a", "y", 20, I)]),
        ["-U|a|x|10", "+U|a|y|20"]
    );
    let inputs = [15];
    let mut out = Vec::new();
    let mut ctx = Context::for_test(&inputs, &mut out);
    assert_eq!(
        futures::executor::block_on(t.on_watermark(&mut ctx)).unwrap(),
        15
    );
    assert!(t.may_idle());
    let mut plain = top(1, 1, false, false);
    let mut ctx = Context::for_test(&inputs, &mut out);
    assert_eq!(
        futures::executor::block_on(plain.on_watermark(&mut ctx)).unwrap(),
        NO_WATERMARK
    );
    assert!(!plain.may_idle());
}

/// Over rows that only append: a row enters when it ranks, pushes the last one out, and a
/// row that cannot rank is neither emitted nor kept.
#[test]
fn rows_enter_and_push_the_last_out() {
    let mut t = top(1, 2, false, false);
    assert_eq!(feed(&mut t, &[("a", "x", 10, I)]), ["+I|a|x|10"]);
    assert_eq!(feed(&mut t, &[("a", "y", 20, I)]), ["+I|a|y|20"]);
    assert_eq!(
        feed(&mut t, &[("a", "z", 15, I)]),
        ["-D|a|x|10", "+I|a|z|15"]
    );
    assert_eq!(feed(&mut t, &[("a", "w", 1, I)]), Vec::<String>::new());
    assert_eq!(t.size.rows, 2);
    // In one batch, a row that comes and is pushed out again is no change at all; another
    // key is apart.
    assert_eq!(
        feed(
            &mut t,
            &[("a", "v", 16, I), ("a", "u", 30, I), ("b", "q", 1, I)]
        ),
        ["-D|a|z|15", "+I|a|u|30", "+I|b|q|1"]
    );
    assert_eq!(t.size.rows, 3);
}

/// With the row number: each rank whose row changed is updated, filled or emptied.
#[test]
fn ranks_are_updated_with_the_row_number() {
    let mut t = top(1, 2, true, true);
    assert_eq!(feed(&mut t, &[("a", "x", 10, I)]), ["+I|a|x|10|1"]);
    assert_eq!(
        feed(&mut t, &[("a", "y", 20, I)]),
        ["-U|a|x|10|1", "+U|a|y|20|1", "+I|a|x|10|2"]
    );
    assert_eq!(feed(&mut t, &[("a", "z", 5, I)]), Vec::<String>::new());
    // The first row taken back: the others move up, the third into rank 2.
    assert_eq!(
        feed(&mut t, &[("a", "y", 20, D)]),
        ["-U|a|y|20|1", "+U|a|x|10|1", "-U|a|x|10|2", "+U|a|z|5|2"]
    );
    assert_eq!(
        feed(&mut t, &[("a", "x", 10, D)]),
        ["-U|a|x|10|1", "+U|a|z|5|1", "-D|a|z|5|2"]
    );
    assert_eq!(feed(&mut t, &[("a", "z", 5, D)]), ["-D|a|z|5|1"]);
    // Nothing is left, not even the key; a retraction of a row never held is ignored.
    assert!(t.partitions.is_empty());
    assert_eq!(feed(&mut t, &[("a", "q", 1, D)]), Vec::<String>::new());
    assert_eq!((t.unknown, t.size.rows), (1, 0));
}

/// A range of ranks beyond the first: rows move in and out of it as better rows come.
#[test]
fn a_range_of_ranks_follows_the_rows_before_it() {
    let mut t = top(2, 3, false, true);
    assert_eq!(feed(&mut t, &[("a", "x", 10, I)]), Vec::<String>::new());
    assert_eq!(feed(&mut t, &[("a", "y", 20, I)]), ["+I|a|x|10"]);
    assert_eq!(feed(&mut t, &[("a", "z", 30, I)]), ["+I|a|y|20"]);
    assert_eq!(
        feed(&mut t, &[("a", "w", 40, I)]),
        ["-D|a|x|10", "+I|a|z|30"]
    );
    assert_eq!(
        feed(&mut t, &[("a", "w", 40, D)]),
        ["-D|a|z|30", "+I|a|x|10"]
    );
}

/// With a time to live, a key not written for that long starts over: its next row ranks
/// first, and the ranks it had emitted are not taken back.
#[test]
fn an_expired_key_starts_over() {
    let mut t = top(1, 1, false, false);
    t.ttl = Some(TimeToLive::new(std::time::Duration::from_millis(20)));
    assert_eq!(feed(&mut t, &[("a", "x", 10, I)]), ["+I|a|x|10"]);
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(feed(&mut t, &[("a", "y", 5, I)]), ["+I|a|y|5"]);
    assert_eq!((t.partitions.len(), t.size.rows), (1, 1));
    // Within the time to live, the better row stays first.
    let mut t = top(1, 1, false, false);
    t.ttl = Some(TimeToLive::new(std::time::Duration::from_secs(3600)));
    feed(&mut t, &[("a", "x", 10, I)]);
    assert_eq!(feed(&mut t, &[("a", "y", 5, I)]), Vec::<String>::new());
}

/// With a time to live, the timer sweeps expired keys while no rows come, and asks for no
/// sweep while nothing is held.
#[test]
fn the_timer_sweeps_expired_keys() {
    let mut t = top(1, 1, false, false);
    t.ttl = Some(TimeToLive::new(std::time::Duration::from_millis(20)));
    assert_eq!(t.next_timer(), None);
    feed(&mut t, &[("a", "x", 10, I)]);
    let due = t.next_timer().expect("a sweep is due while keys are held");
    let inputs = [NO_WATERMARK];
    let mut out = Vec::new();
    let mut ctx = Context::for_test(&inputs, &mut out);
    t.on_timer(due.max(now_ms()) + 100, &mut ctx).unwrap();
    assert!(t.partitions.is_empty());
    assert_eq!((t.size.rows, t.next_timer()), (0, None));
    assert!(out.is_empty(), "expiry emits nothing");
}

/// `t` with its rows in RocksDB under `dir`, written back after every batch.
fn in_rocksdb(t: TopNStream, dir: &std::path::Path) -> TopNStream {
    let mut t = t.with_rocksdb(KeyedDb::try_new(dir, "test", 1).unwrap(), 0, 1);
    if let Some(rocks) = t.rocks.as_mut() {
        rocks.capacity = 0;
    }
    t
}

/// With RocksDB and every batch written back (the cache emptied), the changes are those of
/// the state in memory: over appended rows (top-2, deduplication) and over a changelog
/// (rows taken back, ranks emitted).
#[test]
fn rocksdb_state_changes_as_memory_does() {
    for (start, end, rank_column, keep_all) in [
        (1, 2, false, false),
        (1, 1, false, false),
        (1, 3, true, true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = top(start, end, rank_column, keep_all);
        let mut rocks = in_rocksdb(top(start, end, rank_column, keep_all), dir.path());
        let mut held: Vec<(&str, String, i64)> = Vec::new();
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let keys = ["a", "b", "c"];
        for round in 0..40 {
            let mut names = Vec::new();
            let mut rows = Vec::new();
            for i in 0..4 {
                names.push(format!("r{round}-{i}"));
            }
            for name in &names {
                if keep_all && !held.is_empty() && next(3) == 0 {
                    let (k, n, p) = held.remove(next(held.len() as u64) as usize);
                    rows.push((k, n, p, D));
                } else {
                    let k = keys[next(3) as usize];
                    let p = next(50) as i64;
                    held.push((k, name.clone(), p));
                    rows.push((k, name.clone(), p, I));
                }
            }
            let rows: Vec<(&str, &str, i64, RowKind)> = rows
                .iter()
                .map(|(k, n, p, kind)| (*k, n.as_str(), *p, *kind))
                .collect();
            assert_eq!(
                feed(&mut rocks, &rows),
                feed(&mut memory, &rows),
                "round {round} of {start}..={end}"
            );
            assert!(rocks.partitions.is_empty(), "the cache was written back");
        }
    }
}

/// With RocksDB, a key expired in the database starts over when it is read again.
#[test]
fn an_expired_key_in_rocksdb_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = in_rocksdb(top(1, 1, false, false), dir.path());
    t.ttl = Some(TimeToLive::new(std::time::Duration::from_millis(20)));
    assert_eq!(feed(&mut t, &[("a", "x", 10, I)]), ["+I|a|x|10"]);
    assert!(t.partitions.is_empty());
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(feed(&mut t, &[("a", "y", 5, I)]), ["+I|a|y|5"]);
}

/// Copies of one row are rows of their own; taking one back takes one.
#[test]
fn copies_rank_apart() {
    let mut t = top(1, 2, false, true);
    assert_eq!(
        feed(
            &mut t,
            &[("a", "x", 10, I), ("a", "x", 10, I), ("a", "x", 10, I)]
        ),
        ["+I|a|x|10", "+I|a|x|10"]
    );
    assert_eq!(feed(&mut t, &[("a", "x", 10, D)]), Vec::<String>::new());
    assert_eq!(feed(&mut t, &[("a", "x", 10, D)]), ["-D|a|x|10"]);
    assert_eq!(t.size.rows, 1);
}
