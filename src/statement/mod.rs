//! One statement, read once: what it is and what it carries.
//!
//! Every statement a user sends, whether through `SabotContext::sql`, the simple or the extended
//! protocol of the server, or a script of `sabot run`, is read once into a [`Statement`]:
//! Sabot's own commands (`SHOW JOBS`, `CANCEL JOB n`, `SET`, `SHOW`, materialized views, the
//! session commands drivers send), Flink `CREATE TABLE`, `DESCRIBE`, `INSERT`, queries and
//! `EXPLAIN`, or any other statement DataFusion runs. Whoever runs it matches on its
//! [`StatementKind`] and never looks at the text again: the command tag, whether it changes the
//! catalog, whether it returns rows or becomes a job are all answered here. Engine statements are
//! then parsed by DataFusion's parser (after the window rewriters) exactly once, when planned.
//!
//! - [`postgres`]: PostgreSQL's session parameters, which `SET` / `SHOW` / `RESET` may name.

pub mod postgres;

use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

use crate::config::Setting;

/// One statement (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct Statement {
    /// The text, as written (without a terminating `;`).
    pub sql: String,
    /// What it is.
    pub kind: StatementKind,
}

/// What a statement is.
#[derive(Debug, Clone, PartialEq)]
pub enum StatementKind {
    /// `CREATE TABLE ...` (Flink's DDL with connectors, or DataFusion's).
    CreateTable,
    /// `SET key = value` / `SET 'key' = 'value'` of a Sabot or DataFusion setting.
    Set {
        /// The key as written (quotes removed).
        key: String,
        /// The value (`None`: missing).
        value: Option<String>,
    },
    /// `SET` / `RESET` of one of PostgreSQL's session parameters (`None`: back to the default).
    SetPostgres {
        /// The parameter, in lower case.
        name: String,
        /// The value.
        value: Option<String>,
    },
    /// `SHOW <Sabot setting>`.
    ShowSetting(Setting),
    /// `SHOW <anything else>`: one of PostgreSQL's parameters.
    ShowPostgres(String),
    /// `DESCRIBE t` / `DESC t`.
    Describe {
        /// The table, as written.
        table: String,
    },
    /// `SHOW JOBS`.
    ShowJobs,
    /// `CANCEL JOB n`.
    CancelJob(u64),
    /// `FLUSH`: waits until every materialized view holds the effect of every change made to
    /// the memory tables it reads (as RisingWave's FLUSH).
    Flush,
    /// `CREATE MATERIALIZED VIEW [IF NOT EXISTS] name [(column, ...)] AS query`.
    CreateMaterializedView {
        /// The view's name (unquoted, in lower case).
        name: String,
        /// The query, as written.
        query: String,
        /// `IF NOT EXISTS`.
        if_not_exists: bool,
        /// Names for the query's first columns (PostgreSQL's column list).
        columns: Vec<String>,
    },
    /// `DROP MATERIALIZED VIEW [IF EXISTS] name`.
    DropMaterializedView {
        /// The view's name (in lower case).
        name: String,
        /// `IF EXISTS`.
        if_exists: bool,
    },
    /// BEGIN / COMMIT / ROLLBACK: accepted and ignored by the server (no transactions), with
    /// this tag.
    Transaction(&'static str),
    /// `DEALLOCATE [PREPARE] name | ALL` (`None`: all), as psycopg sends before DDL.
    Deallocate(Option<String>),
    /// `DISCARD ALL | PLANS | TEMP | TEMPORARY | SEQUENCES`: with ALL, the session is reset
    /// (prepared statements, portals and settings), as a connection pool expects.
    Discard {
        /// `DISCARD ALL`.
        all: bool,
    },
    /// A query returning rows (`SELECT`, `WITH`, `VALUES`, a parenthesized query).
    Query,
    /// `EXPLAIN ...`.
    Explain,
    /// `SHOW TABLES`, `SHOW COLUMNS`, `SHOW ALL`, `SHOW datafusion.*`: DataFusion's.
    Show,
    /// `INSERT INTO ...`.
    Insert {
        /// `INSERT ... VALUES`: runs at once (`INSERT ... SELECT` is a job).
        values: bool,
    },
    /// Anything else: DataFusion's DDL and DML (`CREATE VIEW`, `DROP TABLE`, ...).
    Other,
}

impl Statement {
    /// Reads one statement (see the module docs). Never fails: a statement that is none of
    /// Sabot's own goes to DataFusion as [`StatementKind::Other`] or a query, whose parser then
    /// reports what is wrong with it.
    pub fn parse(sql: &str) -> Self {
        let sql = sql.trim().trim_end_matches(';').trim_end();
        Self {
            sql: sql.to_string(),
            kind: kind_of(sql),
        }
    }

