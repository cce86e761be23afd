//! Changelog rows: what each row of an updating stream does to the result.
//!
//! Most streams only append: every row is a new fact. The result of a GROUP BY without a
//! window, by contrast, changes as rows arrive: a group's row is inserted, then replaced (its
//! old value retracted, its new one added), and removed when its last input row is retracted.
//! Such a stream is a *changelog*, and each of its rows has a [`RowKind`], Flink's `+I`, `-U`,
//! `+U` and `-D`.
//!
//! Inside a pipeline the kinds ride next to the rows
//! ([`StreamBatch::kinds`](crate::physical::message::StreamBatch::kinds)), so an append-only
//! batch carries none and pays nothing. Each plan node says what its output is
//! ([`ChangelogMode`], inferred bottom-up as Flink's changelog-mode inference does): sources,
//! windows and window joins append; an updating aggregate retracts; row-wise nodes keep their
//! input's mode. EXPLAIN shows the mode of every node that does not only append.
//!
//! Outside, a changelog is read with
//! [`changelog_stream`](crate::physical::streaming::changelog_stream): plain record batches with an `op`
//! column first (`+I`, `-U`, `+U`, `-D`), as Flink's SQL client shows a changelog. The plain data
//! face (`execute`) of an updating plan refuses, since rows without their kinds would be
//! misread as facts.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int8Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, plan_datafusion_err};

/// What one row of a changelog does (Flink's `RowKind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(i8)]
pub enum RowKind {
    /// `+I`: a new row.
    Insert = 0,
    /// `-U`: the old value of a row about to be replaced.
    UpdateBefore = 1,
    /// `+U`: the new value of a replaced row.
    UpdateAfter = 2,
    /// `-D`: a row removed.
    Delete = 3,
}

impl RowKind {
    /// Every kind, by its number.
    pub const ALL: [RowKind; 4] = [
        RowKind::Insert,
        RowKind::UpdateBefore,
        RowKind::UpdateAfter,
        RowKind::Delete,
    ];

    /// Flink's short string: `+I`, `-U`, `+U`, `-D`.
    pub fn short(self) -> &'static str {
        match self {
            RowKind::Insert => "+I",
            RowKind::UpdateBefore => "-U",
            RowKind::UpdateAfter => "+U",
            RowKind::Delete => "-D",
        }
    }

    /// The kind numbered `n` (as a kinds column stores it).
    pub fn of(n: i8) -> Option<RowKind> {
        usize::try_from(n)
            .ok()
            .and_then(|i| Self::ALL.get(i))
            .copied()
    }

    /// True for `+I` and `+U`: the row adds to the result; false for `-U` and `-D`, which take
    /// it back.
    pub fn adds(self) -> bool {
        matches!(self, RowKind::Insert | RowKind::UpdateAfter)
    }
}

/// What a plan node's output is (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChangelogMode {
    /// Only inserts.
    #[default]
    Append,
    /// Inserts, and updates and deletes that carry the old row (`-U` before `+U`).
    Retract,
}

impl ChangelogMode {
    /// The mode of a node that passes its inputs' rows on: it appends only if they all do.
    pub fn of_inputs(inputs: impl IntoIterator<Item = ChangelogMode>) -> ChangelogMode {
        if inputs.into_iter().any(|m| m != ChangelogMode::Append) {
            ChangelogMode::Retract
        } else {
            ChangelogMode::Append
        }
    }

    /// The mode of a source whose rows are `changes` (a changelog format, a table read live)
    /// or only appended.
    pub fn of_changes(changes: bool) -> ChangelogMode {
        if changes {
            ChangelogMode::Retract
        } else {
            ChangelogMode::Append
        }
    }

    /// True unless it only appends.
    pub fn is_updating(self) -> bool {
        self != ChangelogMode::Append
    }
}

impl std::fmt::Display for ChangelogMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChangelogMode::Append => "append",
            ChangelogMode::Retract => "retract (+I, -U, +U, -D)",
        })
    }
}

