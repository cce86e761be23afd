//! Rows to record payloads, one record each.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, Int8Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampMillisecondType};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::Result;

use crate::connectors::kafka::upsert::upsert_records;

use crate::connectors::format::{Format, FormatOptions, LineEncoder, encoder as line_encoder};

/// Encodes rows one record each.
enum RowEncoder {
    /// JSON, CSV or debezium-json lines, split into records.
    Lines(Box<dyn LineEncoder>),
    /// The one column's bytes.
    Raw,
}

/// The encoder of records of `options.format`.
fn encoder(options: &FormatOptions) -> Result<RowEncoder> {
    Ok(match options.format {
        Format::Raw => RowEncoder::Raw,
        Format::Json | Format::Csv | Format::DebeziumJson => {
            RowEncoder::Lines(line_encoder(options)?)
        }
    })
}

impl RowEncoder {
    /// One payload per row (`None` for a NULL raw value); changelog rows with `kinds`.
    fn encode(
        &mut self,
        batch: &RecordBatch,
        kinds: Option<&Int8Array>,
    ) -> Result<Vec<Option<Vec<u8>>>> {
        let rows = batch.num_rows();
        match self {
            RowEncoder::Raw => {
                let Some(column) = batch.columns().first() else {
                    return Ok(vec![None; rows]);
                };
                let column = match column.data_type() {
                    DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
                        cast(column, &DataType::Binary)?
                    }
                    _ => cast(&cast(column, &DataType::Utf8)?, &DataType::Binary)?,
                };
                let bytes = column.as_binary::<i32>();
                Ok((0..rows)
                    .map(|i| (!bytes.is_null(i)).then(|| bytes.value(i).to_vec()))
                    .collect())
            }
            RowEncoder::Lines(encoder) => {
                let mut out = Vec::new();
                match kinds {
                    Some(kinds) => encoder.encode_changes(batch, kinds, &mut out)?,
                    None => encoder.encode(batch, &mut out)?,
                }
                let lines: Vec<&[u8]> = out
                    .strip_suffix(b"\n")
                    .unwrap_or(&out)
                    .split(|b| *b == b'\n')
                    .collect();
                if lines.len() == rows {
                    return Ok(lines.into_iter().map(|l| Some(l.to_vec())).collect());
                }
                // A CSV field with a line break: encode row by row.
                let mut records = Vec::with_capacity(rows);
                for i in 0..rows {
                    let mut one = Vec::new();
                    match kinds {
                        Some(kinds) => encoder.encode_changes(
                            &batch.slice(i, 1),
                            &kinds.slice(i, 1),
                            &mut one,
                        )?,
                        None => encoder.encode(&batch.slice(i, 1), &mut one)?,
                    }
                    if one.last() == Some(&b'\n') {
                        one.pop();
                    }
                    records.push(Some(one));
                }
                Ok(records)
            }
        }
    }
}

/// One row's record.
pub(super) struct Record {
    pub(super) value: Option<Vec<u8>>,
    pub(super) key: Option<Vec<u8>>,
    /// Milliseconds since the epoch, from a writable `timestamp` metadata column.
    pub(super) timestamp: Option<i64>,
}

/// How rows of the sink's input become records: the value and key columns, each in its
/// format, and the record timestamp's column.
pub(super) struct RecordEncoder {
    value: RowEncoder,
    value_columns: Vec<usize>,
    /// Absent without key columns.
    key: Option<RowEncoder>,
    key_columns: Vec<usize>,
    timestamp_column: Option<usize>,
    /// upsert-kafka: the record key's schema (its names without `key.fields-prefix`); the
    /// kinds of changelog rows choose between a value, a tombstone and no record.
    upsert: Option<SchemaRef>,
}

