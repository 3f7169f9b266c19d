//! Schema migrations: `migrations/V<n>__<name>.sql`, embedded in the binary.
//!
//! refinery applies each pending migration in its own transaction, so a
//! failing migration leaves nothing behind, and it refuses to run when the
//! database's applied migrations differ from (or are newer than) the embedded
//! ones. This module adds what an operator needs on top: a lock against
//! concurrent runs, a list of what was applied, and errors that point at the
//! file, the line and PostgreSQL's own message.

use anyhow::{Context, Result, anyhow};
use refinery::Migration;
use refinery::error::Kind;
use tokio_postgres::Client;
use tokio_postgres::error::ErrorPosition;

refinery::embed_migrations!("migrations");

/// Arbitrary key of the session advisory lock held while migrating.
const MIGRATION_LOCK_KEY: i64 = 0x5351_4c4d_4350_0001;

/// The role the server connects as; created by `V2__application_role.sql`.
pub const APP_ROLE: &str = "store_manager";

/// The role that appends to the audit log; created by `V7__audit_log.sql`.
pub const AUDIT_ROLE: &str = "sqlmcp_audit";

/// The migrations compiled into this binary, in version order.
pub fn embedded() -> Vec<Migration> {
    let mut all = migrations::runner().get_migrations().clone();
    all.sort_by_key(Migration::version);
    all
}

/// Applies pending migrations and returns the names of those applied
/// (empty when the database was already current).
pub async fn run(client: &mut Client) -> Result<Vec<String>> {
    run_migrations(client, &embedded()).await
}

/// Applies pending ones of `migrations` (in version order), holding a lock
/// so that concurrent runs against one database take turns.
pub async fn run_migrations(client: &mut Client, migrations: &[Migration]) -> Result<Vec<String>> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK_KEY])
        .await
        .context("cannot take the migration lock")?;
    let outcome = apply(client, migrations).await;
    // The lock is also released when the connection closes; this is for
    // callers that keep the connection.
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK_KEY])
        .await;
    let applied = outcome?;
    unlocked.context("cannot release the migration lock")?;
    Ok(applied)
}

async fn apply(client: &mut Client, migrations: &[Migration]) -> Result<Vec<String>> {
    let runner = refinery::Runner::new(migrations);
    let already_applied: Vec<i32> = match runner.get_applied_migrations_async(client).await {
        Ok(applied) => applied.iter().map(Migration::version).collect(),
        // No history table yet: a fresh database.
        Err(_) => Vec::new(),
    };
    let pending: Vec<Migration> = migrations
        .iter()
        .filter(|m| !already_applied.contains(&m.version()))
        .cloned()
        .collect();

    match runner.run_async(client).await {
        Ok(report) => Ok(report
            .applied_migrations()
            .iter()
            .map(ToString::to_string)
            .collect()),
        Err(err) => Err(explain(&err, &pending)),
    }
}

/// Turns a refinery error into a message naming the migration, the line and
/// PostgreSQL's error.
fn explain(err: &refinery::Error, pending: &[Migration]) -> anyhow::Error {
    match err.kind() {
        Kind::DivergentVersion(applied, embedded) => anyhow!(
            "the database's applied migration {applied} differs from this binary's {embedded}; \
             refusing to migrate a database whose history diverges from migrations/ \
             (an applied migration file was edited, or the database belongs to another build)"
        ),
        Kind::MissingVersion(applied) => anyhow!(
            "the database has migration {applied} applied, which this binary does not know; \
             it was migrated by a newer sqlmcp, so use that version (refusing to migrate)"
        ),
        Kind::Connection(context, source) => {
            // Only a failure while applying migrations carries a report; the
            // others happen before any migration runs.
            let Some(report) = err.report() else {
                return anyhow!("cannot migrate: {context}: {source}");
            };
            let done = report.applied_migrations().len();
            let Some(failed) = pending.get(done) else {
                return anyhow!("migration failed: {err}");
            };
            let mut message = format!("migration {failed} failed and was rolled back");
            if done > 0 {
                message.push_str(&format!(
                    " ({done} earlier migration(s) of this run were applied)"
                ));
            }
            match source.downcast_ref::<tokio_postgres::Error>() {
                Some(pg) => message.push_str(&describe_pg_error(pg, failed)),
                None => message.push_str(&format!(": {source}")),
            }
            anyhow!(message)
        }
        _ => anyhow!("migration failed: {err}"),
    }
}

