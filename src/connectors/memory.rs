//! The `memory` connector: a table without `connector`, kept in this process.
//!
//! Rows inserted with `INSERT INTO` are appended in order; a scan reads them in that order as
//! one partition, so a streaming query over a memory table is fully deterministic (which the SQL
//! tests rely on). The input is bounded: a scan sees the rows present when it starts. A table
//! filled by a job that failed (a materialized view) answers scans with the job's error.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result, plan_err};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool, MemoryReservation};

use super::{SinkConnector, SinkWriter, SourceBatch, SourceConnector, SourceReader};
use crate::catalog::options::{OptionSpec, SOURCE_COMMON_OPTIONS};
use crate::catalog::table_definition::TableDefinition;
use crate::error::{SqlStateError, with_sqlstate};

/// Options of an in-memory table (only the common source options).
pub const MEMORY_OPTIONS: &[OptionSpec] = &[];

/// The rows of one memory table.
#[derive(Debug)]
pub struct MemoryStore {
    schema: SchemaRef,
    batches: RwLock<Vec<RecordBatch>>,
    /// Why the job filling the table (a materialized view's) failed: readers get this error
    /// instead of rows that stopped changing.
    failure: RwLock<Option<SqlStateError>>,
    /// The rows' memory, reserved in the pool of the first session that wrote (it lives as
    /// long as the table).
    reservation: std::sync::Mutex<Option<MemoryReservation>>,
}

impl MemoryStore {
    fn snapshot(&self) -> Result<Vec<RecordBatch>> {
        if let Some(failure) = self.failure.read().ok().and_then(|f| f.clone()) {
            return Err(with_sqlstate(failure.code, failure.message));
        }
        self.batches
            .read()
            .map(|b| b.clone())
            .map_err(|_| DataFusionError::Internal("memory table lock poisoned".into()))
    }

    fn reserve_in(&self, pool: &Arc<dyn MemoryPool>) {
        if let Ok(mut reservation) = self.reservation.lock()
            && reservation.is_none()
        {
            *reservation = Some(MemoryConsumer::new("memory table").register(pool));
        }
    }

    fn append(&self, batch: RecordBatch) -> Result<()> {
        if let Ok(mut reservation) = self.reservation.lock()
            && let Some(reservation) = reservation.as_mut()
        {
            reservation.try_grow(batch.get_array_memory_size())?;
        }
        self.batches
            .write()
            .map(|mut b| b.push(batch))
            .map_err(|_| DataFusionError::Internal("memory table lock poisoned".into()))
    }
}

/// Source and sink over one [`MemoryStore`].
#[derive(Debug, Clone)]
pub struct MemoryConnector {
    store: Arc<MemoryStore>,
}

/// Builds the connector of an in-memory table.
pub fn build(def: &TableDefinition) -> Result<MemoryConnector> {
    def.options
        .validate("memory", &[MEMORY_OPTIONS, SOURCE_COMMON_OPTIONS])?;
    if let Some(c) = def.metadata_columns().first() {
        return plan_err!(
            "column {} of in-memory table {} is a METADATA column; only the kafka connector has \
             record metadata",
            c.name,
            def.name
        );
    }
    Ok(MemoryConnector {
        store: Arc::new(MemoryStore {
            schema: def.source_schema(),
            batches: RwLock::new(Vec::new()),
            failure: RwLock::new(None),
            reservation: std::sync::Mutex::new(None),
        }),
    })
}

impl SourceConnector for MemoryConnector {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.store.schema)
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn num_partitions(&self, _parallelism: usize) -> Result<usize> {
        Ok(1)
    }

    fn open(
        &self,
        _partition: usize,
        _num_partitions: usize,
        projection: &[usize],
        batch_size: usize,
    ) -> Result<Box<dyn SourceReader>> {
        let mut chunks = Vec::new();
        for batch in self.store.snapshot()? {
            let batch = batch.project(projection)?;
            let mut offset = 0;
            while offset < batch.num_rows() {
                let len = batch_size.min(batch.num_rows() - offset);
                chunks.push(batch.slice(offset, len));
                offset += len;
            }
        }
        chunks.reverse();
        Ok(Box::new(MemoryReader { chunks }))
    }

    fn explain(&self) -> String {
        let rows: usize = self
            .store
            .snapshot()
            .map(|b| b.iter().map(|b| b.num_rows()).sum())
            .unwrap_or(0);
        format!("rows={rows}")
    }
}

struct MemoryReader {
    /// Remaining chunks, last first.
    chunks: Vec<RecordBatch>,
}

#[async_trait]
impl SourceReader for MemoryReader {
    async fn next_batch(&mut self) -> Result<Option<SourceBatch>> {
        Ok(self.chunks.pop().map(SourceBatch::new))
    }
}

impl SinkConnector for MemoryConnector {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn open_writer(
        &self,
        _schema: SchemaRef,
        _partition: usize,
        _num_partitions: usize,
    ) -> Result<Box<dyn SinkWriter>> {
        Ok(Box::new(MemoryWriter {
            store: Arc::clone(&self.store),
        }))
    }

    fn job_failed(&self, error: &SqlStateError) {
        if let Ok(mut failure) = self.store.failure.write() {
            *failure = Some(error.clone());
        }
    }

    fn explain(&self) -> String {
        "append".to_string()
    }
}

struct MemoryWriter {
    store: Arc<MemoryStore>,
}

#[async_trait]
impl SinkWriter for MemoryWriter {
    async fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        // Rows take the table's column names and nullability.
        let batch = RecordBatch::try_new(Arc::clone(&self.store.schema), batch.columns().to_vec())?;
        self.store.append(batch)
    }

    async fn on_barrier(&mut self, _epoch: u64) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }

    async fn finish(&mut self) -> Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }

    fn reserve_in(&mut self, pool: &Arc<dyn MemoryPool>) {
        self.store.reserve_in(pool);
    }
}
