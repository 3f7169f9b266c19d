//! Connecting to PostgreSQL, and the transaction every call runs in
//! ([`Call`]).

mod call;
mod fault;
pub mod replicas;

pub use call::{
    Call, Last, OPEN_CALL, Settle, Settled, Visible, begin_read_only, call_settings, set_caller,
};
pub use fault::{Backoff, FaultKind, Transient, transient, transient_connect};
pub use replicas::{Databases, Target};

use anyhow::{Context, Result, bail};
use tokio_postgres::{Config, NoTls};

/// Parses a `postgres://` URL or a `key=value` connection string.
///
/// Used as a clap value parser, so the raw string (which may hold a password)
/// is not kept around; `Config`'s `Debug` output redacts the password.
pub fn parse_database_url(url: &str) -> Result<Config, String> {
    url.parse::<Config>()
        .map_err(|err| format!("not a valid PostgreSQL connection string: {err}"))
}

/// A short, password-free description of where a `Config` points.
pub fn describe(config: &Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|host| match host {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("(default user)");
    let dbname = config.get_dbname().unwrap_or(user);
    format!("{user}@{host}:{port}/{dbname}")
}

/// Opens one connection and drives it on a background task. The wrapper
/// caches prepared statements, as the pool's connections do.
pub async fn connect(config: &Config) -> Result<deadpool_postgres::ClientWrapper> {
    let (client, connection) = config.connect(NoTls).await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {} (is it running? for a local one: scripts/dev-db start)",
            describe(config)
        )
    })?;
    let task = tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("error: PostgreSQL connection closed: {err}");
        }
    });
    Ok(deadpool_postgres::ClientWrapper::new(client, task))
}

/// How long one statement of a tool call may run, by default.
pub const DEFAULT_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// How long an interrupted call's task gets to end after PostgreSQL was
/// asked to cancel its statement, before its connection is closed instead.
pub const CANCEL_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Why [`run_within`] stopped a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// The call's deadline passed.
    Deadline,
    /// The caller went away.
    CallerGone,
    /// The call's task panicked.
    Failed,
}

/// Waits for `task`, the database part of one call running on a task of
/// its own, until it ends, `limit` passes or `gone` fires. Then PostgreSQL
/// is sent a cancel request for the connection's backend: the statement
/// stops whatever `statement_timeout` says, so no SQL can extend a call.
/// The task's result, and with it the connection it holds, is then
/// dropped: the connection is closed rather than pooled, so that a cancel
/// arriving late can never hit the next caller's statement. While the task
/// runs on, the cancel request is sent again every [`CANCEL_AGAIN`]: one
/// that reached the backend before the statement did (a call cancelled
/// just as it started) is ignored by PostgreSQL. A task that does not end
/// within [`CANCEL_GRACE`] is aborted.
pub async fn run_within<T>(
    cancel: tokio_postgres::CancelToken,
    limit: std::time::Duration,
    gone: &tokio_util::sync::CancellationToken,
    mut task: tokio::task::JoinHandle<T>,
) -> Result<T, Interrupted> {
    let interrupted = tokio::select! {
        joined = &mut task => return joined.map_err(|_| Interrupted::Failed),
        () = tokio::time::sleep(limit) => Interrupted::Deadline,
        () = gone.cancelled() => Interrupted::CallerGone,
    };
    let cancelling = async {
        loop {
            if let Err(err) = cancel.cancel_query(NoTls).await {
                tracing::warn!(error = %err, "could not ask PostgreSQL to cancel a call's statement");
            }
            tokio::select! {
                _ = &mut task => return,
                () = tokio::time::sleep(CANCEL_AGAIN) => {}
            }
        }
    };
    if tokio::time::timeout(CANCEL_GRACE, cancelling)
        .await
        .is_err()
    {
        task.abort();
    }
    Err(interrupted)
}

/// How often [`run_within`] asks again while an interrupted call runs on.
pub const CANCEL_AGAIN: std::time::Duration = std::time::Duration::from_millis(250);

