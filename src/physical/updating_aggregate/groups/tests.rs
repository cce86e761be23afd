//! Unit tests of the group table: changelogs of batches, retractions, snapshots, RocksDB.

use super::*;
use datafusion::arrow::array::{AsArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{Field, Int64Type, Schema};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::functions_aggregate::sum::sum_udaf;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::col;

const I: RowKind = RowKind::Insert;
const UB: RowKind = RowKind::UpdateBefore;
const UA: RowKind = RowKind::UpdateAfter;
const D: RowKind = RowKind::Delete;

fn input_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
    ]))
}

/// COUNT(v), SUM(v) GROUP BY k.
fn table(retracting: bool) -> GroupTable {
    let schema = input_schema();
    let count = AggregateExprBuilder::new(count_udaf(), vec![col("v", &schema).unwrap()])
        .schema(Arc::clone(&schema))
        .alias("n")
        .build()
        .unwrap();
    let sum = AggregateExprBuilder::new(sum_udaf(), vec![col("v", &schema).unwrap()])
        .schema(Arc::clone(&schema))
        .alias("s")
        .build()
        .unwrap();
    let set =
        AggregateSet::try_new(vec![Arc::new(count), Arc::new(sum)], vec![None, None]).unwrap();
    let output = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("n", DataType::Int64, false),
        Field::new("s", DataType::Int64, true),
    ]));
    let arguments = vec![vec![DataType::Int64]; 2];
    GroupTable::try_new(
        Arc::new(set),
        retracting,
        vec![DataType::Utf8],
        arguments,
        output,
    )
    .unwrap()
}

