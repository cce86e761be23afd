//! Records of one Kafka partition, buffered and turned into one Arrow batch.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, Int8Array, Int32Array, Int64Array, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, SchemaRef};
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
    /// The values (empty for a record without one).
    pub values: Vec<Vec<u8>>,
    /// False for a record without a value (a tombstone).
    pub present: Vec<bool>,
    /// The records' offsets.
    pub offsets: Vec<i64>,
    /// The records' timestamps, in epoch milliseconds.
    pub timestamps: Vec<Option<i64>>,
    /// The records' keys, when kept.
    pub keys: Vec<Option<Vec<u8>>>,
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

    /// Adds one record (`value` is `None` for a tombstone); `key` only when it is read.
    pub fn push(
        &mut self,
        value: Option<&[u8]>,
        offset: i64,
        timestamp: Option<i64>,
        key: Option<&[u8]>,
    ) {
        self.values.push(value.unwrap_or_default().to_vec());
        self.present.push(value.is_some());
        self.offsets.push(offset);
        self.timestamps.push(timestamp);
        self.keys.push(key.map(<[u8]>::to_vec));
    }

    /// Forgets every record.
    pub fn clear(&mut self) {
        self.values.clear();
        self.present.clear();
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
            (None, Some(b)) if b.num_rows() != buffer.len() => {
                return datafusion::common::internal_err!(
                    "a decoder gave {} rows for {} records of {origin}",
                    b.num_rows(),
                    buffer.len()
                );
            }
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
                OutputColumn::Metadata(key) => {
                    let records: Vec<usize> = (0..rows).map(pick).collect();
                    metadata_column(
                        key,
                        field,
                        (&self.topic, partition),
                        buffer,
                        &records,
                        &origin,
                    )?
                }
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

/// The metadata column `key` (`topic`, `partition`, `offset`, `timestamp` or `key`) of the
/// records `records` of `buffer`, read from `topic` and `partition`, as `field`'s type.
pub fn metadata_column(
    key: &str,
    field: &Field,
    (topic, partition): (&str, i32),
    buffer: &RecordBuffer,
    records: &[usize],
    origin: &str,
) -> Result<ArrayRef> {
    let rows = records.len();
    let array: ArrayRef = match key {
        "topic" => Arc::new(StringArray::from(vec![topic; rows])),
        "partition" => Arc::new(Int32Array::from(vec![partition; rows])),
        "offset" => Arc::new(Int64Array::from_iter_values(
            records.iter().map(|&i| buffer.offsets[i]),
        )),
        "timestamp" => Arc::new(TimestampMillisecondArray::from_iter(
            records.iter().map(|&i| buffer.timestamps[i]),
        )),
        _ => {
            let mut keys = BinaryBuilder::new();
            for &i in records {
                keys.append_option(buffer.keys[i].as_deref());
            }
            Arc::new(keys.finish())
        }
    };
    if array.data_type() == field.data_type() {
        return Ok(array);
    }
    cast(&array, field.data_type()).map_err(|e| {
        datafusion::common::DataFusionError::Execution(format!(
            "metadata column {} of a record in {origin} does not fit type {}: {e}",
            field.name(),
            field.data_type()
        ))
    })
}
