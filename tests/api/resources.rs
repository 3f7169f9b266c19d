//! Resources, resource templates and completions, through a real MCP
//! client: every `retail` table and every query file is a resource; the
//! templates that query files declare read under the caller's row-level
//! security through the path of a tool call; completions offer what the
//! caller may see, from lists and from queries; a caller needs the scopes
//! tools need; directives that cannot work fail the build with file and
//! line.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    ArgumentInfo, CompleteRequestParams, CompletionInfo, ErrorCode, ProtocolVersion,
    ReadResourceRequestParams, Reference, ResourceContents,
};
use rmcp::service::{RunningService, ServiceError};
use rmcp::{RoleClient, model::ClientConfig};
use serde_json::{Value, json};
use sqlmcp::audit;
use sqlmcp::auth::Authenticator;
use sqlmcp::caller::{Caller, CallerId, Principal, Scopes};
use sqlmcp::completion::Engine;
use tokio_util::sync::CancellationToken;

use crate::codegen::{WORKSPACE_BUILDS, Workspace};
use crate::helpers::server::{as_caller, call, client, spawn_app_with};
use crate::helpers::{HEAD_OFFICE, SEATTLE, SEATTLE_STORE_ID, TestDb, admin_config, stderr};

type Client = RunningService<RoleClient, ClientConfig>;

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");

/// What a read answered: its one content's URI, MIME type and text.
async fn read(client: &Client, uri: &str) -> Result<(String, String, String), ServiceError> {
    let result = client
        .read_resource(ReadResourceRequestParams::new(uri))
        .await?;
    assert_eq!(result.contents.len(), 1, "{uri}");
    assert_eq!(
        result.cache_scope,
        Some(rmcp::model::CacheScope::Private),
        "{uri}: what a caller reads is theirs"
    );
    match &result.contents[0] {
        ResourceContents::TextResourceContents {
            uri,
            mime_type,
            text,
            ..
        } => Ok((
            uri.clone(),
            mime_type.clone().unwrap_or_default(),
            text.clone(),
        )),
        other => panic!("{uri}: not text: {other:?}"),
    }
}

/// A read that must succeed, as JSON.
async fn read_json(client: &Client, uri: &str) -> Value {
    let (read_uri, mime, text) = read(client, uri)
        .await
        .unwrap_or_else(|err| panic!("{uri}: {err}"));
    assert_eq!(
        (read_uri.as_str(), mime.as_str()),
        (uri, "application/json")
    );
    serde_json::from_str(&text).unwrap()
}

/// The MCP error of a read that must fail.
async fn read_error(client: &Client, uri: &str) -> rmcp::model::ErrorData {
    match read(client, uri).await {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("{uri}: expected an MCP error, got {other:?}"),
    }
}

async fn complete(client: &Client, template: &str, variable: &str, typed: &str) -> CompletionInfo {
    client
        .complete_resource_argument(template, variable, typed, None)
        .await
        .unwrap_or_else(|err| panic!("{template} {variable} {typed:?}: {err}"))
}

async fn prompt_completes(client: &Client, request: CompleteRequestParams) -> CompletionInfo {
    client
        .complete(request)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
        .completion
}

