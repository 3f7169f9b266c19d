//! Per-caller rate limits and concurrency caps, through the server: over
//! HTTP a call over a limit is answered 429 with `Retry-After` at the door,
//! or gets a tool error naming the limit where it reaches the handler (two
//! calls racing for the last slot, stdio); a token's roles and scopes choose
//! its limits; a slot comes back however its call ends; `/metrics` counts
//! refusals per limit and budget; and one caller flooding leaves another's
//! latency within twice its baseline.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser as _;
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation};
use rmcp::transport::streamable_http_client::StreamableHttpError;
use serde_json::{Value, json};
use sqlmcp::server::rate_limit;

use crate::helpers::server::{
    JWT_ISSUER, JWT_SECRET, TestApp, as_caller, call, claims, client, spawn_app_with,
    spawn_jwt_app_with, text, token,
};
use crate::helpers::{HEAD_OFFICE, ONLINE, REDMOND, SEATTLE, TableLock, TestDb};

const RAW_SQL: &str = "execute_sales_query";

/// The limits that these command-line flags set.
pub(crate) fn limits(flags: &[&str]) -> rate_limit::Settings {
    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        limits: rate_limit::Flags,
    }
    let args = std::iter::once("serve").chain(flags.iter().copied());
    Serve::try_parse_from(args)
        .unwrap()
        .limits
        .settings()
        .unwrap()
}

/// What the server answered a `tools/call` POST: status, `Retry-After`,
/// and the JSON-RPC body.
pub(crate) struct Answer {
    pub(crate) status: u16,
    retry_after: Option<String>,
    pub(crate) body: Value,
}

