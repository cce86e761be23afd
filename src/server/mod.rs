//! `sabot serve`: the Postgres wire protocol server.
//!
//! Every connection is a session of its own (settings) over one shared catalog: a table
//! created in one session is visible in all. Jobs started by `INSERT INTO ... SELECT` belong to
//! the server and outlive the session that started them; `SHOW JOBS` and `CANCEL JOB n` work
//! from any session. Clients log in with SCRAM-SHA-256 when the server has a password, and are
//! trusted otherwise; the server binds loopback unless told otherwise and warns when it trusts
//! clients off loopback.
//!
//! - [`connection`]: one client's messages, framed and checked, to pgwire's dispatcher.
//! - [`session`]: the simple and extended query protocols for one connection.
//! - [`jobs`]: the background jobs.
//! - [`errors`]: engine errors as Postgres errors with SQLSTATEs.
//! - [`text`]: times and timestamps in PostgreSQL's text form.
//! - [`column_names`]: result columns named as PostgreSQL names them (`?column?`).
//! - [`catalog_log`]: tables, views and jobs remembered in the state directory, replayed when
//!   the server starts again.

pub mod catalog_log;
pub mod column_names;
pub mod connection;
pub mod errors;
pub mod jobs;
pub mod metrics_http;
pub mod session;
pub mod text;

use std::net::SocketAddr;
use std::sync::Arc;

use datafusion::common::{Result, exec_datafusion_err, plan_err};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::auth::sasl::SASLAuthStartupHandler;
use pgwire::api::auth::sasl::scram::{ScramAuth, gen_salted_password};
use pgwire::api::auth::{
    AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::net::TcpListener;

use crate::catalog::options::TableOptions;
use crate::catalog::table_definition::{ColumnDefinition, ColumnKind, TableDefinition};
use crate::planner::connector_table::ConnectorTable;

use crate::config::SabotConfig;
use crate::context::SabotContext;

/// What `sabot serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Settings every session starts from (`state_dir` included).
    pub config: SabotConfig,
    /// `(user, password)` clients must log in with (SCRAM-SHA-256); `None`: trust.
    pub login: Option<(String, String)>,
    /// Where to serve the metrics in the Prometheus text format (`GET /metrics`), if at all.
    pub metrics_listen: Option<SocketAddr>,
}

const SCRAM_ITERATIONS: usize = 4096;

/// The one user a server accepts, with its SCRAM-salted password.
#[derive(Debug)]
pub struct Credentials {
    user: String,
    salt: Vec<u8>,
    salted: Vec<u8>,
}

impl Credentials {
    pub fn new(user: &str, password: &str) -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut salt = Vec::with_capacity(16);
        for _ in 0..2 {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write(user.as_bytes());
            salt.extend_from_slice(&h.finish().to_le_bytes());
        }
        let salted = gen_salted_password(password, &salt, SCRAM_ITERATIONS);
        Self {
            user: user.to_string(),
            salt,
            salted,
        }
    }
}

#[async_trait::async_trait]
impl AuthSource for Credentials {
    async fn get_password(&self, login: &LoginInfo) -> pgwire::error::PgWireResult<Password> {
        if login.user() == Some(self.user.as_str()) {
            return Ok(Password::new(Some(self.salt.clone()), self.salted.clone()));
        }
        // Another user: a password nobody knows, so the answer is the same "wrong password".
        let mut nobody = self.salted.clone();
        nobody.iter_mut().for_each(|b| *b = !*b);
        Ok(Password::new(Some(self.salt.clone()), nobody))
    }
}

/// Trust, or SCRAM-SHA-256 against [`Credentials`].
enum Login {
    Trust(Startup),
    Scram(SASLAuthStartupHandler<DefaultServerParameterProvider>),
}

