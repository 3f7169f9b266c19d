//! The audit log's writer, a task of its own: it takes entries from the
//! queue in batches (every `batch_size` entries, or `flush_every`), writes
//! each batch as JSON lines, and inserts it into `sqlmcp_audit.calls` in
//! one statement per few MiB, through a connection of its own. No statement
//! is prepared by name, so the connection may go through a PgBouncer in
//! transaction pooling mode, of any version.
//!
//! When the table is unreachable (no connection within a timeout, the
//! connection lost, an insert failing or timing out), batches go to the
//! spool and the table is tried again after a growing pause (up to
//! [`MAX_RETRY`]). Once it answers, the spool is replayed, a few segments
//! per batch, so new entries keep flowing meanwhile. An insert cut short
//! may have committed before its answer was lost; the entries then come
//! back from the spool and `ON CONFLICT DO NOTHING` skips them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_postgres::types::Type;
use tokio_postgres::{Config, NoTls};
use tokio_util::sync::CancellationToken;

use super::json_lines::JsonLines;
use super::spool::Spool;
use super::{Entry, Settings};

/// The columns of `sqlmcp_audit.calls` an entry fills, with their types:
/// the fields of [`Entry`], in its order.
pub(super) const COLUMNS: [(&str, &str); 16] = [
    ("id", "uuid"),
    ("at", "timestamptz"),
    ("request_id", "text"),
    ("caller_id", "uuid"),
    ("auth_method", "text"),
    ("issuer", "text"),
    ("subject", "text"),
    ("stores", "integer[]"),
    ("tool", "text"),
    ("arguments", "jsonb"),
    ("outcome", "text"),
    ("error_class", "text"),
    ("row_count", "bigint"),
    ("bytes", "bigint"),
    ("duration_ms", "double precision"),
    ("cached", "boolean"),
];

/// How long connecting, or one insert, may take before the table counts
/// as unreachable.
const TABLE_TIMEOUT: Duration = Duration::from_secs(5);

/// The first pause before an unreachable table is tried again; it doubles
/// up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(5);

/// Bytes of entries one INSERT carries at most.
const INSERT_BYTES: usize = 4 << 20;

/// Spool segments (up to 1 MiB each) replayed per batch.
const REPLAY_SEGMENTS: usize = 4;

/// How long calls still running at shutdown get to end and be recorded.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Counts entries by what became of them: `written` (to the table),
/// `spooled`, `replayed` (from the spool to the table) or `dropped`.
pub(super) fn count(outcome: &'static str, entries: usize) {
    if entries > 0 {
        metrics::counter!("sqlmcp_audit_entries_total", "outcome" => outcome)
            .increment(entries as u64);
    }
}

/// One INSERT of a batch: the entries are one JSON array, one parameter.
fn insert_statement() -> String {
    let names: Vec<&str> = COLUMNS.iter().map(|(name, _)| *name).collect();
    let typed: Vec<String> = COLUMNS.iter().map(|(n, t)| format!("{n} {t}")).collect();
    format!(
        "INSERT INTO sqlmcp_audit.calls ({names}) SELECT {names} \
         FROM jsonb_to_recordset($1::text::jsonb) AS entry({typed}) ON CONFLICT DO NOTHING",
        names = names.join(", "),
        typed = typed.join(", ")
    )
}

pub(super) struct Writer {
    batch_size: usize,
    flush_every: Duration,
    log: Option<Arc<Mutex<JsonLines>>>,
    /// Whether the last write of JSON lines failed (logged once).
    log_failing: bool,
    table: Option<Table>,
}

impl Writer {
    /// Opens every destination; fails, with what to do, when one cannot be
    /// used.
    pub(super) async fn open(
        settings: &Settings,
        app_role: Option<&str>,
        storable: Arc<AtomicBool>,
    ) -> Result<Writer> {
        let log = match &settings.log {
            Some(target) => Some(Arc::new(Mutex::new(JsonLines::open(target)?))),
            None => None,
        };
        let table = match &settings.table {
            Some(table) => {
                let connection = Connection::open(&table.database).await.map_err(|err| {
                    anyhow::anyhow!(
                        "cannot connect to the audit log's database at {}: {err} (for a local one: \
                         scripts/dev-db url audit)",
                        crate::db::describe(&table.database)
                    )
                })?;
                check_roles(&connection.client, app_role).await?;
                let (dir, max_bytes) = (table.spool_dir.clone(), table.spool_max_bytes);
                let spool = tokio::task::spawn_blocking(move || Spool::open(&dir, max_bytes))
                    .await?
                    .with_context(|| {
                        format!("cannot use --audit-spool-dir {}", table.spool_dir.display())
                    })?;
                Some(Table {
                    config: table.database.clone(),
                    connection: Some(connection),
                    retry_at: Instant::now(),
                    retry_after: FIRST_RETRY,
                    spool: Arc::new(Mutex::new(spool)),
                    spool_failing: false,
                    storable,
                })
            }
            None => None,
        };
        Ok(Writer {
            batch_size: settings.batch_size,
            flush_every: settings.flush_every,
            log,
            log_failing: false,
            table,
        })
    }

