//! The audit log: one entry per tool call, of who called which tool with
//! which arguments, and how it went; never any result data.
//!
//! A call takes a place in a bounded queue before it runs ([`Auditor::begin`])
//! and fills it in when it ends ([`Pending::ok`], [`Pending::failed`], or,
//! if the call is dropped halfway, [`Pending`]'s `Drop`), so a call never
//! waits for the audit log's I/O. A background writer (`writer.rs`) takes
//! the entries in batches and writes them:
//!
//! - as JSON lines to stderr or a file, for log shippers (`--audit-log`);
//! - into the table `sqlmcp_audit.calls` (migration `V7__audit_log.sql`),
//!   through a connection of its own as `sqlmcp_audit`, a role that may only
//!   insert there and that the application role can neither read nor write.
//!
//! Nothing is lost while the table is unreachable: batches go to a bounded
//! spool (`spool.rs`) on local disk and are replayed when it returns. Every
//! entry carries a unique id and is inserted with `ON CONFLICT DO NOTHING`,
//! so a replay after a partial failure never writes one twice. When even the
//! spool cannot take an entry (full, or failing), the entry is dropped and
//! counted, and from then until an entry can be stored again the tools set
//! to fail closed (`--audit-fail-closed`, by default `execute_sales_query`)
//! are refused before they run; the others run on (fail open).

mod flags;
mod json_lines;
pub mod recent;
mod spool;
mod writer;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use rmcp::model::CallToolResult;
use serde::Serialize;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::caller::{Caller, Grant, Principal};
use crate::db::Visible;
use crate::tools::ToolError;
pub use flags::Flags;

/// Entries waiting for the writer at most; a call waits for a place when
/// all are taken (the writer is then behind by this many entries).
const QUEUE_ENTRIES: usize = 16_384;

/// What `sqlmcp serve` audits, and where to.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The table, and the spool it falls back on; `None`: no table.
    pub table: Option<TableSettings>,
    /// JSON lines of every entry; `None`: none.
    pub log: Option<LogTarget>,
    /// A batch is written when it holds this many entries...
    pub batch_size: usize,
    /// ...or when this long has passed.
    pub flush_every: Duration,
    /// Which tools are refused while no entry can be stored.
    pub fail_closed: FailClosed,
}

