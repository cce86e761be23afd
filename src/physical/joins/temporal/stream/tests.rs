//! Unit tests of the temporal join's partition stream: probe rows waiting for both inputs'
//! watermarks and meeting the version of their time, LEFT padding, idle inputs, expiry, late
//! rows and row kinds, and RocksDB versions against memory.

use super::*;
use datafusion::arrow::array::{Int64Array, StringArray, TimestampMillisecondArray};
use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::JoinSide;
use datafusion::logical_expr::Operator as Op;
use datafusion::physical_expr::expressions::{BinaryExpr, Column, Literal};
use datafusion::physical_plan::joins::utils::ColumnIndex;
use std::sync::Arc;

use super::super::super::Emit;
use RowKind::{Delete as D, Insert as I, UpdateAfter as UA, UpdateBefore as UB};

fn side(value: &str) -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, true),
        Field::new(value, DataType::Utf8, true),
        Field::new("ts", DataType::Timestamp(TimeUnit::Millisecond, None), true),
    ]))
}

/// Orders `(k, v, ts)` (left, the probe side) joined AS OF their `ts` with versions
/// `(k, w, ts)` (right) on `k`; `filter`: the versions' `w` must not be "no".
fn join(outer: bool, filter: bool, changes: bool) -> TemporalJoinStream {
    let inputs = [side("v"), side("w")];
    let fields: Vec<Field> = inputs
        .iter()
        .flat_map(|s| {
            s.fields()
                .iter()
                .map(|f| f.as_ref().clone().with_nullable(true))
        })
        .collect();
    let output = JoinOutput {
        inputs,
        schema: Arc::new(Schema::new(fields)),
        projection: None,
        emit: Emit::Pairs([false, false]),
    };
    let key: PhysicalExprRef = Arc::new(Column::new("k", 0));
    let filter = filter.then(|| {
        JoinFilter::new(
            Arc::new(BinaryExpr::new(
                Arc::new(Column::new("w", 0)),
                Op::NotEq,
                Arc::new(Literal::new("no".into())),
            )),
            vec![ColumnIndex {
                index: 1,
                side: JoinSide::Right,
            }],
            Arc::new(Schema::new(vec![Field::new("w", DataType::Utf8, true)])),
        )
    });
    TemporalJoinStream::new(
        0,
        outer,
        output,
        vec![(Arc::clone(&key), key)],
        filter,
        [2, 2],
        vec![DataType::Int64],
        changes,
    )
    .unwrap()
}

fn lines(out: Vec<StreamBatch>) -> Vec<String> {
    let mut lines = Vec::new();
    for b in out {
        for i in 0..b.batch.num_rows() {
            let kind = kind_at(b.kinds.as_deref(), i).unwrap();
            let cells: Vec<String> = [0, 1, 4]
                .iter()
                .map(|&c| array_value_to_string(b.batch.column(c), i).unwrap())
                .collect();
            lines.push(format!("{}|{}", kind.short(), cells.join("|")));
        }
    }
    lines
}

/// Feeds rows `(k, value, ts, kind)` to input `input` with the inputs' watermarks at
/// `watermarks`; the output as `op|k|v|w` lines.
fn feed(
    j: &mut TemporalJoinStream,
    input: usize,
    watermarks: [i64; 2],
    rows: &[(i64, &str, i64, RowKind)],
) -> Vec<String> {
    let batch = RecordBatch::try_new(
        Arc::clone(&j.output.inputs[input]),
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(TimestampMillisecondArray::from_iter_values(
                rows.iter().map(|r| r.2),
            )),
        ],
    )
    .unwrap();
    let kinds = Int8Array::from_iter_values(rows.iter().map(|r| r.3 as i8));
    let mut out = Vec::new();
    let mut ctx = Context::for_test(&watermarks, &mut out);
    j.on_data(
        input,
        StreamBatch::new(batch).with_kinds(Some(kinds)),
        &mut ctx,
    )
    .unwrap();
    lines(out)
}

