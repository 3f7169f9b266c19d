//! MCP over Streamable HTTP with a real client: every tool listed and
//! called under each protocol version, with structured results; a tool's
//! failure is a result and a protocol fault an error; session mode serves
//! the same; requests too large, from a foreign host or with a malformed
//! identity are refused at the door, and callers beyond the pool are told
//! the server is busy.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, ProtocolVersion};
use serde_json::{Value, json};

use crate::helpers::server::{as_caller, call, client, spawn_app, spawn_app_with, text};
use crate::helpers::{HEAD_OFFICE, REDMOND, SEATTLE, TableLock, TestDb};

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

/// A request naming a revision the server does not speak (in the
/// `MCP-Protocol-Version` header) gets a 400 listing those it does, one
/// naming two gets a 400, and a 2026-07-28 request whose `Mcp-Method` or
/// `Mcp-Name` header is missing or contradicts its body gets a 400 with a
/// `HeaderMismatch` error, through every layer of sqlmcp's own.
#[tokio::test]
async fn requests_in_a_version_not_served_or_with_contradicting_headers_are_refused() {
    let app = spawn_app().await;
    let http = reqwest::Client::new();
    let post = |headers: &[(&str, &str)], body: Value| {
        let mut request = http
            .post(&app.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("x-rls-user-id", SEATTLE)
            .json(&body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    let list = json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"});
    let served: Vec<&str> = sqlmcp::server::PROTOCOL_VERSIONS
        .iter()
        .map(|v| v.as_str())
        .collect();
    assert_eq!(served, ["2025-06-18", "2025-11-25", "2026-07-28"]);
    for version in ["2025-03-26", "2024-11-05", "2099-01-01"] {
        let (status, body) = post(&[("mcp-protocol-version", version)], list.clone()).await;
        assert_eq!(status, 400, "{version}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"jsonrpc": "2.0", "id": 9, "error": {
                "code": -32022,
                "message": "Unsupported protocol version",
                "data": {"requested": version, "supported": served},
            }}),
        );
    }
    let (status, body) = post(
        &[
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-protocol-version", "2025-06-18"),
        ],
        list.clone(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    for version in ["2025-06-18", "2025-11-25"] {
        let (status, body) = post(&[("mcp-protocol-version", version)], list.clone()).await;
        assert_eq!(status, 200, "{version}: {body}");
        assert!(body.contains("store_performance"), "{body}");
    }

    let meta = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let call = json!({"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {
        "name": "store_performance", "arguments": {}, "_meta": meta,
    }});
    let modern = [("mcp-protocol-version", "2026-07-28")];
    let refused = [
        vec![("mcp-name", "store_performance")],
        vec![
            ("mcp-method", "tools/list"),
            ("mcp-name", "store_performance"),
        ],
        vec![("mcp-method", "tools/call")],
        vec![("mcp-method", "tools/call"), ("mcp-name", "low_stock")],
    ];
    for headers in refused {
        let (status, body) = post(&[&modern[..], &headers].concat(), call.clone()).await;
        assert_eq!(status, 400, "{headers:?}: {body}");
        let error: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(error["error"]["code"], -32020, "{headers:?}: {body}");
    }
    let (status, body) = post(
        &[
            &modern[..],
            &[
                ("mcp-method", "tools/call"),
                ("mcp-name", "store_performance"),
            ],
        ]
        .concat(),
        call.clone(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        answer["result"]["structuredContent"]["rows"][0]["store_id"], 1,
        "{body}"
    );
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