#[async_trait::async_trait]
impl StartupHandler for Login {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: pgwire::messages::PgWireFrontendMessage,
    ) -> pgwire::error::PgWireResult<()>
    where
        C: pgwire::api::ClientInfo
            + futures::Sink<pgwire::messages::PgWireBackendMessage>
            + Unpin
            + Send
            + Sync,
        C::Error: std::fmt::Debug,
        pgwire::error::PgWireError:
            From<<C as futures::Sink<pgwire::messages::PgWireBackendMessage>>::Error>,
    {
        match self {
            Login::Trust(h) => h.on_startup(client, message).await,
            Login::Scram(h) => h.on_startup(client, message).await,
        }
    }
}

/// What every connection shares.
pub struct Server {
    /// The session new connections are cloned from (its catalog is everyone's).
    pub base: SabotContext,
    /// Every job.
    pub jobs: jobs::Jobs,
    /// What survives a restart.
    pub log: catalog_log::CatalogLog,
    /// The user clients log in as; `None`: trust.
    credentials: std::sync::OnceLock<Arc<Credentials>>,
    connections: Arc<ConnectionManager>,
}

/// Registers connections for cancel requests.
struct Startup {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Startup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.connections))
    }
}

/// The handlers of one connection.
struct Handlers {
    session: Arc<session::Session>,
    startup: Arc<Login>,
    cancel: Arc<DefaultCancelHandler>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.session)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.session)
    }

    fn startup_handler(&self) -> Arc<impl pgwire::api::auth::StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl pgwire::api::cancel::CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

impl Server {
    /// A server whose sessions start from `config`; with a state directory, the tables, views
    /// and jobs of its previous run come back (see [`catalog_log`]).
    pub async fn new(config: SabotConfig) -> Result<Arc<Self>> {
        let jobs = jobs::Jobs::new(config.state_dir.as_deref());
        let log = catalog_log::CatalogLog::open(config.state_dir.as_deref());
        let base = SabotContext::new(config);
        base.install_pg_catalog()?;
        let server = Arc::new(Self {
            base,
            jobs,
            log,
            credentials: std::sync::OnceLock::new(),
            connections: Arc::new(ConnectionManager::new()),
        });
        server.replay().await?;
        Ok(server)
    }

    /// Requires clients to log in as `user` with `password` (SCRAM-SHA-256), from the next
    /// connection on; the first login set stays.
    pub fn require_login(&self, user: &str, password: &str) {
        let _ = self
            .credentials
            .set(Arc::new(Credentials::new(user, password)));
    }

    /// Replays the catalog log: DDL in order, then the jobs that were running (resuming from
    /// their checkpoints) and the materialized views (filled again from the start). What fails
    /// is reported and skipped; the rest comes back.
    async fn replay(&self) -> Result<()> {
        use catalog_log::Entry;
        type Settings = Vec<(String, String)>;
        let mut jobs: std::collections::BTreeMap<u64, (String, Settings)> = Default::default();
        let mut views: Vec<(String, String, Vec<String>, Settings)> = Vec::new();
        for entry in self.log.read()? {
            match entry {
                Entry::Ddl { sql } => {
                    let done = async { self.base.sql(&sql).await?.collect().await };
                    if let Err(e) = done.await {
                        eprintln!("warning: replaying `{sql}` failed: {e}");
                    }
                }
                Entry::Job { id, sql, settings } => {
                    jobs.insert(id, (sql, settings));
                }
                Entry::Cancel { id } => {
                    jobs.remove(&id);
                }
                Entry::View {
                    name,
                    query,
                    columns,
                    settings,
                } => views.push((name, query, columns, settings)),
                Entry::DropView { name } => views.retain(|(n, ..)| *n != name),
            }
        }
        for (id, (sql, settings)) in jobs {
            let started = async {
                let ctx = self.session_with(&settings).await?;
                let df = ctx.sql(&sql).await?;
                self.jobs.resume(id, &sql, df, &ctx.config()).await
            };
            if let Err(e) = started.await {
                eprintln!("warning: job {id} (`{sql}`) could not resume: {e}");
            }
        }
        for (name, query, columns, settings) in views {
            let restored = async {
                let ctx = self.session_with(&settings).await?;
                self.materialize(&ctx, &name, &query, &columns).await
            };
            if let Err(e) = restored.await {
                eprintln!("warning: materialized view {name} could not be restored: {e}");
            }
        }
        Ok(())
    }

