//! Records of one Kafka partition, buffered and turned into one Arrow batch.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int8Array, Int32Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::Result;

use crate::connectors::format::{LineChunk, LineDecoder};

/// Where an output column comes from.
#[derive(Debug, Clone)]
pub enum OutputColumn {
    /// Column `i` of the decoded value.
    Value(usize),
    /// Record metadata (`topic`, `partition`, `offset`, `timestamp`, `key`).
    Metadata(String),
}

/// Buffered records of one partition.
#[derive(Debug, Default)]
pub struct RecordBuffer {
    values: Vec<Vec<u8>>,
    offsets: Vec<i64>,
    timestamps: Vec<Option<i64>>,
    keys: Vec<Option<Vec<u8>>>,
}

impl RecordBuffer {
    /// Buffered records.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True if nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Adds one record; `key` only when a column reads it.
    pub fn push(&mut self, value: &[u8], offset: i64, timestamp: Option<i64>, key: Option<&[u8]>) {
        self.values.push(value.to_vec());
        self.offsets.push(offset);
        self.timestamps.push(timestamp);
        self.keys.push(key.map(<[u8]>::to_vec));
    }

    fn clear(&mut self) {
        self.values.clear();
        self.offsets.clear();
        self.timestamps.clear();
        self.keys.clear();
    }
}

/// Turns buffers into batches of the reader's output schema.
pub struct BatchAssembler {
    /// The reader's output schema.
    pub schema: SchemaRef,
    /// Per output column, its origin.
    pub columns: Vec<OutputColumn>,
    /// Decodes the projected value columns; `None` when no value column is read.
    pub decoder: Option<Box<dyn LineDecoder>>,
    /// The topic, for the `topic` metadata and for messages.
    pub topic: String,
}

impl BatchAssembler {
    /// Decodes and empties `buffer`, the records of `partition`: the rows, with their kinds
    /// for a changelog format; `None` if no row remains (every record was skipped as
    /// malformed).
    pub fn assemble(
        &mut self,
        partition: i32,
        buffer: &mut RecordBuffer,
    ) -> Result<Option<(RecordBatch, Option<Int8Array>)>> {
        let result = self.assemble_inner(partition, buffer);
        buffer.clear();
        result
    }

    fn assemble_inner(
        &mut self,
        partition: i32,
        buffer: &RecordBuffer,
    ) -> Result<Option<(RecordBatch, Option<Int8Array>)>> {
        let origin = format!("topic {} partition {partition}", self.topic);
        let mut kinds = None;
        let (decoded, kept): (Option<RecordBatch>, Option<Vec<usize>>) = match &mut self.decoder {
            Some(decoder) => {
                let decoded = decoder.decode(LineChunk {
                    origin: &origin,
                    first_line: 1,
                    lines: &buffer.values,
                    offsets: Some(&buffer.offsets),
                })?;
                let kept = decoder.kept().map(<[usize]>::to_vec);
                kinds = decoder.take_kinds();
                (decoded, kept)
            }
            None => (None, None),
        };
        let rows = match (&kept, &decoded) {
            (Some(k), _) => k.len(),
            (None, Some(b)) => b.num_rows(),
            (None, None) => {
                if self.decoder.is_some() {
                    0
                } else {
                    buffer.len()
                }
            }
        };
        if rows == 0 {
            return Ok(None);
        }
        let pick = |i: usize| kept.as_ref().map_or(i, |k| k[i]);
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (column, field) in self.columns.iter().zip(self.schema.fields()) {
            let array: ArrayRef = match column {
                OutputColumn::Value(i) => match &decoded {
                    Some(b) => Arc::clone(b.column(*i)),
                    None => {
                        return datafusion::common::internal_err!(
                            "Kafka value column {i} read without a decoder"
                        );
                    }
                },
                OutputColumn::Metadata(key) => match key.as_str() {
                    "topic" => Arc::new(StringArray::from(vec![self.topic.as_str(); rows])),
                    "partition" => Arc::new(Int32Array::from(vec![partition; rows])),
                    "offset" => Arc::new(Int64Array::from_iter_values(
                        (0..rows).map(|i| buffer.offsets[pick(i)]),
                    )),
                    "timestamp" => Arc::new(TimestampMillisecondArray::from_iter(
                        (0..rows).map(|i| buffer.timestamps[pick(i)]),
                    )),
                    _ => {
                        let mut keys = BinaryBuilder::new();
                        for i in 0..rows {
                            keys.append_option(buffer.keys[pick(i)].as_deref());
                        }
                        Arc::new(keys.finish())
                    }
                },
            };
            let array = if array.data_type() == field.data_type() {
                array
            } else {
                cast(&array, field.data_type()).map_err(|e| {
                    datafusion::common::DataFusionError::Execution(format!(
                        "metadata column {} of a record in {origin} does not fit type {}: {e}",
                        field.name(),
                        field.data_type()
                    ))
                })?
            };
            arrays.push(array);
        }
        let batch = RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?;
        Ok(Some((batch, kinds)))
    }
}
