//! `IntervalJoinExec`: two streams joined on keys and a time bound.
//!
//! `ON l.k = r.k AND l.ts BETWEEN r.ts - INTERVAL 'a' AND r.ts + INTERVAL 'b'` (any mix of
//! `<`, `<=`, `>`, `>=` with interval offsets on either side) bounds `l.ts - r.ts` to
//! `[lower, upper]`. Each side buffers its rows, indexed by key; an arriving row is matched
//! against the other side's buffer (keys, then the whole join filter), then buffered itself.
//!
//! A left row can only meet right rows with `r.ts >= l.ts - upper`; once the right watermark
//! has passed `l.ts - lower`, none can come, so the row is dropped from the buffer (and emitted
//! with NULLs if it is on an outer side and never matched). Likewise a right row goes when the
//! left watermark passes `r.ts + upper`. The buffers therefore hold about
//! `upper - lower` plus the watermark delay of event time, whatever the input size. A row at or
//! below its own side's watermark is late: dropped and counted, like late rows of a window.
//!
//! Output watermark: `min(wl, wr, wl - upper, wr + lower)`, the earliest `l.ts` or `r.ts` a
//! later output row can carry. Join types: INNER, LEFT, RIGHT, FULL, semi and anti (a semi row
//! is emitted at its first match, an anti row when it can no longer match).
//!
//! State: both buffers with their matched flags, snapshotted at barriers.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, UInt32Array};
use datafusion::arrow::compute::{cast, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinSide, JoinType, Result, ScalarValue, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
use datafusion::physical_expr::split_conjunction;
use datafusion::physical_expr::{PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, Gauge, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::inputs::{Event, TwoInputs};
use super::state::SideCodec;
use super::window::join_keys;
use super::{Emit, Gather, JoinOutput, JoinParts, filter_pairs};
use crate::checkpoint::operator::OperatorCheckpoint;
use crate::physical::event_time::to_millis;
use crate::physical::message::{
    CheckpointBarrier, END_OF_TIME, MessageStream, NO_WATERMARK, StreamBatch, StreamMessage,
};
use crate::physical::streaming::{StreamingExec, data_only, execute_input};
use crate::physical::window_spec::format_ms;
use crate::runtime::job_context::JobContext;

/// The time bound of an interval join: `l.ts - r.ts` within `[lower, upper]` (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBound {
    /// Time column of the left and of the right input.
    pub columns: [usize; 2],
    /// Smallest `l.ts - r.ts` that can match.
    pub lower: i64,
    /// Largest `l.ts - r.ts` that can match.
    pub upper: i64,
}

impl TimeBound {
    /// Reads the bound from a join filter, if its conjuncts bound `l.ts - r.ts` on both ends
    /// with timestamp columns and constant intervals.
    pub fn of_filter(filter: &JoinFilter) -> Option<Self> {
        let mut columns: Option<[usize; 2]> = None;
        let (mut lower, mut upper) = (None::<i64>, None::<i64>);
        for conjunct in split_conjunction(filter.expression()) {
            let Some(b) = conjunct.downcast_ref::<BinaryExpr>() else {
                continue;
            };
            let (Some(a), Some(c)) = (term(b.left()), term(b.right())) else {
                continue;
            };
            let side = |t: (usize, i64)| {
                let index = filter.column_indices().get(t.0)?;
                let is_time = matches!(
                    filter.schema().field(t.0).data_type(),
                    DataType::Timestamp(_, _)
                );
                is_time.then_some((index.side, index.index, t.1))
            };
            let (Some(a), Some(c)) = (side(a), side(c)) else {
                continue;
            };
            // Normalize to `l.ts + x <op> r.ts + y`, i.e. `l.ts - r.ts <op> y - x`.
            let (l, r, op) = match (a.0, c.0) {
                (JoinSide::Left, JoinSide::Right) => (a, c, *b.op()),
                (JoinSide::Right, JoinSide::Left) => match b.op().swap() {
                    Some(op) => (c, a, op),
                    None => continue,
                },
                _ => continue,
            };
            let pair = [l.1, r.1];
            if *columns.get_or_insert(pair) != pair {
                continue;
            }
            let bound = r.2.checked_sub(l.2)?;
            match op {
                Operator::Gt | Operator::GtEq => {
                    lower = Some(lower.map_or(bound, |v| v.max(bound)));
                }
                Operator::Lt | Operator::LtEq => {
                    upper = Some(upper.map_or(bound, |v| v.min(bound)));
                }
                _ => {}
            }
        }
        Some(Self {
            columns: columns?,
            lower: lower?,
            upper: upper?,
        })
    }

    /// Rows of the left buffer at or below this time can meet no future right row.
    fn left_threshold(&self, right_watermark: i64) -> i64 {
        threshold(right_watermark, self.lower)
    }

    /// Rows of the right buffer at or below this time can meet no future left row.
    fn right_threshold(&self, left_watermark: i64) -> i64 {
        threshold(left_watermark, self.upper.saturating_neg())
    }

    /// The output watermark for the sides' watermarks (see the module docs).
    fn output_watermark(&self, [l, r]: [i64; 2]) -> i64 {
        if l == END_OF_TIME && r == END_OF_TIME {
            return END_OF_TIME;
        }
        if l == NO_WATERMARK || r == NO_WATERMARK {
            return NO_WATERMARK;
        }
        l.min(r)
            .min(l.saturating_sub(self.upper))
            .min(r.saturating_add(self.lower))
    }
}

fn threshold(watermark: i64, offset: i64) -> i64 {
    match watermark {
        NO_WATERMARK => i64::MIN,
        END_OF_TIME => i64::MAX,
        w => w.saturating_add(offset),
    }
}

/// `column +/- interval ...` as (column, offset in ms).
fn term(expr: &Arc<dyn PhysicalExpr>) -> Option<(usize, i64)> {
    if let Some(c) = expr.downcast_ref::<Column>() {
        return Some((c.index(), 0));
    }
    if let Some(c) = expr.downcast_ref::<CastExpr>()
        && matches!(c.cast_type(), DataType::Timestamp(_, _))
    {
        return term(c.expr());
    }
    let b = expr.downcast_ref::<BinaryExpr>()?;
    let literal = |e: &Arc<dyn PhysicalExpr>| {
        e.downcast_ref::<Literal>()
            .and_then(|l| interval_ms(l.value()))
    };
    match b.op() {
        Operator::Plus => match (term(b.left()), literal(b.right())) {
            (Some((c, x)), Some(ms)) => Some((c, x.checked_add(ms)?)),
            _ => {
                let (c, x) = term(b.right())?;
                Some((c, x.checked_add(literal(b.left())?)?))
            }
        },
        Operator::Minus => {
            let (c, x) = term(b.left())?;
            Some((c, x.checked_sub(literal(b.right())?)?))
        }
        _ => None,
    }
}

/// A constant interval or duration in milliseconds (months have no fixed length: `None`).
fn interval_ms(value: &ScalarValue) -> Option<i64> {
    const DAY: i64 = 86_400_000;
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(v.days as i64 * DAY + v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => Some(v.days as i64 * DAY + v.milliseconds as i64),
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1000),
        ScalarValue::DurationMillisecond(Some(v)) => Some(*v),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(v / 1000),
        ScalarValue::DurationNanosecond(Some(v)) => Some(v / 1_000_000),
        _ => None,
    }
}

