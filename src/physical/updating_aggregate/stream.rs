//! One partition of `UpdatingAggregateExec`, run by the operator [`Driver`].

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Result;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use serde::{Deserialize, Serialize};

use super::UpdatingAggregation;
use super::groups::GroupTable;
use crate::changelog::kind_at;
use crate::physical::message::{MessageStream, NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{
    OperatorCheckpoint, Restored, RestoredDatabases, SavedBackend, min_watermark,
};
use crate::physical::operator::{
    Context, Driver, Operator, RestoredWatermarks, StateSize, Watermarks,
};
use crate::state::backend::StateBackend;
use crate::state::ttl::{TimeToLive, now_ms};

/// One partition of an updating aggregate.
pub(super) struct UpdatingAggregateStream {
    def: UpdatingAggregation,
    groups: GroupTable,
    /// Retractions of unknown rows already logged.
    warned: u64,
    operator: String,
    partition: usize,
    partitions: usize,
    /// RocksDB's directory and this partition's instance name, with `state.backend` =
    /// `rocksdb`.
    rocksdb: Option<(std::path::PathBuf, String)>,
    /// `table.exec.state.ttl`: groups no rows came for this long are dropped.
    ttl: Option<TimeToLive>,
}

/// What a partition records in a checkpoint besides its groups.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct UpdatingMeta {
    /// The input's watermark.
    watermark: i64,
    /// Key columns the state rows start with.
    keys: usize,
    /// Columns of each aggregate's state, after the keys and `__rows`.
    widths: Vec<usize>,
    /// RocksDB: says so (the groups are the database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<SavedBackend>,
}

impl UpdatingAggregateStream {
    /// Opens partition `partition` of `exec` over `input`, its state in `backend`.
    #[allow(clippy::too_many_arguments)]
    pub fn open(
        exec: &dyn ExecutionPlan,
        def: &UpdatingAggregation,
        backend: &StateBackend,
        metrics: &ExecutionPlanMetricsSet,
        input_schema: SchemaRef,
        input: MessageStream,
        partition: usize,
        context: &Arc<TaskContext>,
    ) -> Result<MessageStream> {
        let key_types = def
            .keys
            .iter()
            .map(|(e, _)| e.data_type(&input_schema))
            .collect::<Result<Vec<_>>>()?;
        let mut groups = GroupTable::try_new(
            Arc::clone(&def.aggregates),
            def.retracting_input,
            key_types,
            def.aggregates.argument_types(&input_schema)?,
            exec.schema(),
        )?;
        groups = groups.with_ttl(def.ttl);
        let rocksdb = backend.rocksdb("updating", partition);
        if let Some((root, label)) = &rocksdb {
            groups = groups.with_rocksdb(root, label)?;
        }
        let stream = Self {
            def: def.clone(),
            groups,
            warned: 0,
            operator: exec.name().to_string(),
            partition,
            partitions: exec.properties().partitioning.partition_count(),
            ttl: def.ttl.map(TimeToLive::new),
            rocksdb,
        };
        Driver::open(exec, metrics, vec![input], partition, context, stream)
    }

    /// Drops the groups `table.exec.state.ttl` expired by `now`, if a sweep is due.
    fn expire(&mut self, now: i64) {
        if let Some(oldest) = self.ttl.as_mut().and_then(|t| t.sweep(now)) {
            let expired = self.groups.expire(oldest);
            if expired > 0 {
                log::debug!(
                    "{}: {expired} group(s) expired (table.exec.state.ttl)",
                    self.operator
                );
            }
        }
    }

    fn meta(&self, watermark: i64) -> UpdatingMeta {
        UpdatingMeta {
            watermark,
            keys: self.groups.snapshot_keys(),
            widths: self.groups.state_widths(),
            backend: self.rocksdb.as_ref().map(|_| SavedBackend::Rocksdb),
        }
    }
}

impl Operator for UpdatingAggregateStream {
    type Meta = Option<UpdatingMeta>;

    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let metas: Vec<Option<UpdatingMeta>> = restored.metas("updating aggregate")?;
        let metas: Vec<UpdatingMeta> = metas.into_iter().flatten().collect();
        let watermark = min_watermark(metas.iter().map(|m| m.watermark), NO_WATERMARK);
        let keys = self.groups.snapshot_keys();
        let widths = match metas.first() {
            Some(meta) => meta.widths.clone(),
            None => self.groups.state_widths(),
        };
        match (restored.databases(self.rocksdb.is_some())?, &self.rocksdb) {
            (RestoredDatabases::Own(saved, dir), Some((root, label))) => {
                self.groups.adopt(root, label, dir)?;
                checkpoint.adopted(saved);
                return Ok(RestoredWatermarks::all(1, watermark));
            }
            (RestoredDatabases::Others(dirs), Some(_)) => {
                for dir in dirs {
                    self.groups
                        .restore_rekeyed(dir, self.partition, self.partitions)?;
                }
            }
            _ => {}
        }
        // Checkpoints of groups in memory (with RocksDB too: a job that changed backend).
        for batch in checkpoint.batches(restored, 0..keys)? {
            self.groups.restore(&batch, keys, &widths)?;
        }
        Ok(RestoredWatermarks::all(1, watermark))
    }

    fn on_data(&mut self, _input: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        self.expire(now_ms());
        let rows = batch.num_rows();
        let keys = self
            .def
            .keys
            .iter()
            .map(|(e, _)| e.evaluate(&batch.batch).and_then(|v| v.into_array(rows)))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let inputs = self.def.aggregates.evaluate(&batch.batch)?;
        if let Some(changes) =
            self.groups
                .apply(&keys, &inputs, |i| kind_at(batch.kinds.as_deref(), i), rows)?
        {
            ctx.emit_changes(changes.rows, changes.kinds);
        }
        let unknown = self.groups.unknown_retractions();
        if unknown > self.warned {
            // With a time to live, retractions of expired groups are expected.
            let level = if self.ttl.is_some() {
                log::Level::Debug
            } else {
                log::Level::Warn
            };
            log::log!(
                level,
                "{}: {} retraction(s) of rows its state does not hold were ignored",
                self.operator,
                unknown - self.warned
            );
            self.warned = unknown;
        }
        Ok(())
    }

    /// With a time to live, sweeps come by the clock, whether rows arrive or not.
    fn next_timer(&self) -> Option<i64> {
        let ttl = self.ttl.as_ref()?;
        (self.groups.len() > 0).then(|| ttl.next_sweep())
    }

    fn on_timer(&mut self, now: i64, ctx: &mut Context<'_>) -> Result<i64> {
        self.expire(now);
        Ok(ctx.watermarks().output())
    }

    /// Results are emitted as rows arrive; the watermark passes on unchanged.
    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        Ok(ctx.watermark())
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        let meta = Some(self.meta(watermarks.min()));
        // With RocksDB every cached group goes into the database, and so into the checkpoint.
        self.groups.write_back(true)?;
        if let Some(db) = self.groups.db() {
            return checkpoint.snapshot_db(epoch, &meta, db);
        }
        let batches = self.groups.snapshot()?.into_iter().collect();
        checkpoint.snapshot(epoch, &meta, batches)
    }

    fn end(&mut self, watermarks: &Watermarks<'_>) -> Option<UpdatingMeta> {
        Some(self.meta(watermarks.min()))
    }

    fn state_size(&self) -> StateSize {
        StateSize {
            rows: self.groups.len(),
            bytes: self.groups.memory_size(),
        }
    }
}
