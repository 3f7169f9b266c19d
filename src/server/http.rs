//! The HTTP routes: `/mcp` (behind caller authentication), `/healthz`,
//! `/readyz` and `/metrics`.

use std::sync::Arc;

use axum::extract::{Request, State as Extract};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use super::{Handler, Settings, State};
use crate::auth::{AuthError, Authenticator};
use crate::migrate;

pub fn router(settings: &Settings, state: Arc<State>, cancel: CancellationToken) -> axum::Router {
    super::metrics::install();
    let mut config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(settings.sessions)
        .with_json_response(!settings.sessions)
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
    mcp.layer(middleware::from_fn_with_state(
        settings.authenticator.clone(),
        authenticate,
    ))
    .route("/healthz", get(|| async { "ok\n" }))
    .route("/readyz", get(ready))
    .route("/metrics", get(metrics))
    .with_state(state)
}

/// Puts the caller's verified identity into the request, or answers 401.
async fn authenticate(
    Extract(authenticator): Extract<Arc<Authenticator>>,
    mut request: Request,
    next: Next,
) -> Response {
    match authenticator.identify(request.headers()) {
        Ok(Some(caller)) => {
            request.extensions_mut().insert(caller);
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
            let challenge = match &err {
                AuthError::MissingToken => r#"Bearer realm="sqlmcp""#.to_owned(),
                other => format!(
                    r#"Bearer realm="sqlmcp", error="invalid_token", error_description="{other}""#
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

/// Ready when the database answers and its migrations are this binary's.
async fn ready(Extract(state): Extract<Arc<State>>) -> Response {
    let unavailable =
        |reason: String| (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")).into_response();
    let mut client =
        match tokio::time::timeout(std::time::Duration::from_secs(2), state.pool.get()).await {
            Ok(Ok(client)) => client,
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
        super::metrics::render(&state.pool),
    )
        .into_response()
}
