//! `StreamingExtensionPlanner`: logical streaming nodes to streaming physical operators.
//!
//! `WindowAssign` becomes `WindowAssignExec`; `WindowAggregate` becomes `WindowAggregateExec`
//! with its keys, time and partition expressions compiled by DataFusion and its aggregates built
//! exactly as DataFusion builds them for `AggregateExec` (so every aggregate function, FILTER,
//! DISTINCT and ordered aggregates work).

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, Result, internal_err, plan_err};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode, WriteOp};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::LoweredAggregateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use super::updating_aggregate_node::UpdatingAggregateNode;
use super::window_aggregate_node::{GroupColumn, WindowAggregateNode};
use super::window_assign_node::WindowAssignNode;
use crate::physical::aggregation::AggregateSet;
use crate::physical::updating_aggregate::{UpdatingAggregateExec, UpdatingAggregation};
use crate::physical::window_aggregate::{WindowAggregateExec, WindowAggregation};
use crate::physical::window_assign::WindowAssignExec;

/// Plans Sabot's logical extension nodes (see the module docs).
#[derive(Debug, Default)]
pub struct StreamingExtensionPlanner;

#[async_trait]
impl ExtensionPlanner for StreamingExtensionPlanner {
    async fn plan_extension(
        &self,
        planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        logical_inputs: &[&LogicalPlan],
        physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let (Some(logical_input), Some(physical_input)) =
            (logical_inputs.first(), physical_inputs.first())
        else {
            return Ok(None);
        };
        let input_schema = logical_input.schema();
        let compile = |e: &Expr| -> Result<Arc<dyn PhysicalExpr>> {
            planner.create_physical_expr(e, input_schema, session, planning_ctx)
        };
        let physical_input_schema = physical_input.schema();
        let lowering = Lowering {
            input_schema,
            physical_input_schema: &physical_input_schema,
            session,
            planning_ctx,
        };

        if let Some(assign) = node.as_any().downcast_ref::<WindowAssignNode>() {
            let time = compile(&Expr::Column(assign.time_column.clone()))?;
            let schema = Arc::clone(assign.schema().inner());
            return Ok(Some(Arc::new(WindowAssignExec::try_new(
                Arc::clone(physical_input),
                assign.spec,
                time,
                schema,
            )?)));
        }

        if let Some(agg) = node.as_any().downcast_ref::<WindowAggregateNode>() {
            let time = compile(&agg.time_expr)?;
            let (_, time_field) =
                datafusion::logical_expr::ExprSchemable::to_field(&agg.time_expr, input_schema)?;
            let proctime = crate::functions::proctime::is_proctime_field(&time_field);
            if proctime
                && matches!(
                    agg.spec.kind,
                    crate::physical::window_spec::WindowKind::Session { .. }
                )
            {
                return plan_err!(
                    "SESSION windows over a processing-time attribute (PROCTIME()) are not \
                     supported; use TUMBLE or HOP over it, or a SESSION window over an event-time \
                     column with a WATERMARK"
                );
            }
            let output_schema = agg.schema.inner();
            let mut keys = Vec::with_capacity(agg.keys.len());
            for (position, column) in agg.group_columns.iter().enumerate() {
                if let GroupColumn::Key(k) = column {
                    let Some(expr) = agg.keys.get(*k) else {
                        return internal_err!("window aggregate key {k} missing");
                    };
                    keys.push((compile(expr)?, output_schema.field(position).name().clone()));
                }
            }
            let partition_keys = agg
                .partition_keys
                .iter()
                .map(&compile)
                .collect::<Result<Vec<_>>>()?;
            let set = lower_aggregates(&agg.aggregates, lowering)?;
            let grouping_id = agg
                .group_columns
                .iter()
                .position(|c| *c == GroupColumn::GroupingId)
                .map(|i| output_schema.field(i).clone());
            let def = WindowAggregation {
                spec: agg.spec,
                time_expr: time,
                proctime,
                keys,
                partition_keys,
                aggregates: set,
                group_columns: agg.group_columns.clone(),
                grouping_sets: agg.grouping_sets.clone(),
                grouping_id,
            };
            return Ok(Some(Arc::new(WindowAggregateExec::try_new(
                Arc::clone(physical_input),
                def,
                Arc::clone(output_schema),
            )?)));
        }

        if let Some(agg) = node.as_any().downcast_ref::<UpdatingAggregateNode>() {
            let output_schema = agg.schema.inner();
            let keys = agg
                .keys
                .iter()
                .enumerate()
                .map(|(i, e)| Ok((compile(e)?, output_schema.field(i).name().clone())))
                .collect::<Result<Vec<_>>>()?;
            let def = UpdatingAggregation {
                keys,
                aggregates: lower_aggregates(&agg.aggregates, lowering)?,
                retracting_input: agg.retracting_input,
                // Set by the streaming planner (`table.exec.state.ttl`).
                ttl: None,
            };
            return Ok(Some(Arc::new(UpdatingAggregateExec::try_new(
                Arc::clone(physical_input),
                def,
                Arc::clone(output_schema),
            )?)));
        }
        Ok(None)
    }
}

