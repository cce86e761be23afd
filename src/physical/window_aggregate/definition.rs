//! `WindowAggregation`: what a window aggregation computes, as the planner built it, and what
//! one partition of it is opened with.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;

use crate::physical::aggregation::AggregateSet;
use crate::physical::window_spec::{GroupColumn, GroupingSetKeys, WindowSpec};
use crate::state::backend::StateBackend;

/// What a window aggregation computes, over its input's columns.
#[derive(Debug, Clone)]
pub struct WindowAggregation {
    /// The window.
    pub spec: WindowSpec,
    /// Event time of a row.
    pub time_expr: Arc<dyn PhysicalExpr>,
    /// The time is a `PROCTIME()` attribute: rows go to the window holding the clock when
    /// they arrive, and windows fire when the clock passes their end (TUMBLE and HOP only).
    pub proctime: bool,
    /// Group keys other than the window columns, with their output names.
    pub keys: Vec<(Arc<dyn PhysicalExpr>, String)>,
    /// SESSION: sessions are tracked per value of these expressions.
    pub partition_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The aggregate functions.
    pub aggregates: Arc<AggregateSet>,
    /// Output order of keys and window columns.
    pub group_columns: Vec<GroupColumn>,
    /// `GROUPING SETS` / `ROLLUP` / `CUBE`: each row counts once per set, under the set's
    /// keys (the others NULL) and its `__grouping_id`; empty for a plain GROUP BY.
    pub grouping_sets: Vec<GroupingSetKeys>,
    /// The `__grouping_id` column (with grouping sets), kept as the last group key.
    pub grouping_id: Option<Field>,
}

impl WindowAggregation {
    /// Number of key columns of the state: the keys, and the grouping id with grouping sets.
    pub fn state_keys(&self) -> usize {
        self.keys.len() + usize::from(self.grouping_id.is_some())
    }
}

/// What a partition's stream is opened with.
pub(super) struct OpenPartition<'a> {
    /// The plan node (for the driver: its name and operator id).
    pub exec: &'a dyn ExecutionPlan,
    /// What it computes.
    pub def: &'a WindowAggregation,
    /// Where its state lives.
    pub backend: &'a StateBackend,
    /// The node's metrics.
    pub metrics: &'a ExecutionPlanMetricsSet,
    /// The input's schema.
    pub input_schema: SchemaRef,
    /// The partition opened.
    pub partition: usize,
    /// The task's context.
    pub context: &'a Arc<TaskContext>,
}
