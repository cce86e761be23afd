//! `WindowJoinExec`: two windowed streams joined window by window.
//!
//! Both inputs carry window columns and the join keys pair their `window_end`s (Flink's window
//! join: `L.window_start = R.window_start AND L.window_end = R.window_end AND ...`). A row is
//! buffered under its window's end. When the watermarks of both sides reach the window's fire
//! time (`end - 1`, the rule of window aggregation), every row of the window has arrived on
//! both sides (a window operator emits a window's rows before the watermark that closed it):
//! the window's rows are joined by DataFusion's `HashJoinExec` with the original keys, filter,
//! join type and projection, so every join type (INNER, LEFT, RIGHT, FULL, semi, anti) and key
//! type works as in batch SQL, and the window is forgotten. A row whose window already fired on
//! its side's watermark is late: dropped and counted.
//!
//! State: the buffered rows of open windows, snapshotted at barriers; in RocksDB with
//! `state.backend` = `rocksdb` ([`WindowRows`]).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinType, NullEquality, Result, internal_err};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};

use super::JoinParts;
use super::state::SideCodec;
use super::window_rows::{WindowRows, for_each_stored};
use crate::physical::event_time::to_millis;
use crate::physical::message::{MessageStream, NO_WATERMARK, StreamBatch};
use crate::physical::operator::checkpoint::{
    OperatorCheckpoint, Restored, RestoredDatabases, SavedBackend, min_input_watermarks,
};
use crate::physical::operator::{
    Context, Driver, Operator, RestoredWatermarks, StateSize, Watermarks,
};
use crate::physical::streaming::{
    OperatorState, StreamingExec, data_only, execute_input, window_columns, window_time_columns,
};
use crate::physical::window_spec::WindowField;
use crate::physical::window_spec::WindowSpec;
use crate::state::backend::StateBackend;
use crate::state::redistribute::rows_of_partition;

/// See the module docs.
#[derive(Debug)]
pub struct WindowJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: Option<JoinFilter>,
    join_type: JoinType,
    projection: Option<Vec<usize>>,
    null_equality: NullEquality,
    /// Index of `window_end` in the left and the right input.
    window_end: [usize; 2],
    /// Where the buffered rows live: chosen by the planner
    /// ([`StreamingExec::with_state_backend`]).
    backend: StateBackend,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl WindowJoinExec {
    /// The window join replacing `join`, if both its inputs are windowed and its keys pair their
    /// `window_end` columns. `left` and `right` replace its inputs, partitioned alike on the
    /// keys.
    pub fn from_parts(
        join: &JoinParts,
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
    ) -> Result<Option<Self>> {
        let (lw, rw) = (window_columns(&join.left), window_columns(&join.right));
        let column = |e: &PhysicalExprRef| {
            e.downcast_ref::<datafusion::physical_expr::expressions::Column>()
                .map(|c| c.index())
        };
        let ends = join.on.iter().find_map(|(l, r)| {
            let (l, r) = (column(l)?, column(r)?);
            (lw.get(&l) == Some(&WindowField::End) && rw.get(&r) == Some(&WindowField::End))
                .then_some([l, r])
        });
        let Some(window_end) = ends else {
            return Ok(None);
        };
        Self::try_new(
            left,
            right,
            join.on.clone(),
            join.filter.clone(),
            join.join_type,
            join.projection.clone(),
            join.null_equality,
            window_end,
            Arc::clone(&join.schema),
        )
        .map(Some)
    }

    #[allow(clippy::too_many_arguments)]
    fn try_new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        join_type: JoinType,
        projection: Option<Vec<usize>>,
        null_equality: NullEquality,
        window_end: [usize; 2],
        schema: SchemaRef,
    ) -> Result<Self> {
        let properties = super::join_properties(&left, &right, schema)?;
        Ok(Self {
            left,
            right,
            on,
            filter,
            join_type,
            projection,
            null_equality,
            window_end,
            backend: StateBackend::Memory,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// This join over `left` and `right`, its state in `backend`.
    fn rebuilt(
        &self,
        left: &Arc<dyn ExecutionPlan>,
        right: &Arc<dyn ExecutionPlan>,
        backend: &StateBackend,
    ) -> Result<Self> {
        let mut node = Self::try_new(
            Arc::clone(left),
            Arc::clone(right),
            self.on.clone(),
            self.filter.clone(),
            self.join_type,
            self.projection.clone(),
            self.null_equality,
            self.window_end,
            self.schema(),
        )?;
        node.backend = backend.clone();
        Ok(node)
    }

    /// The state (see [`StreamingExec::state`]): the rows of both sides per join key and
    /// window, freed when both watermarks pass the window's end.
    fn state_declaration(&self) -> OperatorState {
        OperatorState {
            backend: self.backend.clone(),
            keys: self.on.iter().map(|(l, _)| l.to_string()).collect(),
            freed: "when both watermarks pass the window's end",
        }
    }
}

impl DisplayAs for WindowJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self.on.iter().map(|(l, r)| format!("({l}, {r})")).collect();
        write!(
            f,
            "WindowJoinExec: join_type={:?}, on=[{}]",
            self.join_type,
            on.join(", ")
        )?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter={filter}")?;
        }
        write!(
            f,
            ", emit=when both watermarks pass window_end, state={}",
            self.state_declaration()
        )
    }
}

