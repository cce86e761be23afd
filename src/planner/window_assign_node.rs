//! `WindowAssign`: the logical form of a window table-valued function.
//!
//! `TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))` (and HOP, SESSION) becomes a
//! `WindowAssign` over the plan of `t`. Its output is every input column plus `window_start`,
//! `window_end` and `window_time` (`window_end - 1 ms`), one row per window containing the row
//! (TUMBLE: one, HOP: `size / slide`). A `GROUP BY window_start, window_end` above it is turned
//! into a [`WindowAggregateNode`](super::window_aggregate_node::WindowAggregateNode) by the
//! [`WindowAggregateRule`](super::window_aggregate_rule::WindowAggregateRule); what remains is
//! planned as the stateless `WindowAssignExec`.

use std::cmp::Ordering;
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use datafusion::common::{Column, DFSchema, DFSchemaRef, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, UserDefinedLogicalNodeCore};

use crate::physical::window_spec::WindowSpec;

pub use crate::physical::window_spec::{WINDOW_END, WINDOW_START, WINDOW_TIME, WindowField};

/// The data type of window columns: millisecond timestamps in the time column's time zone.
pub fn window_column_type(time_type: &DataType) -> DataType {
    let tz = match time_type {
        DataType::Timestamp(_, tz) => tz.clone(),
        _ => None,
    };
    DataType::Timestamp(TimeUnit::Millisecond, tz)
}

/// Checks that `column` of `schema` can carry event time.
pub fn check_time_column(schema: &DFSchema, column: &Column, function: &str) -> Result<DataType> {
    let (_, field) = schema.qualified_field_from_column(column)?;
    match field.data_type() {
        dt @ DataType::Timestamp(_, _) => Ok(dt.clone()),
        other => plan_err!(
            "{function} needs a TIMESTAMP time column, but DESCRIPTOR({}) is {other}. Convert it \
             in a computed column, e.g. `ts AS TO_TIMESTAMP_MILLIS({})`",
            column.name,
            column.name
        ),
    }
}

/// Logical window assignment (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WindowAssignNode {
    /// The rows to window.
    pub input: LogicalPlan,
    /// Event-time column of `input`.
    pub time_column: Column,
    /// The window.
    pub spec: WindowSpec,
    /// SESSION only: sessions are separate per value of these input expressions.
    pub partition_keys: Vec<Expr>,
    schema: DFSchemaRef,
}

impl WindowAssignNode {
    /// Builds the node and its schema: the input's columns plus the three window columns.
    pub fn try_new(
        input: LogicalPlan,
        time_column: Column,
        spec: WindowSpec,
        partition_keys: Vec<Expr>,
    ) -> Result<Self> {
        let time_type = check_time_column(input.schema(), &time_column, spec.function_name())?;
        let window_type = window_column_type(&time_type);
        let input_schema = input.schema();
        let mut fields: Vec<(Option<datafusion::common::TableReference>, Arc<Field>)> =
            input_schema
                .iter()
                .map(|(q, f)| (q.cloned(), Arc::clone(f)))
                .collect();
        for wf in WindowField::ALL {
            if input_schema
                .fields()
                .iter()
                .any(|f| f.name().eq_ignore_ascii_case(wf.name()))
            {
                return plan_err!(
                    "the input of {} already has a column named {}; rename it (SELECT ... AS \
                     other_name) before windowing",
                    spec.function_name(),
                    wf.name()
                );
            }
            fields.push((
                None,
                Arc::new(Field::new(wf.name(), window_type.clone(), false)),
            ));
        }
        let schema = DFSchema::new_with_metadata(fields, input_schema.metadata().clone())?;
        Ok(Self {
            input,
            time_column,
            spec,
            partition_keys,
            schema: Arc::new(schema),
        })
    }

    /// Index of the first window column in the output schema.
    pub fn first_window_column(&self) -> usize {
        self.input.schema().fields().len()
    }
}

impl PartialOrd for WindowAssignNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.spec.partial_cmp(&other.spec) {
            Some(Ordering::Equal) => match self.time_column.partial_cmp(&other.time_column) {
                Some(Ordering::Equal) => self.input.partial_cmp(&other.input),
                cmp => cmp,
            },
            cmp => cmp,
        }
        .filter(|cmp| *cmp != Ordering::Equal || self == other)
    }
}

impl UserDefinedLogicalNodeCore for WindowAssignNode {
    fn name(&self) -> &str {
        "WindowAssign"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![&self.input]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        let mut exprs = vec![Expr::Column(self.time_column.clone())];
        exprs.extend(self.partition_keys.iter().cloned());
        exprs
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "WindowAssign: {} on {}", self.spec, self.time_column)?;
        if !self.partition_keys.is_empty() {
            let keys: Vec<String> = self.partition_keys.iter().map(|e| e.to_string()).collect();
            write!(f, " partition by [{}]", keys.join(", "))?;
        }
        Ok(())
    }

    fn with_exprs_and_inputs(
        &self,
        exprs: Vec<Expr>,
        mut inputs: Vec<LogicalPlan>,
    ) -> Result<Self> {
        let time_column = match exprs.first() {
            Some(Expr::Column(c)) => c.clone(),
            other => {
                return datafusion::common::internal_err!(
                    "WindowAssign time expression must stay a column, got {other:?}"
                );
            }
        };
        let Some(input) = inputs.pop() else {
            return datafusion::common::internal_err!("WindowAssign needs one input");
        };
        Self::try_new(input, time_column, self.spec, exprs[1..].to_vec())
    }

    fn necessary_children_exprs(&self, output_columns: &[usize]) -> Option<Vec<Vec<usize>>> {
        // Window columns are computed from the time column; keep it and the partition keys.
        let n = self.first_window_column();
        let input_schema = self.input.schema();
        let mut needed: Vec<usize> = output_columns.iter().copied().filter(|&i| i < n).collect();
        let mut add = |c: &Column| {
            if let Ok(i) = input_schema.index_of_column(c) {
                needed.push(i);
            }
        };
        add(&self.time_column);
        for key in &self.partition_keys {
            for c in key.column_refs() {
                add(c);
            }
        }
        needed.sort_unstable();
        needed.dedup();
        Some(vec![needed])
    }
}
