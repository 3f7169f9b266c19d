//! The server in the test's own process, on a free port of 127.0.0.1, and a
//! real MCP client for it over Streamable HTTP.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientCapabilities, ClientConfig, Implementation,
    ProtocolVersion,
};
use rmcp::service::RunningService;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use sqlmcp::auth::{Authenticator, ClaimNames, JwtKey, JwtSettings, JwtVerifier, ToolScopes};
use sqlmcp::server::{Application, Settings};
use tokio::sync::oneshot;

use super::{TestDb, local_embedder};

pub const JWT_SECRET: &str = "a test secret that is long enough for HS256";

/// A running server; it keeps its database for as long as it runs.
pub struct TestApp {
    /// Where it serves MCP: `http://127.0.0.1:<port>/mcp`.
    pub url: String,
    /// Where `/metrics` is served when it has an address of its own.
    pub metrics: Option<SocketAddr>,
    stop: Option<oneshot::Sender<()>>,
    stopped: tokio::task::JoinHandle<anyhow::Result<()>>,
    _db: Option<Arc<TestDb>>,
}

impl TestApp {
    /// Stops the server and waits until it has stopped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.begin_stop();
        self.stopped().await
    }

    /// Tells the server to stop, as a shutdown signal does, without waiting.
    pub fn begin_stop(&mut self) {
        let _ = self.stop.take().expect("running").send(());
    }

    /// Waits until the server has stopped; what it returned.
    pub async fn stopped(&mut self) -> anyhow::Result<()> {
        (&mut self.stopped).await.expect("the server task")
    }

    /// The address the server listens on.
    pub fn address(&self) -> SocketAddr {
        self.url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .parse()
            .unwrap()
    }
}

/// The settings of a test server for `db`: header mode, the application
/// role, the local model, no result cache.
pub fn settings(db: &TestDb) -> Settings {
    settings_for(db.app_config())
}

/// [`settings`] for the application role's connection `database`.
pub fn settings_for(database: tokio_postgres::Config) -> Settings {
    Settings {
        database,
        replicas: vec![],
        max_replica_lag: Duration::from_secs(5),
        bind: "127.0.0.1:0".parse().unwrap(),
        sessions: false,
        allowed_hosts: vec!["localhost".into(), "127.0.0.1".into()],
        allowed_origins: vec![],
        max_body_bytes: 1 << 20,
        header_timeout: Duration::from_secs(10),
        body_timeout: Duration::from_secs(10),
        max_connections: 512,
        authenticator: Arc::new(Authenticator::Header(
            ToolScopes::new(&[]).unwrap().every_scope(),
        )),
        default_caller: None,
        tool_scopes: ToolScopes::new(&[]).unwrap(),
        pool_size: 4,
        pool_wait: Duration::from_secs(5),
        limits: Default::default(),
        shutdown_deadline: Duration::from_secs(5),
        embedder: Some(local_embedder()),
        result_cache: None,
        metrics: Default::default(),
        audit: Default::default(),
        rate_limits: Default::default(),
        ui: false,
        redis: None,
    }
}

/// A server for `db` with [`settings`] changed by `tweak`.
pub async fn spawn_app_with(db: Arc<TestDb>, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = settings(&db);
    tweak(&mut settings);
    spawn(settings, Some(db)).await
}

/// A server with `settings`, on databases the test manages itself.
pub async fn spawn_app_on(settings: Settings) -> TestApp {
    spawn(settings, None).await
}

async fn spawn(settings: Settings, db: Option<Arc<TestDb>>) -> TestApp {
    let application = Application::build(settings)
        .await
        .expect("the server starts");
    let url = format!("http://{}/mcp", application.local_addr());
    let metrics = application.metrics_addr();
    let (stop, stopped_signal) = oneshot::channel::<()>();
    let stopped = tokio::spawn(application.run_until_stopped(async move {
        let _ = stopped_signal.await;
    }));
    TestApp {
        url,
        metrics,
        stop: Some(stop),
        stopped,
        _db: db,
    }
}

/// A server with the default [`settings`] on a seeded database of its own.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Arc::new(TestDb::seeded().await), |_| {}).await
}

