//! `TimestampLiteralRule`: timestamps written without seconds, as PostgreSQL and Flink read
//! them.
//!
//! `TIMESTAMP '2020-04-15 12:02'`, `'2020-04-15 12:02'::timestamp`, the same text compared
//! with a TIMESTAMP column or inserted into one: DataFusion plans each as a cast of a string
//! literal, and arrow's cast requires the seconds. This rule, run before constant folding,
//! completes such literals with `:00` (keeping a fraction or zone suffix after the minutes);
//! every other literal and cast is left alone.

use std::sync::OnceLock;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, TryCast};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// See the module docs.
#[derive(Debug, Default)]
pub struct TimestampLiteralRule;

impl OptimizerRule for TimestampLiteralRule {
    fn name(&self) -> &str {
        "sabot_timestamp_literals"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        // The expressions keep their names (the output schema must not change).
        let names = NamePreserver::new(&plan);
        plan.map_expressions(|expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform(|e| Ok(complete_literal(e)))?;
            Ok(rewritten.update_data(|e| name.restore(e)))
        })
    }
}

/// `Some(text:00)` for a date and time written to the minute (`2020-04-15 12:02`, with an
/// optional zone after it).
pub fn with_seconds(text: &str) -> Option<String> {
    static MINUTES: OnceLock<Option<regex::Regex>> = OnceLock::new();
    let re = MINUTES
        .get_or_init(|| {
            regex::Regex::new(
                r"^(\s*[+-]?\d{4,}-\d{1,2}-\d{1,2}[T ]\d{1,2}:\d{2})(\s*(?:Z|[+-]\d{1,2}(?::?\d{2})?)?\s*)$",
            )
            .ok()
        })
        .as_ref()?;
    let c = re.captures(text)?;
    Some(format!("{}:00{}", &c[1], &c[2]))
}

fn complete_literal(expr: Expr) -> Transformed<Expr> {
    let (inner, data_type) = match &expr {
        Expr::Cast(Cast { expr, field }) => (expr.as_ref(), field.data_type()),
        Expr::TryCast(TryCast { expr, field }) => (expr.as_ref(), field.data_type()),
        _ => return Transformed::no(expr),
    };
    if !matches!(data_type, DataType::Timestamp(_, _)) {
        return Transformed::no(expr);
    }
    let Expr::Literal(
        ScalarValue::Utf8(Some(text))
        | ScalarValue::Utf8View(Some(text))
        | ScalarValue::LargeUtf8(Some(text)),
        metadata,
    ) = inner
    else {
        return Transformed::no(expr);
    };
    let Some(completed) = with_seconds(text) else {
        return Transformed::no(expr);
    };
    let literal = Expr::Literal(ScalarValue::Utf8(Some(completed)), metadata.clone());
    Transformed::yes(match expr {
        Expr::Cast(Cast { field, .. }) => Expr::Cast(Cast {
            expr: Box::new(literal),
            field,
        }),
        Expr::TryCast(TryCast { field, .. }) => Expr::TryCast(TryCast {
            expr: Box::new(literal),
            field,
        }),
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minutes_get_seconds() {
        assert_eq!(
            with_seconds("2020-04-15 12:02").as_deref(),
            Some("2020-04-15 12:02:00")
        );
        assert_eq!(
            with_seconds("2020-04-15T12:02Z").as_deref(),
            Some("2020-04-15T12:02:00Z")
        );
        assert_eq!(
            with_seconds("2020-04-15 12:02+05:30").as_deref(),
            Some("2020-04-15 12:02:00+05:30")
        );
        assert_eq!(with_seconds("2020-04-15 12:02:03"), None);
        assert_eq!(with_seconds("2020-04-15"), None);
        assert_eq!(with_seconds("12:02"), None);
    }
}
