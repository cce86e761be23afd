//! `UpdatingAggregateExec`: a GROUP BY without a window over a stream, whose result changes
//! as rows arrive.
//!
//! - [`exec`]: the plan node, its distribution (hash of the group keys), changelog mode and
//!   EXPLAIN line.
//! - [`groups`]: the state, one DataFusion accumulator per group and aggregate.
//! - [`rocks_groups`]: the groups in RocksDB, the table in memory then their cache.
//! - [`value_counts`]: the accumulator of aggregates that retract by counting their values.
//! - [`stream`]: one partition, run by the operator driver.
//!
//! **Semantics** (Flink's group aggregation). Each batch of input rows updates the groups it
//! touches; then each of those groups whose result row changed emits it: `+I` for a new group,
//! `-U` (the old row) and `+U` (the new) for a changed one, `-D` when its last row was taken
//! back. A group whose row did not change emits nothing. The input may itself be a changelog
//! (an aggregate over an aggregate): `+I` and `+U` rows add, `-U` and `-D` rows take back.
//! COUNT, SUM and AVG retract in their own accumulators; MIN, MAX, DISTINCT aggregates and the
//! others keep how often each value came (Flink's `MinWithRetractAggFunction` and friends);
//! aggregates that depend on the order of rows are refused. Results do not wait for the
//! watermark, which passes on unchanged.
//!
//! **State.** Every group that holds rows, with its accumulators and its last emitted row; a
//! group goes away when its last row is taken back. Without a retracting input the state grows
//! with the number of distinct keys (EXPLAIN says so). In memory, barriers snapshot it as rows
//! (keys, row count, each accumulator's state); in RocksDB it is the database, checkpointed with
//! RocksDB's checkpoints. Either is restored at any parallelism by re-keying like window state.

mod exec;
mod groups;
mod rocks_groups;
mod stream;
mod value_counts;

use std::sync::Arc;

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::Result;
use datafusion::physical_expr::PhysicalExpr;

pub use exec::UpdatingAggregateExec;
pub use value_counts::Retraction;

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
    /// `table.exec.state.ttl`: groups no rows came for this long are dropped (see
    /// [`crate::state::ttl`]).
    pub ttl: Option<std::time::Duration>,
}

/// `array` as `data_type`: an accumulator may answer, and the row format decode, in a type
/// other than the planned one (a dictionary's values); the output keeps the planned type.
fn in_type(array: ArrayRef, data_type: &DataType) -> Result<ArrayRef> {
    if array.data_type() == data_type {
        Ok(array)
    } else {
        Ok(datafusion::arrow::compute::cast(&array, data_type)?)
    }
}
