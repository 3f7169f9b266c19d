//! The server end to end: a real MCP client over Streamable HTTP (and a
//! spawned binary over stdio) against the real server on a free port.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult, ProtocolVersion};
use serde_json::{Value, json};
use sqlmcp::caller::CallerId;
use sqlmcp::server::{Application, Settings};

use crate::helpers::server::{
    JWT_SECRET, as_caller, call, claims, client, settings, spawn_app, spawn_app_with,
    spawn_jwt_app, text, token,
};
use crate::helpers::{HEAD_OFFICE, ONLINE, REDMOND, SEATTLE, TableLock, TestDb};

#[tokio::test]
async fn lists_and_calls_every_tool_with_structured_results_under_each_protocol_version() {
    let app = spawn_app().await;
    for version in [ProtocolVersion::V_2025_06_18, ProtocolVersion::V_2025_11_25] {
        let client = client(&app.url, &[("x-rls-user-id", HEAD_OFFICE)], version.clone()).await;
        let info = client.peer_info().unwrap();
        assert_eq!(info.protocol_version, version);
        assert!(
            info.instructions
                .as_deref()
                .unwrap()
                .contains("get_multiple_table_schemas")
        );
        let tools = client.list_tools(None).await.unwrap().tools;
        let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted, "a deterministic order");
        assert_eq!(names.len(), 10);
        for tool in &tools {
            assert!(tool.output_schema.is_some(), "{}", tool.name);
            assert_eq!(
                tool.annotations.as_ref().unwrap().read_only_hint,
                Some(true)
            );
            let arguments = match tool.name.as_ref() {
                "get_multiple_table_schemas" => json!({"table_names": ["retail.orders"]}),
                "execute_sales_query" => {
                    json!({"postgresql_query": "SELECT count(*) FROM retail.orders"})
                }
                "semantic_search_products" => {
                    json!({"query_description": "something to cut copper pipe"})
                }
                _ => json!({}),
            };
            let result = call(&client, &tool.name, arguments).await;
            assert_eq!(
                result.is_error,
                Some(false),
                "{}: {}",
                tool.name,
                text(&result)
            );
            let structured = result.structured_content.clone().unwrap();
            assert_eq!(
                serde_json::from_str::<Value>(&text(&result)).unwrap(),
                structured,
                "the text is the same JSON"
            );
            let schema =
                serde_json::Value::Object(tool.output_schema.as_ref().unwrap().as_ref().clone());
            assert!(
                jsonschema::validator_for(&schema)
                    .unwrap()
                    .is_valid(&structured),
                "{}",
                tool.name
            );
        }
        let search = call(
            &client,
            "semantic_search_products",
            json!({"query_description": "something to cut copper pipe", "max_rows": 3}),
        )
        .await;
        let structured = search.structured_content.unwrap();
        assert_eq!(
            structured["embedding_model"],
            "sentence-transformers/all-MiniLM-L6-v2"
        );
        assert_eq!(
            structured["rows"][0]["sku"], "PLB-TLS-1001",
            "{structured:#}"
        );
        client.cancel().await.unwrap();
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn without_an_embedding_model_semantic_search_says_so() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| s.embedder = None).await;
    let client = as_caller(&app, SEATTLE).await;
    let search = call(
        &client,
        "semantic_search_products",
        json!({"query_description": "a drill"}),
    )
    .await;
    assert_eq!(search.is_error, Some(true));
    assert!(
        text(&search).contains("needs an embedding model"),
        "{}",
        text(&search)
    );
    client.cancel().await.unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn tool_failures_are_results_and_protocol_faults_are_errors() {
    let app = spawn_app().await;
    let client = as_caller(&app, SEATTLE).await;
    let bad = call(&client, "top_products", json!({"limit": 500})).await;
    assert_eq!(bad.is_error, Some(true));
    assert_eq!(
        text(&bad),
        "invalid argument `limit`: must be at most 100, got 500"
    );
    let unknown = client
        .call_tool(CallToolRequestParams::new("drop_everything"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        unknown.contains("-32602") && unknown.contains("unknown tool `drop_everything`"),
        "{unknown}"
    );
    client.cancel().await.unwrap();
    app.stop().await.unwrap();
}

/// Each identity sees its own store through every tool that reads store data.
#[tokio::test]
async fn every_tool_answers_each_identity_with_its_own_rows() {
    let app = spawn_app().await;
    let (seattle, redmond, head_office) = (
        as_caller(&app, SEATTLE).await,
        as_caller(&app, REDMOND).await,
        as_caller(&app, HEAD_OFFICE).await,
    );
    let stores_in = |result: &CallToolResult| -> Vec<i64> {
        let mut ids: Vec<i64> = result.structured_content.as_ref().unwrap()["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["store_id"].as_i64().unwrap())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    for tool in ["store_performance", "low_stock"] {
        assert_eq!(
            stores_in(&call(&seattle, tool, json!({})).await),
            [1],
            "{tool}"
        );
        assert_eq!(
            stores_in(&call(&redmond, tool, json!({})).await),
            [6],
            "{tool}"
        );
        assert_eq!(
            stores_in(&call(&head_office, tool, json!({})).await),
            [1, 2, 3, 4, 5, 6, 7, 8],
            "{tool}"
        );
    }
    for tool in ["top_products", "revenue_by_month", "sales_by_category"] {
        let rows = |result: CallToolResult| result.structured_content.unwrap()["rows"].clone();
        let (s, r, h) = (
            rows(call(&seattle, tool, json!({})).await),
            rows(call(&redmond, tool, json!({})).await),
            rows(call(&head_office, tool, json!({})).await),
        );
        assert!(
            s != r && s != h && r != h,
            "{tool}: identities see different numbers"
        );
    }
    let stock = |result: CallToolResult| {
        result.structured_content.unwrap()["rows"][0]["units_in_stock"]
            .as_i64()
            .unwrap()
    };
    let args = json!({"sku": "PWR-DRL-1001"});
    assert!(
        stock(call(&seattle, "product_details", args.clone()).await)
            < stock(call(&head_office, "product_details", args).await)
    );
    for c in [seattle, redmond, head_office] {
        c.cancel().await.unwrap();
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_call_without_identity_is_refused_unless_a_default_is_configured() {
    let db = Arc::new(TestDb::seeded().await);
    let app = spawn_app_with(db.clone(), |_| {}).await;
    let anonymous = client(&app.url, &[], ProtocolVersion::V_2025_11_25).await;
    assert_eq!(
        anonymous.list_tools(None).await.unwrap().tools.len(),
        10,
        "listing needs no identity"
    );
    let refused = call(&anonymous, "store_performance", json!({})).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(
        text(&refused).starts_with("refused: this call names no caller"),
        "{}",
        text(&refused)
    );
    anonymous.cancel().await.unwrap();
    app.stop().await.unwrap();

    let with_default = spawn_app_with(db, |s| {
        s.default_caller = Some(CallerId::parse(ONLINE).unwrap())
    })
    .await;
    let anonymous = client(&with_default.url, &[], ProtocolVersion::V_2025_11_25).await;
    let result = call(&anonymous, "store_performance", json!({})).await;
    assert_eq!(result.structured_content.unwrap()["rows"][0]["store_id"], 8);
    anonymous.cancel().await.unwrap();
    with_default.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_callers_never_see_each_others_rows() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| s.pool_size = 2).await;
    let mut calls = Vec::new();
    for round in 0..8 {
        for (caller, store) in [(SEATTLE, 1), (REDMOND, 6), (ONLINE, 8)] {
            let url = app.url.clone();
            calls.push(tokio::spawn(async move {
                let client = client(
                    &url,
                    &[("x-rls-user-id", caller)],
                    ProtocolVersion::V_2025_11_25,
                )
                .await;
                let result = call(&client, "store_performance", json!({})).await;
                let rows = result.structured_content.unwrap()["rows"].clone();
                client.cancel().await.unwrap();
                assert_eq!(rows.as_array().unwrap().len(), 1, "round {round}, {caller}");
                assert_eq!(rows[0]["store_id"], store, "round {round}, {caller}");
            }));
        }
    }
    for call in calls {
        call.await.unwrap();
    }
    app.stop().await.unwrap();
}

/// One connection, alternating identities: nothing of one call survives
/// into the next.
#[tokio::test]
async fn a_pool_of_one_alternating_identities_leaks_nothing() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| s.pool_size = 1).await;
    let clients = [
        (as_caller(&app, SEATTLE).await, Some(1)),
        (
            client(&app.url, &[], ProtocolVersion::V_2025_11_25).await,
            None,
        ),
        (as_caller(&app, REDMOND).await, Some(6)),
    ];
    for _ in 0..4 {
        for (client, store) in &clients {
            let result = call(client, "store_performance", json!({})).await;
            match store {
                Some(store) => assert_eq!(
                    result.structured_content.unwrap()["rows"][0]["store_id"],
                    *store
                ),
                None => assert_eq!(result.is_error, Some(true)),
            }
        }
    }
    app.stop().await.unwrap();
}

/// More callers than connections: the extra caller waits a bounded time and
/// is told the server is busy; the pool recovers once the connection frees.
#[tokio::test]
async fn callers_beyond_the_pool_are_told_it_is_busy_and_the_pool_recovers() {
    let db = Arc::new(TestDb::seeded().await);
    let app = spawn_app_with(db.clone(), |s| {
        s.pool_size = 1;
        s.pool_wait = Duration::from_millis(300);
    })
    .await;
    // The owner locks the products table, so a call that reads it holds the
    // server's only connection until the lock goes.
    let lock = TableLock::take(&db, "retail.products").await;
    let first = as_caller(&app, SEATTLE).await;
    let blocked = tokio::spawn(async move {
        let result = call(&first, "product_details", json!({"sku": "PWR-DRL-1001"})).await;
        (result, first)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    let second = as_caller(&app, REDMOND).await;
    let started = std::time::Instant::now();
    let busy = call(&second, "store_performance", json!({})).await;
    assert_eq!(busy.is_error, Some(true));
    assert!(
        text(&busy).contains("the server is busy: no database connection became free within 0.3s"),
        "{}",
        text(&busy)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited a bounded time"
    );

    lock.release().await;
    let (result, first) = blocked.await.unwrap();
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    let again = call(&second, "store_performance", json!({})).await;
    assert_eq!(again.is_error, Some(false), "{}", text(&again));
    first.cancel().await.unwrap();
    second.cancel().await.unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_identities_and_foreign_hosts_are_refused_at_the_door() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let post = |host: Option<&str>, identity: &str| {
        let mut request = http
            .post(&app.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("x-rls-user-id", identity)
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
        if let Some(host) = host {
            request = request.header("host", host);
        }
        request.send()
    };
    let malformed = post(None, "' OR 1=1 --").await.unwrap();
    assert_eq!(malformed.status(), 400);
    assert!(
        malformed
            .text()
            .await
            .unwrap()
            .contains("x-rls-user-id header is not a UUID")
    );
    assert_eq!(
        post(Some("evil.example.com"), SEATTLE)
            .await
            .unwrap()
            .status(),
        403
    );
    assert_eq!(post(None, SEATTLE).await.unwrap().status(), 200);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn jwt_mode_accepts_verified_tokens_and_refuses_everything_else() {
    use base64::Engine as _;
    let app = spawn_jwt_app().await;
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let hs = jsonwebtoken::Algorithm::HS256;

    let good = token(
        claims(SEATTLE, "sqlmcp", "https://issuer.test", 300),
        hs,
        &key,
    );
    let client = client(
        &app.url,
        &[("authorization", &format!("Bearer {good}"))],
        ProtocolVersion::V_2025_11_25,
    )
    .await;
    let result = call(&client, "store_performance", json!({})).await;
    assert_eq!(result.structured_content.unwrap()["rows"][0]["store_id"], 1);
    client.cancel().await.unwrap();

    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims(HEAD_OFFICE, "sqlmcp", "https://issuer.test", 300))
    );
    let other_key =
        jsonwebtoken::EncodingKey::from_secret(b"another secret, also long enough for HS256!!");
    let cases = [
        (
            "expired",
            token(
                claims(SEATTLE, "sqlmcp", "https://issuer.test", -3_600),
                hs,
                &key,
            ),
        ),
        (
            "wrong audience",
            token(
                claims(SEATTLE, "someone-else", "https://issuer.test", 300),
                hs,
                &key,
            ),
        ),
        (
            "wrong issuer",
            token(
                claims(SEATTLE, "sqlmcp", "https://evil.test", 300),
                hs,
                &key,
            ),
        ),
        (
            "bad signature",
            token(
                claims(HEAD_OFFICE, "sqlmcp", "https://issuer.test", 300),
                hs,
                &other_key,
            ),
        ),
        ("never accepts (such as none)", unsigned),
        (
            "the `sub` claim is not a UUID",
            token(
                claims("admin", "sqlmcp", "https://issuer.test", 300),
                hs,
                &key,
            ),
        ),
    ];
    let http = reqwest::Client::new();
    for (expected, token) in cases {
        let response = http
            .post(&app.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(token)
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{expected}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with(r#"Bearer realm="sqlmcp", error="invalid_token""#),
            "{challenge}"
        );
        assert!(
            response.text().await.unwrap().contains(expected),
            "{expected}"
        );
    }
    let missing = http
        .post(&app.url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["www-authenticate"],
        r#"Bearer realm="sqlmcp""#
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = spawn_app().await;
    let base = app.url.trim_end_matches("/mcp").to_owned();
    let client = as_caller(&app, SEATTLE).await;
    call(&client, "low_stock", json!({})).await;
    call(&client, "low_stock", json!({"limit": 0})).await;
    client.cancel().await.unwrap();
    let get = |path: &str| reqwest::get(format!("{base}{path}"));
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    let ready = get("/readyz").await.unwrap();
    assert_eq!(ready.status(), 200);
    let metrics = get("/metrics").await.unwrap().text().await.unwrap();
    for needle in [
        r#"sqlmcp_tool_calls_total{tool="low_stock",outcome="ok"}"#,
        r#"sqlmcp_tool_calls_total{tool="low_stock",outcome="error"}"#,
        r#"sqlmcp_tool_call_duration_seconds_bucket{tool="low_stock""#,
        "sqlmcp_pool_max_connections 4",
        "sqlmcp_pool_connections_idle",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn refuses_to_start_in_unsafe_or_unready_conditions() {
    let db = TestDb::seeded().await;
    let as_owner = Application::build(Settings {
        database: db.owner_config(),
        ..settings(&db)
    })
    .await;
    let err = format!("{:#}", as_owner.err().expect("refused"));
    assert!(
        err.contains("is a superuser, so row-level security would not apply"),
        "{err}"
    );

    let empty = TestDb::empty().await;
    let mut unmigrated = settings(&empty);
    unmigrated.database = empty.app_config();
    let err = format!(
        "{:#}",
        Application::build(unmigrated).await.err().expect("refused")
    );
    assert!(err.contains("run `sqlmcp migrate`"), "{err}");

    let mut wrong_password = settings(&db);
    wrong_password.database.password("not the password");
    let err = format!(
        "{:#}",
        Application::build(wrong_password)
            .await
            .err()
            .expect("refused")
    );
    assert!(err.contains("password authentication failed"), "{err}");

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut busy_port = settings(&db);
    busy_port.bind = taken.local_addr().unwrap();
    let err = format!(
        "{:#}",
        Application::build(busy_port).await.err().expect("refused")
    );
    assert!(
        err.contains("address already in use") || err.contains("Address already in use"),
        "{err}"
    );
    assert!(err.contains("--bind"), "{err}");
}

/// The binary over stdio: JSON-RPC on stdout only, logs on stderr.
#[tokio::test]
async fn stdio_serves_a_launched_client_as_the_configured_caller() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let db = TestDb::seeded().await;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlmcp"))
        .args([
            "serve",
            "--stdio",
            "--log-format",
            "json",
            "--caller",
            REDMOND,
            "--model-dir",
            crate::helpers::model_dir().to_str().unwrap(),
            "--database-url",
            &crate::helpers::url_of(&db.app_config()),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
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
    send(json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})).await;
    let mut next = async || -> Value {
        let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("a line");
        serde_json::from_str(&line)
            .unwrap_or_else(|_| panic!("stdout carries only JSON-RPC, got: {line}"))
    };
    let initialized = next().await;
    assert_eq!(initialized["result"]["protocolVersion"], "2025-06-18");
    assert_eq!(initialized["result"]["serverInfo"]["name"], "sqlmcp");
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"})).await;
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "store_performance", "arguments": {}}})).await;
    let called = next().await;
    assert_eq!(called["id"], 2);
    assert_eq!(
        called["result"]["structuredContent"]["rows"][0]["store_id"], 6,
        "{called}"
    );
    send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})).await;
    assert_eq!(
        next().await["result"]["tools"].as_array().unwrap().len(),
        10
    );
    drop(stdin);
    let mut stderr = child.stderr.take().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "exits when the client closes stdin");

    // one JSON log line per call: tool, caller, duration, rows, never the data
    let mut logs = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut logs)
        .await
        .unwrap();
    let call_line = logs
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["fields"]["message"] == "tool call")
        .unwrap_or_else(|| panic!("no tool call log line in:\n{logs}"));
    let fields = &call_line["fields"];
    assert_eq!(
        (
            fields["tool"].as_str(),
            fields["caller"].as_str(),
            fields["outcome"].as_str()
        ),
        (Some("store_performance"), Some(REDMOND), Some("ok"))
    );
    assert!(
        fields["duration_ms"].is_u64() && fields["rows"] == 1,
        "{call_line}"
    );
    assert!(
        !logs.contains("Zava Retail Redmond"),
        "result data in the logs"
    );
}

