//! SESSION windows: per-key activity sessions `[first event, last event + gap)`.
//!
//! Sessions merge when a row bridges them, so partial aggregates cannot be kept per slice.
//! Instead the operator keeps the *rows* of open sessions (only the evaluated group keys and
//! aggregate arguments, not whole input rows) and aggregates a session with DataFusion's
//! accumulators when it fires. A row opens `[t, t + gap)` and merges with every open session of
//! its partition key that overlaps or touches it (Flink's rule). Sessions that would already have
//! fired under the row's own watermark do not take it; if the row's resulting session has
//! fired too, the row is late and dropped.
//!
//! State: the buffered rows of open sessions, freed when the session fires (a batch's buffer is
//! released when its last open row is), and the partition keys with open sessions. Checkpoints
//! store the buffered rows of open sessions ([`checkpoint`]). With `state.backend` = `rocksdb`
//! the rows live in RocksDB instead ([`rocks`]).

mod checkpoint;
mod rocks;

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, TimestampMillisecondArray, UInt32Array,
};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, internal_err};
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;

use super::definition::OpenPartition;
use crate::physical::aggregation::{AggregateInputs, AggregateSet, GroupedAggregation, key_schema};
use crate::physical::event_time::to_millis;
use crate::physical::message::{MessageStream, StreamBatch};
use crate::physical::operator::checkpoint::{OperatorCheckpoint, Restored};
use crate::physical::operator::{
    Context, Driver, Operator, RestoredWatermarks, StateSize, Watermarks,
};
use crate::physical::window_spec::GroupColumn;
use crate::physical::window_spec::WindowSpec;
use checkpoint::SessionMeta;
use rocks::{CHUNK_ROWS, RocksRows};

/// The `rows` entry of a session opened by row `i` of buffer `buffer`: the row itself in
/// memory, or a new segment (from `next_segment`) with one row in RocksDB.
fn first_rows(next_segment: &mut Option<u64>, buffer: u64, i: usize) -> (u64, usize) {
    match next_segment {
        Some(segment) => {
            *segment += 1;
            (*segment - 1, 1)
        }
        None => (buffer, i),
    }
}

/// Evaluated keys and aggregate inputs of one input batch, kept while sessions use its rows.
struct Buffered {
    /// Partition key values (for checkpoints).
    partition: Vec<ArrayRef>,
    keys: Vec<ArrayRef>,
    inputs: AggregateInputs,
    live: usize,
}

/// Buffered rows gathered into columns (see [`SessionAggregateStream::gather`]).
struct Gathered {
    partition: Vec<ArrayRef>,
    keys: Vec<ArrayRef>,
    inputs: AggregateInputs,
}

#[derive(Debug)]
struct Session {
    start: i64,
    end: i64,
    /// In memory: (buffer id, row) of every row in the session. In RocksDB: (segment, number
    /// of rows stored under it); new rows go to the first segment.
    rows: Vec<(u64, usize)>,
}

/// One partition of a SESSION aggregation.
pub(super) struct SessionAggregateStream {
    gap: i64,
    time_expr: Arc<dyn PhysicalExpr>,
    partition_exprs: Vec<Arc<dyn PhysicalExpr>>,
    partition_ids: Option<Box<dyn GroupValues>>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    aggregates: Arc<AggregateSet>,
    group_columns: Vec<GroupColumn>,
    schema: SchemaRef,
    /// Key schema of the firing aggregation: session ordinal, then the group keys.
    fire_key_schema: SchemaRef,
    sessions: Vec<Vec<Session>>,
    buffers: std::collections::HashMap<u64, Buffered>,
    next_buffer: u64,
    /// No open session ends before this: watermarks below it fire nothing.
    min_end: i64,
    scratch: Vec<usize>,
    /// `state.backend` = `rocksdb`: where the rows are (`buffers` stays empty).
    rocks: Option<Box<RocksRows>>,
    /// With `rocks`: the database's directory and name.
    rocks_dir: Option<(std::path::PathBuf, String)>,
    partition: usize,
    partitions: usize,
}

