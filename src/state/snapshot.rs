//! Arrow IPC encoding of snapshot batches.

use bytes::Bytes;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, exec_datafusion_err};

/// Encodes batches of one schema as an Arrow IPC stream.
pub fn encode(schema: &SchemaRef, batches: &[RecordBatch]) -> Result<Bytes> {
    let mut out = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut out, schema)?;
        for batch in batches {
            writer.write(batch)?;
        }
        writer.finish()?;
    }
    Ok(Bytes::from(out))
}

/// Decodes an Arrow IPC stream written by [`encode`]; `what` names it in errors.
pub fn decode(bytes: &Bytes, what: &str) -> Result<Vec<RecordBatch>> {
    let reader = StreamReader::try_new(std::io::Cursor::new(bytes.as_ref()), None)
        .map_err(|e| exec_datafusion_err!("cannot decode state file {what}: {e}"))?;
    reader
        .map(|b| b.map_err(|e| exec_datafusion_err!("cannot decode state file {what}: {e}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, StringArray};

    use super::*;

    #[test]
    fn batches_survive_a_round_trip() {
        let batch = RecordBatch::try_from_iter(vec![
            ("k", Arc::new(StringArray::from(vec![Some("a"), None])) as _),
            ("v", Arc::new(Int64Array::from(vec![1, 2])) as _),
        ])
        .unwrap();
        let bytes = encode(&batch.schema(), &[batch.clone(), batch.slice(1, 1)]).unwrap();
        let back = decode(&bytes, "test").unwrap();
        assert_eq!(back, vec![batch.clone(), batch.slice(1, 1)]);
        let err = decode(&bytes.slice(..bytes.len() / 2), "torn").unwrap_err();
        assert!(
            err.to_string().contains("cannot decode state file torn"),
            "{err}"
        );
    }
}