/// A JWT verifier as `sqlmcp serve` makes one by default: the claims
/// `sub`, `roles`, `stores`, `regions` and `scope`/`scp`, every scope for a
/// token that names none.
pub fn jwt_settings<'a>(key: JwtKey<'a>, issuer: &'a str, audience: &'a str) -> JwtSettings<'a> {
    let tool_scopes = ToolScopes::new(&[]).unwrap();
    JwtSettings {
        key,
        issuer,
        audience,
        claims: ClaimNames::default(),
        default_scopes: tool_scopes.every_scope(),
        scopes_supported: tool_scopes.all().into_iter().map(str::to_owned).collect(),
        revoked: None,
    }
}

/// The issuer of [`spawn_jwt_app`]'s tokens.
pub const JWT_ISSUER: &str = "https://issuer.test";

/// A server in JWT mode with HS256 tokens signed by [`JWT_SECRET`], from
/// [`JWT_ISSUER`] for the audience `sqlmcp`, and `tweak`ed.
pub async fn spawn_jwt_app_with(
    db: Arc<TestDb>,
    claims: ClaimNames,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let verifier = JwtVerifier::new(JwtSettings {
        claims,
        ..jwt_settings(JwtKey::Secret(JWT_SECRET), JWT_ISSUER, "sqlmcp")
    })
    .unwrap();
    spawn_app_with(db, |s| {
        s.authenticator = Arc::new(Authenticator::Jwt(Box::new(verifier)));
        tweak(s);
    })
    .await
}

/// A server in JWT mode with HS256 tokens signed by [`JWT_SECRET`].
pub async fn spawn_jwt_app() -> TestApp {
    let verifier = JwtVerifier::new(jwt_settings(
        JwtKey::Secret(JWT_SECRET),
        JWT_ISSUER,
        "sqlmcp",
    ))
    .unwrap();
    spawn_app_with(Arc::new(TestDb::seeded().await), |s| {
        s.authenticator = Arc::new(Authenticator::Jwt(Box::new(verifier)))
    })
    .await
}

/// An initialised MCP client of the server at `url`, sending `headers` with
/// every request.
pub async fn client(
    url: &str,
    headers: &[(&'static str, &str)],
    version: ProtocolVersion,
) -> RunningService<RoleClient, ClientConfig> {
    let headers: HashMap<http::HeaderName, http::HeaderValue> = headers
        .iter()
        .map(|(name, value)| {
            (
                http::HeaderName::from_static(name),
                http::HeaderValue::from_str(value).unwrap(),
            )
        })
        .collect();
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers),
    );
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("sqlmcp-tests", "0"),
    )
    .with_protocol_version(version)
    .serve(transport)
    .await
    .expect("the client initialises")
}

/// A client that names `caller` in the `x-rls-user-id` header.
pub async fn as_caller(app: &TestApp, caller: &str) -> RunningService<RoleClient, ClientConfig> {
    client(
        &app.url,
        &[("x-rls-user-id", caller)],
        ProtocolVersion::V_2025_11_25,
    )
    .await
}

/// Calls `tool`; a tool's failure is a result, a protocol fault panics.
pub async fn call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &str,
    arguments: Value,
) -> CallToolResult {
    client
        .call_tool(
            CallToolRequestParams::new(tool.to_owned())
                .with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await
        .unwrap_or_else(|err| panic!("{tool}: {err}"))
}

/// Calls `tool`, for tests that count failures: the structured answer, or
/// what went wrong (a protocol fault or a tool error) as text.
pub async fn try_call(
    client: &RunningService<RoleClient, ClientConfig>,
    tool: &str,
    arguments: &Value,
) -> Result<Value, String> {
    let result = client
        .call_tool(
            CallToolRequestParams::new(tool.to_owned())
                .with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await
        .map_err(|err| format!("{tool}: {err}"))?;
    if result.is_error == Some(true) {
        return Err(format!("{tool}: {}", text(&result)));
    }
    Ok(result.structured_content.unwrap_or_default())
}

/// The text of a result's first content item.
pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .unwrap_or_default()
}

/// A signed JWT with `claims`.
pub fn token(
    claims: Value,
    algorithm: jsonwebtoken::Algorithm,
    key: &jsonwebtoken::EncodingKey,
) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(algorithm), &claims, key).unwrap()
}

/// Claims valid from 10 s ago until `expires_in` seconds from now.
pub fn claims(subject: &str, audience: &str, issuer: &str, expires_in: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"sub": subject, "aud": audience, "iss": issuer, "exp": now + expires_in, "nbf": now - 10})
}
