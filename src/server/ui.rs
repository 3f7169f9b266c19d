//! The workbench (`sqlmcp serve --ui`): a small web application at `/ui`
//! for trying the tools, checking raw SQL and watching recent calls.
//!
//! Its files (`ui/` in the workspace) are embedded in the binary: plain
//! HTML, CSS and JavaScript, no build step. The page is an MCP client of
//! `/mcp` like any other, with the identity it holds (a sample identity's
//! `x-rls-user-id` in header mode, the user's bearer token in JWT mode), so
//! it can do nothing that identity could not do through MCP. Beside `/mcp`
//! it uses three small endpoints of its own:
//! - `GET /ui/api/config`: the authentication mode, the sample identities
//!   (header mode only) and each tool's source file; no data, so no
//!   authentication (the page needs it before it holds a token);
//! - `POST /ui/api/check`: the raw-SQL policy's verdict on a query, run by
//!   the parser alone (the database is read only for its catalogue's names);
//! - `GET /ui/api/recent`: the recent calls of this process, from the audit
//!   log's entries: every call for a caller who sees every store, their own
//!   for anyone else.
//!
//! The last two sit behind the same authentication as `/mcp`. Every
//! response passes the same `Host` and `Origin` checks as `/mcp` and carries
//! a strict Content-Security-Policy: no inline script or style, nothing
//! from elsewhere, no framing.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Request, State as Extract};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::{Settings, State};
use crate::auth::Authenticator;
use crate::caller::Caller;
use crate::tools::raw_sql;

const INDEX: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/app.css");
const ICON: &str = include_str!("../../ui/icon.svg");

/// Every `/ui` response's policy: the page's own script, style and
/// requests, nothing inline, nothing from elsewhere, never in a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

/// What the `/ui` routes share.
#[derive(Clone)]
struct Workbench {
    state: Arc<State>,
    authenticator: Arc<Authenticator>,
    /// Made once: the same for every request.
    config: Arc<Value>,
}

/// The `/ui` routes, when `--ui` is on.
pub fn router<S: Clone + Send + Sync + 'static>(
    settings: &Settings,
    state: Arc<State>,
) -> axum::Router<S> {
    let workbench = Workbench {
        state,
        authenticator: settings.authenticator.clone(),
        config: Arc::new(config(&settings.authenticator)),
    };
    let api = axum::Router::new()
        .route("/ui/api/check", post(check))
        .route("/ui/api/recent", get(recent))
        .layer(middleware::from_fn_with_state(
            workbench.authenticator.clone(),
            super::http::authenticate,
        ));
    let checks = Checks {
        allowed_hosts: Arc::new(settings.allowed_hosts.clone()),
        allowed_origins: Arc::new(settings.allowed_origins.clone()),
    };
    axum::Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| asset("text/html; charset=utf-8", INDEX)))
        .route(
            "/ui/app.js",
            get(|| asset("text/javascript; charset=utf-8", SCRIPT)),
        )
        .route(
            "/ui/app.css",
            get(|| asset("text/css; charset=utf-8", STYLE)),
        )
        .route("/ui/icon.svg", get(|| asset("image/svg+xml", ICON)))
        .route("/ui/api/config", get(serve_config))
        .merge(api)
        .route(
            "/ui/{*rest}",
            get(|| async { (StatusCode::NOT_FOUND, "not found\n") }),
        )
        .with_state(workbench)
        .layer(middleware::from_fn_with_state(
            checks,
            check_host_and_origin,
        ))
        .layer(middleware::from_fn(secure_headers))
}

async fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // a new binary may bring new files: always revalidated
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// The page's own headers on every `/ui` response.
async fn secure_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (
            header::HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ),
        (
            header::HeaderName::from_static("cross-origin-resource-policy"),
            "same-origin",
        ),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The `Host` and `Origin` rules of `/mcp` (`--allowed-hosts`,
/// `--allowed-origins`), for the workbench's routes.
#[derive(Clone)]
struct Checks {
    /// Empty: any host.
    allowed_hosts: Arc<Vec<String>>,
    /// Empty: no check.
    allowed_origins: Arc<Vec<String>>,
}

async fn check_host_and_origin(
    Extract(checks): Extract<Checks>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = checks.judge(request.headers()) {
        tracing::info!(reason = refusal, "refused a workbench request");
        return (StatusCode::FORBIDDEN, format!("Forbidden: {refusal}\n")).into_response();
    }
    next.run(request).await
}

impl Checks {
    fn judge(&self, headers: &HeaderMap) -> Result<(), &'static str> {
        if !self.allowed_hosts.is_empty() {
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<http::uri::Authority>().ok())
                .ok_or("the Host header is missing or malformed")?;
            let allowed = self.allowed_hosts.iter().any(|entry| {
                match entry.trim().parse::<http::uri::Authority>() {
                    Ok(allowed) => {
                        same_host(allowed.host(), host.host())
                            && allowed
                                .port_u16()
                                .is_none_or(|p| host.port_u16() == Some(p))
                    }
                    Err(_) => same_host(entry, host.host()),
                }
            });
            if !allowed {
                return Err("Host header is not allowed");
            }
        }
        if self.allowed_origins.is_empty() {
            return Ok(());
        }
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        let origin = origin
            .to_str()
            .ok()
            .and_then(Origin::parse)
            .ok_or("invalid Origin header")?;
        if self
            .allowed_origins
            .iter()
            .any(|entry| origin.matches(entry))
        {
            Ok(())
        } else {
            Err("Origin header is not allowed")
        }
    }
}

fn same_host(a: &str, b: &str) -> bool {
    let bare = |h: &str| h.trim().trim_matches(['[', ']']).to_ascii_lowercase();
    bare(a) == bare(b)
}

/// An `Origin` value: `null`, or scheme, host and port (RFC 6454).
#[derive(Debug, PartialEq, Eq)]
enum Origin {
    Null,
    Tuple {
        scheme: String,
        host: String,
        port: Option<u16>,
    },
}

impl Origin {
    fn parse(text: &str) -> Option<Origin> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("null") {
            return Some(Origin::Null);
        }
        let uri = text.parse::<http::Uri>().ok()?;
        let authority = uri.authority()?;
        Some(Origin::Tuple {
            scheme: uri.scheme_str()?.to_ascii_lowercase(),
            host: authority
                .host()
                .trim_matches(['[', ']'])
                .to_ascii_lowercase(),
            port: authority.port_u16(),
        })
    }

    /// Whether an `--allowed-origins` entry admits this origin, as rmcp
    /// decides for `/mcp`: `:*` is any port, an entry without a port any
    /// port too, an explicit port that port (the scheme's when the origin
    /// names none).
    fn matches(&self, entry: &str) -> bool {
        let entry = entry.trim();
        let (base, any_port) = match entry.strip_suffix(":*") {
            Some(base) => (base, true),
            None => (entry, false),
        };
        match (Origin::parse(base), self) {
            (Some(Origin::Null), Origin::Null) => !any_port,
            (
                Some(Origin::Tuple { scheme, host, port }),
                Origin::Tuple {
                    scheme: s,
                    host: h,
                    port: p,
                },
            ) => {
                let default = match s.as_str() {
                    "http" => Some(80),
                    "https" => Some(443),
                    _ => None,
                };
                scheme == *s
                    && host == *h
                    && (any_port || port.is_none_or(|port| p.or(default) == Some(port)))
            }
            _ => false,
        }
    }
}

/// The sample chain's identities, for header mode: head office, the
/// regional managers and every store's manager, as the seed makes them.
fn sample_identities() -> Vec<Value> {
    let mut identities = vec![json!({
        "id": crate::caller::HEAD_OFFICE.to_string(),
        "label": "Head office",
        "sees": "every store",
    })];
    for (index, region) in crate::seed::REGIONS.iter().enumerate() {
        let stores: Vec<&str> = crate::seed::STORES
            .iter()
            .filter(|store| store.region_id == index as i32 + 1)
            .map(|store| store.name.trim_start_matches("Zava Retail "))
            .collect();
        for manager in region.managers {
            identities.push(json!({
                "id": manager,
                "label": format!("{} regional manager", region.name),
                "sees": stores.join(", "),
            }));
        }
    }
    for store in &crate::seed::STORES {
        let short = store.name.trim_start_matches("Zava Retail ");
        identities.push(json!({
            "id": store.rls_user_id,
            "label": format!("{short} store manager"),
            "sees": short,
        }));
    }
    identities
}

