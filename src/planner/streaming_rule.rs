//! `StreamingPipelineRule`: makes every pipeline above a streaming source speak the protocol.
//!
//! Runs after DataFusion's physical optimizer rules (which place exchanges for distribution
//! requirements) and before its sanity check:
//!
//! 1. Stock stateless operators over a streaming input are replaced by their streaming twins:
//!    `FilterExec` -> `StreamFilterExec`, `ProjectionExec` -> `StreamProjectionExec`,
//!    `RepartitionExec` -> `StreamExchangeExec` (hash or round-robin; a round-robin feeding a
//!    hash exchange is dropped), `CoalescePartitionsExec` -> a merging `StreamExchangeExec`
//!    (a `fetch` of LIMIT pushdown becomes an explicit limit, which makes the stream bounded);
//!    `CooperativeExec` is removed (streaming operators yield at every channel receive). Their twins forward watermarks and
//!    barriers instead of dropping them.
//!    A hash join of a stream with a bounded table (a side without unbounded input and without
//!    an event-time source) becomes a `BroadcastJoinExec` (see its docs). A hash join of two
//!    streams becomes a `WindowJoinExec` when its keys pair the `window_end` columns of two
//!    windowed inputs, or an `IntervalJoinExec` when its filter bounds the difference of the
//!    two sides' event times; both inputs are then hash-partitioned on the join keys (one
//!    partition each when there are none).
//! 2. Operators that cannot run on an unbounded stream (a GROUP BY without a window, ORDER BY,
//!    an unbounded join) are refused with an error that says what to write instead, rather than
//!    DataFusion's generic "pipeline breaking" message.
//!    A changelog (the result of an updating aggregate) reaches only nodes that take one: the
//!    row-wise twins, an updating aggregate planned for it, and sinks whose connector takes
//!    changes; anything else is refused, naming what can.
//! 3. Every stateful operator gets the session's state backend (`state.backend`, carried in the
//!    config options by [`PlannedBackend`]), so the plan says where its state lives and EXPLAIN
//!    shows it.

use std::sync::Arc;
use std::time::Duration;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{JoinSide, JoinType, NullEquality};
use datafusion::common::{Result, plan_err};
use datafusion::physical_expr::Partitioning;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{HashJoinExec, NestedLoopJoinExec};
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::exchanges::{partition_by, without_round_robin};
use crate::config::{PlannedRuntimeMode, PlannedStateTtl, RuntimeMode};
use crate::physical::broadcast_join::{BroadcastJoinExec, BroadcastJoinKind};
use crate::physical::exchange::{ExchangeMode, StreamExchangeExec};
use crate::physical::filter::StreamFilterExec;
use crate::physical::joins::temporal::system_time_marker;
use crate::physical::joins::{
    IntervalJoinExec, JoinParts, RegularJoinExec, TemporalJoinExec, WindowJoinExec,
};
use crate::physical::projection::StreamProjectionExec;
use crate::physical::sink::StreamSinkExec;
use crate::physical::streaming::{
    as_streaming, changelog_mode, is_streaming, reads_event_time, with_state_backend,
};
use crate::physical::union::StreamUnionExec;
use crate::physical::updating_aggregate::UpdatingAggregateExec;
use crate::state::backend::PlannedBackend;

/// See the module docs.
#[derive(Debug, Default)]
pub struct StreamingPipelineRule;

