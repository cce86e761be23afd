//! Engine errors as Postgres `ErrorResponse`s with the SQLSTATE a driver expects.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};

pub use crate::error::{
    DIVISION_BY_ZERO, DUPLICATE_TABLE, FEATURE_NOT_SUPPORTED, INTERNAL_ERROR,
    INVALID_DATETIME_FORMAT, INVALID_PARAMETER_VALUE, INVALID_SQL_STATEMENT_NAME,
    INVALID_TEXT_REPRESENTATION, NUMERIC_VALUE_OUT_OF_RANGE, OUT_OF_MEMORY, QUERY_CANCELED,
    STATEMENT_TOO_COMPLEX, SYNTAX_ERROR, SYNTAX_OR_RULE_VIOLATION, UNDEFINED_COLUMN,
    UNDEFINED_OBJECT, UNDEFINED_TABLE,
};

/// The SQLSTATE for `e`.
pub fn sqlstate(e: &DataFusionError) -> &'static str {
    if let Some(coded) = crate::error::sqlstate_error(e) {
        return coded.code;
    }
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => OUT_OF_MEMORY,
        DataFusionError::Configuration(_) => INVALID_PARAMETER_VALUE,
        DataFusionError::SQL(err, _) => match err.as_ref() {
            // Parentheses, subqueries or calls nested past the parser's limit.
            datafusion::sql::sqlparser::parser::ParserError::RecursionLimitExceeded => {
                STATEMENT_TOO_COMPLEX
            }
            _ => SYNTAX_ERROR,
        },
        DataFusionError::SchemaError(err, _) => match err.as_ref() {
            SchemaError::FieldNotFound { .. } => UNDEFINED_COLUMN,
            _ => SYNTAX_OR_RULE_VIOLATION,
        },
        DataFusionError::ArrowError(err, _) => match err.as_ref() {
            ArrowError::CastError(_) | ArrowError::ParseError(_) => INVALID_TEXT_REPRESENTATION,
            ArrowError::DivideByZero => DIVISION_BY_ZERO,
            ArrowError::ArithmeticOverflow(_) => NUMERIC_VALUE_OUT_OF_RANGE,
            _ => INTERNAL_ERROR,
        },
        DataFusionError::NotImplemented(_) => FEATURE_NOT_SUPPORTED,
        DataFusionError::Plan(msg) => {
            let lower = msg.to_ascii_lowercase();
            if lower.contains("table '") && lower.contains("not found") {
                UNDEFINED_TABLE
            } else if lower.contains("not supported") || lower.contains("is not supported") {
                FEATURE_NOT_SUPPORTED
            } else if lower.contains("already exists") {
                DUPLICATE_TABLE
            } else {
                SYNTAX_OR_RULE_VIOLATION
            }
        }
        DataFusionError::Execution(msg) => {
            let lower = msg.to_ascii_lowercase();
            if lower.contains("cannot cast") || lower.contains("cast error") {
                INVALID_TEXT_REPRESENTATION
            } else if lower.contains("divide by zero") || lower.contains("division by zero") {
                DIVISION_BY_ZERO
            } else if lower.contains("already exists") {
                DUPLICATE_TABLE
            } else {
                INTERNAL_ERROR
            }
        }
        _ => INTERNAL_ERROR,
    }
}

/// `e` as an `ErrorResponse`: SQLSTATE by kind, DataFusion's message without backtraces.
pub fn to_pg(e: DataFusionError) -> PgWireError {
    user_error(sqlstate(&e), crate::error::message(&e))
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
