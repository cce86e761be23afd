//! `WindowAggregateRule`: `Aggregate` over `WindowAssign` becomes one `WindowAggregate`.
//!
//! Turns
//! ```text
//! Aggregate: groupBy=[k, window_start, window_end], aggr=[count(*)]
//!   [Filter | SubqueryAlias | column-only Projection]*
//!     WindowAssign: TUMBLE(size=10s) on ts
//!       <input>
//! ```
//! into
//! ```text
//! WindowAggregate: TUMBLE(size=10s) on ts, keys=[k], aggr=[count(*)]
//!   [Filter | SubqueryAlias | Projection]*      (window columns removed)
//!     <input>
//! ```
//! The nodes between are re-applied below the window because they do not look at the window
//! columns (a filter that does is an error). The output schema is unchanged, so nothing above
//! needs rewriting. An `Aggregate` whose GROUP BY has no window column is left alone: it is an
//! ordinary aggregate over windowed rows.
//!
//! A GROUP BY over the *output* of a window aggregation that keeps its `window_end` column
//! (Flink's cascading window aggregation, e.g. the maximum of per-auction counts per window in
//! Nexmark q5) becomes a `WindowAggregate` too: every distinct `window_end` e is its own window
//! `[e - 1 ms, e)` over the time `window_end - 1 ms`, so it fires at the same watermark as the
//! window it aggregates, after all of that window's rows arrived. `window_end` stays a window
//! column (a window join can pair it); the other group columns are ordinary keys.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    Aggregate, Expr, Extension, Filter, GroupingSet, LogicalPlan, Projection, SubqueryAlias,
    UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use super::window_aggregate_node::{GroupColumn, GroupingSetKeys, WindowAggregateNode};
use super::window_assign_node::{WindowAssignNode, WindowField};
use crate::physical::window_spec::WindowSpec;

/// See the module docs.
#[derive(Debug, Default)]
pub struct WindowAggregateRule;

impl OptimizerRule for WindowAggregateRule {
    fn name(&self) -> &str {
        "sabot_window_aggregate"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = &plan else {
            return Ok(Transformed::no(plan));
        };
        let node = match rewrite_aggregate(aggregate)? {
            Some(node) => Some(node),
            None => rewrite_cascaded(aggregate)?,
        };
        match node {
            Some(node) => Ok(Transformed::yes(LogicalPlan::Extension(Extension {
                node: Arc::new(node),
            }))),
            None => Ok(Transformed::no(plan)),
        }
    }
}

/// What the rewrite tracks while re-applying the nodes between the aggregate and the window.
struct Tracked {
    /// Output column index -> window column, at the current level.
    windows: HashMap<usize, WindowField>,
    /// The time column, at the current level.
    time: Column,
    /// Session partition columns, at the current level.
    partition: Vec<Column>,
}