/// Applies rows `(kind, key, value)`; returns the changes as `(op, key, n, s)`.
fn apply(
    table: &mut GroupTable,
    rows: &[(RowKind, &str, i64)],
) -> Vec<(&'static str, String, i64, Option<i64>)> {
    let keys: ArrayRef = Arc::new(StringArray::from(
        rows.iter().map(|r| r.1).collect::<Vec<_>>(),
    ));
    let values: ArrayRef = Arc::new(Int64Array::from(
        rows.iter().map(|r| r.2).collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(input_schema(), vec![Arc::clone(&keys), values]).unwrap();
    let inputs = table.set.evaluate(&batch).unwrap();
    let Some(changes) = table
        .apply(&[keys], &inputs, |i| Ok(rows[i].0), rows.len())
        .unwrap()
    else {
        return Vec::new();
    };
    let out = &changes.rows;
    (0..out.num_rows())
        .map(|i| {
            let s = out.column(2).as_primitive::<Int64Type>();
            (
                RowKind::of(changes.kinds.value(i)).unwrap().short(),
                out.column(0).as_string::<i32>().value(i).to_string(),
                out.column(1).as_primitive::<Int64Type>().value(i),
                (!s.is_null(i)).then(|| s.value(i)),
            )
        })
        .collect()
}

fn change(op: &'static str, k: &str, n: i64, s: i64) -> (&'static str, String, i64, Option<i64>) {
    (op, k.to_string(), n, Some(s))
}

#[test]
fn a_batch_emits_each_changed_group_once() {
    let mut t = table(false);
    // Two rows of a in one batch: one insert with both, not two updates.
    assert_eq!(
        apply(&mut t, &[(I, "a", 1), (I, "b", 2), (I, "a", 3)]),
        vec![change("+I", "a", 2, 4), change("+I", "b", 1, 2)]
    );
    assert_eq!(
        apply(&mut t, &[(I, "b", 5)]),
        vec![change("-U", "b", 1, 2), change("+U", "b", 2, 7)]
    );
    assert_eq!(t.len(), 2);
}

#[test]
fn retractions_update_and_delete_groups() {
    let mut t = table(true);
    apply(&mut t, &[(I, "a", 1), (I, "a", 3), (I, "b", 2)]);
    // a's 3 replaced by 4 (an update of the input), b taken back entirely.
    assert_eq!(
        apply(&mut t, &[(UB, "a", 3), (UA, "a", 4), (D, "b", 2)]),
        vec![
            change("-U", "a", 2, 4),
            change("+U", "a", 2, 5),
            change("-D", "b", 1, 2)
        ]
    );
    assert_eq!(t.len(), 1);
    // A row taken back and added again in one batch changes nothing.
    assert_eq!(apply(&mut t, &[(UB, "a", 4), (UA, "a", 4)]), vec![]);
    // Taking back what the state never held is ignored and counted.
    assert_eq!(apply(&mut t, &[(D, "zz", 1)]), vec![]);
    assert_eq!(t.unknown_retractions(), 1);
    // b comes back as a new group.
    assert_eq!(apply(&mut t, &[(I, "b", 9)]), vec![change("+I", "b", 1, 9)]);
    // Rows apply in input order: an update of a row never seen takes nothing back (its
    // -U is unknown) and inserts its new value, also within one batch.
    assert_eq!(
        apply(&mut t, &[(UB, "new", 1), (UA, "new", 2)]),
        vec![change("+I", "new", 1, 2)]
    );
    assert_eq!(t.unknown_retractions(), 2);
    // A retraction after the group's last row in the same batch is unknown too.
    assert_eq!(
        apply(&mut t, &[(D, "new", 2), (D, "new", 2), (I, "new", 3)]),
        vec![change("-U", "new", 1, 2), change("+U", "new", 1, 3)]
    );
    assert_eq!(t.unknown_retractions(), 3);
}

#[test]
fn a_snapshot_restores_the_same_groups() {
    for retracting in [false, true] {
        let mut t = table(retracting);
        apply(&mut t, &[(I, "a", 1), (I, "a", 3), (I, "b", 2)]);
        let snapshot = t.snapshot().unwrap().unwrap();
        let widths = t.state_widths();
        let mut restored = table(retracting);
        restored
            .restore(&snapshot, restored.snapshot_keys(), &widths)
            .unwrap();
        assert_eq!(restored.len(), 2);
        // Both tables go on alike: the restored one knows what it emitted.
        let rows = [(I, "a", 10), (I, "c", 1)];
        let expected = vec![
            change("-U", "a", 2, 4),
            change("+U", "a", 3, 14),
            change("+I", "c", 1, 1),
        ];
        assert_eq!(apply(&mut t, &rows), expected);
        assert_eq!(apply(&mut restored, &rows), expected);
        if retracting {
            assert_eq!(
                apply(&mut restored, &[(D, "b", 2)]),
                vec![change("-D", "b", 1, 2)]
            );
        }
    }
    // A snapshot of another shape is refused, not misread.
    let mut t = table(false);
    apply(&mut t, &[(I, "a", 1)]);
    let snapshot = t.snapshot().unwrap().unwrap();
    assert!(table(false).restore(&snapshot, 1, &[1]).is_err());
    assert!(table(false).snapshot().unwrap().is_none());
}

#[test]
fn groups_in_rocksdb_change_as_groups_in_memory_do() {
    let dir = tempfile::tempdir().unwrap();
    let mut memory = table(true);
    let mut rocks = table(true)
        .with_rocksdb(dir.path(), "updating-test")
        .unwrap();
    // A cache of one group: nearly every batch goes through the database.
    rocks.set_cache_groups(1);
    let batches: Vec<Vec<(RowKind, &str, i64)>> = vec![
        vec![(I, "a", 1), (I, "b", 2), (I, "a", 3)],
        vec![(I, "b", 5), (I, "c", 1)],
        vec![(UB, "a", 3), (UA, "a", 4), (D, "b", 2)],
        // b's last row: deleted while only cached as gone.
        vec![(D, "b", 5)],
        // b comes back new (not from the database), c goes.
        vec![(I, "b", 7), (D, "c", 1)],
        vec![(D, "zz", 1)],
    ];
    for batch in &batches {
        assert_eq!(apply(&mut rocks, batch), apply(&mut memory, batch));
    }
    assert_eq!(rocks.unknown_retractions(), memory.unknown_retractions());

    // A checkpoint of the database restores the same groups, at the same parallelism
    // (adopted) and at two partitions (re-keyed): each key is in exactly one of them.
    rocks.write_back(true).unwrap();
    let saved = dir.path().join("saved");
    rocks.db().unwrap().checkpoint(&saved).unwrap();
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for entry in std::fs::read_dir(&saved).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    let mut adopted = table(true)
        .with_rocksdb(dir.path(), "updating-test")
        .unwrap();
    adopted.adopt(dir.path(), "updating-test", &copy).unwrap();
    let next = [(I, "a", 10), (I, "b", 1), (I, "d", 2)];
    assert_eq!(apply(&mut adopted, &next), apply(&mut memory, &next));

    let mut parts: Vec<GroupTable> = (0..2)
        .map(|p| {
            let mut t = table(true)
                .with_rocksdb(dir.path(), "updating-test")
                .unwrap();
            t.restore_rekeyed(&saved, p, 2).unwrap();
            t
        })
        .collect();
    for key in ["a", "b"] {
        let holders: Vec<usize> = (0..2)
            .filter(|&p| {
                let changes = apply(&mut parts[p], &[(I, key, 0)]);
                changes.first().is_some_and(|c| c.0 == "-U")
            })
            .collect();
        assert_eq!(holders.len(), 1, "{key} held by partitions {holders:?}");
    }
}

/// `table.exec.state.ttl`: a group no rows came for since `oldest` is dropped without a word,
/// and the key's next row starts it again (`+I`, as Flink's group aggregate does); a group
/// written later stays.
#[test]
fn expired_groups_start_over() {
    let mut t = table(false);
    apply(&mut t, &[(I, "a", 1), (I, "b", 2)]);
    let later = crate::state::ttl::now_ms() + 1;
    std::thread::sleep(std::time::Duration::from_millis(5));
    assert_eq!(
        apply(&mut t, &[(I, "b", 3)]),
        vec![
            ("-U", "b".to_string(), 1, Some(2)),
            ("+U", "b".to_string(), 2, Some(5))
        ]
    );
    assert_eq!(t.expire(later), 1, "a, not written since");
    assert_eq!(t.len(), 1);
    assert_eq!(
        apply(&mut t, &[(I, "a", 10)]),
        vec![("+I", "a".to_string(), 1, Some(10))]
    );
}

/// With RocksDB, a group in the database expires when it is next read: the key starts over
/// (`+I`), while a group written since stays.
#[test]
fn expired_groups_in_rocksdb_start_over() {
    let dir = tempfile::tempdir().unwrap();
    // Wide margins: each check is 0.6 s or more away from an expiry.
    let ttl = std::time::Duration::from_millis(2000);
    let pause = std::time::Duration::from_millis(1300);
    let mut t = table(false)
        .with_ttl(Some(ttl))
        .with_rocksdb(dir.path(), "updating-ttl")
        .unwrap();
    // Every batch goes through the database.
    t.set_cache_groups(0);
    apply(&mut t, &[(I, "a", 1), (I, "b", 2)]);
    std::thread::sleep(pause);
    assert_eq!(
        apply(&mut t, &[(I, "b", 3)]),
        vec![
            ("-U", "b".to_string(), 1, Some(2)),
            ("+U", "b".to_string(), 2, Some(5))
        ],
        "b is not expired yet"
    );
    std::thread::sleep(pause);
    // a was written 2.6 s ago, b 1.3 s ago.
    assert_eq!(
        apply(&mut t, &[(I, "a", 10), (I, "b", 1)]),
        vec![
            ("+I", "a".to_string(), 1, Some(10)),
            ("-U", "b".to_string(), 2, Some(5)),
            ("+U", "b".to_string(), 3, Some(6))
        ]
    );
}

/// With RocksDB, a group the sweep expires in the cache is deleted from the database too.
#[test]
fn a_group_swept_from_the_cache_leaves_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let mut t = table(false)
        .with_rocksdb(dir.path(), "updating-sweep")
        .unwrap();
    apply(&mut t, &[(I, "a", 1)]);
    t.write_back(true).unwrap();
    // Read back into the cache, then swept.
    apply(&mut t, &[(I, "a", 2)]);
    let later = crate::state::ttl::now_ms() + 1;
    assert_eq!(t.expire(later), 1);
    t.write_back(true).unwrap();
    assert_eq!(
        apply(&mut t, &[(I, "a", 10)]),
        vec![("+I", "a".to_string(), 1, Some(10))]
    );
}

/// The input of [`fast_accumulators_match_datafusions`]: key, value, text, filter.
fn mixed_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
        Field::new("s", DataType::Utf8, true),
        Field::new("f", DataType::Boolean, true),
    ]))
}