/// The inputs' watermarks move to `watermarks`; the output as in [`feed`].
fn advance(j: &mut TemporalJoinStream, watermarks: [i64; 2]) -> (Vec<String>, i64) {
    let mut out = Vec::new();
    let mut ctx = Context::for_test(&watermarks, &mut out);
    let emitted = futures::executor::block_on(j.on_watermark(&mut ctx)).unwrap();
    (lines(out), emitted)
}

/// With the versions in RocksDB and written back after every batch and watermark (the
/// cache emptied), the output is that of the versions in memory: random versions
/// (updates, deletions, late ones) and orders (some late), inner and outer, with the
/// watermarks moving on.
#[test]
fn rocksdb_versions_join_as_memory_does() {
    for outer in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut memory = join(outer, true, true);
        let mut rocks = join(outer, true, true);
        rocks.rocks = Some(RocksState {
            store: KeyedDb::try_new(dir.path(), "test", 2).unwrap(),
            partition: 0,
            partitions: 1,
            capacity: 0,
        });
        let mut seed = 11u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        let values = ["a", "b", "no", "c"];
        let mut watermark = 0i64;
        let (mut outputs, mut emitted) = (0, 0);
        for round in 0..60 {
            let input = next(2) as usize;
            let rows: Vec<(i64, &str, i64, RowKind)> = (0..3)
                .map(|_| {
                    let kind = if input == 1 && next(5) == 0 { D } else { I };
                    let time = watermark + next(40) as i64 - 10;
                    (next(4) as i64, values[next(4) as usize], time, kind)
                })
                .collect();
            let wm = [watermark, watermark];
            let got = feed(&mut rocks, input, wm, &rows);
            assert_eq!(got, feed(&mut memory, input, wm, &rows), "round {round}");
            outputs += got.len();
            watermark += next(15) as i64;
            let wm = [watermark, watermark];
            let got = advance(&mut rocks, wm);
            assert_eq!(got, advance(&mut memory, wm), "round {round}");
            outputs += got.0.len();
            assert_eq!(rocks.table.versions, 0, "written back");
            emitted += 1;
        }
        assert!(outputs > 20, "{outputs} rows out in {emitted} rounds");
    }
}

/// Orders wait for the watermark of both inputs; then each meets the latest version of its
/// key at or before its time, in arrival order; without one, an inner join drops it.
#[test]
fn orders_wait_for_both_watermarks_and_meet_the_version_of_their_time() {
    let mut j = join(false, false, false);
    let none = [NO_WATERMARK; 2];
    feed(&mut j, 1, none, &[(1, "a", 1, I), (1, "b", 4, I)]);
    assert!(
        feed(
            &mut j,
            0,
            none,
            &[(1, "p", 5, I), (1, "q", 2, I), (1, "r", 0, I)]
        )
        .is_empty()
    );
    // The orders' watermark alone releases nothing: a version of 3 could still come.
    assert_eq!(advance(&mut j, [10, NO_WATERMARK]), (vec![], NO_WATERMARK));
    // Both at 3 or beyond: q (2) meets a; r (0) has no version; p (5) waits.
    assert_eq!(advance(&mut j, [10, 3]), (vec!["+I|1|q|a".to_string()], 3));
    // A version at 5 comes before the watermark passes 5: p meets it.
    feed(&mut j, 1, [10, 3], &[(1, "c", 5, I)]);
    assert_eq!(advance(&mut j, [10, 6]), (vec!["+I|1|p|c".to_string()], 6));
    assert_eq!(j.pending.len(), 0);
    // Only the version valid at the watermark stays.
    assert_eq!(j.table.versions, 1);
}

/// Due orders come out in the order they arrived, not in time order.
#[test]
fn due_orders_keep_their_arrival_order() {
    let mut j = join(false, false, false);
    let none = [NO_WATERMARK; 2];
    feed(&mut j, 1, none, &[(1, "a", 0, I), (2, "b", 0, I)]);
    feed(
        &mut j,
        0,
        none,
        &[(2, "x", 3, I), (1, "y", 1, I), (1, "z", 2, I)],
    );
    let (out, _) = advance(&mut j, [5, 5]);
    assert_eq!(out, ["+I|2|x|b", "+I|1|y|a", "+I|1|z|a"]);
}