impl PhysicalOptimizerRule for StreamingPipelineRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let partitions = config.execution.target_partitions.max(1);
        let streaming = PlannedRuntimeMode::of(config) == RuntimeMode::Streaming;
        let ttl = PlannedStateTtl::of(config);
        let plan = plan
            .transform_up(|node| to_streaming(node, partitions, streaming, ttl))?
            .data;
        check_unbounded(&plan)?;
        check_changelogs(&plan)?;
        // Step 3: every stateful operator keeps its state where the session says.
        with_state_backend(plan, &PlannedBackend::of(config))
    }

    fn name(&self) -> &str {
        "sabot_streaming_pipeline"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Step 1 of the module docs, for one node whose children are already converted;
/// `partitions` is the parallelism of keyed operators; `streaming` is the `streaming` runtime
/// mode (a join of bounded streams is then a changelog too).
fn to_streaming(
    node: Arc<dyn ExecutionPlan>,
    partitions: usize,
    streaming: bool,
    ttl: Option<Duration>,
) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    if let Some(swapped) = limit_above_projection(&node)? {
        return Ok(Transformed::yes(swapped));
    }
    if let Some(aggregate) = node.downcast_ref::<UpdatingAggregateExec>() {
        let retracting = aggregate.retracting()?;
        let planned = retracting.as_ref().unwrap_or(aggregate);
        if ttl.is_some() {
            return Ok(Transformed::yes(Arc::new(planned.with_state_ttl(ttl))));
        }
        if let Some(retracting) = retracting {
            return Ok(Transformed::yes(Arc::new(retracting)));
        }
    }
    if let Some(over) = super::over_aggregate::over_aggregate(&node, partitions, streaming, ttl)? {
        return Ok(Transformed::yes(over));
    }
    if let Some(top) = super::top_n::top_n(&node, partitions, streaming, ttl)? {
        return Ok(Transformed::yes(top));
    }
    check_keyless_temporal_join(&node)?;
    if is_streaming(&node) || !node.children().iter().any(|c| is_streaming(c)) {
        return Ok(Transformed::no(node));
    }
    if let Some(filter) = node.downcast_ref::<FilterExec>() {
        let streaming: Arc<dyn ExecutionPlan> = Arc::new(StreamFilterExec::from_filter(filter));
        // A fetch folded into the filter by LIMIT pushdown becomes an explicit limit, which
        // also tells the operators above that the stream now ends.
        return Ok(Transformed::yes(match filter.fetch() {
            Some(n) => Arc::new(LocalLimitExec::new(streaming, n)),
            None => streaming,
        }));
    }
    if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
        return Ok(Transformed::yes(Arc::new(
            StreamProjectionExec::from_projection(projection),
        )));
    }
    if let Some(repartition) = node.downcast_ref::<RepartitionExec>() {
        let input = Arc::clone(repartition.input());
        let exchange = match repartition.partitioning() {
            Partitioning::Hash(exprs, n) => StreamExchangeExec::try_new(
                without_round_robin(input)?,
                ExchangeMode::Hash(exprs.clone()),
                *n,
            )?,
            // Round robin would send a row taken back to another partition than the row it
            // takes back; a changelog keeps its partitions.
            Partitioning::RoundRobinBatch(_) if changelog_mode(&input).is_updating() => {
                return Ok(Transformed::yes(input));
            }
            Partitioning::RoundRobinBatch(n) => {
                StreamExchangeExec::try_new(input, ExchangeMode::RoundRobin, *n)?
            }
            other => {
                return plan_err!("repartitioning a stream by {other} is not supported");
            }
        };
        return Ok(Transformed::yes(Arc::new(exchange)));
    }
    if let Some(coalesce) = node.downcast_ref::<CoalescePartitionsExec>() {
        let input = Arc::clone(coalesce.input());
        let merged: Arc<dyn ExecutionPlan> = if input.output_partitioning().partition_count() == 1 {
            input
        } else {
            Arc::new(StreamExchangeExec::try_new(input, ExchangeMode::Single, 1)?)
        };
        return Ok(Transformed::yes(match coalesce.fetch() {
            Some(n) => Arc::new(GlobalLimitExec::new(merged, 0, Some(n))),
            None => merged,
        }));
    }
    // Only a union of streams: a batch input (VALUES, a plain table) inside a streaming
    // pipeline would have no barriers or positions, and be read again on recovery.
    if let Some(union) = node.downcast_ref::<UnionExec>()
        && union.children().iter().all(|c| is_streaming(c))
    {
        let inputs = union.children().into_iter().cloned().collect();
        return Ok(Transformed::yes(Arc::new(StreamUnionExec::try_new(
            inputs,
            union.schema(),
        )?)));
    }
    // DataFusion interleaves the inputs of a union that are hash-partitioned alike (two GROUP
    // BYs on the same keys), so that partition `p` of the output holds partition `p` of each
    // input. A stream's partition cannot read several inputs without aligning their barriers
    // and combining their watermarks, which an exchange does: the union of the inputs,
    // hash-partitioned again on the same keys, puts every key's rows in one partition (each
    // key's changes in their order, as they all come from one input partition).
    if node.name() == "InterleaveExec" && node.children().iter().all(|c| is_streaming(c)) {
        if let Partitioning::Hash(exprs, n) = node.output_partitioning() {
            let inputs = node.children().into_iter().cloned().collect();
            let union = StreamUnionExec::try_new(inputs, node.schema())?;
            return Ok(Transformed::yes(Arc::new(StreamExchangeExec::try_new(
                Arc::new(union),
                ExchangeMode::Hash(exprs.clone()),
                *n,
            )?)));
        }
        return plan_err!(
            "this UNION ALL of streams partitioned alike is not supported: its partitioning is {}",
            node.output_partitioning()
        );
    }
    if node.name() == "UnionExec" {
        return plan_err!(
            "UNION ALL of a stream with a batch input (VALUES, or a table without a connector) \
             is not supported: the batch rows would have no place in checkpoints. Put them in a \
             table WITH ('connector' = 'memory') or a file"
        );
    }
    if let Some(coop) = node.downcast_ref::<CooperativeExec>() {
        return Ok(Transformed::yes(Arc::clone(coop.input())));
    }
    if let Some(join) = node.downcast_ref::<HashJoinExec>()
        && let Some(broadcast) = broadcast_join(join)?
    {
        return Ok(Transformed::yes(broadcast));
    }
    if let Some(join) = JoinParts::of(&node)
        && let Some(joined) = stream_join(&join, partitions, streaming, ttl)?
    {
        return Ok(Transformed::yes(joined));
    }
    Ok(Transformed::no(node))
}

