//! Result column names as PostgreSQL gives them.
//!
//! DataFusion names an unaliased expression after its text (`Int64(1)`, `count(*)`);
//! PostgreSQL names a column after the column it copies, the function it calls, the type it
//! casts to, or else `?column?` (its `FigureColname` rules). Clients show these names, and
//! some programs read result columns by name, so over the wire a query's unaliased columns are
//! renamed as PostgreSQL would; aliases, column references and `*` keep DataFusion's names.
//! Only the row description changes: the plan, and the embedded API, keep DataFusion's.

use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::sql::sqlparser::ast::{
    DataType, Expr, ObjectName, Query, SelectItem, SetExpr, Statement,
};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::planner::complexity::check_statement;
use crate::planner::temporal_syntax::prepare_temporal_syntax;
use crate::planner::window_syntax::prepare_window_syntax;

/// What PostgreSQL would name the result columns of `sql`, one entry per output column:
/// `Some(name)` to rename it, `None` to keep DataFusion's name. `None` as a whole when the
/// statement is not a plain query or its columns cannot be matched up (`columns` is the
/// number of output columns).
pub fn postgres_names(sql: &str, columns: usize) -> Option<Vec<Option<String>>> {
    let sql = prepare_window_syntax(sql).ok()?;
    let sql = prepare_temporal_syntax(&sql).ok()?;
    let statement = Parser::parse_sql(&GenericDialect {}, &sql).ok()?.pop()?;
    let Statement::Query(query) = check_statement(statement).ok()? else {
        return None;
    };
    let items = &leftmost_select(&query)?.projection;
    let mut names = vec![None; columns];
    // Items before the first wildcard are the first columns; items after the last one are
    // the last columns; a wildcard's own columns keep their names.
    let first_wildcard = items.iter().position(is_wildcard);
    let head = first_wildcard.unwrap_or(items.len());
    if first_wildcard.is_none() && items.len() != columns {
        return None;
    }
    for (i, item) in items[..head].iter().enumerate() {
        *names.get_mut(i)? = item_name(item);
    }
    if let Some(last) = items.iter().rposition(is_wildcard) {
        let tail = &items[last + 1..];
        let start = columns.checked_sub(tail.len())?;
        if start < head {
            return None;
        }
        for (i, item) in tail.iter().enumerate() {
            *names.get_mut(start + i)? = item_name(item);
        }
    }
    Some(names)
}

