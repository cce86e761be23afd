//! One partition of `WindowAggregateExec` over TUMBLE or HOP windows (slices), run
//! by the operator [`Driver`].

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, TimestampMillisecondArray, UInt32Array, new_null_array,
};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, ScalarValue, internal_err};
use datafusion::physical_expr::PhysicalExpr;
use serde::{Deserialize, Serialize};

use super::definition::OpenPartition;
use super::rocks_slices::RocksSliceState;
use super::slices::{FiredWindow, SliceState};
use crate::physical::aggregation::{AggregateSet, key_schema};
use crate::physical::event_time::to_millis;
use crate::physical::message::{END_OF_TIME, MessageStream, NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{
    OperatorCheckpoint, Restored, RestoredDatabases, SavedBackend, min_watermark,
};
use crate::physical::operator::{
    Context, Driver, Operator, RestoredWatermarks, StateSize, Watermarks,
};
use crate::physical::window_spec::WindowSpec;
use crate::physical::window_spec::{GroupColumn, GroupingSetKeys};
use crate::state::ttl::now_ms;

/// The slices, in memory or in RocksDB (`state.backend`).
enum Slices {
    Memory(SliceState),
    Rocks(Box<RocksSliceState>),
}

impl Slices {
    fn update(
        &mut self,
        slice: i64,
        keys: &[ArrayRef],
        inputs: &crate::physical::aggregation::AggregateInputs,
        rows: usize,
    ) -> Result<()> {
        match self {
            Slices::Memory(s) => s.update(slice, keys, inputs, rows),
            Slices::Rocks(s) => s.update(slice, keys, inputs, rows),
        }
    }

    fn fire(&mut self, watermark: i64, fired: &mut Vec<FiredWindow>) -> Result<()> {
        match self {
            Slices::Memory(s) => s.fire(watermark, fired),
            Slices::Rocks(s) => s.fire(watermark, fired),
        }
    }

    fn next_end(&self) -> i64 {
        match self {
            Slices::Memory(s) => s.next_end(),
            Slices::Rocks(s) => s.next_end(),
        }
    }

    fn memory_size(&self) -> usize {
        match self {
            Slices::Memory(s) => s.memory_size(),
            Slices::Rocks(s) => s.memory_size(),
        }
    }

    fn open_groups(&self) -> usize {
        match self {
            Slices::Memory(s) => s.open_groups(),
            Slices::Rocks(s) => s.open_groups(),
        }
    }
}

/// One partition of a TUMBLE or HOP aggregation.
pub(super) struct WindowAggregateStream {
    spec: WindowSpec,
    time_expr: Arc<dyn PhysicalExpr>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    /// See [`WindowAggregation::grouping_sets`](super::WindowAggregation).
    grouping_sets: Vec<GroupingSetKeys>,
    /// The type of `__grouping_id` (with grouping sets).
    grouping_id: Option<DataType>,
    aggregates: Arc<AggregateSet>,
    group_columns: Vec<GroupColumn>,
    schema: SchemaRef,
    state: Slices,
    /// RocksDB's directory and this partition's instance name, with `state.backend` =
    /// `rocksdb`.
    rocksdb: Option<(std::path::PathBuf, String)>,
    partition: usize,
    partitions: usize,
    /// The highest watermark windows have fired for: the input's, or (HOP) a row's, when an
    /// out-of-order row made windows fire within a batch; over processing time, the clock's.
    fired: i64,
    /// Processing time (see [`WindowAggregation::proctime`](super::WindowAggregation)): rows
    /// are timed by the clock when they arrive, and the clock fires windows.
    proctime: bool,
}

impl WindowAggregateStream {
    pub fn open(open: OpenPartition<'_>, input: MessageStream) -> Result<MessageStream> {
        let OpenPartition {
            exec,
            def,
            backend,
            metrics,
            input_schema,
            partition,
            context,
        } = open;
        let key_fields = def
            .keys
            .iter()
            .map(|(e, name)| {
                Ok(Field::new(
                    name,
                    e.data_type(&input_schema)?,
                    // A grouping set leaving the key out stores NULL for it.
                    e.nullable(&input_schema)? || !def.grouping_sets.is_empty(),
                ))
            })
            .chain(def.grouping_id.clone().map(Ok))
            .collect::<Result<Vec<_>>>()?;
        let key_schema = key_schema(key_fields);
        let rocksdb = backend.rocksdb("window", partition);
        let state = match &rocksdb {
            Some((root, label)) => Slices::Rocks(Box::new(RocksSliceState::try_new(
                def.spec,
                Arc::clone(&def.aggregates),
                key_schema,
                root,
                label,
            )?)),
            None => Slices::Memory(SliceState::new(
                def.spec,
                Arc::clone(&def.aggregates),
                key_schema,
            )),
        };
        let stream = Self {
            spec: def.spec,
            time_expr: Arc::clone(&def.time_expr),
            keys: def.keys.iter().map(|(e, _)| Arc::clone(e)).collect(),
            grouping_sets: def.grouping_sets.clone(),
            grouping_id: def.grouping_id.as_ref().map(|f| f.data_type().clone()),
            aggregates: Arc::clone(&def.aggregates),
            group_columns: def.group_columns.clone(),
            schema: exec.schema(),
            state,
            rocksdb,
            partition,
            partitions: exec.properties().partitioning.partition_count(),
            fired: NO_WATERMARK,
            proctime: def.proctime,
        };
        Driver::open(exec, metrics, vec![input], partition, context, stream)
    }

    fn meta(&self, watermark: i64) -> SlicesMeta {
        SlicesMeta {
            watermark,
            next_end: self.state.next_end(),
            keys: self.state_keys(),
            slices: match &self.state {
                Slices::Rocks(state) => Some(state.slices()),
                Slices::Memory(_) => None,
            },
            backend: matches!(self.state, Slices::Rocks(_)).then_some(SavedBackend::Rocksdb),
        }
    }

    fn process(&mut self, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        let current = ctx.watermark();
        let rows = batch.num_rows();
        let keys = self
            .keys
            .iter()
            .map(|e| e.evaluate(&batch.batch).and_then(|v| v.into_array(rows)))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let inputs = self.aggregates.evaluate(&batch.batch)?;
        if self.proctime {
            // Every row is timed by the clock now, which is past every window fired.
            let now = now_ms().max(self.fired.saturating_add(1));
            let slice = self.spec.slice_start(now);
            return self.update_groups(
                vec![(slice, (0..rows as u32).collect())],
                &keys,
                &inputs,
                rows,
            );
        }
        let times = to_millis(&self.time_expr.evaluate(&batch.batch)?.into_array(rows)?)?;

        // Slice of every row. A row is late, and dropped, once every window holding its slice
        // has fired. A HOP row whose earliest windows fired still counts in the later ones
        // (Flink's slicing rule): the windows its watermark has passed fire first, so that
        // the row only reaches windows that fire after it.
        let check_late = batch.row_watermarks.is_some() || current != NO_WATERMARK;
        let mut groups: Vec<(i64, Vec<u32>)> = Vec::new();
        let mut late = 0usize;
        let mut null_time = 0usize;
        let mut last: Option<usize> = None;
        for i in 0..rows {
            if times.is_null(i) {
                null_time += 1;
                continue;
            }
            let slice = self.spec.slice_start(times.value(i));
            if check_late {
                let watermark = batch.row_watermark(i, current);
                let last_end = self.spec.last_window_end_of_slice(slice);
                if WindowSpec::fire_time(last_end) <= watermark {
                    late += 1;
                    continue;
                }
                let first_end = self.spec.first_window_end_of_slice(slice);
                if WindowSpec::fire_time(first_end) <= watermark && watermark > self.fired {
                    // Only out-of-order HOP rows get here (in order, a row is ahead of the
                    // watermark): windows up to this row's watermark fire before it is added.
                    self.update_groups(std::mem::take(&mut groups), &keys, &inputs, rows)?;
                    last = None;
                    self.fire(watermark, ctx)?;
                }
            }
            let g = match last {
                Some(g) if groups[g].0 == slice => g,
                _ => match groups.iter().position(|(s, _)| *s == slice) {
                    Some(g) => g,
                    None => {
                        groups.push((slice, Vec::new()));
                        groups.len() - 1
                    }
                },
            };
            groups[g].1.push(i as u32);
            last = Some(g);
        }
        ctx.late(late);
        ctx.null_time(null_time);
        self.update_groups(groups, &keys, &inputs, rows)
    }

    /// Adds the rows of each `(slice, row indices)` group of a batch of `rows` rows.
    fn update_groups(
        &mut self,
        groups: Vec<(i64, Vec<u32>)>,
        keys: &[ArrayRef],
        inputs: &crate::physical::aggregation::AggregateInputs,
        rows: usize,
    ) -> Result<()> {
        for (slice, indices) in groups {
            if indices.len() == rows {
                self.update_sets(slice, keys, inputs, rows)?;
            } else {
                let idx = UInt32Array::from(indices);
                let sub_keys = keys
                    .iter()
                    .map(|k| Ok(take(k, &idx, None)?))
                    .collect::<Result<Vec<_>>>()?;
                let sub_inputs = inputs.take(&idx)?;
                self.update_sets(slice, &sub_keys, &sub_inputs, idx.len())?;
            }
        }
        Ok(())
    }

    /// Adds rows of one slice, once per grouping set (under the set's keys and id), or once.
    fn update_sets(
        &mut self,
        slice: i64,
        keys: &[ArrayRef],
        inputs: &crate::physical::aggregation::AggregateInputs,
        rows: usize,
    ) -> Result<()> {
        let Some(id_type) = &self.grouping_id else {
            return self.state.update(slice, keys, inputs, rows);
        };
        for set in &self.grouping_sets {
            let mut set_keys: Vec<ArrayRef> = keys
                .iter()
                .zip(&set.absent)
                .map(|(k, absent)| {
                    if *absent {
                        new_null_array(k.data_type(), rows)
                    } else {
                        Arc::clone(k)
                    }
                })
                .collect();
            let id = ScalarValue::UInt64(Some(set.id)).cast_to(id_type)?;
            set_keys.push(id.to_array_of_size(rows)?);
            self.state.update(slice, &set_keys, inputs, rows)?;
        }
        Ok(())
    }

    /// Key columns of the state: the keys, and the grouping id with grouping sets.
    fn state_keys(&self) -> usize {
        self.keys.len() + usize::from(self.grouping_id.is_some())
    }

    /// Fires every window due at `watermark`, emitting their rows.
    fn fire(&mut self, watermark: i64, ctx: &mut Context<'_>) -> Result<()> {
        let mut fired = Vec::new();
        self.state.fire(watermark, &mut fired)?;
        self.fired = self.fired.max(watermark);
        for window in fired {
            ctx.emit(self.output_batch(window)?);
        }
        Ok(())
    }

    fn output_batch(&self, window: FiredWindow) -> Result<RecordBatch> {
        let FiredWindow { start, end, result } = window;
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (i, column) in self.group_columns.iter().enumerate() {
            match column {
                GroupColumn::Key(k) => columns.push(Arc::clone(&result.keys[*k])),
                GroupColumn::GroupingId => {
                    columns.push(Arc::clone(&result.keys[self.keys.len()]));
                }
                GroupColumn::Window(field) => {
                    let tz = match self.schema.field(i).data_type() {
                        DataType::Timestamp(_, tz) => tz.clone(),
                        _ => None,
                    };
                    let array = TimestampMillisecondArray::from_value(
                        field.value(start, end),
                        result.groups,
                    )
                    .with_timezone_opt(tz);
                    columns.push(Arc::new(array));
                }
            }
        }
        columns.extend(result.values);
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// What a partition of a TUMBLE or HOP aggregation records in a checkpoint besides its slices.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct SlicesMeta {
    /// The input's watermark.
    watermark: i64,
    /// The end of the next window to fire.
    next_end: i64,
    /// Key columns of the slice rows (after `__slice` and `__frozen`).
    keys: usize,
    /// RocksDB: the slices in the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    slices: Option<Vec<i64>>,
    /// RocksDB: says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<SavedBackend>,
}

impl Operator for WindowAggregateStream {
    type Meta = SlicesMeta;

    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let metas: Vec<SlicesMeta> = restored.metas("window")?;
        let watermark = min_watermark(metas.iter().map(|m| m.watermark), NO_WATERMARK);
        self.fired = watermark;
        let next_end = min_watermark(metas.iter().map(|m| m.next_end), i64::MIN);
        let keys = self.state_keys();
        // Slice batches: `__slice`, `__frozen`, then the group keys.
        let batches = checkpoint.batches(restored, 2..2 + keys)?;
        let databases = restored.databases(self.rocksdb.is_some())?;
        match (&mut self.state, &self.rocksdb) {
            (Slices::Rocks(state), Some((root, label))) => {
                match databases {
                    RestoredDatabases::Own(saved, dir) => {
                        let Some(slices) = saved.meta::<SlicesMeta>("window")?.slices else {
                            return internal_err!("a RocksDB window checkpoint without its slices");
                        };
                        state.adopt(root, label, dir, slices, next_end)?;
                        checkpoint.adopted(saved);
                        return Ok(RestoredWatermarks::all(1, watermark));
                    }
                    RestoredDatabases::Others(dirs) => {
                        for dir in dirs {
                            state.restore_rekeyed(dir, self.partition, self.partitions)?;
                        }
                    }
                    RestoredDatabases::None => {}
                }
                state.restore_batches(&batches, keys, next_end)?;
            }
            (Slices::Memory(state), _) => state.restore(&batches, keys, next_end)?,
            (Slices::Rocks(_), None) => {}
        }
        Ok(RestoredWatermarks::all(1, watermark))
    }

    fn on_data(&mut self, _input: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        self.process(batch, ctx)
    }

    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        let watermark = ctx.watermark();
        if self.proctime && watermark != END_OF_TIME {
            // The clock fires windows; the input's event time does not. At the end of the
            // input every window fires.
            return Ok(self.fired);
        }
        if watermark > self.fired {
            self.fire(watermark, ctx)?;
        }
        Ok(watermark)
    }

    /// Over processing time, never: the clock moves the output's watermark on, and windows
    /// not yet fired (open, frozen HOP slices, or in RocksDB) hold rows still to come.
    fn may_idle(&self) -> bool {
        !self.proctime
    }

    /// Processing time: the next end of a slice after the windows fired.
    fn next_timer(&self) -> Option<i64> {
        if !self.proctime {
            return None;
        }
        let from = if self.fired == NO_WATERMARK {
            now_ms()
        } else {
            self.fired.saturating_add(1)
        };
        Some(
            self.spec
                .slice_start(from)
                .saturating_add(self.spec.slice_size()),
        )
    }

    /// Processing time: fires every window that ended by `now`.
    fn on_timer(&mut self, now: i64, ctx: &mut Context<'_>) -> Result<i64> {
        let watermark = now.saturating_sub(1);
        if self.proctime && watermark > self.fired {
            self.fire(watermark, ctx)?;
        }
        Ok(self.fired)
    }

    /// Hands the slice state to the checkpoint coordinator.
    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        if let Slices::Rocks(state) = &mut self.state {
            // Every buffered group into the database, and so into the checkpoint.
            state.flush_all()?;
        }
        // Over processing time, the watermark kept is the clock's the windows fired for.
        let watermark = if self.proctime {
            self.fired
        } else {
            watermarks.min()
        };
        let meta = self.meta(watermark);
        match &mut self.state {
            Slices::Memory(state) => checkpoint.snapshot(epoch, &meta, state.snapshot()?),
            Slices::Rocks(state) => checkpoint.snapshot_db(epoch, &meta, state.db()),
        }
    }

    fn end(&mut self, watermarks: &Watermarks<'_>) -> SlicesMeta {
        self.meta(watermarks.min())
    }

    fn state_size(&self) -> StateSize {
        StateSize {
            rows: self.state.open_groups(),
            bytes: self.state.memory_size(),
        }
    }
}
