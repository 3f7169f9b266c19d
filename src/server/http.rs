//! The HTTP routes: `/mcp` (behind caller authentication, a guard on its
//! request bodies and a check of the protocol version it names),
//! `/healthz`, `/readyz` and `/metrics`; and the workbench at `/ui` with
//! `--ui` (`ui.rs`).
//!
//! MCP 2026-07-28 requests pass through sqlmcp's own layers untouched: its
//! headers (`MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`) are no
//! identity header, so the repeated-header refusal leaves them alone, and
//! rmcp checks them against the body (400 with a `HeaderMismatch` error when
//! `Mcp-Method` or `Mcp-Name` is missing, repeated or different, or the
//! header's version is not the one in `_meta`). rmcp accepts any version it
//! knows in the header of a request without `_meta`; [`check_version`]
//! refuses those this server does not speak.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State as Extract};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::{Handler, PROTOCOL_VERSIONS, Settings, State};
use crate::auth::{AuthError, Authenticator};
use crate::migrate;

pub fn router(settings: &Settings, state: Arc<State>, cancel: CancellationToken) -> axum::Router {
    super::metrics::install();
    // Sessions are for the 2025 revisions only: rmcp serves 2026-07-28
    // requests statelessly in either mode, and answers them (and stateless
    // 2025 requests) with JSON unless a call streams notifications.
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(settings.sessions)
        .with_json_response(true)
        .with_max_request_body_bytes(settings.max_body_bytes)
        .with_cancellation_token(cancel);
    config = if settings.allowed_hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(settings.allowed_hosts.clone())
    };
    if !settings.allowed_origins.is_empty() {
        config = config.with_allowed_origins(settings.allowed_origins.clone());
    }
    let handler_state = state.clone();
    let factory = move || Ok(Handler::new(handler_state.clone(), None));
    let mcp = if settings.sessions {
        axum::Router::new().nest_service(
            "/mcp",
            StreamableHttpService::new(factory, Arc::new(LocalSessionManager::default()), config),
        )
    } else {
        axum::Router::new().nest_service(
            "/mcp",
            StreamableHttpService::new(factory, Arc::new(NeverSessionManager::default()), config),
        )
    };
    // inside the body guard: a tools/call over its caller's limits is
    // answered 429 there, with the body whole and the caller known; a
    // request in a protocol version not spoken here before it counts
    let mcp = mcp
        .layer(middleware::from_fn_with_state(
            state.clone(),
            super::rate_limit::refuse_over_limit,
        ))
        .layer(middleware::from_fn(check_version));
    let bodies = BodyRules {
        max_bytes: settings.max_body_bytes,
        timeout: settings.body_timeout,
    };
    mcp.layer(middleware::from_fn_with_state(bodies, guard_body))
        .layer(middleware::from_fn_with_state(
            settings.authenticator.clone(),
            authenticate,
        ))
        .merge(protected_resource(&settings.authenticator))
        .merge(main_metrics(settings, state.clone()))
        .merge(workbench(settings, state.clone()))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state)
}

/// `/ui` with `--ui`; nothing otherwise (a 404).
fn workbench(settings: &Settings, state: Arc<State>) -> axum::Router<Arc<State>> {
    if settings.ui {
        super::ui::router(settings, state)
    } else {
        axum::Router::new()
    }
}

/// `/metrics` on the main address: not when it has an address of its own,
/// nor with authentication on and no token to ask for.
fn main_metrics(settings: &Settings, state: Arc<State>) -> axum::Router<Arc<State>> {
    if settings.metrics.bind.is_some() {
        return axum::Router::new();
    }
    if settings.authenticator.jwt().is_some() && settings.metrics.token.is_none() {
        tracing::warn!(
            "/metrics is off: with --auth jwt it needs --metrics-token (it shows every tenant's calls)"
        );
        return axum::Router::new();
    }
    metrics_router(&settings.metrics, state).with_state(())
}

/// `/metrics`, asking for the token when one is set.
pub fn metrics_router(settings: &super::MetricsSettings, state: Arc<State>) -> axum::Router {
    let router = axum::Router::new().route("/metrics", get(metrics));
    let router = match settings.token.clone() {
        Some(token) => router.layer(middleware::from_fn_with_state(
            Arc::new(token),
            metrics_token,
        )),
        None => router,
    };
    router.with_state(state)
}