/// A projection over a LIMIT over an updating query (DataFusion pushes a limit below
/// projections) as the limit over a streaming projection: the changelog's first rows are read
/// at the top (see `changelog_stream`), and the projection keeps each row's kind.
fn limit_above_projection(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(projection) = node.downcast_ref::<ProjectionExec>() else {
        return Ok(None);
    };
    let limit = projection.input();
    let Some(input) = limit.children().first().map(|c| Arc::clone(c)) else {
        return Ok(None);
    };
    if !(limit.is::<GlobalLimitExec>() || limit.is::<LocalLimitExec>())
        || !is_streaming(&input)
        || !changelog_mode(&input).is_updating()
    {
        return Ok(None);
    }
    let projected = datafusion::physical_plan::execution_plan::replace_children_if_necessary(
        Arc::clone(node),
        vec![input],
    )?;
    let Some(projected) = projected.downcast_ref::<ProjectionExec>() else {
        return Ok(None);
    };
    let streaming: Arc<dyn ExecutionPlan> =
        Arc::new(StreamProjectionExec::from_projection(projected));
    Ok(Some(
        datafusion::physical_plan::execution_plan::replace_children_if_necessary(
            Arc::clone(limit),
            vec![streaming],
        )?,
    ))
}

/// A join input: a stream (unbounded, reading an event-time source, or a changelog) or a
/// table.
fn is_stream_side(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.boundedness().is_unbounded()
        || reads_event_time(plan)
        || changelog_mode(plan).is_updating()
}

