//! The plan node of an OVER aggregation: what it computes ([`OverAggregation`]), how EXPLAIN
//! shows it, and the partitions it opens (see the module docs of `over_aggregate`).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::window::WindowExpr;
use datafusion::physical_expr::{
    EquivalenceProperties, Partitioning, PhysicalExprRef, PhysicalSortExpr,
};
use datafusion::physical_plan::execution_plan::EmissionType;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};

use super::changelog::ChangelogOverStream;
use super::rocks::RocksState;
use super::stream::OverStream;
use crate::changelog::ChangelogMode;
use crate::physical::message::MessageStream;
use crate::physical::operator::Driver;
use crate::physical::streaming::{
    OperatorState, StreamingExec, data_only, execute_input, time_attributes, window_columns,
};
use crate::state::backend::StateBackend;
use crate::state::keyed_db::KeyedDb;
use crate::state::rocks::RowCodec;

/// What an OVER aggregation computes (the planner checked its frames).
#[derive(Debug, Clone)]
pub struct OverAggregation {
    /// The aggregates, each with its frame; they share `PARTITION BY` and `ORDER BY`.
    pub exprs: Vec<Arc<dyn WindowExpr>>,
    /// `PARTITION BY` (none: one partition).
    pub partition_by: Vec<PhysicalExprRef>,
    /// How rows are ordered and when they come out.
    pub order: OverOrder,
    /// `table.exec.state.ttl`: a key no rows came for this long is dropped (see
    /// [`crate::state::ttl`]).
    pub ttl: Option<std::time::Duration>,
}

/// How an OVER aggregation orders its rows, and when they come out.
#[derive(Debug, Clone)]
pub enum OverOrder {
    /// An appending input ordered by event time: each row comes out once, when the watermark
    /// passes it (Flink's semantics).
    EventTime(EventTimeFrames),
    /// A changelog ordered by `ORDER BY`: each row comes out as it arrives, and its values are
    /// updated (`-U`, `+U`) as rows come into and leave its frame.
    Changelog(ChangelogFrames),
}

/// The order and reach of frames over an appending input.
#[derive(Debug, Clone)]
pub struct EventTimeFrames {
    /// The event time the rows are ordered by (`ORDER BY`, ascending).
    pub time: PhysicalExprRef,
    /// The most rows a `ROWS n PRECEDING` frame reaches back.
    pub keep_rows: usize,
    /// The longest interval a `RANGE ... PRECEDING` frame reaches back, in milliseconds.
    pub keep_ms: i64,
}

/// The order and reach of `ROWS` frames over a changelog.
#[derive(Debug, Clone)]
pub struct ChangelogFrames {
    /// `ORDER BY`, any columns and directions.
    pub order_by: Vec<PhysicalSortExpr>,
    /// The most rows a frame reaches back (`n PRECEDING`).
    pub back: usize,
    /// The most rows a frame reaches ahead (`n FOLLOWING`).
    pub ahead: usize,
}

