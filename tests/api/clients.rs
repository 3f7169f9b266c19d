//! The official MCP clients and the MCP conformance suite against the real
//! server on the real database, in every protocol revision it serves
//! (2026-07-28, 2025-11-25, 2025-06-18):
//! - the Python SDK 2.x in its three negotiation modes (`auto` probes
//!   `server/discover`, a pinned `2026-07-28` skips the probe, `legacy` runs
//!   `initialize`), the Python SDK 1.x, and the TypeScript SDK's v2 client
//!   (the same three modes) and v1 client, over Streamable HTTP, stateless
//!   and with `--sessions`; the Python SDK 2.x over stdio too. Each one must
//!   negotiate the expected revision, list every tool, get the rows its
//!   caller may see (Seattle's store alone, or every store for head office)
//!   exactly as rmcp's own client gets them, and get a refused raw SQL
//!   statement back as a tool error; on 2026-07-28, the cache hints too;
//! - every conformance scenario that applies to what sqlmcp implements, at
//!   each revision both the scenario and sqlmcp know ([`SCENARIOS`] says
//!   which apply and why the others do not).
//!
//! The clients and the suite are installed by `scripts/mcp-clients` (which
//! `scripts/test` runs) under `.dev/clients/`; the client programs are in
//! `tests/clients/`. A test whose client is missing fails and says so.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use sqlmcp::auth::ToolScopes;
use sqlmcp::caller::{Caller, CallerId, Principal};
use sqlmcp::server::PROTOCOL_VERSIONS;
use sqlmcp::server::cache_hints::{CALLERS_LIST, SHARED_UNTIL_RESTART};

use crate::helpers::server::{TestApp, as_caller, call, spawn_app, spawn_app_with};
use crate::helpers::{HEAD_OFFICE, REDMOND, SEATTLE, TestDb, model_dir, url_of};

/// The revision without a handshake, and the one `initialize` agrees to with
/// a client that asks for the newest one that has it.
const MODERN: &str = "2026-07-28";
const HANDSHAKE: &str = "2025-11-25";

/// How long one client or one conformance scenario may take.
const RUN_LIMIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The clients

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sdk {
    /// `mcp` 2.x from PyPI.
    Python2,
    /// `mcp` 1.x from PyPI.
    Python1,
    /// `@modelcontextprotocol/client` (the TypeScript SDK v2).
    TypeScript2,
    /// `@modelcontextprotocol/sdk` (the TypeScript SDK v1).
    TypeScript1,
}

impl Sdk {
    /// The interpreter and the client program.
    fn command(self) -> (PathBuf, PathBuf) {
        match self {
            Sdk::Python2 => (
                installed("python-mcp2/bin/python"),
                program("python_sdk2.py"),
            ),
            Sdk::Python1 => (
                installed("python-mcp1/bin/python"),
                program("python_sdk1.py"),
            ),
            Sdk::TypeScript2 => (node(), program("ts_sdk2.mjs")),
            Sdk::TypeScript1 => (node(), program("ts_sdk1.mjs")),
        }
    }

    /// Whether the client gives the cache hints of a 2026-07-28 result to
    /// its caller (the 1.x SDKs predate them).
    fn shows_cache_hints(self) -> bool {
        matches!(self, Sdk::Python2 | Sdk::TypeScript2)
    }
}

/// A client in a negotiation mode, and the revision it must end up with.
#[derive(Debug, Clone, Copy)]
struct Client {
    sdk: Sdk,
    mode: &'static str,
    negotiates: &'static str,
}

const fn client(sdk: Sdk, mode: &'static str, negotiates: &'static str) -> Client {
    Client {
        sdk,
        mode,
        negotiates,
    }
}