/// See the module docs.
#[derive(Debug)]
pub struct IntervalJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: JoinFilter,
    join_type: JoinType,
    projection: Option<Vec<usize>>,
    bound: TimeBound,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl IntervalJoinExec {
    /// The interval join replacing `join`, if its filter bounds the two sides' times. `left`
    /// and `right` replace its inputs, partitioned alike on the keys.
    pub fn from_parts(
        join: &JoinParts,
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
    ) -> Result<Option<Self>> {
        let Some(filter) = &join.filter else {
            return Ok(None);
        };
        let Some(bound) = TimeBound::of_filter(filter) else {
            return Ok(None);
        };
        if join.null_equality == datafusion::common::NullEquality::NullEqualsNull {
            return datafusion::common::plan_err!(
                "an interval join on IS NOT DISTINCT FROM is not supported; join on '=' (NULL \
                 keys then never match)"
            );
        }
        let (left_times, right_times) = (
            super::time_attributes(&join.left),
            super::time_attributes(&join.right),
        );
        if !super::reads_event_time(&join.left) || !super::reads_event_time(&join.right) {
            return datafusion::common::plan_err!(
                "an interval join needs event time on both inputs: declare a WATERMARK on the \
                 time columns of both tables (CREATE TABLE ... WATERMARK FOR ts AS ts - \
                 INTERVAL '5' SECOND), or the buffered rows could never be dropped"
            );
        }
        if !left_times.contains(&bound.columns[0]) || !right_times.contains(&bound.columns[1]) {
            let name = |p: &Arc<dyn ExecutionPlan>, i: usize| p.schema().field(i).name().clone();
            return datafusion::common::plan_err!(
                "the time bound of this join compares {} and {}, but a stream's watermark only \
                 bounds its event-time column (the column of its WATERMARK, or window_end / \
                 window_time of a window); bound those columns instead",
                name(&join.left, bound.columns[0]),
                name(&join.right, bound.columns[1])
            );
        }
        Self::try_new(
            left,
            right,
            join.on.clone(),
            filter.clone(),
            join.join_type,
            join.projection.clone(),
            bound,
            Arc::clone(&join.schema),
        )
        .map(Some)
    }

    #[allow(clippy::too_many_arguments)]
    fn try_new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: JoinFilter,
        join_type: JoinType,
        projection: Option<Vec<usize>>,
        bound: TimeBound,
        schema: SchemaRef,
    ) -> Result<Self> {
        Emit::of(join_type)?;
        let properties = super::join_properties(&left, &right, schema)?;
        Ok(Self {
            left,
            right,
            on,
            filter,
            join_type,
            projection,
            bound,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The time bound.
    pub fn bound(&self) -> TimeBound {
        self.bound
    }

    /// The event-time columns of both inputs.
    pub fn children_time_attributes(&self) -> [std::collections::HashSet<usize>; 2] {
        [
            super::time_attributes(&self.left),
            super::time_attributes(&self.right),
        ]
    }

    /// Output positions of the left columns `left` and the right columns `right`.
    pub fn output_columns(
        &self,
        left: std::collections::HashSet<usize>,
        right: std::collections::HashSet<usize>,
    ) -> std::collections::HashSet<usize> {
        let width = self.left.schema().fields().len();
        let combined: std::collections::HashSet<usize> = match Emit::of(self.join_type) {
            Ok(Emit::Pairs(_)) => left
                .into_iter()
                .chain(right.into_iter().map(|c| c + width))
                .collect(),
            Ok(Emit::Semi(0) | Emit::Anti(0)) => left,
            Ok(_) => right,
            Err(_) => return Default::default(),
        };
        match &self.projection {
            None => combined,
            Some(p) => p
                .iter()
                .enumerate()
                .filter(|(_, src)| combined.contains(src))
                .map(|(i, _)| i)
                .collect(),
        }
    }
}

impl DisplayAs for IntervalJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self.on.iter().map(|(l, r)| format!("({l}, {r})")).collect();
        let schema =
            |side: &Arc<dyn ExecutionPlan>, i: usize| side.schema().field(i).name().clone();
        write!(
            f,
            "IntervalJoinExec: join_type={:?}, on=[{}], filter={}, bound=left.{} - right.{} in \
             [{}, {}]",
            self.join_type,
            on.join(", "),
            self.filter,
            schema(&self.left, self.bound.columns[0]),
            schema(&self.right, self.bound.columns[1]),
            signed_ms(self.bound.lower),
            signed_ms(self.bound.upper),
        )
    }
}

