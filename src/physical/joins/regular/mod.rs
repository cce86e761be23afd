//! `RegularJoinExec`: two streams joined on keys with neither a window nor a time bound
//! (Flink's regular join).
//!
//! Each side keeps every row it got, per join key ([`side`]), for as long as it is not taken
//! back: a row arriving on one side meets the other side's rows of its key (and the whole join
//! filter), and the pairs are emitted; a row taken back (`-U`, `-D` of a changelog input) takes
//! its pairs back. So the state grows with the inputs unless they retract, and EXPLAIN says so.
//! Output rows are `+I` and `-D`, as Flink's `StreamingJoinOperator` emits them:
//!
//! - INNER: pairs.
//! - LEFT, RIGHT, FULL: a row of an outer side without a partner comes padded with NULLs; when
//!   its first partner arrives the padded row is taken back (`-D`) before the pair comes, and
//!   when its last partner is taken back the padded row comes again. Each row counts the rows of
//!   the other side it matches, as Flink's `OuterJoinRecordStateView` does.
//! - Semi (`IN`, `EXISTS`): a row is emitted when it gets its first partner and taken back when
//!   it loses its last; anti (`NOT EXISTS`) the other way round.
//!
//! An inner or semi join of two inputs that only append only appends; the others retract.
//! The output carries no event-time column (rows of any age can still come): its watermark
//! stays back until every input ended, and it never goes idle.
//!
//! - [`side`]: one side's rows by key, and their checkpoint encoding.
//! - `rocks`: with `state.backend` = `rocksdb`, both sides in RocksDB, `side` their cache.
//! - `stream`: one partition: matching, emitting, snapshots and restore.
//! - here: the plan node.

mod rocks;
pub(super) mod side;
mod stream;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinType, NullEquality, Result, internal_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::{Emit, JoinOutput, JoinParts};
use crate::changelog::ChangelogMode;
use crate::physical::message::MessageStream;
use crate::physical::operator::Driver;
use crate::physical::streaming::{
    OperatorState, StreamingExec, changelog_mode, data_only, execute_input,
};
use crate::state::backend::StateBackend;
use crate::state::rocks::{RowCodec, nullable};
use crate::state::ttl::{TimeToLive, fmt_ttl};
use side::{EntryCodec, SideState};
use stream::RegularJoinStream;