/// Aggregates with fast accumulators (COUNT, COUNT(DISTINCT), MIN and MAX of numbers and
/// text, with and without FILTER) and one without (SUM), GROUP BY k; with `fast` false, every
/// one is DataFusion's.
fn mixed_table(fast: bool) -> GroupTable {
    use datafusion::functions_aggregate::min_max::{max_udaf, min_udaf};
    let schema = mixed_schema();
    let column = |name: &str| col(name, &schema).unwrap();
    let aggregate = |udaf, argument: &str, distinct: bool, alias: &str| {
        Arc::new(
            AggregateExprBuilder::new(udaf, vec![column(argument)])
                .schema(Arc::clone(&schema))
                .alias(alias)
                .with_distinct(distinct)
                .build()
                .unwrap(),
        )
    };
    let f = Some(column("f"));
    let aggregates = vec![
        (aggregate(count_udaf(), "v", false, "a0"), f.clone()),
        (aggregate(count_udaf(), "v", true, "a1"), f.clone()),
        (aggregate(count_udaf(), "v", true, "a2"), None),
        (aggregate(min_udaf(), "v", false, "a3"), None),
        (aggregate(max_udaf(), "v", false, "a4"), f.clone()),
        (aggregate(max_udaf(), "s", false, "a5"), None),
        (aggregate(min_udaf(), "s", true, "a6"), f.clone()),
        (aggregate(sum_udaf(), "v", false, "a7"), None),
        (aggregate(count_udaf(), "s", false, "a8"), f),
    ];
    let mut fields = vec![Field::new("k", DataType::Utf8, true)];
    fields.extend(aggregates.iter().map(|(a, _)| a.field().as_ref().clone()));
    let arguments = aggregates
        .iter()
        .map(|(a, _)| {
            a.expressions()
                .iter()
                .map(|e| e.data_type(&schema).unwrap())
                .collect()
        })
        .collect();
    let (aggregates, filters) = aggregates.into_iter().unzip();
    let set = AggregateSet::try_new(aggregates, filters).unwrap();
    let mut table = GroupTable::try_new(
        Arc::new(set),
        false,
        vec![DataType::Utf8],
        arguments,
        Arc::new(Schema::new(fields)),
    )
    .unwrap();
    if fast {
        let kinds: Vec<Option<FastKind>> = table.fast.clone();
        assert_eq!(kinds.iter().filter(|k| k.is_some()).count(), 8, "{kinds:?}");
    } else {
        table.fast = vec![None; table.fast.len()];
    }
    table
}

