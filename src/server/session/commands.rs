//! What a statement is, read from its text: server commands, command tags, names, and the
//! small results the server answers itself.

use std::fmt::Debug;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::results::Tag;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::Token;

use crate::config::Setting;
use crate::context::SabotContext;
use crate::planner::complexity::check_statement;

/// What the server answers itself, before the engine sees the statement.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Command {
    ShowJobs,
    CancelJob(u64),
    /// BEGIN / COMMIT / ROLLBACK: accepted and ignored (no transactions), with this tag.
    Transaction(&'static str),
    /// `SHOW <Sabot setting>`.
    ShowSetting(Setting),
    /// `SHOW <anything else>`: one of PostgreSQL's parameters.
    Show(String),
    /// `SET` / `RESET` of one of PostgreSQL's parameters (`None`: back to the default).
    SetPostgres {
        name: String,
        value: Option<String>,
    },
    /// `CREATE MATERIALIZED VIEW [IF NOT EXISTS] name [(column, ...)] AS query`.
    CreateMaterializedView {
        name: String,
        query: String,
        if_not_exists: bool,
        /// Names for the query's first columns (PostgreSQL's column list).
        columns: Vec<String>,
    },
    /// `DROP MATERIALIZED VIEW [IF EXISTS] name`.
    DropMaterializedView {
        name: String,
        if_exists: bool,
    },
    /// `DEALLOCATE [PREPARE] name | ALL` (`None`: all), as psycopg sends before DDL.
    Deallocate(Option<String>),
    /// `DISCARD ALL | PLANS | TEMP | TEMPORARY | SEQUENCES`: with ALL, the session is reset
    /// (prepared statements, portals and settings), as a connection pool expects.
    Discard {
        all: bool,
    },
}

/// `CREATE MATERIALIZED VIEW` and `DROP MATERIALIZED VIEW`, with the query text as written.
pub(super) fn materialized_view(sql: &str) -> Option<Command> {
    static CREATE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    static DROP: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let create = CREATE.get_or_init(|| {
        regex::Regex::new(
            r"(?is)^\s*CREATE\s+MATERIALIZED\s+VIEW\s+(IF\s+NOT\s+EXISTS\s+)?([^\s(]+)\s*(?:\(([^)]*)\))?\s*AS\s+(.+?)[\s;]*$",
        )
        .ok()
    });
    let drop = DROP.get_or_init(|| {
        regex::Regex::new(
            r"(?is)^\s*DROP\s+MATERIALIZED\s+VIEW\s+(IF\s+EXISTS\s+)?([^\s;]+)[\s;]*$",
        )
        .ok()
    });
    if let Some(c) = create.as_ref().and_then(|r| r.captures(sql)) {
        let columns = match c.get(3) {
            Some(list) => column_names(list.as_str())?,
            None => Vec::new(),
        };
        return Some(Command::CreateMaterializedView {
            name: c[2].to_ascii_lowercase(),
            query: c[4].to_string(),
            if_not_exists: c.get(1).is_some(),
            columns,
        });
    }
    if let Some(c) = drop.as_ref().and_then(|r| r.captures(sql)) {
        return Some(Command::DropMaterializedView {
            name: c[2].to_ascii_lowercase(),
            if_exists: c.get(1).is_some(),
        });
    }
    None
}

/// The names of a column list `a, "B c"` (unquoted names in lower case, as SQL folds them);
/// `None` if it is not a list of names.
fn column_names(list: &str) -> Option<Vec<String>> {
    let mut parser = Parser::new(&GenericDialect {}).try_with_sql(list).ok()?;
    let names = parser
        .parse_comma_separated(|p| p.parse_identifier())
        .ok()?;
    parser.expect_token(&Token::EOF).ok()?;
    Some(
        names
            .into_iter()
            .map(|n| match n.quote_style {
                Some(_) => n.value,
                None => n.value.to_ascii_lowercase(),
            })
            .collect(),
    )
}

/// A plain (unquoted, optionally schema-qualified) identifier: the names a materialized view
/// may have, since they are written into the SQL of its table and job.
pub(super) fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

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