/// What lowering an aggregate expression needs.
#[derive(Clone, Copy)]
struct Lowering<'a> {
    input_schema: &'a DFSchemaRef,
    physical_input_schema: &'a SchemaRef,
    session: &'a dyn Session,
    planning_ctx: &'a PhysicalPlanningContext,
}

/// The aggregates `exprs` built exactly as DataFusion builds them for `AggregateExec`.
fn lower_aggregates(exprs: &[Expr], lowering: Lowering<'_>) -> Result<Arc<AggregateSet>> {
    let mut aggregates = Vec::with_capacity(exprs.len());
    let mut filters = Vec::with_capacity(exprs.len());
    for e in exprs {
        let lowered = LoweredAggregateBuilder::new(
            e,
            lowering.input_schema,
            lowering.physical_input_schema,
            lowering.session.execution_props(),
            lowering.planning_ctx,
        )
        .build()?;
        aggregates.push(lowered.aggregate);
        filters.push(lowered.filter);
    }
    Ok(Arc::new(AggregateSet::try_new(aggregates, filters)?))
}

/// DataFusion's physical planner plus [`StreamingExtensionPlanner`].
#[derive(Debug, Default)]
pub struct StreamingQueryPlanner;

/// Checks the `UPDATE` and `DELETE` statements of `plan`. DataFusion hands a table only the
/// conditions it can take from the statement (those on the table's own columns), and drops the
/// others: a subquery (`WHERE id IN (SELECT ...)`), `UPDATE ... FROM`'s join, and a WHERE the
/// optimizer found always false, whose plan becomes empty, would then change every row. So
/// those are refused, and a statement whose plan is empty changes nothing (returned as the
/// plan to run).
fn check_dml(plan: &LogicalPlan) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let mut nothing = None;
    plan.apply(|node| {
        let LogicalPlan::Dml(dml) = node else {
            return Ok(TreeNodeRecursion::Continue);
        };
        let what = match dml.op {
            WriteOp::Delete => "DELETE",
            WriteOp::Update => "UPDATE",
            _ => return Ok(TreeNodeRecursion::Continue),
        };
        let mut empty = false;
        dml.input.apply(|input| {
            match input {
                LogicalPlan::Projection(_)
                | LogicalPlan::SubqueryAlias(_)
                | LogicalPlan::TableScan(_) => {}
                LogicalPlan::Filter(filter) if !filter.predicate.contains_outer() => {
                    if filter.predicate.exists(|e| {
                        Ok(matches!(
                            e,
                            Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
                        ))
                    })? {
                        return plan_err!(
                            "{what} with a subquery in its WHERE is not supported yet; write the \
                             condition on the table's own columns"
                        );
                    }
                }
                LogicalPlan::EmptyRelation(_) => empty = true,
                other => {
                    return plan_err!(
                        "{what} of table {} can only have conditions on the table's own \
                         columns: a subquery, a join (UPDATE ... FROM) or {} in it is not \
                         supported yet",
                        dml.table_name,
                        other.display()
                    );
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        if empty && std::ptr::eq(node, plan) {
            let change: crate::physical::dml::Change = Arc::new(|| Ok(0));
            nothing = Some(Arc::new(crate::physical::dml::DmlExec::new(
                format!("{what} {} (no row matches)", dml.table_name),
                change,
            )) as Arc<dyn ExecutionPlan>);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(nothing)
}

#[async_trait]
impl QueryPlanner for StreamingQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if let Some(nothing) = check_dml(logical_plan)? {
            return Ok(nothing);
        }
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(
            StreamingExtensionPlanner,
        )]);
        planner
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}