    /// A session over the server's catalog with `settings` (what a job was started with)
    /// applied over the server's own.
    async fn session_with(&self, settings: &[(String, String)]) -> Result<SabotContext> {
        let ctx = self.base.new_session();
        let mut config = ctx.config();
        let mut datafusion = Vec::new();
        for (key, value) in settings {
            match crate::config::Setting::from_key(key) {
                Some(setting) => setting.apply(&mut config, value)?,
                None if key.starts_with("datafusion.") => datafusion.push((key, value)),
                None => return plan_err!("unknown setting {key} in the catalog log"),
            }
        }
        ctx.reset_settings(&config);
        // DataFusion's own after Sabot's, which set some of them (the target partitions).
        for (key, value) in datafusion {
            let value = value.replace('\'', "''");
            ctx.sql(&format!("SET {key} = '{value}'"))
                .await?
                .collect()
                .await?;
        }
        Ok(ctx)
    }

    /// Creates materialized view `name` (a memory table with the query's columns) and starts
    /// the job that fills it; returns the job id. Nothing is left behind on failure.
    pub async fn materialize(
        &self,
        ctx: &SabotContext,
        name: &str,
        query: &str,
        names: &[String],
    ) -> Result<u64> {
        let df = ctx.sql(query).await?;
        let fields = df.schema().fields();
        if names.len() > fields.len() {
            return Err(crate::error::with_sqlstate(
                crate::error::SYNTAX_ERROR,
                format!(
                    "materialized view {name} names {} columns, but its query has {}",
                    names.len(),
                    fields.len()
                ),
            ));
        }
        // The view's table holds the query's Arrow types as they are (any type the engine
        // produces), under the names of the column list.
        let columns = fields
            .iter()
            .enumerate()
            .map(|(i, f)| ColumnDefinition {
                // The column list names the first columns; the rest keep the query's names
                // (rows are inserted by position).
                name: names
                    .get(i)
                    .map_or(f.name().as_str(), String::as_str)
                    .to_string(),
                data_type: f.data_type().clone(),
                nullable: true,
                kind: ColumnKind::Physical,
            })
            .collect::<Vec<_>>();
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = columns.iter().find(|c| !seen.insert(c.name.to_lowercase())) {
            return plan_err!(
                "materialized view {name} would have two columns named {}; name them apart \
                 (AS ...) or in the view's column list",
                twice.name
            );
        }
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let mut shown: Vec<String> = columns
            .iter()
            .map(|c| {
                let t = session::sql_type(&c.data_type).unwrap_or_else(|| c.data_type.to_string());
                format!("{} {t}", quote(&c.name))
            })
            .collect();
        // Keyed by the query's upsert key (its GROUP BY keys): one row per key.
        let primary_key: Vec<String> = crate::planner::upsert_key::upsert_key(df.logical_plan())
            .unwrap_or_default()
            .into_iter()
            .filter_map(|i| columns.get(i).map(|c| c.name.clone()))
            .collect();
        if !primary_key.is_empty() {
            let names: Vec<String> = primary_key.iter().map(|n| quote(n)).collect();
            shown.push(format!("PRIMARY KEY ({}) NOT ENFORCED", names.join(", ")));
        }
        let definition = TableDefinition {
            name: name.to_string(),
            columns,
            watermark: None,
            primary_key,
            partition_by: Vec::new(),
            options: TableOptions::new(
                name,
                [("connector".to_string(), "memory".to_string())].into(),
            ),
            sql: format!(
                "CREATE TABLE {name} ({}) WITH ('connector' = 'memory')",
                shown.join(", ")
            ),
        };
        if ctx.table_exist(name)? {
            return plan_err!("table {name} already exists; DROP TABLE {name} first");
        }
        ctx.register_table(name, Arc::new(ConnectorTable::build(definition)?))?;
        // No view without its job (also when this future is dropped midway).
        let mut cleanup = session::ViewCleanup {
            ctx,
            name,
            armed: true,
        };
        let insert = format!("INSERT INTO {name} {query}");
        let table = ctx
            .table_provider(name)
            .await?
            .downcast_ref::<crate::planner::connector_table::ConnectorTable>()
            .and_then(|t| t.sink().cloned());
        // The job reads memory tables (and other views) live, and so follows their changes. A
        // query that cannot take changes (a window or a join over a memory table) reads them
        // once, as the rows present now.
        let live = match ctx.live_query(&insert).await {
            Ok(df) => {
                self.jobs
                    .start_view(&insert, name, table.clone(), df, &ctx.config())
                    .await
            }
            Err(e) => Err(e),
        };
        let id = match live {
            Ok(id) => id,
            Err(e) => {
                log::info!("materialized view {name} reads its tables once: {e}");
                let df = ctx.sql(&insert).await?;
                self.jobs
                    .start_view(&insert, name, table, df, &ctx.config())
                    .await?
            }
        };
        cleanup.armed = false;
        Ok(id)
    }

