//! The binary over stdio, launched the way an MCP client launches it.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{REDMOND, TestDb};

/// Launches `sqlmcp serve --stdio` as Redmond's caller, with JSON logs and
/// every standard stream piped, as an MCP client launches it.
fn launch_stdio_server(db: &TestDb) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sqlmcp"))
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
        .env_remove("SQLMCP_AUDIT_DATABASE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// The binary over stdio: JSON-RPC on stdout only, logs on stderr.
#[tokio::test]
async fn stdio_serves_a_launched_client_as_the_configured_caller() {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let db = TestDb::seeded().await;
    let mut child = launch_stdio_server(&db);
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

    let mut logs = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut logs)
        .await
        .unwrap();
    assert_the_call_is_logged_without_its_data(&logs);
}

/// One JSON log line per call: tool, caller, duration, rows, never the data.
fn assert_the_call_is_logged_without_its_data(logs: &str) {
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