impl ExecutionPlan for WindowJoinExec {
    fn name(&self) -> &str {
        "WindowJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        super::apply_on(&self.on, f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right] = children.as_slice() else {
            return internal_err!("WindowJoinExec has two children");
        };
        Ok(Arc::new(self.rebuilt(left, right, &self.backend)?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(data_only(
            self.schema(),
            self.execute_stream(partition, context)?,
        ))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

impl StreamingExec for WindowJoinExec {
    fn checkpointed(&self) -> bool {
        true
    }

    fn state(&self) -> Option<OperatorState> {
        Some(self.state_declaration())
    }

    fn with_state_backend(&self, backend: &StateBackend) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(Some(Arc::new(self.rebuilt(
            &self.left,
            &self.right,
            backend,
        )?)))
    }

    /// The window columns of the output: the left input's, as far as the output keeps them.
    fn window_columns(&self) -> HashMap<usize, WindowField> {
        if matches!(
            self.join_type,
            JoinType::Right | JoinType::Full | JoinType::RightSemi | JoinType::RightAnti
        ) {
            return HashMap::new(); // the left columns may be NULL or absent
        }
        let left = window_columns(&self.left);
        match &self.projection {
            None => left,
            Some(p) => p
                .iter()
                .enumerate()
                .filter_map(|(i, src)| Some((i, *left.get(src)?)))
                .collect(),
        }
    }

    fn time_attributes(&self) -> std::collections::HashSet<usize> {
        window_time_columns(&self.window_columns())
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let left = execute_input(&self.left, partition, Arc::clone(&context))?;
        let right = execute_input(&self.right, partition, Arc::clone(&context))?;
        let inputs = [self.left.schema(), self.right.schema()];
        let rocks_dir = self.backend.rocksdb("join", partition);
        let rows = match &rocks_dir {
            Some((root, label)) => WindowRows::rocks(root, label, inputs.clone())?,
            None => WindowRows::memory(),
        };
        let stream = WindowJoinStream {
            codec: SideCodec::new(inputs.clone()),
            spec: Arc::new(WindowJoinSpec {
                inputs,
                on: self.on.clone(),
                filter: self.filter.clone(),
                join_type: self.join_type,
                projection: self.projection.clone(),
                null_equality: self.null_equality,
                schema: self.schema(),
                context: Arc::clone(&context),
            }),
            window_end: self.window_end,
            rows,
            rocks_dir,
            partition,
            partitions: self.properties().partitioning.partition_count(),
        };
        Driver::open(
            self,
            &self.metrics,
            vec![left, right],
            partition,
            &context,
            stream,
        )
    }
}

/// One partition of a window join.
struct WindowJoinStream {
    codec: SideCodec,
    spec: Arc<WindowJoinSpec>,
    window_end: [usize; 2],
    /// Window end -> buffered rows of each side.
    rows: WindowRows,
    /// RocksDB: the databases' directory and name.
    rocks_dir: Option<(std::path::PathBuf, String)>,
    partition: usize,
    partitions: usize,
}

/// What joining one window needs (shared, so the join can run while the stream waits).
struct WindowJoinSpec {
    inputs: [SchemaRef; 2],
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: Option<JoinFilter>,
    join_type: JoinType,
    projection: Option<Vec<usize>>,
    null_equality: NullEquality,
    schema: SchemaRef,
    context: Arc<TaskContext>,
}

impl WindowJoinStream {
    /// Files the rows of one input batch under their windows; rows of windows that fired at
    /// `watermark` (the side's) are late: dropped and counted, unless `restoring` (restored
    /// rows belong to windows that have not fired). Returns the number of late rows.
    fn buffer(
        &mut self,
        side: usize,
        batch: StreamBatch,
        watermark: i64,
        restoring: bool,
    ) -> Result<usize> {
        let rows = batch.num_rows();
        let ends = to_millis(batch.batch.column(self.window_end[side]))?;
        let mut groups: Vec<(i64, Vec<u32>)> = Vec::new();
        let mut late = 0usize;
        for i in 0..rows {
            if ends.is_null(i) {
                continue; // no window: joins nothing
            }
            let end = ends.value(i);
            if !restoring && WindowSpec::fire_time(end) <= batch.row_watermark(i, watermark) {
                late += 1;
                continue;
            }
            match groups.iter_mut().find(|(e, _)| *e == end) {
                Some((_, indices)) => indices.push(i as u32),
                None => groups.push((end, vec![i as u32])),
            }
        }
        for (end, indices) in groups {
            let rows_of_window = if indices.len() == rows {
                batch.batch.clone()
            } else {
                take_record_batch(&batch.batch, &UInt32Array::from(indices))?
            };
            self.rows.push(end, side, rows_of_window)?;
        }
        Ok(late)
    }

    fn meta(&self, watermarks: &[i64]) -> WindowJoinMeta {
        let rocks = match &self.rows {
            WindowRows::Rocks(r) => Some(r),
            WindowRows::Memory(..) => None,
        };
        WindowJoinMeta {
            watermarks: watermarks.to_vec(),
            ends: rocks.map(|r| r.ends()),
            next: rocks.map(|r| r.next()),
            backend: rocks.map(|_| SavedBackend::Rocksdb),
        }
    }
}

/// What a partition of a window join records in a checkpoint besides its rows.
#[derive(Debug, Serialize, Deserialize)]
struct WindowJoinMeta {
    /// Each input's watermark.
    watermarks: Vec<i64>,
    /// RocksDB: the ends of the windows in the database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ends: Option<Vec<i64>>,
    /// RocksDB: the next entry number to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
    /// RocksDB: says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    backend: Option<SavedBackend>,
}

impl Operator for WindowJoinStream {
    type Meta = WindowJoinMeta;

    /// Restores the buffered windows and watermarks of the checkpoint the job resumes from.
    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        let metas: Vec<WindowJoinMeta> = restored.metas("window join")?;
        let watermarks = min_input_watermarks(metas.iter().map(|m| m.watermarks.as_slice()), 2);
        let output = watermarks[0].min(watermarks[1]);
        let rocksdb = matches!(self.rows, WindowRows::Rocks(_));
        match restored.databases(rocksdb)? {
            RestoredDatabases::Own(saved, dir) => {
                let (WindowRows::Rocks(rows), Some((root, label))) =
                    (&mut self.rows, &self.rocks_dir)
                else {
                    return internal_err!("RocksDB window join state without its directory");
                };
                let own: WindowJoinMeta = saved.meta("window join")?;
                let (Some(ends), Some(next)) = (own.ends, own.next) else {
                    return internal_err!("a RocksDB window join checkpoint without its windows");
                };
                rows.adopt(root, label, dir, ends, next)?;
                checkpoint.adopted(saved);
            }
            // Another parallelism: keep the rows whose join keys hash to this task.
            RestoredDatabases::Others(dirs) => {
                let (on, partition, partitions) = (&self.spec.on, self.partition, self.partitions);
                let rows = &mut self.rows;
                for dir in dirs {
                    for_each_stored(dir, |end, side, batch| {
                        let keys = join_keys(on, side, &batch)?;
                        let mine = rows_of_partition(&batch, &keys, partition, partitions)?;
                        if mine.num_rows() > 0 {
                            rows.push(end, side, mine)?;
                        }
                        Ok(())
                    })?;
                }
            }
            RestoredDatabases::None => {}
        }
        let codec = self.codec.clone();
        let on = self.spec.on.clone();
        let batches = checkpoint.batches_by(restored, |batch| {
            let side = codec.side_of(batch)?;
            let (rows, _) = codec.decode(batch, side)?;
            join_keys(&on, side, &rows)
        })?;
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let side = self.codec.side_of(&batch)?;
            let (rows, _) = self.codec.decode(&batch, side)?;
            self.buffer(side, StreamBatch::new(rows), NO_WATERMARK, true)?;
        }
        Ok(RestoredWatermarks {
            inputs: watermarks,
            output,
        })
    }

