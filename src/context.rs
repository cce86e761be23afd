//! `SabotContext`: a DataFusion `SessionContext` that speaks streaming SQL.
//!
//! It is a `SessionContext` (it dereferences to one) whose planner knows the window TVFs, the
//! window aggregation rewrite, the streaming physical operators and the connector tables, and
//! whose [`sql`](SabotContext::sql) also accepts Sabot's statements (Flink `CREATE TABLE`,
//! `SET 'key' = 'value'`). Results are ordinary DataFusion `DataFrame`s and record batch streams.

use std::num::NonZeroUsize;
use std::ops::Deref;
use std::sync::{Arc, RwLock};

use datafusion::common::{Result, plan_err};
use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::execute_stream;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::config::{LiveTables, PlannedRuntimeMode, PlannedStateTtl, SabotConfig};
use crate::physical::sink::is_updating_result;
use crate::physical::streaming::changelog_stream;
use crate::planner::extension_planner::StreamingQueryPlanner;
use crate::planner::script::split_statements;
use crate::planner::statement;
use crate::planner::streaming_rule::StreamingPipelineRule;
use crate::planner::timestamp_literals::TimestampLiteralRule;
use crate::planner::updating_aggregate_rule::UpdatingAggregateRule;
use crate::planner::window_aggregate_rule::WindowAggregateRule;
use crate::planner::window_tvf::WindowTvfPlanner;
use crate::state::backend::{PlannedBackend, StateBackend};
use crate::statement::Statement;

/// A session with Sabot's streaming extensions (see the module docs).
#[derive(Clone)]
pub struct SabotContext {
    ctx: SessionContext,
    config: Arc<RwLock<SabotConfig>>,
}

impl std::fmt::Debug for SabotContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SabotContext")
            .field("session_id", &self.ctx.session_id())
            .finish()
    }
}

/// Creates a session with the streaming extensions. The one call an embedding program needs.
pub fn session_context(config: SabotConfig) -> SabotContext {
    SabotContext::new(config)
}