    /// The same statement with other text (a rewrite that keeps its kind, e.g. typed
    /// placeholders or catalog compatibility).
    pub fn with_sql(&self, sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            kind: self.kind.clone(),
        }
    }

    /// Whether it answers with rows.
    pub fn returns_rows(&self) -> bool {
        matches!(
            self.kind,
            StatementKind::Query
                | StatementKind::Explain
                | StatementKind::Show
                | StatementKind::Describe { .. }
                | StatementKind::ShowJobs
                | StatementKind::ShowSetting(_)
                | StatementKind::ShowPostgres(_)
        )
    }

    /// Whether its result columns are named from the text as PostgreSQL names them (queries);
    /// the others name their own columns.
    pub fn names_columns_from_text(&self) -> bool {
        matches!(
            self.kind,
            StatementKind::Query | StatementKind::Explain | StatementKind::Show
        )
    }

    /// CREATE / DROP of a table or view: what a restarted server must replay.
    pub fn changes_catalog(&self) -> bool {
        matches!(
            self.tag().as_str(),
            "CREATE TABLE" | "CREATE VIEW" | "DROP TABLE" | "DROP VIEW"
        )
    }

    /// The command tag of a statement that returns no rows: the verb and, for CREATE / DROP /
    /// ALTER, the kind of object (`CREATE TABLE`, `DROP VIEW`, `CREATE MATERIALIZED VIEW`).
    pub fn tag(&self) -> String {
        const SKIP: [&str; 6] = [
            "OR",
            "REPLACE",
            "TEMPORARY",
            "TEMP",
            "EXTERNAL",
            "UNBOUNDED",
        ];
        let words: Vec<String> = self
            .sql
            .split_whitespace()
            .map(|w| w.to_ascii_uppercase())
            .take(8)
            .collect();
        let Some(verb) = words.first() else {
            return String::new();
        };
        if !matches!(verb.as_str(), "CREATE" | "DROP" | "ALTER") {
            return verb.clone();
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
        std::iter::once(verb.as_str())
            .chain(object)
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What `sql` (trimmed, without `;`) is: Sabot's own commands first, then by its first words.
fn kind_of(sql: &str) -> StatementKind {
    if let Some(view) = materialized_view(sql) {
        return view;
    }
    if let Some((name, value)) = postgres::parse_set(sql) {
        return StatementKind::SetPostgres { name, value };
    }
    if let Some(command) = command(sql) {
        return command;
    }
    classify(sql)
}

/// The server's commands and `SHOW`, by their words.
fn command(sql: &str) -> Option<StatementKind> {
    let words: Vec<String> = sql
        .split_whitespace()
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let words: Vec<&str> = words.iter().map(String::as_str).collect();
    match words.as_slice() {
        ["SHOW", "JOBS"] => Some(StatementKind::ShowJobs),
        ["DEALLOCATE", "ALL"] | ["DEALLOCATE", "PREPARE", "ALL"] => {
            Some(StatementKind::Deallocate(None))
        }
        ["DEALLOCATE", _] | ["DEALLOCATE", "PREPARE", _] => {
            // The name as written (a quoted name keeps its case, as in PostgreSQL).
            let name = sql.split_whitespace().next_back().unwrap_or_default();
            Some(StatementKind::Deallocate(Some(
                match name.strip_prefix('"') {
                    Some(quoted) => quoted.trim_end_matches('"').replace("\"\"", "\""),
                    None => name.to_ascii_lowercase(),
                },
            )))
        }
        ["DISCARD", what]
            if matches!(*what, "ALL" | "PLANS" | "TEMP" | "TEMPORARY" | "SEQUENCES") =>
        {
            Some(StatementKind::Discard {
                all: *what == "ALL",
            })
        }
        ["CANCEL", "JOB", n] => n.parse().ok().map(StatementKind::CancelJob),
        ["FLUSH"] => Some(StatementKind::Flush),
        ["BEGIN", ..] | ["START", "TRANSACTION", ..] => Some(StatementKind::Transaction("BEGIN")),
        ["COMMIT", ..] | ["END", ..] => Some(StatementKind::Transaction("COMMIT")),
        ["ROLLBACK", ..] | ["ABORT", ..] => Some(StatementKind::Transaction("ROLLBACK")),
        ["SHOW", "TABLES"] | ["SHOW", "COLUMNS", ..] | ["SHOW", "ALL"] => Some(StatementKind::Show),
        ["SHOW", "TIME", "ZONE"] => Some(StatementKind::ShowPostgres("timezone".into())),
        ["SHOW", "TRANSACTION", "ISOLATION", "LEVEL"] => {
            Some(StatementKind::ShowPostgres("transaction_isolation".into()))
        }
        ["SHOW", name] => {
            let name = name
                .trim_matches(|c| c == '\'' || c == '"')
                .to_ascii_lowercase();
            Some(match Setting::from_key(&name) {
                Some(setting) => StatementKind::ShowSetting(setting),
                None if name.starts_with("datafusion.") => StatementKind::Show,
                None => StatementKind::ShowPostgres(name),
            })
        }
        _ => None,
    }
}

/// `CREATE MATERIALIZED VIEW` and `DROP MATERIALIZED VIEW`, with the query text as written.
fn materialized_view(sql: &str) -> Option<StatementKind> {
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
        return Some(StatementKind::CreateMaterializedView {
            name: c[2].to_ascii_lowercase(),
            query: c[4].to_string(),
            if_not_exists: c.get(1).is_some(),
            columns,
        });
    }
    if let Some(c) = drop.as_ref().and_then(|r| r.captures(sql)) {
        return Some(StatementKind::DropMaterializedView {
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
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            let mut chars = part.chars();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

fn words(sql: &str) -> Vec<Token> {
    let dialect = GenericDialect {};
    Tokenizer::new(&dialect, sql)
        .tokenize()
        .unwrap_or_default()
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .collect()
}

fn word(t: Option<&Token>) -> String {
    match t {
        Some(Token::Word(w)) => w.value.to_ascii_uppercase(),
        _ => String::new(),
    }
}

fn text_of(t: &Token) -> Option<String> {
    match t {
        Token::Word(w) => Some(w.value.clone()),
        Token::SingleQuotedString(s) | Token::DoubleQuotedString(s) => Some(s.clone()),
        Token::Number(n, _) => Some(n.clone()),
        _ => None,
    }
}

/// The statements DataFusion and Sabot's planner run, by their first tokens.
fn classify(sql: &str) -> StatementKind {
    let tokens = words(sql);
    let first = word(tokens.first());
    match first.as_str() {
        "CREATE" if word(tokens.get(1)) == "TABLE" || word(tokens.get(2)) == "TABLE" => {
            StatementKind::CreateTable
        }
        "SET" => {
            // SET key = value, with the key possibly quoted or dotted.
            let mut key = String::new();
            let mut i = 1;
            while let Some(t) = tokens.get(i) {
                match t {
                    Token::Eq => break,
                    Token::Word(w) if w.value.eq_ignore_ascii_case("TO") => break,
                    Token::Period => key.push('.'),
                    other => key.push_str(&text_of(other).unwrap_or_default()),
                }
                i += 1;
            }
            let value = tokens.get(i + 1).and_then(text_of);
            StatementKind::Set { key, value }
        }
        "DESCRIBE" | "DESC" if tokens.len() >= 2 => {
            let table: String = tokens[1..]
                .iter()
                .map(|t| match t {
                    Token::Period => ".".to_string(),
                    other => text_of(other).unwrap_or_default(),
                })
                .collect();
            StatementKind::Describe { table }
        }
        "SELECT" | "WITH" | "VALUES" => StatementKind::Query,
        "EXPLAIN" => StatementKind::Explain,
        "SHOW" => StatementKind::Show,
        "INSERT" => StatementKind::Insert {
            values: inserts_values(sql),
        },
        _ if tokens.first() == Some(&Token::LParen) => StatementKind::Query,
        _ => StatementKind::Other,
    }
}

/// `INSERT INTO t VALUES ...` runs at once (a job is for `INSERT INTO ... SELECT`).
fn inserts_values(sql: &str) -> bool {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(sql: &str) -> StatementKind {
        Statement::parse(sql).kind
    }

    fn tag_of(sql: &str) -> String {
        Statement::parse(sql).tag()
    }

    fn changes_catalog(sql: &str) -> bool {
        Statement::parse(sql).changes_catalog()
    }

    #[test]
    fn classifies_statements() {
        assert_eq!(kind("create table t (a int)"), StatementKind::CreateTable);
        assert_eq!(
            kind("SET 'checkpoint.interval' = '500ms'"),
            StatementKind::Set {
                key: "checkpoint.interval".into(),
                value: Some("500ms".into())
            }
        );
        assert_eq!(
            kind("SET parallelism = 4"),
            StatementKind::Set {
                key: "parallelism".into(),
                value: Some("4".into())
            }
        );
        assert_eq!(
            kind("DESCRIBE bids"),
            StatementKind::Describe {
                table: "bids".into()
            }
        );
        assert_eq!(kind("  select 1"), StatementKind::Query);
        assert_eq!(kind("EXPLAIN SELECT 1"), StatementKind::Explain);
        assert_eq!(
            kind("INSERT INTO t SELECT 1"),
            StatementKind::Insert { values: false }
        );
        assert_eq!(kind("DROP TABLE t"), StatementKind::Other);
    }

    #[test]
    fn server_commands() {
        assert_eq!(kind("show jobs;"), StatementKind::ShowJobs);
        assert_eq!(kind("CANCEL JOB 12"), StatementKind::CancelJob(12));
        assert_eq!(kind("flush;"), StatementKind::Flush);
        assert_eq!(kind("CANCEL JOB x"), StatementKind::Other);
        assert_eq!(kind("DEALLOCATE ALL"), StatementKind::Deallocate(None));
        assert_eq!(
            kind("deallocate prepare all;"),
            StatementKind::Deallocate(None)
        );
        assert_eq!(
            kind("DEALLOCATE _pg3_1"),
            StatementKind::Deallocate(Some("_pg3_1".into()))
        );
        assert_eq!(
            kind("DEALLOCATE PREPARE \"S_1\""),
            StatementKind::Deallocate(Some("S_1".into()))
        );
        assert_eq!(kind("DISCARD ALL"), StatementKind::Discard { all: true });
        assert_eq!(kind("discard plans"), StatementKind::Discard { all: false });
        assert_eq!(kind("begin"), StatementKind::Transaction("BEGIN"));
        assert_eq!(
            kind("SHOW parallelism"),
            StatementKind::ShowSetting(Setting::Parallelism)
        );
        assert_eq!(kind("SHOW TABLES"), StatementKind::Show);
        assert_eq!(
            kind("SHOW datafusion.execution.batch_size"),
            StatementKind::Show
        );
        assert_eq!(kind("SELECT 1"), StatementKind::Query);
        assert_eq!(
            kind("SET extra_float_digits = 3"),
            StatementKind::SetPostgres {
                name: "extra_float_digits".into(),
                value: Some("3".into())
            }
        );
        assert_eq!(
            kind("show time zone"),
            StatementKind::ShowPostgres("timezone".into())
        );
    }

    /// `CREATE MATERIALIZED VIEW IF NOT EXISTS` and a column list went to DataFusion, which
    /// answered "Materialized views not supported".
    #[test]
    fn materialized_view_with_if_not_exists_and_columns() {
        assert_eq!(
            kind("CREATE MATERIALIZED VIEW IF NOT EXISTS mv (a, \"B c\") AS SELECT 1, 2;"),
            StatementKind::CreateMaterializedView {
                name: "mv".into(),
                query: "SELECT 1, 2".into(),
                if_not_exists: true,
                columns: vec!["a".into(), "B c".into()],
            }
        );
        assert_eq!(
            kind("create materialized view Mv as select 1"),
            StatementKind::CreateMaterializedView {
                name: "mv".into(),
                query: "select 1".into(),
                if_not_exists: false,
                columns: vec![],
            }
        );
        assert_eq!(
            kind("CREATE MATERIALIZED VIEW mv (1 + 1) AS SELECT 1"),
            StatementKind::Other
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
        assert_eq!(tag_of("CREATE TABLE t (a INT)"), "CREATE TABLE");
        assert_eq!(
            tag_of("create or replace view v as select 1"),
            "CREATE VIEW"
        );
        assert_eq!(tag_of("DROP TABLE t"), "DROP TABLE");
        assert_eq!(tag_of("SET 'parallelism' = '2'"), "SET");
        assert!(changes_catalog("create or replace view v as select 1"));
        assert!(changes_catalog("DROP TABLE IF EXISTS t"));
        assert!(!changes_catalog("SET 'parallelism' = '2'"));
        assert_eq!(
            tag_of("CREATE MATERIALIZED VIEW m AS SELECT 1"),
            "CREATE MATERIALIZED VIEW"
        );
    }

    #[test]
    fn every_statement_is_read_into_one_kind() {
        let s = Statement::parse("  INSERT INTO t VALUES (1);  ");
        assert_eq!(s.sql, "INSERT INTO t VALUES (1)");
        assert_eq!(s.kind, StatementKind::Insert { values: true });
        assert!(!s.returns_rows());
        assert!(Statement::parse("DESCRIBE t").returns_rows());
        assert!(Statement::parse("SHOW JOBS").returns_rows());
        assert!(!Statement::parse("SHOW JOBS").names_columns_from_text());
    }
}