    fn on_data(&mut self, side: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        let watermark = ctx.watermarks().inputs()[side];
        let late = self.buffer(side, batch, watermark, false)?;
        ctx.late(late);
        Ok(())
    }

    /// Joins and forgets every window both watermarks have passed.
    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        let watermark = ctx.watermark();
        if watermark <= ctx.watermarks().output() {
            return Ok(watermark);
        }
        while let Some(end) = self.rows.first_end() {
            if WindowSpec::fire_time(end) > watermark {
                break;
            }
            let [left, right] = self.rows.take(end)?;
            let spec = Arc::clone(&self.spec);
            for batch in spec.join_window(left, right).await? {
                ctx.emit(batch);
            }
        }
        Ok(watermark)
    }

    /// Idle only when nothing is held: rows of open windows still to come out must not find a
    /// downstream watermark that moved on without them.
    fn may_idle(&self) -> bool {
        self.rows.is_empty()
    }

    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        if let WindowRows::Rocks(r) = &mut self.rows {
            // Before the metadata: the flush moves the sequence number on.
            r.flush()?;
        }
        let meta = self.meta(watermarks.inputs());
        let windows = match &self.rows {
            WindowRows::Rocks(r) => return checkpoint.snapshot_db(epoch, &meta, r.db()),
            WindowRows::Memory(windows, _) => windows,
        };
        let mut batches = Vec::new();
        for sides in windows.values() {
            for (side, rows) in sides.iter().enumerate() {
                for batch in rows {
                    let matched = BooleanArray::from(vec![false; batch.num_rows()]);
                    batches.push(self.codec.encode(side, batch, &matched)?);
                }
            }
        }
        checkpoint.snapshot(epoch, &meta, batches)
    }

    /// Every input ended: their watermarks are the end of time, so every window has fired.
    fn end(&mut self, watermarks: &Watermarks<'_>) -> WindowJoinMeta {
        WindowJoinMeta {
            watermarks: watermarks.inputs().to_vec(),
            ends: None,
            next: None,
            backend: None,
        }
    }

    fn state_size(&self) -> StateSize {
        StateSize {
            rows: 0,
            bytes: self.rows.memory_size(),
        }
    }
}