impl Default for Settings {
    /// Off: no table, no JSON lines.
    fn default() -> Settings {
        Settings {
            table: None,
            log: None,
            batch_size: 256,
            flush_every: Duration::from_millis(200),
            fail_closed: FailClosed::default(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct TableSettings {
    /// A connection as the insert-only role `sqlmcp_audit`.
    pub database: tokio_postgres::Config,
    /// Where entries wait while the table is unreachable. One server
    /// process per directory.
    pub spool_dir: PathBuf,
    /// Bytes the spool holds at most.
    pub spool_max_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    Stderr,
    /// Appended to; a log shipper may rotate it by copy and truncate.
    File(PathBuf),
}

/// The tools refused, before they run, while the audit log cannot store an
/// entry; all others run on without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailClosed {
    All,
    /// These tools only (none when empty).
    Tools(Vec<String>),
}

impl Default for FailClosed {
    /// Raw SQL fails closed, the curated tools fail open.
    fn default() -> FailClosed {
        FailClosed::Tools(vec![crate::tools::raw_sql::NAME.to_owned()])
    }
}

impl FailClosed {
    fn covers(&self, tool: &str) -> bool {
        match self {
            FailClosed::All => true,
            FailClosed::Tools(tools) => tools.iter().any(|t| t == tool),
        }
    }
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Ok,
    /// The tool ran, or tried to, and failed.
    Error,
    /// Refused before it ran.
    Refused,
    /// Dropped before it ended (the connection closed, the server stopped).
    Interrupted,
}

/// One line of the audit log and one row of `sqlmcp_audit.calls`: the field
/// names are the table's columns.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// Tells audit lines from other log lines on a shared stream.
    log: &'static str,
    /// Unique, made here (UUIDv7, in time order): the key that keeps a
    /// replayed entry from being written twice.
    id: String,
    /// When the call began.
    at: chrono::DateTime<chrono::Utc>,
    request_id: String,
    caller_id: Option<String>,
    /// `header`, `jwt`, `configured` or `default`.
    auth_method: Option<&'static str>,
    issuer: Option<String>,
    subject: Option<String>,
    /// The stores the call could see; `None`: every store, or not known
    /// (the call ended before the database resolved them).
    stores: Option<Vec<i32>>,
    tool: String,
    arguments: Value,
    outcome: Outcome,
    error_class: Option<&'static str>,
    row_count: Option<u64>,
    bytes: Option<u64>,
    duration_ms: f64,
    cached: bool,
}

impl Entry {
    /// The entry of a call of `tool` by `caller` (`None`: it named no one)
    /// that begins now; its end is filled in by [`Pending`].
    pub fn new(
        request_id: String,
        caller: Option<&Caller>,
        tool: &str,
        arguments: &Value,
    ) -> Entry {
        let (caller_id, issuer, subject) = match caller.map(|c| (&c.principal, &c.grant)) {
            None => (None, None, None),
            Some((Principal::Jwt { issuer, subject }, grant)) => {
                let id = match grant {
                    Grant::Mapped(id) => Some(id.to_string()),
                    Grant::Listed { .. } => None,
                };
                (id, Some(issuer.clone()), Some(subject.clone()))
            }
            Some((
                Principal::Header(id) | Principal::Configured(id) | Principal::Default(id),
                _,
            )) => (Some(id.to_string()), None, Some(id.to_string())),
        };
        Entry {
            log: "audit",
            id: uuid::Uuid::now_v7().to_string(),
            at: chrono::Utc::now(),
            request_id,
            caller_id,
            auth_method: caller.map(|c| c.principal.method()),
            issuer,
            subject,
            stores: caller.and_then(|c| known_stores(&c.grant)),
            tool: tool.to_owned(),
            arguments: logged_arguments(arguments),
            outcome: Outcome::Interrupted,
            error_class: None,
            row_count: None,
            bytes: None,
            duration_ms: 0.0,
            cached: false,
        }
    }
}

/// The stores a grant sees before the database resolves it, where that is
/// plain: a list of stores alone is itself. Head office's (every store) and
/// the rest are `None` until the call's transaction opens.
fn known_stores(grant: &Grant) -> Option<Vec<i32>> {
    match grant {
        Grant::Listed { stores, regions } if regions.is_empty() => {
            Some(stores.iter().copied().collect())
        }
        _ => None,
    }
}

/// The arguments as the entry records them: as the caller sent them, raw
/// SQL text included.
///
/// Safe to log because they hold no secret: they are the `arguments` object
/// of the MCP `tools/call` request, which every tool's input schema limits
/// to query parameters (dates, ids, limits, search text, SQL). Credentials
/// never travel there: the bearer token and the identity header are HTTP
/// headers, which no entry reads (an entry names the caller by the verified
/// identity alone), and database and API credentials live in the server's
/// configuration. Should a tool ever take a secret argument, this is the
/// place to leave it out.
///
/// NUL characters become U+FFFD: PostgreSQL's `jsonb` cannot hold them, and
/// a batch it refused would be an entry lost.
pub fn logged_arguments(arguments: &Value) -> Value {
    match arguments {
        Value::String(text) if text.contains('\0') => Value::String(text.replace('\0', "\u{fffd}")),
        Value::Array(items) => Value::Array(items.iter().map(logged_arguments).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(key, value)| (key.replace('\0', "\u{fffd}"), logged_arguments(value)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// The request id: a proxy's `x-request-id`, when the request carries a
/// sensible one (1 to 128 printable ASCII characters), otherwise a new UUID.
pub fn request_id(request: Option<&http::request::Parts>) -> String {
    request
        .and_then(|parts| parts.headers.get("x-request-id"))
        .and_then(|value| value.to_str().ok())
        .filter(|id| (1..=128).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// The kind of a tool failure, for the `error_class` column.
pub fn error_class(err: &ToolError) -> &'static str {
    match err {
        ToolError::UnknownTool(_) => "unknown_tool",
        ToolError::InvalidArgument { .. } | ToolError::InvalidArguments(_) => "invalid_arguments",
        ToolError::Unavailable(_) | ToolError::Transient(_) => "unavailable",
        ToolError::NoEmbeddingModel | ToolError::Embedding(_) => "embedding",
        ToolError::Timeout => "timeout",
        ToolError::Cancelled => "cancelled",
        ToolError::Database(_) => "database",
    }
}

/// A call refused because the audit log cannot record it.
#[derive(Debug, thiserror::Error)]
#[error(
    "refused: this call cannot be audited right now (the audit log's table is unreachable and \
     its local spool is full or failing), and `{0}` only runs when it can be audited; try again later"
)]
pub struct Refused(String);

/// Hands entries to the writer, and to the ring of recent calls when there
/// is one; off when neither is on.
#[derive(Default)]
pub struct Auditor {
    inner: Option<Inner>,
    recent: Option<Arc<recent::RecentCalls>>,
}

struct Inner {
    queue: mpsc::Sender<Entry>,
    /// Whether the writer could store (in the table or the spool) every
    /// entry of its last batch.
    storable: Arc<AtomicBool>,
    fail_closed: FailClosed,
    stop: CancellationToken,
    writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Auditor {
    /// Opens the JSON-lines file, connects to the table and checks its
    /// roles (`app_role`, the application role, must not reach it), opens
    /// the spool, and starts the writer.
    pub async fn start(settings: &Settings, app_role: Option<&str>) -> Result<Auditor> {
        if settings.table.is_none() && settings.log.is_none() {
            return Ok(Auditor::default());
        }
        if settings.batch_size == 0 || settings.flush_every.is_zero() {
            anyhow::bail!("--audit-batch-size and --audit-flush-ms must be at least 1");
        }
        let (queue, entries) = mpsc::channel(QUEUE_ENTRIES);
        let storable = Arc::new(AtomicBool::new(true));
        let stop = CancellationToken::new();
        let writer = writer::Writer::open(settings, app_role, storable.clone()).await?;
        let task = tokio::spawn(writer.run(entries, stop.clone()));
        Ok(Auditor {
            recent: None,
            inner: Some(Inner {
                queue,
                storable,
                fail_closed: settings.fail_closed.clone(),
                stop,
                writer: Mutex::new(Some(task)),
            }),
        })
    }

    /// Also keeps every ended call in `recent` (the workbench's list).
    pub fn with_recent(mut self, recent: Option<Arc<recent::RecentCalls>>) -> Auditor {
        self.recent = recent;
        self
    }

    /// The ring of recent calls, when there is one.
    pub fn recent(&self) -> Option<&recent::RecentCalls> {
        self.recent.as_deref()
    }

    /// Takes the queue place of a call about to run, with its `entry` (made
    /// only when auditing or the ring of recent calls is on), or refuses the call when it fails closed
    /// and the audit log cannot store entries now (the refusal is itself
    /// recorded, as far as it can be).
    pub async fn begin(&self, entry: impl FnOnce() -> Entry) -> Result<Pending, Refused> {
        let started = Instant::now();
        let recent = self.recent.clone();
        let Some(inner) = &self.inner else {
            return Ok(match recent {
                None => Pending::off(),
                Some(_) => Pending {
                    permit: None,
                    entry: Some(entry()),
                    recent,
                    started,
                },
            });
        };
        let entry = entry();
        let permit = inner.queue.clone().reserve_owned().await.ok();
        let storable = permit.is_some() && inner.storable.load(Ordering::Relaxed);
        if storable || !inner.fail_closed.covers(&entry.tool) {
            if permit.is_none() {
                writer::count("dropped", 1);
            }
            return Ok(Pending {
                permit,
                entry: Some(entry),
                recent,
                started,
            });
        }
        let refused = Refused(entry.tool.clone());
        metrics::counter!("sqlmcp_audit_refused_calls_total").increment(1);
        tracing::warn!(tool = %entry.tool, "refused a call: the audit log cannot store entries");
        let mut pending = Pending {
            permit,
            entry: Some(entry),
            recent,
            started,
        };
        pending.end(
            Outcome::Refused,
            Some("audit_unavailable"),
            None,
            None,
            false,
        );
        Err(refused)
    }

    /// Stops the writer once the queue is empty: the entries still queued
    /// reach the table, or the spool when the table is unreachable. Calls
    /// still running get a few seconds to end.
    pub async fn close(&self) {
        let Some(inner) = &self.inner else { return };
        inner.stop.cancel();
        let task = inner.writer.lock().expect("never poisoned").take();
        if let Some(task) = task
            && let Err(err) = task.await
        {
            tracing::error!(error = %err, "the audit log's writer failed");
        }
    }
}

/// A call's place in the queue (none when the queue is closed, or only the
/// ring of recent calls is on), with its entry so far; sent when the call
/// ends. A call dropped before it ended is recorded as interrupted.
pub struct Pending {
    permit: Option<mpsc::OwnedPermit<Entry>>,
    /// `None` once sent, or when nothing records calls.
    entry: Option<Entry>,
    recent: Option<Arc<recent::RecentCalls>>,
    started: Instant,
}

impl Pending {
    fn off() -> Pending {
        Pending {
            permit: None,
            entry: None,
            recent: None,
            started: Instant::now(),
        }
    }

    /// The call answered `result`, having seen `visible` if its
    /// transaction opened.
    pub fn ok(
        mut self,
        result: &CallToolResult,
        rows: Option<u64>,
        cached: bool,
        visible: Option<Visible>,
    ) {
        if let (Some(entry), Some(visible)) = (&mut self.entry, visible) {
            entry.stores = visible;
        }
        self.end(Outcome::Ok, None, rows, Some(answer_bytes(result)), cached);
    }

    /// The call failed or was refused, and answered `result`.
    pub fn failed(mut self, result: &CallToolResult, outcome: Outcome, class: &'static str) {
        self.end(
            outcome,
            Some(class),
            None,
            Some(answer_bytes(result)),
            false,
        );
    }

    fn end(
        &mut self,
        outcome: Outcome,
        error_class: Option<&'static str>,
        row_count: Option<u64>,
        bytes: Option<u64>,
        cached: bool,
    ) {
        let Some(mut entry) = self.entry.take() else {
            return;
        };
        entry.outcome = outcome;
        entry.error_class = error_class;
        entry.row_count = row_count;
        entry.bytes = bytes;
        entry.cached = cached;
        entry.duration_ms = self.started.elapsed().as_secs_f64() * 1e3;
        if let Some(recent) = &self.recent {
            recent.push(&entry);
        }
        if let Some(permit) = self.permit.take() {
            permit.send(entry);
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.end(Outcome::Interrupted, None, None, None, false);
    }
}

/// The size of the text sent back, in bytes.
fn answer_bytes(result: &CallToolResult) -> u64 {
    result
        .content
        .iter()
        .filter_map(|content| content.as_text())
        .map(|text| text.text.len() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::CallerId;
    use serde_json::json;

    #[test]
    fn arguments_are_logged_as_sent_but_for_nul_characters() {
        let sent =
            json!({"query": "SELECT 1 -- \u{0}", "max_rows": 5, "nested": [{"k\u{0}": "\u{0}"}]});
        assert_eq!(
            logged_arguments(&sent),
            json!({"query": "SELECT 1 -- \u{fffd}", "max_rows": 5, "nested": [{"k\u{fffd}": "\u{fffd}"}]})
        );
        let plain = json!({"query": "SELECT store_name FROM retail.stores"});
        assert_eq!(logged_arguments(&plain), plain);
    }

    #[test]
    fn a_request_id_is_a_sensible_header_or_a_new_uuid() {
        let parts = |value: &str| {
            let request = http::Request::builder()
                .header("x-request-id", value)
                .body(())
                .unwrap();
            request.into_parts().0
        };
        assert_eq!(request_id(Some(&parts("req-42"))), "req-42");
        for odd in ["", "has space", &"x".repeat(129)] {
            let made = request_id(Some(&parts(odd)));
            assert!(uuid::Uuid::parse_str(&made).is_ok(), "{odd:?} gave {made}");
        }
        assert!(uuid::Uuid::parse_str(&request_id(None)).is_ok());
    }

    #[test]
    fn the_entry_names_the_table_columns_and_no_more() {
        let seattle = CallerId::for_tests("f47ac10b-58cc-4372-a567-0e02b2c3d479");
        let caller = Caller::by_id(seattle, Principal::Header, Default::default());
        let entry = Entry::new(
            "r1".into(),
            Some(&caller),
            "top_products",
            &json!({"limit": 3}),
        );
        let line = serde_json::to_value(&entry).unwrap();
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "log",
                "id",
                "at",
                "request_id",
                "caller_id",
                "auth_method",
                "issuer",
                "subject",
                "stores",
                "tool",
                "arguments",
                "outcome",
                "error_class",
                "row_count",
                "bytes",
                "duration_ms",
                "cached"
            ]
        );
        assert_eq!(line["auth_method"], "header");
        assert_eq!(line["subject"], "f47ac10b-58cc-4372-a567-0e02b2c3d479");
        let columns: Vec<&str> = writer::COLUMNS.iter().map(|(name, _)| *name).collect();
        assert_eq!(columns, keys[1..]);
    }

    #[test]
    fn the_entry_names_the_caller_as_their_credential_does() {
        let fields = |caller: Option<&Caller>| {
            let line =
                serde_json::to_value(Entry::new("r".into(), caller, "t", &json!({}))).unwrap();
            ["caller_id", "auth_method", "issuer", "subject", "stores"].map(|key| line[key].clone())
        };
        let jwt = Caller {
            principal: Principal::Jwt {
                issuer: "https://idp.example.com".into(),
                subject: "alice".into(),
            },
            grant: Grant::Listed {
                stores: [6, 1].into(),
                regions: Default::default(),
            },
            scopes: Default::default(),
            roles: Default::default(),
        };
        assert_eq!(
            fields(Some(&jwt)),
            [
                json!(null),
                json!("jwt"),
                json!("https://idp.example.com"),
                json!("alice"),
                json!([1, 6])
            ]
        );
        let stdio = Caller::by_id(
            crate::caller::HEAD_OFFICE,
            Principal::Configured,
            Default::default(),
        );
        let head_office = json!("00000000-0000-0000-0000-000000000000");
        assert_eq!(
            fields(Some(&stdio)),
            [
                head_office.clone(),
                json!("configured"),
                json!(null),
                head_office,
                json!(null)
            ]
        );
        assert_eq!(fields(None), [(); 5].map(|()| json!(null)));
    }

    #[test]
    fn raw_sql_fails_closed_and_the_rest_open_by_default() {
        let default = FailClosed::default();
        assert!(default.covers("execute_sales_query"));
        assert!(!default.covers("top_products"));
        assert!(FailClosed::All.covers("top_products"));
        assert!(!FailClosed::Tools(vec![]).covers("execute_sales_query"));
    }
}
