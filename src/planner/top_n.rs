//! Top-N over a stream, found in DataFusion's physical plan and made a
//! [`TopNExec`](crate::physical::top_n::TopNExec) (Flink's `Rank` rule):
//!
//! - `ROW_NUMBER() OVER (PARTITION BY k ORDER BY x) AS rn` under a filter bounding `rn`
//!   (`rn <= N`, `rn < N`, `rn = 1`, `rn BETWEEN a AND b`; other conditions of the filter stay
//!   above the top-N), DataFusion's `FilterExec` over a `BoundedWindowAggExec` over a sort;
//! - `ORDER BY x LIMIT N` (DataFusion's `SortExec` with a fetch), one global partition.
//!
//! Only over a stream that never ends or changes (or in the `streaming` runtime mode); a bounded
//! input keeps DataFusion's batch plan and answer. The rank column is kept only if something
//! above reads it: without it, a row moving between ranks is no change.

use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::logical_expr::Operator;
use datafusion::physical_expr::PhysicalExprRef;
use datafusion::physical_expr::expressions::{BinaryExpr, CastExpr, Column, Literal};
use datafusion::physical_expr::utils::{collect_columns, conjunction, split_conjunction};
use datafusion::physical_expr::window::StandardWindowExpr;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::windows::{BoundedWindowAggExec, WindowAggExec, WindowUDFExpr};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, WindowExpr};

use crate::physical::filter::StreamFilterExec;
use crate::physical::projection::StreamProjectionExec;
use crate::physical::streaming::{changelog_mode, is_streaming};
use crate::physical::top_n::{TopN, TopNExec};

/// `node` as a top-N over a stream, if it is one (see the module docs); `partitions` is the
/// parallelism of keyed operators; `streaming` the `streaming` runtime mode; `ttl` the state's
/// time to live.
pub(super) fn top_n(
    node: &Arc<dyn ExecutionPlan>,
    partitions: usize,
    streaming: bool,
    ttl: Option<Duration>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(filter) = node.downcast_ref::<FilterExec>() {
        return ranked(filter, partitions, streaming, ttl);
    }
    if let Some(sort) = node.downcast_ref::<SortExec>()
        && let Some(fetch) = sort.fetch()
    {
        let input = sort.input();
        if !runs_as_stream(input, streaming) {
            return Ok(None);
        }
        let def = TopN {
            partition_by: vec![],
            order_by: sort.expr().to_vec(),
            rank_start: 1,
            rank_end: fetch as u64,
            rank_column: false,
            later_wins_ties: false,
            ttl,
        };
        let input = super::exchanges::partition_by(input, vec![], 1)?;
        let schema = input.schema();
        return Ok(Some(Arc::new(TopNExec::try_new(input, def, schema)?)));
    }
    // The merge of per-partition top-Ns DataFusion puts above them: the top-N is one already.
    if let Some(merge) = node.downcast_ref::<SortPreservingMergeExec>()
        && let Some(top) = merge.input().downcast_ref::<TopNExec>()
        && top.def().partition_by.is_empty()
    {
        let mut def = top.def().clone();
        if let Some(fetch) = merge.fetch() {
            def.rank_end = def
                .rank_end
                .min((def.rank_start - 1).saturating_add(fetch as u64));
        }
        return Ok(Some(Arc::new(TopNExec::try_new(
            Arc::clone(top.input()),
            def,
            top.schema(),
        )?)));
    }
    // `ORDER BY ... LIMIT n OFFSET m`: DataFusion's skip and fetch above the sort of the first
    // m + n rows are the global top-N's ranks m + 1 to m + n (above a changelog they would
    // count change rows instead).
    if let Some(limit) = node.downcast_ref::<GlobalLimitExec>()
        && let Some(top) = limit.input().downcast_ref::<TopNExec>()
        && top.def().partition_by.is_empty()
        && !top.def().rank_column
    {
        let mut def = top.def().clone();
        let first = def.rank_start - 1;
        def.rank_start = def.rank_start.saturating_add(limit.skip() as u64);
        if let Some(fetch) = limit.fetch() {
            def.rank_end = def
                .rank_end
                .min(first.saturating_add((limit.skip() + fetch) as u64));
        }
        if def.rank_end < def.rank_start {
            return plan_err!("this ORDER BY ... LIMIT ... OFFSET over a stream leaves no row");
        }
        return Ok(Some(Arc::new(TopNExec::try_new(
            Arc::clone(top.input()),
            def,
            top.schema(),
        )?)));
    }
    Ok(None)
}

/// True if `input` is a stream the top-N must follow: it never ends or it changes, or the
/// runtime mode is `streaming`.
pub(super) fn runs_as_stream(input: &Arc<dyn ExecutionPlan>, streaming: bool) -> bool {
    is_streaming(input)
        && (streaming || input.boundedness().is_unbounded() || changelog_mode(input).is_updating())
}

