//! Connecting to PostgreSQL.

use anyhow::{Context, Result};
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
    let tx = client.build_transaction().read_only(true).start().await?;
    tx.execute(
        "SELECT set_config('app.current_rls_user_id', $1, true), \
                set_config('statement_timeout', $2, true)",
        &[
            &caller.to_string(),
            &format!("{}ms", statement_timeout.as_millis()),
        ],
    )
    .await?;
    Ok(tx)
}
