//! `WindowTvfPlanner`: plans window table-valued functions in FROM.
//!
//! Accepted spellings (the `TABLE t` argument has already been turned into a plain name `t` by
//! [`prepare_window_syntax`](super::window_syntax::prepare_window_syntax)):
//!
//! ```sql
//! FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND [, offset]))
//! FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), slide, size [, offset]))
//! FROM TABLE(SESSION(TABLE t PARTITION BY k, DESCRIPTOR(ts), gap))
//! FROM TABLE(TUMBLE(DATA => TABLE t, TIMECOL => DESCRIPTOR(ts), SIZE => ...))   -- named
//! FROM TUMBLE(t, ts, INTERVAL '10' SECOND)                                        -- short
//! ```
//!
//! Each becomes a [`WindowAssignNode`] over the plan of `t` (a table, view, CTE or subquery).

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::{Column, DFSchema, ScalarValue, plan_datafusion_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::logical_expr::{Expr, Extension, LogicalPlan};
use datafusion::sql::sqlparser::ast::{
    Expr as SqlExpr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, Query,
    SetExpr, TableAlias, TableFactor,
};

use super::window_assign_node::WindowAssignNode;
use super::window_syntax::PARTITION_BY_MARKER;
use crate::physical::window_spec::WindowSpec;

/// Plans TUMBLE, HOP and SESSION in FROM (see the module docs).
#[derive(Debug, Default)]
pub struct WindowTvfPlanner;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TvfKind {
    Tumble,
    Hop,
    Session,
}

impl TvfKind {
    fn from_name(name: &ObjectName) -> Option<Self> {
        if name.0.len() != 1 {
            return None;
        }
        let ident = name.0[0].as_ident()?;
        match ident.value.to_ascii_uppercase().as_str() {
            "TUMBLE" => Some(TvfKind::Tumble),
            "HOP" => Some(TvfKind::Hop),
            "SESSION" => Some(TvfKind::Session),
            _ => None,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            TvfKind::Tumble => "TUMBLE",
            TvfKind::Hop => "HOP",
            TvfKind::Session => "SESSION",
        }
    }

    /// Parameter names in positional order.
    fn parameters(&self) -> &'static [&'static str] {
        match self {
            TvfKind::Tumble => &["DATA", "TIMECOL", "SIZE", "OFFSET"],
            TvfKind::Hop => &["DATA", "TIMECOL", "SLIDE", "SIZE", "OFFSET"],
            TvfKind::Session => &["DATA", "PARTITION", "TIMECOL", "GAP"],
        }
    }

    fn usage(&self) -> &'static str {
        match self {
            TvfKind::Tumble => {
                "TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND [, INTERVAL offset]))"
            }
            TvfKind::Hop => {
                "TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL 'slide' SECOND, INTERVAL 'size' SECOND [, offset]))"
            }
            TvfKind::Session => {
                "TABLE(SESSION(TABLE t [PARTITION BY k], DESCRIPTOR(ts), INTERVAL 'gap' SECOND))"
            }
        }
    }
}

impl RelationPlanner for WindowTvfPlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> Result<RelationPlanning> {
        let (kind, args, alias) = match relation {
            TableFactor::TableFunction {
                expr: SqlExpr::Function(ref f),
                ref alias,
            } => match TvfKind::from_name(&f.name) {
                Some(kind) => match &f.args {
                    FunctionArguments::List(list) => (kind, list.args.clone(), alias.clone()),
                    _ => return plan_err!("{} needs arguments: {}", kind.name(), kind.usage()),
                },
                None => return Ok(RelationPlanning::Original(Box::new(relation))),
            },
            TableFactor::Table {
                ref name,
                args: Some(ref args),
                ref alias,
                ..
            } => match TvfKind::from_name(name) {
                Some(kind) => (kind, args.args.clone(), alias.clone()),
                None => return Ok(RelationPlanning::Original(Box::new(relation))),
            },
            other => return Ok(RelationPlanning::Original(Box::new(other))),
        };
        let node = plan_window_tvf(kind, args, context)?;
        let plan = LogicalPlan::Extension(Extension {
            node: Arc::new(node),
        });
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan, alias,
        ))))
    }
}

