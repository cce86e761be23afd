//! One client connection: its own session (settings) over the server's shared catalog.
//!
//! Simple queries run statement by statement. Query rows are written and flushed batch by
//! batch, so a `SELECT` over a stream shows windows as they close, and a CancelRequest (psql's
//! Ctrl-C) stops the query wherever it is. `INSERT INTO ... SELECT` starts a background job and
//! returns at once, naming the job in a NOTICE. Extended-protocol statements are planned at
//! Parse (with `$n` parameters typed by DataFusion) and bound at Execute.
//!
//! - `commands`: pieces of the answers (catalog compatibility, view column types).
//! - `extended`: the extended protocol.
//! - here: the session, serving one statement (`Session::serve`, for both protocols), the
//!   simple protocol and streaming rows to the client.

mod commands;
mod extended;
mod postgres_settings;

use commands::*;
pub(crate) use commands::{ViewCleanup, sql_type};
pub use extended::{Prepared, SessionParser};

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use async_trait::async_trait;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrame;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::portal::Format;
use pgwire::api::query::SimpleQueryHandler;
use pgwire::api::results::{Response, Tag};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::RowDescription;
use pgwire::types::format::FormatOptions;

use super::Server;
use super::column_names::with_postgres_names;
use super::errors::{
    DUPLICATE_TABLE, FEATURE_NOT_SUPPORTED, INVALID_PARAMETER_VALUE, INVALID_SQL_STATEMENT_NAME,
    UNDEFINED_OBJECT, to_pg, user_error,
};
use super::text::postgres_text;
use crate::changelog::changelog_schema;
use crate::context::{ResultStream, SabotContext, result_stream};
use crate::planner::script::split_statements;
use crate::statement::{Statement, StatementKind, is_plain_name};

/// The handlers of one connection.
pub struct Session {
    server: Arc<Server>,
    ctx: SabotContext,
    parser: Arc<SessionParser>,
    postgres: postgres_settings::PostgresSettings,
    /// Names of the statements prepared with the extended protocol (Parse), which
    /// `DEALLOCATE ALL` and `DISCARD ALL` remove.
    prepared: std::sync::Mutex<std::collections::BTreeSet<String>>,
}

impl Session {
    pub fn new(server: Arc<Server>) -> Self {
        let ctx = server.base.new_session();
        let parser = Arc::new(SessionParser { ctx: ctx.clone() });
        Self {
            server,
            ctx,
            parser,
            postgres: Default::default(),
            prepared: Default::default(),
        }
    }

