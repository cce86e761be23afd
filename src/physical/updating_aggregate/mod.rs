//! `UpdatingAggregateExec`: a GROUP BY without a window over a stream, whose result changes
//! as rows arrive.
//!
//! - [`exec`]: the plan node, its distribution (hash of the group keys), changelog mode and
//!   EXPLAIN line.
//! - [`groups`]: the state, one DataFusion accumulator per group and aggregate.
//! - [`stream`]: one partition, run by the operator driver.
//!
//! **Semantics** (Flink's group aggregation). Each batch of input rows updates the groups it
//! touches; then each of those groups whose result row changed emits it: `+I` for a new group,
//! `-U` (the old row) and `+U` (the new) for a changed one, `-D` when its last row was taken
//! back. A group whose row did not change emits nothing. The input may itself be a changelog
//! (an aggregate over an aggregate): `+I` and `+U` rows add, `-U` and `-D` rows take back,
//! which the planner allows for aggregates that retract exactly (COUNT, SUM, AVG). Results do
//! not wait for the watermark, which passes on unchanged.
//!
//! **State.** Every group that holds rows, with its accumulators and its last emitted row; a
//! group goes away when its last row is taken back. Without a retracting input the state grows
//! with the number of distinct keys (EXPLAIN says so). Barriers snapshot it as rows (keys, row
//! count, each accumulator's state), restored at any parallelism by re-keying like window
//! state.

mod exec;
mod groups;
mod stream;

use std::sync::Arc;

use datafusion::physical_expr::PhysicalExpr;

pub use exec::UpdatingAggregateExec;
pub use groups::retracts_in_any_order;

use crate::physical::aggregation::AggregateSet;

/// What an updating aggregate computes, over its input's columns.
#[derive(Debug, Clone)]
pub struct UpdatingAggregation {
    /// The group keys, with their output names.
    pub keys: Vec<(Arc<dyn PhysicalExpr>, String)>,
    /// The aggregate functions.
    pub aggregates: Arc<AggregateSet>,
    /// True if the input is a changelog: the accumulators then retract.
    pub retracting_input: bool,
}