impl RecordEncoder {
    /// Records whose value holds the columns `value_columns` in format `value`, whose key holds
    /// `key_columns` in `key`'s format, and whose timestamp is `timestamp_column`; `upsert`
    /// is an upsert-kafka table's key schema.
    pub(super) fn try_new(
        value: &FormatOptions,
        value_columns: Vec<usize>,
        (key, key_columns): (&FormatOptions, Vec<usize>),
        timestamp_column: Option<usize>,
        upsert: Option<SchemaRef>,
    ) -> Result<Self> {
        Ok(Self {
            upsert,
            value: encoder(value)?,
            value_columns,
            key: (!key_columns.is_empty())
                .then(|| encoder(key))
                .transpose()?,
            key_columns,
            timestamp_column,
        })
    }

    /// One record per row of `batch`; changelog rows with `kinds` (the value's format
    /// says what each does).
    pub(super) fn encode(
        &mut self,
        batch: &RecordBatch,
        kinds: Option<&Int8Array>,
    ) -> Result<Vec<Record>> {
        let value_kinds = if self.upsert.is_some() { None } else { kinds };
        let mut values = self
            .value
            .encode(&batch.project(&self.value_columns)?, value_kinds)?;
        let key_batch = batch.project(&self.key_columns)?;
        if self.upsert.is_some()
            && let Some(null) = key_batch.columns().iter().position(|c| c.null_count() > 0)
        {
            return datafusion::common::exec_err!(
                "a row has NULL in PRIMARY KEY column {} of an upsert-kafka table: a key \
                 column cannot be NULL (filter such rows out, or COALESCE the column)",
                batch.schema().field(self.key_columns[null]).name()
            );
        }
        let key_batch = match &self.upsert {
            Some(schema) => RecordBatch::try_new_with_options(
                Arc::clone(schema),
                key_batch.columns().to_vec(),
                &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
            )?,
            None => key_batch,
        };
        let keys = match &mut self.key {
            Some(encoder) => encoder.encode(&key_batch, None)?,
            None => Vec::new(),
        };
        // upsert-kafka: per row a value, a tombstone or nothing.
        let mut wanted = vec![true; values.len()];
        if let (Some(_), Some(kinds)) = (&self.upsert, kinds) {
            for (i, record) in upsert_records(kinds, &keys).into_iter().enumerate() {
                match record {
                    Some(true) => {}
                    Some(false) => values[i] = None,
                    None => wanted[i] = false,
                }
            }
        }
        let mut keys = keys.into_iter();
        let timestamps = match self.timestamp_column {
            Some(i) => Some(cast(
                batch.column(i),
                &DataType::Timestamp(TimeUnit::Millisecond, None),
            )?),
            None => None,
        };
        let timestamps = timestamps
            .as_ref()
            .map(|ts| ts.as_primitive::<TimestampMillisecondType>());
        Ok(values
            .into_iter()
            .enumerate()
            .map(|(i, value)| Record {
                value,
                key: keys.next().flatten(),
                timestamp: timestamps.and_then(|ts| (!ts.is_null(i)).then(|| ts.value(i))),
            })
            .zip(wanted)
            .filter_map(|(record, wanted)| wanted.then_some(record))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn rows_become_one_record_each() {
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("id", DataType::Int64, true),
                Field::new("s", DataType::Utf8, true),
            ])),
            vec![
                Arc::new(Int64Array::from(vec![1, 2])),
                Arc::new(StringArray::from(vec![Some("a\nb"), None])),
            ],
        )
        .unwrap();
        let json = encoder(&FormatOptions::new(Format::Json))
            .unwrap()
            .encode(&batch, None)
            .unwrap();
        assert_eq!(
            json,
            vec![
                Some(br#"{"id":1,"s":"a\nb"}"#.to_vec()),
                Some(br#"{"id":2}"#.to_vec())
            ]
        );
        let csv = encoder(&FormatOptions::new(Format::Csv))
            .unwrap()
            .encode(&batch, None)
            .unwrap();
        assert_eq!(
            csv,
            vec![Some(b"1,\"a\nb\"".to_vec()), Some(b"2,".to_vec())]
        );
        let raw = encoder(&FormatOptions::new(Format::Raw))
            .unwrap()
            .encode(&batch.project(&[1]).unwrap(), None)
            .unwrap();
        assert_eq!(raw, vec![Some(b"a\nb".to_vec()), None]);
    }
}
