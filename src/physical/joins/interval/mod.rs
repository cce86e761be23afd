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
//!
//! - `bound`: reading the time bound from the join filter; thresholds and output watermark.
//! - `buffer`: one side's buffered rows, chained per key, evicted in time order.
//! - `stream`: one partition: matching, buffering, eviction, snapshots and restore.
//! - here: the plan node.

mod bound;
mod buffer;
mod stream;

pub use bound::TimeBound;

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinType, Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::state::SideCodec;
use super::{Emit, JoinOutput, JoinParts};
use crate::physical::message::MessageStream;
use crate::physical::operator::Driver;
use crate::physical::streaming::{
    OperatorState, StreamingExec, data_only, execute_input, reads_event_time, time_attributes,
};
use crate::physical::window_spec::format_ms;
use crate::state::backend::StateBackend;
use buffer::SideBuffer;
use stream::IntervalJoinStream;

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
        let (left_times, right_times) = (time_attributes(&join.left), time_attributes(&join.right));
        if !reads_event_time(&join.left) || !reads_event_time(&join.right) {
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
        super::projected_columns(self.projection.as_deref(), combined)
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
        )?;
        write!(f, ", state={}", self.state_declaration())
    }
}

impl IntervalJoinExec {
    fn state_declaration(&self) -> OperatorState {
        OperatorState {
            backend: StateBackend::Memory,
            keys: self.on.iter().map(|(l, _)| l.to_string()).collect(),
            freed: "when the other side's watermark passes the time bound",
        }
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
    fn checkpointed(&self) -> bool {
        true
    }

    /// The rows of both sides per join key, each freed when the other side's watermark
    /// passes the time bound; always in memory (no RocksDB layout yet).
    fn state(&self) -> Option<OperatorState> {
        Some(self.state_declaration())
    }

    fn time_attributes(&self) -> std::collections::HashSet<usize> {
        self.output_columns(time_attributes(&self.left), time_attributes(&self.right))
    }

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
        let stream = IntervalJoinStream {
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
            out: Vec::new(),
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
