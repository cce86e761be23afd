//! The exchanges the streaming planner puts under keyed operators.

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use crate::physical::exchange::{ExchangeMode, StreamExchangeExec};
use crate::physical::filter::StreamFilterExec;
use crate::physical::projection::StreamProjectionExec;
use crate::physical::window_assign::WindowAssignExec;

/// `input` spread over `partitions` by `keys` (merged into one when `partitions` is 1),
/// replacing the merge, hash or round-robin spread DataFusion put on top of it.
pub(super) fn partition_by(
    input: &Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    partitions: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let input = match input.downcast_ref::<StreamExchangeExec>() {
        Some(e) if matches!(e.mode(), ExchangeMode::Single | ExchangeMode::Hash(_)) => {
            Arc::clone(e.children()[0])
        }
        _ => Arc::clone(input),
    };
    let input = without_round_robin(input)?;
    let current = input.output_partitioning().partition_count();
    Ok(if partitions == 1 {
        if current == 1 {
            input
        } else {
            Arc::new(StreamExchangeExec::try_new(input, ExchangeMode::Single, 1)?)
        }
    } else {
        Arc::new(StreamExchangeExec::try_new(
            input,
            ExchangeMode::Hash(keys),
            partitions,
        )?)
    })
}

/// `plan` without the round-robin spread under its row-wise operators. Before a hash exchange
/// such a spread only adds a hop, and it would make lateness inexact: the hash exchange then
/// merges several copies of one source's watermarks, arriving at different times, so the
/// per-row watermarks it passes on are only lower bounds.
pub(super) fn without_round_robin(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    if let Some(rr) = plan.downcast_ref::<StreamExchangeExec>()
        && matches!(rr.mode(), ExchangeMode::RoundRobin)
    {
        return Ok(Arc::clone(rr.children()[0]));
    }
    if plan.is::<StreamProjectionExec>()
        || plan.is::<StreamFilterExec>()
        || plan.is::<WindowAssignExec>()
    {
        let child = without_round_robin(Arc::clone(plan.children()[0]))?;
        return datafusion::physical_plan::execution_plan::replace_children_if_necessary(
            plan,
            vec![child],
        );
    }
    Ok(plan)
}
