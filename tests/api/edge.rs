//! The HTTP edge: requests that could mean two things (a repeated identity
//! header, a JSON object with a repeated key) are refused before any tool
//! runs, and slow or idle clients cannot hold the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::server::{
    JWT_SECRET, TestApp, as_caller, call, claims, spawn_app_with, spawn_jwt_app, text, token,
};
use crate::helpers::{HEAD_OFFICE, SEATTLE, TestDb};

/// Posts `body` to /mcp with `headers`, each as its own header line (a name
/// may repeat); the status and the body of the answer.
async fn post(app: &TestApp, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut request = reqwest::Client::new()
        .post(&app.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.body(body.to_owned()).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// A 400 whose body says `message`, with no tool's answer in it.
fn assert_refused(status: u16, body: &str, message: &str) {
    assert_eq!(status, 400, "{body}");
    assert!(body.contains(message), "{body}");
    assert!(!body.contains("structuredContent"), "no tool ran: {body}");
}

const STORE_PERFORMANCE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"store_performance","arguments":{}}}"#;

fn store_of(answer: &str) -> Value {
    let answer: Value = serde_json::from_str(answer).unwrap_or_else(|_| panic!("{answer}"));
    answer["result"]["structuredContent"]["rows"][0]["store_id"].clone()
}

#[tokio::test]
async fn a_repeated_identity_header_is_refused_in_header_mode() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |_| {}).await;
    // a client's own claim first, then the one a trusted proxy appends
    let (status, body) = post(
        &app,
        &[("x-rls-user-id", HEAD_OFFICE), ("x-rls-user-id", SEATTLE)],
        STORE_PERFORMANCE,
    )
    .await;
    assert_refused(status, &body, "more than one x-rls-user-id header");
    // the same id twice is refused too: the rule is one header line
    let (status, _) = post(
        &app,
        &[("x-rls-user-id", SEATTLE), ("x-rls-user-id", SEATTLE)],
        STORE_PERFORMANCE,
    )
    .await;
    assert_eq!(status, 400);
    // Authorization is checked whatever the mode
    let (status, body) = post(
        &app,
        &[
            ("x-rls-user-id", SEATTLE),
            ("authorization", "Bearer a"),
            ("authorization", "Bearer b"),
        ],
        STORE_PERFORMANCE,
    )
    .await;
    assert_refused(status, &body, "more than one Authorization header");

    let (status, body) = post(&app, &[("x-rls-user-id", SEATTLE)], STORE_PERFORMANCE).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(store_of(&body), 1, "{body}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_repeated_authorization_header_is_refused_in_jwt_mode() {
    let app = spawn_jwt_app().await;
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let bearer = |subject: &str| {
        format!(
            "Bearer {}",
            token(
                claims(subject, "sqlmcp", "https://issuer.test", 300),
                jsonwebtoken::Algorithm::HS256,
                &key,
            )
        )
    };
    let (seattle, head_office) = (bearer(SEATTLE), bearer(HEAD_OFFICE));
    let (status, body) = post(
        &app,
        &[("authorization", &head_office), ("authorization", &seattle)],
        STORE_PERFORMANCE,
    )
    .await;
    assert_refused(status, &body, "more than one Authorization header");
    // x-rls-user-id is checked in jwt mode too, though this mode ignores it
    let (status, body) = post(
        &app,
        &[
            ("authorization", &seattle),
            ("x-rls-user-id", SEATTLE),
            ("x-rls-user-id", HEAD_OFFICE),
        ],
        STORE_PERFORMANCE,
    )
    .await;
    assert_refused(status, &body, "more than one x-rls-user-id header");

    let (status, body) = post(&app, &[("authorization", &seattle)], STORE_PERFORMANCE).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(store_of(&body), 1, "{body}");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn json_with_a_repeated_key_is_refused_and_the_key_named() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |_| {}).await;
    let seattle = [("x-rls-user-id", SEATTLE)];
    let refused = |body: &str| -> String {
        let answer: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{body}"));
        assert_eq!(answer["jsonrpc"], "2.0", "{body}");
        assert_eq!(answer["error"]["code"], -32600, "{body}");
        answer["error"]["message"].as_str().unwrap().to_owned()
    };
    let cases = [
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute_sales_query","arguments":{"postgresql_query":"SELECT 1 AS n","postgresql_query":"SELECT 2 AS n"}}}"#,
            r#"duplicate key "postgresql_query" in params.arguments"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"store_performance","arguments":{}}}"#,
            r#"duplicate key "method" in the top-level object"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"store_performance","arguments":{},"_meta":{"trace":[{"span":1},{"span":2,"span":3}]}}}"#,
            r#"duplicate key "span" in params._meta.trace[1]"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute_sales_query","arguments":{"postgresql_query":"SELECT 1 AS n","\u0070ostgresql_query":"SELECT 2 AS n"}}}"#,
            r#"duplicate key "postgresql_query" in params.arguments"#,
        ),
    ];
    for (request, expected) in cases {
        let (status, body) = post(&app, &seattle, request).await;
        assert_eq!(status, 400, "{request}: {body}");
        let message = refused(&body);
        assert!(message.contains(expected), "{message}");
        assert!(!body.contains("result"), "no tool ran: {body}");
    }

    // the same requests without the repeated key still work
    let (status, body) = post(
        &app,
        &seattle,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"execute_sales_query","arguments":{"postgresql_query":"SELECT 2 AS n"}}}"#,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["result"]["isError"], false, "{body}");
    let (status, body) = post(
        &app,
        &seattle,
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"store_performance","arguments":{},"_meta":{"trace":[{"span":1},{"span":2}]}}}"#,
    )
    .await;
    assert_eq!((status, store_of(&body)), (200, json!(1)), "{body}");
    // and so does an MCP client
    let client = as_caller(&app, SEATTLE).await;
    let result = call(&client, "store_performance", json!({})).await;
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    client.cancel().await.unwrap();
    app.stop().await.unwrap();
}

