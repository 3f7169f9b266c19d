//! The result cache of curated tools, seen through the server.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::CallToolResult;
use serde_json::{Value, json};

use crate::helpers::server::{TestApp, as_caller, call, spawn_app_with, text};
use crate::helpers::{HEAD_OFFICE, REDMOND, SEATTLE, TestDb};

/// `product_details`' price of its first row; the call must have succeeded.
fn price(result: &CallToolResult) -> Value {
    assert_eq!(result.is_error, Some(false), "{}", text(result));
    result.structured_content.as_ref().unwrap()["rows"][0]["base_price"].clone()
}

/// `execute_sales_query`'s first value.
fn raw_price(result: CallToolResult) -> Value {
    result.structured_content.unwrap()["r"][0][0].clone()
}

/// A server that keeps curated tools' answers for `ttl`.
async fn spawn_app_with_result_cache(db: Arc<TestDb>, ttl: Duration) -> TestApp {
    spawn_app_with(db, |s| {
        s.result_cache = Some(sqlmcp::server::result_cache::Settings {
            ttl,
            max_bytes: 1 << 20,
        })
    })
    .await
}

/// Changes the data behind the cached answer, as the owner.
async fn raise_the_drills_price(db: &TestDb) {
    db.owner()
        .await
        .execute(
            "UPDATE retail.products SET base_price = base_price + 1 WHERE sku = 'PWR-DRL-1001'",
            &[],
        )
        .await
        .unwrap();
}

/// With `--result-cache-ttl-ms`, a curated tool's answer is kept per tool,
/// arguments and caller for the TTL; other callers, other arguments, raw SQL
/// and a server without the cache see the data as it is.
#[tokio::test]
async fn the_result_cache_keeps_answers_per_tool_arguments_and_caller_for_its_ttl() {
    let db = Arc::new(TestDb::seeded().await);
    let ttl = Duration::from_secs(4);
    let cached = spawn_app_with_result_cache(db.clone(), ttl).await;
    let uncached = spawn_app_with(db.clone(), |_| {}).await;
    let drill = json!({"sku": "PWR-DRL-1001", "limit": 5});
    let (seattle, redmond) = (
        as_caller(&cached, SEATTLE).await,
        as_caller(&cached, REDMOND).await,
    );
    let kept = price(&call(&seattle, "product_details", drill.clone()).await);
    let started = std::time::Instant::now();
    // asked before the update too: the server without the cache, and raw SQL
    let plain = as_caller(&uncached, SEATTLE).await;
    assert_eq!(
        price(&call(&plain, "product_details", drill.clone()).await),
        kept
    );
    let sql = json!({"postgresql_query": "SELECT base_price FROM retail.products WHERE sku = 'PWR-DRL-1001'"});
    assert_eq!(
        raw_price(call(&seattle, "execute_sales_query", sql.clone()).await),
        kept
    );
    raise_the_drills_price(&db).await;
    let fresh = price(&call(&plain, "product_details", drill.clone()).await);
    assert_ne!(fresh, kept, "the update changed the price");

    // the same call, with its arguments in another order: the kept answer
    let reordered = json!({"limit": 5, "sku": "PWR-DRL-1001"});
    assert_eq!(
        price(&call(&seattle, "product_details", reordered).await),
        kept
    );
    // another caller, other arguments, raw SQL: the data as it is
    assert_eq!(
        price(&call(&redmond, "product_details", drill.clone()).await),
        fresh
    );
    assert_eq!(
        price(&call(&seattle, "product_details", json!({"sku": "PWR-DRL-1001"})).await),
        fresh
    );
    assert_eq!(
        raw_price(call(&seattle, "execute_sales_query", sql).await),
        fresh
    );
    // failures are not kept
    for _ in 0..2 {
        let refused = call(&seattle, "product_details", json!({"limit": 0})).await;
        assert_eq!(refused.is_error, Some(true));
    }
    assert!(
        started.elapsed() < ttl,
        "the checks above ran within the TTL"
    );

    assert_concurrent_calls_with_one_key_run_one_query(&cached).await;

    // after the TTL, the data as it is
    tokio::time::sleep((ttl + Duration::from_millis(500)).saturating_sub(started.elapsed())).await;
    assert_eq!(
        price(&call(&seattle, "product_details", drill).await),
        fresh
    );
    cached.stop().await.unwrap();
    uncached.stop().await.unwrap();
}

/// Eight concurrent calls with one key make one miss and seven hits; the
/// server's metrics also hold the single `product_details` hit made before
/// (the call with its arguments reordered).
async fn assert_concurrent_calls_with_one_key_run_one_query(cached: &TestApp) {
    let head_office = Arc::new(as_caller(cached, HEAD_OFFICE).await);
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let client = head_office.clone();
            tokio::spawn(async move { call(&client, "low_stock", json!({"limit": 7})).await })
        })
        .collect();
    for handle in calls {
        assert_eq!(handle.await.unwrap().is_error, Some(false));
    }
    let base = cached.url.trim_end_matches("/mcp").to_owned();
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        r#"sqlmcp_result_cache_lookups_total{tool="low_stock",result="miss"} 1"#,
        r#"sqlmcp_result_cache_lookups_total{tool="low_stock",result="hit"} 7"#,
        r#"sqlmcp_result_cache_lookups_total{tool="product_details",result="hit"} 1"#,
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
}
