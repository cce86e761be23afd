//! Statement dispatch: one `match` from a statement's kind ([`crate::statement`]) to its
//! handler.
//!
//! Sabot's own statements (Flink `CREATE TABLE`, `SET 'key' = 'value'`, `SHOW` of a setting,
//! `DESCRIBE` of a connector table) are handled here; everything else goes to DataFusion after the window rewriters, so
//! batch SQL behaves exactly as DataFusion's.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{Result, plan_err};
use datafusion::dataframe::DataFrame;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::{CopyToSource, DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::Statement as SqlStatement;
use datafusion::sql::sqlparser::dialect::GenericDialect;

use super::complexity::check_statement;
use super::ddl::{parse_create_table, resolve};
use super::flink_functions::rewrite_flink_functions;
use super::temporal_syntax::{prepare_temporal_syntax, rewrite_temporal_joins};
use super::window_syntax::{prepare_window_syntax, rewrite_group_windows};
use crate::catalog::table_definition::ColumnKind;
use crate::config::{PlannedRuntimeMode, PlannedStateTtl, SabotConfig, Setting};
use crate::planner::connector_table::ConnectorTable;
use crate::state::backend::{PlannedBackend, StateBackend};
use crate::statement::{Statement, StatementKind};

/// Runs one statement against `ctx`, with Sabot's settings in `config`. The server's own
/// commands (`SHOW JOBS`, materialized views, PostgreSQL's session parameters, ...) are the
/// server's; here they go to DataFusion, which refuses them.
pub async fn execute(
    ctx: &SessionContext,
    config: &std::sync::RwLock<SabotConfig>,
    statement: &Statement,
) -> Result<DataFrame> {
    let sql = statement.sql.as_str();
    match statement.kind.clone() {
        StatementKind::CreateTable => {
            if let Some(table) = parse_create_table(sql)? {
                return create_table(ctx, table).await;
            }
            plan_with_datafusion(ctx, sql).await
        }
        StatementKind::Set { key, value } => match Setting::from_key(&key) {
            Some(setting) => {
                let Some(value) = value else {
                    return plan_err!("SET {key} needs a value: SET '{key}' = '...'");
                };
                set(ctx, config, setting, &value)?;
                ctx.read_empty()
            }
            None if key.to_ascii_lowercase().starts_with("datafusion.") => {
                plan_with_datafusion(ctx, &format!("SET {key} = '{}'", value.unwrap_or_default()))
                    .await
            }
            None => {
                let known: Vec<&str> = Setting::ALL.iter().map(Setting::key).collect();
                plan_err!(
                    "unknown setting '{key}'. Sabot settings: {}; DataFusion settings start with \
                     'datafusion.'",
                    known.join(", ")
                )
            }
        },
        StatementKind::Describe { table } => match connector_table(ctx, &table).await? {
            Some(t) => describe(ctx, &t),
            None => plan_with_datafusion(ctx, sql).await,
        },
        StatementKind::ShowSetting(setting) => {
            let value = config.read().map(|c| setting.show(&c)).unwrap_or_default();
            let schema = Arc::new(Schema::new(vec![Field::new(
                setting.key(),
                DataType::Utf8,
                false,
            )]));
            let column: ArrayRef = Arc::new(StringArray::from(vec![value]));
            ctx.read_batch(RecordBatch::try_new(schema, vec![column])?)
        }
        // Only the server keeps materialized views, whose jobs FLUSH waits for; here there is
        // nothing to wait for.
        StatementKind::Flush => ctx.read_empty(),
        _ => plan_with_datafusion(ctx, sql).await,
    }
}

fn set(
    ctx: &SessionContext,
    config: &std::sync::RwLock<SabotConfig>,
    setting: Setting,
    value: &str,
) -> Result<()> {
    let mut c = config
        .write()
        .map_err(|_| datafusion::error::DataFusionError::Internal("config lock poisoned".into()))?;
    setting.apply(&mut c, value)?;
    apply_to_session(ctx, &c);
    Ok(())
}

/// Pushes Sabot's settings into DataFusion's session configuration.
pub fn apply_to_session(ctx: &SessionContext, config: &SabotConfig) {
    let state = ctx.state_ref();
    let mut state = state.write();
    let options = state.config_mut().options_mut();
    // Both values were validated by `Setting::apply`, so DataFusion accepts them.
    let _ = options.set(
        "datafusion.execution.target_partitions",
        &config.parallelism.to_string(),
    );
    let _ = options.set(
        "datafusion.execution.batch_size",
        &config.batch_size.to_string(),
    );
    // The state backend is chosen when the physical plan is built (crate::state::backend).
    options
        .extensions
        .insert(PlannedBackend(StateBackend::of(config)));
    // So is the runtime mode, when the logical plan is optimized (crate::config::RuntimeMode).
    options
        .extensions
        .insert(PlannedRuntimeMode(config.runtime_mode));
    // And the state's time to live, which the streaming planner hands to the operators.
    options.extensions.insert(PlannedStateTtl(config.state_ttl));
    // Operators read the other settings at execution (e.g. the broadcast join's limits).
    state.config_mut().set_extension(Arc::new(config.clone()));
}

/// Parses with DataFusion's parser after the window rewriters, then plans and runs.
pub async fn plan_with_datafusion(ctx: &SessionContext, sql: &str) -> Result<DataFrame> {
    let state = ctx.state();
    let statements = {
        let prepared = prepare_window_syntax(sql)?;
        let temporal = match prepare_temporal_syntax(&prepared)? {
            Cow::Owned(rewritten) => Some(rewritten),
            Cow::Borrowed(_) => None,
        };
        let text: &str = temporal.as_deref().unwrap_or(&prepared);
        let dialect = state.config().options().sql_parser.dialect;
        let dialect = datafusion::sql::sqlparser::dialect::dialect_from_str(dialect)
            .unwrap_or_else(|| Box::new(GenericDialect {}));
        DFParserBuilder::new(text)
            .with_dialect(dialect.as_ref())
            .build()?
            .parse_statements()?
    };
    // Every statement through the complexity guard before anything recurses over it (an
    // unchecked one dropped on an error path could overflow the stack too).
    let checked: Vec<Result<DFStatement>> =
        statements.into_iter().map(check_df_statement).collect();
    let mut statements = checked.into_iter().collect::<Result<VecDeque<_>>>()?;
    if statements.len() != 1 {
        return plan_err!(
            "expected exactly one statement, found {}; run scripts with `sabot run` or \
             SabotContext::sql_script",
            statements.len()
        );
    }
    let Some(mut statement) = statements.pop_front() else {
        return plan_err!("no statement");
    };
    rewrite_statement(&mut statement)?;
    rewrite_temporal_joins(ctx, &mut statement).await?;
    let plan = state.statement_to_plan(statement).await?;
    ctx.execute_logical_plan(plan).await
}

/// [`check_statement`] for DataFusion's statement wrapper.
fn check_df_statement(statement: DFStatement) -> Result<DFStatement> {
    Ok(match statement {
        DFStatement::Statement(s) => DFStatement::Statement(Box::new(check_statement(*s)?)),
        DFStatement::Explain(mut explain) => {
            let inner = *explain.statement;
            explain.statement = Box::new(check_df_statement(inner)?);
            DFStatement::Explain(explain)
        }
        DFStatement::CopyTo(mut copy) => {
            if let CopyToSource::Query(query) = copy.source {
                let checked = match check_statement(SqlStatement::Query(query))? {
                    SqlStatement::Query(q) => q,
                    _ => return plan_err!("COPY TO: the checked query changed kind"),
                };
                copy.source = CopyToSource::Query(checked);
            }
            DFStatement::CopyTo(copy)
        }
        other => other,
    })
}

fn rewrite_statement(statement: &mut DFStatement) -> Result<()> {
    match statement {
        DFStatement::Statement(s) => {
            rewrite_flink_functions(s);
            rewrite_group_windows(s)
        }
        DFStatement::Explain(explain) => rewrite_statement(&mut explain.statement),
        _ => Ok(()),
    }
}

async fn create_table(ctx: &SessionContext, table: super::ddl::CreateTable) -> Result<DataFrame> {
    let name = table.name.clone();
    let if_not_exists = table.if_not_exists;
    if ctx.table_exist(name.as_str())? {
        if if_not_exists {
            return ctx.read_empty();
        }
        return plan_err!(
            "table {name} already exists; DROP TABLE {name} first, or use CREATE TABLE IF NOT \
             EXISTS"
        );
    }
    let definition = resolve(table, ctx)?;
    let provider = ConnectorTable::build(definition)?;
    ctx.register_table(name.as_str(), Arc::new(provider))?;
    ctx.read_empty()
}

async fn connector_table(
    ctx: &SessionContext,
    name: &str,
) -> Result<Option<Arc<dyn datafusion::datasource::TableProvider>>> {
    if !ctx.table_exist(name)? {
        return Ok(None);
    }
    let provider = ctx.table_provider(name).await?;
    Ok(provider.is::<ConnectorTable>().then_some(provider))
}

/// `DESCRIBE` of a connector table: columns with their kind and the watermark (as Flink shows).
fn describe(
    ctx: &SessionContext,
    provider: &Arc<dyn datafusion::datasource::TableProvider>,
) -> Result<DataFrame> {
    let Some(table) = provider.downcast_ref::<ConnectorTable>() else {
        return plan_err!("not a connector table");
    };
    let def = table.definition();
    let mut names = Vec::new();
    let mut types = Vec::new();
    let mut nulls = Vec::new();
    let mut extras = Vec::new();
    let mut watermarks = Vec::new();
    for c in &def.columns {
        names.push(c.name.clone());
        types.push(c.data_type.to_string());
        nulls.push(c.nullable);
        extras.push(match &c.kind {
            ColumnKind::Physical => None,
            ColumnKind::Metadata { key, is_virtual } => Some(format!(
                "METADATA FROM '{key}'{}",
                if *is_virtual { " VIRTUAL" } else { "" }
            )),
            ColumnKind::Computed { sql, .. } => Some(format!("AS {sql}")),
        });
        watermarks.push(
            def.watermark
                .as_ref()
                .filter(|w| w.column == c.name)
                .map(|w| w.sql.clone()),
        );
    }
    let schema = Arc::new(Schema::new(vec![
        Field::new("column_name", DataType::Utf8, false),
        Field::new("data_type", DataType::Utf8, false),
        Field::new("is_nullable", DataType::Boolean, false),
        Field::new("extras", DataType::Utf8, true),
        Field::new("watermark", DataType::Utf8, true),
    ]));
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(names)),
        Arc::new(StringArray::from(types)),
        Arc::new(BooleanArray::from(nulls)),
        Arc::new(StringArray::from(extras)),
        Arc::new(StringArray::from(watermarks)),
    ];
    ctx.read_batch(RecordBatch::try_new(schema, columns)?)
}
