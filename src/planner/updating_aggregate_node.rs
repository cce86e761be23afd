//! `UpdatingAggregate`: a GROUP BY without a window over a stream, as one logical node.
//!
//! Produced by the [`UpdatingAggregateRule`](super::updating_aggregate_rule) from an
//! `Aggregate` whose input never ends. The output schema is exactly the replaced `Aggregate`'s
//! (the group keys, then the aggregates); its rows are a changelog (see
//! [`crate::changelog`]).

use std::cmp::Ordering;
use std::fmt;

use datafusion::common::{DFSchemaRef, internal_err};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

use super::window_aggregate_node::{columns_read, list};

/// Logical updating aggregation (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UpdatingAggregateNode {
    pub input: LogicalPlan,
    /// Group keys.
    pub keys: Vec<Expr>,
    /// Aggregate expressions.
    pub aggregates: Vec<Expr>,
    /// True if the input is itself a changelog (it holds another updating aggregate).
    pub retracting_input: bool,
    /// Same as the replaced `Aggregate`.
    pub schema: DFSchemaRef,
}

impl PartialOrd for UpdatingAggregateNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.keys.partial_cmp(&other.keys) {
            Some(Ordering::Equal) => match self.aggregates.partial_cmp(&other.aggregates) {
                Some(Ordering::Equal) => self.input.partial_cmp(&other.input),
                cmp => cmp,
            },
            cmp => cmp,
        }
        .filter(|cmp| *cmp != Ordering::Equal || self == other)
    }
}

impl UserDefinedLogicalNodeCore for UpdatingAggregateNode {
    fn name(&self) -> &str {
        "UpdatingAggregate"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        self.keys
            .iter()
            .chain(self.aggregates.iter())
            .cloned()
            .collect()
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "UpdatingAggregate: keys=[{}], aggr=[{}]",
            list(&self.keys),
            list(&self.aggregates)
        )
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        if exprs.len() != self.keys.len() + self.aggregates.len() {
            return internal_err!(
                "UpdatingAggregate expected {} expressions, got {}",
                self.keys.len() + self.aggregates.len(),
                exprs.len()
            );
        }
        let Some(input) = inputs.pop() else {
            return internal_err!("UpdatingAggregate needs one input");
        };
        let mut it = exprs.into_iter();
        let keys: Vec<Expr> = it.by_ref().take(self.keys.len()).collect();
        let aggregates: Vec<Expr> = it.collect();
        Ok(Self {
            input,
            keys,
            aggregates,
            retracting_input: self.retracting_input,
            schema: self.schema.clone(),
        })
    }

    fn necessary_children_exprs(&self, _output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        // Every output column is needed to keep the schema fixed.
        Some(vec![columns_read(&self.input, self.expressions())])
    }
}
