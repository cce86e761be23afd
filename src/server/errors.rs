//! Engine errors as Postgres `ErrorResponse`s with the SQLSTATE a driver expects.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use pgwire::error::{ErrorInfo, PgWireError};

pub use crate::error::{
    DATATYPE_MISMATCH, DIVISION_BY_ZERO, DUPLICATE_TABLE, FEATURE_NOT_SUPPORTED, INTERNAL_ERROR,
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
    if let Some(code) = by_context(e) {
        return code;
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

/// The SQLSTATE of a user's mistake that DataFusion reports under a context whose root says
/// too little: a setting's value that does not parse (`SET datafusion.execution.batch_size =
/// 'x'`, an external parse error under "Error setting config"), and operands whose types do not
/// go together, which its type coercion reports as an internal error.
fn by_context(e: &DataFusionError) -> Option<&'static str> {
    let mut current = e;
    // Contexts are nested as deep as DataFusion wrapped them (a few levels).
    for _ in 0..32 {
        let DataFusionError::Context(context, inner) = current else {
            return None;
        };
        if context.starts_with("Error setting config") || context.starts_with("Error parsing") {
            return Some(INVALID_PARAMETER_VALUE);
        }
        if context == "type_coercion"
            && let DataFusionError::Internal(msg) = inner.find_root()
            && (msg.contains("Failed to coerce") || msg.contains("failed to match any signature"))
        {
            return Some(DATATYPE_MISMATCH);
        }
        current = inner;
    }
    None
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
        // A setting's value that does not parse (found by the SQL fuzz target as XX000).
        let setting = DataFusionError::Context(
            "Error setting config datafusion.execution.batch_size".into(),
            Box::new(DataFusionError::Context(
                "Error parsing 'x' as usize".into(),
                Box::new(DataFusionError::External(
                    "invalid digit found in string".into(),
                )),
            )),
        );
        assert_eq!(sqlstate(&setting), INVALID_PARAMETER_VALUE);
        let coercion = DataFusionError::Context(
            "type_coercion".into(),
            Box::new(DataFusionError::Internal(
                "Failed to coerce types Timestamp(ns) and Int64 in BETWEEN expression.".into(),
            )),
        );
        assert_eq!(sqlstate(&coercion), DATATYPE_MISMATCH);
        // Other internal errors stay internal.
        let bug = DataFusionError::Context(
            "type_coercion".into(),
            Box::new(DataFusionError::Internal("something else".into())),
        );
        assert_eq!(sqlstate(&bug), INTERNAL_ERROR);
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
