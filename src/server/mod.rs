//! `sabot serve`: the Postgres wire protocol server.
//!
//! Every connection is a session of its own (settings) over one shared catalog: a table
//! created in one session is visible in all. Jobs started by `INSERT INTO ... SELECT` belong to
//! the server and outlive the session that started them; `SHOW JOBS` and `CANCEL JOB n` work
//! from any session. Clients authenticate with nothing (trust) for now; the server binds
//! loopback unless told otherwise and warns when it does not.
//!
//! - [`session`]: the simple and extended query protocols for one connection.
//! - [`jobs`]: the background jobs.
//! - [`errors`]: engine errors as Postgres errors with SQLSTATEs.

pub mod errors;
pub mod jobs;
pub mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use datafusion::common::{Result, exec_datafusion_err};
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::DefaultCancelHandler;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::net::TcpListener;

use crate::config::SabotConfig;
use crate::context::SabotContext;

/// What `sabot serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Settings every session starts from (`state_dir` included).
    pub config: SabotConfig,
}

/// What every connection shares.
pub struct Server {
    /// The session new connections are cloned from (its catalog is everyone's).
    pub base: SabotContext,
    /// Every job.
    pub jobs: jobs::Jobs,
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
    startup: Arc<Startup>,
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
    /// A server whose sessions start from `config`.
    pub fn new(config: SabotConfig) -> Result<Arc<Self>> {
        let jobs = jobs::Jobs::new(config.state_dir.as_deref());
        let base = SabotContext::new(config);
        base.install_pg_catalog()?;
        Ok(Arc::new(Self {
            base,
            jobs,
            connections: Arc::new(ConnectionManager::new()),
        }))
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
                startup: Arc::new(Startup {
                    connections: Arc::clone(&self.connections),
                }),
                cancel: Arc::new(DefaultCancelHandler::new(Arc::clone(&self.connections))),
            };
            tokio::spawn(async move {
                if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
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
    if !address.ip().is_loopback() {
        eprintln!(
            "warning: listening on {address}, not loopback, without authentication: anyone who \
             can reach this address can run queries"
        );
    }
    eprintln!(
        "sabot: listening on {address} (psql -h {} -p {})",
        address.ip(),
        address.port()
    );
    let server = Server::new(options.config)?;
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
