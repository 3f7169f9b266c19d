//! Connecting to PostgreSQL.

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

/// The server's own statement that opens every call with the caller's
/// identity, the caller's id going as its bind parameter. It must be sent
/// exactly so: the database signs the identity only for this text (see
/// `migrations/V5__unforgeable_identity.sql`), so no SQL running inside a
/// call can claim another identity.
pub const OPEN_CALL: &str = "SELECT sqlmcp_identity.open_call($1)";

/// Sets `caller` as the identity of the transaction `client` is in: one
/// round trip. The server pipelines it instead ([`in_call_transaction`]).
pub async fn set_caller(
    client: &impl tokio_postgres::GenericClient,
    caller: &crate::caller::CallerId,
) -> Result<(), tokio_postgres::Error> {
    client.execute(OPEN_CALL, &[&caller.to_string()]).await?;
    Ok(())
}

/// The statement that sets a tool call's other settings,
/// transaction-locally (`set_config(…, true)`), so nothing survives on a
/// pooled connection:
/// - `statement_timeout`;
/// - `hnsw.iterative_scan`: an HNSW index scan goes on past `ef_search`
///   candidates until the LIMIT is met, in exact order; without it a
///   filtered search would return fewer rows than it should;
/// - `plan_cache_mode`: statements are prepared once per connection, and a
///   generic plan for the queries' optional filters (`$1 IS NULL OR …`)
///   would scan what a plan for the actual values skips;
/// - then `extra`.
///
/// The values come from this program and are literals, so the statement
/// goes as a simple query with `BEGIN`: one message, which can be pipelined
/// with what follows. They are quoted all the same.
pub fn call_settings(statement_timeout: std::time::Duration, extra: &[(&str, String)]) -> String {
    let fixed = [
        (
            "statement_timeout",
            format!("{}ms", statement_timeout.as_millis()),
        ),
        ("hnsw.iterative_scan", "strict_order".to_owned()),
        ("plan_cache_mode", "force_custom_plan".to_owned()),
    ];
    let calls: Vec<String> = fixed
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .chain(extra.iter().map(|(name, value)| (*name, value.as_str())))
        .map(|(name, value)| {
            format!(
                "set_config({}, {}, true)",
                quote_literal(name),
                quote_literal(value)
            )
        })
        .collect();
    format!("SELECT {}", calls.join(", "))
}

/// `BEGIN READ ONLY` and [`call_settings`] as one simple query.
pub fn begin_read_only(statement_timeout: std::time::Duration, extra: &[(&str, String)]) -> String {
    format!(
        "BEGIN READ ONLY; {}",
        call_settings(statement_timeout, extra)
    )
}

/// A string literal that reads the same whatever `standard_conforming_strings` is.
fn quote_literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Runs `work` inside a call's read-only transaction, opened for `caller`
/// with [`begin_read_only`] and [`OPEN_CALL`]. The three are pipelined:
/// `BEGIN` with the settings, then the identity, then the first message
/// `work` sends, in one round trip once `OPEN_CALL` is prepared on the
/// connection (`cache`). They reach PostgreSQL in that order because
/// `join!` polls in order and each sends its first message on its first
/// poll. If opening fails, the transaction is aborted and `work` fails
/// with it.
///
/// The caller ends the transaction (COMMIT or ROLLBACK).
pub async fn in_call_transaction<T>(
    client: &deadpool_postgres::ClientWrapper,
    cache: bool,
    caller: &crate::caller::CallerId,
    statement_timeout: std::time::Duration,
    extra: &[(&str, String)],
    work: impl std::future::Future<Output = T>,
) -> (Result<(), tokio_postgres::Error>, T) {
    let begin = begin_read_only(statement_timeout, extra);
    let id = caller.to_string();
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&id];
    if cache {
        let open = match client.prepare_cached(OPEN_CALL).await {
            Ok(open) => open,
            Err(err) => {
                // still open a transaction, so that `work` fails inside it
                // and the caller's ROLLBACK has one to end
                let _ = client.batch_execute("BEGIN READ ONLY").await;
                return (Err(err), work.await);
            }
        };
        let (began, opened, output) = tokio::join!(
            client.batch_execute(&begin),
            client.execute(&open, &params),
            work
        );
        (began.and(opened.map(drop)), output)
    } else {
        // behind a transaction-pooling PgBouncer, a statement must be
        // prepared inside the transaction that runs it
        let began = client.batch_execute(&begin).await;
        let open = match client.prepare(OPEN_CALL).await {
            Ok(open) => open,
            Err(err) => return (began.and(Err(err)), work.await),
        };
        let (opened, output) = tokio::join!(client.execute(&open, &params), work);
        (began.and(opened.map(drop)), output)
    }
}

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
/// arriving late can never hit the next caller's statement. A task that
/// does not end within [`CANCEL_GRACE`] is aborted.
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
    if let Err(err) = cancel.cancel_query(NoTls).await {
        tracing::warn!(error = %err, "could not ask PostgreSQL to cancel a call's statement");
    }
    if tokio::time::timeout(CANCEL_GRACE, &mut task).await.is_err() {
        task.abort();
    }
    Err(interrupted)
}

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