/// `schema` with the columns of `sql` named as PostgreSQL names them (see
/// [`postgres_names`]).
pub fn with_postgres_names(sql: &str, schema: &Schema) -> Schema {
    let Some(names) = postgres_names(sql, schema.fields().len()) else {
        return schema.clone();
    };
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .zip(names)
        .map(|(f, name)| match name {
            Some(name) => f.as_ref().clone().with_name(name),
            None => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

fn is_wildcard(item: &SelectItem) -> bool {
    matches!(
        item,
        SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..)
    )
}

/// The select whose items name the columns (the leftmost of set operations, as in
/// PostgreSQL).
fn leftmost_select(query: &Query) -> Option<&datafusion::sql::sqlparser::ast::Select> {
    let mut body = query.body.as_ref();
    loop {
        match body {
            SetExpr::Select(select) => return Some(select),
            SetExpr::SetOperation { left, .. } => body = left,
            SetExpr::Query(q) => body = q.body.as_ref(),
            _ => return None,
        }
    }
}

/// The new name of an unaliased item; `None` keeps DataFusion's.
fn item_name(item: &SelectItem) -> Option<String> {
    match item {
        SelectItem::UnnamedExpr(expr) => match expr {
            // A column keeps the name DataFusion gives it (the same as PostgreSQL's).
            Expr::Identifier(_) | Expr::CompoundIdentifier(_) => None,
            other => Some(figure_name(other).unwrap_or_else(|| "?column?".to_string())),
        },
        _ => None,
    }
}

fn last_part(name: &ObjectName) -> Option<String> {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .map(|ident| match ident.quote_style {
            Some(_) => ident.value.clone(),
            None => ident.value.to_ascii_lowercase(),
        })
}

/// PostgreSQL's `FigureColname`: the name an expression gives its column, if any.
fn figure_name(expr: &Expr) -> Option<String> {
    Some(match expr {
        Expr::Identifier(ident) => ident.value.to_ascii_lowercase(),
        Expr::CompoundIdentifier(parts) => parts.last()?.value.to_ascii_lowercase(),
        // CURRENT_TIMESTAMP and friends (no parentheses) are functions too.
        Expr::Function(f) => last_part(&f.name)?,
        Expr::Nested(inner) | Expr::Collate { expr: inner, .. } => return figure_name(inner),
        Expr::Cast {
            expr, data_type, ..
        } => return figure_name(expr).or_else(|| type_name(data_type)),
        Expr::TypedString(typed) => return type_name(&typed.data_type),
        Expr::Interval(_) => "interval".into(),
        Expr::Case { .. } => "case".into(),
        Expr::Exists { .. } => "exists".into(),
        Expr::Array(_) => "array".into(),
        Expr::Tuple(_) => "row".into(),
        Expr::Extract { .. } => "extract".into(),
        Expr::Substring { .. } => "substring".into(),
        Expr::Position { .. } => "position".into(),
        Expr::Overlay { .. } => "overlay".into(),
        Expr::Trim { .. } => "btrim".into(),
        Expr::Ceil { .. } => "ceil".into(),
        Expr::Floor { .. } => "floor".into(),
        Expr::AtTimeZone { .. } => "timezone".into(),
        Expr::Subquery(query) => {
            let select = leftmost_select(query)?;
            return match select.projection.first()? {
                SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
                SelectItem::UnnamedExpr(e) => figure_name(e),
                _ => None,
            };
        }
        _ => return None,
    })
}

/// PostgreSQL's name of a type in a cast (`int4` for INT, `timestamptz`, ...).
fn type_name(data_type: &DataType) -> Option<String> {
    let text = data_type.to_string().to_ascii_uppercase();
    let base = text.split('(').next().unwrap_or_default().trim();
    let with_zone = text.contains("WITH TIME ZONE") || base == "TIMESTAMPTZ";
    Some(
        match base {
            "INT" | "INTEGER" | "INT4" => "int4",
            "BIGINT" | "INT8" => "int8",
            "SMALLINT" | "INT2" => "int2",
            "REAL" | "FLOAT4" => "float4",
            "DOUBLE" | "DOUBLE PRECISION" | "FLOAT8" | "FLOAT" => "float8",
            "BOOLEAN" | "BOOL" => "bool",
            "TEXT" | "STRING" => "text",
            "VARCHAR" | "CHARACTER VARYING" => "varchar",
            "CHAR" | "CHARACTER" => "bpchar",
            "NUMERIC" | "DECIMAL" => "numeric",
            "DATE" => "date",
            "INTERVAL" => "interval",
            "BYTEA" => "bytea",
            "JSON" => "json",
            "JSONB" => "jsonb",
            "UUID" => "uuid",
            b if b.starts_with("TIMESTAMP") => {
                if with_zone {
                    "timestamptz"
                } else {
                    "timestamp"
                }
            }
            b if b.starts_with("TIME") => {
                if text.contains("WITH TIME ZONE") {
                    "timetz"
                } else {
                    "time"
                }
            }
            other => return other.split_whitespace().next().map(str::to_ascii_lowercase),
        }
        .to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(sql: &str, columns: usize) -> Vec<Option<String>> {
        postgres_names(sql, columns).unwrap()
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_string())
    }

    /// `SELECT 1` named its column `Int64(1)`; PostgreSQL says `?column?`.
    #[test]
    fn unnamed_expressions_as_postgres_names_them() {
        assert_eq!(names("SELECT 1", 1), vec![some("?column?")]);
        assert_eq!(
            names("SELECT 1 + 1, count(*), now(), a, t.b, c AS x", 6),
            vec![
                some("?column?"),
                some("count"),
                some("now"),
                None,
                None,
                None
            ]
        );
        assert_eq!(
            names(
                "SELECT '1'::int, a::text, CAST(2 AS BIGINT), DATE '2020-01-01', \
                 '2024-01-01'::timestamptz, CASE WHEN true THEN 1 END, (SELECT 1 AS y)",
                7
            ),
            vec![
                some("int4"),
                some("a"),
                some("int8"),
                some("date"),
                some("timestamptz"),
                some("case"),
                some("y")
            ]
        );
        assert_eq!(
            names("SELECT 1, *, upper(a) FROM t", 4),
            vec![some("?column?"), None, None, some("upper")]
        );
        assert_eq!(
            names("SELECT 1 UNION ALL SELECT 2 AS two", 1),
            vec![some("?column?")]
        );
        assert_eq!(postgres_names("SHOW TABLES", 3), None);
        assert_eq!(postgres_names("SELECT 1, 2", 3), None);
    }
}