    /// Writes batches until `stop`; then writes what is queued, giving
    /// calls still running [`DRAIN_GRACE`] to end.
    pub(super) async fn run(mut self, mut entries: mpsc::Receiver<Entry>, stop: CancellationToken) {
        let mut batch = Vec::with_capacity(self.batch_size);
        let mut tick = tokio::time::interval(self.flush_every);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let limit = self.batch_size - batch.len();
            tokio::select! {
                biased;
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
                received = entries.recv_many(&mut batch, limit) => {
                    if received == 0 {
                        break;
                    }
                    if batch.len() < self.batch_size {
                        continue;
                    }
                }
            }
            self.flush(std::mem::take(&mut batch)).await;
        }
        // Closing lets the calls that hold a place still send their entry.
        entries.close();
        let deadline = Instant::now() + DRAIN_GRACE;
        loop {
            let limit = self.batch_size - batch.len();
            match tokio::time::timeout_at(deadline, entries.recv_many(&mut batch, limit)).await {
                Ok(0) => break,
                Ok(_) if batch.len() >= self.batch_size => {
                    self.flush(std::mem::take(&mut batch)).await
                }
                Ok(_) => {}
                Err(_) => {
                    tracing::warn!("calls still running at shutdown are not in the audit log");
                    break;
                }
            }
        }
        if let Some(table) = &mut self.table {
            // one last try, whatever the pause
            table.retry_at = Instant::now();
        }
        self.flush(batch).await;
    }

    /// Writes one batch (possibly empty: then only the spool is replayed
    /// or the table tried again, when due).
    async fn flush(&mut self, batch: Vec<Entry>) {
        let lines: Arc<[String]> = batch
            .iter()
            .map(|entry| serde_json::to_string(entry).expect("entries serialise"))
            .collect();
        if let Some(log) = &self.log
            && !lines.is_empty()
        {
            let (log, written) = (log.clone(), lines.clone());
            let wrote = tokio::task::spawn_blocking(move || {
                log.lock().expect("unpoisoned").write(&written)
            })
            .await
            .map_err(std::io::Error::other)
            .and_then(|wrote| wrote);
            match wrote {
                Ok(()) => self.log_failing = false,
                Err(err) if !self.log_failing => {
                    self.log_failing = true;
                    tracing::error!(error = %err, "cannot write the audit log's JSON lines");
                }
                Err(_) => {}
            }
        }
        if let Some(table) = &mut self.table {
            table.store(lines).await;
        }
    }
}

/// The table, and the spool for when it is unreachable.
struct Table {
    config: Config,
    /// `None` while the table is unreachable.
    connection: Option<Connection>,
    /// When to try an unreachable table again, and the pause after that.
    retry_at: Instant,
    retry_after: Duration,
    spool: Arc<Mutex<Spool>>,
    /// Whether the last append to the spool left entries out.
    spool_failing: bool,
    /// Shared with the [`super::Auditor`]: whether entries can be stored
    /// now, in the table or the spool.
    storable: Arc<AtomicBool>,
}

impl Table {
    /// Stores `lines` in the table or the spool, and tells whether the next
    /// entries can be stored.
    async fn store(&mut self, lines: Arc<[String]>) {
        if self.connection.is_none() && Instant::now() >= self.retry_at {
            match Connection::open(&self.config).await {
                Ok(connection) => {
                    tracing::info!("the audit table is reachable again");
                    self.connection = Some(connection);
                    self.retry_after = FIRST_RETRY;
                }
                Err(outage) => self.unreachable(outage),
            }
        }
        let mut in_table = 0;
        if let Some(connection) = &self.connection {
            let stored = async {
                connection.replay(&self.spool).await?;
                connection.insert(&lines, &mut in_table).await
            };
            match stored.await {
                Ok(written) => count("written", written),
                Err(outage) => self.unreachable(outage),
            }
        }
        let rest = &lines[in_table..];
        if !rest.is_empty() {
            self.spool_rest(rest.to_vec()).await;
        }
        let spool_full = self.spool.lock().expect("unpoisoned").is_full();
        metrics::gauge!("sqlmcp_audit_table_up")
            .set(f64::from(u8::from(self.connection.is_some())));
        metrics::gauge!("sqlmcp_audit_spool_bytes")
            .set(self.spool.lock().expect("unpoisoned").bytes() as f64);
        let storable = self.connection.is_some() || !(self.spool_failing || spool_full);
        self.storable.store(storable, Ordering::Relaxed);
    }

