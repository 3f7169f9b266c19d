//! Progress notifications and cancellation, through real MCP clients on
//! each transport, against the binary on a real database: a call cancelled
//! while its query runs frees its PostgreSQL backend at once, its
//! connection never serves another call, the next calls succeed, and
//! `/metrics` counts exactly the cancellations; a call that carries a
//! progress token and runs past 100 ms hears how far it got, and any other
//! call hears nothing.
//!
//! The query that runs until cancelled counts the rows of `retail.products`
//! joined with itself four times: 406⁴ ≈ 2.7·10¹⁰ rows, about 1,000 s of
//! one core on the 2-core machines this runs on (25 million rows a second
//! here), and a hundred seconds on any machine there is. So it is still
//! running when it is cancelled 200 ms in, however fast or loaded the
//! machine, and without a cancel its 4 s statement timeout ends it: a
//! 4-second query. It passes the raw-SQL policy as any client's would (no
//! `pg_sleep`, no test-only bypass), reads only a small table that needs no
//! temporary files, and runs on one backend: the table is far below the
//! size PostgreSQL starts parallel workers for.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientCapabilities, ClientConfig, ClientRequest,
    Implementation, ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::helpers::process::ServeProcess;
use crate::helpers::{REDMOND, TableLock, TestDb, url_of};

const RAW_SQL: &str = "execute_sales_query";

/// The query that runs until it is cancelled (see the module's docs),
/// named by `marker` in `pg_stat_activity`.
fn endless(marker: &str) -> String {
    format!(
        "SELECT count(*) AS {marker} FROM retail.products a, retail.products b, \
         retail.products c, retail.products d"
    )
}

/// 200 rows of about 1 kB, each a few milliseconds of work: they arrive
/// over most of a second here, a few at a time (PostgreSQL sends its
/// output in blocks of 8 kB).
const PACED: &str = "SELECT g AS n, repeat(md5(repeat(g::text, 500000)), 30) AS h \
                     FROM generate_series(1, 200) AS g";
const PACED_ROWS: u64 = 200;

/// The server's bounds in these tests: raw SQL stops after 4 s, a curated
/// tool's statement after 1 s, and one pooled connection, so every call
/// after a cancelled one needs the connection the pool makes anew.
const SERVER_ARGS: [&str; 8] = [
    "--embedding-provider",
    "none",
    "--sql-timeout-ms",
    "4000",
    "--statement-timeout-ms",
    "1000",
    "--pool-size",
    "1",
];

/// A client that keeps the progress notifications it hears.
#[derive(Clone)]
struct Listener {
    heard: Arc<Mutex<Vec<ProgressNotificationParam>>>,
    version: ProtocolVersion,
}

impl Default for Listener {
    fn default() -> Listener {
        Listener {
            heard: Default::default(),
            version: ProtocolVersion::V_2025_11_25,
        }
    }
}

impl Listener {
    fn heard(&self) -> Vec<ProgressNotificationParam> {
        self.heard.lock().unwrap().clone()
    }

    /// The notifications heard, once the last of them counts to `last`
    /// (they are handled on tasks of their own, so the answer may be read
    /// first), or after 5 s.
    async fn heard_until(&self, last: f64) -> Vec<ProgressNotificationParam> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let heard = self.heard();
            if heard.last().is_some_and(|p| p.progress == last) || Instant::now() > deadline {
                return heard;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl ClientHandler for Listener {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            ClientCapabilities::default(),
            Implementation::new("sqlmcp-tests", "0"),
        )
        .with_protocol_version(self.version.clone())
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.heard.lock().unwrap().push(params);
    }
}

type Client = RunningService<RoleClient, Listener>;

/// An MCP client of the Streamable HTTP server at `url`, as Redmond.
async fn http_client(url: &str) -> (Client, Listener) {
    http_client_of(url, Listener::default()).await
}