fn signed_ms(ms: i64) -> String {
    if ms < 0 {
        format!("-{}", format_ms(ms.saturating_neg()))
    } else {
        format_ms(ms)
    }
}

impl ExecutionPlan for IntervalJoinExec {
    fn name(&self) -> &str {
        "IntervalJoinExec"
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
            return internal_err!("IntervalJoinExec has two children");
        };
        Ok(Arc::new(Self::try_new(
            Arc::clone(left),
            Arc::clone(right),
            self.on.clone(),
            self.filter.clone(),
            self.join_type,
            self.projection.clone(),
            self.bound,
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

impl StreamingExec for IntervalJoinExec {
    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let left = execute_input(&self.left, partition, Arc::clone(&context))?;
        let right = execute_input(&self.right, partition, Arc::clone(&context))?;
        let inputs = [self.left.schema(), self.right.schema()];
        let key_types = self
            .on
            .iter()
            .map(|(l, _)| l.data_type(&inputs[0]))
            .collect::<Result<Vec<DataType>>>()?;
        let converter = match key_types.as_slice() {
            [t] if t.is_integer() && *t != DataType::UInt64 => None,
            _ => Some(RowConverter::new(
                key_types.iter().cloned().map(SortField::new).collect(),
            )?),
        };
        let metrics = MetricBuilder::new(&self.metrics);
        let mut stream = IntervalJoinStream {
            inputs: TwoInputs::new(left, right),
            codec: SideCodec::new(inputs.clone()),
            output: JoinOutput {
                inputs,
                schema: self.schema(),
                projection: self.projection.clone(),
                emit: Emit::of(self.join_type)?,
            },
            on: self.on.clone(),
            filter: self.filter.clone(),
            bound: self.bound,
            key_types,
            converter,
            buffers: [SideBuffer::new(), SideBuffer::new()],
            emitted: NO_WATERMARK,
            pending: VecDeque::new(),
            baseline: BaselineMetrics::new(&self.metrics, partition),
            late_rows: metrics.clone().counter("late_rows", partition),
            null_time_rows: metrics.clone().counter("null_time_rows", partition),
            buffered_rows: metrics.gauge("buffered_rows", partition),
            job: JobContext::of(&context),
            checkpoint: OperatorCheckpoint::open(self, &context, partition),
        };
        stream.restore()?;
        Ok(Box::pin(futures::stream::unfold(
            stream,
            |mut s| async move { s.next_message().await.map(|m| (m, s)) },
        )))
    }
}

/// Encoded join keys of a batch: one integer key as is, other keys in arrow's row format.
enum Keys {
    Int(Vec<i64>),
    Rows(Rows),
}

/// A key, borrowed from [`Keys`].
#[derive(Clone, Copy)]
enum KeyRef<'a> {
    Int(i64),
    Bytes(&'a [u8]),
}

impl Keys {
    fn get(&self, i: usize) -> KeyRef<'_> {
        match self {
            Keys::Int(v) => KeyRef::Int(v[i]),
            Keys::Rows(rows) => KeyRef::Bytes(rows.row(i).data()),
        }
    }
}

/// No further row in a chain.
const END: u64 = u64::MAX;

/// A buffered row's address: the low 32 bits of its segment id in the high half, the row in
/// the low half. Segment ids wrap around; a link is resolved relative to the oldest live
/// segment, and fewer than 2^31 segments are ever alive at once.
fn address(segment: u64, row: usize) -> u64 {
    ((segment & 0xffff_ffff) << 32) | row as u64
}

/// Rows of one input batch kept in a side's buffer.
struct Segment {
    id: u64,
    rows: RecordBatch,
    keys: Keys,
    times: Vec<i64>,
    matched: Vec<bool>,
    /// The next older buffered row with the same key (an address), or `END`.
    next: Vec<u64>,
    /// Row indices by time; `order[..cursor]` are gone.
    order: Vec<u32>,
    cursor: usize,
}

/// The buffered rows of one side (see the module docs). Rows with the same key form a chain,
/// newest first, from the index through `Segment::next`; links only point to older rows, so a
/// walk stops at the first segment already freed. Rows that are gone but whose segment is not
/// yet freed are skipped by their time.
struct SideBuffer {
    segments: VecDeque<Segment>,
    next_id: u64,
    /// Key -> newest row with the key (integer keys).
    ints: HashMap<i64, u64>,
    /// Key -> newest row with the key (other keys).
    bytes: HashMap<Box<[u8]>, u64>,
    alive: usize,
    /// Rows at or below this time are gone.
    threshold: i64,
}

impl SideBuffer {
    fn new() -> Self {
        Self {
            segments: VecDeque::new(),
            next_id: 0,
            ints: HashMap::new(),
            bytes: HashMap::new(),
            alive: 0,
            threshold: i64::MIN,
        }
    }

    fn head(&self, key: KeyRef<'_>) -> u64 {
        match key {
            KeyRef::Int(k) => self.ints.get(&k).copied().unwrap_or(END),
            KeyRef::Bytes(k) => self.bytes.get(k).copied().unwrap_or(END),
        }
    }

    /// Calls `found(segment position, row)` for every buffered row with `key` still in time.
    fn matches(&self, key: KeyRef<'_>, mut found: impl FnMut(usize, usize)) {
        let Some(first) = self.segments.front().map(|s| s.id) else {
            return;
        };
        let first = (first & 0xffff_ffff) as u32;
        let mut link = self.head(key);
        while link != END {
            let segment = (link >> 32) as u32;
            // A segment older than the oldest live one wraps to a huge position: this row and
            // all older ones were freed.
            let pos = segment.wrapping_sub(first) as usize;
            let row = (link & 0xffff_ffff) as usize;
            let Some(s) = self.segments.get(pos) else {
                break;
            };
            if s.times[row] > self.threshold {
                found(pos, row);
            }
            link = s.next[row];
        }
    }

    /// Links row `row` of the segment at `pos` in front of its key's chain.
    fn link(&mut self, pos: usize, row: usize) {
        let segment = &self.segments[pos];
        let me = address(segment.id, row);
        let head = match segment.keys.get(row) {
            KeyRef::Int(k) => self.ints.entry(k).or_insert(END),
            KeyRef::Bytes(k) => match self.bytes.get_mut(k) {
                Some(head) => head,
                None => self.bytes.entry(Box::from(k)).or_insert(END),
            },
        };
        let previous = std::mem::replace(head, me);
        self.segments[pos].next[row] = previous;
    }

    /// Adds rows (already checked to be above the threshold and to have non-NULL keys).
    fn insert(&mut self, rows: RecordBatch, keys: Keys, times: Vec<i64>, matched: Vec<bool>) {
        let id = self.next_id;
        self.next_id += 1;
        let n = rows.num_rows();
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_by_key(|&i| times[i as usize]);
        self.alive += n;
        self.segments.push_back(Segment {
            id,
            rows,
            keys,
            times,
            matched,
            next: vec![END; n],
            order,
            cursor: 0,
        });
        let pos = self.segments.len() - 1;
        for row in 0..n {
            self.link(pos, row);
        }
    }

    /// Raises the threshold; returns the rows that went and never matched, as
    /// (segment position, row) with the segments still in place. Call [`Self::compact`] after.
    fn evict(&mut self, threshold: i64) -> Vec<(usize, usize)> {
        let mut unmatched = Vec::new();
        if threshold <= self.threshold {
            return unmatched;
        }
        self.threshold = threshold;
        for (pos, segment) in self.segments.iter_mut().enumerate() {
            while segment.cursor < segment.order.len() {
                let row = segment.order[segment.cursor] as usize;
                if segment.times[row] > threshold {
                    break;
                }
                if !segment.matched[row] {
                    unmatched.push((pos, row));
                }
                segment.cursor += 1;
                self.alive -= 1;
            }
        }
        unmatched
    }

    /// Frees the segments that are gone from the front, and rebuilds the index once most of
    /// its keys only lead to rows that are gone.
    fn compact(&mut self) {
        while self
            .segments
            .front()
            .is_some_and(|s| s.cursor == s.order.len())
        {
            self.segments.pop_front();
        }
        if self.ints.len() + self.bytes.len() > 2 * self.alive + 4096 {
            self.ints.clear();
            self.bytes.clear();
            for pos in 0..self.segments.len() {
                let n = self.segments[pos].times.len();
                for row in 0..n {
                    self.segments[pos].next[row] = END;
                    if self.segments[pos].times[row] > self.threshold {
                        self.link(pos, row);
                    }
                }
            }
        }
    }

    /// The rows still in time of the segment at `pos`.
    fn alive_rows(&self, pos: usize) -> impl Iterator<Item = u32> + '_ {
        let s = &self.segments[pos];
        s.order[s.cursor..]
            .iter()
            .copied()
            .filter(|&r| s.times[r as usize] > self.threshold)
    }
}

/// One partition of an interval join.
struct IntervalJoinStream {
    inputs: TwoInputs,
    codec: SideCodec,
    output: JoinOutput,
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: JoinFilter,
    bound: TimeBound,
    /// Key types (the left's; right keys are cast to them).
    key_types: Vec<DataType>,
    /// `None` for one integer key (used as is).
    converter: Option<RowConverter>,
    buffers: [SideBuffer; 2],
    emitted: i64,
    pending: VecDeque<StreamMessage>,
    baseline: BaselineMetrics,
    late_rows: Count,
    null_time_rows: Count,
    buffered_rows: Gauge,
    job: Option<Arc<JobContext>>,
    checkpoint: Option<OperatorCheckpoint>,
}

impl IntervalJoinStream {
    async fn next_message(&mut self) -> Option<Result<StreamMessage>> {
        loop {
            if let Some(msg) = self.pending.pop_front() {
                return Some(Ok(msg));
            }
            let event = match self.inputs.next().await {
                Some(Ok(event)) => event,
                Some(Err(e)) => return Some(Err(e)),
                None => {
                    if let Some(checkpoint) = &mut self.checkpoint {
                        checkpoint.finish(serde_json::json!({
                            "watermarks": [END_OF_TIME, END_OF_TIME]
                        }));
                    }
                    self.baseline.done();
                    return None;
                }
            };
            let result = match event {
                Event::Data(side, batch) => self.process(side, batch),
                Event::Watermark => self.on_watermark(),
                // Idle only when nothing is held: buffered rows may still come out (as outer
                // rows) and must not find a downstream watermark that moved on without them.
                Event::Idle => {
                    if self.buffers[0].alive + self.buffers[1].alive == 0 {
                        self.pending.push_back(StreamMessage::Idle);
                    }
                    Ok(())
                }
                Event::Barrier(epoch) => self.snapshot(epoch).map(|()| {
                    self.pending
                        .push_back(StreamMessage::Barrier(CheckpointBarrier { epoch }));
                }),
            };
            if let Err(e) = result {
                return Some(Err(e));
            }
        }
    }

