//! Engine errors as Postgres `ErrorResponse`s with the SQLSTATE a driver expects.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};

/// Syntax error.
pub const SYNTAX_ERROR: &str = "42601";
/// Undefined table.
pub const UNDEFINED_TABLE: &str = "42P01";
/// Undefined column.
pub const UNDEFINED_COLUMN: &str = "42703";
/// A value that does not parse as its type.
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
/// Not supported.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// Canceled on request.
pub const QUERY_CANCELED: &str = "57014";
/// Any other error in the query (planning).
pub const SYNTAX_OR_RULE_VIOLATION: &str = "42000";
/// Undefined object (a job id that does not exist).
pub const UNDEFINED_OBJECT: &str = "42704";
/// Internal or execution error.
pub const INTERNAL_ERROR: &str = "XX000";
/// A value a parameter cannot take.
pub const INVALID_PARAMETER_VALUE: &str = "22023";

/// The SQLSTATE for `e`.
pub fn sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::SQL(_, _) => SYNTAX_ERROR,
        DataFusionError::SchemaError(err, _) => match err.as_ref() {
            SchemaError::FieldNotFound { .. } => UNDEFINED_COLUMN,
            _ => SYNTAX_OR_RULE_VIOLATION,
        },
        DataFusionError::ArrowError(err, _) => match err.as_ref() {
            ArrowError::CastError(_) | ArrowError::ParseError(_) => INVALID_TEXT_REPRESENTATION,
            _ => INTERNAL_ERROR,
        },
        DataFusionError::NotImplemented(_) => FEATURE_NOT_SUPPORTED,
        DataFusionError::Plan(msg) => {
            let lower = msg.to_ascii_lowercase();
            if lower.contains("table '") && lower.contains("not found") {
                UNDEFINED_TABLE
            } else if lower.contains("not supported") || lower.contains("is not supported") {
                FEATURE_NOT_SUPPORTED
            } else {
                SYNTAX_OR_RULE_VIOLATION
            }
        }
        DataFusionError::Execution(msg) => {
            let lower = msg.to_ascii_lowercase();
            if lower.contains("cannot cast") || lower.contains("cast error") {
                INVALID_TEXT_REPRESENTATION
            } else {
                INTERNAL_ERROR
            }
        }
        _ => INTERNAL_ERROR,
    }
}

/// `e` as an `ErrorResponse`: SQLSTATE by kind, DataFusion's message without backtraces.
pub fn to_pg(e: DataFusionError) -> PgWireError {
    let code = sqlstate(&e);
    user_error(code, e.strip_backtrace())
}

/// An `ErrorResponse` with `code` and `message`.
pub fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_string(),
        code.to_string(),
        message.into(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::common::{Column, DataFusionError};

    #[test]
    fn states_by_kind() {
        let parse = DataFusionError::SQL(
            Box::new(datafusion::sql::sqlparser::parser::ParserError::ParserError("x".into())),
            None,
        );
        assert_eq!(sqlstate(&parse), SYNTAX_ERROR);
        let missing = DataFusionError::SchemaError(
            Box::new(SchemaError::FieldNotFound {
                field: Box::new(Column::from_name("c")),
                valid_fields: vec![],
            }),
            Box::new(None),
        );
        assert_eq!(sqlstate(&missing), UNDEFINED_COLUMN);
        let table = DataFusionError::Plan("table 'datafusion.public.t' not found".into());
        assert_eq!(sqlstate(&table), UNDEFINED_TABLE);
        let wrapped = DataFusionError::Context("planning".into(), Box::new(table));
        assert_eq!(sqlstate(&wrapped), UNDEFINED_TABLE);
        let cast = DataFusionError::ArrowError(
            Box::new(ArrowError::CastError(
                "Cannot cast string 'x' to Int64".into(),
            )),
            None,
        );
        assert_eq!(sqlstate(&cast), INVALID_TEXT_REPRESENTATION);
        assert_eq!(
            sqlstate(&DataFusionError::NotImplemented("x".into())),
            FEATURE_NOT_SUPPORTED
        );
    }
}