/// [`http_client`] with `listener`.
async fn http_client_of(url: &str, listener: Listener) -> (Client, Listener) {
    let headers = [(
        http::HeaderName::from_static("x-rls-user-id"),
        http::HeaderValue::from_static(REDMOND),
    )]
    .into_iter()
    .collect();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    );
    let client = listener
        .clone()
        .serve(transport)
        .await
        .expect("the client initialises");
    (client, listener)
}

/// `sqlmcp serve --stdio` as Redmond's client launches it, with `/metrics`
/// on a port of its own; its MCP client, and where its metrics are.
async fn stdio_client(db: &TestDb) -> (Client, Listener, String, tokio::process::Child) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlmcp"))
        .args([
            "serve",
            "--stdio",
            "--log-format",
            "json",
            "--caller",
            REDMOND,
        ])
        .args(["--metrics-bind", "127.0.0.1:0"])
        .args(SERVER_ARGS)
        .args(["--database-url", &url_of(&db.app_config())])
        .env_remove("DATABASE_URL")
        .env_remove("SQLMCP_AUDIT_DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut logs = BufReader::new(child.stderr.take().unwrap()).lines();
    let metrics = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = logs.next_line().await.unwrap() {
            let line: Value = serde_json::from_str(&line).unwrap_or_default();
            if let Some(address) = line["fields"]["metrics_address"].as_str() {
                return format!("http://{address}/metrics");
            }
        }
        panic!("the stdio server exited before serving /metrics");
    })
    .await
    .expect("the stdio server serves /metrics within 30 s");
    // keep reading its logs, so that it never blocks writing them
    tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
    let transport = (child.stdout.take().unwrap(), child.stdin.take().unwrap());
    let listener = Listener::default();
    let client = listener
        .clone()
        .serve(transport)
        .await
        .expect("the stdio client initialises");
    (client, listener, metrics, child)
}

/// `execute_sales_query` with `sql`, as a request the client can cancel.
fn raw_sql_request(sql: &str) -> ClientRequest {
    ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new(RAW_SQL).with_arguments(
            json!({"postgresql_query": sql})
                .as_object()
                .unwrap()
                .clone(),
        ),
    ))
}

/// Watches the test database's backends as a superuser.
struct Backends {
    admin: deadpool_postgres::ClientWrapper,
    database: String,
}

impl Backends {
    async fn of(db: &TestDb) -> Backends {
        Backends {
            admin: db.owner().await,
            database: db.name.clone(),
        }
    }