impl WindowJoinSpec {
    /// The join of one window's rows, as a batch join would compute it.
    async fn join_window(
        &self,
        left: Vec<RecordBatch>,
        right: Vec<RecordBatch>,
    ) -> Result<Vec<RecordBatch>> {
        let needs = |side: usize| match self.join_type {
            JoinType::Inner | JoinType::LeftSemi | JoinType::RightSemi => true,
            JoinType::Left | JoinType::LeftAnti => side == 0,
            JoinType::Right | JoinType::RightAnti => side == 1,
            _ => false,
        };
        if (needs(0) && left.is_empty()) || (needs(1) && right.is_empty()) {
            return Ok(Vec::new());
        }
        let [ls, rs] = &self.inputs;
        let left = MemorySourceConfig::try_new_exec(&[left], Arc::clone(ls), None)?;
        let right = MemorySourceConfig::try_new_exec(&[right], Arc::clone(rs), None)?;
        let join = HashJoinExec::try_new(
            left,
            right,
            self.on.clone(),
            self.filter.clone(),
            &self.join_type,
            self.projection.clone(),
            PartitionMode::CollectLeft,
            self.null_equality,
            false,
        )?;
        let batches: Vec<RecordBatch> = join
            .execute(0, Arc::clone(&self.context))?
            .try_collect()
            .await?;
        batches
            .into_iter()
            .filter(|b| b.num_rows() > 0)
            .map(|b| {
                Ok(RecordBatch::try_new_with_options(
                    Arc::clone(&self.schema),
                    b.columns().to_vec(),
                    &RecordBatchOptions::new().with_row_count(Some(b.num_rows())),
                )?)
            })
            .collect()
    }
}

/// The join key values of `side` for `rows` (as the exchange hashes them).
pub(super) fn join_keys(
    on: &[(PhysicalExprRef, PhysicalExprRef)],
    side: usize,
    rows: &RecordBatch,
) -> Result<Vec<ArrayRef>> {
    on.iter()
        .map(|(l, r)| {
            let e = if side == 0 { l } else { r };
            e.evaluate(rows)?.into_array(rows.num_rows())
        })
        .collect()
}

/// [`join_keys`] cast to `types` (the left's), so that equal keys of both sides encode alike.
pub(super) fn typed_join_keys(
    on: &[(PhysicalExprRef, PhysicalExprRef)],
    side: usize,
    rows: &RecordBatch,
    types: &[datafusion::arrow::datatypes::DataType],
) -> Result<Vec<ArrayRef>> {
    join_keys(on, side, rows)?
        .into_iter()
        .zip(types)
        .map(|(k, t)| {
            if k.data_type() == t {
                Ok(k)
            } else {
                Ok(datafusion::arrow::compute::cast(&k, t)?)
            }
        })
        .collect()
}
