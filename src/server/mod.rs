//! The MCP server: Streamable HTTP (stateless by default) or stdio.
//!
//! [`Application::build`] connects, checks that the database role cannot
//! bypass row-level security and that the migrations are current, starts
//! the audit log's writer, and binds the listener (port 0 works, for tests);
//! [`Application::run_until_stopped`] serves until the caller's shutdown
//! future completes, then lets in-flight calls finish within a deadline,
//! writes the audit entries still queued and closes the pool.
//!
//! Slow clients are bounded: request headers must arrive within the header
//! timeout (which also closes idle keep-alive connections), `/mcp` bodies
//! within the body timeout, and at most `max_connections` connections are
//! open. At the cap the server stops accepting, so new connections wait in
//! the listen backlog until one closes.

pub mod cache_hints;
mod handler;
mod http;
mod metrics;
mod progress;
pub mod rate_limit;
pub mod result_cache;
pub mod shared;
mod strict_json;
mod ui;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rmcp::ServiceExt;
use tokio_postgres::Config;
use tokio_util::sync::CancellationToken;

use crate::auth::Authenticator;
use crate::auth::ToolScopes;
use crate::caller::Caller;
use crate::embeddings::Embedder;
use crate::{db, migrate};

pub(crate) use handler::Called;
pub use handler::{Handler, PROTOCOL_VERSIONS};

