//! Joins of two streams: window joins and interval joins, whose state the watermarks bound,
//! and regular joins, whose state grows with the inputs.
//!
//! - [`WindowJoinExec`]: both inputs are windowed (their join keys include `window_end` on both
//!   sides). Rows are buffered per window; when the watermarks of both inputs pass the window's
//!   end, the window is joined (any join type, with DataFusion's own hash join over the window's
//!   rows) and forgotten.
//! - [`IntervalJoinExec`]: `l.ts BETWEEN r.ts - a AND r.ts + b` plus keys. Each side keeps its
//!   rows, indexed by key, only until the other side's watermark proves that no partner can
//!   come; unmatched rows of an outer side are emitted then.
//! - [`TemporalJoinExec`]: `FOR SYSTEM_TIME AS OF probe.ts`: each probe row, once the
//!   watermarks pass it, meets the version its key had at its time in a versioned table.
//! - [`RegularJoinExec`]: keys only (and any filter). Each side keeps its rows until they are
//!   taken back; the output is a changelog when an outer side's padding changes or an input
//!   retracts.
//!
//! Both run under the operator [`Driver`](crate::physical::operator::Driver), which reads the
//! two inputs with barriers aligned and keeps each side's watermark. Shared here: the
//! checkpoint encoding of buffered rows (`state`) and gathering output columns.
//!
//! Watermarks: each side's is its own input's (a finished input counts as the end of time). An
//! idle side holds the join back, because a partner row may still come from it; `Idle` is
//! forwarded when every side still running is idle and the join holds no rows. Barriers are aligned: a side that delivered barrier N is
//! not read until the other side delivered N too, then the state is snapshotted and N forwarded.

pub mod interval;
pub mod regular;
mod state;
pub mod temporal;
pub mod window;
mod window_rows;

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, UInt32Array, new_null_array};
use datafusion::arrow::compute::{interleave, take};
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinSide, JoinType, NullEquality, Result, internal_err};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExprRef};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{HashJoinExec, SymmetricHashJoinExec};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, PlanProperties};

pub use interval::IntervalJoinExec;
pub use regular::RegularJoinExec;
pub use temporal::TemporalJoinExec;
pub use window::WindowJoinExec;

/// What a stream-stream join takes over from the DataFusion join it replaces (a `HashJoinExec`,
/// or the `SymmetricHashJoinExec` DataFusion picks when both inputs are unbounded).
pub struct JoinParts {
    pub left: Arc<dyn ExecutionPlan>,
    pub right: Arc<dyn ExecutionPlan>,
    pub on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    pub filter: Option<JoinFilter>,
    pub join_type: JoinType,
    pub projection: Option<Vec<usize>>,
    pub null_equality: NullEquality,
    /// NOT IN semantics (a NULL anywhere empties the result).
    pub null_aware: bool,
    /// The join's output schema.
    pub schema: SchemaRef,
}

impl JoinParts {
    /// The parts of `plan`, if it is a hash join of either kind.
    pub fn of(plan: &Arc<dyn ExecutionPlan>) -> Option<Self> {
        if let Some(j) = plan.downcast_ref::<HashJoinExec>() {
            return Some(Self {
                left: Arc::clone(j.left()),
                right: Arc::clone(j.right()),
                on: j.on().to_vec(),
                filter: j.filter().cloned(),
                join_type: *j.join_type(),
                projection: j.projection.as_ref().map(|p| p.to_vec()),
                null_equality: j.null_equality(),
                null_aware: j.null_aware,
                schema: j.schema(),
            });
        }
        let j = plan.downcast_ref::<SymmetricHashJoinExec>()?;
        Some(Self {
            left: Arc::clone(j.left()),
            right: Arc::clone(j.right()),
            on: j.on().to_vec(),
            filter: j.filter().cloned(),
            join_type: *j.join_type(),
            projection: None,
            null_equality: j.null_equality(),
            null_aware: false,
            schema: j.schema(),
        })
    }
}

/// The properties of a join of two inputs partitioned alike: as many partitions as each input,
/// unbounded if either is, rows emitted as they come.
pub(crate) fn join_properties(
    left: &Arc<dyn ExecutionPlan>,
    right: &Arc<dyn ExecutionPlan>,
    schema: SchemaRef,
) -> Result<PlanProperties> {
    let partitions = left.output_partitioning().partition_count();
    if right.output_partitioning().partition_count() != partitions {
        return internal_err!("join inputs have different partition counts");
    }
    let unbounded = left.boundedness().is_unbounded() || right.boundedness().is_unbounded();
    Ok(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(partitions),
        EmissionType::Incremental,
        if unbounded {
            Boundedness::Unbounded {
                requires_infinite_memory: false,
            }
        } else {
            Boundedness::Bounded
        },
    ))
}

/// The output positions of `combined` (positions among the left then right input columns)
/// through a join's embedded `projection`.
pub(crate) fn projected_columns(
    projection: Option<&[usize]>,
    combined: std::collections::HashSet<usize>,
) -> std::collections::HashSet<usize> {
    match projection {
        None => combined,
        Some(p) => p
            .iter()
            .enumerate()
            .filter(|(_, src)| combined.contains(src))
            .map(|(i, _)| i)
            .collect(),
    }
}

/// `ExecutionPlan::apply_expressions` over the key pairs of a join.
pub(crate) fn apply_on(
    on: &[(PhysicalExprRef, PhysicalExprRef)],
    f: &mut dyn FnMut(
        &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
    ) -> Result<TreeNodeRecursion>,
) -> Result<TreeNodeRecursion> {
    for (l, r) in on {
        if f(l)? == TreeNodeRecursion::Stop || f(r)? == TreeNodeRecursion::Stop {
            return Ok(TreeNodeRecursion::Stop);
        }
    }
    Ok(TreeNodeRecursion::Continue)
}