/// What became of a slow connection: when the server closed it, measured
/// from its start; `None` if it was still open at the test's deadline.
async fn closed_after(
    mut stream: TcpStream,
    started: Instant,
    trickle: &[u8],
    deadline: Duration,
) -> Option<Duration> {
    let mut next_byte = trickle.iter();
    let mut buffer = [0u8; 1024];
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    while started.elapsed() < deadline {
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {} // an error answer before the close
            },
            _ = tick.tick() => {
                if let Some(byte) = next_byte.next()
                    && stream.write_all(std::slice::from_ref(byte)).await.is_err()
                {
                    return Some(started.elapsed());
                }
            }
            () = tokio::time::sleep(deadline.saturating_sub(started.elapsed())) => {}
        }
    }
    None
}

/// Slowloris: hundreds of connections send their headers a byte at a time
/// (and a few send nothing). A real caller is still served meanwhile, and
/// the header timeout closes every slow connection.
#[tokio::test]
async fn trickling_headers_neither_starve_callers_nor_stay_open() {
    const TRICKLING: usize = 300;
    const SILENT: usize = 10;
    let header_timeout = Duration::from_secs(1);
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| {
        s.header_timeout = header_timeout
    })
    .await;
    let address = app.address();
    let mut slow = Vec::new();
    for n in 0..TRICKLING + SILENT {
        let stream = TcpStream::connect(address).await.unwrap();
        // from the connection, not from when its task first runs: the
        // server's header timeout starts at the accept
        let connected = Instant::now();
        let trickle: &'static [u8] = if n < TRICKLING {
            b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
        } else {
            b""
        };
        slow.push(tokio::spawn(closed_after(
            stream,
            connected,
            trickle,
            Duration::from_secs(10),
        )));
    }

    let started = Instant::now();
    let client = as_caller(&app, SEATTLE).await;
    let result = call(&client, "store_performance", json!({})).await;
    assert_eq!(result.structured_content.unwrap()["rows"][0]["store_id"], 1);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "served promptly while {TRICKLING} connections trickle: {:?}",
        started.elapsed()
    );
    client.cancel().await.unwrap();

    for (n, connection) in slow.into_iter().enumerate() {
        let closed = connection.await.unwrap();
        let closed = closed.unwrap_or_else(|| panic!("connection {n} was still open after 10 s"));
        assert!(
            closed >= header_timeout - Duration::from_millis(100)
                && closed < Duration::from_secs(5),
            "connection {n} closed after {closed:?}"
        );
    }
    app.stop().await.unwrap();
}

/// Complete headers, then a body a byte at a time: the body timeout answers
/// 408 and closes the connection, although each byte arrives in time for a
/// per-read timeout.
#[tokio::test]
async fn a_trickling_body_is_cut_off_by_the_body_timeout() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| {
        s.body_timeout = Duration::from_secs(1)
    })
    .await;
    let mut stream = TcpStream::connect(app.address()).await.unwrap();
    let body = STORE_PERFORMANCE.as_bytes();
    stream
        .write_all(
            format!(
                "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
                 Accept: application/json, text/event-stream\r\nx-rls-user-id: {SEATTLE}\r\n\
                 Content-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 1024];
    let mut sent = 0;
    let closed = loop {
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "still open after 8 s; answer so far: {}",
            String::from_utf8_lossy(&answer)
        );
        tokio::select! {
            read = stream.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break started.elapsed(),
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            },
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                if sent < body.len() - 1 && stream.write_all(&body[sent..=sent]).await.is_ok() {
                    sent += 1;
                }
            }
        }
    };
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("did not arrive within 1000 ms"), "{answer}");
    assert!(
        closed < Duration::from_secs(3),
        "closed after {closed:?}, having sent {sent} bytes"
    );
    app.stop().await.unwrap();
}

/// With `max_connections` 4 and four idle connections open, a fifth waits
/// in the backlog unanswered; it is served once one of the four closes, and
/// the server serves MCP calls as before once they are all gone.
#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| s.max_connections = 4).await;
    let address = app.address();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(TcpStream::connect(address).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // all four accepted

    let mut fifth = TcpStream::connect(address).await.unwrap();
    fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let waited = tokio::time::timeout(Duration::from_secs(1), fifth.read_to_end(&mut answer)).await;
    assert!(
        waited.is_err(),
        "the fifth connection was served at the cap: {}",
        String::from_utf8_lossy(&answer)
    );

    drop(idle.pop());
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(3), fifth.read_to_end(&mut answer))
        .await
        .expect("served once a connection closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
        "{answer}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    drop(idle);
    let client = as_caller(&app, SEATTLE).await;
    let result = call(&client, "store_performance", json!({})).await;
    assert_eq!(result.is_error, Some(false), "{}", text(&result));
    client.cancel().await.unwrap();
    app.stop().await.unwrap();
}
