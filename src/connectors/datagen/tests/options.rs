//! Option validation: errors name the key and the column; metadata, computed and
//! case-insensitively named columns.

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::logical_expr::lit;

use super::fixtures::{column, connector, error};
use crate::catalog::table_definition::ColumnKind;
use crate::connectors::SourceConnector;

#[test]
fn option_errors_name_key_and_column() {
    let int = || vec![column("id", DataType::Int64)];
    let e = error(int(), &[("fields.nope.kind", "sequence")]);
    assert!(
        e.contains("'fields.nope.kind'") && e.contains("'nope'") && e.contains("table t"),
        "{e}"
    );
    assert!(e.contains("columns: id"), "{e}");
    let e = error(
        int(),
        &[("fields.id.kind", "sequence"), ("fields.id.start", "1")],
    );
    assert!(
        e.contains("fields.id.end") && e.contains("column id"),
        "{e}"
    );
    let e = error(int(), &[("fields.id.kind", "seq")]);
    assert!(
        e.contains("'fields.id.kind'") && e.contains("sequence, random"),
        "{e}"
    );
    let e = error(
        int(),
        &[
            ("fields.id.kind", "sequence"),
            ("fields.id.start", "5"),
            ("fields.id.end", "1"),
        ],
    );
    assert!(e.contains("start 5 > end 1"), "{e}");
    let e = error(int(), &[("fields.id.min", "5"), ("fields.id.max", "1")]);
    assert!(
        e.contains("min 5 > max 1") && e.contains("fields.id.min"),
        "{e}"
    );
    let e = error(int(), &[("fields.id.start", "5")]);
    assert!(
        e.contains("'fields.id.start'") && e.contains("'sequence'"),
        "{e}"
    );
    let e = error(int(), &[("rows-per-sec", "5")]);
    assert!(
        e.contains("unknown option 'rows-per-sec'") && e.contains("rows-per-second"),
        "{e}"
    );
    let e = error(int(), &[("fields.id.lenght", "5")]);
    assert!(e.contains("unknown option 'fields.id.lenght'"), "{e}");
    let e = error(int(), &[("fields.id.length", "5")]);
    assert!(
        e.contains("'fields.id.length'") && e.contains("column id"),
        "{e}"
    );
    let e = error(
        vec![column("id", DataType::Int8)],
        &[("fields.id.min", "-129")],
    );
    assert!(e.contains("-129") && e.contains("fields.id.min"), "{e}");
    let e = error(vec![column("s", DataType::Utf8)], &[("fields.s.min", "1")]);
    assert!(e.contains("'fields.s.min'") && e.contains("numeric"), "{e}");
    let e = error(
        vec![column("b", DataType::Boolean)],
        &[
            ("fields.b.kind", "sequence"),
            ("fields.b.start", "1"),
            ("fields.b.end", "2"),
        ],
    );
    assert!(
        e.contains("column b") && e.contains("cannot be a sequence"),
        "{e}"
    );
    let e = error(
        vec![column(
            "ts",
            DataType::Timestamp(TimeUnit::Millisecond, None),
        )],
        &[
            ("fields.ts.kind", "sequence"),
            ("fields.ts.start", "1"),
            ("fields.ts.end", "2"),
        ],
    );
    assert!(
        e.contains("column ts") && e.contains("cannot be a sequence"),
        "{e}"
    );
    let e = error(
        vec![column("l", DataType::new_list(DataType::Int32, true))],
        &[],
    );
    assert!(
        e.contains("column l") && e.contains("cannot generate"),
        "{e}"
    );
    let e = error(int(), &[("fields.id.null-rate", "1.5")]);
    assert!(e.contains("fields.id.null-rate"), "{e}");
    let mut not_null = column("id", DataType::Int64);
    not_null.nullable = false;
    let e = error(vec![not_null], &[("fields.id.null-rate", "0.5")]);
    assert!(
        e.contains("NOT NULL") && e.contains("fields.id.null-rate"),
        "{e}"
    );
}

#[test]
fn metadata_and_computed_columns() {
    let mut meta = column("off", DataType::Int64);
    meta.kind = ColumnKind::Metadata {
        key: "offset".into(),
        is_virtual: true,
    };
    let e = error(vec![column("id", DataType::Int64), meta], &[]);
    assert!(e.contains("column off") && e.contains("metadata"), "{e}");

    let mut computed = column("c", DataType::Int64);
    computed.kind = ColumnKind::Computed {
        sql: "1".into(),
        expr: lit(1i64),
    };
    let columns = vec![column("id", DataType::Int64), computed];
    let c = connector(columns.clone(), &[]);
    assert_eq!(c.schema().fields().len(), 1);
    let e = error(columns, &[("fields.c.kind", "random")]);
    assert!(e.contains("'c'") && e.contains("computed"), "{e}");
}

#[test]
fn case_insensitive_column_names() {
    let c = connector(
        vec![column("id", DataType::Int64)],
        &[
            ("fields.ID.kind", "sequence"),
            ("fields.ID.start", "1"),
            ("fields.ID.end", "3"),
        ],
    );
    assert_eq!(c.total_rows(), Some(3));
}
