//! Who may see what: identities with several stores (regional managers, and
//! tokens that list stores, regions or the head-office role), and scopes
//! that decide which tools a caller may use.

use std::sync::Arc;

use rmcp::model::{CallToolResult, ProtocolVersion};
use rmcp::service::RunningService;
use rmcp::{RoleClient, model::ClientConfig};
use serde_json::{Value, json};
use sqlmcp::auth::{Authenticator, ClaimNames};
use sqlmcp::caller::Scopes;

use crate::helpers::server::{
    JWT_ISSUER, JWT_SECRET, as_caller, call, claims, client, spawn_app_with, spawn_jwt_app_with,
    text, token,
};
use crate::helpers::{EAST_REGIONAL, EAST_STORE_IDS, HEAD_OFFICE, SEATTLE, TestDb};
use crate::tools::{actual, expected};

type Client = RunningService<RoleClient, ClientConfig>;

fn rows(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{}", text(result));
    result.structured_content.as_ref().unwrap()["rows"].clone()
}

/// The store ids of a result's rows, sorted, once each.
fn stores_in(result: &CallToolResult) -> Vec<i64> {
    let mut ids: Vec<i64> = rows(result)
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["store_id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// Head office's rows of a per-store result, kept only for `stores`.
fn only_stores(result: &CallToolResult, stores: &[i64]) -> Value {
    let kept: Vec<Value> = rows(result)
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| stores.contains(&r["store_id"].as_i64().unwrap()))
        .cloned()
        .collect();
    Value::Array(kept)
}

/// The region's stores, read by the owner: what the regional manager must
/// see, found without the identity machinery.
async fn stores_of_region(db: &TestDb, region: &str) -> Vec<i64> {
    db.owner()
        .await
        .query(
            "SELECT s.store_id::int8 FROM retail.stores s JOIN retail.regions r USING (region_id) \
             WHERE r.region_name = $1 ORDER BY 1",
            &[&region],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// Every tool, as `regional` and as head office: the regional manager sees
/// exactly the union of `stores`' rows, each number checked against SQL
/// that filters by those stores itself.
async fn check_every_tool(db: &TestDb, regional: &Client, head_office: &Client, stores: &[i64]) {
    let list = format!(
        "{{{}}}",
        stores
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    check_per_store_tools(regional, head_office, stores).await;
    check_totals(db, regional, &list).await;
    check_raw_sql(db, regional, &list).await;
    check_tools_without_tenant_rows(regional, head_office).await;
}

/// The tools that answer per store: head office's rows of `stores`, exactly.
async fn check_per_store_tools(regional: &Client, head_office: &Client, stores: &[i64]) {
    for (tool, args) in [
        ("store_performance", json!({})),
        ("low_stock", json!({"threshold": 5, "limit": 500})),
    ] {
        let mine = call(regional, tool, args.clone()).await;
        let all = call(head_office, tool, args).await;
        assert_eq!(stores_in(&mine), stores, "{tool}");
        assert_eq!(rows(&mine), only_stores(&all, stores), "{tool}");
        assert_eq!(all.structured_content.unwrap()["truncated"], false);
    }
}

/// Totals over the stores (`list`, an array literal), against SQL that
/// filters by them itself.
async fn check_totals(db: &TestDb, regional: &Client, list: &str) {
    let sums = [
        (
            "top_products",
            vec!["product_id", "revenue", "units_sold"],
            format!(
                "SELECT p.product_id::text, sum(oi.quantity * oi.unit_price - oi.discount_amount)::text, \
                        sum(oi.quantity)::text \
                 FROM retail.order_items oi JOIN retail.products p USING (product_id) \
                 WHERE oi.store_id = ANY ('{list}') GROUP BY p.product_id \
                 ORDER BY sum(oi.quantity * oi.unit_price - oi.discount_amount) DESC, p.product_id LIMIT 10"
            ),
        ),
        (
            "revenue_by_month",
            vec!["month", "revenue", "orders", "units"],
            format!(
                "SELECT date_trunc('month', o.order_date)::date::text, sum(oi.total_amount)::text, \
                        count(DISTINCT o.order_id)::text, sum(oi.quantity)::text \
                 FROM retail.orders o JOIN retail.order_items oi ON oi.order_id = o.order_id \
                 WHERE o.store_id = ANY ('{list}') GROUP BY 1 ORDER BY 1"
            ),
        ),
        (
            "sales_by_category",
            vec!["category_id", "revenue", "units_sold", "orders"],
            format!(
                "SELECT p.category_id::text, sum(oi.total_amount)::text, sum(oi.quantity)::text, \
                        count(DISTINCT oi.order_id)::text \
                 FROM retail.order_items oi JOIN retail.products p ON p.product_id = oi.product_id \
                 WHERE oi.store_id = ANY ('{list}') GROUP BY p.category_id \
                 ORDER BY sum(oi.total_amount) DESC, p.category_id"
            ),
        ),
    ];
    for (tool, fields, sql) in sums {
        let value = rows_or_all(&call(regional, tool, json!({})).await);
        assert_eq!(
            actual(&value, &fields),
            expected(db, HEAD_OFFICE, &sql).await,
            "{tool}"
        );
    }
    let stock = call(regional, "product_details", json!({"sku": "PWR-DRL-1001"})).await;
    let sql = format!(
        "SELECT sum(i.stock_level)::text FROM retail.inventory i JOIN retail.products p USING (product_id) \
         WHERE p.sku = 'PWR-DRL-1001' AND i.store_id = ANY ('{list}')"
    );
    assert_eq!(
        rows(&stock)[0]["units_in_stock"].to_string(),
        expected(db, HEAD_OFFICE, &sql).await[0][0]
    );
}

/// Raw SQL over every tenant table, per store.
async fn check_raw_sql(db: &TestDb, regional: &Client, list: &str) {
    for (table, column) in crate::helpers::TENANT_TABLES {
        let sql = format!(
            "SELECT {column} AS store_id, count(*)::text AS n FROM retail.{table} GROUP BY 1 ORDER BY 1",
            table = table.trim_start_matches("retail.")
        );
        let mine = call(
            regional,
            "execute_sales_query",
            json!({"postgresql_query": sql}),
        )
        .await;
        let independent = format!(
            "SELECT {column}::text, count(*)::text FROM {table} WHERE {column} = ANY ('{list}') GROUP BY 1 ORDER BY 1"
        );
        assert_eq!(
            raw_rows(&mine),
            expected(db, HEAD_OFFICE, &independent).await,
            "{table}"
        );
    }
}

/// The tools that read no tenant rows answer as they do for head office.
async fn check_tools_without_tenant_rows(regional: &Client, head_office: &Client) {
    for (tool, args) in [
        (
            "get_multiple_table_schemas",
            json!({"table_names": ["retail.regions", "retail.stores"]}),
        ),
        (
            "semantic_search_products",
            json!({"query_description": "cordless drill", "max_rows": 3}),
        ),
    ] {
        assert_eq!(
            rows_or_all(&call(regional, tool, args.clone()).await),
            rows_or_all(&call(head_office, tool, args).await),
            "{tool}"
        );
    }
}

/// A raw-SQL answer's rows (`r`), each value as text.
fn raw_rows(result: &CallToolResult) -> Vec<Vec<String>> {
    rows_or_all(result)["r"]
        .as_array()
        .expect("raw SQL rows")
        .iter()
        .map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|v| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

fn rows_or_all(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{}", text(result));
    result.structured_content.clone().unwrap()
}

#[tokio::test]
async fn a_regional_manager_sees_exactly_the_union_of_their_stores_in_every_tool() {
    let db = Arc::new(TestDb::seeded().await);
    let east = stores_of_region(&db, "East").await;
    assert_eq!(east, EAST_STORE_IDS, "the sample's East region");
    let app = spawn_app_with(db.clone(), |_| {}).await;
    let (regional, head_office) = (
        as_caller(&app, EAST_REGIONAL).await,
        as_caller(&app, HEAD_OFFICE).await,
    );
    check_every_tool(&db, &regional, &head_office, &east).await;
    for c in [regional, head_office] {
        c.cancel().await.unwrap();
    }
    app.stop().await.unwrap();
}

/// A token of [`spawn_jwt_app_with`]'s issuer with `extra` claims over
/// `sub`, `aud`, `iss`, `exp` and `nbf`.
fn signed(subject: &str, extra: Value) -> String {
    let mut claims = claims(subject, "sqlmcp", JWT_ISSUER, 300);
    for (name, value) in extra.as_object().unwrap() {
        claims[name] = value.clone();
    }
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    token(claims, jsonwebtoken::Algorithm::HS256, &key)
}

/// A client with a bearer token of `extra` claims.
async fn with_token(app_url: &str, subject: &str, extra: Value) -> Client {
    let bearer = format!("Bearer {}", signed(subject, extra));
    client(
        app_url,
        &[("authorization", &bearer)],
        ProtocolVersion::V_2025_11_25,
    )
    .await
}

/// The status and body of `tools/list` with a token of these claims.
async fn refused_token(app_url: &str, subject: &str, extra: Value) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(app_url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .bearer_auth(signed(subject, extra))
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn a_tokens_claims_name_its_stores_and_the_database_enforces_exactly_those() {
    let db = Arc::new(TestDb::seeded().await);
    let west_and_online = {
        let mut ids = stores_of_region(&db, "West").await;
        ids.extend(stores_of_region(&db, "Online").await);
        ids.sort();
        ids
    };
    let app = spawn_jwt_app_with(db.clone(), ClaimNames::default(), |_| {}).await;
    let cases: [(&str, Value, Vec<i64>); 6] = [
        // regions by name, in any case, from a subject that is no UUID
        (
            "auth0|west-lead",
            json!({"regions": ["west", "ONLINE"]}),
            west_and_online.clone(),
        ),
        ("auth0|two-stores", json!({"stores": [1, "7"]}), vec![1, 7]),
        (
            "auth0|mixed",
            json!({"stores": [3], "regions": "East"}),
            vec![2, 3, 4, 6, 7],
        ),
        // names and ids that exist nowhere see nothing
        (
            "auth0|ghost",
            json!({"stores": [999], "regions": ["Atlantis"]}),
            vec![],
        ),
        (
            "auth0|hq",
            json!({"roles": ["analyst", "head_office"]}),
            (1..=8).collect(),
        ),
        // no claims that list stores: the subject is mapped as in header mode
        (
            EAST_REGIONAL,
            json!({"roles": ["regional_manager"]}),
            EAST_STORE_IDS.to_vec(),
        ),
    ];
    for (subject, extra, expected) in cases {
        let caller = with_token(&app.url, subject, extra.clone()).await;
        let performance = call(&caller, "store_performance", json!({})).await;
        assert_eq!(stores_in(&performance), expected, "{subject} {extra}");
        let raw = call(
            &caller,
            "execute_sales_query",
            json!({"postgresql_query": "SELECT DISTINCT store_id FROM retail.orders ORDER BY 1"}),
        )
        .await;
        let seen: Vec<String> = raw_rows(&raw).into_iter().flatten().collect();
        let expected_text: Vec<String> = expected.iter().map(i64::to_string).collect();
        assert_eq!(seen, expected_text, "{subject} {extra}: raw SQL");
        caller.cancel().await.unwrap();
    }
    // a listed set is enforced in every tool like a regional manager's
    let listed = with_token(
        &app.url,
        "auth0|west-lead",
        json!({"regions": ["West", "Online"]}),
    )
    .await;
    let hq = with_token(&app.url, "auth0|hq", json!({"roles": ["head_office"]})).await;
    check_every_tool(&db, &listed, &hq, &west_and_online).await;
    for c in [listed, hq] {
        c.cancel().await.unwrap();
    }
    // claims that cannot be read are refused, never ignored
    for (subject, extra, reason) in [
        ("auth0|nobody", json!({}), "not a UUID"),
        (SEATTLE, json!({"stores": ["one"]}), "list of store ids"),
        (SEATTLE, json!({"regions": [7]}), "list of strings"),
        (SEATTLE, json!({"scope": 7}), "list of scopes"),
    ] {
        let (status, body) = refused_token(&app.url, subject, extra.clone()).await;
        assert_eq!(status, 401, "{extra}");
        assert!(body.contains(reason), "{extra}: {body}");
    }
    app.stop().await.unwrap();
}

/// The names `tools/list` gives `caller`.
async fn listed(caller: &Client) -> Vec<String> {
    let mut names: Vec<String> = caller
        .list_tools(None)
        .await
        .unwrap()
        .tools
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn scopes_decide_which_tools_a_caller_sees_and_may_call() {
    let db = Arc::new(TestDb::seeded().await);
    let app = spawn_jwt_app_with(db.clone(), ClaimNames::default(), |_| {}).await;
    let every: Vec<String> = {
        let all = with_token(&app.url, SEATTLE, json!({})).await;
        let names = listed(&all).await;
        all.cancel().await.unwrap();
        names
    };
    assert_eq!(
        every.len(),
        10,
        "a token without scopes gets the defaults: all"
    );
    let sql = json!({"postgresql_query": "SELECT count(*) AS n FROM retail.orders"});

    let reader = with_token(&app.url, SEATTLE, json!({"scope": "openid sales:read"})).await;
    let names = listed(&reader).await;
    assert_eq!(names.len(), 9);
    assert!(
        !names.iter().any(|n| n == "execute_sales_query"),
        "{names:?}"
    );
    assert_ne!(
        call(&reader, "top_products", json!({})).await.is_error,
        Some(true)
    );
    let refused = call(&reader, "execute_sales_query", sql.clone()).await;
    assert_eq!(refused.is_error, Some(true));
    assert_eq!(
        text(&refused),
        "refused: `execute_sales_query` needs the scope `sales:sql`, which this caller's credential \
         does not grant (it grants: openid sales:read)"
    );
    reader.cancel().await.unwrap();

    // Entra ID's `scp`, as a list
    let analyst = with_token(&app.url, SEATTLE, json!({"scp": ["sales:sql"]})).await;
    assert_eq!(listed(&analyst).await, ["execute_sales_query"]);
    assert_ne!(
        call(&analyst, "execute_sales_query", sql.clone())
            .await
            .is_error,
        Some(true)
    );
    let refused = call(&analyst, "store_performance", json!({})).await;
    assert!(
        text(&refused).contains("needs the scope `sales:read`"),
        "{}",
        text(&refused)
    );
    analyst.cancel().await.unwrap();

    let none = with_token(&app.url, SEATTLE, json!({"scope": "openid profile"})).await;
    assert!(listed(&none).await.is_empty());
    let refused = call(&none, "get_current_utc_date", json!({})).await;
    assert!(
        text(&refused).contains("(it grants: openid profile)"),
        "{}",
        text(&refused)
    );
    none.cancel().await.unwrap();
    app.stop().await.unwrap();

    // header mode: the operator's default scopes, for everyone
    let app = spawn_app_with(db, |s| {
        s.authenticator = Arc::new(Authenticator::Header(Scopes::new(["sales:read"])));
    })
    .await;
    let seattle = as_caller(&app, SEATTLE).await;
    assert_eq!(listed(&seattle).await.len(), 9);
    let refused = call(&seattle, "execute_sales_query", sql).await;
    assert!(
        text(&refused).contains("needs the scope `sales:sql`"),
        "{}",
        text(&refused)
    );
    seattle.cancel().await.unwrap();
    app.stop().await.unwrap();
}
