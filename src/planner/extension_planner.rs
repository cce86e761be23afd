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
use datafusion::common::{DFSchemaRef, Result, internal_err};
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNode};
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

#[async_trait]
impl QueryPlanner for StreamingQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session_state: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let planner = DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(
            StreamingExtensionPlanner,
        )]);
        planner
            .create_physical_plan(logical_plan, session_state)
            .await
    }
}
