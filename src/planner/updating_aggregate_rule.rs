//! `UpdatingAggregateRule`: an `Aggregate` over a stream that never ends becomes an
//! [`UpdatingAggregateNode`], whose result is a changelog (Flink's group aggregation).
//!
//! Runs after DataFusion's own rules, so DISTINCT is already an aggregate without aggregate
//! functions and a single `COUNT(DISTINCT x)` is already an aggregate over an aggregate
//! grouped by `x`. Windowed aggregates were taken by the
//! [`WindowAggregateRule`](super::window_aggregate_rule) before; an `Aggregate` still grouped by
//! a window column is left alone (refused later with a message about windows). Over a bounded
//! input an `Aggregate` stays DataFusion's: its answer is final at the end, the last state of
//! the changelog (Flink's `automatic` runtime mode); with `SET 'execution.runtime-mode' =
//! 'streaming'` it becomes an updating aggregate there too.
//!
//! Over a changelog (another updating aggregate below), aggregates that depend on the order of
//! their rows (an ORDER BY inside, FIRST_VALUE, LAST_VALUE, NTH_VALUE) are refused: a
//! changelog keeps no order to take a row back from.

use std::sync::Arc;

use datafusion::common::plan_err;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::error::Result;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Aggregate, Expr, Extension, LogicalPlan};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::connector_table::ConnectorTable;
use super::updating_aggregate_node::UpdatingAggregateNode;
use crate::config::{LiveTables, PlannedRuntimeMode, RuntimeMode};
use crate::physical::updating_aggregate::Retraction;
use crate::physical::window_spec::WindowField;

/// See the module docs.
#[derive(Debug, Default)]
pub struct UpdatingAggregateRule;

impl OptimizerRule for UpdatingAggregateRule {
    fn name(&self) -> &str {
        "sabot_updating_aggregate"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let streaming = PlannedRuntimeMode::of(&config.options()) == RuntimeMode::Streaming;
        let live = LiveTables::of(&config.options());
        if !reads_stream(&aggregate.input, streaming, live)? || grouped_by_window(aggregate) {
            return Ok(Transformed::no(plan));
        }
        if aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
        {
            return plan_err!(
                "GROUPING SETS, ROLLUP and CUBE over a stream need a window: group by \
                 window_start, window_end of a TUMBLE, HOP or SESSION window too"
            );
        }
        let retracting_input = is_changelog(&aggregate.input, live)?;
        if retracting_input {
            for expr in &aggregate.aggr_expr {
                check_retracts(expr)?;
            }
        }
        let node = UpdatingAggregateNode {
            input: aggregate.input.as_ref().clone(),
            keys: aggregate.group_expr.clone(),
            aggregates: aggregate.aggr_expr.clone(),
            retracting_input,
            schema: Arc::clone(&aggregate.schema),
        };
        Ok(Transformed::yes(LogicalPlan::Extension(Extension {
            node: Arc::new(node),
        })))
    }
}

/// True if `plan` reads a source that never ends or a changelog (an updating aggregate, or a
/// source in a changelog format: its rows are changes, which only an updating aggregate
/// takes); with `any_source` (the `streaming` runtime mode) any stream, bounded or not. A
/// LIMIT bounds what is below it. With `live`, memory tables are read live.
fn reads_stream(plan: &LogicalPlan, any_source: bool, live: bool) -> Result<bool> {
    let mut unbounded = false;
    plan.apply(|node| {
        unbounded = match node {
            LogicalPlan::TableScan(scan) => {
                source_as_provider(&scan.source).ok().is_some_and(|p| {
                    p.downcast_ref::<ConnectorTable>().is_some_and(|t| {
                        t.is_unbounded(live)
                            || t.is_changelog(live)
                            || any_source && t.is_stream(live)
                    })
                })
            }
            LogicalPlan::Extension(ext) => ext.node.as_any().is::<UpdatingAggregateNode>(),
            LogicalPlan::Limit(_) => return Ok(TreeNodeRecursion::Jump),
            _ => false,
        };
        Ok(if unbounded {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(unbounded)
}

/// True if an optimized `plan` is an updating query: its rows are a changelog (it holds an
/// updating aggregate, and is not an INSERT, whose result is a count).
pub fn is_updating(plan: &LogicalPlan) -> bool {
    !matches!(plan, LogicalPlan::Dml(_)) && is_changelog(plan, false).unwrap_or(false)
}

/// True if `plan` holds an updating aggregate or reads a changelog source (memory tables
/// read live with `live`): its rows are a changelog.
fn is_changelog(plan: &LogicalPlan, live: bool) -> Result<bool> {
    plan.exists(|node| {
        Ok(match node {
            LogicalPlan::Extension(ext) => ext.node.as_any().is::<UpdatingAggregateNode>(),
            LogicalPlan::TableScan(scan) => {
                source_as_provider(&scan.source).ok().is_some_and(|p| {
                    p.downcast_ref::<ConnectorTable>()
                        .is_some_and(|t| t.is_changelog(live))
                })
            }
            _ => false,
        })
    })
}

/// True if a group key is a window column (`window_start`, `window_end`, `window_time`):
/// a window aggregation the window rule did not take, which is refused with its own message.
fn grouped_by_window(aggregate: &Aggregate) -> bool {
    aggregate.group_expr.iter().any(|e| {
        e.column_refs()
            .iter()
            .any(|c| WindowField::ALL.iter().any(|f| f.name() == c.name))
    })
}

/// Refuses an aggregate that cannot take rows back, over a changelog.
fn check_retracts(expr: &Expr) -> Result<()> {
    let Expr::AggregateFunction(AggregateFunction { func, params }) = unalias(expr) else {
        return Ok(());
    };
    let ordered = !params.order_by.is_empty();
    if Retraction::of(func.name(), params.distinct, ordered) != Retraction::Impossible {
        return Ok(());
    }
    plan_err!(
        "{}{} over a changelog (the result of a GROUP BY without a window, a changelog source \
         such as debezium-json, or a table a materialized view reads live) is not supported: \
         it depends on the order of its rows, and a changelog takes rows back, which keeps no \
         order. Use an aggregate that does not depend on order (COUNT, SUM, MIN, MAX), \
         aggregate rows that only append, or group them by a window",
        func.name().to_uppercase(),
        if ordered { " with ORDER BY" } else { "" }
    )
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}