#[tokio::test]
async fn shutdown_stops_accepting_and_returns() {
    let app = spawn_app().await;
    let health = app.url.replace("/mcp", "/healthz");
    assert_eq!(reqwest::get(&health).await.unwrap().status(), 200);
    tokio::time::timeout(Duration::from_secs(10), app.stop())
        .await
        .expect("stops within the deadline")
        .unwrap();
    assert!(
        reqwest::get(&health).await.is_err(),
        "nothing listens any more"
    );
}

#[tokio::test]
async fn session_mode_serves_the_same_tools() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| s.sessions = true).await;
    let client = as_caller(&app, REDMOND).await;
    assert_eq!(client.list_tools(None).await.unwrap().tools.len(), 10);
    let result = call(&client, "store_performance", json!({})).await;
    assert_eq!(result.structured_content.unwrap()["rows"][0]["store_id"], 6);
    client.cancel().await.unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn oversized_requests_are_refused() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| {
        s.max_body_bytes = 4_096
    })
    .await;
    let padding = "x".repeat(8_192);
    let response = reqwest::Client::new()
        .post(&app.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-rls-user-id", SEATTLE)
        .body(format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"_meta":{{"pad":"{padding}"}}}}}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn refuses_a_bypassrls_role_and_a_database_from_a_newer_binary() {
    let db = TestDb::seeded().await;
    let role = format!("sqlmcp_bypass_{}", std::process::id());
    let admin = crate::helpers::connect(&crate::helpers::admin_config()).await;
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'bypass' BYPASSRLS"
        ))
        .await
        .unwrap();
    let mut bypassing = settings(&db);
    bypassing.database.user(&role).password("bypass");
    let refused = Application::build(bypassing)
        .await
        .err()
        .map(|e| format!("{e:#}"));
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
    let err = refused.expect("refused");
    assert!(
        err.contains("has BYPASSRLS, so row-level security would not apply"),
        "{err}"
    );

    db.record_migration_from_a_newer_binary().await;
    let err = format!(
        "{:#}",
        Application::build(settings(&db))
            .await
            .err()
            .expect("refused")
    );
    assert!(
        err.contains("migrations this binary does not know (V999__from_the_future)"),
        "{err}"
    );
}