/// Every client and mode, over HTTP.
const CLIENTS: [Client; 8] = [
    client(Sdk::Python2, "auto", MODERN),
    client(Sdk::Python2, MODERN, MODERN),
    client(Sdk::Python2, "legacy", HANDSHAKE),
    client(Sdk::Python1, "legacy", HANDSHAKE),
    client(Sdk::TypeScript2, "auto", MODERN),
    client(Sdk::TypeScript2, MODERN, MODERN),
    client(Sdk::TypeScript2, "legacy", HANDSHAKE),
    client(Sdk::TypeScript1, "legacy", HANDSHAKE),
];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path under `.dev/clients/`, which must exist.
fn installed(relative: &str) -> PathBuf {
    let path = repo().join(".dev/clients").join(relative);
    assert!(
        path.exists(),
        "{} is not installed: run scripts/mcp-clients (scripts/test runs it) to install the MCP \
         clients and the conformance suite under .dev/clients/",
        path.display()
    );
    path
}

/// The Node.js that runs the TypeScript clients and the suite, once their
/// packages are where the committed programs import them from.
pub(crate) fn node() -> PathBuf {
    let node = installed("bin/node");
    installed("node/node_modules/@modelcontextprotocol");
    assert!(
        repo().join("tests/clients/node_modules").exists(),
        "tests/clients/node_modules is missing: run scripts/mcp-clients"
    );
    node
}

fn program(name: &str) -> PathBuf {
    repo().join("tests/clients").join(name)
}

