//! The plan node of a top-N: what it keeps and emits ([`TopN`]), how EXPLAIN shows it, and the
//! partitions it opens (see the module docs of `top_n`).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err, plan_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{
    EquivalenceProperties, Partitioning, PhysicalExpr, PhysicalExprRef, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};

use datafusion::physical_expr::expressions::Column;

use super::stream::{Ranking, TopNStream};
use crate::changelog::ChangelogMode;
use crate::physical::message::MessageStream;
use crate::physical::operator::Driver;
use crate::physical::streaming::{
    OperatorState, StreamingExec, changelog_mode, data_only, execute_input, time_attributes,
};
use crate::state::backend::StateBackend;
use crate::state::keyed_db::KeyedDb;
use crate::state::rocks::RowCodec;
use crate::state::ttl::fmt_ttl;

/// What a top-N keeps and emits.
#[derive(Debug, Clone)]
pub struct TopN {
    /// `PARTITION BY` (none: one partition, a global top-N).
    pub partition_by: Vec<PhysicalExprRef>,
    /// `ORDER BY`.
    pub order_by: Vec<PhysicalSortExpr>,
    /// The first rank emitted (1-based).
    pub rank_start: u64,
    /// The last rank emitted.
    pub rank_end: u64,
    /// The output ends with the rank (`ROW_NUMBER()`, `UInt64`).
    pub rank_column: bool,
    /// Ties go to the later row (deduplication keeping the last row), else to the earlier.
    pub later_wins_ties: bool,
    /// `table.exec.state.ttl`: a key not written for this long is dropped (see
    /// [`crate::state::ttl`]).
    pub ttl: Option<Duration>,
}

/// See the module docs.
#[derive(Debug)]
pub struct TopNExec {
    input: Arc<dyn ExecutionPlan>,
    def: TopN,
    /// Where the state lives: chosen by the planner ([`StreamingExec::with_state_backend`]).
    backend: StateBackend,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl TopNExec {
    /// The top-N of `input` (partitioned by `def.partition_by`) as `schema`: the input's
    /// columns, then the rank if `def.rank_column`.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, def: TopN, schema: SchemaRef) -> Result<Self> {
        let columns = input.schema().fields().len() + usize::from(def.rank_column);
        if schema.fields().len() != columns {
            return internal_err!("TopNExec: {columns} output columns, schema has {schema}");
        }
        if def.rank_start < 1 || def.rank_end < def.rank_start {
            return plan_err!(
                "a top-N needs a rank range starting at 1 or later and not empty, got {} to {}",
                def.rank_start,
                def.rank_end
            );
        }
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(input.output_partitioning().partition_count()),
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

    /// What it keeps and emits.
    pub fn def(&self) -> &TopN {
        &self.def
    }

    /// The input, partitioned by the partition keys.
    pub fn input(&self) -> &Arc<dyn ExecutionPlan> {
        &self.input
    }

    /// True if the input only appends: a partition then keeps only its first `rank_end` rows.
    fn input_appends(&self) -> bool {
        !changelog_mode(&self.input).is_updating()
    }

    /// True for a deduplication keeping each key's last row by event time (`rn = 1` over
    /// `ORDER BY ts DESC`, `ts` an event-time column) over rows that only append: Flink's
    /// versioned view. Each row it emits is the input row just come, so its output keeps the
    /// input's event time and watermark (a temporal join can read it as a versioned table).
    fn keeps_event_time(&self) -> bool {
        let def = &self.def;
        let [order] = def.order_by.as_slice() else {
            return false;
        };
        def.rank_start == 1
            && def.rank_end == 1
            && def.later_wins_ties
            && order.options.descending
            && self.input_appends()
            && order
                .expr
                .downcast_ref::<Column>()
                .is_some_and(|c| time_attributes(&self.input).contains(&c.index()))
    }

    fn state_declaration(&self) -> OperatorState {
        OperatorState {
            backend: self.backend.clone(),
            keys: self
                .def
                .partition_by
                .iter()
                .map(|e| e.to_string())
                .collect(),
            freed: if self.input_appends() {
                "never: it keeps the first rows of every partition key, and grows with the \
                 number of keys"
            } else {
                "only when its rows are taken back: it grows with the input"
            },
        }
    }
}

impl DisplayAs for TopNExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let partition_by: Vec<String> = self
            .def
            .partition_by
            .iter()
            .map(|e| e.to_string())
            .collect();
        let order_by: Vec<String> = self.def.order_by.iter().map(|e| e.to_string()).collect();
        write!(
            f,
            "TopNExec: partition_by=[{}], order_by=[{}], ranks={}..={}{}{}, changelog={}, \
             state={}",
            partition_by.join(", "),
            order_by.join(", "),
            self.def.rank_start,
            self.def.rank_end,
            if self.def.rank_column {
                ", rank column"
            } else {
                ""
            },
            if self.def.later_wins_ties {
                ", ties to the later row"
            } else {
                ""
            },
            ChangelogMode::Retract,
            self.state_declaration()
        )?;
        fmt_ttl(f, self.def.ttl)
    }
}

impl ExecutionPlan for TopNExec {
    fn name(&self) -> &str {
        "TopNExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let sorted = self.def.order_by.iter().map(|s| &s.expr);
        for e in self.def.partition_by.iter().chain(sorted) {
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
            return internal_err!("TopNExec needs exactly one child");
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

impl StreamingExec for TopNExec {
    fn checkpointed(&self) -> bool {
        true
    }

    fn state(&self) -> Option<OperatorState> {
        Some(self.state_declaration())
    }

    fn changelog(&self) -> ChangelogMode {
        ChangelogMode::Retract
    }

    fn accepts_changes(&self) -> bool {
        true
    }

    /// The input's event-time columns for a deduplication keeping the last row by event time
    /// (see `keeps_event_time`); none otherwise.
    fn time_attributes(&self) -> HashSet<usize> {
        if self.keeps_event_time() {
            time_attributes(&self.input)
        } else {
            HashSet::new()
        }
    }

    fn with_state_backend(&self, backend: &StateBackend) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let mut node = Self::try_new(Arc::clone(&self.input), self.def.clone(), self.schema())?;
        node.backend = backend.clone();
        Ok(Some(Arc::new(node)))
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let input = execute_input(&self.input, partition, Arc::clone(&context))?;
        let schema = self.input.schema();
        let key_types = self
            .def
            .partition_by
            .iter()
            .map(|e| e.data_type(&schema))
            .collect::<Result<Vec<DataType>>>()?;
        let types = schema
            .fields()
            .iter()
            .map(|f| f.data_type().clone())
            .collect();
        let stream = TopNStream::new(
            Ranking::try_new(&self.def, &schema)?,
            RowCodec::try_new(key_types, "partition keys")?,
            RowCodec::try_new(types, "the rows of a top-N")?,
            schema,
            self.schema(),
            !self.input_appends(),
        )
        .with_event_time(self.keeps_event_time());
        let stream = match self.backend.rocksdb("top-n", partition) {
            Some((root, label)) => stream.with_rocksdb(
                KeyedDb::try_new_with_ttl(&root, &label, 1, self.def.ttl)?,
                partition,
                self.properties.partitioning.partition_count(),
            ),
            None => stream,
        };
        Driver::open(
            self,
            &self.metrics,
            vec![input],
            partition,
            &context,
            stream,
        )
    }
}