/// See the module docs.
#[derive(Debug)]
pub struct RegularJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    filter: Option<JoinFilter>,
    join_type: JoinType,
    projection: Option<Vec<usize>>,
    null_equality: NullEquality,
    /// `table.exec.state.ttl` (see [`crate::state::ttl`]).
    ttl: Option<Duration>,
    /// Where the state lives: chosen by the planner ([`StreamingExec::with_state_backend`]).
    backend: StateBackend,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl RegularJoinExec {
    /// The regular join replacing `join`; `left` and `right` replace its inputs, partitioned
    /// alike on the keys.
    pub fn from_parts(
        join: &JoinParts,
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
    ) -> Result<Self> {
        Self::try_new(
            left,
            right,
            join.on.clone(),
            join.filter.clone(),
            join.join_type,
            join.projection.clone(),
            join.null_equality,
            Arc::clone(&join.schema),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn try_new(
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
        on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
        filter: Option<JoinFilter>,
        join_type: JoinType,
        projection: Option<Vec<usize>>,
        null_equality: NullEquality,
        schema: SchemaRef,
    ) -> Result<Self> {
        Emit::of(join_type)?;
        let properties = super::join_properties(&left, &right, schema)?;
        Ok(Self {
            left,
            right,
            on,
            filter,
            join_type,
            projection,
            null_equality,
            ttl: None,
            backend: StateBackend::Memory,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// This join with its state dropped when not written for `ttl` (see [`crate::state::ttl`]).
    pub fn with_state_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// This join with its state in `backend`.
    fn with_backend(mut self, backend: StateBackend) -> Self {
        self.backend = backend;
        self
    }

    /// True if the output only appends: an inner or semi join of inputs that only append.
    fn appends(&self) -> bool {
        let inputs_append =
            !changelog_mode(&self.left).is_updating() && !changelog_mode(&self.right).is_updating();
        inputs_append
            && matches!(
                Emit::of(self.join_type),
                Ok(Emit::Pairs([false, false]) | Emit::Semi(_))
            )
    }

    fn state_declaration(&self) -> OperatorState {
        OperatorState {
            backend: self.backend.clone(),
            keys: self.on.iter().map(|(l, _)| l.to_string()).collect(),
            freed: "only when its rows are taken back: it grows with both inputs (join within \
                    a window or add a time bound to bound it)",
        }
    }
}

impl DisplayAs for RegularJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self.on.iter().map(|(l, r)| format!("({l}, {r})")).collect();
        write!(
            f,
            "RegularJoinExec: join_type={:?}, on=[{}]",
            self.join_type,
            on.join(", ")
        )?;
        if let Some(filter) = &self.filter {
            write!(f, ", filter={filter}")?;
        }
        write!(
            f,
            ", changelog={}, state={}",
            self.changelog(),
            self.state_declaration()
        )?;
        fmt_ttl(f, self.ttl)
    }
}

impl ExecutionPlan for RegularJoinExec {
    fn name(&self) -> &str {
        "RegularJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.left, &self.right]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        super::apply_on(&self.on, f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right] = children.as_slice() else {
            return internal_err!("RegularJoinExec has two children");
        };
        Ok(Arc::new(
            Self::try_new(
                Arc::clone(left),
                Arc::clone(right),
                self.on.clone(),
                self.filter.clone(),
                self.join_type,
                self.projection.clone(),
                self.null_equality,
                self.schema(),
            )?
            .with_state_ttl(self.ttl)
            .with_backend(self.backend.clone()),
        ))
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

impl StreamingExec for RegularJoinExec {
    fn checkpointed(&self) -> bool {
        true
    }

    fn state(&self) -> Option<OperatorState> {
        Some(self.state_declaration())
    }

    fn changelog(&self) -> ChangelogMode {
        ChangelogMode::of_changes(!self.appends())
    }

    fn accepts_changes(&self) -> bool {
        true
    }

    fn with_state_backend(&self, backend: &StateBackend) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let node = Self::try_new(
            Arc::clone(&self.left),
            Arc::clone(&self.right),
            self.on.clone(),
            self.filter.clone(),
            self.join_type,
            self.projection.clone(),
            self.null_equality,
            self.schema(),
        )?
        .with_state_ttl(self.ttl)
        .with_backend(backend.clone());
        Ok(Some(Arc::new(node)))
    }

    fn execute_stream(&self, partition: usize, context: Arc<TaskContext>) -> Result<MessageStream> {
        let left = execute_input(&self.left, partition, Arc::clone(&context))?;
        let right = execute_input(&self.right, partition, Arc::clone(&context))?;
        let inputs = [self.left.schema(), self.right.schema()];
        let key_types = self
            .on
            .iter()
            .map(|(l, _)| l.data_type(&inputs[0]))
            .collect::<Result<Vec<DataType>>>()?;
        let keys = RowCodec::try_new(key_types.clone(), "join keys")?;
        let what = "the rows of a join";
        let stream = RegularJoinStream {
            codec: EntryCodec::new(inputs.clone()),
            nullable: [nullable(&inputs[0]), nullable(&inputs[1])],
            rows: [
                RowCodec::of_schema(&inputs[0], what)?,
                RowCodec::of_schema(&inputs[1], what)?,
            ],
            output: JoinOutput {
                inputs,
                schema: self.schema(),
                projection: self.projection.clone(),
                emit: Emit::of(self.join_type)?,
            },
            on: self.on.clone(),
            filter: self.filter.clone(),
            null_equals_null: self.null_equality == NullEquality::NullEqualsNull,
            key_types,
            keys,
            sides: [SideState::default(), SideState::default()],
            append_only: self.appends(),
            unknown: 0,
            warned: 0,
            ttl: self.ttl.map(TimeToLive::new),
            rocks: match self.backend.rocksdb("regular-join", partition) {
                Some((root, label)) => Some(rocks::RocksSides::try_new(&root, &label, self.ttl)?),
                None => None,
            },
            partition,
            partitions: self.properties.partitioning.partition_count(),
        };
        Driver::open(
            self,
            &self.metrics,
            vec![left, right],
            partition,
            &context,
            stream,
        )
    }
}
