//! The server's life: it refuses to start where row-level security would
//! not hold or it could not serve, and says why; it reports health,
//! readiness and metrics; on shutdown it stops accepting and lets the calls
//! in flight finish.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sqlmcp::auth::{Authenticator, JwtKey, JwtVerifier};
use sqlmcp::secret::Secret;
use sqlmcp::server::{Application, Settings};

use crate::helpers::server::{
    JWT_ISSUER, JWT_SECRET, as_caller, call, jwt_settings, settings, spawn_app, spawn_app_with,
    text,
};
use crate::helpers::{SEATTLE, TableLock, TestDb};

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
async fn metrics_move_to_their_own_address_ask_for_a_token_and_are_never_public_by_accident() {
    let db = Arc::new(TestDb::seeded().await);
    let token = "a-metrics-token-for-the-tests";
    let status = |url: String, bearer: Option<&'static str>| async move {
        let mut request = reqwest::Client::new().get(url);
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send().await.unwrap().status().as_u16()
    };

    // on an address of its own: gone from the main one, and asking for the token
    let app = spawn_app_with(db.clone(), |s| {
        s.metrics.bind = Some("127.0.0.1:0".parse().unwrap());
        s.metrics.token = Some(Secret::new(token));
    })
    .await;
    let own = format!("http://{}/metrics", app.metrics.unwrap());
    assert_eq!(
        status(app.url.replace("/mcp", "/metrics"), Some(token)).await,
        404
    );
    assert_eq!(status(own.clone(), None).await, 401);
    assert_eq!(
        status(own.clone(), Some("a-metrics-token-for-the-test")).await,
        401
    );
    assert_eq!(status(own.clone(), Some(token)).await, 200);
    app.stop().await.unwrap();
    assert!(
        reqwest::get(&own).await.is_err(),
        "it stops with the server"
    );

    // with authentication on and no token, /metrics is not served at all
    let verifier = || {
        JwtVerifier::new(jwt_settings(
            JwtKey::Secret(JWT_SECRET),
            JWT_ISSUER,
            "sqlmcp",
        ))
        .unwrap()
    };
    let app = spawn_app_with(db.clone(), |s| {
        s.authenticator = Arc::new(Authenticator::Jwt(Box::new(verifier())))
    })
    .await;
    assert_eq!(status(app.url.replace("/mcp", "/metrics"), None).await, 404);
    app.stop().await.unwrap();
    // and asking for an address of its own without a token is refused
    let mut settings = settings(&db);
    settings.authenticator = Arc::new(Authenticator::Jwt(Box::new(verifier())));
    settings.metrics.bind = Some("127.0.0.1:0".parse().unwrap());
    let Err(err) = Application::build(settings).await else {
        panic!("starts with public metrics")
    };
    assert!(err.to_string().contains("--metrics-token"), "{err}");
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