    /// The application role's backend running the statement named by
    /// `marker`, once it runs (within 20 s).
    async fn running(&self, marker: &str) -> i32 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let row = self
                .admin
                .query_opt(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 \
                     AND usename = 'store_manager' AND state = 'active' \
                     AND position($2 in query) > 0",
                    &[&self.database, &marker],
                )
                .await
                .unwrap();
            if let Some(row) = row {
                return row.get(0);
            }
            assert!(
                Instant::now() < deadline,
                "the statement {marker} never ran"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Returns once a backend of the application role waits for a lock
    /// (within 20 s).
    async fn waiting_for_a_lock(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let waiting: i64 = self
                .admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                     AND usename = 'store_manager' AND wait_event_type = 'Lock'",
                    &[&self.database],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "no call waited for the lock");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Whether backend `pid` still runs the statement named by `marker`.
    async fn still_running(&self, pid: i32, marker: &str) -> bool {
        self.admin
            .query_opt(
                "SELECT 1 FROM pg_stat_activity WHERE pid = $1 AND state = 'active' \
                 AND position($2 in query) > 0",
                &[&pid, &marker],
            )
            .await
            .unwrap()
            .is_some()
    }

    /// Returns once backend `pid` no longer runs the statement named by
    /// `marker` (polled every 5 ms, for up to 10 s).
    async fn freed(&self, pid: i32, marker: &str) {
        let from = Instant::now();
        while self.still_running(pid, marker).await {
            assert!(
                from.elapsed() < Duration::from_secs(10),
                "backend {pid} still runs {marker} 10 s after its call was cancelled"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Backend `pid` has gone (its connection was closed rather than pooled,
    /// within 5 s), and no connection of the application role sits in a
    /// transaction.
    async fn closed_and_clean(&self, pid: i32) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let present = self
                .admin
                .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
                .await
                .unwrap()
                .is_some();
            if !present {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the connection of backend {pid} was not closed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let in_transaction: i64 = self
            .admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND usename = 'store_manager' AND state LIKE 'idle in transaction%'",
                &[&self.database],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(in_transaction, 0, "a pooled connection is in a transaction");
    }
}

/// What a cancelled call measured.
struct Cancelled {
    /// From the client's cancel to the backend no longer running the query.
    freed: Duration,
}

/// Calls the endless query named `marker` on `client`, cancels it 200 ms
/// in (once it runs) as rmcp's client does (`notifications/cancelled`; on
/// MCP 2026-07-28 over HTTP, closing the request), and checks that its
/// backend stops within 300 ms of the cancel and its connection is closed.
async fn cancel_a_running_call(client: &Client, backends: &Backends, marker: &str) -> Cancelled {
    let handle = client
        .send_cancellable_request(
            raw_sql_request(&endless(marker)),
            PeerRequestOptions::no_options(),
        )
        .await
        .unwrap();
    let sent = Instant::now();
    let pid = backends.running(marker).await;
    tokio::time::sleep_until((sent + Duration::from_millis(200)).into()).await;
    assert!(
        backends.still_running(pid, marker).await,
        "it runs 200 ms in"
    );
    let cancelling = Instant::now();
    handle
        .cancel(Some("the test cancels it".to_owned()))
        .await
        .unwrap();
    backends.freed(pid, marker).await;
    let freed = cancelling.elapsed();
    assert!(
        freed < Duration::from_millis(300),
        "backend {pid} ran on {freed:?} after the cancel"
    );
    backends.closed_and_clean(pid).await;
    Cancelled { freed }
}

/// `sqlmcp_cancelled_calls_total` of raw SQL for `reason`, from `metrics`.
async fn cancelled_total(metrics: &str, reason: &str) -> u64 {
    cancelled_calls(metrics, RAW_SQL, reason).await
}

/// `sqlmcp_cancelled_calls_total` of `tool` for `reason`, from `metrics`.
async fn cancelled_calls(metrics: &str, tool: &str, reason: &str) -> u64 {
    let exposition = reqwest::get(metrics).await.unwrap().text().await.unwrap();
    exposition
        .lines()
        .filter(|line| line.starts_with("sqlmcp_cancelled_calls_total{"))
        .filter(|line| line.contains(&format!("tool=\"{tool}\"")))
        .filter(|line| line.contains(&format!("reason=\"{reason}\"")))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// The next calls on the pool succeed: raw SQL and a curated tool.
async fn next_calls_succeed(client: &Client) {
    let one = client
        .call_tool(
            CallToolRequestParams::new(RAW_SQL).with_arguments(
                json!({"postgresql_query": "SELECT 1 AS one"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        one.structured_content.as_ref().map(|s| s["r"].clone()),
        Some(json!([[1]])),
        "{one:?}"
    );
    let stores = client
        .call_tool(CallToolRequestParams::new("store_performance"))
        .await
        .unwrap();
    assert_eq!(stores.is_error, Some(false), "{stores:?}");
}

/// Progress of one call: strictly increasing, as the protocol requires,
/// the statement sent or the rows fetched so far against the row cap, and
/// last the row count.
fn assert_rows_progress(heard: &[ProgressNotificationParam], rows: u64) {
    let progress: Vec<f64> = heard.iter().map(|p| p.progress).collect();
    assert!(
        progress.windows(2).all(|w| w[0] < w[1]),
        "progress must increase: {progress:?}"
    );
    let (last, before) = heard.split_last().expect("progress was notified");
    assert_eq!(
        (last.progress, last.total, last.message.clone()),
        (rows as f64, Some(rows as f64), Some(format!("{rows} rows"))),
        "the last notification: the row count"
    );
    assert!(
        !before.is_empty(),
        "a call of most of a second was told how far it got before its end: {heard:?}"
    );
    for p in before {
        let expected = if p.progress == 0.0 {
            "query sent".to_owned()
        } else {
            format!("{} rows fetched (at most 500)", p.progress)
        };
        assert_eq!(
            (p.total, p.message.as_deref()),
            (Some(500.0), Some(expected.as_str())),
            "the statement sent, or the rows fetched so far, against the row cap: {heard:?}"
        );
    }
}

/// Calls [`PACED`] and checks what the listener heard.
async fn progress_of_a_paced_query(client: &Client, listener: &Listener) {
    let started = Instant::now();
    let result = client
        .call_tool(
            CallToolRequestParams::new(RAW_SQL).with_arguments(
                json!({"postgresql_query": PACED})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
        )
        .await
        .unwrap();
    let elapsed = started.elapsed();
    assert_eq!(
        result.structured_content.as_ref().map(|s| s["n"].clone()),
        Some(json!(PACED_ROWS)),
        "{result:?}"
    );
    let heard = listener.heard_until(PACED_ROWS as f64).await;
    println!(
        "{} progress notifications over a call of {elapsed:?}: {:?}",
        heard.len(),
        heard.iter().map(|p| p.progress).collect::<Vec<_>>()
    );
    assert!(
        heard.len() as u128 <= elapsed.as_millis() / 100 + 1,
        "none in the first 100 ms, then at most one a 100 ms, and the last: {} in {elapsed:?}",
        heard.len()
    );
    assert_rows_progress(&heard, PACED_ROWS);
}

#[tokio::test]
async fn in_a_session_cancelled_calls_free_their_backends_and_progress_is_notified() {
    let db = TestDb::seeded().await;
    let mut args = vec!["--sessions"];
    args.extend(SERVER_ARGS);
    let database = url_of(&db.app_config());
    args.extend(["--database-url", database.as_str()]);
    let server = ServeProcess::sqlmcp(&args).await;
    let metrics = format!("http://{}/metrics", server.address);
    let backends = Backends::of(&db).await;
    let (client, listener) = http_client(&server.url()).await;

    progress_of_a_paced_query(&client, &listener).await;

    let before = cancelled_total(&metrics, "client").await;
    for marker in ["session_cancel_one", "session_cancel_two"] {
        let cancelled = cancel_a_running_call(&client, &backends, marker).await;
        println!(
            "--sessions: notifications/cancelled to a free backend: {:?}",
            cancelled.freed
        );
        next_calls_succeed(&client).await;
    }
    assert_eq!(cancelled_total(&metrics, "client").await, before + 2);
    assert_eq!(cancelled_total(&metrics, "disconnect").await, 0);
    client.cancel().await.unwrap();
    server.kill().await;
}

#[tokio::test]
async fn over_stdio_cancelled_calls_free_their_backends_and_progress_is_notified() {
    let db = TestDb::seeded().await;
    let backends = Backends::of(&db).await;
    let (client, listener, metrics, _child) = stdio_client(&db).await;

    progress_of_a_paced_query(&client, &listener).await;

    let before = cancelled_total(&metrics, "client").await;
    for marker in ["stdio_cancel_one", "stdio_cancel_two"] {
        let cancelled = cancel_a_running_call(&client, &backends, marker).await;
        println!(
            "stdio: notifications/cancelled to a free backend: {:?}",
            cancelled.freed
        );
        next_calls_succeed(&client).await;
    }
    assert_eq!(cancelled_total(&metrics, "client").await, before + 2);
    client.cancel().await.unwrap();
}

/// A `tools/call` over stateless HTTP, with a progress token or without.
fn post_call(url: &str, sql: &str, token: Option<&str>) -> reqwest::RequestBuilder {
    let mut params = json!({"name": RAW_SQL, "arguments": {"postgresql_query": sql}});
    if let Some(token) = token {
        params["_meta"] = json!({"progressToken": token});
    }
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-rls-user-id", REDMOND)
        .body(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": params})
                .to_string(),
        )
}

/// The JSON-RPC messages of an SSE body.
fn sse_messages(body: &str) -> Vec<Value> {
    body.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .filter(|data| !data.trim().is_empty())
        .map(|data| serde_json::from_str(data.trim()).unwrap())
        .collect()
}

/// Stateless HTTP: progress comes as an SSE answer, only to a call with a
/// token; a request closed mid-call (by hand, in JSON or SSE, and by rmcp's
/// client on MCP 2026-07-28) frees its backend and counts as `disconnect`;
/// a deadline counts as `deadline`.
#[tokio::test]
async fn over_stateless_http_a_dropped_request_frees_its_backend_and_progress_comes_as_sse() {
    let db = TestDb::seeded().await;
    let mut args = SERVER_ARGS.to_vec();
    let database = url_of(&db.app_config());
    args.extend(["--database-url", database.as_str()]);
    let server = ServeProcess::sqlmcp(&args).await;
    let url = server.url();
    let metrics = format!("http://{}/metrics", server.address);
    let backends = Backends::of(&db).await;

    // without a progress token: plain JSON, as before
    let plain = post_call(&url, PACED, None).send().await.unwrap();
    assert_eq!(plain.headers()["content-type"], "application/json");
    let answer: Value = plain.json().await.unwrap();
    assert_eq!(
        answer["result"]["structuredContent"]["n"], PACED_ROWS,
        "{answer}"
    );

    // with one: an SSE stream of the notifications, then the answer
    let streamed = post_call(&url, PACED, Some("paced")).send().await.unwrap();
    assert_eq!(streamed.headers()["content-type"], "text/event-stream");
    let messages = sse_messages(&streamed.text().await.unwrap());
    let (answer, notifications) = messages.split_last().unwrap();
    assert_eq!(
        answer["result"]["structuredContent"]["n"], PACED_ROWS,
        "{answer}"
    );
    let heard: Vec<ProgressNotificationParam> = notifications
        .iter()
        .map(|n| {
            assert_eq!(n["method"], "notifications/progress", "{n}");
            assert_eq!(n["params"]["progressToken"], "paced", "{n}");
            serde_json::from_value(n["params"].clone()).unwrap()
        })
        .collect();
    assert_rows_progress(&heard, PACED_ROWS);

    // a request dropped mid-call, answered in JSON (no token) or SSE (one)
    let before = cancelled_total(&metrics, "disconnect").await;
    for (marker, token) in [
        ("stateless_drop_json", None),
        ("stateless_drop_sse", Some("dropped")),
    ] {
        let request = post_call(&url, &endless(marker), token);
        let call = tokio::spawn(async move {
            let response = request.send().await.unwrap();
            // hold the stream open: the server has sent its first event
            let mut body = response.bytes_stream();
            futures_util::StreamExt::next(&mut body).await;
            futures_util::future::pending::<()>().await;
        });
        let sent = Instant::now();
        let pid = backends.running(marker).await;
        tokio::time::sleep_until((sent + Duration::from_millis(200)).into()).await;
        assert!(
            backends.still_running(pid, marker).await,
            "it runs 200 ms in"
        );
        let dropping = Instant::now();
        call.abort();
        let _ = call.await;
        backends.freed(pid, marker).await;
        let freed = dropping.elapsed();
        println!("stateless ({marker}): a dropped request to a free backend: {freed:?}");
        assert!(
            freed < Duration::from_millis(300),
            "backend {pid} ran on {freed:?} after its request was dropped"
        );
        backends.closed_and_clean(pid).await;
        let answer: Value = post_call(&url, "SELECT 1 AS one", None)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            answer["result"]["structuredContent"]["r"],
            json!([[1]]),
            "{answer}"
        );
    }

    // rmcp's client on MCP 2026-07-28 cancels by closing the request
    let (client, _) = http_client_of(
        &url,
        Listener {
            version: ProtocolVersion::V_2026_07_28,
            ..Listener::default()
        },
    )
    .await;
    let cancelled = cancel_a_running_call(&client, &backends, "stateless_2026_cancel").await;
    println!(
        "stateless, MCP 2026-07-28: rmcp's cancel to a free backend: {:?}",
        cancelled.freed
    );
    next_calls_succeed(&client).await;
    client.cancel().await.unwrap();

    assert_eq!(cancelled_total(&metrics, "disconnect").await, before + 3);
    assert_eq!(cancelled_total(&metrics, "client").await, 0);

    // a deadline is counted too: a curated call waits for a locked table
    // past its 1 s statement timeout
    let lock = TableLock::take(&db, "retail.stores").await;
    let answer: Value = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-rls-user-id", REDMOND)
        .body(
            json!({"jsonrpc": "2.0", "id": 8, "method": "tools/call",
                   "params": {"name": "store_performance", "arguments": {}}})
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    lock.release().await;
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(answer.to_string().contains("statement timeout"), "{answer}");
    assert_eq!(
        cancelled_calls(&metrics, "store_performance", "deadline").await,
        1
    );
    server.kill().await;
}

/// Over stdio, a call without a progress token is answered with nothing
/// before its response; one with a token hears how far it got, on the
/// same stream.
#[tokio::test]
async fn over_stdio_only_a_call_with_a_progress_token_hears_progress() {
    let db = TestDb::seeded().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlmcp"))
        .args(["serve", "--stdio", "--caller", REDMOND])
        .args(SERVER_ARGS)
        .args(["--database-url", &url_of(&db.app_config())])
        .env_remove("SQLMCP_AUDIT_DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut send = async |message: Value| {
        stdin
            .write_all(format!("{message}\n").as_bytes())
            .await
            .unwrap();
    };
    // every message up to and including the response to `id`
    let mut until_response = async |id: u64| -> Vec<Value> {
        let mut messages = Vec::new();
        loop {
            let line = tokio::time::timeout(Duration::from_secs(30), stdout.next_line())
                .await
                .unwrap()
                .unwrap()
                .expect("a line");
            let message: Value = serde_json::from_str(&line).unwrap();
            let done = message["id"] == id;
            messages.push(message);
            if done {
                return messages;
            }
        }
    };
    send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})).await;
    until_response(1).await;
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    let call = |id: u64, meta: Option<Value>| {
        let mut params = json!({"name": RAW_SQL, "arguments": {"postgresql_query": PACED}});
        if let Some(meta) = meta {
            params["_meta"] = meta;
        }
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": params})
    };

    send(call(2, None)).await;
    let without = until_response(2).await;
    assert_eq!(without.len(), 1, "nothing but the answer: {without:?}");
    assert_eq!(without[0]["result"]["structuredContent"]["n"], PACED_ROWS);

    send(call(3, Some(json!({"progressToken": 42})))).await;
    let with = until_response(3).await;
    let (answer, notifications) = with.split_last().unwrap();
    assert_eq!(answer["result"]["structuredContent"]["n"], PACED_ROWS);
    let heard: Vec<ProgressNotificationParam> = notifications
        .iter()
        .map(|n| {
            assert_eq!(n["method"], "notifications/progress", "{n}");
            assert_eq!(n["params"]["progressToken"], 42, "{n}");
            serde_json::from_value(n["params"].clone()).unwrap()
        })
        .collect();
    assert_rows_progress(&heard, PACED_ROWS);

    // rows past the byte cap (1 MiB: ten rows of 96 kB) are not counted
    let wide = "SELECT g AS n, repeat(md5(repeat(g::text, 2000000)), 3000) AS h \
                FROM generate_series(1, 40) AS g";
    send(json!({"jsonrpc": "2.0", "id": 5, "method": "tools/call", "params": {"name": RAW_SQL, "arguments": {"postgresql_query": wide}, "_meta": {"progressToken": "wide"}}})).await;
    let with = until_response(5).await;
    let (answer, notifications) = with.split_last().unwrap();
    let structured = &answer["result"]["structuredContent"];
    assert_eq!(
        (&structured["n"], &structured["truncated"]),
        (&json!(10), &json!(true))
    );
    let counted: Vec<(f64, f64)> = notifications
        .iter()
        .map(|n| {
            let p = &n["params"];
            (
                p["progress"].as_f64().unwrap(),
                p["total"].as_f64().unwrap(),
            )
        })
        .collect();
    // the last is the row count: of itself, or, when the tenth row was
    // reported before the eleventh showed the cap, of the row cap (progress
    // may not repeat)
    assert_eq!(
        counted.last().map(|(progress, _)| *progress),
        Some(10.0),
        "{notifications:?}"
    );
    assert!(
        counted.windows(2).all(|w| w[0].0 < w[1].0),
        "{notifications:?}"
    );

    // a call answered within 100 ms is answered alone, token or not
    send(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {"name": "store_performance", "arguments": {}, "_meta": {"progressToken": "stores"}}})).await;
    let fast = until_response(4).await;
    assert_eq!(fast.len(), 1, "nothing but the answer: {fast:?}");
    assert_eq!(fast[0]["result"]["structuredContent"]["row_count"], 1);
}

/// The curated tools' steps, over stateless HTTP with a real client: the
/// statement sent, then the row count; a search by meaning embeds its text
/// first. Each call waits for a table another transaction holds locked,
/// long enough to be told how far it got.
#[tokio::test]
async fn curated_tools_notify_their_steps_and_a_search_embeds_first() {
    let db = Arc::new(TestDb::seeded().await);
    let app = crate::helpers::server::spawn_app_with(db.clone(), |_| {}).await;
    let backends = Backends::of(&db).await;
    let (client, listener) = http_client(&app.url).await;
    let steps = |heard: &[ProgressNotificationParam]| -> Vec<(f64, Option<f64>, String)> {
        heard
            .iter()
            .map(|p| (p.progress, p.total, p.message.clone().unwrap_or_default()))
            .collect()
    };
    // calls `tool` while `table` is locked, releasing it 300 ms after the
    // call waits for it
    let held_up = async |table: &str, tool: &str, arguments: Value| {
        let lock = TableLock::take(&db, table).await;
        let call = client.call_tool(
            CallToolRequestParams::new(tool.to_owned())
                .with_arguments(arguments.as_object().unwrap().clone()),
        );
        let release = async {
            backends.waiting_for_a_lock().await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            lock.release().await;
        };
        let (result, ()) = tokio::join!(call, release);
        let result = result.unwrap();
        assert_eq!(result.is_error, Some(false), "{result:?}");
    };

    held_up("retail.stores", "store_performance", json!({})).await;
    assert_eq!(
        steps(&listener.heard_until(2.0).await),
        [
            (1.0, Some(2.0), "query sent".to_owned()),
            (2.0, Some(2.0), "1 row".to_owned()),
        ]
    );

    listener.heard.lock().unwrap().clear();
    held_up(
        "retail.product_description_embeddings",
        "semantic_search_products",
        json!({"query_description": "something to cut copper pipe", "max_rows": 3}),
    )
    .await;
    let heard = steps(&listener.heard_until(3.0).await);
    // embedding may be over before the first notification is due
    let embedding = (1.0, Some(3.0), "embedding the query".to_owned());
    let searching = (2.0, Some(3.0), "query embedded; searching".to_owned());
    let found = (3.0, Some(3.0), "3 rows".to_owned());
    assert!(
        heard == [embedding, searching.clone(), found.clone()] || heard == [searching, found],
        "{heard:?}"
    );
    client.cancel().await.unwrap();
    app.stop().await.unwrap();
}