pub(super) fn command(sql: &str) -> Option<Command> {
    if let Some(mv) = materialized_view(sql) {
        return Some(mv);
    }
    if let Some((name, value)) = super::postgres_settings::parse_set(sql) {
        return Some(Command::SetPostgres { name, value });
    }
    let words: Vec<String> = sql
        .trim()
        .trim_end_matches(';')
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["SHOW", "JOBS"] => Some(Command::ShowJobs),
        ["DEALLOCATE", "ALL"] | ["DEALLOCATE", "PREPARE", "ALL"] => Some(Command::Deallocate(None)),
        ["DEALLOCATE", _] | ["DEALLOCATE", "PREPARE", _] => {
            // The name as written (a quoted name keeps its case, as in PostgreSQL).
            let name = sql
                .trim()
                .trim_end_matches(';')
                .split_whitespace()
                .next_back()
                .unwrap_or_default();
            Some(Command::Deallocate(Some(match name.strip_prefix('"') {
                Some(quoted) => quoted.trim_end_matches('"').replace("\"\"", "\""),
                None => name.to_ascii_lowercase(),
            })))
        }
        ["DISCARD", what]
            if matches!(*what, "ALL" | "PLANS" | "TEMP" | "TEMPORARY" | "SEQUENCES") =>
        {
            Some(Command::Discard {
                all: *what == "ALL",
            })
        }
        ["CANCEL", "JOB", n] => n.parse().ok().map(Command::CancelJob),
        ["BEGIN", ..] | ["START", "TRANSACTION", ..] => Some(Command::Transaction("BEGIN")),
        ["COMMIT", ..] | ["END", ..] => Some(Command::Transaction("COMMIT")),
        ["ROLLBACK", ..] | ["ABORT", ..] => Some(Command::Transaction("ROLLBACK")),
        ["SHOW", "TABLES"] | ["SHOW", "COLUMNS", ..] | ["SHOW", "ALL"] => None,
        ["SHOW", "TIME", "ZONE"] => Some(Command::Show("timezone".into())),
        ["SHOW", "TRANSACTION", "ISOLATION", "LEVEL"] => {
            Some(Command::Show("transaction_isolation".into()))
        }
        ["SHOW", name] => {
            let name = name
                .trim_matches(|c| c == '\'' || c == '"')
                .to_ascii_lowercase();
            match Setting::from_key(&name) {
                Some(setting) => Some(Command::ShowSetting(setting)),
                None if name.starts_with("datafusion.") => None,
                None => Some(Command::Show(name)),
            }
        }
        _ => None,
    }
}

