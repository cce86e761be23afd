//! `BroadcastJoinExec`: a stream joined with a bounded (dimension) table.
//!
//! The bounded side is read once, hashed on its join keys and shared by every parallel task of
//! the stream side through one `OnceCell` in the plan node: one copy per process, and no
//! shuffle of the stream. Each stream batch is probed as it comes: one integer key is looked up
//! as is, other keys encoded with arrow's row format; rows sharing a key are chained through
//! one array (no allocation per key); NULL keys never match. Join types: INNER, and the
//! outer, semi and anti joins that keep the *stream* side (a LEFT JOIN with the stream on the
//! left, `WHERE EXISTS` / `IN (SELECT ...)` against the table). Extra non-equi conditions are
//! evaluated on the candidate pairs. Watermarks, idleness and barriers pass through unchanged;
//! per-row watermarks follow their rows.
//!
//! State: none of its own. The table is reloaded from its source when a job restarts, so a
//! checkpoint records nothing for it. A table larger than `dimension.max-rows` or
//! `dimension.max-bytes` is refused while loading, before it can exhaust memory.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, ArrowPrimitiveType, AsArray, BooleanArray, Int64Array, PrimitiveArray,
    UInt32Array,
};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take};
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{HashMap, JoinType, Result, exec_err, internal_err};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use tokio::sync::OnceCell;

use super::joins::{Gather, filter_pairs};
use super::message::{MessageStream, StreamBatch, StreamMessage};
use super::streaming::{StreamingExec, data_only, execute_input};
use crate::config::SabotConfig;

/// Which stream rows come out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastJoinKind {
    /// Pairs of matching rows.
    Inner,
    /// Pairs, and unmatched stream rows with NULLs for the table's columns.
    StreamOuter,
    /// Stream rows with at least one match (stream columns only).
    Semi,
    /// Stream rows without a match (stream columns only).
    Anti,
}

/// No further row with the same key.
const END: u32 = u32::MAX;

/// Join key -> first table row with that key; the others follow through `next`.
#[derive(Debug)]
enum KeyIndex {
    /// One integer key (the common case): no encoding, no allocation per key.
    Integer(HashMap<i64, u32>),
    /// Any other keys, encoded with arrow's row format.
    Rows(HashMap<Box<[u8]>, u32>, RowConverter),
}

/// The hashed dimension table.
#[derive(Debug)]
struct BuildTable {
    rows: RecordBatch,
    index: KeyIndex,
    /// Next table row with the same key as row `i`, or `END`.
    next: Vec<u32>,
}

/// One integer key column, as Int64 (a type the cast cannot lose values of).
fn integer_key(keys: &[ArrayRef]) -> Result<Option<Int64Array>> {
    let [key] = keys else {
        return Ok(None);
    };
    if !matches!(
        key.data_type(),
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
    ) {
        return Ok(None);
    }
    let cast = datafusion::arrow::compute::cast(key, &DataType::Int64)?;
    Ok(cast.as_any().downcast_ref::<Int64Array>().cloned())
}