/// Binds positional and named arguments to the parameters of `kind`.
fn bind_arguments(kind: TvfKind, args: Vec<FunctionArg>) -> Result<HashMap<&'static str, SqlExpr>> {
    let params = kind.parameters();
    let mut bound: HashMap<&'static str, SqlExpr> = HashMap::new();
    let mut position = 0;
    for arg in args {
        let (name, expr) = match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => (None, e),
            FunctionArg::Named {
                name,
                arg: FunctionArgExpr::Expr(e),
                ..
            } => (Some(name.value.to_ascii_uppercase()), e),
            other => {
                return plan_err!(
                    "unsupported argument `{other}` of {}; usage: {}",
                    kind.name(),
                    kind.usage()
                );
            }
        };
        let param = match name {
            Some(n) => match params.iter().find(|p| **p == n) {
                Some(p) => *p,
                None => {
                    return plan_err!(
                        "{} has no parameter named {n}; its parameters are {}",
                        kind.name(),
                        params.join(", ")
                    );
                }
            },
            None => {
                // A SESSION without PARTITION BY skips that parameter.
                if kind == TvfKind::Session
                    && params.get(position) == Some(&"PARTITION")
                    && !is_partition_marker(&expr)
                {
                    position += 1;
                }
                let Some(p) = params.get(position) else {
                    return plan_err!(
                        "too many arguments for {}; usage: {}",
                        kind.name(),
                        kind.usage()
                    );
                };
                position += 1;
                *p
            }
        };
        if bound.insert(param, expr).is_some() {
            return plan_err!("{} argument {param} is given twice", kind.name());
        }
    }
    Ok(bound)
}

fn is_partition_marker(expr: &SqlExpr) -> bool {
    matches!(expr, SqlExpr::Function(f) if f.name.to_string().eq_ignore_ascii_case(PARTITION_BY_MARKER))
}

fn plan_window_tvf(
    kind: TvfKind,
    args: Vec<FunctionArg>,
    context: &mut dyn RelationPlannerContext,
) -> Result<WindowAssignNode> {
    let mut args = bind_arguments(kind, args)?;
    let mut take = |name: &str| args.remove(name);
    let missing = |name: &str| {
        plan_datafusion_err!(
            "{} is missing its {name} argument; usage: {}",
            kind.name(),
            kind.usage()
        )
    };

    let data = take("DATA").ok_or_else(|| missing("DATA"))?;
    let input = plan_input(kind, data, context)?;

    let time = take("TIMECOL").ok_or_else(|| missing("TIMECOL"))?;
    let time_column = descriptor_column(kind, time, input.schema(), context)?;

    let interval =
        |e: Option<SqlExpr>, name: &str, ctx: &mut dyn RelationPlannerContext| -> Result<i64> {
            let e = e.ok_or_else(|| missing(name))?;
            interval_ms(kind, name, e, ctx)
        };
    let spec = match kind {
        TvfKind::Tumble => {
            let size = interval(take("SIZE"), "SIZE", context)?;
            let offset = match take("OFFSET") {
                Some(e) => interval_ms(kind, "OFFSET", e, context)?,
                None => 0,
            };
            WindowSpec::tumble(size, offset)?
        }
        TvfKind::Hop => {
            let slide = interval(take("SLIDE"), "SLIDE", context)?;
            let size = interval(take("SIZE"), "SIZE", context)?;
            let offset = match take("OFFSET") {
                Some(e) => interval_ms(kind, "OFFSET", e, context)?,
                None => 0,
            };
            WindowSpec::hop(slide, size, offset)?
        }
        TvfKind::Session => WindowSpec::session(interval(take("GAP"), "GAP", context)?)?,
    };

    let mut partition_keys = Vec::new();
    if let Some(p) = take("PARTITION") {
        let SqlExpr::Function(f) = p else {
            return plan_err!("SESSION PARTITION BY expects column names");
        };
        if let FunctionArguments::List(list) = f.args {
            for arg in list.args {
                let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg else {
                    return plan_err!("SESSION PARTITION BY expects column names");
                };
                let key = context.sql_to_expr(e, input.schema())?;
                if !matches!(key, Expr::Column(_)) {
                    return plan_err!(
                        "SESSION PARTITION BY expects column names, got {key}; compute the key in \
                         a subquery first"
                    );
                }
                partition_keys.push(key);
            }
        }
    }
    WindowAssignNode::try_new(input, time_column, spec, partition_keys)
}