/// Which side's rows a join emits, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Emit {
    /// Matching pairs; the unmatched rows of the sides marked `true` with NULLs for the other.
    Pairs([bool; 2]),
    /// The rows of this side that have a match, once each.
    Semi(usize),
    /// The rows of this side that never found a match.
    Anti(usize),
}

impl Emit {
    /// The emission rule of `join_type`; mark joins are not supported.
    pub fn of(join_type: JoinType) -> Result<Self> {
        Ok(match join_type {
            JoinType::Inner => Emit::Pairs([false, false]),
            JoinType::Left => Emit::Pairs([true, false]),
            JoinType::Right => Emit::Pairs([false, true]),
            JoinType::Full => Emit::Pairs([true, true]),
            JoinType::LeftSemi => Emit::Semi(0),
            JoinType::RightSemi => Emit::Semi(1),
            JoinType::LeftAnti => Emit::Anti(0),
            JoinType::RightAnti => Emit::Anti(1),
            other => {
                return datafusion::common::plan_err!(
                    "a {other} join of two streams is not supported; split the EXISTS / IN \
                     condition combined with OR into separate queries"
                );
            }
        })
    }

    /// True if unmatched rows of `side` are emitted when they can no longer match.
    pub fn keeps_unmatched(&self, side: usize) -> bool {
        match self {
            Emit::Pairs(outer) => outer[side],
            Emit::Anti(s) => *s == side,
            Emit::Semi(_) => false,
        }
    }
}

/// Where the rows of one side of an output batch come from.
pub(crate) enum Gather<'a> {
    /// Rows `indices` of one batch.
    Batch(&'a RecordBatch, &'a UInt32Array),
    /// Rows `(batch, row)` of several batches.
    Buffered(&'a [&'a RecordBatch], &'a [(usize, usize)]),
    /// `n` rows of NULLs.
    Nulls(usize),
}

impl Gather<'_> {
    /// Column `c` (of type `schema.field(c)`) for the gathered rows.
    pub fn column(&self, schema: &Schema, c: usize) -> Result<ArrayRef> {
        Ok(match self {
            Gather::Batch(batch, indices) => take(batch.column(c), indices, None)?,
            Gather::Buffered(batches, rows) => {
                let arrays: Vec<&dyn Array> =
                    batches.iter().map(|b| b.column(c).as_ref()).collect();
                if arrays.is_empty() {
                    new_null_array(schema.field(c).data_type(), 0)
                } else {
                    interleave(&arrays, rows)?
                }
            }
            Gather::Nulls(n) => new_null_array(schema.field(c).data_type(), *n),
        })
    }

    fn len(&self) -> usize {
        match self {
            Gather::Batch(_, indices) => indices.len(),
            Gather::Buffered(_, rows) => rows.len(),
            Gather::Nulls(n) => *n,
        }
    }
}

/// The schemas of both inputs and of the output, and how to assemble output batches.
#[derive(Debug, Clone)]
pub(crate) struct JoinOutput {
    pub inputs: [SchemaRef; 2],
    pub schema: SchemaRef,
    pub projection: Option<Vec<usize>>,
    pub emit: Emit,
}

impl JoinOutput {
    /// An output batch from the rows gathered for each side (`None`: that side's columns are
    /// not part of the output, as in semi and anti joins).
    pub fn batch(&self, left: Gather<'_>, right: Gather<'_>) -> Result<RecordBatch> {
        let n = left.len().max(right.len());
        let mut columns: Vec<ArrayRef> = Vec::new();
        let sides: Vec<(usize, &Gather)> = match self.emit {
            Emit::Pairs(_) => vec![(0, &left), (1, &right)],
            Emit::Semi(s) | Emit::Anti(s) => vec![(s, if s == 0 { &left } else { &right })],
        };
        for (side, gather) in sides {
            let schema = &self.inputs[side];
            for c in 0..schema.fields().len() {
                columns.push(gather.column(schema, c)?);
            }
        }
        if let Some(projection) = &self.projection {
            columns = projection
                .iter()
                .map(|&i| Arc::clone(&columns[i]))
                .collect();
        }
        if columns.len() != self.schema.fields().len() {
            return internal_err!(
                "join output has {} columns, the schema {}",
                columns.len(),
                self.schema.fields().len()
            );
        }
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )?)
    }
}

/// Evaluates a join filter over candidate pairs: `gather(side)` gives the rows of each side.
/// NULL counts as false.
pub(crate) fn filter_pairs(
    filter: &JoinFilter,
    inputs: &[SchemaRef; 2],
    left: &Gather<'_>,
    right: &Gather<'_>,
) -> Result<BooleanArray> {
    let n = left.len();
    let columns = filter
        .column_indices()
        .iter()
        .map(|c| match c.side {
            JoinSide::Left => left.column(&inputs[0], c.index),
            JoinSide::Right => right.column(&inputs[1], c.index),
            JoinSide::None => internal_err!("join filter column without a side"),
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    let intermediate = RecordBatch::try_new_with_options(
        Arc::clone(filter.schema()),
        columns,
        &RecordBatchOptions::new().with_row_count(Some(n)),
    )?;
    let result = filter.expression().evaluate(&intermediate)?.into_array(n)?;
    let Some(mask) = result.as_any().downcast_ref::<BooleanArray>() else {
        return internal_err!("join filter is not boolean");
    };
    Ok(match mask.nulls() {
        Some(nulls) => BooleanArray::new(mask.values() & nulls.inner(), None),
        None => mask.clone(),
    })
}
