//! Unit tests of one regular join partition: pairs, padding, semi and anti rows, time to
//! live, RocksDB state.

use super::*;
use datafusion::arrow::array::{Int64Array, StringArray};
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::util::display::array_value_to_string;
use datafusion::common::JoinType;
use datafusion::physical_expr::expressions::Column;
use std::sync::Arc;

/// A join of `(k, v)` with `(k, w)` on `k`.
fn join(join_type: JoinType) -> RegularJoinStream {
    let side = |v: &str| {
        Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, true),
            Field::new(v, DataType::Utf8, true),
        ]))
    };
    let inputs = [side("v"), side("w")];
    let emit = Emit::of(join_type).unwrap();
    let fields: Vec<Field> = match emit {
        Emit::Pairs(_) => inputs
            .iter()
            .flat_map(|s| s.fields().iter().map(|f| f.as_ref().clone()))
            .collect(),
        Emit::Semi(s) | Emit::Anti(s) => inputs[s]
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect(),
    };
    let row_format = |s: &SchemaRef| {
        let types = s.fields().iter().map(|f| f.data_type().clone()).collect();
        RowCodec::try_new(types, "join rows").unwrap()
    };
    let key: PhysicalExprRef = Arc::new(Column::new("k", 0));
    RegularJoinStream {
        codec: EntryCodec::new(inputs.clone()),
        nullable: inputs.clone(),
        rows: [row_format(&inputs[0]), row_format(&inputs[1])],
        output: JoinOutput {
            inputs,
            schema: Arc::new(Schema::new(fields)),
            projection: None,
            emit,
        },
        on: vec![(Arc::clone(&key), key)],
        filter: None,
        null_equals_null: false,
        key_types: vec![DataType::Int64],
        keys: RowCodec::try_new(vec![DataType::Int64], "join keys").unwrap(),
        sides: [SideState::default(), SideState::default()],
        append_only: false,
        unknown: 0,
        warned: 0,
        ttl: None,
        rocks: None,
        partition: 0,
        partitions: 1,
    }
}