/// The kinds column of `rows` rows that all have `kind`.
pub fn kinds_of(kind: RowKind, rows: usize) -> Int8Array {
    Int8Array::from(vec![kind as i8; rows])
}

/// The kind of row `i` of a kinds column (`None`: every row is an insert).
#[inline]
pub fn kind_at(kinds: Option<&Int8Array>, i: usize) -> Result<RowKind> {
    match kinds {
        None => Ok(RowKind::Insert),
        Some(kinds) => RowKind::of(kinds.value(i)).ok_or_else(|| {
            datafusion::common::DataFusionError::Internal(format!(
                "row kind {} is none of +I, -U, +U, -D",
                kinds.value(i)
            ))
        }),
    }
}

/// The schema of a changelog read from outside: `op`, then `schema`'s columns.
pub fn changelog_schema(schema: &SchemaRef) -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new("op", DataType::Utf8, false))];
    fields.extend(schema.fields().iter().cloned());
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` with its `kinds` as an `op` column first (see [`changelog_schema`]).
pub fn with_op_column(
    schema: &SchemaRef,
    batch: &RecordBatch,
    kinds: Option<&Int8Array>,
) -> Result<RecordBatch> {
    let rows = batch.num_rows();
    let mut ops = Vec::with_capacity(rows);
    for i in 0..rows {
        ops.push(kind_at(kinds, i)?.short());
    }
    let mut columns: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ops))];
    columns.extend(batch.columns().iter().cloned());
    Ok(RecordBatch::try_new(Arc::clone(schema), columns)?)
}

/// The error of reading an updating plan through its plain data face.
pub fn updating_data_face_error() -> datafusion::common::DataFusionError {
    plan_datafusion_err!(
        "this query's result changes as rows arrive (it is an updating query, such as a GROUP \
         BY without a window): its rows are inserts, updates and deletes, which plain record \
         batches cannot say. Keep it in a materialized view (CREATE MATERIALIZED VIEW ... AS \
         ...), write it to a sink that takes changelogs, or read the changelog with \
         sabot::physical::streaming::changelog_stream"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::Int64Array;

    #[test]
    fn kinds_read_back_and_print_as_flink_does() {
        for kind in RowKind::ALL {
            assert_eq!(RowKind::of(kind as i8), Some(kind));
        }
        assert_eq!(RowKind::of(4), None);
        assert_eq!(RowKind::of(-1), None);
        let shorts: Vec<_> = RowKind::ALL.iter().map(|k| k.short()).collect();
        assert_eq!(shorts, ["+I", "-U", "+U", "-D"]);
        assert!(RowKind::Insert.adds() && RowKind::UpdateAfter.adds());
        assert!(!RowKind::UpdateBefore.adds() && !RowKind::Delete.adds());
    }

    #[test]
    fn a_batch_gets_its_op_column() {
        let rows = RecordBatch::try_from_iter(vec![(
            "n",
            Arc::new(Int64Array::from(vec![1, 1, 2])) as ArrayRef,
        )])
        .unwrap();
        let schema = changelog_schema(&rows.schema());
        let kinds = Int8Array::from(vec![
            RowKind::Insert as i8,
            RowKind::UpdateBefore as i8,
            RowKind::UpdateAfter as i8,
        ]);
        let out = with_op_column(&schema, &rows, Some(&kinds)).unwrap();
        let ops = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(ops.iter().flatten().collect::<Vec<_>>(), ["+I", "-U", "+U"]);
        assert_eq!(out.column(1), rows.column(0));
        // Without kinds every row is an insert.
        let out = with_op_column(&schema, &rows, None).unwrap();
        let ops = out
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(ops.iter().flatten().collect::<Vec<_>>(), ["+I", "+I", "+I"]);
        assert_eq!(
            ChangelogMode::of_inputs([ChangelogMode::Append, ChangelogMode::Retract]),
            ChangelogMode::Retract
        );
        assert_eq!(ChangelogMode::of_inputs([]), ChangelogMode::Append);
    }
}