/// A filter bounding the `ROW_NUMBER()` of a window over a stream as a top-N, with the
/// filter's other conditions and projection above it.
fn ranked(
    filter: &FilterExec,
    partitions: usize,
    streaming: bool,
    ttl: Option<Duration>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    // DataFusion may spread the window's output round-robin, and project its columns (the
    // projection then stays above the top-N).
    let mut window = spread_input(filter.input());
    let inner = window.downcast_ref::<ProjectionExec>();
    if let Some(inner) = inner {
        window = spread_input(inner.input());
    }
    let window_exprs: &[Arc<dyn WindowExpr>] =
        if let Some(w) = window.downcast_ref::<BoundedWindowAggExec>() {
            w.window_expr()
        } else if let Some(w) = window.downcast_ref::<WindowAggExec>() {
            w.window_expr()
        } else {
            return Ok(None);
        };
    let Some(input) = window.children().first().map(|c| Arc::clone(c)) else {
        return Ok(None);
    };
    let input = unsorted(input)?;
    if !runs_as_stream(&input, streaming) {
        return Ok(None);
    }
    let [expr] = window_exprs else {
        return plan_err!(
            "OVER (...) over a stream supports one ROW_NUMBER() bounded in the WHERE clause \
             (a top-N: WHERE rn <= 10); this query has {} window functions",
            window_exprs.len()
        );
    };
    if function_name(expr).as_deref() != Some("row_number") {
        return plan_err!(
            "OVER (...) over a stream supports ROW_NUMBER() bounded in the WHERE clause (a \
             top-N: SELECT * FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY k ORDER BY x DESC) \
             AS rn FROM t) WHERE rn <= 10); {} is not supported",
            expr.name()
        );
    }
    // The row number's column, in the window's output and as the filter sees it.
    let window_rank = input.schema().fields().len();
    let rank = match inner {
        None => Some(window_rank),
        Some(inner) => inner
            .expr()
            .iter()
            .position(|p| is_rank(&p.expr, window_rank)),
    };
    let mut bounds = RankBounds::default();
    let mut rest: Vec<PhysicalExprRef> = Vec::new();
    for conjunct in split_conjunction(filter.predicate()) {
        if !rank.is_some_and(|rank| bounds.take(conjunct, rank)) {
            rest.push(Arc::clone(conjunct));
        }
    }
    let Some(end) = bounds.end else {
        return plan_err!(
            "ROW_NUMBER() over a stream needs an upper bound on the row number in the WHERE \
             clause (a top-N, e.g. WHERE rn <= 10): without one, every new row would renumber \
             the rows after it"
        );
    };
    let start = bounds.start.max(1);
    if end < start {
        return plan_err!(
            "the row number bounds of this top-N ({start} to {end}) leave no row; a row number \
             starts at 1"
        );
    }
    if expr.order_by().is_empty() {
        return plan_err!(
            "ROW_NUMBER() over a stream needs an ORDER BY in its OVER (...), which says which \
             rows come first"
        );
    }
    let reads_rank =
        |e: &PhysicalExprRef| collect_columns(e).iter().any(|c| Some(c.index()) == rank);
    // A projection between the filter and the window reads the window's columns as they are.
    let rank_column = inner.is_some()
        || rest.iter().any(reads_rank)
        || filter
            .projection()
            .as_ref()
            .is_none_or(|p| p.iter().any(|&i| Some(i) == rank));
    let order_by = expr.order_by().to_vec();
    let later_wins_ties = start == 1
        && end == 1
        && matches!(order_by.as_slice(), [o] if o.options.descending
            && matches!(o.expr.data_type(&input.schema()), Ok(DataType::Timestamp(_, _))));
    let partition_by = expr.partition_by().to_vec();
    let parallel = if partition_by.is_empty() {
        1
    } else {
        partitions
    };
    let input = super::exchanges::partition_by(&input, partition_by.clone(), parallel)?;
    let schema = if rank_column {
        window.schema()
    } else {
        Arc::new(Schema::new(
            window.schema().fields()[..window_rank].to_vec(),
        ))
    };
    let def = TopN {
        partition_by,
        order_by,
        rank_start: start,
        rank_end: end,
        rank_column,
        later_wins_ties,
        ttl,
    };
    let mut top: Arc<dyn ExecutionPlan> = Arc::new(TopNExec::try_new(input, def, schema)?);
    if let Some(inner) = inner {
        let projected = ProjectionExec::try_new(inner.expr().to_vec(), top)?;
        top = Arc::new(StreamProjectionExec::from_projection(&projected));
    }
    let projection = filter.projection().as_ref().map(|p| p.to_vec());
    let planned: Arc<dyn ExecutionPlan> = match (conjunction(rest), projection) {
        (rest, _) if !is_true(&rest) => {
            let filter = FilterExecBuilder::new(rest, top)
                .apply_projection(filter.projection().as_ref().map(|p| p.to_vec()))?
                .build()?;
            Arc::new(StreamFilterExec::from_filter(&filter))
        }
        (_, Some(projection)) => {
            let schema = top.schema();
            let exprs = projection.iter().map(|&i| {
                let name = schema.field(i).name().clone();
                ProjectionExpr {
                    expr: Arc::new(Column::new(&name, i)) as PhysicalExprRef,
                    alias: name,
                }
            });
            let projected = ProjectionExec::try_new(exprs, top)?;
            Arc::new(StreamProjectionExec::from_projection(&projected))
        }
        _ => top,
    };
    // A LIMIT folded into the filter reads the changelog's first rows and ends, as over any
    // stream (see `to_streaming`).
    Ok(Some(match filter.fetch() {
        Some(n) => Arc::new(LocalLimitExec::new(planned, n)),
        None => planned,
    }))
}

