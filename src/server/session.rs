//! One client connection: its own session (settings) over the server's shared catalog.
//!
//! Simple queries run statement by statement. Query rows are written and flushed batch by
//! batch, so a `SELECT` over a stream shows windows as they close, and a CancelRequest (psql's
//! Ctrl-C) stops the query wherever it is. `INSERT INTO ... SELECT` starts a background job and
//! returns at once, naming the job in a NOTICE. Extended-protocol statements are planned at
//! Parse (with `$n` parameters typed by DataFusion) and bound at Execute.

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::LogicalPlan;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::RowDescription;
use pgwire::types::format::FormatOptions;

use super::Server;
use super::errors::{FEATURE_NOT_SUPPORTED, UNDEFINED_OBJECT, to_pg, user_error};
use crate::config::Setting;
use crate::context::SabotContext;
use crate::planner::script::split_statements;
use crate::planner::statement::{StatementKind, classify};

/// What the server answers itself, before the engine sees the statement.
#[derive(Debug, Clone, PartialEq)]
enum Command {
    ShowJobs,
    CancelJob(u64),
    /// BEGIN / COMMIT / ROLLBACK: accepted and ignored (no transactions), with this tag.
    Transaction(&'static str),
    /// `SHOW <Sabot setting>`.
    ShowSetting(Setting),
    /// `SHOW <anything else>`: DataFusion's `SHOW` of the name, or an empty answer.
    Show(String),
    /// `CREATE MATERIALIZED VIEW name AS query`.
    CreateMaterializedView {
        name: String,
        query: String,
    },
    /// `DROP MATERIALIZED VIEW [IF EXISTS] name`.
    DropMaterializedView {
        name: String,
        if_exists: bool,
    },
}

/// `CREATE MATERIALIZED VIEW` and `DROP MATERIALIZED VIEW`, with the query text as written.
fn materialized_view(sql: &str) -> Option<Command> {
    static CREATE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    static DROP: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let create = CREATE.get_or_init(|| {
        regex::Regex::new(r"(?is)^\s*CREATE\s+MATERIALIZED\s+VIEW\s+([^\s(]+)\s+AS\s+(.+?)[\s;]*$")
            .ok()
    });
    let drop = DROP.get_or_init(|| {
        regex::Regex::new(
            r"(?is)^\s*DROP\s+MATERIALIZED\s+VIEW\s+(IF\s+EXISTS\s+)?([^\s;]+)[\s;]*$",
        )
        .ok()
    });
    if let Some(c) = create.as_ref().and_then(|r| r.captures(sql)) {
        return Some(Command::CreateMaterializedView {
            name: c[1].to_ascii_lowercase(),
            query: c[2].to_string(),
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

/// A plain (unquoted, optionally schema-qualified) identifier: the names a materialized view
/// may have, since they are written into the SQL of its table and job.
fn is_plain_name(name: &str) -> bool {
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
pub(super) struct ViewCleanup<'a> {
    pub(super) ctx: &'a SabotContext,
    pub(super) name: &'a str,
    pub(super) armed: bool,
}

impl Drop for ViewCleanup<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.ctx.deregister_table(self.name);
        }
    }
}

fn command(sql: &str) -> Option<Command> {
    if let Some(mv) = materialized_view(sql) {
        return Some(mv);
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
        ["CANCEL", "JOB", n] => n.parse().ok().map(Command::CancelJob),
        ["BEGIN", ..] | ["START", "TRANSACTION", ..] => Some(Command::Transaction("BEGIN")),
        ["COMMIT", ..] | ["END", ..] => Some(Command::Transaction("COMMIT")),
        ["ROLLBACK", ..] | ["ABORT", ..] => Some(Command::Transaction("ROLLBACK")),
        ["SHOW", "TABLES"] | ["SHOW", "COLUMNS", ..] | ["SHOW", "ALL"] => None,
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
fn tag_of(sql: &str) -> Tag {
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
fn changes_catalog(sql: &str) -> bool {
    tag_of(sql) == Tag::new("CREATE TABLE")
        || tag_of(sql) == Tag::new("CREATE VIEW")
        || tag_of(sql) == Tag::new("DROP TABLE")
        || tag_of(sql) == Tag::new("DROP VIEW")
}

/// Catalog queries of psql and drivers go through the pg_catalog compatibility rewrites;
/// everything else reaches the engine as written.
fn catalog_rewrite(sql: &str) -> String {
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
    let parser = datafusion_pg_catalog::sql::PostgresCompatibilityParser::new();
    match parser.parse(sql) {
        Ok(statements) if statements.len() == 1 => statements[0].to_string(),
        _ => sql.to_string(),
    }
}

/// The handlers of one connection.
pub struct Session {
    server: Arc<Server>,
    ctx: SabotContext,
    parser: Arc<SessionParser>,
}

impl Session {
    pub fn new(server: Arc<Server>) -> Self {
        let ctx = server.base.new_session();
        let parser = Arc::new(SessionParser { ctx: ctx.clone() });
        Self {
            server,
            ctx,
            parser,
        }
    }

    /// A statement that returns no rows: run it to completion; remember it if it changed the
    /// catalog.
    async fn run_other(&self, sql: &str, df: DataFrame) -> PgWireResult<()> {
        df.collect().await.map_err(to_pg)?;
        if changes_catalog(sql) {
            self.remember(&super::catalog_log::Entry::Ddl {
                sql: sql.to_string(),
            })?;
        }
        Ok(())
    }

    /// Records `entry` in the state directory's catalog log.
    fn remember(&self, entry: &super::catalog_log::Entry) -> PgWireResult<()> {
        self.server.log.append(entry).map_err(|e| {
            user_error(
                super::errors::INTERNAL_ERROR,
                format!("done, but not recorded for a restart of the server: {e}"),
            )
        })
    }

    /// `INSERT INTO ... SELECT`: a background job.
    async fn start_job<C>(&self, client: &mut C, sql: &str, df: DataFrame) -> PgWireResult<Tag>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let id = self
            .server
            .jobs
            .start(sql, df, &self.ctx.config())
            .await
            .map_err(to_pg)?;
        self.remember(&super::catalog_log::Entry::Job {
            id,
            sql: sql.to_string(),
        })?;
        let notice = ErrorInfo::new(
            "NOTICE".to_string(),
            "00000".to_string(),
            format!("job {id} started; SHOW JOBS shows its progress, CANCEL JOB {id} stops it"),
        );
        client
            .send(PgWireBackendMessage::NoticeResponse(notice.into()))
            .await?;
        Ok(Tag::new("INSERT").with_oid(0).with_rows(0))
    }

    /// `CREATE MATERIALIZED VIEW`: a memory table with the query's columns, filled by a job.
    async fn create_materialized_view<C>(
        &self,
        client: &mut C,
        name: &str,
        query: &str,
    ) -> PgWireResult<Tag>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !is_plain_name(name) {
            return Err(user_error(
                super::errors::SYNTAX_ERROR,
                format!(
                    "materialized view name {name:?} must be a plain identifier (letters, digits, \
                     '_', optionally schema.name)"
                ),
            ));
        }
        if !self.server.jobs.view_jobs(name).is_empty() {
            return Err(user_error(
                "42P07",
                format!(
                    "materialized view {name} already exists; DROP MATERIALIZED VIEW {name} first"
                ),
            ));
        }
        let id = self
            .server
            .materialize(&self.ctx, name, query)
            .await
            .map_err(to_pg)?;
        self.remember(&super::catalog_log::Entry::View {
            name: name.to_string(),
            query: query.to_string(),
        })?;
        let notice = ErrorInfo::new(
            "NOTICE".to_string(),
            "00000".to_string(),
            format!("job {id} maintains materialized view {name}; SELECT from it any time"),
        );
        client
            .send(PgWireBackendMessage::NoticeResponse(notice.into()))
            .await?;
        Ok(Tag::new("CREATE MATERIALIZED VIEW"))
    }

    /// `DROP MATERIALIZED VIEW`: stops its job and drops its table.
    fn drop_materialized_view(&self, name: &str, if_exists: bool) -> PgWireResult<Tag> {
        let jobs = self.server.jobs.view_jobs(name);
        if jobs.is_empty() {
            if if_exists {
                return Ok(Tag::new("DROP MATERIALIZED VIEW"));
            }
            return Err(user_error(
                super::errors::UNDEFINED_TABLE,
                format!("materialized view {name} does not exist"),
            ));
        }
        self.ctx.deregister_table(name).map_err(to_pg)?;
        for id in jobs {
            self.server.jobs.cancel(id).map_err(to_pg)?;
        }
        self.server.jobs.forget_view(name);
        self.remember(&super::catalog_log::Entry::DropView {
            name: name.to_string(),
        })?;
        Ok(Tag::new("DROP MATERIALIZED VIEW"))
    }

    /// Answers a server command with rows or a tag.
    async fn answer<C>(&self, client: &mut C, command: Command) -> PgWireResult<Answer>
    where
        C: Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Ok(match command {
            Command::CreateMaterializedView { name, query } => {
                Answer::Tag(self.create_materialized_view(client, &name, &query).await?)
            }
            Command::DropMaterializedView { name, if_exists } => {
                Answer::Tag(self.drop_materialized_view(&name, if_exists)?)
            }
            Command::ShowJobs => Answer::Rows(self.server.jobs.table().map_err(to_pg)?),
            Command::CancelJob(id) => {
                if !self.server.jobs.contains(id) {
                    return Err(user_error(
                        UNDEFINED_OBJECT,
                        format!("there is no job {id}; SHOW JOBS lists the jobs"),
                    ));
                }
                self.server.jobs.cancel(id).map_err(to_pg)?;
                self.remember(&super::catalog_log::Entry::Cancel { id })?;
                Answer::Tag(Tag::new("CANCEL JOB"))
            }
            Command::Transaction(tag) => Answer::Tag(Tag::new(tag)),
            Command::ShowSetting(setting) => {
                let value = setting.show(&self.ctx.config());
                Answer::Rows(one_value(setting.key(), &value))
            }
            Command::Show(name) => {
                let value = match name.as_str() {
                    "server_version" => "16.6 (Sabot)".to_string(),
                    "transaction_isolation" | "transaction isolation level" => {
                        "read committed".to_string()
                    }
                    "standard_conforming_strings" => "on".to_string(),
                    "client_encoding" | "server_encoding" => "UTF8".to_string(),
                    "datestyle" => "ISO, MDY".to_string(),
                    "timezone" | "time zone" => "UTC".to_string(),
                    _ => {
                        return Err(user_error(
                            FEATURE_NOT_SUPPORTED,
                            format!(
                                "unknown setting '{name}'; SHOW knows Sabot's settings \
                                 (parallelism, checkpoint.interval, ...), DataFusion's \
                                 (datafusion.*), SHOW TABLES and SHOW JOBS"
                            ),
                        ));
                    }
                };
                Answer::Rows(one_value(&name, &value))
            }
        })
    }

    /// Runs one statement of a simple query, writing its whole response.
    async fn run_simple<C>(&self, client: &mut C, sql: &str) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(command) = command(sql) {
            return match self.answer(client, command).await? {
                Answer::Tag(tag) => complete(client, tag).await,
                Answer::Rows(batch) => {
                    let df = self
                        .ctx
                        .session_context()
                        .read_batch(batch)
                        .map_err(to_pg)?;
                    stream_rows(client, df).await
                }
            };
        }
        let kind = classify(sql);
        let df = self.ctx.sql(&catalog_rewrite(sql)).await.map_err(to_pg)?;
        match kind {
            StatementKind::Query | StatementKind::Describe { .. } => stream_rows(client, df).await,
            StatementKind::Insert if inserts_values(sql) => {
                let tag = insert_now(df).await?;
                complete(client, tag).await
            }
            StatementKind::Insert => {
                let tag = self.start_job(client, sql, df).await?;
                complete(client, tag).await
            }
            _ => {
                self.run_other(sql, df).await?;
                complete(client, tag_of(sql)).await
            }
        }
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

/// Runs an INSERT to completion: `INSERT 0 n`.
async fn insert_now(df: DataFrame) -> PgWireResult<Tag> {
    use datafusion::arrow::array::AsArray;
    let batches = df.collect().await.map_err(to_pg)?;
    let rows: u64 = batches
        .iter()
        .filter(|b| b.num_columns() > 0)
        .filter_map(|b| {
            b.column(0)
                .as_primitive_opt::<datafusion::arrow::datatypes::UInt64Type>()
                .map(|c| c.values().iter().sum::<u64>())
        })
        .sum();
    Ok(Tag::new("INSERT").with_oid(0).with_rows(rows as usize))
}

/// The SQL type of a materialized view column holding `t`.
pub(super) fn sql_type(t: &DataType) -> Option<String> {
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

/// What a server command answers.
enum Answer {
    Tag(Tag),
    Rows(RecordBatch),
}

/// A one-row, one-column text result.
fn one_value(name: &str, value: &str) -> RecordBatch {
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

async fn complete<C>(client: &mut C, tag: Tag) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    client
        .send(PgWireBackendMessage::CommandComplete(tag.into()))
        .await?;
    Ok(())
}

/// A query's rows as a pgwire response (extended protocol), errors with their SQLSTATEs.
async fn encode_dataframe(
    df: DataFrame,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<pgwire::api::results::QueryResponse> {
    let fields = Arc::new(arrow_schema_to_pg_fields(
        df.schema().as_arrow(),
        format,
        options,
    )?);
    let batches = df.execute_stream().await.map_err(to_pg)?;
    let row_fields = Arc::clone(&fields);
    let rows = batches
        .map(move |batch| {
            let rows: Box<
                dyn Iterator<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send + Sync,
            > = match batch {
                Ok(batch) => encode_recordbatch(Arc::clone(&row_fields), batch),
                Err(e) => Box::new(std::iter::once(Err(to_pg(e)))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    Ok(pgwire::api::results::QueryResponse::new(fields, rows))
}

/// Writes a query's rows as they come (text format), flushing after every batch.
async fn stream_rows<C>(client: &mut C, df: DataFrame) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let fields = Arc::new(arrow_schema_to_pg_fields(
        df.schema().as_arrow(),
        &Format::UnifiedText,
        Some(options),
    )?);
    let description = RowDescription::new(fields.iter().map(Into::into).collect());
    client
        .send(PgWireBackendMessage::RowDescription(description))
        .await?;
    let mut batches = df.execute_stream().await.map_err(to_pg)?;
    let mut rows = 0usize;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(to_pg)?;
        for row in encode_recordbatch(Arc::clone(&fields), batch) {
            client.feed(PgWireBackendMessage::DataRow(row?)).await?;
            rows += 1;
        }
        client.flush().await?;
    }
    complete(client, Tag::new("SELECT").with_rows(rows)).await
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statements = split_statements(query).map_err(to_pg)?;
        for statement in statements {
            self.run_simple(client, &statement.sql).await?;
        }
        Ok(Vec::new())
    }
}

/// A statement of the extended protocol: its SQL, and the plan of a query (with `$n`
/// parameters unbound).
#[derive(Debug, Clone)]
pub struct Prepared {
    sql: String,
    plan: Option<LogicalPlan>,
}

/// Statements planned at Parse (typed parameters, a result description): queries, DESCRIBE
/// and `INSERT ... VALUES`. Planning others (DDL, SET) would run them.
fn plans_at_parse(sql: &str) -> bool {
    command(sql).is_none()
        && match classify(sql) {
            StatementKind::Query | StatementKind::Describe { .. } => true,
            StatementKind::Insert => inserts_values(sql),
            _ => false,
        }
}

/// Plans queries at Parse time.
pub struct SessionParser {
    ctx: SabotContext,
}

/// The types of `CAST($n AS type)` in `plan`: the type of a parameter DataFusion could not
/// infer otherwise.
fn cast_parameter_types(plan: &LogicalPlan) -> std::collections::HashMap<String, DataType> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let mut found = std::collections::HashMap::new();
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) = e
                    && let Expr::Placeholder(p) = expr.as_ref()
                {
                    found
                        .entry(p.id.clone())
                        .or_insert_with(|| field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    });
    found
}

/// `$1, $2, ...` of `plan` in order, with the types DataFusion inferred.
fn parameters(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    let mut types = plan.get_parameter_types().map_err(to_pg)?;
    for (id, t) in cast_parameter_types(plan) {
        let slot = types.entry(id).or_insert(None);
        if slot.is_none() {
            *slot = Some(t);
        }
    }
    let mut numbered: Vec<(usize, Option<DataType>)> = types
        .into_iter()
        .filter_map(|(name, t)| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|n| (n, t))
        })
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    Ok(numbered.into_iter().map(|(_, t)| t).collect())
}

/// Parameter values in the types the plan expects (a VARCHAR column is `Utf8View`; the wire
/// gives `Utf8`).
fn cast_parameters(
    values: datafusion::common::ParamValues,
    types: &[Option<DataType>],
) -> datafusion::error::Result<datafusion::common::ParamValues> {
    use datafusion::common::ParamValues;
    Ok(match values {
        ParamValues::List(list) => ParamValues::List(
            list.into_iter()
                .enumerate()
                .map(|(i, mut v)| {
                    if let Some(Some(t)) = types.get(i)
                        && v.value.data_type() != *t
                        && !v.value.is_null()
                    {
                        v.value = v.value.cast_to(t)?;
                    }
                    Ok(v)
                })
                .collect::<datafusion::error::Result<Vec<_>>>()?,
        ),
        other => other,
    })
}

fn wire_types(plan: &LogicalPlan) -> PgWireResult<Vec<Type>> {
    parameters(plan)?
        .iter()
        .map(|t| match t {
            Some(t) => into_pg_type(t),
            None => Ok(Type::UNKNOWN),
        })
        .collect()
}

#[async_trait]
impl QueryParser for SessionParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = sql.trim().trim_end_matches(';').to_string();
        if sql.is_empty() {
            return Ok(None);
        }
        let plan = if plans_at_parse(&sql) {
            let df = self.ctx.sql(&catalog_rewrite(&sql)).await.map_err(to_pg)?;
            Some(df.logical_plan().clone())
        } else {
            None
        };
        Ok(Some(Prepared { sql, plan }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        match &stmt.plan {
            Some(plan) => wire_types(plan),
            None => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.plan {
            Some(LogicalPlan::Dml(_) | LogicalPlan::Ddl(_)) => Ok(Vec::new()),
            Some(plan) => arrow_schema_to_pg_fields(
                plan.schema().as_arrow(),
                column_format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            None => match command(&stmt.sql) {
                Some(Command::ShowJobs) => {
                    let batch = super::jobs::Jobs::default().table().map_err(to_pg)?;
                    arrow_schema_to_pg_fields(
                        &batch.schema(),
                        column_format.unwrap_or(&Format::UnifiedText),
                        None,
                    )
                }
                Some(Command::ShowSetting(s)) => arrow_schema_to_pg_fields(
                    &one_value(s.key(), "").schema(),
                    column_format.unwrap_or(&Format::UnifiedText),
                    None,
                ),
                Some(Command::Show(name)) => arrow_schema_to_pg_fields(
                    &one_value(&name, "").schema(),
                    column_format.unwrap_or(&Format::UnifiedText),
                    None,
                ),
                _ => Ok(Vec::new()),
            },
        }
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = Prepared;
    type QueryParser = SessionParser;

    fn query_parser(&self) -> Arc<SessionParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let prepared = &portal.statement.statement;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        if prepared.plan.is_some() {
            // Planned again from the SQL: a cached statement sees the tables of now.
            let fresh = self
                .ctx
                .sql(&catalog_rewrite(&prepared.sql))
                .await
                .map_err(to_pg)?;
            let plan = fresh.logical_plan();
            let inferred = parameters(plan)?;
            let inferred_refs: Vec<Option<&DataType>> =
                inferred.iter().map(Option::as_ref).collect();
            let wire = wire_types(plan)?;
            let wire_refs: Vec<Option<&Type>> = wire.iter().map(Some).collect();
            let values =
                deserialize_parameters_with_server_types(portal, &inferred_refs, &wire_refs)?;
            let values = cast_parameters(values, &inferred).map_err(to_pg)?;
            let plan = plan
                .clone()
                .replace_params_with_values(&values)
                .map_err(to_pg)?;
            let df = self
                .ctx
                .session_context()
                .execute_logical_plan(plan)
                .await
                .map_err(to_pg)?;
            if classify(&prepared.sql) == StatementKind::Insert {
                return Ok(Response::Execution(insert_now(df).await?));
            }
            let response =
                encode_dataframe(df, &portal.result_column_format, Some(options)).await?;
            return Ok(Response::Query(response));
        }
        let sql = prepared.sql.as_str();
        if let Some(command) = command(sql) {
            return match self.answer(client, command).await? {
                Answer::Tag(tag) => Ok(Response::Execution(tag)),
                Answer::Rows(batch) => {
                    let df = self
                        .ctx
                        .session_context()
                        .read_batch(batch)
                        .map_err(to_pg)?;
                    Ok(Response::Query(
                        encode_dataframe(df, &portal.result_column_format, Some(options)).await?,
                    ))
                }
            };
        }
        let kind = classify(sql);
        let df = self.ctx.sql(&catalog_rewrite(sql)).await.map_err(to_pg)?;
        match kind {
            StatementKind::Insert if inserts_values(sql) => {
                Ok(Response::Execution(insert_now(df).await?))
            }
            StatementKind::Insert => {
                Ok(Response::Execution(self.start_job(client, sql, df).await?))
            }
            StatementKind::Query | StatementKind::Describe { .. } => Ok(Response::Query(
                encode_dataframe(df, &portal.result_column_format, Some(options)).await?,
            )),
            _ => {
                self.run_other(sql, df).await?;
                Ok(Response::Execution(tag_of(sql)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_commands() {
        assert_eq!(command("show jobs;"), Some(Command::ShowJobs));
        assert_eq!(command("CANCEL JOB 12"), Some(Command::CancelJob(12)));
        assert_eq!(command("CANCEL JOB x"), None);
        assert_eq!(command("begin"), Some(Command::Transaction("BEGIN")));
        assert_eq!(
            command("SHOW parallelism"),
            Some(Command::ShowSetting(Setting::Parallelism))
        );
        assert_eq!(command("SHOW TABLES"), None);
        assert_eq!(command("SHOW datafusion.execution.batch_size"), None);
        assert_eq!(command("SELECT 1"), None);
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