/// A connection pool whose callers wait at most `wait` for a connection.
pub fn pool(
    config: &Config,
    size: usize,
    wait: std::time::Duration,
) -> Result<deadpool_postgres::Pool> {
    let manager = deadpool_postgres::Manager::from_config(
        config.clone(),
        NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    deadpool_postgres::Pool::builder(manager)
        .max_size(size)
        .wait_timeout(Some(wait))
        .create_timeout(Some(std::time::Duration::from_secs(10)))
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()
        .context("cannot build the connection pool")
}

/// Refuses a connection whose role would not be held back by row-level
/// security: a superuser, a BYPASSRLS role, one that has the privileges of
/// the owner of a table with RLS, or one that can read the identity key or
/// sign identities. Also refuses tables whose RLS is off.
pub async fn check_application_role(client: &impl tokio_postgres::GenericClient) -> Result<()> {
    let row = client
        .query_one(
            "SELECT current_user::text, r.rolsuper, r.rolbypassrls, \
                    coalesce((SELECT array_agg(n.nspname || '.' || c.relname ORDER BY c.relname) \
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname = 'retail' AND c.relrowsecurity \
                        AND pg_has_role(current_user, c.relowner, 'USAGE')), '{}'), \
                    coalesce((SELECT array_agg(n.nspname || '.' || c.relname ORDER BY c.relname) \
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname = 'retail' \
                        AND c.relname IN ('customers', 'orders', 'order_items', 'inventory') \
                        AND NOT (c.relrowsecurity AND c.relforcerowsecurity)), '{}'), \
                    (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname = 'retail' AND c.relname = 'orders'), \
                    coalesce((SELECT bool_or(has_schema_privilege(current_user, n.oid, 'USAGE') \
                                          AND has_table_privilege(current_user, c.oid, 'SELECT')) \
                       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                      WHERE n.nspname = 'sqlmcp_identity' AND c.relname = 'key'), false) \
                    OR coalesce((SELECT bool_or(has_schema_privilege(current_user, n.oid, 'USAGE') \
                                             AND has_function_privilege(current_user, p.oid, 'EXECUTE')) \
                       FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
                      WHERE n.nspname = 'sqlmcp_identity' AND p.proname = 'mac'), false) \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .context("cannot inspect the role this server connects as")?;
    let (role, superuser, bypass): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let owned: Vec<String> = row.get(3);
    let unprotected: Vec<String> = row.get(4);
    let schema_present: i64 = row.get(5);
    let can_sign: bool = row.get(6);
    let fix = "connect as the application role store_manager (for the local database: scripts/dev-db url app)";
    if superuser {
        bail!(
            "refusing to serve: role {role} is a superuser, so row-level security would not apply; {fix}"
        );
    }
    if bypass {
        bail!(
            "refusing to serve: role {role} has BYPASSRLS, so row-level security would not apply; {fix}"
        );
    }
    if !owned.is_empty() {
        bail!(
            "refusing to serve: role {role} has the privileges of the owner of {}, which row-level security \
             does not restrict; {fix}",
            owned.join(", ")
        );
    }
    if can_sign {
        bail!(
            "refusing to serve: role {role} can read the identity key or sign identities \
             (sqlmcp_identity.key, sqlmcp_identity.mac), so its SQL could claim any caller; \
             run `sqlmcp migrate`, or REVOKE those privileges from it; {fix}"
        );
    }
    if schema_present == 0 {
        bail!(
            "refusing to serve: the retail schema is missing or not visible to role {role}; run `sqlmcp migrate`"
        );
    }
    if !unprotected.is_empty() {
        bail!(
            "refusing to serve: row-level security is not enabled and forced on {}; run `sqlmcp migrate` \
             (or ALTER TABLE … ENABLE/FORCE ROW LEVEL SECURITY)",
            unprotected.join(", ")
        );
    }
    Ok(())
}