/// A hash join of two streams as a window join or an interval join, or else as a regular join
/// when an input never ends or retracts (or in the `streaming` runtime mode); `None` for
/// bounded streams otherwise, which run as a batch join (DataFusion's answer, once).
fn stream_join(
    join: &JoinParts,
    partitions: usize,
    streaming: bool,
    ttl: Option<Duration>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if !is_stream_side(&join.left) || !is_stream_side(&join.right) {
        return Ok(None);
    }
    if join.null_aware {
        return plan_err!(
            "NOT IN (SELECT ...) between two streams is not supported; write NOT EXISTS \
             (SELECT 1 FROM ... WHERE ...) with a window or time bound"
        );
    }
    let partitions = if join.on.is_empty() { 1 } else { partitions };
    let left = partition_by(
        &join.left,
        join.on.iter().map(|(l, _)| Arc::clone(l)).collect(),
        partitions,
    )?;
    let right = partition_by(
        &join.right,
        join.on.iter().map(|(_, r)| Arc::clone(r)).collect(),
        partitions,
    )?;
    if let Some(temporal) =
        TemporalJoinExec::from_parts(join, Arc::clone(&left), Arc::clone(&right))?
    {
        return Ok(Some(Arc::new(temporal.with_state_ttl(ttl))));
    }
    if let Some(window) = WindowJoinExec::from_parts(join, Arc::clone(&left), Arc::clone(&right))? {
        return Ok(Some(Arc::new(window)));
    }
    if let Some(interval) =
        IntervalJoinExec::from_parts(join, Arc::clone(&left), Arc::clone(&right))?
    {
        return Ok(Some(Arc::new(interval)));
    }
    let endless = [&join.left, &join.right]
        .iter()
        .any(|s| s.boundedness().is_unbounded() || changelog_mode(s).is_updating());
    // Bounded streams keep a batch join for what a regular join cannot run (a mark join of
    // `EXISTS ... OR ...`).
    let runnable = crate::physical::joins::Emit::of(join.join_type).is_ok();
    if endless || (streaming && runnable) {
        return Ok(Some(Arc::new(
            RegularJoinExec::from_parts(join, left, right)?.with_state_ttl(ttl),
        )));
    }
    Ok(None)
}

/// A hash join of a stream with a table as a broadcast join; `None` for two streams (refused
/// later unless bounded) or two tables (a batch join).
fn broadcast_join(join: &HashJoinExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let stream_is_left = match (is_stream_side(join.left()), is_stream_side(join.right())) {
        (true, false) => true,
        (false, true) => false,
        _ => return Ok(None),
    };
    if join.null_aware {
        return plan_err!(
            "NOT IN (SELECT ...) of a stream against a table is not supported (its NULL rules need \
             the whole table and stream); write NOT EXISTS (SELECT 1 FROM table WHERE ...)"
        );
    }
    if join.null_equality() == NullEquality::NullEqualsNull {
        return plan_err!(
            "a join of a stream with a table on IS NOT DISTINCT FROM is not supported; join on \
             '=' (NULL keys then never match)"
        );
    }
    let kind = match (join.join_type(), stream_is_left) {
        (JoinType::Inner, _) => BroadcastJoinKind::Inner,
        (JoinType::Left, true) | (JoinType::Right, false) => BroadcastJoinKind::StreamOuter,
        (JoinType::LeftSemi, true) | (JoinType::RightSemi, false) => BroadcastJoinKind::Semi,
        (JoinType::LeftAnti, true) | (JoinType::RightAnti, false) => BroadcastJoinKind::Anti,
        (JoinType::LeftMark | JoinType::RightMark, _) => {
            return plan_err!(
                "EXISTS / IN combined with OR over a stream and a table is not supported; split \
                 the condition, e.g. into a UNION of the two cases"
            );
        }
        (other, _) => {
            return plan_err!(
                "a {other} join of a stream with a bounded table would have to wait for the end \
                 of the stream to emit the table's unmatched rows; keep the stream on the \
                 preserved side (stream LEFT JOIN table) or use an INNER JOIN"
            );
        }
    };
    let marker = match join.filter() {
        Some(filter) => system_time_marker(filter)?,
        None => None,
    };
    // The side of the probe (its time column), if the join is AS OF a time.
    let probe = marker.and_then(|m| m.args.first().cloned().flatten().map(|c| c.side));
    if let Some(probe) = probe
        && (probe == JoinSide::Left) != stream_is_left
    {
        return plan_err!(
            "this temporal join (FOR SYSTEM_TIME AS OF) looks up a stream's versions for the \
             rows of a bounded table; the probe side (whose time column FOR SYSTEM_TIME AS OF \
             names) must be the stream, and the versioned table a changelog or a table with a \
             WATERMARK, or a bounded table (a lookup join)"
        );
    }
    let on = join
        .on()
        .iter()
        .map(|(l, r)| {
            if stream_is_left {
                (Arc::clone(l), Arc::clone(r))
            } else {
                (Arc::clone(r), Arc::clone(l))
            }
        })
        .collect();
    let (stream, table) = if stream_is_left {
        (join.left(), join.right())
    } else {
        (join.right(), join.left())
    };
    Ok(Some(Arc::new(BroadcastJoinExec::try_new(
        Arc::clone(stream),
        Arc::clone(table),
        stream_is_left,
        on,
        without_system_time(join.filter())?,
        kind,
        *join.join_type(),
        join.projection.as_ref().map(|p| p.to_vec()),
        join.schema(),
    )?)))
}

