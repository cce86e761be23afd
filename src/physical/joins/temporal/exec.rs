//! The temporal join's plan node, and how it is read off a join carrying the
//! `FOR SYSTEM_TIME AS OF` marker (see [`crate::functions::system_time`]).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{JoinSide, JoinType, NullEquality, Result, internal_err, plan_err};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{PhysicalExpr, PhysicalExprRef};
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::metrics::{ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};

use super::super::{Emit, JoinOutput, JoinParts};
use super::marker::system_time_marker;
use super::stream::{CACHE_VERSIONS, RocksState, TemporalJoinStream};
use crate::changelog::ChangelogMode;
use crate::functions::proctime::is_proctime_field;
use crate::physical::message::MessageStream;
use crate::physical::operator::Driver;
use crate::physical::streaming::{
    OperatorState, StreamingExec, changelog_mode, data_only, execute_input, time_attributes,
};
use crate::state::backend::StateBackend;
use crate::state::keyed_db::KeyedDb;
use crate::state::ttl::{TimeToLive, fmt_ttl};

/// See the module docs of `temporal`.
#[derive(Debug)]
pub struct TemporalJoinExec {
    left: Arc<dyn ExecutionPlan>,
    right: Arc<dyn ExecutionPlan>,
    on: Vec<(PhysicalExprRef, PhysicalExprRef)>,
    /// The ON condition's other terms, without the marker.
    filter: Option<JoinFilter>,
    join_type: JoinType,
    projection: Option<Vec<usize>>,
    /// The probe side's input index (0 left, 1 right); the other is the versioned table.
    probe: usize,
    /// Per input, its time column: the probe side's `AS OF` column, the versioned side's
    /// event-time attribute.
    times: [usize; 2],
    /// `table.exec.state.ttl` (see [`crate::state::ttl`]).
    ttl: Option<Duration>,
    /// Where the versions live: chosen by the planner ([`StreamingExec::with_state_backend`]).
    backend: StateBackend,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl TemporalJoinExec {
    /// The temporal join replacing `join` if its filter carries the marker (`None` if not);
    /// `left` and `right` replace its inputs, partitioned alike on the keys. A marked join this
    /// operator cannot run is refused with the reason.
    pub fn from_parts(
        join: &JoinParts,
        left: Arc<dyn ExecutionPlan>,
        right: Arc<dyn ExecutionPlan>,
    ) -> Result<Option<Self>> {
        let Some(filter) = &join.filter else {
            return Ok(None);
        };
        let Some(marker) = system_time_marker(filter)? else {
            return Ok(None);
        };
        let (Some(time), Some(versioned)) = (
            marker.args.first().cloned().flatten(),
            marker.args.get(1).cloned().flatten(),
        ) else {
            return plan_err!(
                "FOR SYSTEM_TIME AS OF takes a column of the probe side, e.g. \
                 FOR SYSTEM_TIME AS OF o.order_time"
            );
        };
        let probe = match time.side {
            JoinSide::Left => 0,
            JoinSide::Right => 1,
            JoinSide::None => return internal_err!("a join filter column without a side"),
        };
        if versioned.side == time.side {
            return plan_err!(
                "FOR SYSTEM_TIME AS OF names a column of the versioned table itself; name the \
                 time column of the other side of the join (FOR SYSTEM_TIME AS OF o.order_time)"
            );
        }
        let outer = match (join.join_type, probe) {
            (JoinType::Inner, _) => false,
            (JoinType::Left, 0) | (JoinType::Right, 1) => true,
            (other, _) => {
                return plan_err!(
                    "a temporal join (FOR SYSTEM_TIME AS OF) is an INNER join or a LEFT join \
                     keeping the probe side's rows, as in Flink; this one is a {other} join"
                );
            }
        };
        if join.null_equality == NullEquality::NullEqualsNull {
            return plan_err!(
                "a temporal join on IS NOT DISTINCT FROM is not supported; join on '=' (NULL \
                 keys then never match)"
            );
        }
        if join.on.is_empty() {
            return plan_err!(
                "a temporal join (FOR SYSTEM_TIME AS OF) needs an equality on the versioned \
                 table's primary key in its ON condition, as in Flink"
            );
        }
        let inputs = [&join.left, &join.right];
        let probe_schema = inputs[probe].schema();
        let probe_field = probe_schema.field(time.index);
        if is_proctime_field(probe_field) {
            return plan_err!(
                "a processing-time temporal join (FOR SYSTEM_TIME AS OF {}, a PROCTIME() \
                 column) against a versioned stream is not supported, as in Flink; join FOR \
                 SYSTEM_TIME AS OF the probe side's event-time column, or join a bounded table \
                 (a lookup join)",
                probe_field.name()
            );
        }
        if !time_attributes(inputs[probe]).contains(&time.index) {
            return plan_err!(
                "FOR SYSTEM_TIME AS OF {}: the column is not an event-time attribute of the probe \
                 side; name the column of its WATERMARK (or a window's window_time)",
                probe_field.name()
            );
        }
        let versioned_times = time_attributes(inputs[1 - probe]);
        let versioned_time = match versioned_times.len() {
            1 => versioned_times.into_iter().next().unwrap_or_default(),
            0 => {
                return plan_err!(
                    "the versioned table of a temporal join needs an event-time attribute: \
                     declare a WATERMARK on its time column (CREATE TABLE ... WATERMARK FOR ts AS \
                     ts - INTERVAL '5' SECOND); a bounded table is joined as a lookup join instead"
                );
            }
            _ => {
                let schema = inputs[1 - probe].schema();
                let mut names: Vec<&str> = versioned_times
                    .iter()
                    .map(|&c| schema.field(c).name().as_str())
                    .collect();
                names.sort_unstable();
                return plan_err!(
                    "the versioned table of a temporal join has several event-time columns ({}); \
                     its versions need one: select only the one its rows are valid from",
                    names.join(", ")
                );
            }
        };
        let mut times = [0; 2];
        times[probe] = time.index;
        times[1 - probe] = versioned_time;
        let filter = marker.rest;
        let properties = super::super::join_properties(&left, &right, Arc::clone(&join.schema))?;
        Ok(Some(Self {
            left,
            right,
            on: join.on.clone(),
            filter,
            join_type: if outer {
                join.join_type
            } else {
                JoinType::Inner
            },
            projection: join.projection.clone(),
            probe,
            times,
            ttl: None,
            backend: StateBackend::Memory,
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    /// This join with the keys of its versioned table dropped when no version came for
    /// `ttl` (see [`crate::state::ttl`]).
    pub fn with_state_ttl(mut self, ttl: Option<Duration>) -> Self {
        self.ttl = ttl;
        self
    }

    /// True if the output is a changelog: the probe side's is.
    fn changes(&self) -> bool {
        changelog_mode(self.children()[self.probe]).is_updating()
    }

    fn state_declaration(&self) -> OperatorState {
        OperatorState {
            backend: self.backend.clone(),
            keys: self.on.iter().map(|(l, _)| l.to_string()).collect(),
            freed: "as the watermark passes: the probe rows it passed, and per key the versions \
                    older than the latest one at the watermark (one version per key of the \
                    versioned table stays)",
        }
    }

    /// The output columns of input columns `columns` of input `side`.
    fn output_columns(&self, side: usize, columns: HashSet<usize>) -> HashSet<usize> {
        let offset = if side == 0 {
            0
        } else {
            self.left.schema().fields().len()
        };
        let combined: HashSet<usize> = columns.into_iter().map(|c| c + offset).collect();
        super::super::projected_columns(self.projection.as_deref(), combined)
    }
}

impl DisplayAs for TemporalJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let on: Vec<String> = self.on.iter().map(|(l, r)| format!("({l}, {r})")).collect();
        let inputs = [self.left.schema(), self.right.schema()];
        let probe = self.probe;
        write!(
            f,
            "TemporalJoinExec: join_type={:?}, on=[{}], for_system_time_as_of={}, versioned={}",
            self.join_type,
            on.join(", "),
            inputs[probe].field(self.times[probe]).name(),
            inputs[1 - probe].field(self.times[1 - probe]).name(),
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

impl ExecutionPlan for TemporalJoinExec {
    fn name(&self) -> &str {
        "TemporalJoinExec"
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
        super::super::apply_on(&self.on, f)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [left, right] = children.as_slice() else {
            return internal_err!("TemporalJoinExec has two children");
        };
        let properties = super::super::join_properties(left, right, self.schema())?;
        Ok(Arc::new(Self {
            left: Arc::clone(left),
            right: Arc::clone(right),
            on: self.on.clone(),
            filter: self.filter.clone(),
            join_type: self.join_type,
            projection: self.projection.clone(),
            probe: self.probe,
            times: self.times,
            ttl: self.ttl,
            backend: self.backend.clone(),
            properties: Arc::new(properties),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
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

impl StreamingExec for TemporalJoinExec {
    fn checkpointed(&self) -> bool {
        true
    }

    fn state(&self) -> Option<OperatorState> {
        Some(self.state_declaration())
    }

    fn changelog(&self) -> ChangelogMode {
        ChangelogMode::of_changes(self.changes())
    }

    fn accepts_changes(&self) -> bool {
        true
    }

    /// The probe side's event-time columns (the versioned side's time is an ordinary column
    /// in the output, as in Flink).
    fn time_attributes(&self) -> HashSet<usize> {
        let probe = self.children()[self.probe];
        self.output_columns(self.probe, time_attributes(probe))
    }

    fn with_state_backend(&self, backend: &StateBackend) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let node = Self {
            left: Arc::clone(&self.left),
            right: Arc::clone(&self.right),
            on: self.on.clone(),
            filter: self.filter.clone(),
            join_type: self.join_type,
            projection: self.projection.clone(),
            probe: self.probe,
            times: self.times,
            ttl: self.ttl,
            backend: backend.clone(),
            properties: Arc::clone(&self.properties),
            metrics: ExecutionPlanMetricsSet::new(),
        };
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
        let output = JoinOutput {
            inputs,
            schema: self.schema(),
            projection: self.projection.clone(),
            emit: Emit::Pairs([false, false]),
        };
        let mut stream = TemporalJoinStream::new(
            self.probe,
            self.join_type != JoinType::Inner,
            output,
            self.on.clone(),
            self.filter.clone(),
            self.times,
            key_types,
            self.changes(),
        )?;
        stream.ttl = self.ttl.map(TimeToLive::new);
        if let Some((root, label)) = self.backend.rocksdb("temporal-join", partition) {
            stream.rocks = Some(RocksState {
                store: KeyedDb::try_new_with_ttl(&root, &label, 2, self.ttl)?,
                partition,
                partitions: self.properties.partitioning.partition_count(),
                capacity: CACHE_VERSIONS,
            });
        }
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