/// 401 unless the request carries `Authorization: Bearer <--metrics-token>`.
async fn metrics_token(
    Extract(token): Extract<Arc<crate::secret::Secret>>,
    request: Request,
    next: Next,
) -> Response {
    let presented = crate::auth::bearer_token(request.headers());
    // compared in constant time: the token is a password
    let matches = presented.is_some_and(|p| {
        let (a, b) = (p.as_bytes(), token.expose().as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    });
    if matches {
        next.run(request).await
    } else {
        let mut response = (
            StatusCode::UNAUTHORIZED,
            "/metrics needs Authorization: Bearer <metrics token>\n",
        )
            .into_response();
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="sqlmcp-metrics""#),
        );
        response
    }
}

/// RFC 9728's metadata, at the well-known path with and without `/mcp`
/// after it, when the server is an OAuth protected resource.
fn protected_resource(authenticator: &Authenticator) -> axum::Router<Arc<State>> {
    let Some(metadata) = authenticator.jwt().and_then(|jwt| jwt.protected_resource()) else {
        return axum::Router::new();
    };
    let serve = move || {
        let metadata = metadata.clone();
        async move { axum::Json(metadata) }
    };
    axum::Router::new()
        .route("/.well-known/oauth-protected-resource", get(serve.clone()))
        .route("/.well-known/oauth-protected-resource/mcp", get(serve))
}

/// Puts the caller's verified identity into the request, or answers 401.
pub(super) async fn authenticate(
    Extract(authenticator): Extract<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    match authenticator.identify(request.headers()).await {
        Ok(Some(caller)) => {
            request.extensions_mut().insert(Arc::new(caller));
            next.run(request).await
        }
        Ok(None) => next.run(request).await,
        Err(err @ AuthError::MalformedHeader { .. }) => {
            (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response()
        }
        Err(err @ AuthError::RepeatedHeader { .. }) => {
            tracing::info!(error = %err, "refused a request: a repeated identity header");
            (StatusCode::BAD_REQUEST, format!("{err}\n")).into_response()
        }
        Err(err) => {
            tracing::info!(error = %err, "refused a request: authentication failed");
            // RFC 9728: where an OAuth client finds how to get a token
            // and the scopes that reach every tool (RFC 6750 §3)
            let jwt = authenticator.jwt();
            let mut metadata = jwt
                .and_then(|jwt| jwt.protected_resource_url())
                .map(|url| format!(r#", resource_metadata="{url}""#))
                .unwrap_or_default();
            if let Some(scope) = jwt
                .map(|jwt| jwt.scope_challenge())
                .filter(|s| !s.is_empty())
            {
                metadata.push_str(&format!(r#", scope="{scope}""#));
            }
            let challenge = match &err {
                AuthError::MissingToken => format!(r#"Bearer realm="sqlmcp"{metadata}"#),
                other => format!(
                    r#"Bearer realm="sqlmcp"{metadata}, error="invalid_token", error_description="{other}""#
                ),
            };
            let mut response = (StatusCode::UNAUTHORIZED, format!("{err}\n")).into_response();
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
            response
        }
    }
}

/// How much of a request body `/mcp` reads, and for how long.
#[derive(Clone, Copy)]
struct BodyRules {
    max_bytes: usize,
    /// From the first poll of the body to its end, however it trickles.
    timeout: Duration,
}

/// Reads a POST body whole before rmcp sees it: within the size limit (413
/// otherwise, as rmcp answers), within the body timeout (408, and the
/// connection closes), and with no object repeating a key (400).
async fn guard_body(Extract(rules): Extract<BodyRules>, request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "Payload Too Large: request body exceeds {} bytes",
                rules.max_bytes
            ),
        )
            .into_response()
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > rules.max_bytes as u64) {
        return too_large();
    }
    let (parts, body) = request.into_parts();
    let read = async {
        use futures_util::StreamExt as _;
        let mut collected = bytes::BytesMut::new();
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| None)?;
            if chunk.len() > rules.max_bytes.saturating_sub(collected.len()) {
                return Err(Some(too_large()));
            }
            collected.extend_from_slice(&chunk);
        }
        Ok(collected.freeze())
    };
    let body = match tokio::time::timeout(rules.timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(Some(response))) => return response,
        Ok(Err(None)) => {
            return (
                StatusCode::BAD_REQUEST,
                "the request body could not be read\n",
            )
                .into_response();
        }
        Err(_) => {
            tracing::info!(timeout = ?rules.timeout, "refused a request: its body did not arrive in time");
            return (
                StatusCode::REQUEST_TIMEOUT,
                [(header::CONNECTION, "close")],
                format!(
                    "the request body did not arrive within {} ms\n",
                    rules.timeout.as_millis()
                ),
            )
                .into_response();
        }
    };
    if let Some(repeated) = super::strict_json::repeated_key(&body) {
        tracing::info!(reason = %repeated, "refused a request: a JSON object repeats a key");
        let error = serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": -32600, "message": format!("invalid request: {repeated}")},
        });
        return (StatusCode::BAD_REQUEST, axum::Json(error)).into_response();
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(body)))
        .await
}