/// LEFT: an order without a version, after a deletion, or whose version fails the rest of
/// the ON condition comes padded; `-U` of the versioned side changes nothing.
#[test]
fn left_join_pads_orders_without_a_valid_version() {
    let mut j = join(true, true, false);
    let none = [NO_WATERMARK; 2];
    feed(
        &mut j,
        1,
        none,
        &[
            (1, "a", 1, I),
            (1, "a", 1, UB),
            (1, "no", 3, UA),
            (1, "no", 6, D),
            (2, "b", 1, I),
        ],
    );
    feed(
        &mut j,
        0,
        none,
        &[
            (1, "p", 0, I),
            (1, "q", 2, I),
            (1, "r", 4, I),
            (1, "s", 7, I),
            (2, "t", 2, I),
        ],
    );
    let (out, _) = advance(&mut j, [8, 8]);
    assert_eq!(
        out,
        ["+I|1|p|", "+I|1|q|a", "+I|1|r|", "+I|1|s|", "+I|2|t|b"]
    );
    // Key 1 ended with a deletion the watermark passed: nothing of it stays.
    assert_eq!(j.table.versions, 1);
}

/// An idle versioned side holds nothing back: the orders' watermark alone releases them.
#[test]
fn an_idle_versioned_side_holds_nothing_back() {
    let mut j = join(false, false, false);
    feed(&mut j, 1, [NO_WATERMARK; 2], &[(1, "a", 1, I)]);
    feed(&mut j, 0, [NO_WATERMARK; 2], &[(1, "p", 5, I)]);
    let watermarks = [10, 2];
    let mut out = Vec::new();
    let mut ctx = Context::for_test_idle(&watermarks, &[false, false], &mut out);
    assert_eq!(
        futures::executor::block_on(j.on_watermark(&mut ctx)).unwrap(),
        2
    );
    assert!(out.is_empty(), "the versioned side at 2 holds p back");
    let mut ctx = Context::for_test_idle(&watermarks, &[false, true], &mut out);
    assert_eq!(
        futures::executor::block_on(j.on_watermark(&mut ctx)).unwrap(),
        10
    );
    assert_eq!(lines(out), ["+I|1|p|a"]);
}

/// With a time to live, the timer drops a key no version came for: a later order of it
/// finds none (LEFT pads it); expiry emits nothing.
#[test]
fn expired_keys_leave_later_orders_without_a_version() {
    let mut j = join(true, false, false);
    j.ttl = Some(TimeToLive::new(std::time::Duration::from_millis(20)));
    assert_eq!(j.next_timer(), None);
    feed(&mut j, 1, [NO_WATERMARK; 2], &[(1, "a", 1, I)]);
    let due = j
        .next_timer()
        .expect("a sweep is due while versions are held");
    let none = [NO_WATERMARK; 2];
    let mut out = Vec::new();
    let mut ctx = Context::for_test(&none, &mut out);
    j.on_timer(due.max(now_ms()) + 100, &mut ctx).unwrap();
    assert!(out.is_empty(), "expiry emits nothing");
    assert_eq!(j.table.versions, 0);
    feed(&mut j, 0, none, &[(1, "p", 5, I)]);
    assert_eq!(advance(&mut j, [10, 10]).0, ["+I|1|p|"]);
}

/// A probe row behind the watermark is joined at once; a changelog probe side keeps its
/// rows' kinds.
#[test]
fn late_orders_come_at_once_and_kinds_pass_through() {
    let mut j = join(false, false, true);
    feed(&mut j, 1, [NO_WATERMARK; 2], &[(1, "a", 1, I)]);
    assert_eq!(
        feed(
            &mut j,
            0,
            [10, 10],
            &[(1, "p", 3, I), (1, "p", 3, D), (1, "q", 20, I)]
        ),
        ["+I|1|p|a", "-D|1|p|a"]
    );
    assert_eq!(j.pending.len(), 1, "q waits for 20");
}
