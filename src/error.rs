//! Errors that know which SQLSTATE a Postgres client should see.
//!
//! Most errors are DataFusion's own and get their SQLSTATE from their kind (see
//! `server::errors`). Where Sabot itself decides something a client must be able to tell
//! apart (a statement too complex to plan, the failure of the job behind a materialized view),
//! it returns a [`SqlStateError`] wrapped in `DataFusionError::External`, and the server
//! answers with exactly that code. Embedders see an ordinary DataFusion error whose root is a
//! `SqlStateError` (downcast it to read the code).

use std::fmt;

use datafusion::error::DataFusionError;

/// Syntax error.
pub const SYNTAX_ERROR: &str = "42601";
/// Undefined table.
pub const UNDEFINED_TABLE: &str = "42P01";
/// Undefined column.
pub const UNDEFINED_COLUMN: &str = "42703";
/// Undefined object (a job id that does not exist).
pub const UNDEFINED_OBJECT: &str = "42704";
/// Duplicate table (a materialized view that exists).
pub const DUPLICATE_TABLE: &str = "42P07";
/// Any other error in the query (planning).
pub const SYNTAX_OR_RULE_VIOLATION: &str = "42000";
/// A value that does not parse as its type.
pub const INVALID_TEXT_REPRESENTATION: &str = "22P02";
/// A value a parameter cannot take.
pub const INVALID_PARAMETER_VALUE: &str = "22023";
/// Division by zero.
pub const DIVISION_BY_ZERO: &str = "22012";
/// Operands of types that do not go together (`ts BETWEEN 1 AND 'x'`).
pub const DATATYPE_MISMATCH: &str = "42804";
/// A number outside its type's range.
pub const NUMERIC_VALUE_OUT_OF_RANGE: &str = "22003";
/// A date/time format template that cannot be honoured.
pub const INVALID_DATETIME_FORMAT: &str = "22007";
/// Not supported.
pub const FEATURE_NOT_SUPPORTED: &str = "0A000";
/// A prepared statement name that does not exist.
pub const INVALID_SQL_STATEMENT_NAME: &str = "26000";
/// Canceled on request.
pub const QUERY_CANCELED: &str = "57014";
/// Out of memory: the memory limit would be exceeded.
pub const OUT_OF_MEMORY: &str = "53200";
/// The statement is nested too deeply (PostgreSQL's "stack depth limit exceeded").
pub const STATEMENT_TOO_COMPLEX: &str = "54001";
/// A file or directory that is not there (PostgreSQL's "undefined_file").
pub const UNDEFINED_FILE: &str = "58P01";
/// Reading or writing a file failed (PostgreSQL's "io_error").
pub const IO_ERROR: &str = "58030";
/// Internal or execution error.
pub const INTERNAL_ERROR: &str = "XX000";

/// An error with the SQLSTATE it must reach a client with (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqlStateError {
    /// The five-character SQLSTATE.
    pub code: &'static str,
    /// What went wrong, where, and how to fix it.
    pub message: String,
}

impl fmt::Display for SqlStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SqlStateError {}

/// A DataFusion error carrying `code` (see the module docs).
pub fn with_sqlstate(code: &'static str, message: impl Into<String>) -> DataFusionError {
    DataFusionError::External(Box::new(SqlStateError {
        code,
        message: message.into(),
    }))
}

/// The [`SqlStateError`] at the root of `e`, if there is one.
pub fn sqlstate_error(e: &DataFusionError) -> Option<&SqlStateError> {
    match e.find_root() {
        DataFusionError::External(inner) => inner.downcast_ref::<SqlStateError>(),
        _ => None,
    }
}

/// What to tell a person about `e`: Sabot's own message for a [`SqlStateError`] (without
/// DataFusion's "External error: "), DataFusion's message without backtraces otherwise.
pub fn message(e: &DataFusionError) -> String {
    match sqlstate_error(e) {
        Some(coded) => coded.message.clone(),
        None => e.strip_backtrace(),
    }
}
