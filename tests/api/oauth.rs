//! The server as an OAuth 2.1 protected resource (`--oauth-issuer`): a real
//! authorization server on loopback publishes its metadata and its keys
//! (and rotates them, and goes down), and real MCP clients and plain HTTP
//! requests present its tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use rmcp::model::ProtocolVersion;
use serde_json::{Value, json};
use sqlmcp::auth::{Authenticator, JwtKey, JwtSettings, JwtVerifier};

use crate::helpers::server::{TestApp, call, client, jwt_settings, spawn_app_with};
use crate::helpers::{SEATTLE, TestDb};

/// The audience tokens must name: this server's `/mcp` as clients reach it.
const RESOURCE: &str = "https://mcp.zava.test/mcp";

/// An authorization server: RFC 8414 metadata and a JWKS, on loopback.
struct AuthorizationServer {
    url: String,
    state: Arc<Published>,
}

/// What the authorization server publishes, and how often it was asked.
struct Published {
    jwks: std::sync::RwLock<Value>,
    up: AtomicBool,
    jwks_fetches: AtomicUsize,
    issuer: std::sync::OnceLock<String>,
}

impl AuthorizationServer {
    async fn start(jwks: Value) -> AuthorizationServer {
        let state = Arc::new(Published {
            jwks: std::sync::RwLock::new(jwks),
            up: AtomicBool::new(true),
            jwks_fetches: AtomicUsize::new(0),
            issuer: std::sync::OnceLock::new(),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        state.issuer.set(url.clone()).unwrap();
        let router = axum::Router::new()
            .route(
                "/.well-known/oauth-authorization-server",
                axum::routing::get(metadata),
            )
            .route("/jwks", axum::routing::get(keys))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        AuthorizationServer { url, state }
    }

    fn rotate_to(&self, jwks: Value) {
        *self.state.jwks.write().unwrap() = jwks;
    }

    fn set_up(&self, up: bool) {
        self.state.up.store(up, Ordering::SeqCst);
    }

    fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    /// A token of this issuer for `caller`, signed by the key `kid` of
    /// `pem` (a fixture).
    fn token(&self, caller: &str, kid: &str, pem: &str, tweak: impl FnOnce(&mut Value)) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({"sub": caller, "aud": RESOURCE, "iss": self.url,
                                "exp": now + 300, "nbf": now - 10});
        tweak(&mut claims);
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(kid.to_owned());
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(&fixture(pem)).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }
}

impl Published {
    /// A 503, while the authorization server is down.
    fn down(&self) -> Option<axum::response::Response> {
        (!self.up.load(Ordering::SeqCst)).then(|| StatusCode::SERVICE_UNAVAILABLE.into_response())
    }
}

/// RFC 8414 metadata: the issuer and where its keys are.
async fn metadata(State(state): State<Arc<Published>>) -> axum::response::Response {
    if let Some(down) = state.down() {
        return down;
    }
    let issuer = state.issuer.get().unwrap();
    axum::Json(json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks")})).into_response()
}

/// The JWKS, counted, with a cache lifetime.
async fn keys(State(state): State<Arc<Published>>) -> axum::response::Response {
    if let Some(down) = state.down() {
        return down;
    }
    state.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let jwks = state.jwks.read().unwrap().clone();
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        axum::Json(jwks),
    )
        .into_response()
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/jwt/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn jwks(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

/// A server whose tokens come from `issuer`, asking it again for unknown
/// `kid`s at most every `refetch_every`.
async fn spawn_resource(issuer: &AuthorizationServer, refetch_every: Duration) -> TestApp {
    spawn_resource_revoking(issuer, refetch_every, None).await
}

/// [`spawn_resource`], refusing the `jti`s of the file `revoked`.
async fn spawn_resource_revoking(
    issuer: &AuthorizationServer,
    refetch_every: Duration,
    revoked: Option<&std::path::Path>,
) -> TestApp {
    let key = JwtKey::Issuers {
        urls: std::slice::from_ref(&issuer.url),
        refetch_every,
    };
    let verifier = JwtVerifier::new(JwtSettings {
        revoked,
        ..jwt_settings(key, "", RESOURCE)
    })
    .unwrap();
    spawn_app_with(Arc::new(TestDb::seeded().await), |s| {
        s.authenticator = Arc::new(Authenticator::Jwt(Box::new(verifier)))
    })
    .await
}

/// `tools/list` with `token`: the status, the challenge and the body.
async fn list_tools(app: &TestApp, token: Option<&str>) -> (StatusCode, String, String) {
    let mut request = reqwest::Client::new()
        .post(&app.url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, challenge, response.text().await.unwrap())
}

/// The store a caller with `token` sees, through a real MCP client.
async fn store_seen(app: &TestApp, token: &str) -> Value {
    let client = client(
        &app.url,
        &[("authorization", &format!("Bearer {token}"))],
        ProtocolVersion::V_2025_11_25,
    )
    .await;
    let result = call(&client, "store_performance", json!({})).await;
    client.cancel().await.unwrap();
    result.structured_content.unwrap()["rows"][0]["store_id"].clone()
}

#[tokio::test]
async fn an_oauth_client_finds_the_authorization_server_and_only_its_tokens_for_this_server_work() {
    let issuer = AuthorizationServer::start(jwks("jwks.json")).await;
    let app = spawn_resource(&issuer, Duration::from_secs(10)).await;
    let base = app.url.trim_end_matches("/mcp").to_owned();

    // RFC 9728's metadata, at the path with and without the resource's
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let metadata: Value = reqwest::get(format!("{base}{path}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(metadata["resource"], RESOURCE, "{path}");
        assert_eq!(
            metadata["authorization_servers"],
            json!([issuer.url]),
            "{path}"
        );
        assert_eq!(metadata["bearer_methods_supported"], json!(["header"]));
        assert_eq!(
            metadata["scopes_supported"],
            json!(["sales:read", "sales:sql"])
        );
    }
    // a 401 says where that metadata is
    let (status, challenge, _) = list_tools(&app, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge,
        r#"Bearer realm="sqlmcp", resource_metadata="https://mcp.zava.test/.well-known/oauth-protected-resource/mcp", scope="sales:read sales:sql""#
    );

    let good = issuer.token(SEATTLE, "test-rsa", "rsa-private.pem", |_| {});
    assert_eq!(store_seen(&app, &good).await, 1);

    let now = chrono::Utc::now().timestamp();
    let refused = [
        (
            "wrong audience",
            issuer.token(SEATTLE, "test-rsa", "rsa-private.pem", |c| {
                c["aud"] = json!("https://other.example/mcp")
            }),
        ),
        (
            "wrong issuer",
            issuer.token(SEATTLE, "test-rsa", "rsa-private.pem", |c| {
                c["iss"] = json!("https://issuer.example")
            }),
        ),
        (
            "expired",
            issuer.token(SEATTLE, "test-rsa", "rsa-private.pem", |c| {
                c["exp"] = json!(now - 120)
            }),
        ),
        // the claimed issuer's metadata, a key it never published
        (
            "bad signature",
            issuer.token(SEATTLE, "test-rsa", "rsa2-private.pem", |_| {}),
        ),
    ];
    for (reason, token) in refused {
        let (status, challenge, body) = list_tools(&app, Some(&token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reason}");
        assert!(body.contains(reason), "{reason}: {body}");
        assert!(
            challenge.contains(r#"resource_metadata="https://mcp.zava.test/"#)
                && challenge.contains(r#"error="invalid_token""#),
            "{challenge}"
        );
    }
}

#[tokio::test]
async fn rotated_keys_are_fetched_and_a_flood_of_unknown_kids_does_not_hammer_the_issuer() {
    let issuer = AuthorizationServer::start(jwks("jwks.json")).await;
    let refetch_every = Duration::from_secs(2);
    let app = spawn_resource(&issuer, refetch_every).await;
    // signed up front: signing is slow in a debug build, checking is not
    let flood: Vec<Vec<String>> = (0..2)
        .map(|round| {
            (0..50)
                .map(|n| {
                    let kid = format!("made-up-{round}-{n}");
                    issuer.token(SEATTLE, &kid, "rsa2-private.pem", |_| {})
                })
                .collect()
        })
        .collect();
    let old = issuer.token(SEATTLE, "test-rsa", "rsa-private.pem", |_| {});
    assert_eq!(store_seen(&app, &old).await, 1);

    // the issuer rotates: the new key is fetched on its first token (once
    // the refetch interval since the last fetch has passed), and the old
    // key, gone from the issuer, is gone here too
    issuer.rotate_to(jwks("rotated-jwks.json"));
    tokio::time::sleep(refetch_every + Duration::from_millis(200)).await;
    let new = issuer.token(SEATTLE, "test-rsa-2", "rsa2-private.pem", |_| {});
    assert_eq!(store_seen(&app, &new).await, 1);
    let (status, _, body) = list_tools(&app, Some(&old)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("unknown `kid`"), "{body}");

    // a hundred made-up kids, fifty at a time: the issuer is asked at most
    // once per refetch interval, however many come
    let started = std::time::Instant::now();
    let before = issuer.jwks_fetches();
    for round in &flood {
        let answers =
            futures_util::future::join_all(round.iter().map(|token| list_tools(&app, Some(token))))
                .await;
        assert!(
            answers
                .iter()
                .all(|(status, _, _)| *status == StatusCode::UNAUTHORIZED)
        );
    }
    let fetches = issuer.jwks_fetches() - before;
    let intervals = started.elapsed().as_secs_f64() / refetch_every.as_secs_f64();
    assert!(
        fetches as f64 <= 1.0 + intervals.floor(),
        "{fetches} fetches for 100 unknown kids in {:?}",
        started.elapsed()
    );
    println!(
        "100 unknown kids in {:?}: {fetches} fetches",
        started.elapsed()
    );
    // and the current key still works
    assert_eq!(store_seen(&app, &new).await, 1);
}

#[tokio::test]
async fn an_issuer_that_is_down_costs_nothing_with_its_keys_cached_and_does_not_stop_start_up() {
    // warm: the keys fetched before keep working, also after a fetch failed
    let issuer = AuthorizationServer::start(jwks("jwks.json")).await;
    let refetch_every = Duration::from_secs(1);
    let app = spawn_resource(&issuer, refetch_every).await;
    let good = issuer.token(SEATTLE, "test-rsa", "rsa-private.pem", |_| {});
    assert_eq!(store_seen(&app, &good).await, 1);
    issuer.set_up(false);
    let unknown = issuer.token(SEATTLE, "not-yet-published", "rsa2-private.pem", |_| {});
    let (status, _, _) = list_tools(&app, Some(&unknown)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(store_seen(&app, &good).await, 1);

    // cold: the server starts without the issuer, says why tokens fail,
    // and takes them once the issuer is back
    let cold = spawn_resource(&issuer, refetch_every).await;
    let (status, _, body) = list_tools(&cold, Some(&good)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("could not be fetched yet"), "{body}");
    let ready = reqwest::get(cold.url.replace("/mcp", "/readyz"))
        .await
        .unwrap();
    assert_eq!(
        ready.status(),
        200,
        "the server is ready without the issuer"
    );
    issuer.set_up(true);
    tokio::time::sleep(refetch_every + Duration::from_millis(200)).await;
    assert_eq!(store_seen(&cold, &good).await, 1);
}

#[tokio::test]
async fn a_revoked_token_is_refused_without_a_restart() {
    let issuer = AuthorizationServer::start(jwks("jwks.json")).await;
    let dir = std::env::temp_dir().join(format!("sqlmcp-oauth-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("revoked");
    std::fs::write(&file, "# nothing revoked yet\n").unwrap();
    let app = spawn_resource_revoking(&issuer, Duration::from_secs(10), Some(&file)).await;
    let leaked = issuer.token(SEATTLE, "test-rsa", "rsa-private.pem", |c| {
        c["jti"] = json!("leaked-1")
    });
    let other = issuer.token(SEATTLE, "test-rsa", "rsa-private.pem", |c| {
        c["jti"] = json!("kept-1")
    });
    assert_eq!(store_seen(&app, &leaked).await, 1);

    // the file changes; within the recheck interval the token is refused
    std::fs::write(&file, "leaked-1 # revoked\n").unwrap();
    tokio::time::sleep(sqlmcp::auth::revocation::RECHECK + Duration::from_millis(200)).await;
    let (status, _, body) = list_tools(&app, Some(&leaked)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(body.contains("revoked"), "{body}");
    assert_eq!(store_seen(&app, &other).await, 1, "only that token");

    // taken off the list, it works again
    std::fs::write(&file, "").unwrap();
    tokio::time::sleep(sqlmcp::auth::revocation::RECHECK + Duration::from_millis(200)).await;
    assert_eq!(store_seen(&app, &leaked).await, 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