fn describe_pg_error(err: &tokio_postgres::Error, migration: &Migration) -> String {
    let Some(db) = err.as_db_error() else {
        return format!(": {err}");
    };
    let file = format!("migrations/{migration}.sql");
    let mut out = String::new();
    match (db.position(), migration.sql()) {
        (Some(ErrorPosition::Original(position)), Some(sql)) => {
            let (line, text) = line_at(sql, *position as usize);
            out.push_str(&format!("\n  at {file} line {line}: {}", text.trim()));
        }
        (Some(ErrorPosition::Internal { query, .. }), _) => {
            out.push_str(&format!("\n  in {file}, in the statement: {query}"));
        }
        _ => out.push_str(&format!("\n  in {file}")),
    }
    out.push_str(&format!(
        "\n  PostgreSQL: {}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    ));
    if let Some(detail) = db.detail() {
        out.push_str(&format!("\n  detail: {detail}"));
    }
    if let Some(hint) = db.hint() {
        out.push_str(&format!("\n  hint: {hint}"));
    }
    if let Some(context) = db.where_() {
        out.push_str(&format!("\n  context: {context}"));
    }
    out
}

/// The 1-based line number and text of the 1-based character `position`.
fn line_at(sql: &str, position: usize) -> (usize, &str) {
    let byte = sql
        .char_indices()
        .nth(position.saturating_sub(1))
        .map_or(sql.len(), |(i, _)| i);
    let line = sql[..byte].matches('\n').count() + 1;
    let start = sql[..byte].rfind('\n').map_or(0, |i| i + 1);
    let end = sql[byte..].find('\n').map_or(sql.len(), |i| byte + i);
    (line, &sql[start..end])
}

/// How the database's migration history compares with this binary's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Current,
    /// Embedded migrations not applied yet.
    Pending(Vec<String>),
    /// Applied migrations this binary does not know (a newer sqlmcp migrated it).
    Newer(Vec<String>),
    /// An applied migration differs from the embedded one of the same version.
    Diverged(String),
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Current => write!(f, "migrations are current"),
            Status::Pending(names) => write!(
                f,
                "migrations not applied yet: {}; run `sqlmcp migrate`",
                names.join(", ")
            ),
            Status::Newer(names) => write!(
                f,
                "the database has migrations this binary does not know ({}); use a newer sqlmcp",
                names.join(", ")
            ),
            Status::Diverged(name) => {
                write!(f, "applied migration {name} differs from this binary's")
            }
        }
    }
}

/// Compares the applied migrations with the embedded ones (read-only).
pub async fn status(client: &impl tokio_postgres::GenericClient) -> Result<Status> {
    let rows = client
        .query(
            "SELECT version, name, checksum FROM refinery_schema_history ORDER BY version",
            &[],
        )
        .await
        .map_err(|err| match err.code() {
            Some(code) if *code == tokio_postgres::error::SqlState::UNDEFINED_TABLE => {
                anyhow!("the database has never been migrated; run `sqlmcp migrate`")
            }
            _ => anyhow!("cannot read the migration history: {err}"),
        })?;
    let embedded = embedded();
    let mut newer = Vec::new();
    for row in &rows {
        let (version, name, checksum): (i32, String, String) = (row.get(0), row.get(1), row.get(2));
        match embedded.iter().find(|m| m.version() == version) {
            None => newer.push(format!("V{version}__{name}")),
            Some(m) if m.name() != name || m.checksum().to_string() != checksum => {
                return Ok(Status::Diverged(m.to_string()));
            }
            Some(_) => {}
        }
    }
    if !newer.is_empty() {
        return Ok(Status::Newer(newer));
    }
    let applied: Vec<i32> = rows.iter().map(|r| r.get(0)).collect();
    let pending: Vec<String> = embedded
        .iter()
        .filter(|m| !applied.contains(&m.version()))
        .map(ToString::to_string)
        .collect();
    Ok(if pending.is_empty() {
        Status::Current
    } else {
        Status::Pending(pending)
    })
}

/// Sets the password of `role` (the application role or the audit log's).
pub async fn set_password(client: &Client, role: &str, password: &str) -> Result<()> {
    // DDL takes no bind parameters: let the server quote the literal.
    let row = client
        .query_one(
            "SELECT format('ALTER ROLE %I PASSWORD %L', $1::text, $2::text)",
            &[&role, &password],
        )
        .await?;
    let statement: String = row.get(0);
    client
        .batch_execute(&statement)
        .await
        .with_context(|| format!("cannot set the password of role {role}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_at_finds_the_line_of_a_character_position() {
        let sql = "CREATE TABLE a ();\nSELEC 1;\n";
        assert_eq!(line_at(sql, 20), (2, "SELEC 1;"));
        assert_eq!(line_at(sql, 1), (1, "CREATE TABLE a ();"));
        // a position past the end points at the last (empty) line
        assert_eq!(line_at(sql, 500).0, 3);
    }

    #[test]
    fn line_at_counts_characters_not_bytes() {
        let sql = "-- é\nbad";
        assert_eq!(line_at(sql, 6), (2, "bad"));
    }

    #[test]
    fn embedded_migrations_are_in_version_order_without_gaps() {
        let versions: Vec<i32> = embedded().iter().map(Migration::version).collect();
        let expected: Vec<i32> = (1..=versions.len() as i32).collect();
        assert_eq!(versions, expected);
    }
}