async fn strings(db: &TestDb, sql: &str) -> Vec<String> {
    db.owner()
        .await
        .query(sql, &[])
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn every_table_is_a_resource_described_as_the_database_catalogue_says() {
    let db = Arc::new(TestDb::seeded().await);
    let app = spawn_app_with(db.clone(), |_| {}).await;
    let head_office = as_caller(&app, HEAD_OFFICE).await;
    let seattle = as_caller(&app, SEATTLE).await;

    let capabilities = &head_office.peer_info().unwrap().capabilities;
    assert!(capabilities.resources.is_some() && capabilities.completions.is_some());

    let listed = head_office.list_all_resources().await.unwrap();
    let mut tables: Vec<String> = listed
        .iter()
        .filter(|r| r.uri.starts_with("zava://tables/"))
        .map(|r| r.name.clone())
        .collect();
    tables.sort();
    let expected = strings(
        &db,
        "SELECT table_schema || '.' || table_name FROM information_schema.tables \
         WHERE table_schema = 'retail' ORDER BY 1",
    )
    .await;
    assert_eq!(tables, expected);

    let owner = db.owner().await;
    for table in &tables {
        let uri = format!("zava://tables/{table}");
        let resource = listed.iter().find(|r| r.uri == uri).unwrap();
        assert_eq!(resource.mime_type.as_deref(), Some("application/json"));
        let described = read_json(&head_office, &uri).await;
        assert_eq!(described["table"], *table);
        let (_, name) = table.split_once('.').unwrap();

        // columns, in order, from information_schema
        let columns: Vec<Value> = owner
            .query(
                "SELECT column_name::text, data_type::text, udt_name::text, \
                        character_maximum_length, numeric_precision, numeric_scale, \
                        is_nullable = 'YES' \
                 FROM information_schema.columns \
                 WHERE table_schema = 'retail' AND table_name = $1 ORDER BY ordinal_position",
                &[&name],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| {
                let data_type: String = row.get(1);
                let length: Option<i32> = row.get(3);
                let precision: Option<i32> = row.get(4);
                let scale: Option<i32> = row.get(5);
                let written = match (data_type.as_str(), length, precision) {
                    ("character varying", Some(length), _) => {
                        format!("character varying({length})")
                    }
                    ("numeric", _, Some(precision)) => {
                        format!("numeric({precision},{})", scale.unwrap_or(0))
                    }
                    ("USER-DEFINED", _, _) => row.get(2),
                    _ => data_type,
                };
                json!({"name": row.get::<_, String>(0), "type": written, "nullable": row.get::<_, bool>(6)})
            })
            .collect();
        assert_eq!(described["columns"], Value::Array(columns), "{table}");

        // keys: as many as information_schema knows, the primary key first
        let keys: i64 = owner
            .query_one(
                "SELECT count(*) FROM information_schema.table_constraints \
                 WHERE table_schema = 'retail' AND table_name = $1 \
                   AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY', 'UNIQUE')",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        let constraints = described["constraints"].as_array().unwrap();
        assert_eq!(constraints.len() as i64, keys, "{table}");
        if let Some(first) = constraints.first() {
            assert!(
                first.as_str().unwrap().starts_with("PRIMARY KEY"),
                "{table}"
            );
        }
        let secured: bool = owner
            .query_one(
                "SELECT rowsecurity FROM pg_tables WHERE schemaname = 'retail' AND tablename = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(described["row_level_security"], secured, "{table}");

        // the same for every caller: a schema is no tenant's data
        assert_eq!(read_json(&seattle, &uri).await, described, "{table}");
    }

    // the reference tables list their rows
    let stores = read_json(&seattle, "zava://tables/retail.stores").await;
    let expected: Vec<Value> = owner
        .query(
            "SELECT store_id, store_name::text, is_online, region_id FROM retail.stores ORDER BY store_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| {
            json!({"store_id": row.get::<_, i32>(0), "store_name": row.get::<_, String>(1),
                   "is_online": row.get::<_, bool>(2), "region_id": row.get::<_, Option<i32>>(3)})
        })
        .collect();
    assert_eq!(stores["rows"], Value::Array(expected));
    assert!(
        !stores.to_string().contains("rls_user_id\":\"") && !stores.to_string().contains(SEATTLE),
        "a manager's id is a credential in header mode"
    );

    for c in [head_office, seattle] {
        c.cancel().await.unwrap();
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn every_query_file_is_a_resource_with_its_exact_text() {
    let app = crate::helpers::server::spawn_app().await;
    let seattle = as_caller(&app, SEATTLE).await;
    let listed = seattle.list_all_resources().await.unwrap();
    let mut files: Vec<String> = std::fs::read_dir(Path::new(REPOSITORY).join("queries"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".sql"))
        .collect();
    files.sort();
    let mut uris: Vec<String> = listed
        .iter()
        .filter(|r| r.uri.starts_with("zava://queries/"))
        .map(|r| r.uri.clone())
        .collect();
    uris.sort();
    let expected: Vec<String> = files
        .iter()
        .map(|f| format!("zava://queries/{f}"))
        .collect();
    assert_eq!(uris, expected);
    for file in &files {
        let uri = format!("zava://queries/{file}");
        let on_disk = std::fs::read(Path::new(REPOSITORY).join("queries").join(file)).unwrap();
        let resource = listed.iter().find(|r| r.uri == uri).unwrap();
        assert_eq!(resource.mime_type.as_deref(), Some("application/sql"));
        assert_eq!(resource.size, Some(on_disk.len() as u64), "{file}");
        let (read_uri, mime, text) = read(&seattle, &uri).await.unwrap();
        assert_eq!(
            (read_uri.as_str(), mime.as_str()),
            (uri.as_str(), "application/sql")
        );
        assert_eq!(text.as_bytes(), on_disk.as_slice(), "{file}: byte for byte");
    }
    seattle.cancel().await.unwrap();
    app.stop().await.unwrap();
}

/// `sqlmcp catalogue` lists what the files declare, with no database.
#[test]
fn the_catalogue_command_lists_resources_templates_and_completions() {
    let output = crate::helpers::sqlmcp(&["catalogue", "--markdown"], &[]);
    assert!(output.status.success(), "{}", stderr(&output));
    let markdown = crate::helpers::stdout(&output);
    for expected in [
        "## Tools",
        "| `top_products` |",
        "## Resources",
        "| `zava://tables/retail.orders` |",
        "| `zava://queries/store_summary.sql` |",
        "## Resource templates",
        "| `zava://stores/{store_id}/summary` |",
        "`store_summary` (resource only)",
        "`sku`: a query (queries/product_details.sql:11)",
        "`rank_by`: revenue, units",
    ] {
        assert!(markdown.contains(expected), "{expected}\n{markdown}");
    }
    let output = crate::helpers::sqlmcp(&["catalogue"], &[]);
    let catalogue: Value = serde_json::from_slice(&output.stdout).unwrap();
    let summary = catalogue["resourceTemplates"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["uriTemplate"] == "zava://stores/{store_id}/summary")
        .unwrap();
    assert_eq!(summary["query"], "store_summary");
    assert_eq!(
        summary["completions"]["store_id"]["query"]["file"],
        "queries/store_summary.sql"
    );
    assert!(
        !catalogue["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "store_summary"),
        "a resource-only query is no tool"
    );
}

/// A directory of one test's own, removed when dropped.
struct Scratch(std::path::PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The summary of `store`, computed by the owner without row-level
/// security, as the template's JSON row.
async fn store_summary(db: &TestDb, store: i32) -> Value {
    let row = db
        .owner()
        .await
        .query_one(
            "SELECT s.store_id, s.store_name::text, \
                    (SELECT region_name::text FROM retail.regions r WHERE r.region_id = s.region_id), \
                    s.is_online, \
                    (SELECT count(*) FROM retail.customers WHERE primary_store_id = s.store_id), \
                    (SELECT count(*) FROM retail.orders WHERE store_id = s.store_id), \
                    (SELECT coalesce(sum(quantity), 0)::int8 FROM retail.order_items WHERE store_id = s.store_id), \
                    (SELECT coalesce(sum(total_amount), 0)::text FROM retail.order_items WHERE store_id = s.store_id), \
                    (SELECT min(order_date)::text FROM retail.orders WHERE store_id = s.store_id), \
                    (SELECT max(order_date)::text FROM retail.orders WHERE store_id = s.store_id), \
                    (SELECT count(*) FROM retail.inventory WHERE store_id = s.store_id), \
                    (SELECT coalesce(sum(stock_level), 0)::int8 FROM retail.inventory WHERE store_id = s.store_id), \
                    (SELECT count(*) FROM retail.inventory WHERE store_id = s.store_id AND stock_level < 10) \
             FROM retail.stores s WHERE s.store_id = $1",
            &[&store],
        )
        .await
        .unwrap();
    json!({
        "store_id": row.get::<_, i32>(0),
        "store_name": row.get::<_, String>(1),
        "region_name": row.get::<_, Option<String>>(2),
        "is_online": row.get::<_, bool>(3),
        "customers": row.get::<_, i64>(4),
        "orders": row.get::<_, i64>(5),
        "units_sold": row.get::<_, i64>(6),
        "revenue": row.get::<_, String>(7),
        "first_order_date": row.get::<_, Option<String>>(8),
        "last_order_date": row.get::<_, Option<String>>(9),
        "products_stocked": row.get::<_, i64>(10),
        "units_in_stock": row.get::<_, i64>(11),
        "low_stock_products": row.get::<_, i64>(12),
    })
}

/// The one row of a template's answer.
fn only_row(answer: &Value) -> &Value {
    assert_eq!(answer["row_count"], 1, "{answer}");
    &answer["rows"][0]
}

#[tokio::test]
async fn templates_read_as_the_caller_through_the_path_of_a_tool_call() {
    let db = Arc::new(TestDb::seeded().await);
    let scratch =
        Scratch(std::env::temp_dir().join(format!("sqlmcp-resources-{}", rand::random::<u64>())));
    let app = spawn_app_with(db.clone(), |s| {
        s.audit = audit::Settings {
            table: Some(audit::TableSettings {
                database: db.audit_config(),
                spool_dir: scratch.0.join("spool"),
                spool_max_bytes: 64 << 20,
            }),
            batch_size: 16,
            flush_every: Duration::from_millis(20),
            ..Default::default()
        };
    })
    .await;
    let head_office = as_caller(&app, HEAD_OFFICE).await;
    let seattle = as_caller(&app, SEATTLE).await;

    let mut templates: Vec<(String, String)> = seattle
        .list_all_resource_templates()
        .await
        .unwrap()
        .into_iter()
        .map(|t| {
            assert_eq!(t.mime_type.as_deref(), Some("application/json"));
            (t.uri_template, t.name)
        })
        .collect();
    templates.sort();
    assert_eq!(
        templates,
        [
            (
                "zava://products/{sku}".to_owned(),
                "product_details".to_owned()
            ),
            (
                "zava://stores/{store_id}/summary".to_owned(),
                "store_summary".to_owned()
            ),
            (
                "zava://top-products/{rank_by}".to_owned(),
                "top_products".to_owned()
            ),
        ]
    );

    // a product stocked in Seattle and elsewhere: Seattle counts its own stock only
    let owner = db.owner().await;
    let row = owner
        .query_one(
            "SELECT p.sku::text, \
                    (SELECT sum(stock_level)::int8 FROM retail.inventory i WHERE i.product_id = p.product_id), \
                    (SELECT sum(stock_level)::int8 FROM retail.inventory i WHERE i.product_id = p.product_id AND i.store_id = $1) \
             FROM retail.products p \
             WHERE EXISTS (SELECT 1 FROM retail.inventory i WHERE i.product_id = p.product_id AND i.store_id = $1 AND i.stock_level > 0) \
               AND EXISTS (SELECT 1 FROM retail.inventory i WHERE i.product_id = p.product_id AND i.store_id <> $1 AND i.stock_level > 0) \
             ORDER BY p.product_id LIMIT 1",
            &[&SEATTLE_STORE_ID],
        )
        .await
        .unwrap();
    let (sku, everywhere, in_seattle): (String, i64, i64) = (row.get(0), row.get(1), row.get(2));
    assert!(everywhere > in_seattle);
    let uri = format!("zava://products/{sku}");
    let as_head_office = read_json(&head_office, &uri).await;
    assert_eq!(only_row(&as_head_office)["sku"], sku.as_str());
    assert_eq!(only_row(&as_head_office)["units_in_stock"], everywhere);
    let as_seattle = read_json(&seattle, &uri).await;
    assert_eq!(only_row(&as_seattle)["units_in_stock"], in_seattle);
    // what the tool answers to the same caller, exactly
    let tool = call(&seattle, "product_details", json!({"sku": sku})).await;
    assert_eq!(tool.structured_content.as_ref(), Some(&as_seattle));
    // the SKU is matched as the tool matches it, case aside; percent-encoded too
    let lower = read_json(&seattle, &format!("zava://products/{}", sku.to_lowercase())).await;
    assert_eq!(lower, as_seattle);
    let encoded = read_json(
        &seattle,
        &format!("zava://products/{}", sku.replace('-', "%2D")),
    )
    .await;
    assert_eq!(encoded, as_seattle);

    // a store's summary: Seattle's own as head office sees it, another store not at all
    let seattle_summary = store_summary(&db, SEATTLE_STORE_ID).await;
    let read_by_head_office = read_json(&head_office, "zava://stores/1/summary").await;
    assert_eq!(*only_row(&read_by_head_office), seattle_summary);
    let read_by_seattle = read_json(&seattle, "zava://stores/1/summary").await;
    assert_eq!(*only_row(&read_by_seattle), seattle_summary);
    let other = read_json(&head_office, "zava://stores/2/summary").await;
    assert_eq!(*only_row(&other), store_summary(&db, 2).await);
    let hidden = read_error(&seattle, "zava://stores/2/summary").await;
    let missing = read_error(&seattle, "zava://stores/999/summary").await;
    assert_eq!(hidden.code, ErrorCode::RESOURCE_NOT_FOUND);
    assert_eq!(
        (
            missing.code,
            missing.message.replace("999", "2"),
            missing.data.map(|d| d.to_string().replace("999", "2"))
        ),
        (
            hidden.code,
            hidden.message.to_string(),
            hidden.data.map(|d| d.to_string())
        ),
        "another store's summary and a store that does not exist look alike"
    );
    assert_eq!(
        read_error(&head_office, "zava://stores/999/summary")
            .await
            .code,
        ErrorCode::RESOURCE_NOT_FOUND
    );
    let not_a_number = read_error(&head_office, "zava://stores/first/summary").await;
    assert_eq!(not_a_number.code, ErrorCode::INVALID_PARAMS);
    assert!(
        not_a_number.message.contains("store_id"),
        "{}",
        not_a_number.message
    );

    // top products by units: what the tool answers
    let by_units = read_json(&seattle, "zava://top-products/units").await;
    let tool = call(&seattle, "top_products", json!({"rank_by": "units"})).await;
    assert_eq!(tool.structured_content.as_ref(), Some(&by_units));
    let refused = read_error(&seattle, "zava://top-products/price").await;
    assert_eq!(refused.code, ErrorCode::INVALID_PARAMS);
    assert!(
        refused.message.contains("must be one of revenue, units"),
        "{}",
        refused.message
    );

    // URIs that name nothing
    for uri in [
        "zava://nothing/1",
        "zava://stores/1/summary/extra",
        "zava://products/a/b",
        "zava://tables/retail.nope",
        "zava://tables/pg_catalog.pg_authid",
        "zava://queries/nope.sql",
        "zava://queries/../Cargo.toml",
        "file:///etc/passwd",
    ] {
        let error = read_error(&head_office, uri).await;
        assert_eq!(error.code, ErrorCode::RESOURCE_NOT_FOUND, "{uri}");
        assert_eq!(error.data, Some(json!({ "uri": uri })), "{uri}");
    }

    // each read of a template or a table is audited as a call of its query
    let audited = async {
        loop {
            let rows = owner
                .query(
                    "SELECT tool, arguments, outcome, row_count, stores FROM sqlmcp_audit.calls \
                     WHERE tool = 'store_summary' AND caller_id = $1::text::uuid",
                    &[&SEATTLE],
                )
                .await
                .unwrap();
            if rows.len() >= 3 {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let rows = tokio::time::timeout(Duration::from_secs(10), audited)
        .await
        .expect("Seattle's three summary reads are audited");
    /// An audit entry: arguments, outcome, rows, the stores it could see.
    type Entry = (Value, String, Option<i64>, Option<Vec<i32>>);
    let mut entries: Vec<Entry> = rows
        .iter()
        .map(|r| (r.get(1), r.get(2), r.get(3), r.get(4)))
        .collect();
    entries.sort_by_key(|e| e.0.to_string());
    assert_eq!(
        entries,
        [
            (
                json!({"store_id": 1}),
                "ok".to_owned(),
                Some(1),
                Some(vec![1])
            ),
            (
                json!({"store_id": 2}),
                "ok".to_owned(),
                Some(0),
                Some(vec![1])
            ),
            (
                json!({"store_id": 999}),
                "ok".to_owned(),
                Some(0),
                Some(vec![1])
            ),
        ]
    );

    for c in [head_office, seattle] {
        c.cancel().await.unwrap();
    }
    app.stop().await.unwrap();
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test]
async fn completions_offer_what_the_caller_may_see() {
    let db = Arc::new(TestDb::seeded().await);
    let app = spawn_app_with(db.clone(), |_| {}).await;
    let head_office = as_caller(&app, HEAD_OFFICE).await;
    let seattle = as_caller(&app, SEATTLE).await;
    let summary = "zava://stores/{store_id}/summary";
    let product = "zava://products/{sku}";

    // a query under row-level security: Seattle is offered its own store only
    let every_store = strings(
        &db,
        "SELECT store_id::text FROM retail.stores ORDER BY store_id",
    )
    .await;
    assert!(every_store.len() > 1);
    let offered = complete(&head_office, summary, "store_id", "").await;
    assert_eq!(offered.values, every_store);
    assert_eq!(
        (offered.total, offered.has_more),
        (Some(every_store.len() as u32), Some(false))
    );
    let offered = complete(&seattle, summary, "store_id", "").await;
    assert_eq!(offered.values, ["1"]);
    assert_eq!((offered.total, offered.has_more), (Some(1), Some(false)));
    assert!(
        complete(&seattle, summary, "store_id", "2")
            .await
            .values
            .is_empty()
    );
    assert_eq!(
        complete(&head_office, summary, "store_id", "2")
            .await
            .values,
        ["2"]
    );

    // public data: the same for everyone, by prefix, case aside
    let first_sku = strings(
        &db,
        "SELECT sku::text FROM retail.products ORDER BY sku LIMIT 1",
    )
    .await;
    let typed = first_sku[0][..3].to_lowercase();
    let expected = strings(
        &db,
        &format!("SELECT sku::text FROM retail.products WHERE sku ILIKE '{typed}%' ORDER BY sku"),
    )
    .await;
    assert!(!expected.is_empty() && expected.len() <= 100);
    for caller in [&head_office, &seattle] {
        let offered = complete(caller, product, "sku", &typed).await;
        assert_eq!(offered.values, expected);
        assert_eq!(offered.total, Some(expected.len() as u32));
        assert_eq!(offered.has_more, Some(false));
    }
    // what a user types is never a wildcard
    for literal in ["%", "_", "\\", "%-%"] {
        let offered = complete(&head_office, product, "sku", literal).await;
        assert!(
            offered.values.is_empty(),
            "{literal:?}: {:?}",
            offered.values
        );
    }
    // at most 100 values, and honest about the rest
    let products: i64 = db
        .owner()
        .await
        .query_one("SELECT count(*) FROM retail.products", &[])
        .await
        .unwrap()
        .get(0);
    let offered = complete(&seattle, product, "sku", "").await;
    if products > 100 {
        assert_eq!(offered.values.len(), 100);
        assert_eq!((offered.total, offered.has_more), (None, Some(true)));
    } else {
        assert_eq!(offered.total, Some(products as u32));
    }

    // a parameter's enum=, offered as listed
    let rank = "zava://top-products/{rank_by}";
    assert_eq!(
        complete(&seattle, rank, "rank_by", "").await.values,
        ["revenue", "units"]
    );
    let offered = complete(&seattle, rank, "rank_by", "U").await;
    assert_eq!(offered.values, ["units"]);
    assert_eq!((offered.total, offered.has_more), (Some(1), Some(false)));

    // a prompt's arguments, through the same engine and under the same
    // row-level security
    let prompt = |name: &str, argument: &str, typed: &str| {
        CompleteRequestParams::new(
            Reference::for_prompt(name),
            ArgumentInfo::new(argument, typed),
        )
    };
    let stocked = strings(
        &db,
        "SELECT DISTINCT store_id::text FROM retail.inventory ORDER BY 1",
    )
    .await;
    assert!(stocked.len() > 1);
    let review = |caller| prompt_completes(caller, prompt("monthly_store_review", "store_id", ""));
    assert_eq!(review(&head_office).await.values, stocked);
    assert_eq!(review(&seattle).await.values, ["1"]);
    let categories = strings(
        &db,
        "SELECT category_name::text FROM retail.categories WHERE category_name ILIKE 'p%' ORDER BY 1",
    )
    .await;
    assert!(!categories.is_empty());
    assert_eq!(
        prompt_completes(&seattle, prompt("category_deep_dive", "category", "p"))
            .await
            .values,
        categories
    );
    let latest_month = strings(
        &db,
        "SELECT to_char(date_trunc('month', max(order_date)), 'YYYY-MM-DD') FROM retail.orders",
    )
    .await;
    let starts =
        prompt_completes(&head_office, prompt("category_deep_dive", "start_date", "")).await;
    assert_eq!(starts.values.first(), latest_month.first());
    assert!(
        starts.values.iter().all(|day| day.ends_with("-01")),
        "{:?}",
        starts.values
    );
    assert_eq!(
        prompt_completes(&seattle, prompt("restock_plan", "cover_weeks", "1"))
            .await
            .values,
        ["12"]
    );
    for (name, argument) in [
        ("weekly_review", "store"),
        ("monthly_store_review", "region"),
    ] {
        match seattle.complete(prompt(name, argument, "")).await {
            Err(ServiceError::McpError(error)) => {
                assert_eq!(error.code, ErrorCode::INVALID_PARAMS, "{name} {argument}")
            }
            other => panic!("{name} {argument}: {other:?}"),
        }
    }

    // what does not exist
    for (template, variable) in [("zava://nothing/{x}", "x"), (product, "name")] {
        match seattle
            .complete_resource_argument(template, variable, "", None)
            .await
        {
            Err(ServiceError::McpError(error)) => {
                assert_eq!(
                    error.code,
                    ErrorCode::INVALID_PARAMS,
                    "{template} {variable}"
                )
            }
            other => panic!("{template} {variable}: {other:?}"),
        }
    }

    // latency: what a user typing sees, over HTTP, through the whole
    // server; a list (no database) beside the queries shows what HTTP and
    // MCP take of it
    let skus = strings(
        &db,
        "SELECT sku::text FROM retail.products ORDER BY product_id",
    )
    .await;
    let mut timings: [Vec<Duration>; 4] = Default::default();
    for (n, sku) in skus.iter().cycle().take(600).enumerate() {
        let (template, variable, typed) = match n % 4 {
            0 => (product, "sku", &sku[..2]),
            1 => (summary, "store_id", ""),
            2 => (rank, "rank_by", ""),
            _ => {
                let started = Instant::now();
                call(&seattle, "get_current_utc_date", json!({})).await;
                timings[3].push(started.elapsed());
                continue;
            }
        };
        let started = Instant::now();
        let offered = complete(&seattle, template, variable, typed).await;
        timings[n % 4].push(started.elapsed());
        assert!(!offered.values.is_empty());
    }
    let mut medians = Vec::new();
    for (timings, what) in timings.iter_mut().zip([
        "completion of sku (query, public data)",
        "completion of store_id (query, row-level security)",
        "completion of rank_by (list, no database)",
        "for comparison, tools/call get_current_utc_date (no database)",
    ]) {
        timings.sort();
        let (p50, p95) = (percentile(timings, 50), percentile(timings, 95));
        eprintln!(
            "over HTTP as Seattle, {what}: {} requests, p50 {:.2} ms, p95 {:.2} ms",
            timings.len(),
            p50.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3
        );
        medians.push(p50);
    }
    assert!(medians[0] < Duration::from_millis(100), "{medians:?}");

    for c in [head_office, seattle] {
        c.cancel().await.unwrap();
    }
    app.stop().await.unwrap();
}

/// The engine alone, in this process, on one pooled connection: a
/// completion query as Seattle, its statements prepared once for the
/// connection, and (for comparison) prepared in every call, as behind an
/// old PgBouncer.
#[tokio::test]
async fn the_completion_engine_answers_within_milliseconds() {
    let db = TestDb::seeded().await;
    let pool = sqlmcp::db::pool(&db.app_config(), 1, Duration::from_secs(5)).unwrap();
    let wait = Duration::from_secs(5);
    let databases = sqlmcp::db::Databases::new(pool, db.app_config(), &[], 1, wait, wait).unwrap();
    let seattle = Caller::by_id(
        CallerId::for_tests(SEATTLE),
        Principal::Header,
        Scopes::default(),
    );
    let template = sqlmcp::resources::template("zava://stores/{store_id}/summary").unwrap();
    let source = template.variables()[0].completion.as_ref().unwrap();
    let gone = CancellationToken::new();
    let mut medians = Vec::new();
    for statement_cache in [true, false] {
        let engine = Engine {
            databases: &databases,
            pool_wait: Duration::from_secs(5),
            statement_cache,
        };
        let mut timings = Vec::new();
        for _ in 0..300 {
            let started = Instant::now();
            let offered = sqlmcp::completion::complete(engine, &seattle, source, "", &gone)
                .await
                .unwrap();
            timings.push(started.elapsed());
            assert_eq!(offered.values, ["1"]);
        }
        timings.sort();
        let (p50, p95) = (percentile(&timings, 50), percentile(&timings, 95));
        eprintln!(
            "completion engine in process, store_id as Seattle, prepared {}: 300 completions, \
             p50 {:.2} ms, p95 {:.2} ms",
            if statement_cache {
                "once per connection"
            } else {
                "in every call"
            },
            p50.as_secs_f64() * 1e3,
            p95.as_secs_f64() * 1e3
        );
        medians.push(p50);
    }
    assert!(medians[0] < Duration::from_millis(25), "{medians:?}");
}

#[tokio::test]
async fn reading_and_completing_need_the_scopes_tools_need() {
    let db = Arc::new(TestDb::seeded().await);
    // a credential that may only run raw SQL
    let app = spawn_app_with(db.clone(), |s| {
        s.authenticator = Arc::new(Authenticator::Header(Scopes::new(["sales:sql"])));
    })
    .await;
    let seattle = as_caller(&app, SEATTLE).await;
    assert!(seattle.list_all_resources().await.unwrap().is_empty());
    assert!(
        seattle
            .list_all_resource_templates()
            .await
            .unwrap()
            .is_empty()
    );
    for uri in [
        "zava://stores/1/summary",
        "zava://products/x",
        "zava://tables/retail.orders",
        "zava://queries/top_products.sql",
    ] {
        let refused = read_error(&seattle, uri).await;
        assert_eq!(refused.code, ErrorCode::INVALID_REQUEST, "{uri}");
        assert!(
            refused.message.contains("needs the scope `sales:read`")
                && refused.message.contains("(it grants: sales:sql)"),
            "{uri}: {}",
            refused.message
        );
    }
    match seattle
        .complete_resource_argument("zava://stores/{store_id}/summary", "store_id", "", None)
        .await
    {
        Err(ServiceError::McpError(error)) => assert_eq!(error.code, ErrorCode::INVALID_REQUEST),
        other => panic!("{other:?}"),
    }
    seattle.cancel().await.unwrap();
    // no identity at all
    let nobody = client(&app.url, &[], ProtocolVersion::V_2025_11_25).await;
    let refused = read_error(&nobody, "zava://products/x").await;
    assert!(
        refused.message.contains("names no caller"),
        "{}",
        refused.message
    );
    nobody.cancel().await.unwrap();
    app.stop().await.unwrap();

    // the operator's --tool-scope applies to a resource-only query too
    let app = spawn_app_with(db, |s| {
        s.tool_scopes =
            sqlmcp::auth::ToolScopes::new(&[("store_summary".into(), "zava:stores".into())])
                .unwrap();
        s.authenticator = Arc::new(Authenticator::Header(Scopes::new(["sales:read"])));
    })
    .await;
    let seattle = as_caller(&app, SEATTLE).await;
    let templates: Vec<String> = seattle
        .list_all_resource_templates()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.uri_template)
        .collect();
    assert!(
        !templates.iter().any(|t| t.contains("stores")),
        "{templates:?}"
    );
    let refused = read_error(&seattle, "zava://stores/1/summary").await;
    assert!(
        refused.message.contains("needs the scope `zava:stores`"),
        "{}",
        refused.message
    );
    read_json(&seattle, "zava://top-products/revenue").await;
    seattle.cancel().await.unwrap();
    app.stop().await.unwrap();
}

/// Directives that cannot work fail the build with the file, the line and
/// what to write instead (the parser's own refusals are tested in
/// `codegen/catalogue/tests/`; these need the schema).
#[tokio::test]
async fn bad_directives_fail_the_build_with_file_and_line() {
    let _alone = WORKSPACE_BUILDS.lock().await;
    let url = crate::helpers::url_of(&admin_config());
    let workspace = Workspace::copy_as("resources");
    let summary =
        std::fs::read_to_string(workspace.root.join("queries/store_summary.sql")).unwrap();
    let orders = "--! shape_resource\n--- Orders of a store on a day.\n\
                  --@ resource zava://days/{day}/orders\n";
    let sql = "SELECT count(*)::bigint AS orders FROM retail.orders \
               WHERE order_date = :day::date AND store_id = :store_id;\n";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "store_summary",
            summary
                .replace(
                    "zava://stores/{store_id}/summary",
                    "zava://stores/{shop_id}/summary",
                )
                .replace("--@ complete store_id", "--@ complete shop_id"),
            "queries/store_summary.sql: line 7: `{shop_id}` in `zava://stores/{shop_id}/summary` is not an argument of query `store_summary`; its arguments: store_id",
        ),
        (
            "shape_resource",
            format!("{orders}{sql}"),
            "queries/shape_resource.sql: line 3: `zava://days/{day}/orders` has no variable for :store_id, which query `shape_resource` needs (it has neither a default nor `?`)",
        ),
        (
            "shape_resource",
            format!("{}{sql}", orders.replace("{day}", "{day*}")),
            "queries/shape_resource.sql: line 3: `zava://days/{day*}/orders`: `{day*}` is not a variable",
        ),
        (
            "shape_resource",
            format!(
                "{}--@ complete store_id \"SELECT store_id::text, store_name FROM retail.stores WHERE store_name LIKE :prefix || '%'\"\n{sql}",
                orders.replace("{day}/orders", "{day}/{store_id}")
            ),
            "queries/shape_resource.sql: line 4: a completion query returns exactly one column, the values offered; this one returns 2",
        ),
        (
            "shape_resource",
            format!(
                "{}--@ complete store_id \"SELECT store_id FROM retail.stores WHERE store_name LIKE :prefix || '%'\"\n{sql}",
                orders.replace("{day}/orders", "{day}/{store_id}")
            ),
            "queries/shape_resource.sql: line 4: the completion query returns `store_id` of type int4; it returns text (cast it: `store_id::text`)",
        ),
        (
            "shape_resource",
            format!(
                "{}--@ complete store_id \"SELECT store_name::text FROM retail.stores WHERE store_id = :prefix AND store_name LIKE 'Z%'\"\n{sql}",
                orders.replace("{day}/orders", "{day}/{store_id}")
            ),
            "queries/shape_resource.sql: line 4: in the completion query :prefix has type int4; it is text",
        ),
        (
            "shape_resource",
            format!(
                "{}--@ complete store_id \"SELECT shop_name FROM retail.stores WHERE shop_name LIKE :prefix || '%'\"\n{sql}",
                orders.replace("{day}/orders", "{day}/{store_id}")
            ),
            "queries/shape_resource.sql: line 4: the completion query does not type-check against the schema of migrations/:\n  PostgreSQL: column \"shop_name\" does not exist (SQLSTATE 42703)",
        ),
        (
            "shape_resource",
            format!(
                "{}--@ complete day [\"2024-01-01\"]\n--@ complete shop [\"1\"]\n{sql}",
                orders.replace("{day}/orders", "{day}/{store_id}")
            ),
            "queries/shape_resource.sql: line 5: `--@ complete shop`: `zava://days/{day}/{store_id}` has no variable `{shop}`",
        ),
        (
            "shape_resource",
            format!(
                "{}{}",
                orders.replace(
                    "zava://days/{day}/orders",
                    "zava://stores/{store_id}/summary"
                ),
                sql.replace(":day::date", "'2024-01-01'::date")
            ),
            "queries/store_summary.sql: line 7: `zava://stores/{store_id}/summary` reads the same URIs as `zava://stores/{store_id}/summary` of queries/shape_resource.sql (line 3)",
        ),
    ];
    for (name, text, expected) in cases {
        let file = workspace.root.join(format!("queries/{name}.sql"));
        let original = std::fs::read_to_string(&file).ok();
        std::fs::write(&file, &text).unwrap();
        let built = workspace.build_codegen(&url);
        match original {
            Some(original) => std::fs::write(&file, original).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        let err = stderr(&built);
        assert!(
            !built.status.success(),
            "{name} must fail the build:\n{text}"
        );
        // cargo indents a build script's lines
        for line in expected.lines() {
            assert!(err.contains(line.trim()), "{text}\n{err}");
        }
        assert!(
            !err.contains("panicked") && !err.contains("error["),
            "{err}"
        );
    }
}
