//! From SQL text to a streaming physical plan.
//!
//! The planner is DataFusion's, extended at its documented seams by named rewriters, each
//! doing one thing:
//!
//! 1. [`script`] splits a script into statements; [`statement`] dispatches each one: Sabot's
//!    own (Flink [`ddl`], `SET`, `DESCRIBE`) or DataFusion's. Every parsed statement first goes
//!    through [`complexity`], which balances long `AND`/`OR` chains and refuses statements
//!    too deep to plan (SQLSTATE 54001) instead of overflowing the stack.
//! 2. [`window_syntax`]: `TABLE t` arguments and group windows (`GROUP BY TUMBLE(ts, ...)`)
//!    become window table functions; [`flink_functions`] maps Flink function spellings
//!    (`MOD(a, b)`) to DataFusion's; [`temporal_syntax`]: `FOR SYSTEM_TIME AS OF` becomes a
//!    marker in the join's ON condition, which [`streaming_rule`] plans as a temporal join.
//! 3. [`window_tvf`]: a DataFusion `RelationPlanner` turning `TUMBLE/HOP/SESSION(...)` in FROM
//!    into a [`window_assign_node::WindowAssignNode`].
//! 4. [`window_aggregate_rule`]: an optimizer rule turning `GROUP BY window_start, window_end`
//!    over a window into one [`window_aggregate_node::WindowAggregateNode`] (with grouping
//!    sets, ROLLUP and CUBE); before it, [`timestamp_literals`] completes timestamps written
//!    without seconds. After DataFusion's rules, [`updating_aggregate_rule`] turns any other
//!    `GROUP BY` (and DISTINCT) over a stream that never ends into an
//!    [`updating_aggregate_node::UpdatingAggregateNode`], whose result is a changelog;
//!    [`upsert_key`] says which columns tell its rows apart (a materialized view's key).
//! 5. [`extension_planner`]: the logical nodes to physical streaming operators;
//!    [`connector_table`]: a declared table as a DataFusion `TableProvider` whose scans and
//!    inserts are streaming sources and sinks.
//! 6. [`streaming_rule`]: a physical optimizer rule replacing stock operators inside streaming
//!    pipelines by their streaming twins, and refusing what cannot run on an unbounded input.

pub mod complexity;
pub mod connector_table;
pub mod ddl;
pub mod exchanges;
pub mod extension_planner;
pub mod flink_functions;
pub mod over_aggregate;
pub mod script;
pub mod statement;
pub mod streaming_rule;
pub mod temporal_syntax;
pub mod timestamp_literals;
pub mod top_n;
pub mod updating_aggregate_node;
pub mod updating_aggregate_rule;
pub mod upsert_key;
pub mod window_aggregate_node;
pub mod window_aggregate_rule;
pub mod window_assign_node;
pub mod window_syntax;
pub mod window_tvf;