fn rewrite_aggregate(aggregate: &Aggregate) -> Result<Option<WindowAggregateNode>> {
    // Walk down to the WindowAssign, remembering the nodes in between.
    let mut chain: Vec<&LogicalPlan> = Vec::new();
    let mut current = aggregate.input.as_ref();
    let assign = loop {
        match current {
            LogicalPlan::Extension(ext) => {
                match ext.node.as_any().downcast_ref::<WindowAssignNode>() {
                    Some(assign) => break assign,
                    None => return Ok(None),
                }
            }
            LogicalPlan::Filter(Filter { input, .. })
            | LogicalPlan::SubqueryAlias(SubqueryAlias { input, .. }) => {
                chain.push(current);
                current = input.as_ref();
            }
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                chain.push(current);
                current = p.input.as_ref();
            }
            _ => return Ok(None),
        }
    };

    let first_window = assign.first_window_column();
    let mut tracked = Tracked {
        windows: WindowField::ALL
            .iter()
            .enumerate()
            .map(|(i, f)| (first_window + i, *f))
            .collect(),
        time: assign.time_column.clone(),
        partition: assign
            .partition_keys
            .iter()
            .filter_map(|k| match k {
                Expr::Column(c) => Some(c.clone()),
                _ => None,
            })
            .collect(),
    };

    // Is this a windowed aggregation at all?
    let top_schema = aggregate.input.schema();
    let group_window = |expr: &Expr, tracked: &Tracked| -> Option<WindowField> {
        match expr {
            Expr::Column(c) => top_schema
                .index_of_column(c)
                .ok()
                .and_then(|i| tracked.windows.get(&i).copied()),
            _ => None,
        }
    };

    // Re-apply the chain over the window's input, bottom-up.
    let mut plan = assign.input.clone();
    let mut level_schema = UserDefinedLogicalNodeCore::schema(assign).clone();
    for node in chain.iter().rev() {
        let references_window = |expr: &Expr, tracked: &Tracked| {
            expr.column_refs().iter().any(|c| {
                level_schema
                    .index_of_column(c)
                    .is_ok_and(|i| tracked.windows.contains_key(&i))
            })
        };
        match node {
            LogicalPlan::Filter(f) => {
                if references_window(&f.predicate, &tracked) {
                    return plan_err!(
                        "a WHERE condition on window_start/window_end/window_time before the \
                         window aggregation is not supported: `{}`; filter the aggregated \
                         result instead (HAVING or an outer query)",
                        f.predicate
                    );
                }
                plan = LogicalPlan::Filter(Filter::try_new(f.predicate.clone(), Arc::new(plan))?);
            }
            LogicalPlan::SubqueryAlias(s) => {
                plan = LogicalPlan::SubqueryAlias(SubqueryAlias::try_new(
                    Arc::new(plan),
                    s.alias.clone(),
                )?);
                tracked.time = Column::new(Some(s.alias.clone()), tracked.time.name.clone());
                for c in tracked.partition.iter_mut() {
                    *c = Column::new(Some(s.alias.clone()), c.name.clone());
                }
            }
            LogicalPlan::Projection(p) => {
                let mut kept = Vec::new();
                let mut windows = HashMap::new();
                for (i, e) in p.expr.iter().enumerate() {
                    let Expr::Column(c) = e else { return Ok(None) };
                    let source = level_schema.index_of_column(c)?;
                    match tracked.windows.get(&source) {
                        Some(field) => {
                            windows.insert(i, *field);
                        }
                        None => kept.push(e.clone()),
                    }
                }
                for needed in std::iter::once(&tracked.time).chain(tracked.partition.iter()) {
                    if !kept
                        .iter()
                        .any(|e| matches!(e, Expr::Column(c) if c == needed))
                    {
                        kept.push(Expr::Column(needed.clone()));
                    }
                }
                plan = LogicalPlan::Projection(Projection::try_new(kept, Arc::new(plan))?);
                tracked.windows = windows;
            }
            _ => return Ok(None),
        }
        level_schema = node.schema().clone();
    }

    // GROUPING SETS / ROLLUP / CUBE arrive as one grouping set over their distinct
    // expressions (DataFusion crosses plain GROUP BY expressions into every set).
    let (group_exprs, sets): (Vec<Expr>, Option<Vec<Vec<Expr>>>) =
        match aggregate.group_expr.as_slice() {
            [Expr::GroupingSet(gs)] => (
                gs.distinct_expr().into_iter().cloned().collect(),
                Some(expand_grouping_set(gs)?),
            ),
            exprs => (exprs.to_vec(), None),
        };
    let mut keys = Vec::new();
    let mut group_columns = Vec::new();
    for expr in &group_exprs {
        if matches!(expr, Expr::GroupingSet(_)) {
            return Ok(None);
        }
        if let Some(field) = group_window(expr, &tracked) {
            group_columns.push(GroupColumn::Window(field));
            continue;
        }
        if expr
            .column_refs()
            .iter()
            .any(|c| group_window(&Expr::Column((*c).clone()), &tracked).is_some())
        {
            return plan_err!(
                "GROUP BY `{expr}` computes on a window column; group by window_start, \
                 window_end or window_time directly"
            );
        }
        group_columns.push(GroupColumn::Key(keys.len()));
        keys.push(expr.clone());
    }
    if !group_columns
        .iter()
        .any(|g| matches!(g, GroupColumn::Window(_)))
    {
        return Ok(None);
    }
    for aggr in &aggregate.aggr_expr {
        if aggr
            .column_refs()
            .iter()
            .any(|c| group_window(&Expr::Column((*c).clone()), &tracked).is_some())
        {
            return plan_err!(
                "aggregate `{aggr}` reads a window column; window columns are constant per \
                 window, select them as group columns instead"
            );
        }
    }
    let grouping_sets = match sets {
        None => Vec::new(),
        Some(sets) => {
            if matches!(
                assign.spec.kind,
                crate::physical::window_spec::WindowKind::Session { .. }
            ) {
                return plan_err!(
                    "GROUPING SETS, ROLLUP and CUBE are supported with TUMBLE and HOP windows, \
                     not SESSION; aggregate each grouping of the sessions in its own query"
                );
            }
            group_columns.push(GroupColumn::GroupingId);
            grouping_set_keys(&group_exprs, &group_columns, &sets)?
        }
    };
    Ok(Some(WindowAggregateNode {
        input: plan,
        time_expr: Expr::Column(tracked.time),
        spec: assign.spec,
        partition_keys: tracked.partition.into_iter().map(Expr::Column).collect(),
        keys,
        aggregates: aggregate.aggr_expr.clone(),
        group_columns,
        grouping_sets,
        schema: aggregate.schema.clone(),
    }))
}