impl SabotContext {
    /// See [`session_context`].
    pub fn new(config: SabotConfig) -> Self {
        let mut session_config = SessionConfig::new();
        // The session time zone, as PostgreSQL's TimeZone says: `TIMESTAMP WITH TIME ZONE`
        // (and Flink's TIMESTAMP_LTZ) values are instants shown in UTC.
        session_config.options_mut().execution.time_zone = Some("UTC".to_string());
        let session_config = session_config
            .with_information_schema(true)
            .with_target_partitions(config.parallelism.max(1))
            .with_batch_size(config.batch_size.max(1))
            // Joins collect their build side instead of shuffling both: a stream joined with a
            // table then becomes a broadcast join without a shuffle of the stream.
            .with_repartition_joins(false)
            .with_extension(Arc::new(config.clone()))
            .with_option_extension(PlannedBackend(StateBackend::of(&config)))
            .with_option_extension(PlannedRuntimeMode(config.runtime_mode))
            .with_option_extension(PlannedStateTtl(config.state_ttl));
        let mut logical_rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![
            Arc::new(TimestampLiteralRule),
            Arc::new(WindowAggregateRule),
        ];
        logical_rules.extend(Optimizer::new().rules);
        // After DataFusion's rules, which turn DISTINCT into aggregates.
        logical_rules.push(Arc::new(UpdatingAggregateRule));
        let mut physical_rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> =
            PhysicalOptimizer::new().rules;
        // Before the final sanity check, which must see the streaming operators.
        let at = physical_rules.len().saturating_sub(1);
        physical_rules.insert(at, Arc::new(StreamingPipelineRule));
        let mut builder = SessionStateBuilder::new();
        if let Some(limit) = config.memory_limit {
            // One pool for every query and job; when it is full the reservation that does not
            // fit fails (SQLSTATE 53200), naming the largest consumers.
            let pool = TrackConsumersPool::new(
                GreedyMemoryPool::new(limit),
                NonZeroUsize::new(5).unwrap_or(NonZeroUsize::MIN),
            );
            if let Ok(runtime) = RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::new(pool))
                .build_arc()
            {
                builder = builder.with_runtime_env(runtime);
            }
        }
        let state = builder
            .with_config(session_config)
            .with_default_features()
            .with_optimizer_rules(logical_rules)
            .with_physical_optimizer_rules(physical_rules)
            .with_query_planner(Arc::new(StreamingQueryPlanner))
            .with_relation_planners(vec![Arc::new(WindowTvfPlanner)])
            .build();
        let ctx = SessionContext::new_with_state(state);
        crate::functions::register(&ctx);
        Self {
            ctx,
            config: Arc::new(RwLock::new(config)),
        }
    }

    /// Runs one statement: Sabot's own, or anything DataFusion accepts.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let statements = split_statements(sql)?;
        match statements.as_slice() {
            [one] => self.execute(&Statement::parse(&one.sql)).await,
            [] => plan_err!("no SQL statement given"),
            _ => plan_err!(
                "{} statements given; `sql` runs one at a time (split the script, or use \
                 `sabot run`)",
                statements.len()
            ),
        }
    }

    /// Runs one statement already read ([`Statement::parse`]); what `sql`, the server and
    /// `sabot run` all call.
    pub async fn execute(&self, statement: &Statement) -> Result<DataFrame> {
        statement::execute(&self.ctx, &self.config, statement).await
    }

    /// Plans `sql` as a continuous job runs it: memory tables are read live, their rows and
    /// then every change made to them (INSERT, UPDATE, DELETE, or the job filling a
    /// materialized view), so the result never ends and follows them, as a materialized
    /// view's job does. [`Self::sql`] reads the rows present when the query starts.
    pub async fn live_query(&self, sql: &str) -> Result<DataFrame> {
        let mut state = self.ctx.state();
        state
            .config_mut()
            .options_mut()
            .extensions
            .insert(LiveTables(true));
        let ctx = SessionContext::new_with_state(state);
        let statements = split_statements(sql)?;
        match statements.as_slice() {
            [one] => statement::execute(&ctx, &self.config, &Statement::parse(&one.sql)).await,
            _ => plan_err!("live_query runs one statement"),
        }
    }

    /// Sabot's settings back to `config` (`DISCARD ALL`).
    pub fn reset_settings(&self, config: &SabotConfig) {
        if let Ok(mut current) = self.config.write() {
            *current = config.clone();
        }
        statement::apply_to_session(&self.ctx, config);
    }

    /// The current settings.
    pub fn config(&self) -> SabotConfig {
        self.config.read().map(|c| c.clone()).unwrap_or_default()
    }

    /// Registers Arrow batches as a bounded table `name`: joined with a stream, it is the
    /// dimension side of a broadcast join (loaded once, shared by every task).
    pub fn register_dimension_table(
        &self,
        name: &str,
        batches: Vec<datafusion::arrow::record_batch::RecordBatch>,
    ) -> Result<()> {
        let Some(first) = batches.first() else {
            return plan_err!("dimension table {name} needs at least one batch (for its schema)");
        };
        let table = datafusion::datasource::MemTable::try_new(first.schema(), vec![batches])?;
        self.ctx.register_table(name, Arc::new(table))?;
        Ok(())
    }

    /// Another session over the same catalog: tables, views and functions are shared, settings
    /// (`SET`) are this session's own, starting from the current ones.
    pub fn new_session(&self) -> SabotContext {
        Self {
            ctx: SessionContext::new_with_state(self.ctx.state()),
            config: Arc::new(RwLock::new(self.config())),
        }
    }

    /// Installs `pg_catalog` (tables and functions Postgres clients query) into this session's
    /// catalog; sessions made by [`Self::new_session`] afterwards share it.
    pub fn install_pg_catalog(&self) -> Result<()> {
        let catalog = self
            .ctx
            .state()
            .config()
            .options()
            .catalog
            .default_catalog
            .clone();
        datafusion_pg_catalog::setup_pg_catalog(
            &self.ctx,
            &catalog,
            datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
        )
        .map_err(|e| *e)
    }

    /// The underlying DataFusion session.
    pub fn session_context(&self) -> &SessionContext {
        &self.ctx
    }
}

impl Deref for SabotContext {
    type Target = SessionContext;

    fn deref(&self) -> &SessionContext {
        &self.ctx
    }
}

/// A query's rows as they come out (see [`result_stream`]).
pub struct ResultStream {
    /// The rows: the query's columns, with an `op` column first if `updating`.
    pub batches: SendableRecordBatchStream,
    /// True for an updating query (a GROUP BY without a window): each row is a change of the
    /// result, `+I`, `-U`, `+U` or `-D` in its `op` column (see [`crate::changelog`]).
    pub updating: bool,
}

/// Runs `df` and returns its rows: for an append-only query the same batches as
/// `DataFrame::execute_stream`, for an updating query its changelog, `op` first. (Its plain
/// `execute_stream` refuses, since rows without their kinds would read as facts.)
pub async fn result_stream(df: DataFrame) -> Result<ResultStream> {
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    if is_updating_result(&plan) {
        Ok(ResultStream {
            batches: changelog_stream(&plan, task)?,
            updating: true,
        })
    } else {
        Ok(ResultStream {
            batches: execute_stream(plan, task)?,
            updating: false,
        })
    }
}
