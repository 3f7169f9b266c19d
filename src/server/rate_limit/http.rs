//! The door: a `tools/call` over its caller's limits is answered 429
//! before rmcp reads it.

use std::sync::Arc;

use axum::extract::{Request, State as Extract};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Refusal;
use crate::caller::Caller;
use crate::server::State;

/// Answers `429 Too Many Requests` to a `tools/call` that is over one of
/// its caller's limits when it arrives, before rmcp reads it (see the
/// module's notes). Everything else goes on to rmcp untouched. Runs after
/// authentication (the caller is known) and after the body guard (the body
/// is whole, in memory, and repeats no key, so rmcp reads the same tool name).
pub async fn refuse_over_limit(
    Extract(state): Extract<Arc<State>>,
    request: Request,
    next: Next,
) -> Response {
    if !state.rate_limits.is_on() || request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let caller = request
        .extensions()
        .get::<Arc<Caller>>()
        .or(state.default_caller.as_ref())
        .cloned();
    let Some(caller) = caller else {
        return next.run(request).await;
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return (
            StatusCode::BAD_REQUEST,
            "the request body could not be read\n",
        )
            .into_response();
    };
    if let Ok(call) = serde_json::from_slice::<ToolCall>(&body)
        && call.method == "tools/call"
        && let Some(params) = call.params
        && let Some(refusal) = state.rate_limits.refusal(&caller, &params.name).await
    {
        tracing::debug!(tool = %params.name, caller = %caller.principal, error = %refusal, "refused a call at the door");
        return too_many_requests(&refusal, call.id);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(body)))
        .await
}

/// The parts of a JSON-RPC request the door reads; a batch or anything else
/// does not parse and goes on to rmcp.
#[derive(serde::Deserialize)]
struct ToolCall {
    #[serde(default)]
    id: Value,
    method: String,
    params: Option<ToolCallParams>,
}

#[derive(serde::Deserialize)]
struct ToolCallParams {
    name: String,
}

/// 429 with `Retry-After`, and a JSON-RPC error for the request `id`.
fn too_many_requests(refusal: &Refusal, id: Value) -> Response {
    let retry_after = refusal.retry_after_seconds();
    let retry_in = match refusal {
        Refusal::Rate { retry_in, .. } => json!(retry_in.as_secs_f64()),
        Refusal::Concurrency { .. } => Value::Null,
    };
    let error = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": -32000,
            "message": refusal.to_string(),
            "data": {
                "limit": refusal.limit(),
                "budget": refusal.budget().label(),
                "retryInSeconds": retry_in,
            },
        },
    });
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::RETRY_AFTER, retry_after.to_string())],
        axum::Json(error),
    )
        .into_response()
}