/// Everything `sqlmcp serve` is configured with.
pub struct Settings {
    /// Connection of the application role (`store_manager`): the primary,
    /// or a hot standby.
    pub database: Config,
    /// Read replicas of `database`, as the application role: they take the
    /// calls while up and within `max_replica_lag`.
    pub replicas: Vec<Config>,
    pub max_replica_lag: Duration,
    pub bind: SocketAddr,
    /// Keep MCP sessions (`Mcp-Session-Id`) instead of stateless requests.
    pub sessions: bool,
    /// `Host` header values accepted (DNS-rebinding protection); empty: any.
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin` values accepted; empty: no check.
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    /// How long a client may take to send a request's headers; also how
    /// long an idle keep-alive connection stays open.
    pub header_timeout: Duration,
    /// How long a client may take to send a `/mcp` request body, whole.
    pub body_timeout: Duration,
    /// Connections open at once at most; more wait in the listen backlog.
    pub max_connections: usize,
    pub authenticator: Arc<Authenticator>,
    /// The identity of calls that name none; `None` refuses them.
    pub default_caller: Option<Caller>,
    /// The scope each tool needs.
    pub tool_scopes: ToolScopes,
    pub pool_size: usize,
    /// How long a call waits for a free connection before it is told the
    /// server is busy.
    pub pool_wait: Duration,
    /// The bounds of every call.
    pub limits: crate::tools::CallLimits,
    /// Embeds the text of tools that search by meaning; `None`: they say
    /// that no model is configured.
    pub embedder: Option<Arc<dyn Embedder>>,
    /// Keep the curated tools' answers for a while; `None`: off.
    pub result_cache: Option<result_cache::Settings>,
    /// How long in-flight calls may run on after shutdown begins.
    pub shutdown_deadline: Duration,
    /// Where `/metrics` is served, and what it asks for.
    pub metrics: MetricsSettings,
    /// The audit log of every tool call; off by default.
    pub audit: crate::audit::Settings,
    /// Per-caller rate limits and concurrency caps; none by default.
    pub rate_limits: rate_limit::Settings,
    /// Serve the workbench at `/ui` (and keep the recent calls it lists).
    pub ui: bool,
    /// Share the result cache and rate limits through Redis; `None`: each
    /// instance keeps its own.
    pub redis: Option<shared::Settings>,
}

/// `/metrics` shows every tenant's calls and latencies: it may move to an
/// address of its own, and it asks for a token when one is set. With
/// authentication on (`--auth jwt`) and no token it is not served at all,
/// so it is never public by accident.
#[derive(Debug, Clone, Default)]
pub struct MetricsSettings {
    /// Serve `/metrics` here instead of on the main address.
    pub bind: Option<SocketAddr>,
    /// `Authorization: Bearer <token>` required on `/metrics`.
    pub token: Option<crate::secret::Secret>,
}

/// What every call shares.
pub struct State {
    /// The primary's pool and the replicas' ([`db::Databases::connection`]).
    pub databases: Arc<db::Databases>,
    pub default_caller: Option<Arc<Caller>>,
    pub tool_scopes: ToolScopes,
    pub pool_wait: Duration,
    pub limits: crate::tools::CallLimits,
    pub schemas: crate::tools::table_schemas::Cache,
    /// The tool list as MCP lists it, built once.
    pub tools: Arc<Vec<rmcp::model::Tool>>,
    /// What `initialize` tells a client about the tools, made once.
    pub instructions: String,
    pub sql_names: crate::tools::raw_sql::NamesCache,
    pub embedder: Option<Arc<dyn Embedder>>,
    pub result_cache: Option<result_cache::ResultCache>,
    pub audit: crate::audit::Auditor,
    pub rate_limits: rate_limit::Limiter,
    /// Cancelled when the server stops serving: calls still running then
    /// are cancelled too.
    pub stopping: CancellationToken,
}

/// Opens the pools and checks the databases before anything is served.
/// A replica that is down at start-up is only logged: it takes calls once
/// it answers. One that answers must pass the same checks as the primary.
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
    let mut client = client;
    if check_database(&mut client).await? {
        tracing::info!(database = %db::describe(&settings.database), "--database-url is a hot standby (read-only): every tool works on it; the audit log needs --audit-database-url on the primary");
    }
    drop(client);
    for replica in &settings.replicas {
        let mut client = match db::connect(replica).await {
            Ok(client) => client,
            Err(err) => {
                tracing::warn!(replica = %db::describe(replica), error = format!("{err:#}"), "a replica is unreachable at start-up; it takes calls once it answers");
                continue;
            }
        };
        let standby = check_database(&mut client)
            .await
            .with_context(|| format!("replica {}", db::describe(replica)))?;
        if !standby {
            tracing::warn!(replica = %db::describe(replica), "--replica-url names a database that is not a hot standby; it takes calls like one that never lags");
        }
    }
    let databases = Arc::new(db::Databases::new(
        pool,
        settings.database.clone(),
        &settings.replicas,
        settings.pool_size,
        settings.pool_wait,
        settings.max_replica_lag,
    )?);
    let stopping = CancellationToken::new();
    databases.monitor(stopping.clone());
    let recent = settings.ui.then(|| {
        Arc::new(crate::audit::recent::RecentCalls::new(
            crate::audit::recent::CAPACITY,
        ))
    });
    let audit = crate::audit::Auditor::start(&settings.audit, settings.database.get_user())
        .await?
        .with_recent(recent);
    if let Some(embedder) = settings.embedder.clone() {
        // Load the model while the server already answers; the first call
        // that needs it waits for this same load.
        tokio::spawn(async move {
            let _ = embedder.warm_up().await;
        });
    }
    let stopping = CancellationToken::new();
    let rate_limits = rate_limit::Limiter::new(settings.rate_limits.clone());
    let sharing = settings.result_cache.is_some() || rate_limits.is_on();
    let redis = shared::Redis::start_for(settings.redis.as_ref(), sharing, &stopping).await?;
    Ok(Arc::new(State {
        databases,
        default_caller: settings.default_caller.clone().map(Arc::new),
        tool_scopes: settings.tool_scopes.clone(),
        pool_wait: settings.pool_wait,
        limits: settings.limits,
        schemas: Default::default(),
        tools: Arc::new(handler::tool_list()),
        instructions: crate::tools::instructions(),
        sql_names: Default::default(),
        embedder: settings.embedder.clone(),
        result_cache: settings
            .result_cache
            .map(|cache| result_cache::ResultCache::new(cache, redis.clone())),
        audit,
        rate_limits: rate_limits.shared_through(redis),
        stopping,
    }))
}

/// The start-up checks of one database: its role cannot bypass row-level
/// security and its migrations are this binary's. All reads, so a hot
/// standby passes them too; tells whether it is one.
async fn check_database(client: &mut tokio_postgres::Client) -> Result<bool> {
    // In a transaction: behind a transaction-pooling PgBouncer, statements
    // outside one may reach a different server connection than their Parse.
    let tx = client.build_transaction().read_only(true).start().await?;
    db::check_application_role(&tx).await?;
    let status = migrate::status(&tx).await?;
    let standby: bool = tx
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await?
        .get(0);
    tx.rollback().await?;
    if status != migrate::Status::Current {
        bail!("refusing to serve: {status}");
    }
    Ok(standby)
}

pub struct Application {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    /// `/metrics` on an address of its own (`--metrics-bind`).
    metrics: Option<(tokio::net::TcpListener, axum::Router)>,
    state: Arc<State>,
    cancel: CancellationToken,
    shutdown_deadline: Duration,
    header_timeout: Duration,
    max_connections: usize,
}

/// `/metrics` on its own address until `stop`.
fn serve_metrics(listener: tokio::net::TcpListener, router: axum::Router, stop: CancellationToken) {
    tokio::spawn(async move {
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the metrics address stopped serving");
        }
    });
}

/// A listener on `address`; `flag` names the setting to change if it is taken.
async fn listen(address: SocketAddr, flag: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(address).await.map_err(|err| {
        let hint = if err.kind() == std::io::ErrorKind::AddrInUse {
            format!(" (another process listens there; choose another address with {flag})")
        } else {
            String::new()
        };
        anyhow::anyhow!("cannot listen on {address}: {err}{hint}")
    })
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application> {
        if settings.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        if settings.header_timeout.is_zero() || settings.body_timeout.is_zero() {
            bail!("--header-timeout-ms and --body-timeout-ms must be at least 1");
        }
        let authenticated = settings.authenticator.jwt().is_some();
        if authenticated && settings.metrics.bind.is_some() && settings.metrics.token.is_none() {
            bail!(
                "--metrics-bind with --auth jwt needs --metrics-token: /metrics shows every tenant's calls"
            );
        }
        let state = connect(&settings).await?;
        let listener = listen(settings.bind, "--bind or SQLMCP_BIND").await?;
        let cancel = state.stopping.clone();
        let router = http::router(&settings, state.clone(), cancel.clone());
        let metrics = match settings.metrics.bind {
            Some(address) => Some((
                listen(address, "--metrics-bind").await?,
                http::metrics_router(&settings.metrics, state.clone()),
            )),
            None => None,
        };
        // an authorization server's keys load in the background: start-up
        // does not wait for (or fail on) an issuer
        let authenticator = settings.authenticator.clone();
        tokio::spawn(async move {
            if let Some(jwt) = authenticator.jwt() {
                jwt.warm_up().await;
            }
        });
        Ok(Application {
            listener,
            router,
            metrics,
            state,
            cancel,
            shutdown_deadline: settings.shutdown_deadline,
            header_timeout: settings.header_timeout,
            max_connections: settings.max_connections,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Where `/metrics` is served when it has an address of its own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(listener, _)| {
            listener
                .local_addr()
                .expect("a bound listener has an address")
        })
    }

    /// Serves until `shutdown` completes; then stops accepting, gives
    /// in-flight calls up to the deadline, and closes the pool.
    ///
    /// HTTP/1.1 only, as before: hyper's HTTP/1 connection directly rather
    /// than version sniffing, which would wait for a silent client's first
    /// bytes before the header timeout starts.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<()> {
        use hyper_util::rt::{TokioIo, TokioTimer};
        use hyper_util::server::graceful::GracefulShutdown;
        use hyper_util::service::TowerToHyperService;

        let Application {
            listener,
            router,
            metrics,
            state,
            cancel,
            shutdown_deadline,
            header_timeout,
            max_connections,
        } = self;
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(header_timeout);
        let connections = Arc::new(tokio::sync::Semaphore::new(
            max_connections.min(tokio::sync::Semaphore::MAX_PERMITS),
        ));
        if let Some((metrics_listener, metrics_router)) = metrics {
            serve_metrics(metrics_listener, metrics_router, cancel.clone());
        }
        let graceful = GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            // At the cap, wait for a connection to close before accepting:
            // new clients queue in the listen backlog meanwhile.
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = connections.clone().acquire_owned() => {
                    permit.expect("the connection semaphore is never closed")
                }
            };
            let stream = tokio::select! {
                biased;
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(err) => {
                        accept_failed(err).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            let connection = graceful.watch(http.serve_connection(
                TokioIo::new(stream),
                TowerToHyperService::new(router.clone()),
            ));
            tokio::spawn(async move {
                if let Err(err) = connection.await {
                    tracing::debug!(error = %err, "connection ended with an error");
                }
                drop(permit);
            });
        }
        drop(listener);
        tracing::info!("shutting down: no new requests; waiting for calls in flight");
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(shutdown_deadline) => {
                tracing::warn!(deadline = ?shutdown_deadline, "calls still running at the shutdown deadline; stopping them");
            }
        }
        cancel.cancel();
        state.audit.close().await;
        state.databases.close();
        Ok(())
    }
}

/// A failed accept: a connection that went away before it was accepted is
/// skipped; anything else (such as running out of file descriptors) is
/// logged and retried after a pause, as axum::serve did.
async fn accept_failed(err: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Serves one client over stdin/stdout, as `caller`; and `/metrics` on an
/// address of its own with `--metrics-bind`.
pub async fn serve_stdio(settings: Settings, caller: Option<Caller>) -> Result<()> {
    let state = connect(&settings).await?;
    if let Some(address) = settings.metrics.bind {
        metrics::install();
        let listener = listen(address, "--metrics-bind").await?;
        let bound = listener.local_addr()?;
        let router = http::metrics_router(&settings.metrics, state.clone());
        serve_metrics(listener, router, state.stopping.clone());
        tracing::info!(metrics_address = %bound, "serving /metrics at http://{bound}/metrics");
    }
    let handler = Handler::new(state.clone(), caller.map(Arc::new));
    let service = handler
        .serve(rmcp::transport::stdio())
        .await
        .context("the stdio client did not initialise")?;
    service.waiting().await.context("stdio session failed")?;
    state.stopping.cancel();
    state.audit.close().await;
    state.databases.close();
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
