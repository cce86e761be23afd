//! The extended query protocol: statements planned at Parse, bound and run at Execute.

use std::fmt::Debug;
use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::LogicalPlan;
use futures::future::Either;
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::ExtendedQueryHandler;
use pgwire::api::results::{FieldInfo, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::stmt::StoredStatement;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, DEFAULT_NAME, PgWireConnectionState, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::{NoData, ParameterDescription};
use pgwire::messages::extendedquery::{
    Close, CloseComplete, Describe, Execute, Parse, ParseComplete, TARGET_TYPE_BYTE_PORTAL,
    TARGET_TYPE_BYTE_STATEMENT,
};
use pgwire::types::format::FormatOptions;

use crate::context::{ResultStream, SabotContext, result_stream};
use crate::planner::script::cast_placeholders;
use crate::planner::updating_aggregate_rule::is_updating;
use crate::server::column_names::with_postgres_names;
use crate::server::errors::to_pg;
use crate::server::text::postgres_text;
use crate::statement::{Statement, StatementKind};

use super::commands::*;
use super::{Served, Session, described, insert_now};

/// A query's rows as a pgwire response (extended protocol), errors with their SQLSTATEs;
/// `sql` (the query's text) names its columns as PostgreSQL would.
async fn encode_dataframe(
    df: DataFrame,
    sql: Option<&str>,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<pgwire::api::results::QueryResponse> {
    let named = match sql {
        Some(sql) => with_postgres_names(sql, df.schema().as_arrow()),
        None => df.schema().as_arrow().clone(),
    };
    let ResultStream { batches, updating } = result_stream(df).await.map_err(to_pg)?;
    let schema = described(named, updating);
    let fields = Arc::new(arrow_schema_to_pg_fields(&schema, format, options)?);
    let row_fields = Arc::clone(&fields);
    let rows = batches
        .map(move |batch| {
            let rows: Box<
                dyn Iterator<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send + Sync,
            > = match batch {
                Ok(batch) => match postgres_text(batch, &row_fields) {
                    Ok(batch) => encode_recordbatch(Arc::clone(&row_fields), batch),
                    Err(e) => Box::new(std::iter::once(Err(to_pg(e.into())))),
                },
                Err(e) => Box::new(std::iter::once(Err(to_pg(e)))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    Ok(pgwire::api::results::QueryResponse::new(fields, rows))
}

/// A statement of the extended protocol: its SQL, and the plan of a query (with `$n`
/// parameters unbound).
#[derive(Debug, Clone)]
pub struct Prepared {
    statement: Statement,
    plan: Option<LogicalPlan>,
    /// Whether a query's rows are a changelog (`op` first), as its physical plan says (a join
    /// the streaming planner makes a regular join can be one); `None` when it could not be
    /// planned yet (its parameters have no values).
    updating: Option<bool>,
}

/// Statements planned at Parse (typed parameters, a result description): queries, EXPLAIN,
/// DataFusion's SHOW, DESCRIBE and `INSERT ... VALUES`. Planning others (DDL, SET) would run
/// them.
fn plans_at_parse(statement: &Statement) -> bool {
    matches!(
        statement.kind,
        StatementKind::Query
            | StatementKind::Explain
            | StatementKind::Show
            | StatementKind::Describe { .. }
            | StatementKind::Insert { values: true }
    )
}

/// Plans queries at Parse time.
pub struct SessionParser {
    pub(super) ctx: SabotContext,
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

/// The SQL type of a parameter type a client declares at Parse (psycopg declares an int as
/// int2/int4/int8, a float as float8), so that DataFusion plans with it as PostgreSQL would;
/// unknown (0) and other types are inferred from the statement.
fn declared_type(t: &Type) -> Option<&'static str> {
    Some(match *t {
        Type::BOOL => "BOOLEAN",
        Type::INT2 => "SMALLINT",
        Type::INT4 => "INT",
        Type::INT8 => "BIGINT",
        Type::FLOAT4 => "REAL",
        Type::FLOAT8 => "DOUBLE",
        Type::TEXT | Type::VARCHAR => "VARCHAR",
        Type::BYTEA => "BYTEA",
        Type::DATE => "DATE",
        Type::TIME => "TIME",
        Type::TIMESTAMP => "TIMESTAMP",
        Type::INTERVAL => "INTERVAL",
        _ => return None,
    })
}

#[async_trait]
impl QueryParser for SessionParser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        _client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let statement = Statement::parse(sql);
        if statement.sql.is_empty() {
            return Ok(None);
        }
        if !plans_at_parse(&statement) {
            return Ok(Some(Prepared {
                statement,
                plan: None,
                updating: None,
            }));
        }
        let typed = cast_placeholders(&statement.sql, |n| {
            types
                .get(n.wrapping_sub(1))
                .and_then(Option::as_ref)
                .and_then(declared_type)
        })
        .map_err(to_pg)?;
        let statement = statement.with_sql(typed);
        let df = self
            .ctx
            .execute(&statement.with_sql(catalog_rewrite(&statement.sql)))
            .await
            .map_err(to_pg)?;
        let updating = if statement.kind == StatementKind::Query {
            df.clone()
                .create_physical_plan()
                .await
                .ok()
                .map(|plan| crate::physical::sink::is_updating_result(&plan))
        } else {
            None
        };
        Ok(Some(Prepared {
            statement,
            plan: Some(df.logical_plan().clone()),
            updating,
        }))
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
            Some(plan) => {
                // An updating query's rows are its changelog, `op` first.
                let updating = stmt.updating.unwrap_or_else(|| {
                    self.ctx
                        .state()
                        .optimize(plan)
                        .is_ok_and(|optimized| is_updating(&optimized))
                });
                arrow_schema_to_pg_fields(
                    &described(
                        with_postgres_names(&stmt.statement.sql, plan.schema().as_arrow()),
                        updating,
                    ),
                    column_format.unwrap_or(&Format::UnifiedText),
                    None,
                )
            }
            None => match &stmt.statement.kind {
                StatementKind::ShowJobs => {
                    let batch = crate::server::jobs::Jobs::default()
                        .table()
                        .map_err(to_pg)?;
                    arrow_schema_to_pg_fields(
                        &batch.schema(),
                        column_format.unwrap_or(&Format::UnifiedText),
                        None,
                    )
                }
                StatementKind::ShowSetting(s) => arrow_schema_to_pg_fields(
                    &one_value(s.key(), "").schema(),
                    column_format.unwrap_or(&Format::UnifiedText),
                    None,
                ),
                StatementKind::ShowPostgres(name) => arrow_schema_to_pg_fields(
                    &one_value(name, "").schema(),
                    column_format.unwrap_or(&Format::UnifiedText),
                    None,
                ),
                _ => Ok(Vec::new()),
            },
        }
    }
}

/// Whether a statement is a query whose rows `on_execute` streams.
fn is_query(prepared: &Prepared) -> bool {
    prepared.plan.is_some() && prepared.statement.returns_rows()
}

impl Session {
    /// Executes a query portal and writes its rows and CommandComplete, flushing whenever the
    /// query has no row ready.
    async fn stream_portal<C>(&self, client: &mut C, portal: &Portal<Prepared>) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut response = match self.do_query(client, portal, 0).await? {
            Response::Query(response) => response,
            Response::Execution(tag) => {
                client
                    .feed(PgWireBackendMessage::CommandComplete(tag.into()))
                    .await?;
                return Ok(());
            }
            _ => {
                return Err(PgWireError::ApiError(
                    "a query portal answered with neither rows nor a tag".into(),
                ));
            }
        };
        let tag = response.command_tag().to_owned();
        let rows = response.data_rows();
        let mut count = 0usize;
        loop {
            let next = match rows.next().now_or_never() {
                Some(next) => next,
                None => {
                    client.flush().await?;
                    rows.next().await
                }
            };
            match next {
                Some(row) => {
                    client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                    count += 1;
                }
                None => break,
            }
        }
        let tag = pgwire::api::results::Tag::new(&tag).with_rows(count);
        client
            .feed(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = Prepared;
    type QueryParser = SessionParser;

    fn query_parser(&self) -> Arc<SessionParser> {
        Arc::clone(&self.parser)
    }

    /// Parses a statement as pgwire does, remembering its name for `DEALLOCATE ALL` (the
    /// portal store cannot list its statements).
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        if name != DEFAULT_NAME {
            self.prepared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name);
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_close<C>(&self, client: &mut C, message: Close) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT
            && let Some(name) = &message.name
        {
            self.prepared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(name);
        }
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        match message.target_type {
            TARGET_TYPE_BYTE_STATEMENT => client.portal_store().rm_statement(name),
            TARGET_TYPE_BYTE_PORTAL => client.portal_store().rm_portal(name),
            _ => {}
        }
        client
            .send(PgWireBackendMessage::CloseComplete(CloseComplete::new()))
            .await?;
        Ok(())
    }

    /// Describes a statement or portal. A statement without result columns (an INSERT, DDL)
    /// answers ParameterDescription then NoData, as PostgreSQL does; pgwire would send an empty
    /// RowDescription, which makes the JDBC driver treat an INSERT as a query (its batches
    /// then report 0 rows per statement).
    async fn on_describe<C>(&self, client: &mut C, message: Describe) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        if message.target_type == TARGET_TYPE_BYTE_STATEMENT
            && let Some(Entry::Value(statement)) = client.portal_store().get_statement(name)
        {
            let response = self.do_describe_statement(client, &statement).await?;
            if response.fields.is_empty() {
                let oids = response.parameters.iter().map(Type::oid).collect();
                client
                    .feed(PgWireBackendMessage::ParameterDescription(
                        ParameterDescription::new(oids),
                    ))
                    .await?;
                client
                    .feed(PgWireBackendMessage::NoData(NoData::new()))
                    .await?;
                return Ok(());
            }
        }
        self._on_describe(client, message).await
    }

    /// Runs a portal. A query executed for all its rows (a row limit of 0, what drivers send)
    /// is streamed: rows are flushed whenever the query pauses, so an unbounded query shows
    /// windows as they close, and a CancelRequest stops it wherever it is. Anything else (a
    /// row limit, a suspended portal, a statement that is not a query) takes pgwire's path.
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) if message.max_rows == 0 => portal,
            _ => return self._on_execute(client, message).await,
        };
        if !is_query(&portal.statement.statement)
            || !matches!(client.state(), PgWireConnectionState::ReadyForQuery)
            || !matches!(*portal.state().lock().await, PortalExecutionState::Initial)
        {
            return self._on_execute(client, message).await;
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let cancel = match client.session_extensions().get::<Arc<ConnectionHandle>>() {
            Some(handle) => Some(handle.start_query().await),
            None => None,
        };
        let result = {
            let run = Box::pin(self.stream_portal(client, &portal));
            match cancel {
                Some(cancel) => match futures::future::select(run, cancel).await {
                    Either::Left((result, _)) => result,
                    Either::Right(_) => Err(PgWireError::QueryCanceled),
                },
                None => run.await,
            }
        };
        client.set_state(PgWireConnectionState::ReadyForQuery);
        // Executed again, a finished portal returns no rows (as in PostgreSQL).
        *portal.state().lock().await = PortalExecutionState::Finished;
        result
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
            let statement = &prepared.statement;
            let fresh = self
                .ctx
                .execute(&statement.with_sql(catalog_rewrite(&statement.sql)))
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
            if !statement.returns_rows() {
                return Ok(Response::Execution(insert_now(df).await?));
            }
            let names = statement
                .names_columns_from_text()
                .then_some(statement.sql.as_str());
            let response =
                encode_dataframe(df, names, &portal.result_column_format, Some(options)).await?;
            return Ok(Response::Query(response));
        }
        match self.serve(client, &prepared.statement).await? {
            Served::Tag(tag) => Ok(Response::Execution(tag)),
            Served::Rows { df, names } => Ok(Response::Query(
                encode_dataframe(
                    df,
                    names.as_deref(),
                    &portal.result_column_format,
                    Some(options),
                )
                .await?,
            )),
        }
    }
}
