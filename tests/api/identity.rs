//! Who is calling, over HTTP: each identity sees its own store through
//! every tool; a call that names nobody is refused unless a default caller
//! is configured; concurrent callers and identities alternating on one
//! connection never see each other's rows; in JWT mode only a verified
//! token names the caller.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ProtocolVersion};
use serde_json::{Value, json};
use sqlmcp::auth::ToolScopes;
use sqlmcp::caller::{Caller, CallerId, Principal};

use crate::helpers::server::{
    JWT_SECRET, as_caller, call, claims, client, spawn_app, spawn_app_with, spawn_jwt_app, text,
    token,
};
use crate::helpers::{HEAD_OFFICE, ONLINE, REDMOND, SEATTLE, TestDb};

/// Each identity sees its own store through every tool that reads store data.
#[tokio::test]
async fn every_tool_answers_each_identity_with_its_own_rows() {
    let app = spawn_app().await;
    let (seattle, redmond, head_office) = (
        as_caller(&app, SEATTLE).await,
        as_caller(&app, REDMOND).await,
        as_caller(&app, HEAD_OFFICE).await,
    );
    let stores_in = |result: &CallToolResult| -> Vec<i64> {
        let mut ids: Vec<i64> = result.structured_content.as_ref().unwrap()["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["store_id"].as_i64().unwrap())
            .collect();
        ids.sort();
        ids.dedup();
        ids
    };
    for tool in ["store_performance", "low_stock"] {
        assert_eq!(
            stores_in(&call(&seattle, tool, json!({})).await),
            [1],
            "{tool}"
        );
        assert_eq!(
            stores_in(&call(&redmond, tool, json!({})).await),
            [6],
            "{tool}"
        );
        assert_eq!(
            stores_in(&call(&head_office, tool, json!({})).await),
            [1, 2, 3, 4, 5, 6, 7, 8],
            "{tool}"
        );
    }
    for tool in ["top_products", "revenue_by_month", "sales_by_category"] {
        let rows = |result: CallToolResult| result.structured_content.unwrap()["rows"].clone();
        let (s, r, h) = (
            rows(call(&seattle, tool, json!({})).await),
            rows(call(&redmond, tool, json!({})).await),
            rows(call(&head_office, tool, json!({})).await),
        );
        assert!(
            s != r && s != h && r != h,
            "{tool}: identities see different numbers"
        );
    }
    let stock = |result: CallToolResult| {
        result.structured_content.unwrap()["rows"][0]["units_in_stock"]
            .as_i64()
            .unwrap()
    };
    let args = json!({"sku": "PWR-DRL-1001"});
    assert!(
        stock(call(&seattle, "product_details", args.clone()).await)
            < stock(call(&head_office, "product_details", args).await)
    );
    for c in [seattle, redmond, head_office] {
        c.cancel().await.unwrap();
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_call_without_identity_is_refused_unless_a_default_is_configured() {
    let db = Arc::new(TestDb::seeded().await);
    let app = spawn_app_with(db.clone(), |_| {}).await;
    let anonymous = client(&app.url, &[], ProtocolVersion::V_2025_11_25).await;
    assert_eq!(
        anonymous.list_tools(None).await.unwrap().tools.len(),
        10,
        "listing needs no identity"
    );
    let refused = call(&anonymous, "store_performance", json!({})).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(
        text(&refused).starts_with("refused: this call names no caller"),
        "{}",
        text(&refused)
    );
    anonymous.cancel().await.unwrap();
    app.stop().await.unwrap();

    let with_default = spawn_app_with(db, |s| {
        s.default_caller = Some(Caller::by_id(
            CallerId::for_tests(ONLINE),
            Principal::Default,
            ToolScopes::new(&[]).unwrap().every_scope(),
        ))
    })
    .await;
    let anonymous = client(&with_default.url, &[], ProtocolVersion::V_2025_11_25).await;
    let result = call(&anonymous, "store_performance", json!({})).await;
    assert_eq!(result.structured_content.unwrap()["rows"][0]["store_id"], 8);
    anonymous.cancel().await.unwrap();
    with_default.stop().await.unwrap();
}

#[tokio::test]
async fn concurrent_callers_never_see_each_others_rows() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| s.pool_size = 2).await;
    let mut calls = Vec::new();
    for round in 0..8 {
        for (caller, store) in [(SEATTLE, 1), (REDMOND, 6), (ONLINE, 8)] {
            let url = app.url.clone();
            calls.push(tokio::spawn(async move {
                let client = client(
                    &url,
                    &[("x-rls-user-id", caller)],
                    ProtocolVersion::V_2025_11_25,
                )
                .await;
                let result = call(&client, "store_performance", json!({})).await;
                let rows = result.structured_content.unwrap()["rows"].clone();
                client.cancel().await.unwrap();
                assert_eq!(rows.as_array().unwrap().len(), 1, "round {round}, {caller}");
                assert_eq!(rows[0]["store_id"], store, "round {round}, {caller}");
            }));
        }
    }
    for call in calls {
        call.await.unwrap();
    }
    app.stop().await.unwrap();
}

/// One connection, alternating identities: nothing of one call survives
/// into the next.
#[tokio::test]
async fn a_pool_of_one_alternating_identities_leaks_nothing() {
    let app = spawn_app_with(Arc::new(TestDb::seeded().await), |s| s.pool_size = 1).await;
    let clients = [
        (as_caller(&app, SEATTLE).await, Some(1)),
        (
            client(&app.url, &[], ProtocolVersion::V_2025_11_25).await,
            None,
        ),
        (as_caller(&app, REDMOND).await, Some(6)),
    ];
    for _ in 0..4 {
        for (client, store) in &clients {
            let result = call(client, "store_performance", json!({})).await;
            match store {
                Some(store) => assert_eq!(
                    result.structured_content.unwrap()["rows"][0]["store_id"],
                    *store
                ),
                None => assert_eq!(result.is_error, Some(true)),
            }
        }
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn jwt_mode_accepts_verified_tokens_and_refuses_everything_else() {
    let app = spawn_jwt_app().await;
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let good = token(
        claims(SEATTLE, "sqlmcp", "https://issuer.test", 300),
        jsonwebtoken::Algorithm::HS256,
        &key,
    );
    let client = client(
        &app.url,
        &[("authorization", &format!("Bearer {good}"))],
        ProtocolVersion::V_2025_11_25,
    )
    .await;
    let result = call(&client, "store_performance", json!({})).await;
    assert_eq!(result.structured_content.unwrap()["rows"][0]["store_id"], 1);
    client.cancel().await.unwrap();

    let http = reqwest::Client::new();
    for (expected, token) in refused_tokens(&key) {
        let response = http
            .post(&app.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .bearer_auth(token)
            .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{expected}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            challenge.starts_with(
                r#"Bearer realm="sqlmcp", scope="sales:read sales:sql", error="invalid_token""#
            ),
            "{challenge}"
        );
        assert!(
            response.text().await.unwrap().contains(expected),
            "{expected}"
        );
    }
    let missing = http
        .post(&app.url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(
        missing.headers()["www-authenticate"],
        r#"Bearer realm="sqlmcp", scope="sales:read sales:sql""#
    );
    app.stop().await.unwrap();
}

/// Tokens the server must refuse, each with part of the reason it gives;
/// all but one are otherwise valid, and signed with `key` unless the
/// signature is what is wrong.
fn refused_tokens(key: &jsonwebtoken::EncodingKey) -> [(&'static str, String); 6] {
    use base64::Engine as _;
    let hs = jsonwebtoken::Algorithm::HS256;
    let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims(HEAD_OFFICE, "sqlmcp", "https://issuer.test", 300))
    );
    let other_key =
        jsonwebtoken::EncodingKey::from_secret(b"another secret, also long enough for HS256!!");
    [
        (
            "expired",
            token(
                claims(SEATTLE, "sqlmcp", "https://issuer.test", -3_600),
                hs,
                key,
            ),
        ),
        (
            "wrong audience",
            token(
                claims(SEATTLE, "someone-else", "https://issuer.test", 300),
                hs,
                key,
            ),
        ),
        (
            "wrong issuer",
            token(claims(SEATTLE, "sqlmcp", "https://evil.test", 300), hs, key),
        ),
        (
            "bad signature",
            token(
                claims(HEAD_OFFICE, "sqlmcp", "https://issuer.test", 300),
                hs,
                &other_key,
            ),
        ),
        ("never accepts (such as none)", unsigned),
        (
            "the `sub` claim is not a UUID",
            token(
                claims("admin", "sqlmcp", "https://issuer.test", 300),
                hs,
                key,
            ),
        ),
    ]
}