impl Answer {
    /// The refusal's message, at the door (429) or from the handler (a tool
    /// error); `None` for a call that ran.
    pub(crate) fn refusal(&self) -> Option<String> {
        match self.status {
            429 => Some(self.body["error"]["message"].as_str()?.to_owned()),
            _ if self.body["result"]["isError"] == true => Some(
                self.body["result"]["content"][0]["text"]
                    .as_str()?
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// Plain HTTP to a server's `/mcp`, through one client: making a client
/// costs far more than a call.
#[derive(Clone)]
pub(crate) struct Mcp {
    http: reqwest::Client,
    url: String,
}

impl Mcp {
    pub(crate) fn of(app: &TestApp) -> Mcp {
        Mcp {
            http: reqwest::Client::new(),
            url: app.url.clone(),
        }
    }

    /// A `tools/call` POST as `caller`.
    fn request(
        &self,
        caller: &str,
        id: u64,
        tool: &str,
        arguments: Value,
    ) -> reqwest::RequestBuilder {
        self.http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("x-rls-user-id", caller)
            .body(
                json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                       "params": {"name": tool, "arguments": arguments}})
                .to_string(),
            )
    }

    /// `tools/call` as `caller`: what the server answered.
    pub(crate) async fn call(&self, caller: &str, id: u64, tool: &str, arguments: Value) -> Answer {
        let response = self
            .request(caller, id, tool, arguments)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let body = response.json().await.unwrap();
        Answer {
            status,
            retry_after,
            body,
        }
    }

    pub(crate) async fn metrics(&self) -> String {
        let url = self.url.replace("/mcp", "/metrics");
        let response = self.http.get(url).send().await.unwrap();
        response.text().await.unwrap()
    }
}

/// A file of JSON lines for the audit log, removed when dropped.
struct AuditLines(std::path::PathBuf);

impl AuditLines {
    fn new() -> AuditLines {
        let name = format!("sqlmcp-rate-limits-{}.jsonl", rand::random::<u64>());
        AuditLines(std::env::temp_dir().join(name))
    }

    /// Each entry's tool, outcome and error class.
    fn entries(&self) -> Vec<(String, String, Option<String>)> {
        let lines = std::fs::read_to_string(&self.0).unwrap_or_default();
        lines
            .lines()
            .map(|line| {
                let entry: Value = serde_json::from_str(line).unwrap();
                let field = |name: &str| entry[name].as_str().map(str::to_owned);
                (
                    field("tool").unwrap(),
                    field("outcome").unwrap(),
                    field("error_class"),
                )
            })
            .collect()
    }
}

impl Drop for AuditLines {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn count_orders() -> Value {
    json!({"postgresql_query": "SELECT count(*) AS n FROM retail.orders"})
}

/// Raw SQL has a budget of its own inside the one of every call; a call
/// over either is answered 429 with `Retry-After` and a JSON-RPC error
/// that names the limit, spends nothing, leaves other callers alone, and
/// is no entry in the audit log.
#[tokio::test]
async fn over_http_a_call_over_the_rate_gets_429_with_retry_after_and_others_go_on() {
    let audit = AuditLines::new();
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| {
        // a token back every 10 s, and every 20 s for raw SQL
        s.rate_limits = limits(&["--rate-limit", "0.1:3", "--raw-sql-rate-limit", "0.05:2"]);
        s.audit.log = Some(sqlmcp::audit::LogTarget::File(audit.0.clone()));
    })
    .await;
    let mcp = Mcp::of(&app);
    for id in 1..=2 {
        let ran = mcp.call(SEATTLE, id, RAW_SQL, count_orders()).await;
        assert_eq!((ran.status, ran.refusal()), (200, None), "{}", ran.body);
    }
    let refused = mcp.call(SEATTLE, 3, RAW_SQL, count_orders()).await;
    assert_eq!(refused.status, 429, "{}", refused.body);
    let retry_after: u64 = refused.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(refused.body["id"], 3);
    assert_eq!(refused.body["error"]["data"]["limit"], "rate");
    assert_eq!(refused.body["error"]["data"]["budget"], "raw_sql");
    let message = refused.refusal().unwrap();
    assert!(
        message
            .starts_with("rate limit: raw SQL allows 0.05 calls/s per caller (burst 2); retry in "),
        "{message}"
    );
    // the refused call spent nothing: the third token of every call is left
    let ran = mcp.call(SEATTLE, 4, "store_performance", json!({})).await;
    assert_eq!(ran.refusal(), None, "{}", ran.body);
    let refused = mcp
        .call(SEATTLE, 5, "get_current_utc_date", json!({}))
        .await;
    assert_eq!(refused.status, 429);
    let message = refused.refusal().unwrap();
    assert!(
        message.starts_with("rate limit: this server allows 0.1 calls/s per caller (burst 3)"),
        "{message}"
    );
    let other = mcp.call(REDMOND, 6, RAW_SQL, count_orders()).await;
    assert_eq!(
        other.refusal(),
        None,
        "another caller has buckets of their own"
    );
    app.stop().await.unwrap();
    // the requests answered 429 never reached MCP: no entries of theirs
    let ran = |tool: &str| (tool.to_owned(), "ok".to_owned(), None);
    assert_eq!(
        audit.entries(),
        [
            ran(RAW_SQL),
            ran(RAW_SQL),
            ran("store_performance"),
            ran(RAW_SQL)
        ]
    );
}

/// rmcp's client, with or without a session: a refused call is an HTTP
/// error that keeps the status and `Retry-After`, and the client goes on.
#[tokio::test]
async fn rmcp_clients_get_the_429_and_its_retry_after_with_or_without_a_session() {
    let db = Arc::new(TestDb::seeded().await);
    for sessions in [false, true] {
        let app = spawn_app_with(db.clone(), |s| {
            s.sessions = sessions;
            s.rate_limits = limits(&["--raw-sql-rate-limit", "0.05:2"]);
        })
        .await;
        let client = as_caller(&app, ONLINE).await;
        for _ in 0..2 {
            let ran = call(&client, RAW_SQL, count_orders()).await;
            assert_eq!(ran.is_error, Some(false), "{}", text(&ran));
        }
        let request = CallToolRequestParams::new(RAW_SQL)
            .with_arguments(count_orders().as_object().unwrap().clone());
        let Err(rmcp::ServiceError::TransportSend(error)) = client.call_tool(request).await else {
            panic!("sessions {sessions}: a refused call is an HTTP error for rmcp's client")
        };
        let Some(StreamableHttpError::HttpStatus(status)) = error
            .error
            .downcast_ref::<StreamableHttpError<reqwest::Error>>()
        else {
            panic!("sessions {sessions}: {error:?}")
        };
        assert_eq!(status.status, 429);
        let retry_after: u64 = status.retry_after.as_deref().unwrap().parse().unwrap();
        assert!((1..=20).contains(&retry_after), "{retry_after}");
        let after = call(&client, "store_performance", json!({})).await;
        assert_eq!(after.is_error, Some(false), "{}", text(&after));
        client.cancel().await.unwrap();
        app.stop().await.unwrap();
    }
}

/// A token's roles and scopes choose its limits: the most generous that one
/// of them sets, else the global one.
#[tokio::test]
async fn the_roles_and_scopes_of_a_token_choose_its_limits() {
    let app = spawn_jwt_app_with(
        Arc::new(TestDb::seeded().await),
        sqlmcp::auth::ClaimNames::default(),
        |s| {
            s.rate_limits = limits(&[
                "--rate-limit",
                "0.05:1",
                "--rate-limit-for",
                "batch=off,sales:sql=0.05:3",
            ])
        },
    )
    .await;
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let cases = [
        (SEATTLE, json!({"scope": "sales:read"}), 1),
        (REDMOND, json!({"scope": "sales:read sales:sql"}), 3),
        (
            ONLINE,
            json!({"scope": "sales:read", "roles": ["batch"]}),
            6,
        ),
    ];
    for (subject, extra, allowed) in cases {
        let mut claims = claims(subject, "sqlmcp", JWT_ISSUER, 300);
        claims
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let bearer = format!(
            "Bearer {}",
            token(claims, jsonwebtoken::Algorithm::HS256, &key)
        );
        let client = client(
            &app.url,
            &[("authorization", &bearer)],
            rmcp::model::ProtocolVersion::V_2025_11_25,
        )
        .await;
        let mut ran = 0;
        while ran < 6 {
            let request = CallToolRequestParams::new("get_current_utc_date");
            match client.call_tool(request).await {
                Ok(result) if result.is_error == Some(false) => ran += 1,
                other => {
                    assert!(format!("{other:?}").contains("429"), "{other:?}");
                    break;
                }
            }
        }
        assert_eq!(ran, allowed, "{extra}");
        client.cancel().await.unwrap();
    }
    app.stop().await.unwrap();
}

/// With `--max-concurrent-calls 2`, a caller with two calls running is
/// refused a third until one ends, here by the caller going away; others
/// are not.
#[tokio::test]
async fn a_caller_at_the_cap_is_refused_until_a_call_ends_even_by_the_caller_leaving() {
    let db = Arc::new(TestDb::seeded().await);
    let app = spawn_app_with(db.clone(), |s| {
        s.rate_limits = limits(&["--max-concurrent-calls", "2"])
    })
    .await;
    let mcp = Mcp::of(&app);
    // calls that read products wait for the lock
    let lock = TableLock::take(&db, "retail.products").await;
    let drill = json!({"sku": "PWR-DRL-1001"});
    let leaving = mcp
        .request(SEATTLE, 1, "product_details", drill.clone())
        .timeout(Duration::from_secs(2))
        .send();
    let leaving = tokio::spawn(leaving);
    let staying = tokio::spawn({
        let mcp = mcp.clone();
        async move { mcp.call(SEATTLE, 2, "product_details", drill).await }
    });
    // refused at the door once both run (a call that raced them past the
    // door is refused by the handler instead)
    let at_cap = poll(Duration::from_secs(10), async || {
        let answer = mcp
            .call(SEATTLE, 3, "get_current_utc_date", json!({}))
            .await;
        let message = answer.refusal().filter(|_| answer.status == 429)?;
        Some((answer.retry_after, message))
    })
    .await
    .expect("two calls running: a third is refused");
    assert_eq!(
        at_cap,
        (
            Some("1".to_owned()),
            "concurrency limit: this server allows 2 calls at once per caller; \
             retry when one of yours has finished"
                .to_owned()
        )
    );
    let other = mcp.call(REDMOND, 4, "store_performance", json!({})).await;
    assert_eq!(other.refusal(), None, "{}", other.body);

    assert!(leaving.await.unwrap().is_err(), "the client gave up");
    let freed = poll(Duration::from_secs(10), async || {
        let answer = mcp
            .call(SEATTLE, 5, "get_current_utc_date", json!({}))
            .await;
        (answer.refusal().is_none()).then_some(())
    })
    .await;
    assert!(freed.is_some(), "the slot of the caller who left came back");
    lock.release().await;
    let stayed = staying.await.unwrap();
    assert_eq!(stayed.refusal(), None, "{}", stayed.body);
    app.stop().await.unwrap();
}

/// Calls until `attempt` gives an answer, for at most `within`.
pub(crate) async fn poll<T>(
    within: Duration,
    mut attempt: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(answer) = attempt().await {
            return Some(answer);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Six calls at once against a cap of two: exactly two run, and each of the
/// other four is refused, at the door or (when it raced a running call
/// past the door) by the handler with a tool error; `/metrics` counts them
/// by limit and budget, never by caller.
#[tokio::test]
async fn calls_racing_past_the_cap_are_refused_at_the_door_or_by_the_handler_and_counted() {
    let db = Arc::new(TestDb::seeded().await);
    let app = spawn_app_with(db.clone(), |s| {
        s.rate_limits = limits(&[
            "--max-concurrent-calls",
            "9",
            "--max-concurrent-raw-sql",
            "2",
        ])
    })
    .await;
    let mcp = Mcp::of(&app);
    let before = refusals(&mcp, "concurrency", "raw_sql").await;
    let lock = TableLock::take(&db, "retail.products").await;
    let sql = json!({"postgresql_query": "SELECT count(*) AS n FROM retail.products"});
    let calls: Vec<_> = (1..=6)
        .map(|id| {
            let (mcp, sql) = (mcp.clone(), sql.clone());
            tokio::spawn(async move { mcp.call(SEATTLE, id, RAW_SQL, sql).await })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while calls.iter().filter(|c| c.is_finished()).count() < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (mut at_the_door, mut in_the_handler, mut running) = (0, 0, Vec::new());
    for call in calls {
        if !call.is_finished() {
            running.push(call);
            continue;
        }
        let answer = call.await.unwrap();
        let expected = "concurrency limit: raw SQL allows 2 calls at once per caller; \
                        retry when one of yours has finished";
        assert_eq!(
            answer.refusal().as_deref(),
            Some(expected),
            "{}",
            answer.body
        );
        match answer.status {
            429 => at_the_door += 1,
            _ => in_the_handler += 1,
        }
    }
    println!("refused at the door: {at_the_door}, by the handler: {in_the_handler}");
    assert_eq!(running.len(), 2, "exactly the cap runs");
    lock.release().await;
    for call in running {
        let answer = call.await.unwrap();
        assert_eq!(answer.refusal(), None, "{}", answer.body);
    }
    let after = refusals(&mcp, "concurrency", "raw_sql").await;
    assert!(after >= before + 4, "{before} → {after}");
    assert!(
        !mcp.metrics().await.contains(SEATTLE),
        "no caller ids in /metrics"
    );
    app.stop().await.unwrap();
}

/// `sqlmcp_rate_limited_calls_total` for one limit and budget. The
/// recorder is shared by every server of the test binary, so callers
/// compare before and after with at least.
async fn refusals(mcp: &Mcp, limit: &str, budget: &str) -> u64 {
    let exposition = mcp.metrics().await;
    let series = exposition
        .lines()
        .find(|line| {
            line.starts_with("sqlmcp_rate_limited_calls_total{")
                && line.contains(&format!(r#"limit="{limit}""#))
                && line.contains(&format!(r#"budget="{budget}""#))
        })
        .unwrap_or_else(|| panic!("no series for {limit} and {budget} in\n{exposition}"));
    series.rsplit(' ').next().unwrap().parse().unwrap()
}

/// Over stdio there is no door: the handler refuses with a tool error that
/// names the limit and when to retry, and the audit log records the refusal.
/// The flags reach it from the command line.
#[tokio::test]
async fn over_stdio_a_call_over_a_limit_is_a_tool_error_that_names_it() {
    let db = TestDb::seeded().await;
    let audit = AuditLines::new();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlmcp"))
        .args(["serve", "--stdio", "--caller", SEATTLE])
        .args([
            "--raw-sql-rate-limit",
            "0.05:1",
            "--max-concurrent-calls",
            "4",
        ])
        .args(["--model-dir", crate::helpers::model_dir().to_str().unwrap()])
        .args(["--database-url", &crate::helpers::url_of(&db.app_config())])
        .args(["--audit-log", audit.0.to_str().unwrap()])
        .env_remove("SQLMCP_AUDIT_DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("sqlmcp-tests", "0"),
    )
    .serve((child.stdout.take().unwrap(), child.stdin.take().unwrap()))
    .await
    .expect("the stdio client initialises");
    let first = call(&client, RAW_SQL, count_orders()).await;
    assert_eq!(first.is_error, Some(false), "{}", text(&first));
    let second = call(&client, RAW_SQL, count_orders()).await;
    assert_eq!(second.is_error, Some(true));
    assert!(
        text(&second)
            .starts_with("rate limit: raw SQL allows 0.05 calls/s per caller (burst 1); retry in "),
        "{}",
        text(&second)
    );
    let curated = call(&client, "store_performance", json!({})).await;
    assert_eq!(curated.is_error, Some(false), "{}", text(&curated));
    client.cancel().await.unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
    // the audit log has the refusal, with its class
    let refused = Some("rate_limit".to_owned());
    assert_eq!(
        audit.entries(),
        [
            (RAW_SQL.to_owned(), "ok".to_owned(), None),
            (RAW_SQL.to_owned(), "refused".to_owned(), refused),
            ("store_performance".to_owned(), "ok".to_owned(), None),
        ]
    );
}

/// A caller flooding the server: `tasks` concurrent loops of calls while
/// `flooding` is on, from a thread and an HTTP client of their own, as
/// another client would be. Each loop retries 50 ms after a refusal:
/// retrying at once would measure how the test's own client shares two
/// cores with the server, not how the server shares itself among callers.
struct Flood {
    flooding: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    stopped: tokio::sync::oneshot::Receiver<[u64; 3]>,
}

/// What became of the flood's calls.
const RAN: usize = 0;
const AT_THE_DOOR: usize = 1;
const IN_THE_HANDLER: usize = 2;

impl Flood {
    fn start(url: &str, caller: &'static str, tasks: usize) -> Flood {
        let flooding = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (report, stopped) = tokio::sync::oneshot::channel();
        let mcp = Mcp {
            http: reqwest::Client::new(),
            url: url.to_owned(),
        };
        let (on, off) = (flooding.clone(), stop.clone());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let tally = runtime.block_on(async {
                let tally: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
                let loops: Vec<_> = (0..tasks)
                    .map(|n| {
                        let (mcp, on, off, tally) =
                            (mcp.clone(), on.clone(), off.clone(), tally.clone());
                        tokio::spawn(flood_loop(mcp, caller, n, on, off, tally))
                    })
                    .collect();
                for task in loops {
                    task.await.unwrap();
                }
                [RAN, AT_THE_DOOR, IN_THE_HANDLER].map(|n| tally[n].load(Ordering::Relaxed))
            });
            let _ = report.send(tally);
        });
        Flood {
            flooding,
            stop,
            stopped,
        }
    }

    fn set(&self, on: bool) {
        self.flooding.store(on, Ordering::Relaxed);
    }

    /// Stops the flood; what became of its calls.
    async fn stop(self) -> [u64; 3] {
        self.stop.store(true, Ordering::Relaxed);
        self.stopped.await.expect("the flood's thread reports")
    }
}

/// One of the flood's loops: half of them call a curated tool, half raw SQL,
/// so that both budgets see the flood.
async fn flood_loop(
    mcp: Mcp,
    caller: &str,
    n: usize,
    flooding: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    tally: Arc<[AtomicU64; 3]>,
) {
    let (tool, arguments) = match n % 2 {
        0 => ("product_details", json!({"sku": "PWR-DRL-1001"})),
        _ => (
            RAW_SQL,
            json!({"postgresql_query": "SELECT count(*) AS n FROM retail.products"}),
        ),
    };
    while !stop.load(Ordering::Relaxed) {
        if !flooding.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let answer = mcp.call(caller, 1, tool, arguments.clone()).await;
        let outcome = match (answer.status, answer.refusal()) {
            (_, None) => RAN,
            (429, Some(_)) => AT_THE_DOOR,
            (_, Some(_)) => IN_THE_HANDLER,
        };
        tally[outcome].fetch_add(1, Ordering::Relaxed);
        if outcome != RAN {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `samples` calls of the victim, one every 125 ms (8 a second, under its
/// limit of 10): how long each took. None is refused.
async fn latencies(
    victim: &rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>,
    samples: usize,
) -> Vec<Duration> {
    let mut taken = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let result = call(victim, "product_details", json!({"sku": "PWR-DRL-1001"})).await;
        taken.push(started.elapsed());
        assert_eq!(result.is_error, Some(false), "{}", text(&result));
        tokio::time::sleep(Duration::from_millis(125).saturating_sub(started.elapsed())).await;
    }
    taken
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// One caller floods with 16 concurrent loops of calls; another caller's
/// median latency stays within twice its baseline. The baseline is
/// measured in the same test, in phases that alternate with the flood's,
/// so that the machine's own load (other builds, other tests) weighs on
/// both alike. On a multi-threaded runtime, as the server runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_flooding_leaves_another_callers_latency_within_twice_its_baseline() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| {
        s.rate_limits = limits(&[
            "--rate-limit",
            "10:10",
            "--max-concurrent-calls",
            "2",
            "--raw-sql-rate-limit",
            "2:2",
            "--max-concurrent-raw-sql",
            "1",
        ])
    })
    .await;
    let mcp = Mcp::of(&app);
    let before = all_refusals(&mcp).await;
    let victim = as_caller(&app, REDMOND).await;
    let flood = Flood::start(&app.url, HEAD_OFFICE, 16);
    let flood_started = Instant::now();
    latencies(&victim, 5).await; // connections made, statements prepared
    let (mut baseline, mut flooded) = (Vec::new(), Vec::new());
    let mut flood_time = Duration::ZERO;
    // short phases, so that a change in the machine's load falls on both
    for _round in 0..8 {
        flood.set(false);
        tokio::time::sleep(Duration::from_millis(100)).await;
        baseline.extend(latencies(&victim, 6).await);
        flood.set(true);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(100)).await;
        flooded.extend(latencies(&victim, 6).await);
        flood_time += started.elapsed();
    }
    let [ran, at_the_door, in_the_handler] = flood.stop().await;
    let flood_lived = flood_started.elapsed();
    let refused = at_the_door + in_the_handler;
    let (baseline, flooded) = (median(baseline), median(flooded));
    println!(
        "victim's median latency: {baseline:?} alone, {flooded:?} under the flood; \
         the flood: {:.0} calls/s for {flood_time:?}, {ran} ran, {at_the_door} refused at the door, \
         {in_the_handler} by the handler",
        (ran + refused) as f64 / flood_time.as_secs_f64()
    );
    assert!(refused > 5 * ran, "the flood was mostly refused");
    // at most the burst and 10 a second, raw SQL included
    assert!(
        ran as f64 <= 10.0 + 10.0 * flood_lived.as_secs_f64(),
        "{ran} ran in {flood_lived:?}"
    );
    assert!(
        flooded <= baseline * 2,
        "the victim's median latency went from {baseline:?} to {flooded:?} under the flood"
    );
    let after = all_refusals(&mcp).await;
    assert!(after >= before + refused, "{before} + {refused} > {after}");
    victim.cancel().await.unwrap();
    app.stop().await.unwrap();
}

/// Refusals of every limit and budget, so far.
async fn all_refusals(mcp: &Mcp) -> u64 {
    let mut total = 0;
    for (limit, budget) in [
        ("rate", "all_tools"),
        ("concurrency", "all_tools"),
        ("rate", "raw_sql"),
        ("concurrency", "raw_sql"),
    ] {
        total += refusals(mcp, limit, budget).await;
    }
    total
}
