//! `UPDATE` and `DELETE` on a memory table: each is one change of the table, applied as a
//! changelog is (see the module docs of [`super`]): the rows it matches are taken back (`-D`,
//! or `-U` followed by their new values as `+U`), and the same change reaches the table's live
//! readers, so the materialized views over it follow.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int8Array};
use datafusion::arrow::compute::{cast, concat_batches, filter_record_batch};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err};
use datafusion::physical_expr::PhysicalExpr;

use super::MemoryStore;
use crate::changelog::{RowKind, kinds_of};

impl MemoryStore {
    /// Deletes the rows `predicate` is true for (every row without one); returns how many.
    pub fn delete_where(&self, predicate: Option<&Arc<dyn PhysicalExpr>>) -> Result<u64> {
        self.change_matching(predicate, |old| {
            let rows = old.num_rows();
            Ok((old, kinds_of(RowKind::Delete, rows)))
        })
    }

    /// Sets the columns of `assignments` (column index, new value over the old row) in the
    /// rows `predicate` is true for (every row without one); returns how many.
    pub fn update_where(
        &self,
        predicate: Option<&Arc<dyn PhysicalExpr>>,
        assignments: &[(usize, Arc<dyn PhysicalExpr>)],
    ) -> Result<u64> {
        let schema = Arc::clone(&self.schema);
        self.change_matching(predicate, |old| {
            let rows = old.num_rows();
            let mut columns: Vec<ArrayRef> = old.columns().to_vec();
            for (column, value) in assignments {
                let field = schema.field(*column);
                let value = value.evaluate(&old)?.into_array(rows)?;
                let value = if value.data_type() == field.data_type() {
                    value
                } else {
                    cast(&value, field.data_type())?
                };
                if !field.is_nullable() && value.null_count() > 0 {
                    return exec_err!(
                        "UPDATE would set column {} to NULL, which it does not allow",
                        field.name()
                    );
                }
                columns[*column] = value;
            }
            let new = RecordBatch::try_new(Arc::clone(&schema), columns)?;
            let change = concat_batches(&schema, [&old, &new])?;
            let mut kinds = vec![RowKind::UpdateBefore as i8; rows];
            kinds.extend(std::iter::repeat_n(RowKind::UpdateAfter as i8, rows));
            Ok((change, Int8Array::from(kinds)))
        })
    }

    /// Finds the live rows `predicate` is true for, turns them into a change with `change`,
    /// and applies and publishes it; returns the number of rows found. Nothing changes when
    /// evaluating fails.
    fn change_matching(
        &self,
        predicate: Option<&Arc<dyn PhysicalExpr>>,
        change: impl FnOnce(RecordBatch) -> Result<(RecordBatch, Int8Array)>,
    ) -> Result<u64> {
        let schema = Arc::clone(&self.schema);
        let mut found = 0u64;
        self.changed(0, |rows| {
            let mut matching = Vec::new();
            for batch in rows.live()? {
                let batch = match predicate {
                    None => batch,
                    Some(predicate) => {
                        let mask = predicate.evaluate(&batch)?.into_array(batch.num_rows())?;
                        let Some(mask) = mask.as_any().downcast_ref::<BooleanArray>() else {
                            return exec_err!("the WHERE condition is not a boolean");
                        };
                        // NULL is not true.
                        let mask: BooleanArray =
                            mask.iter().map(|v| Some(v == Some(true))).collect();
                        filter_record_batch(&batch, &mask)?
                    }
                };
                if batch.num_rows() > 0 {
                    matching.push(batch);
                }
            }
            let old = concat_batches(&schema, &matching)?;
            found = old.num_rows() as u64;
            if found == 0 {
                return Ok(None);
            }
            let (batch, kinds) = change(old)?;
            Ok(rows
                .apply_changes(&schema, batch, &kinds)?
                .map(|(batch, kinds)| (batch, Some(kinds))))
        })?;
        Ok(found)
    }
}