    /// The encoded join keys of `side` for `rows`, and which rows have no NULL key.
    fn keys(&self, side: usize, rows: &RecordBatch) -> Result<(Keys, Vec<bool>)> {
        let keys = join_keys(&self.on, side, rows)?
            .into_iter()
            .zip(&self.key_types)
            .map(|(k, t)| {
                if k.data_type() == t {
                    Ok(k)
                } else {
                    Ok(cast(&k, t)?)
                }
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let valid = (0..rows.num_rows())
            .map(|i| keys.iter().all(|k| k.is_valid(i)))
            .collect();
        let encoded = match (&self.converter, keys.as_slice()) {
            (None, [key]) => {
                let key = cast(key, &DataType::Int64)?;
                let key = key.as_primitive::<Int64Type>();
                Keys::Int(key.values().to_vec())
            }
            (Some(converter), _) => Keys::Rows(converter.convert_columns(&keys)?),
            (None, _) => return internal_err!("interval join: one integer key expected"),
        };
        Ok((encoded, valid))
    }

    fn emit(&mut self, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.baseline.record_output(batch.num_rows());
            self.pending
                .push_back(StreamMessage::Data(StreamBatch::new(batch)));
        }
    }

    /// Matches one input batch against the other side's buffer, then buffers it.
    fn process(&mut self, x: usize, batch: StreamBatch) -> Result<()> {
        let elapsed = self.baseline.elapsed_compute().clone();
        let _timer = elapsed.timer();
        let y = 1 - x;
        let rows = &batch.batch;
        let n = rows.num_rows();
        let times = to_millis(rows.column(self.bound.columns[x]))?;
        let watermark = self.inputs.watermarks()[x];
        let (keys, valid) = self.keys(x, rows)?;

        // Rows that take part: event time set and not late.
        let mut eligible = vec![false; n];
        let mut late = 0usize;
        let mut null_time: Vec<u32> = Vec::new();
        for (i, e) in eligible.iter_mut().enumerate() {
            if times.is_null(i) {
                null_time.push(i as u32);
                continue;
            }
            if times.value(i) <= batch.row_watermark(i, watermark) {
                late += 1;
            } else {
                *e = true;
            }
        }
        if late > 0 {
            self.late_rows.add(late);
            if let Some(job) = &self.job {
                job.stats.add_late_rows(late as u64);
            }
        }
        // A row without event time can meet nothing: kept as unmatched on an outer or anti
        // side (as in batch SQL), otherwise dropped; counted either way.
        if !null_time.is_empty() {
            self.null_time_rows.add(null_time.len());
            if self.output.emit.keeps_unmatched(x) {
                let idx = UInt32Array::from(null_time);
                let out = self.side_rows(x, Gather::Batch(rows, &idx))?;
                self.emit(out);
            }
        }

        // Candidate partners by key, then the whole filter.
        let other = &self.buffers[y];
        let mut mine: Vec<u32> = Vec::new();
        let mut theirs: Vec<(usize, usize)> = Vec::new();
        for i in 0..n {
            if !eligible[i] || !valid[i] {
                continue;
            }
            other.matches(keys.get(i), |pos, row| {
                mine.push(i as u32);
                theirs.push((pos, row));
            });
        }
        let mut matched = vec![false; n];
        if !mine.is_empty() {
            let segments: Vec<&RecordBatch> = other.segments.iter().map(|s| &s.rows).collect();
            let mine_idx = UInt32Array::from(std::mem::take(&mut mine));
            let mask = {
                let a = Gather::Batch(rows, &mine_idx);
                let b = Gather::Buffered(&segments, &theirs);
                let (l, r) = if x == 0 { (&a, &b) } else { (&b, &a) };
                filter_pairs(&self.filter, &self.output.inputs, l, r)?
            };
            let mut kept_mine = Vec::with_capacity(mine_idx.len());
            let mut kept_theirs = Vec::with_capacity(mine_idx.len());
            let mut newly_matched = Vec::new();
            for (k, keep) in mask.values().iter().enumerate() {
                if keep {
                    let (pos, row) = theirs[k];
                    kept_mine.push(mine_idx.value(k));
                    kept_theirs.push((pos, row));
                    matched[mine_idx.value(k) as usize] = true;
                    if !self.buffers[y].segments[pos].matched[row] {
                        newly_matched.push((pos, row));
                    }
                }
            }
            for &(pos, row) in &newly_matched {
                self.buffers[y].segments[pos].matched[row] = true;
            }
            let segments: Vec<&RecordBatch> =
                self.buffers[y].segments.iter().map(|s| &s.rows).collect();
            let out = match self.output.emit {
                Emit::Pairs(_) => {
                    let mine_idx = UInt32Array::from(kept_mine);
                    let a = Gather::Batch(rows, &mine_idx);
                    let b = Gather::Buffered(&segments, &kept_theirs);
                    Some(if x == 0 {
                        self.output.batch(a, b)?
                    } else {
                        self.output.batch(b, a)?
                    })
                }
                Emit::Semi(s) if s == y => {
                    newly_matched.sort_unstable();
                    newly_matched.dedup();
                    Some(self.side_rows(y, Gather::Buffered(&segments, &newly_matched))?)
                }
                Emit::Semi(_) => {
                    let idx: UInt32Array = (0..n as u32).filter(|&i| matched[i as usize]).collect();
                    Some(self.side_rows(x, Gather::Batch(rows, &idx))?)
                }
                Emit::Anti(_) => None,
            };
            if let Some(out) = out {
                self.emit(out);
            }
        }

        // Buffer the rows that can still meet future rows of the other side; the others are
        // done now (emitted with NULLs if they are on a kept side and never matched).
        let own_threshold = self.buffers[x].threshold;
        let mut keep: Vec<u32> = Vec::new();
        let mut done_unmatched: Vec<u32> = Vec::new();
        for i in 0..n {
            if !eligible[i] {
                continue;
            }
            if valid[i] && times.value(i) > own_threshold {
                keep.push(i as u32);
            } else if !matched[i] && self.output.emit.keeps_unmatched(x) {
                done_unmatched.push(i as u32);
            }
        }
        if !done_unmatched.is_empty() {
            let idx = UInt32Array::from(done_unmatched);
            let out = self.side_rows(x, Gather::Batch(rows, &idx))?;
            self.emit(out);
        }
        if !keep.is_empty() {
            let idx = UInt32Array::from(keep);
            let kept = if idx.len() == n {
                rows.clone()
            } else {
                take_record_batch(rows, &idx)?
            };
            let (kept_keys, _) = self.keys(x, &kept)?;
            let kept_times = idx
                .values()
                .iter()
                .map(|&i| times.value(i as usize))
                .collect();
            let kept_matched = idx.values().iter().map(|&i| matched[i as usize]).collect();
            self.buffers[x].insert(kept, kept_keys, kept_times, kept_matched);
        }
        self.buffered_rows
            .set(self.buffers[0].alive + self.buffers[1].alive);
        Ok(())
    }

    /// An output batch of rows of one side alone (NULLs for the other side in pair joins).
    fn side_rows(&self, side: usize, rows: Gather<'_>) -> Result<RecordBatch> {
        let nulls = Gather::Nulls(match &rows {
            Gather::Batch(_, idx) => idx.len(),
            Gather::Buffered(_, r) => r.len(),
            Gather::Nulls(n) => *n,
        });
        if side == 0 {
            self.output.batch(rows, nulls)
        } else {
            self.output.batch(nulls, rows)
        }
    }

    /// Drops the rows that can no longer match, then forwards the output watermark.
    fn on_watermark(&mut self) -> Result<()> {
        let [l, r] = self.inputs.watermarks();
        let thresholds = [self.bound.left_threshold(r), self.bound.right_threshold(l)];
        for (side, threshold) in thresholds.into_iter().enumerate() {
            let gone = self.buffers[side].evict(threshold);
            if !gone.is_empty() && self.output.emit.keeps_unmatched(side) {
                let segments: Vec<&RecordBatch> = self.buffers[side]
                    .segments
                    .iter()
                    .map(|s| &s.rows)
                    .collect();
                let out = self.side_rows(side, Gather::Buffered(&segments, &gone))?;
                self.emit(out);
            }
            self.buffers[side].compact();
        }
        self.buffered_rows
            .set(self.buffers[0].alive + self.buffers[1].alive);
        let watermark = self.bound.output_watermark([l, r]);
        if watermark > self.emitted {
            self.emitted = watermark;
            self.pending.push_back(StreamMessage::Watermark(watermark));
        }
        Ok(())
    }

    fn snapshot(&mut self, epoch: u64) -> Result<()> {
        let Some(checkpoint) = &self.checkpoint else {
            return Ok(());
        };
        let mut batches = Vec::new();
        for (side, buffer) in self.buffers.iter().enumerate() {
            for (pos, segment) in buffer.segments.iter().enumerate() {
                let alive: UInt32Array = buffer.alive_rows(pos).collect();
                if alive.is_empty() {
                    continue;
                }
                let rows = take_record_batch(&segment.rows, &alive)?;
                let matched: BooleanArray = alive
                    .values()
                    .iter()
                    .map(|&r| Some(segment.matched[r as usize]))
                    .collect();
                batches.push(self.codec.encode(side, &rows, &matched)?);
            }
        }
        let meta = serde_json::json!({
            "watermarks": self.inputs.watermarks(),
            "emitted": self.emitted,
        });
        checkpoint.snapshot(epoch, meta, batches)
    }

    /// Restores both buffers and the watermarks of the checkpoint the job resumes from.
    fn restore(&mut self) -> Result<()> {
        let Some(checkpoint) = &self.checkpoint else {
            return Ok(());
        };
        let Some(restored) = checkpoint.restored() else {
            return Ok(());
        };
        let watermarks = [
            restored.min_meta_at("watermarks", 0, NO_WATERMARK),
            restored.min_meta_at("watermarks", 1, NO_WATERMARK),
        ];
        self.inputs.restore_watermarks(watermarks);
        self.emitted = restored.min_meta("emitted", NO_WATERMARK);
        let codec = self.codec.clone();
        let on = self.on.clone();
        let batches = checkpoint.batches_by(&restored, |batch| {
            let side = codec.side_of(batch)?;
            let (rows, _) = codec.decode(batch, side)?;
            join_keys(&on, side, &rows)
        })?;
        let [l, r] = watermarks;
        self.buffers[0].threshold = self.bound.left_threshold(r);
        self.buffers[1].threshold = self.bound.right_threshold(l);
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let side = self.codec.side_of(&batch)?;
            let (rows, matched) = self.codec.decode(&batch, side)?;
            let times = to_millis(rows.column(self.bound.columns[side]))?;
            let (keys, _) = self.keys(side, &rows)?;
            self.buffers[side].insert(
                rows,
                keys,
                times.values().to_vec(),
                matched.values().iter().collect(),
            );
        }
        self.buffered_rows
            .set(self.buffers[0].alive + self.buffers[1].alive);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_and_output_watermark() {
        // l.ts BETWEEN r.ts - 10 AND r.ts + 2.
        let bound = TimeBound {
            columns: [0, 0],
            lower: -10,
            upper: 2,
        };
        // A left row at 100 can meet right rows in [98, 110]; with the right watermark at 110
        // none can come any more.
        assert_eq!(bound.left_threshold(110), 100);
        // A right row at 100 can meet left rows in [90, 102].
        assert_eq!(bound.right_threshold(102), 100);
        assert_eq!(bound.output_watermark([100, 100]), 90);
        assert_eq!(bound.output_watermark([50, 100]), 48);
        assert_eq!(bound.output_watermark([NO_WATERMARK, 100]), NO_WATERMARK);
        assert_eq!(
            bound.output_watermark([END_OF_TIME, END_OF_TIME]),
            END_OF_TIME
        );
        assert_eq!(bound.left_threshold(NO_WATERMARK), i64::MIN);
        assert_eq!(bound.left_threshold(END_OF_TIME), i64::MAX);
    }

    #[test]
    fn interval_literals() {
        use datafusion::arrow::datatypes::IntervalMonthDayNano;
        assert_eq!(
            interval_ms(&ScalarValue::IntervalMonthDayNano(Some(
                IntervalMonthDayNano::new(0, 1, 5_000_000)
            ))),
            Some(86_400_005)
        );
        assert_eq!(
            interval_ms(&ScalarValue::IntervalMonthDayNano(Some(
                IntervalMonthDayNano::new(1, 0, 0)
            ))),
            None
        );
        assert_eq!(
            interval_ms(&ScalarValue::DurationSecond(Some(3))),
            Some(3000)
        );
    }
}