/// A connection as the generated query functions use it: statements are
/// prepared once per connection and cached when `cache` is on.
///
/// Turn the cache off behind a transaction-pooling PgBouncer older than
/// 1.21, which cannot carry a prepared statement from one transaction to
/// the next: each call then prepares its statement inside its transaction.
pub struct Session<'a> {
    client: &'a deadpool_postgres::ClientWrapper,
    cache: bool,
}

impl<'a> Session<'a> {
    pub fn new(client: &'a deadpool_postgres::ClientWrapper, cache: bool) -> Session<'a> {
        Session { client, cache }
    }
}

impl sqlmcp_codegen::client::GenericClient for Session<'_> {
    /// Tells the generated code to `prepare` each query before running it,
    /// rather than to pass its text (which tokio-postgres would prepare
    /// anew every time): `prepare` below then decides whether to cache.
    fn stmt_cache() -> bool {
        true
    }

    async fn prepare(
        &self,
        query: &str,
    ) -> Result<tokio_postgres::Statement, tokio_postgres::Error> {
        if self.cache {
            self.client.prepare_cached(query).await
        } else {
            self.client.prepare(query).await
        }
    }

    async fn execute<T>(
        &self,
        query: &T,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error>
    where
        T: ?Sized + tokio_postgres::ToStatement + Sync + Send,
    {
        self.client.execute(query, params).await
    }

    async fn query_one<T>(
        &self,
        statement: &T,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<tokio_postgres::Row, tokio_postgres::Error>
    where
        T: ?Sized + tokio_postgres::ToStatement + Sync + Send,
    {
        self.client.query_one(statement, params).await
    }

    async fn query_opt<T>(
        &self,
        statement: &T,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Option<tokio_postgres::Row>, tokio_postgres::Error>
    where
        T: ?Sized + tokio_postgres::ToStatement + Sync + Send,
    {
        self.client.query_opt(statement, params).await
    }

    async fn query<T>(
        &self,
        query: &T,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error>
    where
        T: ?Sized + tokio_postgres::ToStatement + Sync + Send,
    {
        self.client.query(query, params).await
    }

    async fn query_raw<T, I>(
        &self,
        statement: &T,
        params: I,
    ) -> Result<tokio_postgres::RowStream, tokio_postgres::Error>
    where
        T: ?Sized + tokio_postgres::ToStatement + Sync + Send,
        I: IntoIterator + Sync + Send,
        I::IntoIter: ExactSizeIterator,
        I::Item: tokio_postgres::types::BorrowToSql,
    {
        self.client.query_raw(statement, params).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_settings_are_transaction_local_quoted_literals() {
        let sql = call_settings(
            std::time::Duration::from_millis(1500),
            &[("search_path", "retail, public".to_owned())],
        );
        assert_eq!(
            sql,
            "SELECT set_config(E'statement_timeout', E'1500ms', true), \
             set_config(E'hnsw.iterative_scan', E'strict_order', true), \
             set_config(E'plan_cache_mode', E'force_custom_plan', true), \
             set_config(E'search_path', E'retail, public', true)"
        );
    }

    #[test]
    fn literals_cannot_be_broken_out_of() {
        assert_eq!(quote_literal("it's"), "E'it''s'");
        assert_eq!(quote_literal("a\\'; DROP"), "E'a\\\\''; DROP'");
    }
}
