//! The `blackhole` connector: a sink that discards every row (for benchmarks, as in Flink).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::Int8Array;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::Result;

use super::{SinkConnector, SinkWriter};
use crate::catalog::options::OptionSpec;
use crate::catalog::table_definition::TableDefinition;

/// The blackhole sink takes no options.
pub const BLACKHOLE_OPTIONS: &[OptionSpec] = &[];

/// Discards rows.
#[derive(Debug)]
pub struct BlackholeConnector;

/// Builds the sink.
pub fn build(def: &TableDefinition) -> Result<Arc<dyn SinkConnector>> {
    def.options.validate("blackhole", &[BLACKHOLE_OPTIONS])?;
    Ok(Arc::new(BlackholeConnector))
}

impl SinkConnector for BlackholeConnector {
    fn name(&self) -> &'static str {
        "blackhole"
    }

    fn open_writer(
        &self,
        _schema: SchemaRef,
        _partition: usize,
        _num_partitions: usize,
    ) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(BlackholeWriter))
    }

    fn accepts_changes(&self) -> bool {
        true
    }

    fn explain(&self) -> String {
        "discard".to_string()
    }
}

struct BlackholeWriter;

#[async_trait]
impl SinkWriter for BlackholeWriter {
    async fn write(&mut self, _batch: &RecordBatch) -> Result<()> {
        Ok(())
    }

    async fn write_changes(&mut self, _batch: &RecordBatch, _kinds: &Int8Array) -> Result<()> {
        Ok(())
    }

    async fn on_barrier(&mut self, _epoch: u64) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }

    async fn finish(&mut self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
}
