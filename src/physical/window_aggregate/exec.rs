//! The `WindowAggregateExec` plan node.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{Distribution, EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    InputDistributionRequirements, PlanProperties,
};

use super::session::SessionAggregateStream;
use super::stream::WindowAggregateStream;
use crate::physical::aggregation::AggregateSet;
use crate::physical::message::MessageStream;
use crate::physical::streaming::{StreamingExec, data_only, execute_input, window_time_columns};
use crate::physical::window_spec::WindowField;
use crate::physical::window_spec::{GroupColumn, GroupingSetKeys};
use crate::physical::window_spec::{WindowKind, WindowSpec, format_ms};

/// What a window aggregation computes, over its input's columns.
#[derive(Debug, Clone)]
pub struct WindowAggregation {
    /// The window.
    pub spec: WindowSpec,
    /// Event time of a row.
    pub time_expr: Arc<dyn PhysicalExpr>,
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

/// TUMBLE / HOP / SESSION aggregation (see the module docs).
#[derive(Debug)]
pub struct WindowAggregateExec {
    pub(super) input: Arc<dyn ExecutionPlan>,
    pub(super) def: WindowAggregation,
    properties: Arc<PlanProperties>,
    pub(super) metrics: ExecutionPlanMetricsSet,
}

impl WindowAggregateExec {
    /// Builds the node; `schema` is the output schema (group columns, then aggregates).
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        def: WindowAggregation,
        schema: SchemaRef,
    ) -> Result<Self> {
        let partitions = input.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            input.boundedness(),
        );
        Ok(Self {
            input,
            def,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The window.
    pub fn spec(&self) -> &WindowSpec {
        &self.def.spec
    }

    /// True for SESSION windows.
    pub fn is_session(&self) -> bool {
        matches!(self.def.spec.kind, WindowKind::Session { .. })
    }

    /// Expressions whose values must meet in one task: the session partition keys for
    /// SESSION, the group keys otherwise. With grouping sets a row counts in groups of
    /// several key combinations (one with no key at all for `()`), so every row meets in one
    /// task.
    fn distribution_keys(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        if self.is_session() {
            self.def.partition_keys.clone()
        } else if !self.def.grouping_sets.is_empty() {
            Vec::new()
        } else {
            self.def.keys.iter().map(|(e, _)| Arc::clone(e)).collect()
        }
    }
}

impl DisplayAs for WindowAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<&str> = self.def.keys.iter().map(|(_, n)| n.as_str()).collect();
        let aggs: Vec<String> = self
            .def
            .aggregates
            .aggregates
            .iter()
            .map(|a| a.name().to_string())
            .collect();
        write!(
            f,
            "WindowAggregateExec: {} on {}",
            self.def.spec, self.def.time_expr
        )?;
        if self.is_session() {
            let parts: Vec<String> = self
                .def
                .partition_keys
                .iter()
                .map(|e| e.to_string())
                .collect();
            write!(f, ", partition by=[{}]", parts.join(", "))?;
        } else {
            write!(f, ", slice={}", format_ms(self.def.spec.slice_size()))?;
        }
        if !self.def.grouping_sets.is_empty() {
            write!(f, ", grouping sets={}", self.def.grouping_sets.len())?;
        }
        write!(
            f,
            ", keys=[{}], aggr=[{}], partitions={}, emit=on watermark, late=drop",
            keys.join(", "),
            aggs.join(", "),
            self.properties.partitioning.partition_count()
        )
    }
}

impl ExecutionPlan for WindowAggregateExec {
    fn name(&self) -> &str {
        "WindowAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        let keys = self.distribution_keys();
        InputDistributionRequirements::new(vec![if keys.is_empty() {
            Distribution::SinglePartition
        } else {
            Distribution::KeyPartitioned(keys)
        }])
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![!self.distribution_keys().is_empty()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let mut exprs: Vec<&Arc<dyn PhysicalExpr>> = vec![&self.def.time_expr];
        exprs.extend(self.def.keys.iter().map(|(e, _)| e));
        exprs.extend(self.def.partition_keys.iter());
        for e in exprs {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (Some(input), true) = (children.pop(), children.is_empty()) else {
            return internal_err!("WindowAggregateExec needs exactly one child");
        };
        Ok(Arc::new(Self::try_new(
            input,
            self.def.clone(),
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

impl StreamingExec for WindowAggregateExec {
    fn checkpointed(&self) -> bool {
        true
    }

    /// Output column index -> window column.
    fn window_columns(&self) -> std::collections::HashMap<usize, WindowField> {
        self.def
            .group_columns
            .iter()
            .enumerate()
            .filter_map(|(i, g)| match g {
                GroupColumn::Window(field) => Some((i, *field)),
                GroupColumn::Key(_) | GroupColumn::GroupingId => None,
            })
            .collect()
    }

    fn time_attributes(&self) -> std::collections::HashSet<usize> {
        window_time_columns(&self.window_columns())
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let input = execute_input(&self.input, partition, Arc::clone(&context))?;
        if self.is_session() {
            SessionAggregateStream::open(self, input, partition, &context)
        } else {
            WindowAggregateStream::open(self, input, partition, &context)
        }
    }
}