/// Most expressions a CUBE may take (2^n grouping sets).
const MAX_CUBE: usize = 12;

/// The grouping sets of `GROUPING SETS`, `ROLLUP` (every prefix) or `CUBE` (every subset).
fn expand_grouping_set(set: &GroupingSet) -> Result<Vec<Vec<Expr>>> {
    Ok(match set {
        GroupingSet::GroupingSets(sets) => sets.clone(),
        GroupingSet::Rollup(exprs) => (0..=exprs.len())
            .rev()
            .map(|n| exprs[..n].to_vec())
            .collect(),
        GroupingSet::Cube(exprs) => {
            if exprs.len() > MAX_CUBE {
                return plan_err!(
                    "CUBE of {} expressions makes {} grouping sets; at most {MAX_CUBE} \
                     expressions are supported",
                    exprs.len(),
                    1u64 << exprs.len().min(63)
                );
            }
            (0..1usize << exprs.len())
                .map(|mask| {
                    exprs
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| mask & (1 << i) != 0)
                        .map(|(_, e)| e.clone())
                        .collect()
                })
                .collect()
        }
    })
}

/// Which keys each grouping set leaves out, and its `__grouping_id`. Every set must hold the
/// window columns (Flink's rule: a row belongs to a window whatever it is grouped by).
fn grouping_set_keys(
    group_exprs: &[Expr],
    group_columns: &[GroupColumn],
    sets: &[Vec<Expr>],
) -> Result<Vec<GroupingSetKeys>> {
    let n = group_exprs.len();
    if n > 64 {
        return plan_err!("grouping sets over more than 64 expressions are not supported");
    }
    let mut seen: HashMap<Vec<bool>, u64> = HashMap::new();
    let mut out = Vec::with_capacity(sets.len());
    for set in sets {
        // Per group expression: left out of this set?
        let left_out: Vec<bool> = group_exprs.iter().map(|e| !set.contains(e)).collect();
        let mut absent = Vec::new();
        for (column, out_of_set) in group_columns.iter().zip(&left_out) {
            match column {
                GroupColumn::Window(field) if *out_of_set => {
                    return plan_err!(
                        "every grouping set of a window aggregation must hold the window \
                         columns; {} is missing from ({}). Write GROUP BY window_start, \
                         window_end, GROUPING SETS (...) (or ROLLUP / CUBE of the other keys)",
                        field.name(),
                        set.iter()
                            .map(|e| e.to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
                GroupColumn::Key(_) => absent.push(*out_of_set),
                _ => {}
            }
        }
        let semantic = left_out
            .iter()
            .fold(0u64, |acc, out| (acc << 1) | u64::from(*out));
        let ordinal = seen.entry(left_out).or_insert(0);
        let id = semantic | ordinal.checked_shl(n as u32).unwrap_or(0);
        *ordinal += 1;
        out.push(GroupingSetKeys { absent, id });
    }
    Ok(out)
}

/// The column an expression copies, looking through aliases.
fn column_of(expr: &Expr) -> Option<&Column> {
    match expr {
        Expr::Column(c) => Some(c),
        Expr::Alias(a) => column_of(&a.expr),
        _ => None,
    }
}

/// A GROUP BY over a window aggregation's output that keeps its `window_end` (see the module
/// docs).
fn rewrite_cascaded(aggregate: &Aggregate) -> Result<Option<WindowAggregateNode>> {
    // Walk down to the inner window aggregation, tracking where its window_end goes.
    let mut chain: Vec<&LogicalPlan> = Vec::new();
    let mut current = aggregate.input.as_ref();
    let inner = loop {
        match current {
            LogicalPlan::Extension(ext) => {
                match ext.node.as_any().downcast_ref::<WindowAggregateNode>() {
                    Some(inner) => break inner,
                    None => return Ok(None),
                }
            }
            LogicalPlan::Filter(Filter { input, .. })
            | LogicalPlan::SubqueryAlias(SubqueryAlias { input, .. }) => {
                chain.push(current);
                current = input.as_ref();
            }
            LogicalPlan::Projection(p) => {
                chain.push(current);
                current = p.input.as_ref();
            }
            _ => return Ok(None),
        }
    };
    let mut end = inner
        .group_columns
        .iter()
        .position(|g| *g == GroupColumn::Window(WindowField::End));
    let mut level = current;
    for node in chain.iter().rev() {
        if let LogicalPlan::Projection(p) = node {
            let schema = level.schema();
            end = end.and_then(|e| {
                p.expr.iter().position(|x| {
                    column_of(x).is_some_and(|c| schema.index_of_column(c).ok() == Some(e))
                })
            });
        }
        level = node;
    }
    let Some(end) = end else {
        return Ok(None);
    };
    let top_schema = aggregate.input.schema();
    let mut keys = Vec::new();
    let mut group_columns = Vec::new();
    let mut end_column = None;
    for expr in &aggregate.group_expr {
        if matches!(expr, Expr::GroupingSet(_)) {
            return Ok(None);
        }
        match expr {
            Expr::Column(c) if top_schema.index_of_column(c).ok() == Some(end) => {
                group_columns.push(GroupColumn::Window(WindowField::End));
                end_column = Some(c.clone());
            }
            _ => {
                group_columns.push(GroupColumn::Key(keys.len()));
                keys.push(expr.clone());
            }
        }
    }
    let Some(end_column) = end_column else {
        return Ok(None);
    };
    let one_ms = datafusion::logical_expr::lit(datafusion::common::ScalarValue::new_interval_mdn(
        0, 0, 1_000_000,
    ));
    Ok(Some(WindowAggregateNode {
        input: aggregate.input.as_ref().clone(),
        time_expr: Expr::Column(end_column) - one_ms,
        spec: WindowSpec::tumble(1, 0)?,
        partition_keys: Vec::new(),
        keys,
        aggregates: aggregate.aggr_expr.clone(),
        group_columns,
        grouping_sets: Vec::new(),
        schema: aggregate.schema.clone(),
    }))
}
