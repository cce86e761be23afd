//! Raw: the whole record value is the one physical column (Flink's `raw` format).
//!
//! The column is `STRING` (the value must be UTF-8) or `BYTES`. Used with Kafka, where a record
//! is a message value rather than a line.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BinaryBuilder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_err, plan_err};

use super::{LineChunk, LineDecoder};

/// True for the column types the raw format can fill.
fn is_raw_type(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
    )
}

/// Checks that `physical` (the table's physical columns) suits the raw format.
pub fn check_schema(table: &str, physical: &SchemaRef) -> Result<()> {
    match physical.fields().as_ref() {
        [field] if is_raw_type(field.data_type()) => Ok(()),
        [field] => plan_err!(
            "table {table} uses 'format' = 'raw', so its one physical column {} must be STRING \
             or BYTES, not {}",
            field.name(),
            field.data_type()
        ),
        fields => plan_err!(
            "table {table} uses 'format' = 'raw', which fills exactly one physical column, but \
             it declares {}; use 'format' = 'json' or 'csv' for several columns",
            fields.len()
        ),
    }
}

/// Decodes record values into the one column of `schema`.
pub struct RawDecoder {
    schema: SchemaRef,
    text: bool,
}

impl RawDecoder {
    /// A decoder producing `schema` (one column, checked by [`check_schema`]).
    pub fn new(schema: SchemaRef) -> Self {
        let text = matches!(
            schema.fields().first().map(|f| f.data_type()),
            Some(DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
        );
        Self { schema, text }
    }
}

impl LineDecoder for RawDecoder {
    fn decode(&mut self, chunk: LineChunk<'_>) -> Result<Option<RecordBatch>> {
        let Some(field) = self.schema.fields().first() else {
            return Ok(None);
        };
        let column: ArrayRef = if self.text {
            let bytes: usize = chunk.lines.iter().map(Vec::len).sum();
            let mut builder = StringBuilder::with_capacity(chunk.lines.len(), bytes);
            for (i, line) in chunk.lines.iter().enumerate() {
                match std::str::from_utf8(line) {
                    Ok(s) => builder.append_value(s),
                    Err(e) => {
                        return exec_err!(
                            "record in {} is not UTF-8 ({e}) but column {} is a STRING; \
                             declare it BYTES to read any value",
                            chunk.locate(i),
                            field.name()
                        );
                    }
                }
            }
            Arc::new(builder.finish())
        } else {
            let bytes: usize = chunk.lines.iter().map(Vec::len).sum();
            let mut builder = BinaryBuilder::with_capacity(chunk.lines.len(), bytes);
            for line in chunk.lines {
                builder.append_value(line);
            }
            Arc::new(builder.finish())
        };
        let column = cast(&column, field.data_type())?;
        Ok(Some(RecordBatch::try_new(
            Arc::clone(&self.schema),
            vec![column],
        )?))
    }

    fn skipped(&self) -> u64 {
        0
    }

    fn kept(&self) -> Option<&[usize]> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn values_become_the_column() {
        let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::Utf8, true)]));
        check_schema("t", &schema).unwrap();
        let lines = vec![b"hello".to_vec(), b"a,b".to_vec()];
        let batch = RawDecoder::new(schema.clone())
            .decode(LineChunk::of_file("x", 1, &lines))
            .unwrap()
            .unwrap();
        let v = batch.column(0).as_string::<i32>();
        assert_eq!((v.value(0), v.value(1)), ("hello", "a,b"));

        let bad = vec![vec![0xff, 0xfe]];
        let offsets = [41];
        let err = RawDecoder::new(schema)
            .decode(LineChunk {
                origin: "topic t partition 2",
                first_line: 1,
                lines: &bad,
                offsets: Some(&offsets),
            })
            .unwrap_err()
            .to_string();
        assert!(err.contains("topic t partition 2 at offset 41"), "{err}");
    }

    #[test]
    fn only_one_string_or_bytes_column() {
        let two = Arc::new(Schema::new(vec![
            Field::new("a", DataType::Utf8, true),
            Field::new("b", DataType::Utf8, true),
        ]));
        assert!(check_schema("t", &two).is_err());
        let int = Arc::new(Schema::new(vec![Field::new("a", DataType::Int64, true)]));
        assert!(check_schema("t", &int).is_err());
    }
}