    /// `DEALLOCATE name` (`None`: all) of statements prepared with the extended protocol; a
    /// name not prepared that way goes to DataFusion's `DEALLOCATE` (SQL `PREPARE`).
    async fn deallocate<C>(&self, client: &mut C, name: Option<String>) -> PgWireResult<()>
    where
        C: ClientPortalStore,
        C::PortalStore: PortalStore,
    {
        let removed = {
            let mut prepared = self.prepared.lock().unwrap_or_else(|e| e.into_inner());
            match &name {
                None => std::mem::take(&mut *prepared).into_iter().collect(),
                Some(name) if prepared.remove(name) => vec![name.clone()],
                Some(_) => Vec::new(),
            }
        };
        for statement in &removed {
            client.portal_store().rm_statement(statement);
        }
        match name {
            Some(name) if removed.is_empty() => {
                let sql = format!("DEALLOCATE \"{}\"", name.replace('"', "\"\""));
                let df = self.ctx.sql(&sql).await.map_err(|e| {
                    user_error(
                        INVALID_SQL_STATEMENT_NAME,
                        format!(
                            "prepared statement \"{name}\" does not exist ({})",
                            e.strip_backtrace()
                        ),
                    )
                })?;
                df.collect().await.map_err(to_pg)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A statement that returns no rows: run it to completion; remember it if it changed the
    /// catalog.
    async fn run_other(&self, statement: &Statement, df: DataFrame) -> PgWireResult<()> {
        df.collect().await.map_err(to_pg)?;
        if statement.changes_catalog() {
            self.remember(&super::catalog_log::Entry::Ddl {
                sql: statement.sql.clone(),
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

    /// This session's settings that differ from the server's, which a restarted server plans
    /// its jobs with again.
    fn changed_settings(&self) -> Vec<(String, String)> {
        let mut changed =
            crate::config::Setting::changed(&self.server.base.config(), &self.ctx.config());
        // And DataFusion's own (`SET datafusion.…`), which plan the query too.
        let options = |ctx: &crate::context::SabotContext| {
            ctx.session_context()
                .state()
                .config()
                .options()
                .entries()
                .into_iter()
                .map(|e| (e.key, e.value))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        let base = options(&self.server.base);
        for (key, value) in options(&self.ctx) {
            if let Some(value) = value
                && base.get(&key) != Some(&Some(value.clone()))
            {
                changed.push((key, value));
            }
        }
        changed
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
            settings: self.changed_settings(),
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
        if_not_exists: bool,
        columns: &[String],
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
            if if_not_exists {
                let notice = ErrorInfo::new(
                    "NOTICE".to_string(),
                    "42P07".to_string(),
                    format!("materialized view {name} already exists, skipping"),
                );
                client
                    .send(PgWireBackendMessage::NoticeResponse(notice.into()))
                    .await?;
                return Ok(Tag::new("CREATE MATERIALIZED VIEW"));
            }
            return Err(user_error(
                DUPLICATE_TABLE,
                format!(
                    "materialized view {name} already exists; DROP MATERIALIZED VIEW {name} first"
                ),
            ));
        }
        let id = self
            .server
            .materialize(&self.ctx, name, query, columns)
            .await
            .map_err(to_pg)?;
        self.remember(&super::catalog_log::Entry::View {
            name: name.to_string(),
            query: query.to_string(),
            columns: columns.to_vec(),
            settings: self.changed_settings(),
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

    /// Serves one statement: the one place where the simple and the extended protocol run
    /// statements (the extended protocol's queries with parameters are planned at Parse and
    /// bound at Execute, see `extended`). The server's own commands are answered here; the
    /// others run in the session's engine.
    pub(super) async fn serve<C>(
        &self,
        client: &mut C,
        statement: &Statement,
    ) -> PgWireResult<Served>
    where
        C: ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let rows = |batch: RecordBatch| -> PgWireResult<Served> {
            let df = self
                .ctx
                .session_context()
                .read_batch(batch)
                .map_err(to_pg)?;
            Ok(Served::Rows { df, names: None })
        };
        Ok(match statement.kind.clone() {
            StatementKind::CreateMaterializedView {
                name,
                query,
                if_not_exists,
                columns,
            } => Served::Tag(
                self.create_materialized_view(client, &name, &query, if_not_exists, &columns)
                    .await?,
            ),
            StatementKind::DropMaterializedView { name, if_exists } => {
                Served::Tag(self.drop_materialized_view(&name, if_exists)?)
            }
            StatementKind::ShowJobs => rows(self.server.jobs.table().map_err(to_pg)?)?,
            StatementKind::Flush => {
                self.server.jobs.flush(FLUSH_TIMEOUT).await.map_err(to_pg)?;
                Served::Tag(Tag::new("FLUSH"))
            }
            StatementKind::CancelJob(id) => {
                if !self.server.jobs.contains(id) {
                    return Err(user_error(
                        UNDEFINED_OBJECT,
                        format!("there is no job {id}; SHOW JOBS lists the jobs"),
                    ));
                }
                self.server.jobs.cancel(id).map_err(to_pg)?;
                self.remember(&super::catalog_log::Entry::Cancel { id })?;
                Served::Tag(Tag::new("CANCEL JOB"))
            }
            StatementKind::Transaction(tag) => Served::Tag(Tag::new(tag)),
            StatementKind::Deallocate(name) => {
                self.deallocate(client, name).await?;
                Served::Tag(Tag::new("DEALLOCATE"))
            }
            StatementKind::Discard { all } => {
                if all {
                    self.deallocate(client, None).await?;
                    client.portal_store().clear_portals();
                    self.postgres.reset_all();
                    self.ctx.reset_settings(&self.server.base.config());
                }
                Served::Tag(Tag::new("DISCARD"))
            }
            StatementKind::SetPostgres { name, value } => {
                let reset = value.is_none();
                self.postgres
                    .set(&name, value.as_deref())
                    .map_err(|e| user_error(INVALID_PARAMETER_VALUE, e))?;
                Served::Tag(Tag::new(if reset { "RESET" } else { "SET" }))
            }
            StatementKind::ShowSetting(setting) => {
                let value = setting.show(&self.ctx.config());
                rows(one_value(setting.key(), &value))?
            }
            StatementKind::ShowPostgres(name) => {
                let Some(value) = self.postgres.get(&name) else {
                    return Err(user_error(
                        FEATURE_NOT_SUPPORTED,
                        format!(
                            "unknown setting '{name}'; SHOW knows Sabot's settings \
                             (parallelism, checkpoint.interval, ...), DataFusion's \
                             (datafusion.*), PostgreSQL's session parameters (TimeZone, \
                             DateStyle, ...), SHOW TABLES and SHOW JOBS"
                        ),
                    ));
                };
                rows(one_value(&name, &value))?
            }
            kind => {
                let df = self
                    .ctx
                    .execute(&statement.with_sql(catalog_rewrite(&statement.sql)))
                    .await
                    .map_err(to_pg)?;
                match kind {
                    StatementKind::Insert { values } if values || self.ctx.config().dml_sync => {
                        Served::Tag(insert_now(df).await?)
                    }
                    StatementKind::Insert { .. } => {
                        Served::Tag(self.start_job(client, &statement.sql, df).await?)
                    }
                    _ if statement.returns_rows() => Served::Rows {
                        df,
                        names: statement
                            .names_columns_from_text()
                            .then(|| statement.sql.clone()),
                    },
                    _ if matches!(statement.tag().as_str(), "UPDATE" | "DELETE") => {
                        let changed = dml_count(df).await?;
                        Served::Tag(Tag::new(&statement.tag()).with_rows(changed))
                    }
                    _ => {
                        self.run_other(statement, df).await?;
                        Served::Tag(Tag::new(&statement.tag()))
                    }
                }
            }
        })
    }

    /// Runs one statement of a simple query, writing its whole response.
    async fn run_simple<C>(&self, client: &mut C, statement: &Statement) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match self.serve(client, statement).await? {
            Served::Tag(tag) => complete(client, tag).await,
            Served::Rows { df, names } => stream_rows(client, df, names.as_deref()).await,
        }
    }
}

/// How long `FLUSH` waits for the materialized views to catch up.
const FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs an INSERT to completion: `INSERT 0 n`.
async fn insert_now(df: DataFrame) -> PgWireResult<Tag> {
    let rows = dml_count(df).await?;
    Ok(Tag::new("INSERT").with_oid(0).with_rows(rows))
}

/// Runs a DML statement (INSERT, UPDATE, DELETE) to completion: the rows it changed.
async fn dml_count(df: DataFrame) -> PgWireResult<usize> {
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
    Ok(rows as usize)
}

/// What serving a statement gives the protocol to write.
pub(super) enum Served {
    /// A command tag.
    Tag(Tag),
    /// Rows, named from `names` (the query's text) as PostgreSQL would, if given.
    Rows {
        df: DataFrame,
        names: Option<String>,
    },
}

/// The columns a client is told about: the query's (named as PostgreSQL names them), with
/// the `op` column first for an updating query's changelog.
fn described(named: Schema, updating: bool) -> Schema {
    if updating {
        changelog_schema(&Arc::new(named)).as_ref().clone()
    } else {
        named
    }
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

/// Writes a query's rows as they come (text format), flushing after every batch; `sql` (the
/// query's text) names its columns as PostgreSQL would.
async fn stream_rows<C>(client: &mut C, df: DataFrame, sql: Option<&str>) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
    let named = match sql {
        Some(sql) => with_postgres_names(sql, df.schema().as_arrow()),
        None => df.schema().as_arrow().clone(),
    };
    let ResultStream {
        mut batches,
        updating,
    } = result_stream(df).await.map_err(to_pg)?;
    let schema = described(named, updating);
    let fields = Arc::new(arrow_schema_to_pg_fields(
        &schema,
        &Format::UnifiedText,
        Some(options),
    )?);
    let description = RowDescription::new(fields.iter().map(Into::into).collect());
    client
        .send(PgWireBackendMessage::RowDescription(description))
        .await?;
    let mut rows = 0usize;
    while let Some(batch) = batches.next().await {
        let batch = batch.map_err(to_pg)?;
        let batch = postgres_text(batch, &fields).map_err(|e| to_pg(e.into()))?;
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
            self.run_simple(client, &Statement::parse(&statement.sql))
                .await?;
        }
        Ok(Vec::new())
    }
}
