//! `WindowAggregate`: a GROUP BY over windows, as one logical node.
//!
//! Produced by the [`WindowAggregateRule`](super::window_aggregate_rule::WindowAggregateRule)
//! from `Aggregate(GROUP BY keys.., window_start, window_end)` over a
//! [`WindowAssignNode`](super::window_assign_node::WindowAssignNode). Its input is the rows
//! *before* window assignment, so a HOP row is aggregated once into a slice instead of once per
//! window. The output schema is exactly the replaced `Aggregate`'s: the group columns in their
//! original order (keys and window columns interleaved as written), then the aggregates.

use std::cmp::Ordering;
use std::fmt;

use datafusion::common::{DFSchemaRef, internal_err};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

use crate::physical::window_spec::WindowSpec;

pub use crate::physical::window_spec::{GroupColumn, GroupingSetKeys};

/// Logical windowed aggregation (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowAggregateNode {
    /// Rows before window assignment.
    pub input: LogicalPlan,
    /// Event time of a row (a timestamp expression over `input`).
    pub time_expr: Expr,
    /// The window.
    pub spec: WindowSpec,
    /// SESSION only: sessions are tracked separately per value of these expressions.
    pub partition_keys: Vec<Expr>,
    /// Group keys other than the window columns.
    pub keys: Vec<Expr>,
    /// Aggregate expressions.
    pub aggregates: Vec<Expr>,
    /// Output order of the group columns.
    pub group_columns: Vec<GroupColumn>,
    /// `GROUPING SETS` / `ROLLUP` / `CUBE`: every row is aggregated once per set; empty for
    /// a plain GROUP BY.
    pub grouping_sets: Vec<GroupingSetKeys>,
    /// Same as the replaced `Aggregate`.
    pub schema: DFSchemaRef,
}

impl PartialOrd for WindowAggregateNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.spec.partial_cmp(&other.spec) {
            Some(Ordering::Equal) => match self.keys.partial_cmp(&other.keys) {
                Some(Ordering::Equal) => match self.aggregates.partial_cmp(&other.aggregates) {
                    Some(Ordering::Equal) => self.input.partial_cmp(&other.input),
                    cmp => cmp,
                },
                cmp => cmp,
            },
            cmp => cmp,
        }
        .filter(|cmp| *cmp != Ordering::Equal || self == other)
    }
}

/// Expressions for EXPLAIN, comma separated.
pub(super) fn list(exprs: &[Expr]) -> String {
    exprs
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

impl UserDefinedLogicalNodeCore for WindowAggregateNode {
    fn name(&self) -> &str {
        "WindowAggregate"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        let mut exprs = vec![self.time_expr.clone()];
        exprs.extend(self.partition_keys.iter().cloned());
        exprs.extend(self.keys.iter().cloned());
        exprs.extend(self.aggregates.iter().cloned());
        exprs
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowAggregate: {} on {}", self.spec, self.time_expr)?;
        if !self.partition_keys.is_empty() {
            write!(f, " partition by [{}]", list(&self.partition_keys))?;
        }
        write!(f, ", keys=[{}]", list(&self.keys))?;
        if !self.grouping_sets.is_empty() {
            write!(f, ", grouping sets={}", self.grouping_sets.len())?;
        }
        write!(f, ", aggr=[{}]", list(&self.aggregates))
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let expected = 1 + self.partition_keys.len() + self.keys.len() + self.aggregates.len();
        if exprs.len() != expected {
            return internal_err!(
                "WindowAggregate expected {expected} expressions, got {}",
                exprs.len()
            );
        }
        let Some(input) = inputs.pop() else {
            return internal_err!("WindowAggregate needs one input");
        };
        let mut it = exprs.into_iter();
        let time_expr = it.next().unwrap_or_else(|| self.time_expr.clone());
        let partition_keys: Vec<Expr> = it.by_ref().take(self.partition_keys.len()).collect();
        let keys: Vec<Expr> = it.by_ref().take(self.keys.len()).collect();
        let aggregates: Vec<Expr> = it.collect();
        Ok(Self {
            input,
            time_expr,
            spec: self.spec,
            partition_keys,
            keys,
            aggregates,
            group_columns: self.group_columns.clone(),
            grouping_sets: self.grouping_sets.clone(),
            schema: self.schema.clone(),
        })
    }

    fn necessary_children_exprs(&self, _output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        // Every output column is needed to keep the schema fixed.
        Some(vec![columns_read(&self.input, self.expressions())])
    }
}

/// The columns of `input` that `exprs` read, by index: all an aggregation node needs of its
/// input.
pub(super) fn columns_read(input: &LogicalPlan, exprs: Vec<Expr>) -> Vec<usize> {
    let input_schema = input.schema();
    let mut needed = Vec::new();
    for expr in exprs {
        for c in expr.column_refs() {
            if let Ok(i) = input_schema.index_of_column(c) {
                needed.push(i);
            }
        }
    }
    needed.sort_unstable();
    needed.dedup();
    needed
}