/// See the module docs.
#[derive(Debug)]
pub struct OverAggregateExec {
    input: Arc<dyn ExecutionPlan>,
    def: OverAggregation,
    /// Where the state lives: chosen by the planner ([`StreamingExec::with_state_backend`]).
    backend: StateBackend,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl OverAggregateExec {
    /// The OVER aggregation of `input` (partitioned by `def.partition_by`) as `schema`: the
    /// input's columns, then one per aggregate.
    pub fn try_new(
        input: Arc<dyn ExecutionPlan>,
        def: OverAggregation,
        schema: SchemaRef,
    ) -> Result<Self> {
        let columns = input.schema().fields().len() + def.exprs.len();
        if schema.fields().len() != columns {
            return internal_err!(
                "OverAggregateExec: {columns} output columns, schema has {schema}"
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

    fn state_declaration(&self) -> OperatorState {
        OperatorState {
            backend: self.backend.clone(),
            keys: self
                .def
                .partition_by
                .iter()
                .map(|e| e.to_string())
                .collect(),
            freed: match self.def.order {
                OverOrder::EventTime(_) => {
                    "when the watermark passes a row's time and its frames no longer reach it"
                }
                OverOrder::Changelog(_) => {
                    "only when its rows are taken back: it holds every row of its changelog \
                     input"
                }
            },
        }
    }
}

impl DisplayAs for OverAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let partition_by: Vec<String> = self
            .def
            .partition_by
            .iter()
            .map(|e| e.to_string())
            .collect();
        let aggregates: Vec<String> = self
            .def
            .exprs
            .iter()
            .map(|e| e.name().to_string())
            .collect();
        let (order_by, emit) = match &self.def.order {
            OverOrder::EventTime(frames) => (
                frames.time.to_string(),
                "emit=on watermark, late=drop".to_string(),
            ),
            OverOrder::Changelog(frames) => {
                let order_by: Vec<String> = frames.order_by.iter().map(|s| s.to_string()).collect();
                let emit = format!("emit=on change, changelog={}", ChangelogMode::Retract);
                (order_by.join(", "), emit)
            }
        };
        write!(
            f,
            "OverAggregateExec: partition_by=[{}], order_by=[{order_by}], aggr=[{}], {emit}, \
             state={}",
            partition_by.join(", "),
            aggregates.join(", "),
            self.state_declaration()
        )?;
        crate::state::ttl::fmt_ttl(f, self.def.ttl)
    }
}

impl ExecutionPlan for OverAggregateExec {
    fn name(&self) -> &str {
        "OverAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&PhysicalExprRef) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let arguments: Vec<PhysicalExprRef> = self
            .def
            .exprs
            .iter()
            .flat_map(|e| e.expressions())
            .collect();
        let order: Vec<PhysicalExprRef> = match &self.def.order {
            OverOrder::EventTime(frames) => vec![Arc::clone(&frames.time)],
            OverOrder::Changelog(frames) => frames
                .order_by
                .iter()
                .map(|s| Arc::clone(&s.expr))
                .collect(),
        };
        let all = self
            .def
            .partition_by
            .iter()
            .chain(order.iter())
            .chain(arguments.iter());
        for e in all {
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
            return internal_err!("OverAggregateExec needs exactly one child");
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

impl StreamingExec for OverAggregateExec {
    fn checkpointed(&self) -> bool {
        true
    }

    fn state(&self) -> Option<OperatorState> {
        Some(self.state_declaration())
    }

    /// Over a changelog, values change: the output retracts.
    fn changelog(&self) -> ChangelogMode {
        match self.def.order {
            OverOrder::EventTime(_) => ChangelogMode::Append,
            OverOrder::Changelog(_) => ChangelogMode::Retract,
        }
    }

    fn accepts_changes(&self) -> bool {
        matches!(self.def.order, OverOrder::Changelog(_))
    }

    /// Over an appending input, the input's columns come first and keep their event time
    /// (over a changelog, rows of any age can still change).
    fn time_attributes(&self) -> std::collections::HashSet<usize> {
        match self.def.order {
            OverOrder::EventTime(_) => time_attributes(&self.input),
            OverOrder::Changelog(_) => Default::default(),
        }
    }

    /// And their window bounds.
    fn window_columns(
        &self,
    ) -> std::collections::HashMap<usize, crate::physical::window_spec::WindowField> {
        match self.def.order {
            OverOrder::EventTime(_) => window_columns(&self.input),
            OverOrder::Changelog(_) => Default::default(),
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
        let keys = RowCodec::try_new(key_types, "partition keys")?;
        let rows = RowCodec::try_new(types, "the rows of an OVER aggregation")?;
        let inputs = vec![input];
        let rocks = match self.backend.rocksdb("over", partition) {
            Some((root, label)) => Some(RocksState::new(
                KeyedDb::try_new_with_ttl(&root, &label, 2, self.def.ttl)?,
                partition,
                self.properties.partitioning.partition_count(),
            )),
            None => None,
        };
        match &self.def.order {
            OverOrder::EventTime(frames) => {
                let mut stream = OverStream::new(
                    self.def.clone(),
                    frames.clone(),
                    keys,
                    rows,
                    &schema,
                    self.schema(),
                );
                stream.rocks = rocks;
                Driver::open(self, &self.metrics, inputs, partition, &context, stream)
            }
            OverOrder::Changelog(frames) => {
                let mut stream = ChangelogOverStream::try_new(
                    self.def.clone(),
                    frames.clone(),
                    keys,
                    rows,
                    &schema,
                    self.schema(),
                )?;
                stream.rocks = rocks;
                Driver::open(self, &self.metrics, inputs, partition, &context, stream)
            }
        }
    }
}