/// Plans the DATA argument: a subquery, which the window rewriter made of `TABLE t` as
/// `(SELECT * FROM t)`. Such a subquery keeps the name `t` as its alias, so `t.col` still works.
fn plan_input(
    kind: TvfKind,
    data: SqlExpr,
    context: &mut dyn RelationPlannerContext,
) -> Result<LogicalPlan> {
    let SqlExpr::Subquery(query) = data else {
        return plan_err!(
            "the first argument of {} must be `TABLE name`, got `{data}`; usage: {}",
            kind.name(),
            kind.usage()
        );
    };
    let alias = single_table_of(&query).map(|name| TableAlias {
        name,
        columns: vec![],
        explicit: true,
        at: None,
    });
    context.plan(TableFactor::Derived {
        lateral: false,
        subquery: query,
        alias,
        sample: None,
    })
}

/// The table name of `SELECT * FROM name`.
fn single_table_of(query: &Query) -> Option<Ident> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if select.from.len() != 1 || !select.from[0].joins.is_empty() || select.selection.is_some() {
        return None;
    }
    match &select.from[0].relation {
        TableFactor::Table {
            name,
            alias: None,
            args: None,
            ..
        } => name.0.last().and_then(|p| p.as_ident()).cloned(),
        _ => None,
    }
}

/// The column named by `DESCRIPTOR(col)` (or a bare column in the short syntax).
fn descriptor_column(
    kind: TvfKind,
    time: SqlExpr,
    schema: &DFSchema,
    context: &mut dyn RelationPlannerContext,
) -> Result<Column> {
    let inner = match time {
        SqlExpr::Function(f) if f.name.to_string().eq_ignore_ascii_case("DESCRIPTOR") => {
            match f.args {
                FunctionArguments::List(mut list) if list.args.len() == 1 => {
                    match list.args.pop() {
                        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(e))) => e,
                        _ => return plan_err!("DESCRIPTOR takes one column name"),
                    }
                }
                _ => return plan_err!("DESCRIPTOR takes exactly one column name"),
            }
        }
        other => other,
    };
    match context.sql_to_expr(inner, schema)? {
        Expr::Column(c) => Ok(c),
        other => plan_err!(
            "the time column of {} must be a column (DESCRIPTOR(ts)), got {other}",
            kind.name()
        ),
    }
}

/// Evaluates an interval literal to milliseconds.
fn interval_ms(
    kind: TvfKind,
    name: &str,
    expr: SqlExpr,
    context: &mut dyn RelationPlannerContext,
) -> Result<i64> {
    let text = expr.to_string();
    let planned = context.sql_to_expr(expr, &DFSchema::empty())?;
    literal_interval_ms(&planned).ok_or_else(|| {
        plan_datafusion_err!(
            "{} {name} must be a fixed interval literal such as INTERVAL '10' SECOND, got `{text}` \
             (months and years have no fixed length)",
            kind.name()
        )
    })
}

/// Milliseconds of a day/time interval literal, `None` for anything else (including months).
pub fn literal_interval_ms(expr: &Expr) -> Option<i64> {
    let value = match expr {
        Expr::Literal(v, _) => v,
        Expr::Alias(a) => return literal_interval_ms(&a.expr),
        Expr::Negative(e) => return literal_interval_ms(e).map(|v| -v),
        _ => return None,
    };
    match value {
        ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
            Some(i64::from(v.days) * 86_400_000 + v.nanoseconds / 1_000_000)
        }
        ScalarValue::IntervalDayTime(Some(v)) => {
            Some(i64::from(v.days) * 86_400_000 + i64::from(v.milliseconds))
        }
        ScalarValue::DurationMillisecond(Some(v)) => Some(*v),
        ScalarValue::DurationSecond(Some(v)) => v.checked_mul(1000),
        ScalarValue::DurationMicrosecond(Some(v)) => Some(v / 1000),
        ScalarValue::DurationNanosecond(Some(v)) => Some(v / 1_000_000),
        _ => None,
    }
}