/// A join filter without the `FOR SYSTEM_TIME AS OF` marker: a stream joined with a bounded
/// table AS OF its rows' time is a lookup join, which the broadcast join is (the table has
/// one version, the one read at the start).
fn without_system_time(filter: Option<&JoinFilter>) -> Result<Option<JoinFilter>> {
    let Some(filter) = filter else {
        return Ok(None);
    };
    Ok(match system_time_marker(filter)? {
        Some(marker) => marker.rest,
        None => Some(filter.clone()),
    })
}

/// Refuses a `FOR SYSTEM_TIME AS OF` join DataFusion planned without join keys.
fn check_keyless_temporal_join(node: &Arc<dyn ExecutionPlan>) -> Result<()> {
    let Some(join) = node.downcast_ref::<NestedLoopJoinExec>() else {
        return Ok(());
    };
    let marked = match join.filter() {
        Some(filter) => system_time_marker(filter)?.is_some(),
        None => false,
    };
    if marked {
        return plan_err!(
            "a temporal join (FOR SYSTEM_TIME AS OF) needs an equality on the versioned \
             table's primary key in its ON condition, as in Flink"
        );
    }
    Ok(())
}

/// Step 2 of the module docs: reports the deepest operator that cannot run on its unbounded
/// input (anything above it fails only because of it).
fn check_unbounded(node: &Arc<dyn ExecutionPlan>) -> Result<()> {
    // A window function over a stream is the problem, not the sort DataFusion put below it.
    if matches!(node.name(), "BoundedWindowAggExec" | "WindowAggExec")
        && node.boundedness().is_unbounded()
    {
        return window_function_error();
    }
    for child in node.children() {
        check_unbounded(child)?;
    }
    let unbounded_input = node
        .children()
        .iter()
        .any(|c| c.boundedness().is_unbounded());
    if !unbounded_input || is_streaming(node) || cuts_the_stream(node) || is_row_wise(node) {
        return Ok(());
    }
    match node.name() {
        "AggregateExec" => plan_err!(
            "GROUP BY over an unbounded stream needs a window, or the result would never be \
             final. Group by a window instead, e.g. \
             FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE)) \
             ... GROUP BY ..., window_start, window_end"
        ),
        "SortExec" | "SortPreservingMergeExec" => plan_err!(
            "ORDER BY over an unbounded stream never finishes. Order within windows \
             downstream, or keep the first rows with ORDER BY ... LIMIT n (a top-N, kept up to \
             date as rows come)"
        ),
        n if n.contains("Join") => plan_err!(
            "this join of unbounded streams cannot be bounded: join within a window (both \
             sides grouped by the same window_start, window_end) or add a time bound \
             (l.ts BETWEEN r.ts - INTERVAL ... AND r.ts + INTERVAL ...)"
        ),
        "BoundedWindowAggExec" | "WindowAggExec" => window_function_error(),
        "DataSinkExec" => plan_err!(
            "this table cannot take a stream: a CREATE TABLE without Flink options is \
             DataFusion's in-memory table, which only batch inserts fill. Create it WITH \
             ('connector' = 'memory') (or a filesystem, kafka, print or blackhole sink)"
        ),
        other => plan_err!("{other} cannot run on an unbounded stream"),
    }
}