/// Feeds rows `(key, value, kind)` to side `side`; the output as `op|col|col...` lines.
fn feed(
    join: &mut RegularJoinStream,
    side: usize,
    rows: &[(Option<i64>, &str, RowKind)],
) -> Vec<String> {
    let schema = Arc::clone(&join.output.inputs[side]);
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from(
                rows.iter().map(|r| r.0).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from(
                rows.iter().map(|r| r.1).collect::<Vec<_>>(),
            )),
        ],
    )
    .unwrap();
    let kinds = Int8Array::from(rows.iter().map(|r| r.2 as i8).collect::<Vec<_>>());
    let mut out = Vec::new();
    let inputs = [NO_WATERMARK; 2];
    let mut ctx = Context::for_test(&inputs, &mut out);
    join.on_data(
        side,
        StreamBatch::new(batch).with_kinds(Some(kinds)),
        &mut ctx,
    )
    .unwrap();
    let mut lines = Vec::new();
    for b in out {
        for i in 0..b.batch.num_rows() {
            let kind = crate::changelog::kind_at(b.kinds.as_deref(), i).unwrap();
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

use RowKind::{Delete as D, Insert as I};

/// A left row is padded until its first partner comes, paired with each partner, and
/// padded again when the last partner goes; copies come and go one by one; a NULL key never
/// matches; a retraction of a row not held changes nothing.
#[test]
fn left_join_takes_padding_back_and_gives_it_back() {
    let mut j = join(JoinType::Left);
    assert_eq!(feed(&mut j, 0, &[(Some(1), "a", I)]), ["+I|1|a||"]);
    assert_eq!(
        feed(&mut j, 1, &[(Some(1), "x", I)]),
        ["-D|1|a||", "+I|1|a|1|x"]
    );
    assert_eq!(feed(&mut j, 1, &[(Some(1), "y", I)]), ["+I|1|a|1|y"]);
    assert_eq!(feed(&mut j, 1, &[(Some(1), "x", D)]), ["-D|1|a|1|x"]);
    assert_eq!(
        feed(&mut j, 1, &[(Some(1), "y", D)]),
        ["-D|1|a|1|y", "+I|1|a||"]
    );
    assert_eq!(feed(&mut j, 0, &[(Some(1), "a", D)]), ["-D|1|a||"]);
    // Two copies of a left row: each padded, each paired.
    assert_eq!(
        feed(&mut j, 0, &[(Some(2), "b", I), (Some(2), "b", I)]),
        ["+I|2|b||", "+I|2|b||"]
    );
    assert_eq!(
        feed(&mut j, 1, &[(Some(2), "z", I)]),
        ["-D|2|b||", "+I|2|b|2|z", "-D|2|b||", "+I|2|b|2|z"]
    );
    assert_eq!(feed(&mut j, 0, &[(Some(2), "b", D)]), ["-D|2|b|2|z"]);
    assert_eq!(feed(&mut j, 1, &[(Some(3), "q", D)]), Vec::<String>::new());
    assert_eq!(j.unknown, 1);
    // A NULL key: padded on the outer side, never matched.
    assert_eq!(feed(&mut j, 0, &[(None, "n", I)]), ["+I||n||"]);
    assert_eq!(feed(&mut j, 1, &[(None, "m", I)]), Vec::<String>::new());
    assert_eq!(feed(&mut j, 0, &[(None, "n", D)]), ["-D||n||"]);
    assert_eq!((j.sides[0].rows, j.sides[1].rows), (1, 1));
}

/// With RocksDB and a cache written back after every batch, the join gives the same
/// changes as in memory: every batch reads its keys' rows back from the database.
#[test]
fn rocksdb_state_gives_the_same_changes() {
    let root = tempfile::tempdir().unwrap();
    let mut j = join(JoinType::Left);
    let mut rocks = RocksSides::try_new(root.path(), "regular-join-test", None).unwrap();
    rocks.capacity = 0;
    j.rocks = Some(rocks);
    assert_eq!(feed(&mut j, 0, &[(Some(1), "a", I)]), ["+I|1|a||"]);
    assert_eq!((j.sides[0].rows, j.sides[1].rows), (0, 0), "written back");
    assert_eq!(
        feed(&mut j, 1, &[(Some(1), "x", I)]),
        ["-D|1|a||", "+I|1|a|1|x"]
    );
    assert_eq!(feed(&mut j, 1, &[(Some(1), "y", I)]), ["+I|1|a|1|y"]);
    assert_eq!(feed(&mut j, 1, &[(Some(1), "x", D)]), ["-D|1|a|1|x"]);
    assert_eq!(
        feed(&mut j, 1, &[(Some(1), "y", D)]),
        ["-D|1|a|1|y", "+I|1|a||"]
    );
    assert_eq!(feed(&mut j, 0, &[(Some(1), "a", D)]), ["-D|1|a||"]);
    // Deleted keys stay deleted: a new right row meets no left row.
    assert_eq!(feed(&mut j, 1, &[(Some(1), "z", I)]), Vec::<String>::new());
    assert_eq!(feed(&mut j, 1, &[(Some(3), "q", D)]), Vec::<String>::new());
    assert_eq!(j.unknown, 1);
    // A NULL key: padded on the outer side, kept, and taken back.
    assert_eq!(feed(&mut j, 0, &[(None, "n", I)]), ["+I||n||"]);
    assert_eq!(feed(&mut j, 0, &[(None, "n", D)]), ["-D||n||"]);
}

/// With a time to live, the timer sweeps expired rows while no rows come.
#[test]
fn the_timer_sweeps_expired_rows() {
    let mut j = join(JoinType::Inner);
    j.ttl = Some(TimeToLive::new(std::time::Duration::from_millis(20)));
    assert_eq!(j.next_timer(), None);
    feed(&mut j, 0, &[(Some(1), "a", I)]);
    let due = j.next_timer().expect("a sweep is due while rows are held");
    let inputs = [NO_WATERMARK, NO_WATERMARK];
    let mut out = Vec::new();
    let mut ctx = Context::for_test(&inputs, &mut out);
    j.on_timer(due.max(now_ms()) + 100, &mut ctx).unwrap();
    assert_eq!((j.sides[0].rows, j.sides[1].rows), (0, 0));
    assert_eq!(j.next_timer(), None);
    assert!(out.is_empty(), "expiry emits nothing");
}

/// With a time to live, a row not written for that long is forgotten: a partner arriving
/// later meets nothing, and nothing is taken back.
#[test]
fn expired_rows_meet_no_partner() {
    let mut j = join(JoinType::Inner);
    j.ttl = Some(TimeToLive::new(std::time::Duration::from_millis(20)));
    assert_eq!(feed(&mut j, 0, &[(Some(1), "a", I)]), Vec::<String>::new());
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert_eq!(feed(&mut j, 1, &[(Some(1), "x", I)]), Vec::<String>::new());
    assert_eq!((j.sides[0].rows, j.sides[1].rows), (0, 1));
    // Within the time to live, rows meet.
    let mut j = join(JoinType::Inner);
    j.ttl = Some(TimeToLive::new(std::time::Duration::from_secs(3600)));
    feed(&mut j, 0, &[(Some(1), "a", I)]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(feed(&mut j, 1, &[(Some(1), "x", I)]), ["+I|1|a|1|x"]);
}

/// Rows of both sides in one batch each way, an inner join: pairs come and go.
#[test]
fn inner_join_pairs_and_takes_pairs_back() {
    let mut j = join(JoinType::Inner);
    assert_eq!(
        feed(
            &mut j,
            0,
            &[(Some(1), "a", I), (Some(2), "b", I), (None, "n", I)]
        ),
        Vec::<String>::new()
    );
    // The NULL key of an inner side is not even kept.
    assert_eq!(j.sides[0].rows, 2);
    assert_eq!(
        feed(
            &mut j,
            1,
            &[(Some(1), "x", I), (Some(1), "x", D), (Some(2), "y", I)]
        ),
        ["+I|1|a|1|x", "-D|1|a|1|x", "+I|2|b|2|y"]
    );
    assert_eq!(feed(&mut j, 0, &[(Some(2), "b", D)]), ["-D|2|b|2|y"]);
}

/// A hot key's pairs come in bounded batches, not one batch of every pair of the input.
#[test]
fn many_pairs_come_in_several_batches() {
    let mut j = join(JoinType::Inner);
    let left: Vec<String> = (0..5000).map(|i| format!("l{i}")).collect();
    let rows: Vec<(Option<i64>, &str, RowKind)> =
        left.iter().map(|v| (Some(1), v.as_str(), I)).collect();
    feed(&mut j, 0, &rows);
    let batch = RecordBatch::try_new(
        Arc::clone(&j.output.inputs[1]),
        vec![
            Arc::new(Int64Array::from(vec![1, 1, 1])),
            Arc::new(StringArray::from(vec!["x", "y", "z"])),
        ],
    )
    .unwrap();
    let mut out = Vec::new();
    let inputs = [NO_WATERMARK; 2];
    let mut ctx = Context::for_test(&inputs, &mut out);
    j.on_data(1, StreamBatch::new(batch), &mut ctx).unwrap();
    let sizes: Vec<usize> = out.iter().map(|b| b.batch.num_rows()).collect();
    assert_eq!(sizes, [10_000, 5_000]);
}

/// Semi: a row comes with its first partner and goes with its last; anti the other way.
#[test]
fn semi_and_anti_rows_follow_their_partners() {
    let mut semi = join(JoinType::LeftSemi);
    assert_eq!(
        feed(&mut semi, 0, &[(Some(1), "a", I)]),
        Vec::<String>::new()
    );
    assert_eq!(feed(&mut semi, 1, &[(Some(1), "x", I)]), ["+I|1|a"]);
    assert_eq!(
        feed(&mut semi, 1, &[(Some(1), "y", I)]),
        Vec::<String>::new()
    );
    assert_eq!(
        feed(&mut semi, 1, &[(Some(1), "x", D)]),
        Vec::<String>::new()
    );
    assert_eq!(feed(&mut semi, 1, &[(Some(1), "y", D)]), ["-D|1|a"]);
    assert_eq!(feed(&mut semi, 1, &[(Some(1), "y", I)]), ["+I|1|a"]);
    assert_eq!(feed(&mut semi, 0, &[(Some(1), "a", D)]), ["-D|1|a"]);

    let mut anti = join(JoinType::LeftAnti);
    assert_eq!(feed(&mut anti, 0, &[(Some(1), "a", I)]), ["+I|1|a"]);
    assert_eq!(feed(&mut anti, 1, &[(Some(1), "x", I)]), ["-D|1|a"]);
    assert_eq!(feed(&mut anti, 1, &[(Some(1), "x", D)]), ["+I|1|a"]);
    assert_eq!(feed(&mut anti, 0, &[(None, "n", I)]), ["+I||n"]);

    // The right side's rows as the output.
    let mut right_semi = join(JoinType::RightSemi);
    assert_eq!(
        feed(&mut right_semi, 1, &[(Some(5), "r", I)]),
        Vec::<String>::new()
    );
    assert_eq!(
        feed(&mut right_semi, 0, &[(Some(5), "l", I), (Some(5), "m", I)]),
        ["+I|5|r"]
    );
    assert_eq!(
        feed(&mut right_semi, 0, &[(Some(5), "l", D)]),
        Vec::<String>::new()
    );
    assert_eq!(feed(&mut right_semi, 0, &[(Some(5), "m", D)]), ["-D|5|r"]);
}