impl SessionAggregateStream {
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
        let field_of = |e: &Arc<dyn PhysicalExpr>, name: String| -> Result<Field> {
            Ok(Field::new(
                name,
                e.data_type(&input_schema)?,
                e.nullable(&input_schema)?,
            ))
        };
        let partition_fields = def
            .partition_keys
            .iter()
            .enumerate()
            .map(|(i, e)| field_of(e, format!("p{i}")))
            .collect::<Result<Vec<_>>>()?;
        let partition_ids = match key_schema(partition_fields.clone()) {
            Some(schema) => Some(new_group_values(schema, &GroupOrdering::None)?),
            None => None,
        };
        let mut fire_fields = vec![Field::new("__session", DataType::UInt32, false)];
        for (e, name) in &def.keys {
            fire_fields.push(field_of(e, name.clone())?);
        }
        let rocks_dir = backend.rocksdb("session", partition);
        let rocks = match &rocks_dir {
            Some((root, label)) => Some(Box::new(RocksRows::try_new(
                root,
                label,
                partition_fields
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect(),
                fire_fields[1..]
                    .iter()
                    .map(|f| f.data_type().clone())
                    .collect(),
                def.aggregates.argument_types(&input_schema)?,
                def.aggregates.filters.iter().map(Option::is_some).collect(),
            )?)),
            None => None,
        };
        let Some(fire_key_schema) = key_schema(fire_fields) else {
            return internal_err!("session key schema is never empty");
        };
        let stream = Self {
            gap: def.spec.size(),
            time_expr: Arc::clone(&def.time_expr),
            partition_exprs: def.partition_keys.clone(),
            partition_ids,
            keys: def.keys.iter().map(|(e, _)| Arc::clone(e)).collect(),
            aggregates: Arc::clone(&def.aggregates),
            group_columns: def.group_columns.clone(),
            schema: exec.schema(),
            fire_key_schema,
            sessions: Vec::new(),
            buffers: std::collections::HashMap::new(),
            next_buffer: 0,
            min_end: i64::MAX,
            scratch: Vec::new(),
            rocks,
            rocks_dir,
            partition,
            partitions: exec.properties().partitioning.partition_count(),
        };
        Driver::open(exec, metrics, vec![input], partition, context, stream)
    }

    /// Memory the buffered rows of open sessions hold, in bytes (under RocksDB they are on
    /// disk).
    fn memory_size(&self) -> usize {
        self.buffers
            .values()
            .map(|b| {
                b.partition
                    .iter()
                    .chain(&b.keys)
                    .map(|a| a.get_array_memory_size())
                    .sum::<usize>()
                    + b.inputs.memory_size()
            })
            .sum()
    }

    fn process(&mut self, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        let current = ctx.watermark();
        let rows = batch.num_rows();
        let times = to_millis(&self.time_expr.evaluate(&batch.batch)?.into_array(rows)?)?;
        let evaluate = |exprs: &[Arc<dyn PhysicalExpr>]| {
            exprs
                .iter()
                .map(|e| e.evaluate(&batch.batch).and_then(|v| v.into_array(rows)))
                .collect::<Result<Vec<ArrayRef>>>()
        };
        let partition_values = evaluate(&self.partition_exprs)?;
        match self.partition_ids.as_mut() {
            Some(ids) => ids.intern(&partition_values, &mut self.scratch)?,
            None => {
                self.scratch.clear();
                self.scratch.resize(rows, 0);
            }
        }
        let buffer_id = self.next_buffer;
        self.next_buffer += 1;
        let mut live = 0;
        let (mut late, mut null_time) = (0usize, 0usize);
        // RocksDB: (row, segment) of the rows to store, and the segments handed out.
        let mut placed: Vec<(usize, u64)> = Vec::new();
        let mut next_segment = self.rocks.as_ref().map(|r| r.counters().0);
        for i in 0..rows {
            if times.is_null(i) {
                null_time += 1;
                continue;
            }
            let t = times.value(i);
            let watermark = batch.row_watermark(i, current);
            let pk = self.scratch[i];
            if pk >= self.sessions.len() {
                self.sessions.resize_with(pk + 1, Vec::new);
            }
            let list = &mut self.sessions[pk];
            let (mut start, mut end) = (t, t.saturating_add(self.gap));
            // Open sessions this row touches (that had not fired before the row arrived); the
            // list is sorted by start, so a bridging row chains them in one pass.
            let open = |s: &Session| WindowSpec::fire_time(s.end) > watermark;
            let mut first = None;
            let mut touching = 0;
            for (j, s) in list.iter().enumerate() {
                if s.start <= end && t <= s.end && open(s) {
                    start = start.min(s.start);
                    end = end.max(s.end);
                    first.get_or_insert(j);
                    touching += 1;
                }
            }
            if WindowSpec::fire_time(end) <= watermark {
                late += 1;
                continue;
            }
            let holder = match (first, touching) {
                // The common case: the row extends one session.
                (Some(j), 1) => {
                    let s = &mut list[j];
                    s.start = start;
                    s.end = end;
                    if next_segment.is_some() {
                        s.rows[0].1 += 1;
                    } else {
                        s.rows.push((buffer_id, i));
                    }
                    j
                }
                (None, _) => {
                    let at = list.partition_point(|s| s.start < start);
                    let rows = vec![first_rows(&mut next_segment, buffer_id, i)];
                    list.insert(at, Session { start, end, rows });
                    at
                }
                // The row bridges several sessions: merge them.
                (Some(_), _) => {
                    let mut rows = vec![first_rows(&mut next_segment, buffer_id, i)];
                    let mut j = 0;
                    while j < list.len() {
                        let s = &list[j];
                        if s.start <= end && s.end >= start && open(s) {
                            rows.extend(list.remove(j).rows);
                        } else {
                            j += 1;
                        }
                    }
                    let at = list.partition_point(|s| s.start < start);
                    list.insert(at, Session { start, end, rows });
                    at
                }
            };
            if next_segment.is_some() {
                // The session holding the row stores it in its first segment.
                placed.push((i, list[holder].rows[0].0));
            }
            self.min_end = self.min_end.min(end);
            live += 1;
        }
        ctx.late(late);
        ctx.null_time(null_time);
        if let Some(rocks) = self.rocks.as_mut() {
            if let Some(segment) = next_segment {
                rocks.set_next_segment(segment);
            }
            if !placed.is_empty() {
                let keys = evaluate(&self.keys)?;
                let inputs = self.aggregates.evaluate(&batch.batch)?;
                rocks.write(&keys, &inputs, &placed)?;
            }
        } else if live > 0 {
            let buffered = Buffered {
                partition: partition_values,
                keys: evaluate(&self.keys)?,
                inputs: self.aggregates.evaluate(&batch.batch)?,
                live,
            };
            self.buffers.insert(buffer_id, buffered);
        }
        Ok(())
    }

    fn fire(&mut self, watermark: i64, ctx: &mut Context<'_>) -> Result<()> {
        if WindowSpec::fire_time(self.min_end) <= watermark {
            let mut fired = Vec::new();
            let mut min_end = i64::MAX;
            let mut active = 0;
            for list in self.sessions.iter_mut() {
                let mut j = 0;
                while j < list.len() {
                    if WindowSpec::fire_time(list[j].end) <= watermark {
                        fired.push(list.remove(j));
                    } else {
                        min_end = min_end.min(list[j].end);
                        j += 1;
                    }
                }
                if list.is_empty() {
                    // Give the memory back: most keys never come back.
                    *list = Vec::new();
                } else {
                    active += 1;
                }
            }
            self.min_end = min_end;
            self.forget_idle_keys(active)?;
            if !fired.is_empty() {
                let batches = match &self.rocks {
                    Some(rocks) => self.aggregate_stored(rocks, &fired)?,
                    None => {
                        let batch = self.aggregate(&fired)?;
                        self.release(&fired);
                        vec![batch]
                    }
                };
                for batch in batches {
                    ctx.emit(batch);
                }
            }
        }
        Ok(())
    }

    /// Drops the interned partition keys without open sessions once they outnumber the active
    /// ones, so that state follows the keys in use, not every key ever seen (Nexmark's bidders
    /// come and go forever). Amortized: a compaction happens after at least as many new keys as
    /// it keeps.
    fn forget_idle_keys(&mut self, active: usize) -> Result<()> {
        let Some(ids) = self.partition_ids.as_mut() else {
            return Ok(());
        };
        let interned = ids.len();
        if interned < 4096 || interned < 2 * active {
            return Ok(());
        }
        let keys = ids.emit(EmitTo::All)?;
        let keep: Vec<u32> = self
            .sessions
            .iter()
            .enumerate()
            .filter(|(_, list)| !list.is_empty())
            .map(|(i, _)| i as u32)
            .collect();
        let indices = UInt32Array::from(keep.clone());
        let kept = keys
            .iter()
            .map(|k| Ok(take(k, &indices, None)?))
            .collect::<Result<Vec<ArrayRef>>>()?;
        let mut new_ids = Vec::with_capacity(keep.len());
        ids.intern(&kept, &mut new_ids)?;
        let mut old: Vec<Vec<Session>> = std::mem::take(&mut self.sessions);
        self.sessions = (0..ids.len()).map(|_| Vec::new()).collect();
        for (j, &i) in keep.iter().enumerate() {
            self.sessions[new_ids[j]] = std::mem::take(&mut old[i as usize]);
        }
        Ok(())
    }

    /// The buffered `rows` (buffer id, row), gathered from the buffers they live in: group
    /// keys and aggregate inputs, and the partition keys when `partition` is asked.
    fn gather(&self, rows: &[(u64, usize)], partition: bool) -> Result<Gathered> {
        let mut used: Vec<u64> = Vec::new();
        let mut slot_of = std::collections::HashMap::new();
        let picks: Vec<(usize, usize)> = rows
            .iter()
            .map(|&(buffer, row)| {
                let slot = *slot_of.entry(buffer).or_insert_with(|| {
                    used.push(buffer);
                    used.len() - 1
                });
                (slot, row)
            })
            .collect();
        let buffers = used
            .iter()
            .map(|b| match self.buffers.get(b) {
                Some(buffered) => Ok(buffered),
                None => internal_err!("session row refers to a released buffer"),
            })
            .collect::<Result<Vec<_>>>()?;
        let gather = |arrays: Vec<&ArrayRef>| -> Result<ArrayRef> {
            let refs: Vec<&dyn Array> = arrays.iter().map(|a| a.as_ref()).collect();
            Ok(interleave(&refs, &picks)?)
        };
        let columns = |pick: &dyn Fn(&Buffered) -> &[ArrayRef], n: usize| {
            (0..n)
                .map(|i| gather(buffers.iter().map(|b| &pick(b)[i]).collect()))
                .collect::<Result<Vec<_>>>()
        };
        let partition = if partition {
            columns(&|b| &b.partition, self.partition_exprs.len())?
        } else {
            Vec::new()
        };
        let keys = columns(&|b| &b.keys, self.keys.len())?;
        let mut values = Vec::with_capacity(self.aggregates.len());
        let mut filters = Vec::with_capacity(self.aggregates.len());
        for a in 0..self.aggregates.len() {
            let width = buffers.first().map_or(0, |b| b.inputs.values[a].len());
            values.push(columns(&|b| &b.inputs.values[a], width)?);
            filters.push(match buffers.first().map(|b| &b.inputs.filters[a]) {
                Some(Some(_)) => {
                    let masks: Vec<ArrayRef> = buffers
                        .iter()
                        .map(|b| match &b.inputs.filters[a] {
                            Some(m) => Ok(Arc::new(m.clone()) as ArrayRef),
                            None => internal_err!("filter missing in a session buffer"),
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Some(gather(masks.iter().collect())?.as_boolean().clone())
                }
                _ => None::<BooleanArray>,
            });
        }
        Ok(Gathered {
            partition,
            keys,
            inputs: AggregateInputs { values, filters },
        })
    }

    /// Aggregates the rows of fired sessions: one output row per session and group key.
    fn aggregate(&self, fired: &[Session]) -> Result<RecordBatch> {
        let mut ordinals: Vec<u32> = Vec::new();
        let mut rows: Vec<(u64, usize)> = Vec::new();
        for (ordinal, session) in fired.iter().enumerate() {
            rows.extend_from_slice(&session.rows);
            ordinals.extend(std::iter::repeat_n(ordinal as u32, session.rows.len()));
        }
        let gathered = self.gather(&rows, false)?;
        let mut keys: Vec<ArrayRef> = vec![Arc::new(UInt32Array::from(ordinals))];
        keys.extend(gathered.keys);
        let mut table = self.fire_table()?;
        table.update(&keys, &gathered.inputs, rows.len())?;
        self.output(fired, &mut table)
    }

    /// A table aggregating by session ordinal and group keys.
    fn fire_table(&self) -> Result<GroupedAggregation> {
        GroupedAggregation::try_new(Arc::clone(&self.aggregates), Some(&self.fire_key_schema))
    }

    /// Aggregates the rows of fired sessions stored in RocksDB, deleting them: one batch per
    /// run of sessions with about [`CHUNK_ROWS`] rows.
    fn aggregate_stored(&self, rocks: &RocksRows, fired: &[Session]) -> Result<Vec<RecordBatch>> {
        let mut batches = Vec::new();
        let mut first = 0;
        while first < fired.len() {
            let mut table = self.fire_table()?;
            let (mut keys, mut values, mut ordinals) = (Vec::new(), Vec::new(), Vec::new());
            let mut feed = |keys: &mut Vec<Box<[u8]>>,
                            values: &mut Vec<Box<[u8]>>,
                            ordinals: &mut Vec<u32>|
             -> Result<()> {
                if values.is_empty() {
                    return Ok(());
                }
                let (group_keys, inputs) = rocks.decode(values)?;
                let mut columns: Vec<ArrayRef> =
                    vec![Arc::new(UInt32Array::from(std::mem::take(ordinals)))];
                columns.extend(group_keys);
                table.update(&columns, &inputs, values.len())?;
                rocks.delete(keys)?;
                keys.clear();
                values.clear();
                Ok(())
            };
            let mut last = first;
            let mut chunk_rows = 0;
            while last < fired.len() && (last == first || chunk_rows < CHUNK_ROWS) {
                for &(segment, count) in &fired[last].rows {
                    chunk_rows += count;
                    for entry in rocks.rows_of(segment) {
                        let (key, value) = entry?;
                        keys.push(key);
                        values.push(value);
                        ordinals.push((last - first) as u32);
                        if values.len() >= CHUNK_ROWS {
                            feed(&mut keys, &mut values, &mut ordinals)?;
                        }
                    }
                }
                last += 1;
            }
            feed(&mut keys, &mut values, &mut ordinals)?;
            batches.push(self.output(&fired[first..last], &mut table)?);
            first = last;
        }
        Ok(batches)
    }

    /// The output rows of `table` (grouped by ordinal in `fired` and group keys).
    fn output(&self, fired: &[Session], table: &mut GroupedAggregation) -> Result<RecordBatch> {
        let result = table.finish()?;

        // Output columns: group keys and window columns in declared order, then aggregates.
        let ordinals = result.keys[0].as_primitive::<datafusion::arrow::datatypes::UInt32Type>();
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.schema.fields().len());
        for (i, column) in self.group_columns.iter().enumerate() {
            match column {
                GroupColumn::Key(k) => columns.push(Arc::clone(&result.keys[k + 1])),
                GroupColumn::GroupingId => {
                    return datafusion::common::internal_err!(
                        "SESSION windows have no grouping sets (the planner refuses them)"
                    );
                }
                GroupColumn::Window(field) => {
                    let tz = match self.schema.field(i).data_type() {
                        DataType::Timestamp(_, tz) => tz.clone(),
                        _ => None,
                    };
                    let values: Vec<i64> = ordinals
                        .values()
                        .iter()
                        .map(|o| {
                            let s = &fired[*o as usize];
                            field.value(s.start, s.end)
                        })
                        .collect();
                    columns.push(Arc::new(
                        TimestampMillisecondArray::from(values).with_timezone_opt(tz),
                    ));
                }
            }
        }
        columns.extend(result.values);
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }

    /// Frees buffers whose rows all belonged to fired sessions.
    fn release(&mut self, fired: &[Session]) {
        for session in fired {
            for &(buffer, _) in &session.rows {
                let free = match self.buffers.get_mut(&buffer) {
                    Some(b) => {
                        b.live -= 1;
                        b.live == 0
                    }
                    None => false,
                };
                if free {
                    self.buffers.remove(&buffer);
                }
            }
        }
    }
}