/// The refusal of an OVER (...) window function over an unbounded stream.
fn window_function_error() -> Result<()> {
    plan_err!(
        "OVER (...) window functions on an unbounded stream are not supported, except \
         aggregates ordered by event time over a bounded frame (SUM(x) OVER (PARTITION BY k \
         ORDER BY ts RANGE BETWEEN INTERVAL '1' HOUR PRECEDING AND CURRENT ROW)) and \
         ROW_NUMBER() bounded in the WHERE clause (a top-N: SELECT * FROM (SELECT *, \
         ROW_NUMBER() OVER (PARTITION BY k ORDER BY x DESC) AS rn FROM t) WHERE rn <= 10); \
         aggregate per window with TUMBLE, HOP or SESSION instead"
    )
}

/// Step 2, for changelogs: refuses a node that would misread the rows of an updating input.
fn check_changelogs(node: &Arc<dyn ExecutionPlan>) -> Result<()> {
    for child in node.children() {
        check_changelogs(child)?;
    }
    let updating_input = node
        .children()
        .iter()
        .any(|c| changelog_mode(c).is_updating());
    if !updating_input {
        return Ok(());
    }
    if let Some(sink) = node.downcast_ref::<StreamSinkExec>() {
        if sink.sink().accepts_changes() {
            return Ok(());
        }
        return plan_err!(
            "table {} (connector '{}') can only append rows, but this query's result changes \
             as rows arrive (a GROUP BY without a window, or a changelog source): its rows are \
             inserts, updates and deletes. Write it to a 'print' or 'blackhole' table, to a \
             'filesystem' or 'kafka' table with 'format' = 'debezium-json', to an 'upsert-kafka' \
             table keyed by its PRIMARY KEY, or keep it in a materialized view or a memory \
             table; or aggregate per window (TUMBLE, HOP, SESSION), whose results \
             are final",
            sink.table(),
            sink.sink().name()
        );
    }
    match as_streaming(node) {
        Some(streaming) if streaming.accepts_changes() => Ok(()),
        Some(_) => plan_err!(
            "{} over a changelog (the result of a GROUP BY without a window, or a source in a \
             changelog format such as debezium-json) is not supported yet: its rows change as \
             rows arrive. Group by a window (TUMBLE, HOP, SESSION) over rows that only append \
             instead, whose results are final",
            node.name()
        ),
        // A stock node reads the plain data face, which refuses at run time; only the top of a
        // query is read that way (through a changelog stream).
        None => Ok(()),
    }
}

/// Operators that handle one row at a time (and our sink): harmless above an unbounded input.
fn is_row_wise(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.is::<StreamSinkExec>()
        || node.is::<FilterExec>()
        || node.is::<ProjectionExec>()
        || node.is::<RepartitionExec>()
        || node.is::<CoalescePartitionsExec>()
        || node.is::<CooperativeExec>()
}

/// Operators that end a stream after a number of rows: fine on unbounded input.
fn cuts_the_stream(node: &Arc<dyn ExecutionPlan>) -> bool {
    node.is::<GlobalLimitExec>()
        || node.is::<LocalLimitExec>()
        || node.fetch().is_some() && !node.name().starts_with("Sort")
}
