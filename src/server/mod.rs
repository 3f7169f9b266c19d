//! The MCP server: Streamable HTTP (stateless by default) or stdio.
//!
//! [`Application::build`] connects, checks that the database role cannot
//! bypass row-level security and that the migrations are current, and binds
//! the listener (port 0 works, for tests); [`Application::run_until_stopped`]
//! serves until the caller's shutdown future completes, then lets in-flight
//! calls finish within a deadline and closes the pool.

mod handler;
mod http;
mod metrics;
pub mod result_cache;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rmcp::ServiceExt;
use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::caller::CallerId;
use crate::embeddings::Embedder;
use crate::{db, migrate};

pub use handler::Handler;

/// Everything `sqlmcp serve` is configured with.
pub struct Settings {
    /// Connection of the application role (`store_manager`).
    pub database: Config,
    pub bind: SocketAddr,
    /// Keep MCP sessions (`Mcp-Session-Id`) instead of stateless requests.
    pub sessions: bool,
    /// `Host` header values accepted (DNS-rebinding protection); empty: any.
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin` values accepted; empty: no check.
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub authenticator: Arc<Authenticator>,
    /// The identity of calls that name none; `None` refuses them.
    pub default_caller: Option<CallerId>,
    pub pool_size: usize,
    /// How long a call waits for a free connection before it is told the
    /// server is busy.
    pub pool_wait: Duration,
    pub statement_timeout: Duration,
    pub max_rows: usize,
    /// Bounds of `execute_sales_query`.
    pub raw_sql: crate::tools::raw_sql::Limits,
    /// Embeds the text of tools that search by meaning; `None`: they say
    /// that no model is configured.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Prepare statements once per connection (off behind a
    /// transaction-pooling PgBouncer older than 1.21).
    pub statement_cache: bool,
    /// Keep the curated tools' answers for a while; `None`: off.
    pub result_cache: Option<result_cache::Settings>,
    /// How long in-flight calls may run on after shutdown begins.
    pub shutdown_deadline: Duration,
}

/// What every call shares.
pub struct State {
    pub pool: deadpool_postgres::Pool,
    pub default_caller: Option<CallerId>,
    pub pool_wait: Duration,
    pub statement_timeout: Duration,
    pub max_rows: usize,
    pub schemas: crate::tools::table_schemas::Cache,
    /// The tool catalogue as MCP lists it, built once.
    pub tools: Arc<Vec<rmcp::model::Tool>>,
    pub sql_names: crate::tools::raw_sql::NamesCache,
    pub raw_sql: crate::tools::raw_sql::Limits,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub statement_cache: bool,
    pub result_cache: Option<result_cache::ResultCache>,
}

/// Opens the pool and checks the database before anything is served.
async fn connect(settings: &Settings) -> Result<Arc<State>> {
    let pool = db::pool(&settings.database, settings.pool_size, settings.pool_wait)?;
    let client = pool.get().await.map_err(|err| {
        let detail = match &err {
            deadpool_postgres::PoolError::Backend(err) => err
                .as_db_error()
                .map_or_else(|| err.to_string(), |db| db.message().to_owned()),
            other => other.to_string(),
        };
        anyhow::anyhow!(
            "cannot connect to PostgreSQL at {}: {detail} (is it running, and is the password right? \
             for a local one: scripts/dev-db start, scripts/dev-db url app)",
            db::describe(&settings.database)
        )
    })?;
    // In a transaction: behind a transaction-pooling PgBouncer, statements
    // outside one may reach a different server connection than their Parse.
    let mut client = client;
    let tx = (**client)
        .build_transaction()
        .read_only(true)
        .start()
        .await?;
    db::check_application_role(&tx).await?;
    let status = migrate::status(&tx).await?;
    tx.rollback().await?;
    if status != migrate::Status::Current {
        bail!("refusing to serve: {status}");
    }
    drop(client);
    if let Some(embedder) = settings.embedder.clone() {
        // Load the model while the server already answers; the first call
        // that needs it waits for this same load.
        tokio::spawn(async move {
            let _ = embedder.warm_up().await;
        });
    }
    Ok(Arc::new(State {
        pool,
        default_caller: settings.default_caller,
        pool_wait: settings.pool_wait,
        statement_timeout: settings.statement_timeout,
        max_rows: settings.max_rows,
        schemas: Default::default(),
        tools: Arc::new(handler::catalogue()),
        sql_names: Default::default(),
        raw_sql: settings.raw_sql,
        embedder: settings.embedder.clone(),
        statement_cache: settings.statement_cache,
        result_cache: settings.result_cache.map(result_cache::ResultCache::new),
    }))
}

pub struct Application {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    state: Arc<State>,
    cancel: CancellationToken,
    shutdown_deadline: Duration,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application> {
        let state = connect(&settings).await?;
        let listener = tokio::net::TcpListener::bind(settings.bind).await.map_err(|err| {
            let hint = if err.kind() == std::io::ErrorKind::AddrInUse {
                " (another process listens there; choose another address with --bind or SQLMCP_BIND)"
            } else {
                ""
            };
            anyhow::anyhow!("cannot listen on {}: {err}{hint}", settings.bind)
        })?;
        let cancel = CancellationToken::new();
        let router = http::router(&settings, state.clone(), cancel.clone());
        Ok(Application {
            listener,
            router,
            state,
            cancel,
            shutdown_deadline: settings.shutdown_deadline,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until `shutdown` completes; then stops accepting, gives
    /// in-flight calls up to the deadline, and closes the pool.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        let cancel = self.cancel.clone();
        let stopping = CancellationToken::new();
        let stopping_signal = stopping.clone();
        let serve = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: no new requests; waiting for calls in flight");
                stopping_signal.cancel();
            })
            .into_future();
        let mut serve = std::pin::pin!(serve);
        let outcome = tokio::select! {
            outcome = &mut serve => outcome,
            () = async { stopping.cancelled().await; tokio::time::sleep(self.shutdown_deadline).await } => {
                tracing::warn!(deadline = ?self.shutdown_deadline, "calls still running at the shutdown deadline; stopping them");
                Ok(())
            }
        };
        cancel.cancel();
        self.state.pool.close();
        outcome.context("the HTTP server failed")
    }
}

/// Serves one client over stdin/stdout, as `caller`.
pub async fn serve_stdio(settings: Settings, caller: Option<CallerId>) -> Result<()> {
    let state = connect(&settings).await?;
    let handler = Handler::new(state.clone(), caller);
    let service = handler
        .serve(rmcp::transport::stdio())
        .await
        .context("the stdio client did not initialise")?;
    service.waiting().await.context("stdio session failed")?;
    state.pool.close();
    Ok(())
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