/// Fast accumulators give DataFusion's changes batch after batch (random keys, values,
/// NULLs and filters), in memory and in RocksDB, and their checkpoints restore into
/// DataFusion's accumulators and back.
#[test]
fn fast_accumulators_match_datafusions() {
    let dir = tempfile::tempdir().unwrap();
    let mut seed = 0x5ab0_7001_u64;
    let mut draw = move |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    let mut slow = mixed_table(false);
    let mut fast = mixed_table(true);
    let mut rocks = mixed_table(true)
        .with_rocksdb(dir.path(), "fast-test")
        .unwrap();
    rocks.set_cache_groups(2);
    let words = ["", "a", "b", "ab", "zz", "é"];
    for round in 0..60 {
        let rows = 1 + draw(40) as usize;
        let k: ArrayRef = Arc::new(StringArray::from_iter(
            (0..rows).map(|_| Some(format!("k{}", draw(7)))),
        ));
        let v: ArrayRef = Arc::new(Int64Array::from_iter(
            (0..rows).map(|_| (draw(5) > 0).then(|| draw(9) as i64 - 4)),
        ));
        let s: ArrayRef = Arc::new(StringArray::from_iter(
            (0..rows).map(|_| (draw(5) > 0).then(|| words[draw(6) as usize])),
        ));
        let f: ArrayRef = Arc::new(BooleanArray::from_iter(
            (0..rows).map(|_| [Some(true), Some(false), None][draw(3) as usize]),
        ));
        let batch = RecordBatch::try_new(mixed_schema(), vec![Arc::clone(&k), v, s, f]).unwrap();
        let run = |t: &mut GroupTable| {
            let inputs = t.set.evaluate(&batch).unwrap();
            t.apply(std::slice::from_ref(&k), &inputs, |_| Ok(I), rows)
                .unwrap()
                .map(|c| (c.rows, c.kinds))
        };
        let expected = run(&mut slow);
        assert_eq!(run(&mut fast), expected, "round {round}");
        assert_eq!(run(&mut rocks), expected, "round {round} (RocksDB)");
        // Checkpoints: the fast table's restored into DataFusion's accumulators, and the
        // other way round.
        if round % 10 == 9 {
            let widths = fast.state_widths();
            assert_eq!(widths, slow.state_widths());
            let from_fast = fast.snapshot().unwrap().unwrap();
            let from_slow = slow.snapshot().unwrap().unwrap();
            slow = mixed_table(false);
            slow.restore(&from_fast, 1, &widths).unwrap();
            fast = mixed_table(true);
            fast.restore(&from_slow, 1, &widths).unwrap();
        }
    }
}
