//! The changes of one batch of an updating aggregate, built column by column: per changed
//! group a row of its kind (`+I`, `-U`, `+U`, `-D`) with the group's keys, taken from one of
//! the batch's input rows of that group, and the aggregates' values. BIGINT and VARCHAR values
//! go straight into arrays; others are collected as scalars for DataFusion to turn into one.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Int8Array, Int64Builder, StringBuilder, UInt32Array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, ScalarValue};

use super::Changes;
use crate::changelog::RowKind;
use crate::physical::updating_aggregate::in_type;

/// The changes of one batch, built column by column.
pub(super) struct Output {
    schema: SchemaRef,
    /// Per output row, an input row of its group (the keys are taken from there).
    key_rows: Vec<u32>,
    kinds: Vec<i8>,
    values: Vec<Column>,
}

/// One aggregate's output column under construction: BIGINTs and VARCHARs (most aggregates'
/// values) straight into arrays, others as scalars DataFusion turns into an array.
enum Column {
    Int64(Int64Builder),
    Utf8(StringBuilder),
    Scalars(Vec<ScalarValue>),
}

impl Column {
    fn push(&mut self, value: &ScalarValue) -> Result<()> {
        match (&mut *self, value) {
            (Self::Int64(b), ScalarValue::Int64(v)) => b.append_option(*v),
            (Self::Utf8(b), ScalarValue::Utf8(v)) => b.append_option(v.as_deref()),
            (Self::Scalars(values), v) => values.push(v.clone()),
            // A value of another type (not expected): the column goes on as scalars.
            (_, v) => {
                let built = self.finish()?;
                let mut values = (0..built.len())
                    .map(|i| ScalarValue::try_from_array(&built, i))
                    .collect::<Result<Vec<_>>>()?;
                values.push(v.clone());
                *self = Self::Scalars(values);
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Utf8(b) => Arc::new(b.finish()),
            Self::Scalars(values) => ScalarValue::iter_to_array(std::mem::take(values))?,
        })
    }
}

impl Output {
    /// Room for the changes of `groups` groups (a `-U`/`+U` pair each, at most) in rows of
    /// `schema`: `key_count` keys, then the aggregates.
    pub(super) fn new(schema: &SchemaRef, key_count: usize, groups: usize) -> Self {
        let rows = groups * 2;
        let values = schema.fields()[key_count..]
            .iter()
            .map(|field| match field.data_type() {
                DataType::Int64 => Column::Int64(Int64Builder::with_capacity(rows)),
                DataType::Utf8 => Column::Utf8(StringBuilder::with_capacity(rows, rows * 8)),
                _ => Column::Scalars(Vec::with_capacity(rows)),
            })
            .collect();
        Self {
            schema: Arc::clone(schema),
            key_rows: Vec::with_capacity(rows),
            kinds: Vec::with_capacity(rows),
            values,
        }
    }

    /// A row of kind `kind`: the keys of input row `key_row`, then `values`.
    pub(super) fn push(
        &mut self,
        key_row: u32,
        kind: RowKind,
        values: &[ScalarValue],
    ) -> Result<()> {
        self.key_rows.push(key_row);
        self.kinds.push(kind as i8);
        for (column, value) in self.values.iter_mut().zip(values) {
            column.push(value)?;
        }
        Ok(())
    }

    /// The changes, with their keys taken from `keys` (the batch's key columns).
    pub(super) fn finish(mut self, keys: &[ArrayRef]) -> Result<Option<Changes>> {
        if self.kinds.is_empty() {
            return Ok(None);
        }
        let indices = UInt32Array::from(std::mem::take(&mut self.key_rows));
        let mut columns = Vec::with_capacity(self.schema.fields().len());
        for (i, key) in keys.iter().enumerate() {
            let key = take(key.as_ref(), &indices, None)?;
            columns.push(in_type(key, self.schema.field(i).data_type())?);
        }
        for (j, column) in self.values.iter_mut().enumerate() {
            let data_type = self.schema.field(keys.len() + j).data_type();
            columns.push(in_type(column.finish()?, data_type)?);
        }
        Ok(Some(Changes {
            rows: RecordBatch::try_new(Arc::clone(&self.schema), columns)?,
            kinds: Int8Array::from(self.kinds),
        }))
    }
}