/// A call in flight when shutdown begins still gets its answer.
#[tokio::test]
async fn shutdown_lets_a_call_in_flight_finish() {
    let db = Arc::new(TestDb::seeded().await);
    let mut app = spawn_app_with(db.clone(), |_| {}).await;
    let lock = TableLock::take(&db, "retail.order_items").await;

    let client = as_caller(&app, SEATTLE).await;
    let in_flight = tokio::spawn(async move {
        let result = call(&client, "top_products", json!({"limit": 3})).await;
        client.cancel().await.unwrap();
        result
    });
    tokio::time::sleep(Duration::from_millis(500)).await; // the call is now waiting on the lock
    assert!(!in_flight.is_finished());
    app.begin_stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    lock.release().await;

    let result = tokio::time::timeout(Duration::from_secs(10), in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    assert_eq!(result.structured_content.unwrap()["row_count"], 3);
    tokio::time::timeout(Duration::from_secs(10), app.stopped())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_start_up_error() {
    let db = TestDb::seeded().await;
    let mut unreachable = settings(&db);
    unreachable.database =
        sqlmcp::db::parse_database_url("postgres://store_manager:secret@127.0.0.1:9/none").unwrap();
    let err = format!(
        "{:#}",
        Application::build(unreachable)
            .await
            .err()
            .expect("refused")
    );
    assert!(
        err.contains("cannot connect to PostgreSQL at store_manager@127.0.0.1:9/none"),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
}

/// With `--result-cache-ttl-ms`, a curated tool's answer is kept per tool,
/// arguments and caller for the TTL; other callers, other arguments, raw SQL
/// and a server without the cache see the data as it is.
#[tokio::test]
async fn the_result_cache_keeps_answers_per_tool_arguments_and_caller_for_its_ttl() {
    let db = Arc::new(TestDb::seeded().await);
    let ttl = Duration::from_secs(4);
    let cached = spawn_app_with(db.clone(), |s| {
        s.result_cache = Some(sqlmcp::server::result_cache::Settings {
            ttl,
            max_bytes: 1 << 20,
        })
    })
    .await;
    let uncached = spawn_app_with(db.clone(), |_| {}).await;
    let price = |result: &CallToolResult| {
        assert_eq!(result.is_error, Some(false), "{}", text(result));
        result.structured_content.as_ref().unwrap()["rows"][0]["base_price"].clone()
    };
    let drill = json!({"sku": "PWR-DRL-1001", "limit": 5});
    let (seattle, redmond) = (
        as_caller(&cached, SEATTLE).await,
        as_caller(&cached, REDMOND).await,
    );
    let kept = price(&call(&seattle, "product_details", drill.clone()).await);
    let started = std::time::Instant::now();
    // asked before the update too: the server without the cache, and raw SQL
    let plain = as_caller(&uncached, SEATTLE).await;
    assert_eq!(
        price(&call(&plain, "product_details", drill.clone()).await),
        kept
    );
    let sql = json!({"postgresql_query": "SELECT base_price FROM retail.products WHERE sku = 'PWR-DRL-1001'"});
    let raw_price = |result: CallToolResult| result.structured_content.unwrap()["r"][0][0].clone();
    assert_eq!(
        raw_price(call(&seattle, "execute_sales_query", sql.clone()).await),
        kept
    );
    db.owner()
        .await
        .execute(
            "UPDATE retail.products SET base_price = base_price + 1 WHERE sku = 'PWR-DRL-1001'",
            &[],
        )
        .await
        .unwrap();
    let fresh = price(&call(&plain, "product_details", drill.clone()).await);
    assert_ne!(fresh, kept, "the update changed the price");

    // the same call, with its arguments in another order: the kept answer
    let reordered = json!({"limit": 5, "sku": "PWR-DRL-1001"});
    assert_eq!(
        price(&call(&seattle, "product_details", reordered).await),
        kept
    );
    // another caller, other arguments, raw SQL: the data as it is
    assert_eq!(
        price(&call(&redmond, "product_details", drill.clone()).await),
        fresh
    );
    assert_eq!(
        price(&call(&seattle, "product_details", json!({"sku": "PWR-DRL-1001"})).await),
        fresh
    );
    assert_eq!(
        raw_price(call(&seattle, "execute_sales_query", sql).await),
        fresh
    );
    // failures are not kept
    for _ in 0..2 {
        let refused = call(&seattle, "product_details", json!({"limit": 0})).await;
        assert_eq!(refused.is_error, Some(true));
    }
    assert!(
        started.elapsed() < ttl,
        "the checks above ran within the TTL"
    );

    // concurrent calls with one key run one query
    let head_office = Arc::new(as_caller(&cached, HEAD_OFFICE).await);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = head_office.clone();
            tokio::spawn(async move { call(&client, "low_stock", json!({"limit": 7})).await })
        })
        .collect();
    for handle in calls {
        assert_eq!(handle.await.unwrap().is_error, Some(false));
    }
    let base = cached.url.trim_end_matches("/mcp").to_owned();
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"sqlmcp_result_cache_lookups_total{tool="low_stock",result="miss"} 1"#,
        r#"sqlmcp_result_cache_lookups_total{tool="low_stock",result="hit"} 7"#,
        r#"sqlmcp_result_cache_lookups_total{tool="product_details",result="hit"} 1"#,
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }

    // after the TTL, the data as it is
    tokio::time::sleep((ttl + Duration::from_millis(500)).saturating_sub(started.elapsed())).await;
    assert_eq!(
        price(&call(&seattle, "product_details", drill).await),
        fresh
    );
    cached.stop().await.unwrap();
    uncached.stop().await.unwrap();
}