impl BuildTable {
    /// Calls `found(stream_row, table_row)` for every match of the stream's `keys`.
    fn probe(&self, keys: &[ArrayRef], mut found: impl FnMut(u32, u32)) -> Result<()> {
        let mut chain = |i: usize, first: Option<&u32>| {
            let mut row = first.copied().unwrap_or(END);
            while row != END {
                found(i as u32, row);
                row = self.next[row as usize];
            }
        };
        match &self.index {
            KeyIndex::Integer(map) => {
                let Some(key) = integer_key(keys)? else {
                    return internal_err!("broadcast join: integer key expected");
                };
                for (i, v) in key.iter().enumerate() {
                    if let Some(v) = v {
                        chain(i, map.get(&v));
                    }
                }
            }
            KeyIndex::Rows(map, converter) => {
                let encoded = converter.convert_columns(keys)?;
                for i in 0..encoded.num_rows() {
                    if keys.iter().any(|k| k.is_null(i)) {
                        continue; // NULL never matches
                    }
                    chain(i, map.get(encoded.row(i).as_ref()));
                }
            }
        }
        Ok(())
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct BroadcastJoinExec {
    stream: Arc<dyn ExecutionPlan>,
    table: Arc<dyn ExecutionPlan>,
    /// True if the stream's columns come first in the join's output.
    stream_is_left: bool,
    /// (stream key, table key) pairs.
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    /// Extra condition over the join's intermediate schema (sides as in the original join).
    filter: Option<JoinFilter>,
    kind: BroadcastJoinKind,
    /// The original join type, for EXPLAIN.
    join_type: JoinType,
    projection: Option<Vec<usize>>,
    build: Arc<OnceCell<Arc<BuildTable>>>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl BroadcastJoinExec {
    /// Builds the join; `schema` is the original join's output schema (after its projection).
    #[allow(clippy::too_many_arguments)]
    pub fn try_new(
        stream: Arc<dyn ExecutionPlan>,
        table: Arc<dyn ExecutionPlan>,
        stream_is_left: bool,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        kind: BroadcastJoinKind,
        join_type: JoinType,
        projection: Option<Vec<usize>>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let expected = match kind {
            BroadcastJoinKind::Semi | BroadcastJoinKind::Anti => stream.schema().fields().len(),
            _ => stream.schema().fields().len() + table.schema().fields().len(),
        };
        let width = projection.as_ref().map_or(expected, Vec::len);
        if width != schema.fields().len() {
            return internal_err!(
                "broadcast join output has {width} columns, the join {}",
                schema.fields().len()
            );
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(Arc::clone(&schema)),
            Partitioning::UnknownPartitioning(stream.output_partitioning().partition_count()),
            EmissionType::Incremental,
            if stream.boundedness().is_unbounded() {
                Boundedness::Unbounded {
                    requires_infinite_memory: false,
                }
            } else {
                Boundedness::Bounded
            },
        );
        Ok(Self {
            stream,
            table,
            stream_is_left,
            on,
            filter,
            kind,
            join_type,
            projection,
            build: Arc::new(OnceCell::new()),
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }
}

impl BroadcastJoinExec {
    /// Output positions of the stream's columns `columns` (none for a semi/anti join's table
    /// side, which has no output columns).
    pub fn stream_output_columns(
        &self,
        columns: std::collections::HashSet<usize>,
    ) -> std::collections::HashSet<usize> {
        let offset = match self.kind {
            BroadcastJoinKind::Semi | BroadcastJoinKind::Anti => 0,
            _ if self.stream_is_left => 0,
            _ => self.table.schema().fields().len(),
        };
        let shifted: std::collections::HashSet<usize> =
            columns.into_iter().map(|c| c + offset).collect();
        match &self.projection {
            None => shifted,
            Some(p) => p
                .iter()
                .enumerate()
                .filter(|(_, src)| shifted.contains(src))
                .map(|(i, _)| i)
                .collect(),
        }
    }
}

impl DisplayAs for BroadcastJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self.on.iter().map(|(s, t)| format!("({s}, {t})")).collect();
        write!(
            f,
            "BroadcastJoinExec: join_type={:?}, stream={}, table={} (loaded once, shared by \
             all partitions), on=[{}]",
            self.join_type,
            if self.stream_is_left { "left" } else { "right" },
            if self.stream_is_left { "right" } else { "left" },
            on.join(", ")
        )?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter={filter}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for BroadcastJoinExec {
    fn name(&self) -> &str {
        "BroadcastJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.stream, &self.table]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for (s, t) in &self.on {
            if f(s)? == TreeNodeRecursion::Stop || f(t)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [stream, table] = children.as_slice() else {
            return internal_err!("BroadcastJoinExec has two children");
        };
        Ok(Arc::new(Self::try_new(
            Arc::clone(stream),
            Arc::clone(table),
            self.stream_is_left,
            self.on.clone(),
            self.filter.clone(),
            self.kind,
            self.join_type,
            self.projection.clone(),
            self.schema(),
        )?))
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

/// Reads, checks and hashes the table (once per plan, whichever task gets there first).
async fn load_table(
    table: Arc<dyn ExecutionPlan>,
    table_keys: Vec<PhysicalExprRef>,
    context: Arc<TaskContext>,
) -> Result<Arc<BuildTable>> {
    let defaults = SabotConfig::default();
    let config = context.session_config().get_extension::<SabotConfig>();
    let config = config.as_deref().unwrap_or(&defaults);
    let (max_rows, max_bytes) = (config.dimension_max_rows, config.dimension_max_bytes);
    let schema = table.schema();
    let mut batches = Vec::new();
    let (mut rows, mut bytes) = (0usize, 0usize);
    for partition in 0..table.output_partitioning().partition_count() {
        let mut stream = data_only(
            Arc::clone(&schema),
            execute_input(&table, partition, Arc::clone(&context))?,
        );
        while let Some(batch) = stream.next().await {
            let batch = batch?;
            rows += batch.num_rows();
            bytes += batch.get_array_memory_size();
            if rows > max_rows || bytes > max_bytes {
                return exec_err!(
                    "the dimension table of a broadcast join is larger than the limit ({rows} \
                     rows and {bytes} bytes read so far; limits: 'dimension.max-rows' = \
                     {max_rows}, 'dimension.max-bytes' = {max_bytes}). Filter the table in the \
                     query, or raise the limits with SET 'dimension.max-rows' / \
                     'dimension.max-bytes'"
                );
            }
            batches.push(batch);
        }
    }
    let rows = concat_batches(&schema, &batches)?;
    drop(batches);
    let keys = table_keys
        .iter()
        .map(|k| {
            k.evaluate(&rows)
                .and_then(|v| v.into_array(rows.num_rows()))
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let n = rows.num_rows();
    let mut next = vec![END; n];
    // Rows are chained newest first; NULL keys are left out (they never match).
    let index = match integer_key(&keys)? {
        Some(key) => {
            let mut map: HashMap<i64, u32> = HashMap::default();
            map.reserve(n);
            for (i, v) in key.iter().enumerate() {
                if let Some(v) = v {
                    let head = map.entry(v).or_insert(END);
                    next[i] = *head;
                    *head = i as u32;
                }
            }
            KeyIndex::Integer(map)
        }
        None => {
            let converter = RowConverter::new(
                keys.iter()
                    .map(|k| SortField::new(k.data_type().clone()))
                    .collect(),
            )?;
            let encoded = converter.convert_columns(&keys)?;
            let mut map: HashMap<Box<[u8]>, u32> = HashMap::default();
            for (i, link) in next.iter_mut().enumerate() {
                if keys.iter().any(|k| k.is_null(i)) {
                    continue;
                }
                let head = map.entry(Box::from(encoded.row(i).as_ref())).or_insert(END);
                *link = *head;
                *head = i as u32;
            }
            KeyIndex::Rows(map, converter)
        }
    };
    Ok(Arc::new(BuildTable { rows, index, next }))
}

/// What a probe task needs, cloned out of the plan node.
struct Probe {
    stream_keys: Vec<PhysicalExprRef>,
    filter: Option<JoinFilter>,
    kind: BroadcastJoinKind,
    stream_is_left: bool,
    projection: Option<Vec<usize>>,
    schema: SchemaRef,
    baseline: BaselineMetrics,
    unmatched: Count,
}

impl StreamingExec for BroadcastJoinExec {
    /// The table is read whole at every start: it is not checkpointed (its source restoring a
    /// finished position would load an empty table).
    fn checkpointed_inputs(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.stream]
    }

    fn time_attributes(&self) -> std::collections::HashSet<usize> {
        self.stream_output_columns(super::streaming::time_attributes(&self.stream))
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let input = execute_input(&self.stream, partition, Arc::clone(&context))?;
        let probe = Probe {
            stream_keys: self.on.iter().map(|(s, _)| Arc::clone(s)).collect(),
            filter: self.filter.clone(),
            kind: self.kind,
            stream_is_left: self.stream_is_left,
            projection: self.projection.clone(),
            schema: self.schema(),
            baseline: BaselineMetrics::new(&self.metrics, partition),
            unmatched: MetricBuilder::new(&self.metrics).counter("unmatched_rows", partition),
        };
        let cell = Arc::clone(&self.build);
        let load = load_table(
            Arc::clone(&self.table),
            self.on.iter().map(|(_, t)| Arc::clone(t)).collect(),
            context,
        );
        let stream = futures::stream::once(async move {
            let table = cell.get_or_try_init(|| load).await.map(Arc::clone);
            (table, input, probe)
        })
        .flat_map(|(table, input, probe)| -> MessageStream {
            match table {
                Err(e) => Box::pin(futures::stream::once(async move { Err(e) })),
                Ok(table) => Box::pin(input.map(move |msg| match msg {
                    Ok(StreamMessage::Data(batch)) => {
                        probe.join(&table, batch).map(StreamMessage::Data)
                    }
                    other => other,
                })),
            }
        });
        Ok(Box::pin(stream))
    }
}

impl Probe {
    /// Joins one stream batch with the table.
    fn join(&self, table: &BuildTable, input: StreamBatch) -> Result<StreamBatch> {
        let _timer = self.baseline.elapsed_compute().timer();
        let batch = &input.batch;
        let n = batch.num_rows();
        let keys = self
            .stream_keys
            .iter()
            .map(|k| k.evaluate(batch).and_then(|v| v.into_array(n)))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let mut stream_rows: Vec<u32> = Vec::with_capacity(n);
        let mut table_rows: Vec<u32> = Vec::with_capacity(n);
        table.probe(&keys, |s, t| {
            stream_rows.push(s);
            table_rows.push(t);
        })?;
        let mut stream_idx = UInt32Array::from(stream_rows);
        let mut table_idx = UInt32Array::from(table_rows);
        if let Some(filter) = &self.filter {
            let mask = self.evaluate_filter(filter, batch, &table.rows, &stream_idx, &table_idx)?;
            stream_idx = filter_primitive(&stream_idx, &mask)?;
            table_idx = filter_primitive(&table_idx, &mask)?;
        }
        // Which stream rows found a partner.
        let mut matched = vec![false; n];
        for &i in stream_idx.values() {
            matched[i as usize] = true;
        }
        let unmatched = matched.iter().filter(|m| !**m).count();
        if unmatched > 0 {
            self.unmatched.add(unmatched);
        }
        let out = match self.kind {
            BroadcastJoinKind::Semi | BroadcastJoinKind::Anti => {
                let keep = self.kind == BroadcastJoinKind::Semi;
                let mask =
                    BooleanArray::from(matched.iter().map(|m| *m == keep).collect::<Vec<bool>>());
                let rows = filter_record_batch(batch, &mask)?;
                let watermarks = input
                    .row_watermarks
                    .as_ref()
                    .map(|w| filter_primitive(w, &mask))
                    .transpose()?;
                self.finish(rows, watermarks)?
            }
            BroadcastJoinKind::Inner | BroadcastJoinKind::StreamOuter => {
                // In stream order: each stream row's partners, or (outer) one row with NULL
                // table columns, so per-row watermarks stay in order.
                let outer = self.kind == BroadcastJoinKind::StreamOuter;
                let capacity = stream_idx.len() + if outer { unmatched } else { 0 };
                let mut s: Vec<u32> = Vec::with_capacity(capacity);
                let mut t: Vec<Option<u32>> = Vec::with_capacity(capacity);
                let pairs = stream_idx.values();
                let partners = table_idx.values();
                let mut p = 0;
                for (i, found) in matched.iter().enumerate() {
                    while p < pairs.len() && pairs[p] as usize == i {
                        s.push(i as u32);
                        t.push(Some(partners[p]));
                        p += 1;
                    }
                    if outer && !found {
                        s.push(i as u32);
                        t.push(None);
                    }
                }
                let s = UInt32Array::from(s);
                let t = UInt32Array::from(t);
                let stream_cols = take_columns(batch, &s)?;
                let table_cols = take_columns(&table.rows, &t)?;
                let columns: Vec<ArrayRef> = if self.stream_is_left {
                    stream_cols.into_iter().chain(table_cols).collect()
                } else {
                    table_cols.into_iter().chain(stream_cols).collect()
                };
                let (first, second) = if self.stream_is_left {
                    (batch.schema(), table.rows.schema())
                } else {
                    (table.rows.schema(), batch.schema())
                };
                let fields: Vec<_> = first
                    .fields()
                    .iter()
                    .chain(second.fields().iter())
                    .map(|f| f.as_ref().clone().with_nullable(true))
                    .collect();
                let rows = RecordBatch::try_new_with_options(
                    Arc::new(Schema::new(fields)),
                    columns,
                    &RecordBatchOptions::new().with_row_count(Some(s.len())),
                )?;
                let watermarks = input
                    .row_watermarks
                    .as_ref()
                    .map(|w| -> Result<Int64Array> {
                        Ok(take(w, &s, None)?.as_primitive::<Int64Type>().clone())
                    })
                    .transpose()?;
                self.finish(rows, watermarks)?
            }
        };
        self.baseline.record_output(out.num_rows());
        Ok(out)
    }

    /// Applies the projection and the output schema.
    fn finish(&self, rows: RecordBatch, watermarks: Option<Int64Array>) -> Result<StreamBatch> {
        let rows = match &self.projection {
            Some(p) => rows.project(p)?,
            None => rows,
        };
        let rows = RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            rows.columns().to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(rows.num_rows())),
        )?;
        Ok(StreamBatch::with_row_watermarks(rows, watermarks))
    }

    /// The join filter over candidate pairs (NULL counts as false).
    fn evaluate_filter(
        &self,
        filter: &JoinFilter,
        stream: &RecordBatch,
        table: &RecordBatch,
        stream_idx: &UInt32Array,
        table_idx: &UInt32Array,
    ) -> Result<BooleanArray> {
        let s = Gather::Batch(stream, stream_idx);
        let t = Gather::Batch(table, table_idx);
        if self.stream_is_left {
            filter_pairs(filter, &[stream.schema(), table.schema()], &s, &t)
        } else {
            filter_pairs(filter, &[table.schema(), stream.schema()], &t, &s)
        }
    }
}

fn take_columns(batch: &RecordBatch, indices: &UInt32Array) -> Result<Vec<ArrayRef>> {
    batch
        .columns()
        .iter()
        .map(|c| Ok(take(c, indices, None)?))
        .collect()
}

/// The values of `array` where `mask` is true.
fn filter_primitive<T: ArrowPrimitiveType>(
    array: &PrimitiveArray<T>,
    mask: &BooleanArray,
) -> Result<PrimitiveArray<T>> {
    Ok(datafusion::arrow::compute::filter(array, mask)?
        .as_primitive::<T>()
        .clone())
}