impl Operator for SessionAggregateStream {
    type Meta = SessionMeta;

    fn restore(
        &mut self,
        checkpoint: &OperatorCheckpoint,
        restored: &Restored<'_>,
    ) -> Result<RestoredWatermarks> {
        self.restore_from(checkpoint, restored)
    }

    fn on_data(&mut self, _input: usize, batch: StreamBatch, ctx: &mut Context<'_>) -> Result<()> {
        self.process(batch, ctx)
    }

    async fn on_watermark(&mut self, ctx: &mut Context<'_>) -> Result<i64> {
        let watermark = ctx.watermark();
        self.fire(watermark, ctx)?;
        Ok(watermark)
    }

    /// Hands the open sessions' rows to the checkpoint coordinator.
    fn snapshot(
        &mut self,
        epoch: u64,
        watermarks: &Watermarks<'_>,
        checkpoint: &OperatorCheckpoint,
    ) -> Result<()> {
        if self.rocks.is_some() {
            return self.snapshot_rocks(epoch, watermarks.min(), checkpoint);
        }
        let rows = self.snapshot_rows()?.into_iter().collect();
        checkpoint.snapshot(epoch, &self.meta(watermarks.min()), rows)
    }

    fn end(&mut self, watermarks: &Watermarks<'_>) -> SessionMeta {
        self.meta(watermarks.min())
    }

    fn state_size(&self) -> StateSize {
        StateSize {
            rows: self.buffers.values().map(|b| b.live).sum(),
            bytes: self.memory_size(),
        }
    }
}
