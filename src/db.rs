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
