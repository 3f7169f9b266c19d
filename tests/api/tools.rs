//! The generated tools against the seeded data: each tool's numbers equal an
//! independent SQL computation, under several identities; arguments are
//! checked before any SQL runs; results conform to the output schema.

use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use sqlmcp::caller::{CallerId, Grant};
use sqlmcp::embeddings::Embedder;
use sqlmcp::tools::{self, CallLimits, ToolContext, ToolError};

use crate::helpers::{HEAD_OFFICE, REDMOND, SEATTLE, SEATTLE_STORE_ID, TestDb, query_as};

const CALLERS: [&str; 3] = [HEAD_OFFICE, SEATTLE, REDMOND];

async fn call_with(
    db: &TestDb,
    caller: &str,
    name: &str,
    arguments: Value,
    context: &ToolContext<'_>,
) -> Result<Value, ToolError> {
    let mut client = db.app().await;
    let caller = Grant::from(CallerId::for_tests(caller));
    let output = tools::call(&mut client, &caller, name, arguments, context).await?;
    assert_conforms(name, &output.structured);
    Ok(output.structured)
}

async fn call(db: &TestDb, caller: &str, name: &str, arguments: Value) -> Value {
    call_with(db, caller, name, arguments.clone(), &ToolContext::default())
        .await
        .unwrap_or_else(|err| panic!("{name}({arguments}) as {caller}: {err}"))
}

/// The result validates against the tool's published output schema.
fn assert_conforms(name: &str, result: &Value) {
    let definition = tools::definitions()
        .into_iter()
        .find(|d| d.name == name)
        .expect("listed tool");
    let validator = jsonschema::validator_for(&definition.output_schema).expect("valid schema");
    let errors: Vec<String> = validator
        .iter_errors(result)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name}: result does not match its outputSchema: {errors:?}"
    );
}

/// Rows of an independent query, as the caller, each row as JSON strings.
pub(crate) async fn expected(db: &TestDb, caller: &str, sql: &str) -> Vec<Vec<String>> {
    let mut owner = db.app().await;
    query_as(&mut owner, Some(caller), sql)
        .await
        .unwrap_or_else(|err| panic!("{sql}: {err}"))
        .iter()
        .map(|row| (0..row.len()).map(|i| row.get::<_, String>(i)).collect())
        .collect()
}

