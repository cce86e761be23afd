//! Buffered join rows in checkpoints.
//!
//! A snapshot batch holds the rows of one side: `__side` (0 left, 1 right), `__matched` (the
//! row already found a partner), then every column of the left input and every column of the
//! right input, all nullable; the other side's columns are NULL. One schema serves both sides,
//! so a join partition is one participant with one state schema.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, BooleanArray, UInt8Array, new_null_array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt8Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err};

/// Encodes and decodes the rows of both sides (see the module docs).
#[derive(Debug, Clone)]
pub(super) struct SideCodec {
    schema: SchemaRef,
    inputs: [SchemaRef; 2],
}

impl SideCodec {
    pub fn new(inputs: [SchemaRef; 2]) -> Self {
        let mut fields = vec![
            Field::new("__side", DataType::UInt8, false),
            Field::new("__matched", DataType::Boolean, false),
        ];
        for (side, schema) in inputs.iter().enumerate() {
            for (i, f) in schema.fields().iter().enumerate() {
                let prefix = if side == 0 { "l" } else { "r" };
                fields.push(Field::new(
                    format!("{prefix}{i}"),
                    f.data_type().clone(),
                    true,
                ));
            }
        }
        Self {
            schema: Arc::new(Schema::new(fields)),
            inputs,
        }
    }

    /// Rows of `side` with their matched flags as one snapshot batch.
    pub fn encode(
        &self,
        side: usize,
        rows: &RecordBatch,
        matched: &BooleanArray,
    ) -> Result<RecordBatch> {
        let n = rows.num_rows();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(UInt8Array::from(vec![side as u8; n])),
            Arc::new(matched.clone()),
        ];
        for (s, schema) in self.inputs.iter().enumerate() {
            for (i, f) in schema.fields().iter().enumerate() {
                columns.push(if s == side {
                    Arc::clone(rows.column(i))
                } else {
                    new_null_array(f.data_type(), n)
                });
            }
        }
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// The side of a snapshot batch written by [`Self::encode`] (one side per batch).
    pub fn side_of(&self, batch: &RecordBatch) -> Result<usize> {
        self.check(batch)?;
        let sides = batch.column(0).as_primitive::<UInt8Type>();
        Ok(if sides.is_empty() {
            0
        } else {
            sides.value(0) as usize
        })
    }

    /// The rows of `side` in a snapshot batch, in that side's schema, with their matched flags.
    pub fn decode(&self, batch: &RecordBatch, side: usize) -> Result<(RecordBatch, BooleanArray)> {
        self.check(batch)?;
        let sides = batch.column(0).as_primitive::<UInt8Type>();
        let mask: BooleanArray = sides.iter().map(|s| Some(s == Some(side as u8))).collect();
        let rows = filter_record_batch(batch, &mask)?;
        let offset = 2 + if side == 0 {
            0
        } else {
            self.inputs[0].fields().len()
        };
        let width = self.inputs[side].fields().len();
        let columns = rows.columns()[offset..offset + width].to_vec();
        let matched = rows.column(1).as_boolean().clone();
        Ok((
            RecordBatch::try_new(Arc::clone(&self.inputs[side]), columns)?,
            matched,
        ))
    }

    fn check(&self, batch: &RecordBatch) -> Result<()> {
        if batch.schema().fields() != self.schema.fields() {
            return exec_err!(
                "the checkpointed join state does not match this query's inputs (columns \
                 changed); restart the job without its checkpoint state (a fresh --state-dir)"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};

    #[test]
    fn encode_decode_round_trip_per_side() {
        let left = RecordBatch::try_from_iter(vec![(
            "k",
            Arc::new(Int64Array::from(vec![1, 2])) as ArrayRef,
        )])
        .unwrap();
        let right = RecordBatch::try_from_iter(vec![
            ("k", Arc::new(Int64Array::from(vec![7])) as ArrayRef),
            ("s", Arc::new(StringArray::from(vec!["x"])) as ArrayRef),
        ])
        .unwrap();
        let codec = SideCodec::new([left.schema(), right.schema()]);
        let l = codec
            .encode(0, &left, &BooleanArray::from(vec![true, false]))
            .unwrap();
        let r = codec
            .encode(1, &right, &BooleanArray::from(vec![false]))
            .unwrap();
        assert_eq!(codec.side_of(&l).unwrap(), 0);
        assert_eq!(codec.side_of(&r).unwrap(), 1);
        let (rows, matched) = codec.decode(&l, 0).unwrap();
        assert_eq!(rows, left);
        assert_eq!(matched, BooleanArray::from(vec![true, false]));
        let (rows, _) = codec.decode(&r, 1).unwrap();
        assert_eq!(rows, right);
        assert_eq!(codec.decode(&r, 0).unwrap().0.num_rows(), 0);
    }
}