    /// Appends entries the table did not take to the spool; those that do
    /// not fit are dropped.
    async fn spool_rest(&mut self, rest: Vec<String>) {
        let spool = self.spool.clone();
        let total = rest.len();
        let appended =
            tokio::task::spawn_blocking(move || spool.lock().expect("unpoisoned").append(&rest))
                .await
                .unwrap_or_else(|err| super::spool::Appended {
                    kept: 0,
                    failure: Some(err.to_string()),
                });
        self.spool_failing = appended.failure.is_some();
        if self.spool_failing {
            // before the drops are counted: whoever sees them sees this too
            self.storable.store(false, Ordering::Relaxed);
        }
        count("spooled", appended.kept);
        count("dropped", total - appended.kept);
        if let Some(failure) = appended.failure {
            tracing::error!(
                dropped = total - appended.kept,
                reason = %failure,
                "audit entries lost: the audit table is unreachable and the spool cannot take them"
            );
        }
    }

    fn unreachable(&mut self, outage: Outage) {
        if self.connection.take().is_some() {
            tracing::warn!(error = %outage, "the audit table is unreachable; entries go to the spool until it returns");
        } else {
            tracing::debug!(error = %outage, "the audit table is still unreachable");
        }
        self.retry_at = Instant::now() + self.retry_after;
        self.retry_after = (self.retry_after * 2).min(MAX_RETRY);
    }
}

/// Why the table could not be written.
#[derive(Debug, thiserror::Error)]
enum Outage {
    #[error("{}", .0.as_db_error().map_or_else(|| .0.to_string(), |db| db.message().to_owned()))]
    Database(#[from] tokio_postgres::Error),
    #[error("no answer within {TABLE_TIMEOUT:?}")]
    Timeout,
}

/// The connection to the table, with the text of its INSERT.
struct Connection {
    client: tokio_postgres::Client,
    insert: String,
}

impl Connection {
    async fn open(config: &Config) -> Result<Connection, Outage> {
        let (client, connection) = tokio::time::timeout(TABLE_TIMEOUT, config.connect(NoTls))
            .await
            .map_err(|_| Outage::Timeout)??;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(error = %err, "the audit log's database connection closed");
            }
        });
        Ok(Connection {
            client,
            insert: insert_statement(),
        })
    }

    /// Inserts `lines`, a few MiB per statement; `in_table` counts the lines
    /// known to be in the table (inserted now or before). Returns the rows
    /// inserted. An entry the table refuses (a data error: it would be
    /// refused forever) is dropped alone; any other error is an outage.
    async fn insert(&self, lines: &[String], in_table: &mut usize) -> Result<usize, Outage> {
        let mut inserted = 0;
        for chunk in chunks(lines, INSERT_BYTES) {
            inserted += match self.execute(chunk).await {
                Err(Outage::Database(err)) if is_data_error(&err) => self.one_by_one(chunk).await?,
                other => other?,
            };
            *in_table += chunk.len();
        }
        Ok(inserted)
    }

    /// One INSERT, as an unnamed statement: parsed, bound and run in one
    /// round trip.
    async fn execute(&self, lines: &[String]) -> Result<usize, Outage> {
        let array = format!("[{}]", lines.join(","));
        let params: [(&(dyn tokio_postgres::types::ToSql + Sync), Type); 1] =
            [(&array, Type::TEXT)];
        let insert = self.client.execute_typed(&self.insert, &params);
        let inserted = tokio::time::timeout(TABLE_TIMEOUT, insert)
            .await
            .map_err(|_| Outage::Timeout)??;
        Ok(inserted as usize)
    }

    async fn one_by_one(&self, lines: &[String]) -> Result<usize, Outage> {
        let mut inserted = 0;
        for line in lines {
            match self.execute(std::slice::from_ref(line)).await {
                Ok(rows) => inserted += rows,
                Err(Outage::Database(err)) if is_data_error(&err) => {
                    count("dropped", 1);
                    tracing::error!(error = %err, "the audit table refused an entry; it is dropped");
                }
                Err(outage) => return Err(outage),
            }
        }
        Ok(inserted)
    }

    /// Moves up to [`REPLAY_SEGMENTS`] spool segments into the table.
    async fn replay(&self, spool: &Arc<Mutex<Spool>>) -> Result<(), Outage> {
        for _ in 0..REPLAY_SEGMENTS {
            if spool.lock().expect("unpoisoned").bytes() == 0 {
                return Ok(());
            }
            let reading = spool.clone();
            let oldest =
                tokio::task::spawn_blocking(move || reading.lock().expect("unpoisoned").oldest())
                    .await
                    .map_err(std::io::Error::other)
                    .and_then(|read| read);
            let segment = match oldest {
                Ok(Some(segment)) => segment,
                Ok(None) => return Ok(()),
                Err(err) => {
                    tracing::error!(error = %err, "cannot read the audit spool");
                    return Ok(());
                }
            };
            let replayed = self.insert(&segment.lines, &mut 0).await?;
            count("replayed", replayed);
            if segment.torn > 0 {
                count("dropped", segment.torn);
                tracing::error!(
                    lines = segment.torn,
                    "audit entries lost: lines of the spool were cut short"
                );
            }
            let removing = spool.clone();
            let removed = tokio::task::spawn_blocking(move || {
                removing.lock().expect("unpoisoned").remove(&segment)
            })
            .await;
            if let Ok(Err(err)) = removed {
                // replayed again next time: the table skips what it holds
                tracing::error!(error = %err, "cannot delete a replayed segment of the audit spool");
                return Ok(());
            }
            tracing::info!(entries = replayed, "replayed audit entries from the spool");
        }
        Ok(())
    }
}