/// Selected fields of each result row, as strings.
pub(crate) fn actual(result: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    result["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|row| {
            fields
                .iter()
                .map(|f| match &row[f] {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn top_products_matches_sql_for_every_identity() {
    let db = TestDb::seeded().await;
    for caller in CALLERS {
        let result = call(&db, caller, "top_products", json!({})).await;
        let sql = "SELECT p.product_id::text, sum(oi.quantity * oi.unit_price - oi.discount_amount)::text, \
                          sum(oi.quantity)::text \
                   FROM retail.order_items oi JOIN retail.products p USING (product_id) \
                   GROUP BY p.product_id \
                   ORDER BY sum(oi.quantity * oi.unit_price - oi.discount_amount) DESC, p.product_id LIMIT 10";
        assert_eq!(
            actual(&result, &["product_id", "revenue", "units_sold"]),
            expected(&db, caller, sql).await,
            "{caller}"
        );
        assert_eq!(result["row_count"], 10);
        assert_eq!(result["truncated"], false);

        let args = json!({"rank_by": "units", "start_date": "2024-01-01", "end_date": "2024-06-30",
                          "category": "garden & outdoor", "limit": 5});
        let result = call(&db, caller, "top_products", args).await;
        let sql = "SELECT p.product_id::text, sum(oi.quantity)::text \
                   FROM retail.order_items oi JOIN retail.orders o USING (order_id) \
                   JOIN retail.products p USING (product_id) JOIN retail.categories c ON c.category_id = p.category_id \
                   WHERE o.order_date BETWEEN '2024-01-01' AND '2024-06-30' AND c.category_name = 'Garden & Outdoor' \
                   GROUP BY p.product_id ORDER BY sum(oi.quantity) DESC, p.product_id LIMIT 5";
        assert_eq!(
            actual(&result, &["product_id", "units_sold"]),
            expected(&db, caller, sql).await,
            "{caller}"
        );
    }
    // A store filter outside the caller's store finds nothing rather than leaking.
    let result = call(&db, SEATTLE, "top_products", json!({"store_id": 6})).await;
    assert_eq!(result["row_count"], 0);
}

/// The prepared statements of the sample's tables on this connection.
async fn prepared_queries(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT statement FROM pg_prepared_statements \
              WHERE NOT from_sql AND statement LIKE '%FROM retail.%' \
                AND statement NOT LIKE '%pg_prepared_statements%' ORDER BY statement",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn curated_queries_are_prepared_once_per_connection_unless_the_cache_is_off() {
    let db = TestDb::seeded().await;
    let caller = Grant::from(CallerId::for_tests(SEATTLE));
    for cache in [true, false] {
        let context = ToolContext {
            limits: CallLimits {
                statement_cache: cache,
                ..CallLimits::default()
            },
            ..ToolContext::default()
        };
        let mut client = db.app().await;
        let mut seen = Vec::new();
        for (name, arguments) in [
            ("product_details", json!({"sku": "PWR-DRL-1001"})),
            ("product_details", json!({"name_contains": "drill"})),
            ("product_details", json!({})),
            ("top_products", json!({"limit": 3})),
            ("top_products", json!({"rank_by": "units"})),
        ] {
            let output = tools::call(&mut client, &caller, name, arguments, &context)
                .await
                .unwrap_or_else(|err| panic!("{name}: {err}"));
            assert!(!output.is_empty(), "{name}");
            seen.push(prepared_queries(&client).await.len());
        }
        if cache {
            // one statement per query, kept from the first call on
            assert_eq!(seen, [1, 1, 1, 2, 2], "statements kept on the connection");
            let kept = prepared_queries(&client).await;
            for table in ["FROM retail.order_items", "FROM retail.products p"] {
                assert!(kept.iter().any(|sql| sql.contains(table)), "{kept:?}");
            }
        } else {
            // prepared within each call and closed after it
            assert_eq!(seen, [0, 0, 0, 0, 0], "statements kept on the connection");
        }
    }
}

#[tokio::test]
async fn revenue_by_month_matches_sql_for_every_identity() {
    let db = TestDb::seeded().await;
    for caller in CALLERS {
        let args = json!({"start_date": "2023-01-01", "end_date": "2024-12-31"});
        let result = call(&db, caller, "revenue_by_month", args).await;
        let sql = "SELECT make_date(extract(year FROM o.order_date)::int, extract(month FROM o.order_date)::int, 1)::text, \
                          sum(oi.total_amount)::text, count(DISTINCT o.order_id)::text, sum(oi.quantity)::text \
                   FROM retail.orders o JOIN retail.order_items oi USING (order_id) \
                   WHERE o.order_date >= '2023-01-01' AND o.order_date < '2025-01-01' GROUP BY 1 ORDER BY 1";
        let rows = expected(&db, caller, sql).await;
        assert_eq!(rows.len(), 24, "{caller}: two years of months");
        assert_eq!(
            actual(&result, &["month", "revenue", "orders", "units"]),
            rows,
            "{caller}"
        );
    }
}

#[tokio::test]
async fn sales_by_category_matches_sql_for_every_identity() {
    let db = TestDb::seeded().await;
    for caller in CALLERS {
        let result = call(
            &db,
            caller,
            "sales_by_category",
            json!({"start_date": "2025-01-01"}),
        )
        .await;
        let sql = "SELECT c.category_name::text, sum(oi.total_amount)::text, \
                          sum(oi.total_amount - oi.quantity * p.cost)::text \
                   FROM retail.categories c JOIN retail.products p USING (category_id) \
                   JOIN retail.order_items oi USING (product_id) JOIN retail.orders o USING (order_id) \
                   WHERE o.order_date >= '2025-01-01' GROUP BY c.category_name ORDER BY sum(oi.total_amount) DESC, min(c.category_id)";
        assert_eq!(
            actual(&result, &["category_name", "revenue", "gross_profit"]),
            expected(&db, caller, sql).await,
            "{caller}"
        );
    }
}

#[tokio::test]
async fn store_performance_lists_the_stores_the_caller_may_see() {
    let db = TestDb::seeded().await;
    let sql = "SELECT o.store_id::text, count(*)::text FROM retail.orders o GROUP BY o.store_id ORDER BY o.store_id";
    for caller in CALLERS {
        let result = call(&db, caller, "store_performance", json!({})).await;
        let mut rows = actual(&result, &["store_id", "orders"]);
        rows.sort_by_key(|r| r[0].parse::<i32>().unwrap());
        assert_eq!(rows, expected(&db, caller, sql).await, "{caller}");
    }
    let seattle = call(&db, SEATTLE, "store_performance", json!({})).await;
    assert_eq!(seattle["row_count"], 1);
    assert_eq!(seattle["rows"][0]["store_id"], SEATTLE_STORE_ID);
    let head_office = call(&db, HEAD_OFFICE, "store_performance", json!({})).await;
    assert_eq!(head_office["row_count"], 8);
    // revenue is ranked, and the average is revenue / orders
    let revenue: Vec<f64> = head_office["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revenue"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(revenue.windows(2).all(|w| w[0] >= w[1]));
    let first = &head_office["rows"][0];
    let average = first["revenue"].as_str().unwrap().parse::<f64>().unwrap()
        / first["orders"].as_f64().unwrap();
    let reported: f64 = first["average_order_value"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (average - reported).abs() <= 0.005,
        "{average} vs {reported}"
    );
}

#[tokio::test]
async fn low_stock_matches_sql_for_every_identity() {
    let db = TestDb::seeded().await;
    for caller in CALLERS {
        let result = call(
            &db,
            caller,
            "low_stock",
            json!({"threshold": 5, "limit": 500}),
        )
        .await;
        let sql = "SELECT i.store_id::text, i.product_id::text, i.stock_level::text FROM retail.inventory i \
                   WHERE i.stock_level < 5 ORDER BY i.stock_level, i.store_id, i.product_id";
        let rows = expected(&db, caller, sql).await;
        assert!(!rows.is_empty(), "{caller}: some stock is low");
        assert_eq!(
            actual(&result, &["store_id", "product_id", "stock_level"]),
            rows,
            "{caller}"
        );
    }
}

#[tokio::test]
async fn product_details_by_sku_or_name_fragment() {
    let db = TestDb::seeded().await;
    let by_sku = call(
        &db,
        SEATTLE,
        "product_details",
        json!({"sku": "pwr-drl-1001"}),
    )
    .await;
    assert_eq!(by_sku["row_count"], 1);
    let row = &by_sku["rows"][0];
    let truth = &expected(
        &db,
        SEATTLE,
        "SELECT p.base_price::text, p.cost::text, p.gross_margin_percent::text, \
                (SELECT sum(stock_level) FROM retail.inventory i WHERE i.product_id = p.product_id)::text \
         FROM retail.products p WHERE p.sku = 'PWR-DRL-1001'",
    )
    .await[0];
    assert_eq!(row["sku"], "PWR-DRL-1001");
    assert_eq!(
        [
            row["base_price"].as_str().unwrap(),
            row["cost"].as_str().unwrap(),
            row["gross_margin_percent"].as_str().unwrap()
        ],
        [&truth[0], &truth[1], &truth[2]]
    );
    // stock is counted in the caller's store only
    assert_eq!(row["units_in_stock"].to_string(), truth[3]);
    let everywhere = call(
        &db,
        HEAD_OFFICE,
        "product_details",
        json!({"sku": "PWR-DRL-1001"}),
    )
    .await;
    assert!(
        everywhere["rows"][0]["units_in_stock"].as_i64().unwrap()
            > row["units_in_stock"].as_i64().unwrap()
    );

    let by_name = call(
        &db,
        HEAD_OFFICE,
        "product_details",
        json!({"name_contains": "DRILL", "limit": 100}),
    )
    .await;
    let names = expected(&db, HEAD_OFFICE, "SELECT product_name::text FROM retail.products WHERE product_name ILIKE '%drill%' ORDER BY product_name").await;
    assert!(names.len() >= 2);
    assert_eq!(actual(&by_name, &["product_name"]), names);
}

/// Maps a few words to fixed vectors, so the search query can be checked
/// against hand-computed cosine similarities.
struct KeywordEmbedder {
    model: &'static str,
    dimensions: usize,
}

impl KeywordEmbedder {
    const MODEL: &'static str = "test-keywords";

    fn new() -> KeywordEmbedder {
        KeywordEmbedder {
            model: Self::MODEL,
            dimensions: 384,
        }
    }
}

/// A 384-dimensional vector whose first components are `head`.
fn vector(head: &[f32]) -> Vec<f32> {
    let mut v = head.to_vec();
    v.resize(384, 0.0);
    v
}

fn literal(v: &[f32]) -> String {
    let items: Vec<String> = v.iter().map(f32::to_string).collect();
    format!("[{}]", items.join(","))
}

impl Embedder for KeywordEmbedder {
    fn model_id(&self) -> &str {
        self.model
    }

    fn dimensions(&self) -> usize {
        self.dimensions
    }

    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Vec<f32>>>> {
        Box::pin(async move {
            texts
                .iter()
                .map(|text| match text.as_str() {
                    "drill" => Ok(vector(&[1.0])),
                    "fail" => anyhow::bail!("the provider is down"),
                    _ => Ok(vector(&[0.0, 0.0, 0.0, 1.0])),
                })
                .collect()
        })
    }
}

/// `semantic_search_products` as the Seattle store manager, with `embedder`.
async fn search_as_seattle(
    db: &TestDb,
    embedder: Option<&KeywordEmbedder>,
    arguments: Value,
) -> Result<Value, ToolError> {
    let context = ToolContext {
        embedder: embedder.map(|e| e as &dyn Embedder),
        ..ToolContext::default()
    };
    call_with(db, SEATTLE, "semantic_search_products", arguments, &context).await
}

/// Stores vectors whose cosine similarity to the vector of "drill" is 1,
/// 0.8, 0.5 and 0 for products 1 to 4 under [`KeywordEmbedder::MODEL`],
/// and one of another model for product 5, which must never be compared.
async fn store_keyword_vectors(db: &TestDb) {
    let rows = [
        (1, KeywordEmbedder::MODEL, vector(&[1.0])),
        (2, KeywordEmbedder::MODEL, vector(&[0.8, 0.6])),
        (3, KeywordEmbedder::MODEL, vector(&[0.5, 0.0, 0.866])),
        (4, KeywordEmbedder::MODEL, vector(&[0.0, 1.0])),
        (5, "another-model", vector(&[1.0])),
    ];
    let owner = db.owner().await;
    for (id, model, v) in rows {
        owner
            .execute(
                "INSERT INTO retail.product_description_embeddings \
                 (product_id, model_id, description_embedding, description_hash) \
                 VALUES ($1, $2, $3::text::vector, 'h')",
                &[&id, &model, &literal(&v)],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn semantic_search_ranks_by_similarity_with_the_callers_model_only() {
    let db = TestDb::seeded().await;
    store_keyword_vectors(&db).await;
    let search = |embedder, arguments| search_as_seattle(&db, embedder, arguments);
    let embedder = &KeywordEmbedder::new();

    let result = search(Some(embedder), json!({"query_description": "drill"}))
        .await
        .unwrap();
    assert_eq!(result["embedding_model"], KeywordEmbedder::MODEL);
    assert_eq!(
        actual(&result, &["product_id", "similarity_percent"]),
        [["1", "100.0"], ["2", "80.0"], ["3", "50.0"]]
    );

    let strict = json!({"query_description": "drill", "similarity_threshold": 60, "max_rows": 1});
    let result = search(Some(embedder), strict).await.unwrap();
    assert_eq!(actual(&result, &["product_id"]), [["1"]]);

    // nothing similar enough: an empty answer, since this model has vectors
    let result = search(Some(embedder), json!({"query_description": "unrelated"}))
        .await
        .unwrap();
    assert_eq!(result["row_count"], 0);

    assert_search_refuses_models_it_cannot_compare(&db).await;
    assert_search_reports_a_failing_or_missing_embedder(&db).await;
}

/// A model with no stored vectors, or with vectors of another length, is
/// refused rather than compared.
async fn assert_search_refuses_models_it_cannot_compare(db: &TestDb) {
    let drill = || json!({"query_description": "drill"});
    // a model without stored vectors is refused, naming the stored ones
    let other = &KeywordEmbedder {
        model: "text-embedding-3-small@384",
        dimensions: 384,
    };
    let err = search_as_seattle(db, Some(other), drill())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("no vectors of the embedding model text-embedding-3-small@384")
            && message.contains("another-model")
            && message.contains(KeywordEmbedder::MODEL)
            && message.contains("sqlmcp embed"),
        "{message}"
    );

    // a model of another length is refused before any SQL runs
    let longer = &KeywordEmbedder {
        model: "text-embedding-3-small",
        dimensions: 1536,
    };
    let err = search_as_seattle(db, Some(longer), drill())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains(
            "semantic_search_products compares 384-dimensional vectors, but the embedding model \
             text-embedding-3-small makes 1536-dimensional ones"
        ),
        "{err}"
    );
}

/// The embedder's failure names the argument it embedded; without an
/// embedder the tool says it needs one.
async fn assert_search_reports_a_failing_or_missing_embedder(db: &TestDb) {
    let embedder = &KeywordEmbedder::new();
    let err = search_as_seattle(db, Some(embedder), json!({"query_description": "fail"}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ToolError::Embedding(m) if m.contains("query_description: the provider is down")),
        "{err}"
    );

    let err = search_as_seattle(db, None, json!({"query_description": "drill"}))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("needs an embedding model"),
        "{err}"
    );
}

#[tokio::test]
async fn results_are_capped_and_say_so() {
    let db = TestDb::seeded().await;
    let context = ToolContext {
        limits: CallLimits {
            max_rows: 3,
            ..CallLimits::default()
        },
        ..ToolContext::default()
    };
    let result = call_with(
        &db,
        HEAD_OFFICE,
        "top_products",
        json!({"limit": 10}),
        &context,
    )
    .await
    .unwrap();
    assert_eq!(result["row_count"], 3);
    assert_eq!(result["truncated"], true);
}

/// An application connection whose server process has been terminated:
/// any SQL sent on it fails.
async fn dead_connection(db: &TestDb) -> deadpool_postgres::ClientWrapper {
    let dead = db.app().await;
    let pid: i32 = dead
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    db.owner()
        .await
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    for _ in 0..50 {
        if dead.is_closed() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(dead.is_closed());
    dead
}

/// Tool, arguments, the argument named in the refusal, and part of its rule.
fn bad_argument_cases() -> [(&'static str, Value, &'static str, &'static str); 9] {
    [
        (
            "top_products",
            json!({"limit": "ten"}),
            "limit",
            "invalid type: string \"ten\", expected i64",
        ),
        (
            "top_products",
            json!({"limit": 500}),
            "limit",
            "must be at most 100, got 500",
        ),
        (
            "top_products",
            json!({"limit": 0}),
            "limit",
            "must be at least 1, got 0",
        ),
        (
            "top_products",
            json!({"rank_by": "profit"}),
            "rank_by",
            "must be one of revenue, units, got \"profit\"",
        ),
        (
            "top_products",
            json!({"limt": 5}),
            "limt",
            "no such argument",
        ),
        (
            "top_products",
            json!({"start_date": "2024-13-01"}),
            "start_date",
            "input is out of range",
        ),
        (
            "semantic_search_products",
            json!({}),
            "query_description",
            "is required",
        ),
        (
            "semantic_search_products",
            json!({"query_description": "  "}),
            "query_description",
            "must not be empty",
        ),
        (
            "semantic_search_products",
            json!({"query_description": "x", "similarity_threshold": 90}),
            "similarity_threshold",
            "must be at most 80, got 90",
        ),
    ]
}

/// Bad arguments are refused with the argument and the rule, before any SQL
/// runs: the connection used here is already dead.
#[tokio::test]
async fn bad_arguments_name_the_argument_and_the_rule_before_any_sql() {
    let db = TestDb::seeded().await;
    let mut dead = dead_connection(&db).await;
    for (tool, arguments, argument, rule) in bad_argument_cases() {
        let err = tools::call(
            &mut dead,
            &Grant::ALL,
            tool,
            arguments.clone(),
            &ToolContext::default(),
        )
        .await
        .unwrap_err();
        match &err {
            ToolError::InvalidArgument {
                argument: a,
                rule: r,
            } => {
                assert_eq!(a, argument, "{tool}({arguments})");
                assert!(r.contains(rule), "{tool}({arguments}): {r}");
            }
            other => panic!("{tool}({arguments}): {other}"),
        }
    }
    let err = tools::call(
        &mut dead,
        &Grant::ALL,
        "drop_tables",
        json!({}),
        &ToolContext::default(),
    )
    .await
    .unwrap_err();
    assert_eq!(err, ToolError::UnknownTool("drop_tables".to_owned()));
    let err = tools::call(
        &mut dead,
        &Grant::ALL,
        "top_products",
        json!([1]),
        &ToolContext::default(),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ToolError::InvalidArguments(_)), "{err}");
}

#[tokio::test]
async fn definitions_are_complete_and_valid() {
    let definitions = tools::definitions();
    let names: Vec<&str> = definitions.iter().map(|d| d.name).collect();
    assert_eq!(
        names,
        [
            "execute_sales_query",
            "get_current_utc_date",
            "get_multiple_table_schemas",
            "low_stock",
            "product_details",
            "revenue_by_month",
            "sales_by_category",
            "semantic_search_products",
            "store_performance",
            "top_products"
        ]
    );
    for definition in &definitions {
        for schema in [&definition.input_schema, &definition.output_schema] {
            assert!(
                jsonschema::meta::is_valid(schema),
                "{}: {schema}",
                definition.name
            );
            assert_eq!(schema["type"], "object");
        }
        assert_eq!(
            definition.input_schema["additionalProperties"], false,
            "{}",
            definition.name
        );
        assert!(definition.description.len() > 40, "{}", definition.name);
        let json = definition.to_json();
        assert_eq!(json["annotations"]["readOnlyHint"], true);
        assert_eq!(json["annotations"]["idempotentHint"], true);
        assert_eq!(json["annotations"]["openWorldHint"], false);
    }
    let search = definitions
        .iter()
        .find(|d| d.name == "semantic_search_products")
        .unwrap();
    let properties = &search.input_schema["properties"];
    assert_eq!(properties["max_rows"]["default"], 20);
    assert_eq!(properties["max_rows"]["maximum"], 100);
    assert_eq!(properties["similarity_threshold"]["default"], 30.0);
    assert_eq!(properties["similarity_threshold"]["minimum"], 20.0);
    assert_eq!(properties["similarity_threshold"]["maximum"], 80.0);
    assert_eq!(
        search.input_schema["required"],
        json!(["query_description"])
    );
    assert!(properties.get("query_embedding").is_none() && properties.get("model_id").is_none());
}

#[tokio::test]
async fn table_schemas_describe_columns_keys_and_reference_values() {
    let db = TestDb::seeded().await;
    let cache = tools::table_schemas::Cache::default();
    let context = ToolContext {
        schemas: Some(&cache),
        ..ToolContext::default()
    };
    let args = json!({"table_names": ["retail.orders", "STORES"]});
    let result = call_with(
        &db,
        SEATTLE,
        "get_multiple_table_schemas",
        args.clone(),
        &context,
    )
    .await
    .unwrap();
    let orders = &result["tables"][0];
    assert_eq!(orders["table"], "retail.orders");
    assert_eq!(orders["row_level_security"], true);
    let columns: Vec<&str> = orders["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["order_id", "customer_id", "store_id", "order_date"]
    );
    assert_eq!(orders["constraints"][0], "PRIMARY KEY (order_id)");
    assert!(
        orders["constraints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "FOREIGN KEY (customer_id) REFERENCES retail.customers(customer_id)")
    );
    let stores = &result["tables"][1];
    assert_eq!(stores["rows"].as_array().unwrap().len(), 8);
    assert_eq!(
        stores["rows"][7],
        json!({"store_id": 8, "store_name": "Zava Retail Online", "is_online": true, "region_id": 3})
    );
    assert!(
        !stores["rows"].to_string().contains("rls_user_id"),
        "manager ids are not listed"
    );
    // the second call is served from the cache, with the same answer
    assert_eq!(
        call_with(&db, REDMOND, "get_multiple_table_schemas", args, &context)
            .await
            .unwrap(),
        result
    );

    let err = call_with(
        &db,
        SEATTLE,
        "get_multiple_table_schemas",
        json!({"table_names": ["pg_authid"]}),
        &context,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ToolError::InvalidArgument { argument, rule } if argument == "table_names" && rule.contains("valid: retail.categories")),
        "{err}"
    );
    let err = call_with(
        &db,
        SEATTLE,
        "get_multiple_table_schemas",
        json!({"table_names": []}),
        &context,
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("between 1 and 20"), "{err}");
}

#[tokio::test]
async fn current_utc_date_is_today() {
    let db = TestDb::seeded().await;
    let result = call(&db, SEATTLE, "get_current_utc_date", json!({})).await;
    let today = chrono::Utc::now().date_naive().to_string();
    let date = result["date"].as_str().unwrap();
    // allow for a call that straddles midnight
    let yesterday = (chrono::Utc::now() - chrono::Duration::minutes(1))
        .date_naive()
        .to_string();
    assert!(date == today || date == yesterday, "{date}");
    assert!(result["utc_datetime"].as_str().unwrap().ends_with('Z'));
    let err = call_with(
        &db,
        SEATTLE,
        "get_current_utc_date",
        json!({"tz": "PST"}),
        &ToolContext::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&err, ToolError::InvalidArgument { argument, .. } if argument == "tz"),
        "{err}"
    );
}