/// `plan` below DataFusion's round-robin spreads.
fn spread_input(mut plan: &Arc<dyn ExecutionPlan>) -> &Arc<dyn ExecutionPlan> {
    while let Some(spread) = plan.downcast_ref::<RepartitionExec>() {
        plan = spread.input();
    }
    plan
}

/// `plan` without the sorts, merges and spreads DataFusion put below a window for it (the
/// top-N orders by itself, and partitions its input by itself); a projection among them is
/// kept, made streaming.
pub(super) fn unsorted(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if plan.is::<SortExec>()
        || plan.is::<SortPreservingMergeExec>()
        || plan.is::<RepartitionExec>()
        || plan.is::<CoalescePartitionsExec>()
    {
        return unsorted(Arc::clone(plan.children()[0]));
    }
    if let Some(projection) = plan.downcast_ref::<ProjectionExec>() {
        let input = unsorted(Arc::clone(projection.input()))?;
        if is_streaming(&input) {
            let projected = ProjectionExec::try_new(projection.expr().to_vec(), input)?;
            return Ok(Arc::new(StreamProjectionExec::from_projection(&projected)));
        }
    }
    Ok(plan)
}

/// The window function's name (`row_number`, `rank`, ...), if it is a built-in or UDF window
/// function.
fn function_name(expr: &Arc<dyn WindowExpr>) -> Option<String> {
    let standard = expr.as_any().downcast_ref::<StandardWindowExpr>()?;
    let udf = standard
        .get_standard_func_expr()
        .as_any()
        .downcast_ref::<WindowUDFExpr>()?;
    Some(udf.fun().name().to_string())
}

fn is_true(e: &PhysicalExprRef) -> bool {
    e.downcast_ref::<Literal>()
        .is_some_and(|l| l.value() == &ScalarValue::Boolean(Some(true)))
}

/// The bounds on the row number found in a filter's conditions.
#[derive(Debug, Default)]
struct RankBounds {
    start: u64,
    end: Option<u64>,
}

impl RankBounds {
    /// Takes `conjunct` if it bounds column `rank` by a constant (`rn <= 3`, `2 > rn`, ...).
    fn take(&mut self, conjunct: &PhysicalExprRef, rank: usize) -> bool {
        let Some(binary) = conjunct.downcast_ref::<BinaryExpr>() else {
            return false;
        };
        let (op, value) = match (
            is_rank(binary.left(), rank),
            constant(binary.right()),
            constant(binary.left()),
            is_rank(binary.right(), rank),
        ) {
            (true, Some(v), _, _) => (*binary.op(), v),
            (_, _, Some(v), true) => match binary.op().swap() {
                Some(op) => (op, v),
                None => return false,
            },
            _ => return false,
        };
        let (start, end) = match op {
            Operator::Lt => (None, Some(value - 1)),
            Operator::LtEq => (None, Some(value)),
            Operator::Eq => (Some(value), Some(value)),
            Operator::GtEq => (Some(value), None),
            Operator::Gt => (Some(value + 1), None),
            _ => return false,
        };
        if let Some(start) = start {
            self.start = self.start.max(clamp(start));
        }
        if let Some(end) = end {
            let end = clamp(end);
            self.end = Some(self.end.map_or(end, |e| e.min(end)));
        }
        true
    }
}

/// A bound as a row number (below 0 is 0, beyond `u64` is `u64::MAX`).
fn clamp(value: i128) -> u64 {
    u64::try_from(value.max(0)).unwrap_or(u64::MAX)
}

/// True if `e` is column `rank` (perhaps cast).
fn is_rank(e: &PhysicalExprRef, rank: usize) -> bool {
    if let Some(cast) = e.downcast_ref::<CastExpr>() {
        return is_rank(cast.expr(), rank);
    }
    e.downcast_ref::<Column>()
        .is_some_and(|c| c.index() == rank)
}

/// `e` as an integer constant.
fn constant(e: &PhysicalExprRef) -> Option<i128> {
    let literal = e.downcast_ref::<Literal>()?;
    Some(match literal.value().clone() {
        ScalarValue::Int8(Some(v)) => i128::from(v),
        ScalarValue::Int16(Some(v)) => i128::from(v),
        ScalarValue::Int32(Some(v)) => i128::from(v),
        ScalarValue::Int64(Some(v)) => i128::from(v),
        ScalarValue::UInt8(Some(v)) => i128::from(v),
        ScalarValue::UInt16(Some(v)) => i128::from(v),
        ScalarValue::UInt32(Some(v)) => i128::from(v),
        ScalarValue::UInt64(Some(v)) => i128::from(v),
        _ => return None,
    })
}