    /// Serves connections from `listener` until `shutdown` resolves; then stops the jobs.
    pub async fn run(
        self: Arc<Self>,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        tokio::pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            let (socket, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    log::warn!("accepting a connection failed: {e}");
                    continue;
                }
            };
            let handlers = Handlers {
                session: Arc::new(session::Session::new(Arc::clone(&self))),
                startup: Arc::new(match self.credentials.get() {
                    None => Login::Trust(Startup {
                        connections: Arc::clone(&self.connections),
                    }),
                    Some(credentials) => {
                        let mut scram =
                            ScramAuth::new(Arc::clone(credentials) as Arc<dyn AuthSource>);
                        scram.set_iterations(SCRAM_ITERATIONS);
                        Login::Scram(
                            SASLAuthStartupHandler::new(Arc::new(
                                DefaultServerParameterProvider::default(),
                            ))
                            .with_scram(scram)
                            .with_connection_manager(Arc::clone(&self.connections)),
                        )
                    }
                }),
                cancel: Arc::new(DefaultCancelHandler::new(Arc::clone(&self.connections))),
            };
            tokio::spawn(async move {
                if let Err(e) = connection::serve(socket, peer, handlers).await {
                    log::debug!("connection from {peer} ended: {e}");
                }
            });
        }
        self.jobs.stop_all();
        Ok(())
    }
}

/// `sabot serve`: binds, says where (on standard error), serves until Ctrl-C or SIGTERM.
pub async fn serve(options: ServeOptions) -> Result<()> {
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| exec_datafusion_err!("cannot listen on {}: {e}", options.listen))?;
    let address = listener
        .local_addr()
        .map_err(|e| exec_datafusion_err!("cannot read the listening address: {e}"))?;
    if !address.ip().is_loopback() && options.login.is_none() {
        eprintln!(
            "warning: listening on {address}, not loopback, without authentication: anyone who \
             can reach this address can run queries (set a password with --password-file or \
             SABOT_PASSWORD)"
        );
    }
    eprintln!(
        "sabot: listening on {address} (psql -h {} -p {})",
        address.ip(),
        address.port()
    );
    if let Some(metrics) = options.metrics_listen {
        let bound = metrics_http::start(metrics).await?;
        eprintln!("sabot: metrics at http://{bound}/metrics");
    }
    let server = Server::new(options.config).await?;
    if let Some((user, password)) = &options.login {
        server.require_login(user, password);
    }
    server.run(listener, shutdown_signal()).await
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!("sabot: shutting down");
}
