//! The `WindowAggregateExec` plan node.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
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

use super::definition::{OpenPartition, WindowAggregation};
use super::session::SessionAggregateStream;
use super::stream::WindowAggregateStream;
use crate::physical::message::MessageStream;
use crate::physical::streaming::{
    OperatorState, StreamingExec, data_only, execute_input, window_time_columns,
};
use crate::physical::window_spec::{GroupColumn, WindowField, WindowKind, WindowSpec, format_ms};
use crate::state::backend::StateBackend;

/// TUMBLE / HOP / SESSION aggregation (see the module docs).
#[derive(Debug)]
pub struct WindowAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    def: WindowAggregation,
    /// Where the state lives: chosen by the planner ([`StreamingExec::with_state_backend`]).
    backend: StateBackend,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
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
            backend: StateBackend::Memory,
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

impl WindowAggregateExec {
    /// The state (see [`StreamingExec::state`]): per group key and window (per session key
    /// for SESSION), freed when the window fires.
    fn state_declaration(&self) -> OperatorState {
        let mut keys: Vec<String> = self
            .def
            .partition_keys
            .iter()
            .map(|e| e.to_string())
            .collect();
        keys.extend(self.def.keys.iter().map(|(_, n)| n.clone()));
        keys.push(
            if self.is_session() {
                "session"
            } else {
                "window"
            }
            .to_string(),
        );
        OperatorState {
            backend: self.backend.clone(),
            keys,
            freed: if self.is_session() {
                "when the watermark passes the session's end"
            } else if self.def.proctime {
                "when the clock passes the window's end"
            } else {
                "when the watermark passes the window's end"
            },
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
        if self.def.proctime {
            f.write_str(" (processing time)")?;
        }
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
            ", keys=[{}], aggr=[{}], partitions={}, emit={}, state={}",
            keys.join(", "),
            aggs.join(", "),
            self.properties.partitioning.partition_count(),
            if self.def.proctime {
                "on the clock"
            } else {
                "on watermark, late=drop"
            },
            self.state_declaration(),
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
        let mut node = Self::try_new(input, self.def.clone(), self.schema())?;
        node.backend = self.backend.clone();
        Ok(Arc::new(node))
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

    fn state(&self) -> Option<OperatorState> {
        Some(self.state_declaration())
    }

    fn with_state_backend(&self, backend: &StateBackend) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(Some(Arc::new(Self {
            input: Arc::clone(&self.input),
            def: self.def.clone(),
            backend: backend.clone(),
            properties: Arc::clone(&self.properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })))
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let input = execute_input(&self.input, partition, Arc::clone(&context))?;
        let open = OpenPartition {
            exec: self,
            def: &self.def,
            backend: &self.backend,
            metrics: &self.metrics,
            input_schema: self.input.schema(),
            partition,
            context: &context,
        };
        if self.is_session() {
            SessionAggregateStream::open(open, input)
        } else {
            WindowAggregateStream::open(open, input)
        }
    }
}
