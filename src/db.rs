//! Connecting to PostgreSQL.

use anyhow::{Context, Result, bail};
use tokio_postgres::{Client, Config, NoTls};

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

/// Opens one connection and drives it on a background task.
pub async fn connect(config: &Config) -> Result<Client> {
    let (client, connection) = config.connect(NoTls).await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {} (is it running? for a local one: scripts/dev-db start)",
            describe(config)
        )
    })?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("error: PostgreSQL connection closed: {err}");
        }
    });
    Ok(client)
}

/// How long one statement of a tool call may run, by default.
pub const DEFAULT_STATEMENT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Opens the read-only transaction a tool call runs in, with the caller's
/// identity and the statement timeout set for this transaction only
/// (`set_config(…, true)`), so nothing survives on a pooled connection.
pub async fn begin_as<'a>(
    client: &'a mut Client,
    caller: &crate::caller::CallerId,
    statement_timeout: std::time::Duration,
) -> Result<tokio_postgres::Transaction<'a>, tokio_postgres::Error> {
    begin_with(client, caller, statement_timeout, &[]).await
}

/// [`begin_as`] with further transaction-local settings, all set in the same
/// single statement.
pub async fn begin_with<'a>(
    client: &'a mut Client,
    caller: &crate::caller::CallerId,
    statement_timeout: std::time::Duration,
    settings: &[(&str, String)],
) -> Result<tokio_postgres::Transaction<'a>, tokio_postgres::Error> {
    let tx = client.build_transaction().read_only(true).start().await?;
    // hnsw.iterative_scan: an HNSW index scan goes on past ef_search (40)
    // candidates until the LIMIT is met, keeping the order exact; without
    // it a filtered or large LIMIT search would return fewer rows.
    let mut names = vec![
        "app.current_rls_user_id",
        "statement_timeout",
        "hnsw.iterative_scan",
    ];
    let mut values = vec![
        caller.to_string(),
        format!("{}ms", statement_timeout.as_millis()),
        "strict_order".to_owned(),
    ];
    for (name, value) in settings {
        names.push(name);
        values.push(value.clone());
    }
    let sql = (0..names.len())
        .map(|i| format!("set_config(${}, ${}, true)", 2 * i + 1, 2 * i + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let mut params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = Vec::new();
    for (name, value) in names.iter().zip(&values) {
        params.push(name);
        params.push(value);
    }
    tx.execute(&format!("SELECT {sql}"), &params).await?;
    Ok(tx)
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
/// security: a superuser, a BYPASSRLS role, or one that has the privileges of
/// the owner of a table with RLS. Also refuses tables whose RLS is off.
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
                      WHERE n.nspname = 'retail' AND c.relname = 'orders') \
             FROM pg_roles r WHERE r.rolname = current_user",
            &[],
        )
        .await
        .context("cannot inspect the role this server connects as")?;
    let (role, superuser, bypass): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
    let owned: Vec<String> = row.get(3);
    let unprotected: Vec<String> = row.get(4);
    let schema_present: i64 = row.get(5);
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