/// Runs `command` to its end within [`RUN_LIMIT`]; its stdout, or a panic
/// that shows what it said.
pub(crate) async fn run_to_end(what: &str, command: &mut tokio::process::Command) -> String {
    let output = tokio::time::timeout(RUN_LIMIT, command.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {RUN_LIMIT:?}"))
        .unwrap_or_else(|err| panic!("{what}: cannot run: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// What `client` reports after it connected to `target` (a URL, or `stdio`)
/// as `who` (the `x-rls-user-id`, or the command line of a stdio server),
/// listed the tools and made `calls`.
async fn report(client: Client, target: &str, who: &str, calls: &Value) -> Value {
    let (interpreter, program) = client.sdk.command();
    let what = format!("{:?} in mode {}", client.sdk, client.mode);
    let stdout = run_to_end(
        &what,
        tokio::process::Command::new(interpreter)
            .arg(program)
            .args([target, who, client.mode, &calls.to_string()]),
    )
    .await;
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|err| panic!("{what} printed no report ({err}):\n{stdout}"))
}

/// The calls every client makes: the stores the caller may see, the orders
/// of those stores through raw SQL, and raw SQL that must be refused.
fn calls() -> Value {
    json!([
        {"name": "store_performance", "arguments": {}},
        {"name": "execute_sales_query", "arguments": {"postgresql_query": "SELECT count(*) AS orders FROM retail.orders"}},
        {"name": "execute_sales_query", "arguments": {"postgresql_query": "DELETE FROM retail.orders"}},
    ])
}

/// What rmcp's own client gets for the first two [`calls`] as `who`.
async fn expected(app: &TestApp, who: &str) -> [Value; 2] {
    let rmcp = as_caller(app, who).await;
    let stores = call(&rmcp, "store_performance", json!({})).await;
    let orders = call(
        &rmcp,
        "execute_sales_query",
        calls()[1]["arguments"].clone(),
    )
    .await;
    rmcp.cancel().await.unwrap();
    [
        stores.structured_content.unwrap(),
        orders.structured_content.unwrap(),
    ]
}

/// Every tool's name, in the order the server lists them.
fn all_tool_names() -> Vec<String> {
    let mut names: Vec<String> = sqlmcp::tools::definitions()
        .iter()
        .map(|tool| tool.name.to_owned())
        .collect();
    names.sort();
    names
}

fn store_ids(structured: &Value) -> Vec<i64> {
    let mut ids: Vec<i64> = structured["rows"]
        .as_array()
        .unwrap_or_else(|| panic!("no rows in {structured}"))
        .iter()
        .map(|row| row["store_id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids
}

/// Checks what every client must report, whatever the transport: the
/// revision, every tool, the caller's rows as `expected` (rmcp's own
/// client's), a refusal as a tool error, and on 2026-07-28 the cache hints.
fn check_report(client: Client, report: &Value, expected: &[Value; 2], stores: &[i64]) {
    let context = format!("{client:?}: {report:#}");
    assert_eq!(report["protocolVersion"], client.negotiates, "{context}");
    let tools: Vec<String> = serde_json::from_value(report["tools"].clone()).unwrap();
    assert_eq!(tools, all_tool_names(), "{context}");
    let calls = report["calls"].as_array().unwrap();
    for (i, expected) in expected.iter().enumerate() {
        assert_eq!(calls[i]["isError"], false, "{context}");
        assert_eq!(&calls[i]["structured"], expected, "call {i}: {context}");
    }
    assert_eq!(store_ids(&calls[0]["structured"]), stores, "{context}");
    let refused = &calls[2];
    assert_eq!(refused["isError"], true, "{context}");
    assert!(
        refused["text"][0]
            .as_str()
            .unwrap()
            .contains("only SELECT or EXPLAIN allowed, not DELETE"),
        "{context}"
    );
    if !report["serverInfo"].is_null() {
        assert_eq!(report["serverInfo"]["name"], "sqlmcp", "{context}");
    }

    // cache hints: the tool list is the caller's own and fixed until a
    // restart; a 2025 client may ignore them, but never sees others
    let list_hints = json!({"ttlMs": CALLERS_LIST.ttl_ms, "cacheScope": "private"});
    let modern = client.negotiates == MODERN;
    let must_show = modern && client.sdk.shows_cache_hints();
    if must_show || report["toolsListHints"]["ttlMs"] != Value::Null {
        assert_eq!(report["toolsListHints"], list_hints, "{context}");
    }
    // discover: what a 2026-07-28 client negotiated from, the same for
    // every caller
    if modern {
        let versions: Vec<&str> = PROTOCOL_VERSIONS.iter().map(|v| v.as_str()).collect();
        assert_eq!(
            report["discover"],
            json!({
                "supportedVersions": versions,
                "ttlMs": SHARED_UNTIL_RESTART.ttl_ms,
                "cacheScope": "public",
            }),
            "{context}"
        );
    } else {
        assert_eq!(report["discover"], Value::Null, "{context}");
    }
}

/// Every client in every mode, as Seattle's store manager and as head
/// office, against the stateless server (the default).
#[tokio::test]
async fn each_official_client_negotiates_its_revision_and_sees_only_its_callers_rows() {
    let app = spawn_app().await;
    let identities = [
        (SEATTLE, vec![1]),
        (HEAD_OFFICE, (1..=8).collect::<Vec<i64>>()),
    ];
    let mut expectations = BTreeMap::new();
    for (who, _) in &identities {
        expectations.insert(*who, expected(&app, who).await);
    }
    let [seattle_orders, head_office_orders] =
        [SEATTLE, HEAD_OFFICE].map(|who| expectations[who][1]["r"][0][0].as_i64().unwrap());
    assert!(seattle_orders < head_office_orders);

    let calls = calls();
    let runs = CLIENTS.iter().flat_map(|client| {
        identities
            .iter()
            .map(move |(who, stores)| (*client, *who, stores.clone()))
    });
    let reports: Vec<(Client, &str, Vec<i64>, Value)> = futures_util::stream::iter(runs)
        .map(|(client, who, stores)| {
            let (url, calls) = (&app.url, &calls);
            async move { (client, who, stores, report(client, url, who, calls).await) }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    assert_eq!(reports.len(), CLIENTS.len() * identities.len());
    for (client, who, stores, report) in &reports {
        check_report(*client, report, &expectations[who], stores);
        assert!(
            !report["session"].as_bool().unwrap_or(false),
            "stateless: {report}"
        );
    }
    app.stop().await.unwrap();
}

/// With `--sessions`, the 2025 clients get a session and 2026-07-28 clients
/// are served without one, as that revision has none.
#[tokio::test]
async fn with_sessions_2025_clients_keep_a_session_and_2026_clients_need_none() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| s.sessions = true).await;
    let expected = expected(&app, REDMOND).await;
    let calls = calls();
    let reports: Vec<(Client, Value)> = futures_util::stream::iter(CLIENTS)
        .map(|client| {
            let (url, calls) = (&app.url, &calls);
            async move { (client, report(client, url, REDMOND, calls).await) }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    for (client, report) in &reports {
        check_report(*client, report, &expected, &[6]);
        // the Python SDK 2.x does not say whether it got a session
        if let Some(session) = report["session"].as_bool() {
            assert_eq!(session, client.negotiates != MODERN, "{client:?}: {report}");
        }
    }
    app.stop().await.unwrap();
}

/// The binary over stdio, launched by the Python SDK 2.x in each mode, as
/// Seattle's store manager.
#[tokio::test]
async fn over_stdio_the_python_sdk_negotiates_each_revision() {
    let db = Arc::new(TestDb::seeded().await);
    let app = spawn_app_with(db.clone(), |_| {}).await;
    let expected = expected(&app, SEATTLE).await;
    let command = json!([
        env!("CARGO_BIN_EXE_sqlmcp"),
        "serve",
        "--stdio",
        "--caller",
        SEATTLE,
        "--model-dir",
        model_dir(),
        "--database-url",
        url_of(&db.app_config()),
    ])
    .to_string();
    let calls = calls();
    for client in CLIENTS.iter().filter(|c| c.sdk == Sdk::Python2) {
        let report = report(*client, "stdio", &command, &calls).await;
        check_report(*client, &report, &expected, &[1]);
    }
    app.stop().await.unwrap();
}

// ---------------------------------------------------------------------------
// The conformance suite

/// The server configurations a scenario runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    /// The default: stateless Streamable HTTP.
    Stateless,
    /// `--sessions`.
    Sessions,
}

const BOTH: &[Mode] = &[Mode::Stateless, Mode::Sessions];
/// Scenarios about sessions; against a stateless server they find none and
/// exercise nothing.
const SESSIONS: &[Mode] = &[Mode::Sessions];

enum Verdict {
    /// Run at every revision both the scenario and sqlmcp know, against each
    /// of `modes`. Every check must pass but those of `known`, which must
    /// fail (a check of `known` that passes is stale: move it out).
    Run {
        modes: &'static [Mode],
        known: &'static [(&'static str, &'static str)],
    },
    /// Not run, and why.
    Excluded(&'static str),
}

const fn run(modes: &'static [Mode]) -> Verdict {
    Verdict::Run { modes, known: &[] }
}

const FIXTURE: &str = "calls a fixture tool of the suite's reference server (test_*); a database \
                       server has its own tools, and tests/api/clients.rs calls those with the \
                       official clients";
const NO_CLIENT_INPUT: &str = "needs a tool that asks the client for input (sampling, elicitation, \
                               roots): no sqlmcp tool does";
const NO_SUBSCRIPTIONS: &str = "sqlmcp's resources change only with the rows or a new build, and \
                                it declares no subscriptions (a stateless server has no one to \
                                notify)";
const FIXTURE_RESOURCE: &str = "reads a fixture resource of the suite's reference server \
                                (test://…); tests/api/resources.rs reads sqlmcp's own through a \
                                real client";
const FIXTURE_PROMPT: &str = "gets a fixture prompt of the suite's reference server (test_*); \
                              tests/api/prompts.rs gets sqlmcp's own prompts through a real \
                              client";
const LOGGING: &str = "sqlmcp declares no logging capability (its logs are its own; MCP logging \
                       is deprecated in 2026-07-28, SEP-2577)";
const EXTENSION: &str = "an extension sqlmcp does not declare (tasks, skills)";

/// Every server scenario of the suite (`conformance list --server`), in its
/// order, and whether it applies to sqlmcp. The one place to enable one.
const SCENARIOS: &[(&str, Verdict)] = &[
    ("server-initialize", run(BOTH)),
    ("server-session-lifecycle", run(SESSIONS)),
    (
        "server-stateless",
        Verdict::Run {
            modes: BOTH,
            known: &[
                ("sep-2575-server-rejects-undeclared-capability", FIXTURE),
                ("sep-2575-missing-capability-http-400", FIXTURE),
                (
                    "sep-2575-http-server-no-independent-requests-on-stream",
                    FIXTURE,
                ),
                ("sep-2575-server-no-log-without-loglevel", FIXTURE),
            ],
        },
    ),
    ("logging-set-level", Verdict::Excluded(LOGGING)),
    ("ping", run(BOTH)),
    ("completion-complete", Verdict::Excluded(FIXTURE_PROMPT)),
    ("tools-list", run(BOTH)),
    ("tools-call-simple-text", Verdict::Excluded(FIXTURE)),
    ("tools-call-image", Verdict::Excluded(FIXTURE)),
    ("tools-call-audio", Verdict::Excluded(FIXTURE)),
    ("tools-call-embedded-resource", Verdict::Excluded(FIXTURE)),
    ("tools-call-mixed-content", Verdict::Excluded(FIXTURE)),
    ("tools-call-with-logging", Verdict::Excluded(LOGGING)),
    ("tools-call-error", Verdict::Excluded(FIXTURE)),
    ("tools-call-with-progress", Verdict::Excluded(FIXTURE)),
    ("tools-call-sampling", Verdict::Excluded(NO_CLIENT_INPUT)),
    ("tools-call-elicitation", Verdict::Excluded(NO_CLIENT_INPUT)),
    ("json-schema-2020-12", Verdict::Excluded(FIXTURE)),
    (
        "elicitation-sep1034-defaults",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    // the resumption check needs the fixture tool test_reconnection and only
    // warns without it; the priming and retry checks run on any tool
    ("server-sse-polling", run(SESSIONS)),
    ("server-sse-multiple-streams", run(SESSIONS)),
    (
        "elicitation-sep1330-enums",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    ("resources-list", run(BOTH)),
    ("resources-read-text", Verdict::Excluded(FIXTURE_RESOURCE)),
    ("resources-read-binary", Verdict::Excluded(FIXTURE_RESOURCE)),
    (
        "resources-templates-read",
        Verdict::Excluded(FIXTURE_RESOURCE),
    ),
    ("resources-subscribe", Verdict::Excluded(NO_SUBSCRIPTIONS)),
    ("resources-unsubscribe", Verdict::Excluded(NO_SUBSCRIPTIONS)),
    ("sep-2164-resource-not-found", run(BOTH)),
    ("sep-2640-skills-directory", Verdict::Excluded(EXTENSION)),
    ("sep-2640-skills-enumeration", Verdict::Excluded(EXTENSION)),
    ("sep-2640-skills-manifest", Verdict::Excluded(EXTENSION)),
    ("prompts-list", run(BOTH)),
    ("prompts-get-simple", Verdict::Excluded(FIXTURE_PROMPT)),
    ("prompts-get-with-args", Verdict::Excluded(FIXTURE_PROMPT)),
    (
        "prompts-get-embedded-resource",
        Verdict::Excluded(FIXTURE_PROMPT),
    ),
    ("prompts-get-with-image", Verdict::Excluded(FIXTURE_PROMPT)),
    ("dns-rebinding-protection", run(BOTH)),
    ("caching", run(BOTH)),
    ("http-header-validation", run(BOTH)),
    (
        "http-custom-header-server-validation",
        Verdict::Excluded(
            "needs a tool with x-mcp-header parameters (Mcp-Param-* headers): sqlmcp's tools \
             declare none",
        ),
    ),
    ("tasks-lifecycle", Verdict::Excluded(EXTENSION)),
    ("tasks-capability-negotiation", Verdict::Excluded(EXTENSION)),
    ("tasks-wire-fields", Verdict::Excluded(EXTENSION)),
    ("tasks-request-state-removal", Verdict::Excluded(EXTENSION)),
    ("tasks-mrtr-input", Verdict::Excluded(EXTENSION)),
    ("tasks-request-headers", Verdict::Excluded(EXTENSION)),
    ("tasks-dispatch-and-envelope", Verdict::Excluded(EXTENSION)),
    ("tasks-status-notifications", Verdict::Excluded(EXTENSION)),
    ("tasks-required-task-error", Verdict::Excluded(EXTENSION)),
    ("tasks-mrtr-composition", Verdict::Excluded(EXTENSION)),
    (
        "input-required-result-basic-elicitation",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    (
        "input-required-result-basic-sampling",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    (
        "input-required-result-basic-list-roots",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    (
        "input-required-result-request-state",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    (
        "input-required-result-multiple-input-requests",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    (
        "input-required-result-multi-round",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    (
        "input-required-result-missing-input-response",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    (
        "input-required-result-non-tool-request",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    (
        "input-required-result-result-type",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    // no InputRequiredResult where none belongs, and malformed input
    // responses refused: true of any server
    ("input-required-result-unsupported-methods", run(BOTH)),
    (
        "input-required-result-tampered-state",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    (
        "input-required-result-capability-check",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    (
        "input-required-result-ignore-extra-params",
        Verdict::Excluded(NO_CLIENT_INPUT),
    ),
    ("input-required-result-validate-input", run(BOTH)),
];

/// The suite's entry point.
fn suite() -> PathBuf {
    node();
    installed("node/node_modules/@modelcontextprotocol/conformance/dist/index.js")
}

/// The suite's server scenarios and the revisions each is for.
async fn listed_scenarios() -> BTreeMap<String, Vec<String>> {
    let listing = run_to_end(
        "conformance list",
        tokio::process::Command::new(node())
            .arg(suite())
            .args(["list", "--server"]),
    )
    .await;
    listing
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- "))
        .map(|entry| {
            let (name, versions) = entry.split_once(' ').unwrap_or((entry, ""));
            let versions = versions
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(str::to_owned)
                .collect();
            (name.to_owned(), versions)
        })
        .collect()
}

/// One scenario at one revision against one server: what went wrong (none
/// when it passed), and what the suite said.
async fn run_scenario(
    url: &str,
    scenario: &str,
    version: &str,
    known: &[(&str, &str)],
    out: &Path,
) -> (Vec<String>, String) {
    let out = out.join(format!("{scenario}-{version}"));
    let mut command = tokio::process::Command::new(node());
    command.arg(suite()).args([
        "server",
        "--url",
        url,
        "--scenario",
        scenario,
        "--spec-version",
        version,
        "--output-dir",
        out.to_str().unwrap(),
    ]);
    let output = tokio::time::timeout(RUN_LIMIT, command.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{scenario} at {version}: no end within {RUN_LIMIT:?}"))
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let results = std::fs::read_dir(&out)
        .ok()
        .and_then(|mut dirs| dirs.next())
        .and_then(|dir| std::fs::read_to_string(dir.ok()?.path().join("checks.json")).ok());
    let Some(results) = results else {
        return (vec!["the suite wrote no checks.json".to_owned()], said);
    };
    let checks: Vec<Value> = serde_json::from_str(&results).unwrap();
    let mut wrong = Vec::new();
    let mut passed = 0;
    for check in &checks {
        let id = check["id"].as_str().unwrap_or_default();
        let status = check["status"].as_str().unwrap_or_default();
        let expected_to_fail = known.iter().any(|(known, _)| *known == id);
        match (status, expected_to_fail) {
            ("SUCCESS", false) => passed += 1,
            ("SUCCESS", true) => wrong.push(format!(
                "{id} passes now: take it out of the known failures in SCENARIOS"
            )),
            ("FAILURE", false) => wrong.push(format!(
                "{id} failed: {}",
                check["errorMessage"].as_str().unwrap_or_default()
            )),
            _ => {}
        }
    }
    if passed == 0 {
        wrong.push("no check passed: the scenario exercised nothing here".to_owned());
    }
    for (id, _) in known {
        if !checks.iter().any(|check| check["id"] == *id) {
            wrong.push(format!("{id} (a known failure) is no longer checked"));
        }
    }
    (wrong, said)
}

/// Runs every scenario of [`SCENARIOS`] that applies to a server in `mode`,
/// at each revision both the scenario and sqlmcp know, four at a time.
async fn conformance(mode: Mode, url: &str) {
    let listed = listed_scenarios().await;
    let ours: BTreeSet<&str> = SCENARIOS.iter().map(|(name, _)| *name).collect();
    let theirs: BTreeSet<&str> = listed.keys().map(String::as_str).collect();
    assert_eq!(
        ours, theirs,
        "SCENARIOS must name exactly the suite's server scenarios: decide for each new one \
         whether it applies"
    );
    let served: Vec<&str> = PROTOCOL_VERSIONS.iter().map(|v| v.as_str()).collect();
    let out = std::env::temp_dir().join(format!(
        "sqlmcp-conformance-{}-{mode:?}-{:x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let mut runs = Vec::new();
    for (scenario, verdict) in SCENARIOS {
        let Verdict::Run { modes, known } = verdict else {
            continue;
        };
        let versions: Vec<&str> = listed[*scenario]
            .iter()
            .map(String::as_str)
            .filter(|v| served.contains(v))
            .collect();
        assert!(
            !versions.is_empty(),
            "{scenario} applies but is for no revision sqlmcp serves ({:?})",
            listed[*scenario]
        );
        if modes.contains(&mode) {
            for version in versions {
                runs.push((*scenario, version, *known));
            }
        }
    }
    let results: Vec<_> = futures_util::stream::iter(runs)
        .map(|(scenario, version, known)| {
            let out = &out;
            async move {
                let (wrong, said) = run_scenario(url, scenario, version, known, out).await;
                (scenario, version, wrong, said)
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let _ = std::fs::remove_dir_all(&out);
    let mut failures = String::new();
    for (scenario, version, wrong, said) in &results {
        if wrong.is_empty() {
            println!("conformance {mode:?}: {scenario} at {version}: passed");
        } else {
            failures.push_str(&format!(
                "\n=== {scenario} at {version} ({mode:?}):\n  {}\n--- the suite said:\n{said}",
                wrong.join("\n  ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "conformance scenarios failed against the {mode:?} server:{failures}"
    );
    println!("conformance {mode:?}: {} runs passed", results.len());
    let mut excluded: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (scenario, verdict) in SCENARIOS {
        if let Verdict::Excluded(why) = verdict {
            excluded.entry(why).or_default().push(scenario);
        }
    }
    for (why, scenarios) in excluded {
        println!("conformance: not run ({why}): {}", scenarios.join(", "));
    }
}

#[tokio::test]
async fn the_conformance_suite_passes_every_scenario_that_applies_stateless() {
    let app = conformance_server(false).await;
    conformance(Mode::Stateless, &app.url).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_conformance_suite_passes_every_scenario_that_applies_with_sessions() {
    let app = conformance_server(true).await;
    conformance(Mode::Sessions, &app.url).await;
    app.stop().await.unwrap();
}

/// The suite sends no identity, so its server names a default caller (the
/// Seattle manager, as an operator could with `--default-caller`): reads
/// and completions then run as someone, under row-level security.
async fn conformance_server(sessions: bool) -> TestApp {
    spawn_app_with(Arc::new(TestDb::seeded().await), |s| {
        s.sessions = sessions;
        s.default_caller = Some(Caller::by_id(
            CallerId::for_tests(SEATTLE),
            Principal::Default,
            ToolScopes::new(&[]).unwrap().every_scope(),
        ));
    })
    .await
}