/// `MCP-Protocol-Version`, the header every request after `initialize`
/// carries: a request that names a revision this server does not speak gets
/// a 400 with an `UnsupportedProtocolVersion` error listing those it does
/// (as rmcp answers a 2026-07-28 request whose `_meta` names one), and a
/// request that names two gets a 400 too, since a proxy may read the other.
/// A request without the header goes on: `initialize` has none, nor do
/// clients older than 2025-06-18.
async fn check_version(request: Request, next: Next) -> Response {
    let mut named = request.headers().get_all("mcp-protocol-version").iter();
    let Some(version) = named.next() else {
        return next.run(request).await;
    };
    if named.next().is_some() {
        tracing::info!("refused a request: a repeated MCP-Protocol-Version header");
        return (
            StatusCode::BAD_REQUEST,
            "Bad Request: more than one MCP-Protocol-Version header\n",
        )
            .into_response();
    }
    let requested = String::from_utf8_lossy(version.as_bytes())
        .trim()
        .to_owned();
    if PROTOCOL_VERSIONS.iter().any(|v| v.as_str() == requested) {
        return next.run(request).await;
    }
    tracing::info!(requested = %requested, "refused a request: an unsupported protocol version");
    // the error names the request it answers: its body is whole by now
    let id = match axum::body::to_bytes(request.into_body(), usize::MAX).await {
        Ok(body) => serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|message| message.get("id").cloned())
            .unwrap_or(serde_json::Value::Null),
        Err(_) => serde_json::Value::Null,
    };
    let requested = serde_json::from_value(serde_json::Value::String(requested))
        .expect("any string is a protocol version");
    let error = rmcp::ErrorData::unsupported_protocol_version(requested, PROTOCOL_VERSIONS);
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({"jsonrpc": "2.0", "id": id, "error": error})),
    )
        .into_response()
}

/// Ready when a database calls would go to (a usable replica, else the
/// primary) answers and its migrations are this binary's.
async fn ready(Extract(state): Extract<Arc<State>>) -> Response {
    let unavailable =
        |reason: String| (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response();
    let connection = state.databases.connection();
    let mut client = match tokio::time::timeout(std::time::Duration::from_secs(2), connection).await
    {
        Ok(Ok((client, _))) => client,
        Ok(Err(err)) => return unavailable(format!("database unreachable: {err}")),
        Err(_) => return unavailable("database unreachable: timed out".to_owned()),
    };
    // in a transaction, for transaction-pooling PgBouncer (see server::connect)
    let tx = match (**client).build_transaction().read_only(true).start().await {
        Ok(tx) => tx,
        Err(err) => return unavailable(format!("database unreachable: {err}")),
    };
    let status = migrate::status(&tx).await;
    let _ = tx.rollback().await;
    match status {
        Ok(migrate::Status::Current) => (StatusCode::OK, "ready\n").into_response(),
        Ok(other) => unavailable(other.to_string()),
        Err(err) => unavailable(format!("{err:#}")),
    }
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        super::metrics::render(state.databases.primary()),
    )
        .into_response()
}