/// The command tag of a statement that returns no rows: the verb and, for CREATE / DROP /
/// ALTER, the kind of object (`CREATE TABLE`, `DROP VIEW`, `CREATE MATERIALIZED VIEW`).
pub(super) fn tag_of(sql: &str) -> Tag {
    const SKIP: [&str; 6] = [
        "OR",
        "REPLACE",
        "TEMPORARY",
        "TEMP",
        "EXTERNAL",
        "UNBOUNDED",
    ];
    let words: Vec<String> = sql
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .take(8)
        .collect();
    let Some(verb) = words.first() else {
        return Tag::new("");
    };
    if !matches!(verb.as_str(), "CREATE" | "DROP" | "ALTER") {
        return Tag::new(verb);
    }
    let mut object: Vec<&str> = words[1..]
        .iter()
        .map(String::as_str)
        .skip_while(|w| SKIP.contains(w))
        .take(1)
        .collect();
    if object == ["MATERIALIZED"] {
        object.push("VIEW");
    }
    Tag::new(
        &std::iter::once(verb.as_str())
            .chain(object)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// CREATE / DROP of a table or view: what a restarted server must replay.
pub(super) fn changes_catalog(sql: &str) -> bool {
    tag_of(sql) == Tag::new("CREATE TABLE")
        || tag_of(sql) == Tag::new("CREATE VIEW")
        || tag_of(sql) == Tag::new("DROP TABLE")
        || tag_of(sql) == Tag::new("DROP VIEW")
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

/// `INSERT INTO t VALUES ...` runs at once (a job is for `INSERT INTO ... SELECT`).
pub(super) fn inserts_values(sql: &str) -> bool {
    let upper = sql.to_ascii_uppercase();
    let words: Vec<&str> = upper.split_whitespace().collect();
    let values = words
        .iter()
        .position(|w| *w == "VALUES" || w.starts_with("VALUES("));
    let select = words.iter().position(|w| *w == "SELECT" || *w == "WITH");
    match (values, select) {
        (Some(_), None) => true,
        (Some(v), Some(s)) => v < s,
        _ => false,
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
    fn server_commands() {
        assert_eq!(command("show jobs;"), Some(Command::ShowJobs));
        assert_eq!(command("CANCEL JOB 12"), Some(Command::CancelJob(12)));
        assert_eq!(command("CANCEL JOB x"), None);
        assert_eq!(command("DEALLOCATE ALL"), Some(Command::Deallocate(None)));
        assert_eq!(
            command("deallocate prepare all;"),
            Some(Command::Deallocate(None))
        );
        assert_eq!(
            command("DEALLOCATE _pg3_1"),
            Some(Command::Deallocate(Some("_pg3_1".into())))
        );
        assert_eq!(
            command("DEALLOCATE PREPARE \"S_1\""),
            Some(Command::Deallocate(Some("S_1".into())))
        );
        assert_eq!(command("DISCARD ALL"), Some(Command::Discard { all: true }));
        assert_eq!(
            command("discard plans"),
            Some(Command::Discard { all: false })
        );
        assert_eq!(command("begin"), Some(Command::Transaction("BEGIN")));
        assert_eq!(
            command("SHOW parallelism"),
            Some(Command::ShowSetting(Setting::Parallelism))
        );
        assert_eq!(command("SHOW TABLES"), None);
        assert_eq!(command("SHOW datafusion.execution.batch_size"), None);
        assert_eq!(command("SELECT 1"), None);
        assert_eq!(
            command("SET extra_float_digits = 3"),
            Some(Command::SetPostgres {
                name: "extra_float_digits".into(),
                value: Some("3".into())
            })
        );
        assert_eq!(
            command("show time zone"),
            Some(Command::Show("timezone".into()))
        );
    }

    /// `CREATE MATERIALIZED VIEW IF NOT EXISTS` and a column list went to DataFusion, which
    /// answered "Materialized views not supported".
    #[test]
    fn materialized_view_with_if_not_exists_and_columns() {
        assert_eq!(
            command("CREATE MATERIALIZED VIEW IF NOT EXISTS mv (a, \"B c\") AS SELECT 1, 2;"),
            Some(Command::CreateMaterializedView {
                name: "mv".into(),
                query: "SELECT 1, 2".into(),
                if_not_exists: true,
                columns: vec!["a".into(), "B c".into()],
            })
        );
        assert_eq!(
            command("create materialized view Mv as select 1"),
            Some(Command::CreateMaterializedView {
                name: "mv".into(),
                query: "select 1".into(),
                if_not_exists: false,
                columns: vec![],
            })
        );
        assert_eq!(
            command("CREATE MATERIALIZED VIEW mv (1 + 1) AS SELECT 1"),
            None
        );
    }

    #[test]
    fn regproc_comparisons_compare_names() {
        assert!(
            catalog_rewrite(
                "SELECT typinput='pg_catalog.array_in'::regproc as is_array FROM pg_catalog.pg_type"
            )
            .contains("typinput = 'array_in'")
        );
    }

    #[test]
    fn values_inserts_run_at_once() {
        assert!(inserts_values("INSERT INTO t VALUES (1), (2)"));
        assert!(inserts_values("insert into t values(1)"));
        assert!(!inserts_values("INSERT INTO t SELECT * FROM s"));
        assert!(!inserts_values(
            "INSERT INTO t SELECT * FROM (VALUES (1)) v"
        ));
    }

    #[test]
    fn tags() {
        assert_eq!(tag_of("CREATE TABLE t (a INT)"), Tag::new("CREATE TABLE"));
        assert_eq!(
            tag_of("create or replace view v as select 1"),
            Tag::new("CREATE VIEW")
        );
        assert_eq!(tag_of("DROP TABLE t"), Tag::new("DROP TABLE"));
        assert_eq!(tag_of("SET 'parallelism' = '2'"), Tag::new("SET"));
        assert!(changes_catalog("create or replace view v as select 1"));
        assert!(changes_catalog("DROP TABLE IF EXISTS t"));
        assert!(!changes_catalog("SET 'parallelism' = '2'"));
        assert_eq!(
            tag_of("CREATE MATERIALIZED VIEW m AS SELECT 1"),
            Tag::new("CREATE MATERIALIZED VIEW")
        );
    }
}
