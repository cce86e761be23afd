//! The `UpdatingAggregateExec` plan node.

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

use super::UpdatingAggregation;
use super::stream::UpdatingAggregateStream;
use super::value_counts::Retraction;
use crate::changelog::ChangelogMode;
use crate::physical::message::MessageStream;
use crate::physical::streaming::{
    OperatorState, StreamingExec, changelog_mode, data_only, execute_input,
};
use crate::state::backend::StateBackend;

/// A GROUP BY without a window over a stream (see the module docs).
#[derive(Debug)]
pub struct UpdatingAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    def: UpdatingAggregation,
    /// Where the state lives: chosen by the planner ([`StreamingExec::with_state_backend`]).
    backend: StateBackend,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl UpdatingAggregateExec {
    /// Builds the node; `schema` is the output schema (group keys, then aggregates).
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        def: UpdatingAggregation,
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

    /// This node over an input that turned out to be a changelog (a join of streams the
    /// streaming planner made a regular join, with outer rows or retractions): the same with
    /// retracting accumulators; `None` if nothing changes. Refuses aggregates that depend on
    /// the order of rows, as the logical planner does for the changelogs it sees.
    pub fn retracting(&self) -> Result<Option<Self>> {
        if self.def.retracting_input || !changelog_mode(&self.input).is_updating() {
            return Ok(None);
        }
        for aggregate in &self.def.aggregates.aggregates {
            let ordered = !aggregate.order_bys().is_empty();
            if Retraction::of(aggregate.fun().name(), aggregate.is_distinct(), ordered)
                == Retraction::Impossible
            {
                return datafusion::common::plan_err!(
                    "{} over a changelog (here a join of streams whose result changes: an outer \
                     join's NULL-padded rows are taken back when a partner comes) is not \
                     supported: it depends on the order of its rows. Use an aggregate that does \
                     not depend on order (COUNT, SUM, MIN, MAX)",
                    aggregate.name()
                );
            }
        }
        Ok(Some(Self {
            input: Arc::clone(&self.input),
            def: UpdatingAggregation {
                retracting_input: true,
                ..self.def.clone()
            },
            backend: self.backend.clone(),
            properties: Arc::clone(&self.properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn keys(&self) -> Vec<Arc<dyn PhysicalExpr>> {
        self.def.keys.iter().map(|(e, _)| Arc::clone(e)).collect()
    }

    /// The state (see [`StreamingExec::state`]): per group key, for as long as the group holds
    /// rows.
    /// This aggregate with its groups dropped when no rows came for `ttl` (see
    /// [`crate::state::ttl`]).
    pub fn with_state_ttl(&self, ttl: Option<std::time::Duration>) -> Self {
        Self {
            input: Arc::clone(&self.input),
            def: UpdatingAggregation {
                ttl,
                ..self.def.clone()
            },
            backend: self.backend.clone(),
            properties: Arc::clone(&self.properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }
    }

    fn state_declaration(&self) -> OperatorState {
        OperatorState {
            backend: self.backend.clone(),
            keys: self.def.keys.iter().map(|(_, n)| n.clone()).collect(),
            freed: if self.def.retracting_input {
                "when its last row is retracted"
            } else {
                "never: it grows with the number of distinct keys"
            },
        }
    }
}

impl DisplayAs for UpdatingAggregateExec {
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
            "UpdatingAggregateExec: keys=[{}], aggr=[{}], partitions={}, input={}, \
             changelog={}, state={}",
            keys.join(", "),
            aggs.join(", "),
            self.properties.partitioning.partition_count(),
            if self.def.retracting_input {
                "retract"
            } else {
                "append"
            },
            ChangelogMode::Retract,
            self.state_declaration(),
        )?;
        crate::state::ttl::fmt_ttl(f, self.def.ttl)
    }
}

impl ExecutionPlan for UpdatingAggregateExec {
    fn name(&self) -> &str {
        "UpdatingAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn input_distribution_requirements(&self) -> InputDistributionRequirements {
        let keys = self.keys();
        InputDistributionRequirements::new(vec![if keys.is_empty() {
            Distribution::SinglePartition
        } else {
            Distribution::KeyPartitioned(keys)
        }])
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![!self.def.keys.is_empty()]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for (e, _) in &self.def.keys {
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
            return internal_err!("UpdatingAggregateExec needs exactly one child");
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

impl StreamingExec for UpdatingAggregateExec {
    fn checkpointed(&self) -> bool {
        true
    }

    fn changelog(&self) -> ChangelogMode {
        ChangelogMode::Retract
    }

    fn accepts_changes(&self) -> bool {
        self.def.retracting_input
    }

    fn state(&self) -> Option<OperatorState> {
        Some(self.state_declaration())
    }

    fn with_state_backend(&self, backend: &StateBackend) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let mut node = Self::try_new(Arc::clone(&self.input), self.def.clone(), self.schema())?;
        node.backend = backend.clone();
        Ok(Some(Arc::new(node)))
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let input = execute_input(&self.input, partition, Arc::clone(&context))?;
        UpdatingAggregateStream::open(
            self,
            &self.def,
            &self.backend,
            &self.metrics,
            self.input.schema(),
            input,
            partition,
            &context,
        )
    }
}