/// `GET /ui/api/config`'s answer.
fn config(authenticator: &Authenticator) -> Value {
    let jwt = authenticator.jwt().is_some();
    let query_files = crate::resources::QUERY_FILES;
    let tools: serde_json::Map<String, Value> = crate::tools::definitions()
        .iter()
        .map(|tool| {
            let resource = query_files
                .iter()
                .find(|file| file.tool && file.query == tool.name)
                .map(|file| file.uri());
            (
                tool.name.to_owned(),
                json!({"source": tool.source, "resource": resource}),
            )
        })
        .collect();
    json!({
        "auth": if jwt { "jwt" } else { "header" },
        // anyone may claim any id in header mode; never listed otherwise
        "identities": if jwt { Value::Null } else { Value::Array(sample_identities()) },
        "tools": tools,
        "rawSqlTool": raw_sql::NAME,
        "recentCapacity": crate::audit::recent::CAPACITY,
        "version": env!("CARGO_PKG_VERSION"),
    })
}

async fn serve_config(Extract(workbench): Extract<Workbench>) -> Response {
    Json(workbench.config.as_ref().clone()).into_response()
}

/// The caller the authentication layer found, or the configured default.
fn caller(workbench: &Workbench, request: &Request) -> Option<Arc<Caller>> {
    request
        .extensions()
        .get::<Arc<Caller>>()
        .or(workbench.state.default_caller.as_ref())
        .cloned()
}

fn no_caller() -> Response {
    refuse(
        StatusCode::FORBIDDEN,
        "this request names no caller: send the x-rls-user-id header (header mode) or an \
         Authorization: Bearer token (jwt mode)"
            .to_owned(),
    )
}

fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// `POST /ui/api/check` with `{"query": "..."}`: `{"verdict": "accepted"}`,
/// or `{"verdict": "refused", "rule": ..., "position": ...}` (a 1-based
/// character position, or null), as `execute_sales_query` would judge it.
/// Needs the scope that tool needs.
async fn check(Extract(workbench): Extract<Workbench>, request: Request) -> Response {
    let Some(caller) = caller(&workbench, &request) else {
        return no_caller();
    };
    let scopes = &workbench.state.tool_scopes;
    if !scopes.allows(&caller.scopes, raw_sql::NAME) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "`{}` needs the scope `{}`, which this caller's credential does not grant",
                raw_sql::NAME,
                scopes.required(raw_sql::NAME)
            ),
        );
    }
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send {\"query\": \"...\"} as application/json".to_owned(),
        );
    }
    let body = match axum::body::to_bytes(request.into_body(), 64 << 10).await {
        Ok(body) => body,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the body is larger than 64 KiB".to_owned(),
            );
        }
    };
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Body {
        query: String,
    }
    let query = match serde_json::from_slice::<Body>(&body) {
        Ok(body) => body.query,
        Err(err) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("send {{\"query\": \"...\"}}: {err}"),
            );
        }
    };
    let client = match workbench.state.databases.connection().await {
        Ok((client, _)) => client,
        Err(err) => {
            tracing::warn!(error = %err, "the raw-SQL check found no database connection");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; try again later".to_owned(),
            );
        }
    };
    match workbench.state.sql_names.preview(&**client, &query).await {
        Ok(Ok(())) => Json(json!({"verdict": "accepted"})).into_response(),
        Ok(Err(violation)) => Json(json!({
            "verdict": "refused",
            "rule": violation.rule,
            "position": violation.position,
        }))
        .into_response(),
        Err(err) => refuse(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

/// `GET /ui/api/recent`: the calls the caller may see, newest first.
async fn recent(Extract(workbench): Extract<Workbench>, request: Request) -> Response {
    let Some(caller) = caller(&workbench, &request) else {
        return no_caller();
    };
    let Some(ring) = workbench.state.audit.recent() else {
        return Json(json!({"calls": [], "everyone": false})).into_response();
    };
    let (calls, everyone) = ring.visible_to(&caller);
    Json(json!({"calls": calls, "everyone": everyone})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn checks(hosts: &[&str], origins: &[&str]) -> Checks {
        let owned = |list: &[&str]| Arc::new(list.iter().map(|s| s.to_string()).collect());
        Checks {
            allowed_hosts: owned(hosts),
            allowed_origins: owned(origins),
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    #[test]
    fn hosts_are_checked_as_mcp_checks_them() {
        let loopback = checks(&["localhost", "127.0.0.1", "::1"], &[]);
        for host in ["127.0.0.1:8000", "localhost", "LOCALHOST:1", "[::1]:8000"] {
            assert_eq!(
                loopback.judge(&headers(&[("host", host)])),
                Ok(()),
                "{host}"
            );
        }
        for host in ["evil.example", "127.0.0.2:8000"] {
            assert!(
                loopback.judge(&headers(&[("host", host)])).is_err(),
                "{host}"
            );
        }
        assert!(loopback.judge(&headers(&[])).is_err());
        let with_port = checks(&["mcp.example.com:8443"], &[]);
        assert!(
            with_port
                .judge(&headers(&[("host", "mcp.example.com:8443")]))
                .is_ok()
        );
        assert!(
            with_port
                .judge(&headers(&[("host", "mcp.example.com:80")]))
                .is_err()
        );
        assert!(checks(&[], &[]).judge(&headers(&[])).is_ok());
    }

    #[test]
    fn origins_are_checked_when_a_list_is_set() {
        let host = ("host", "127.0.0.1:8000");
        let open = checks(&["127.0.0.1"], &[]);
        assert!(
            open.judge(&headers(&[host, ("origin", "https://evil.example")]))
                .is_ok()
        );
        let listed = checks(
            &["127.0.0.1"],
            &["http://127.0.0.1:8000", "https://app.example.com:*"],
        );
        for origin in [
            "http://127.0.0.1:8000",
            "https://app.example.com",
            "https://app.example.com:9",
        ] {
            assert!(
                listed.judge(&headers(&[host, ("origin", origin)])).is_ok(),
                "{origin}"
            );
        }
        for origin in [
            "http://127.0.0.1:8001",
            "https://127.0.0.1:8000",
            "http://evil.example",
            "null",
            "not an origin",
        ] {
            assert!(
                listed.judge(&headers(&[host, ("origin", origin)])).is_err(),
                "{origin}"
            );
        }
        assert!(listed.judge(&headers(&[host])).is_ok());
    }

    #[test]
    fn header_mode_lists_the_sample_identities_and_jwt_mode_none() {
        let header = config(&Authenticator::Header(Default::default()));
        assert_eq!(header["auth"], "header");
        let identities = header["identities"].as_array().unwrap();
        let ids: Vec<&str> = identities
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        for id in [
            "00000000-0000-0000-0000-000000000000",
            "f47ac10b-58cc-4372-a567-0e02b2c3d479",
            "e7f8a9b0-c1d2-3e4f-5678-90abcdef1234",
            "2f4e6d8c-1a3b-5c7e-9f0a-b2d4f6e8c0a2",
            "7c3e5a9b-2d4f-4e6a-8b1c-3d5e7f9a1b2c",
        ] {
            assert!(ids.contains(&id), "{id}: {ids:?}");
        }
        assert_eq!(identities[1]["label"], "East regional manager");
        assert_eq!(
            identities[1]["sees"],
            "Bellevue, Spokane, Redmond, Kirkland"
        );
        assert_eq!(
            header["tools"]["top_products"]["resource"],
            "zava://queries/top_products.sql"
        );
        assert_eq!(
            header["tools"]["execute_sales_query"]["resource"],
            Value::Null
        );
    }
}