/// Consecutive runs of `lines` of about `bytes` each (a longer line alone).
fn chunks(lines: &[String], bytes: usize) -> impl Iterator<Item = &[String]> {
    let mut rest = lines;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut size = rest[0].len();
        let mut end = 1;
        while end < rest.len() && size + rest[end].len() < bytes {
            size += rest[end].len();
            end += 1;
        }
        let (chunk, after) = rest.split_at(end);
        rest = after;
        Some(chunk)
    })
}

/// A data exception (class 22) or an integrity violation (class 23): the
/// same entries would be refused again.
fn is_data_error(err: &tokio_postgres::Error) -> bool {
    err.code()
        .is_some_and(|code| matches!(&code.code()[..2], "22" | "23"))
}

/// Refuses an audit connection that could do more than insert, or a table
/// the application role `app_role` could reach.
async fn check_roles(client: &tokio_postgres::Client, app_role: Option<&str>) -> Result<()> {
    // by oid: a role without USAGE on the schema could not even name the
    // table; unnamed, like the inserts, for a PgBouncer in between
    let app_role = app_role.unwrap_or("");
    let row = client
        .query_typed_opt(
            "SELECT current_user::text, \
                    has_schema_privilege(n.oid, 'USAGE') AND has_table_privilege(c.oid, 'INSERT'), \
                    has_table_privilege(c.oid, 'SELECT, UPDATE, DELETE, TRUNCATE'), \
                    to_regrole($1::text) IS NOT NULL \
                      AND (has_table_privilege($1::text::name, c.oid, 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE') \
                           OR pg_has_role($1::text::name, current_user, 'MEMBER')), \
                    pg_is_in_recovery() \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'sqlmcp_audit' AND c.relname = 'calls'",
            &[(&app_role, Type::TEXT)],
        )
        .await
        .map_err(|err| anyhow::anyhow!("cannot inspect the audit log's role: {}", Outage::from(err)))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the audit table sqlmcp_audit.calls does not exist in that database: run `sqlmcp migrate`"
            )
        })?;
    let (role, can_insert, can_more, app_reaches, standby): (String, bool, bool, bool, bool) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let fix = "connect --audit-database-url as the insert-only role sqlmcp_audit \
               (for the local database: scripts/dev-db url audit)";
    if standby {
        bail!(
            "the audit log's database is a hot standby, which is read-only: no entry could be written there; \
             point --audit-database-url at the primary (for the local database: scripts/dev-db url audit)"
        );
    }
    if !can_insert {
        bail!("role {role} cannot insert into sqlmcp_audit.calls; {fix}");
    }
    if can_more {
        bail!(
            "refusing to audit as role {role}: it may read or change sqlmcp_audit.calls, not only append to it; {fix}"
        );
    }
    if app_reaches {
        bail!(
            "refusing to audit: the application role {} can read, write or act as the audit log's role; \
             revoke its privileges on sqlmcp_audit.calls and its membership of {role}",
            app_role
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_order_and_stay_under_the_size_but_for_a_long_line() {
        let lines: Vec<String> = ["aaaa", "bb", "cccccccccc", "d", "e"]
            .map(str::to_owned)
            .to_vec();
        let cut: Vec<Vec<&str>> = chunks(&lines, 7)
            .map(|c| c.iter().map(String::as_str).collect())
            .collect();
        assert_eq!(
            cut,
            [vec!["aaaa", "bb"], vec!["cccccccccc"], vec!["d", "e"]]
        );
    }

    #[test]
    fn the_insert_reads_every_column_from_the_batch_and_skips_what_the_table_holds() {
        let statement = insert_statement();
        assert!(statement.starts_with("INSERT INTO sqlmcp_audit.calls (id, at, request_id,"));
        assert!(statement.contains("AS entry(id uuid, at timestamptz,"));
        assert!(statement.ends_with("ON CONFLICT DO NOTHING"));
    }
}
