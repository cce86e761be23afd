//! Pieces of the server's answers: the pg_catalog compatibility rewrite of driver queries, the
//! SQL types of materialized view columns, one-value results, and undoing a half-created view.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::context::SabotContext;
use crate::planner::complexity::check_statement;

/// Drops a half-created materialized view's table unless disarmed (also when the statement is
/// canceled midway).
pub(crate) struct ViewCleanup<'a> {
    pub(crate) ctx: &'a SabotContext,
    pub(crate) name: &'a str,
    pub(crate) armed: bool,
}

impl Drop for ViewCleanup<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.ctx.deregister_table(self.name);
        }
    }
}

/// Catalog queries of psql and drivers go through the pg_catalog compatibility rewrites;
/// everything else reaches the engine as written.
pub(super) fn catalog_rewrite(sql: &str) -> String {
    let lower = sql.to_ascii_lowercase();
    let catalog = [
        "pg_",
        "::reg",
        "current_schema",
        "current_database",
        "version()",
    ]
    .iter()
    .any(|m| lower.contains(m));
    if !catalog {
        return sql.to_string();
    }
    // pg_type's typinput/typoutput/typreceive/typsend hold function names here, not oids, so
    // a comparison with a `'name'::regproc` (the JDBC driver's
    // `typinput='pg_catalog.array_in'::regproc`) compares names.
    static REGPROC: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let sql = match REGPROC.get_or_init(|| {
        regex::Regex::new(
            r"(?i)\b(typinput|typoutput|typreceive|typsend)\s*=\s*'(?:pg_catalog\.)?(\w+)'::regproc\b",
        )
        .ok()
    }) {
        Some(r) => r.replace_all(sql, "$1 = '$2'").into_owned(),
        None => sql.to_string(),
    };
    let sql = sql.as_str();
    // The compatibility parser rewrites recursively: a statement too deep for that goes on
    // unchanged, and the engine refuses it with its own error.
    let checked: Vec<_> = Parser::parse_sql(&GenericDialect {}, sql)
        .unwrap_or_default()
        .into_iter()
        .map(check_statement)
        .collect();
    if checked.iter().any(Result::is_err) {
        return sql.to_string();
    }
    let parser = datafusion_pg_catalog::sql::PostgresCompatibilityParser::new();
    match parser.parse(sql) {
        Ok(statements) if statements.len() == 1 => statements[0].to_string(),
        _ => sql.to_string(),
    }
}

/// The SQL type of a materialized view column holding `t`.
pub(crate) fn sql_type(t: &DataType) -> Option<String> {
    use datafusion::arrow::datatypes::TimeUnit;
    Some(match t {
        DataType::Boolean => "BOOLEAN".into(),
        DataType::Int8 | DataType::Int16 => "SMALLINT".into(),
        DataType::Int32 => "INT".into(),
        DataType::Int64 | DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => "BIGINT".into(),
        DataType::UInt64 => "DECIMAL(20, 0)".into(),
        DataType::Float32 => "REAL".into(),
        DataType::Float64 => "DOUBLE".into(),
        DataType::Decimal128(p, s) => format!("DECIMAL({p}, {s})"),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "VARCHAR".into(),
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => "BYTEA".into(),
        DataType::Date32 => "DATE".into(),
        DataType::Timestamp(unit, tz) => {
            let p = match unit {
                TimeUnit::Second => 0,
                TimeUnit::Millisecond => 3,
                TimeUnit::Microsecond => 6,
                TimeUnit::Nanosecond => 9,
            };
            match tz {
                Some(_) => format!("TIMESTAMP({p}) WITH TIME ZONE"),
                None => format!("TIMESTAMP({p})"),
            }
        }
        _ => return None,
    })
}

/// A one-row, one-column text result.
pub(super) fn one_value(name: &str, value: &str) -> RecordBatch {
    let schema =
        datafusion::arrow::datatypes::Schema::new(vec![datafusion::arrow::datatypes::Field::new(
            name,
            DataType::Utf8,
            false,
        )]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![Arc::new(datafusion::arrow::array::StringArray::from(vec![
            value.to_string(),
        ]))],
    )
    .unwrap_or_else(|_| {
        RecordBatch::new_empty(Arc::new(datafusion::arrow::datatypes::Schema::empty()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regproc_comparisons_compare_names() {
        assert!(
            catalog_rewrite(
                "SELECT typinput='pg_catalog.array_in'::regproc as is_array FROM pg_catalog.pg_type"
            )
            .contains("typinput = 'array_in'")
        );
    }
}
