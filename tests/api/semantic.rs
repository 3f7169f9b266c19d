//! Semantic search on the shipped assortment with the local model: relevance
//! of the answers, the HNSW index, and `sqlmcp embed`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures_util::future::BoxFuture;
use serde_json::json;
use sqlmcp::backfill;
use sqlmcp::caller::{CallerId, Grant};
use sqlmcp::embeddings::Embedder;
use sqlmcp::tools::{self, ToolContext};

use crate::helpers::{SEATTLE, TestDb, local_embedder, sqlmcp, stderr, stdout};

/// What a person would type, and the products (by SKU) they would expect
/// near the top. Written against src/seed/assortment.tsv; the queries avoid
/// the products' own names, so matching words alone does not answer them.
const JUDGEMENTS: &[(&str, &[&str])] = &[
    (
        "something to cut copper pipe",
        &["PLB-TLS-1001", "HND-CUT-1002"],
    ),
    (
        "keeps tools dry in the truck",
        &["STO-TLB-1004", "STO-BIN-1006"],
    ),
    (
        "drill holes in a concrete wall",
        &["PWR-DRL-1003", "PWR-DRL-1006"],
    ),
    (
        "my toilet keeps running after a flush",
        &["PLB-TLT-1001", "PLB-TLT-1002", "PLB-TLT-1003"],
    ),
    (
        "the bathroom sink drains slowly",
        &[
            "PLB-DRN-1001",
            "PLB-DRN-1002",
            "PLB-DRN-1004",
            "PLB-DRN-1005",
        ],
    ),
    (
        "protect my lungs from sanding dust",
        &["SAF-RSP-1001", "SAF-RSP-1003", "SAF-RSP-1005"],
    ),
    (
        "check whether a wire is live before touching it",
        &["ELE-TST-1001", "ELE-TST-1006", "ELE-TST-1002"],
    ),
    (
        "hang a heavy mirror on drywall",
        &[
            "FAS-ANC-1003",
            "FAS-ANC-1004",
            "FAS-ANC-1002",
            "FAS-NLS-1006",
        ],
    ),
    (
        "seal the gap between the bathtub and the tiles",
        &["PNT-CLK-1001", "PNT-CLK-1002"],
    ),
    (
        "water the vegetable beds automatically",
        &["GRD-HOS-1006", "GRD-HOS-1007", "GRD-HOS-1008"],
    ),
    (
        "trim overgrown shrubs and branches",
        &["GRD-GHT-1001", "GRD-GHT-1002", "GRD-MOW-1007"],
    ),
    (
        "paint the outside walls of the house",
        &["PNT-EXT-1001", "PNT-EXT-1002"],
    ),
    (
        "hang bicycles in the garage",
        &["STO-GAR-1004", "STO-GAR-1003"],
    ),
    (
        "cut angles on trim and moulding",
        &["PWR-SAW-1004", "PWR-SAW-1005"],
    ),
    (
        "light the path to the front door at night",
        &["GRD-LGT-1001", "GRD-LGT-1004", "GRD-LGT-1005"],
    ),
    (
        "put out a small fire in the kitchen",
        &["SAF-FIR-1002", "SAF-FIR-1001"],
    ),
    ("find the wooden beams behind a wall", &["HND-MSR-1007"]),
    (
        "insulate the attic to lower heating bills",
        &["LUM-INS-1002", "LUM-INS-1005", "LUM-INS-1001"],
    ),
    (
        "repair a hole in the wall before painting",
        &["PNT-TAP-1005", "PNT-TAP-1004", "LUM-DRY-1004"],
    ),
    (
        "secure a load in the back of a pickup",
        &["FAS-CHN-1003", "FAS-CHN-1004"],
    ),
];

/// The bars the local model must reach on [`JUDGEMENTS`]. Measured: recall@5
/// 0.771, MRR 0.900 (embedding name and description; description alone gave
/// 0.842 and 0.829). The bars sit below that with room for arithmetic that
/// differs across CPUs, and far above what a broken model or pooling scores
/// (near zero); the README's "Semantic search" says more.
const MIN_RECALL_AT_5: f64 = 0.7;
const MIN_MRR: f64 = 0.8;

#[tokio::test]
async fn the_local_model_finds_what_people_ask_for() {
    let db = TestDb::seeded().await;
    let embedder = local_embedder();
    let context = ToolContext {
        embedder: Some(embedder.as_ref()),
        ..ToolContext::default()
    };
    let caller = Grant::from(CallerId::for_tests(SEATTLE));
    let mut client = db.app().await;
    let (mut recall_sum, mut reciprocal_sum) = (0.0, 0.0);
    let mut report = String::new();
    for (query, expected) in JUDGEMENTS {
        let result = tools::call(
            &mut client,
            &caller,
            "semantic_search_products",
            json!({"query_description": query, "max_rows": 10, "similarity_threshold": 20}),
            &context,
        )
        .await
        .unwrap_or_else(|err| panic!("{query}: {err}"));
        let ranked: Vec<String> = result.structured["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["sku"].as_str().unwrap().to_owned())
            .collect();
        let found = expected
            .iter()
            .filter(|sku| ranked.iter().take(5).any(|r| r == *sku))
            .count();
        let recall = found as f64 / expected.len().min(5) as f64;
        let first = ranked.iter().position(|r| expected.contains(&r.as_str()));
        let reciprocal = first.map_or(0.0, |rank| 1.0 / (rank + 1) as f64);
        recall_sum += recall;
        reciprocal_sum += reciprocal;
        report.push_str(&format!(
            "{recall:>5.2} {reciprocal:>5.2}  {query:<50} top 5: {}\n",
            ranked.iter().take(5).cloned().collect::<Vec<_>>().join(" ")
        ));
    }
    let n = JUDGEMENTS.len() as f64;
    let (recall, mrr) = (recall_sum / n, reciprocal_sum / n);
    println!("recall@5   RR  query\n{report}recall@5 {recall:.3}, MRR {mrr:.3} over {n} queries");
    assert!(
        recall >= MIN_RECALL_AT_5 && mrr >= MIN_MRR,
        "recall@5 {recall:.3} (bar {MIN_RECALL_AT_5}), MRR {mrr:.3} (bar {MIN_MRR}):\n{report}"
    );
}

/// The search query can use the HNSW index of migration V4: the planner
/// picks it once sequential scans are priced out (on 400 products a scan is
/// genuinely cheaper, so it is the index's usability that is checked).
#[tokio::test]
async fn the_search_query_uses_the_hnsw_index() {
    let db = TestDb::seeded().await;
    let sql = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/queries/semantic_search_products.sql"
    ))
    .unwrap();
    let body: String = sql
        .lines()
        .filter(|line| !line.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n")
        .replace(":query_embedding", "$1")
        .replace(":model_id", "$2")
        .replace(":similarity_threshold", "$3")
        .replace(":max_rows", "$4");
    let mut client = db.app().await;
    let tx = client.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL enable_seqscan = off")
        .await
        .unwrap();
    let vector = local_embedder().embed("a cordless drill").await.unwrap();
    let plan: Vec<String> = tx
        .query(
            &format!("EXPLAIN {}", body.trim_end().trim_end_matches(';')),
            &[
                &vector,
                &sqlmcp::embeddings::local::MODEL_ID,
                &30.0f64,
                &20i64,
            ],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan using product_description_embeddings_hnsw_384"),
        "{plan}"
    );
}

/// Counts calls and fails the given one, to interrupt a backfill midway.
struct Flaky {
    inner: Arc<dyn Embedder>,
    calls: AtomicUsize,
    fail_on: usize,
}

impl Embedder for Flaky {
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    fn embed_batch<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, anyhow::Result<Vec<Vec<f32>>>> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        Box::pin(async move {
            anyhow::ensure!(call != self.fail_on, "the provider went away");
            self.inner.embed_batch(texts).await
        })
    }
}

async fn stored(db: &TestDb) -> Vec<(i32, String)> {
    db.owner()
        .await
        .query(
            "SELECT product_id, description_hash FROM retail.product_description_embeddings \
             WHERE model_id = $1 ORDER BY product_id",
            &[&sqlmcp::embeddings::local::MODEL_ID],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect()
}

#[tokio::test]
async fn embed_fills_what_is_missing_or_stale_resumes_and_is_idempotent() {
    let db = TestDb::seeded().await;
    let owner = db.owner().await;
    let all = stored(&db).await;
    assert_eq!(all.len(), 406, "the template has every product embedded");
    owner
        .batch_execute("DELETE FROM retail.product_description_embeddings")
        .await
        .unwrap();

    // interrupted on the 4th batch of 32: three batches stay written
    let flaky = Flaky {
        inner: local_embedder(),
        calls: AtomicUsize::new(0),
        fail_on: 4,
    };
    let mut client = db.owner().await;
    let err = backfill::run(&mut client, &flaky, 32, false)
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("96 embedded before") && message.contains("the provider went away"),
        "{message}"
    );
    assert_eq!(stored(&db).await.len(), 96);

    // the next run does the rest, and only the rest
    let counting = Flaky {
        inner: local_embedder(),
        calls: AtomicUsize::new(0),
        fail_on: 0,
    };
    let report = backfill::run(&mut client, &counting, 32, false)
        .await
        .unwrap();
    assert_eq!(report.embedded, 406 - 96);
    assert_eq!(
        counting.calls.load(Ordering::SeqCst),
        (406 - 96_usize).div_ceil(32)
    );
    assert_eq!(
        stored(&db).await,
        all,
        "the same vectors' hashes as the template's"
    );

    // nothing to do: no call at all
    let idle = Flaky {
        inner: local_embedder(),
        calls: AtomicUsize::new(0),
        fail_on: 1,
    };
    let report = backfill::run(&mut client, &idle, 32, false).await.unwrap();
    assert_eq!((report.embedded, report.products), (0, 406));

    // a changed description makes that product's vector stale
    owner
        .execute(
            "UPDATE retail.products SET product_description = product_description || ' Now in blue.' \
             WHERE sku = 'PLB-TLS-1001'",
            &[],
        )
        .await
        .unwrap();
    let report = backfill::run(&mut client, local_embedder().as_ref(), 32, false)
        .await
        .unwrap();
    assert_eq!(report.embedded, 1);
}

#[tokio::test]
async fn the_embed_command_reports_and_is_a_no_op_when_current() {
    let db = TestDb::seeded().await;
    db.owner()
        .await
        .batch_execute(
            "DELETE FROM retail.product_description_embeddings WHERE product_id IN \
             (SELECT product_id FROM retail.products ORDER BY product_id LIMIT 40)",
        )
        .await
        .unwrap();
    let model_dir = crate::helpers::model_dir();
    let args = [
        "embed",
        "--database-url",
        &db.url(),
        "--model-dir",
        model_dir.to_str().unwrap(),
    ];
    let first = sqlmcp(&args, &[]);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first)
            .contains("embedded 40 of 406 products with sentence-transformers/all-MiniLM-L6-v2"),
        "{}",
        stdout(&first)
    );
    let second = sqlmcp(&args, &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("all 406 products have current vectors"),
        "{}",
        stdout(&second)
    );

    let missing = sqlmcp(
        &[
            "embed",
            "--database-url",
            &db.url(),
            "--model-dir",
            "/nonexistent/model",
        ],
        &[],
    );
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("scripts/fetch-model"),
        "{}",
        stderr(&missing)
    );
}

/// `sqlmcp call` needs the model only for the tools that embed.
#[tokio::test]
async fn call_needs_the_model_only_for_tools_that_embed() {
    let db = TestDb::seeded().await;
    let url = crate::helpers::url_of(&db.app_config());
    let call = |tool: &str, arguments: &str| {
        sqlmcp(
            &[
                "call",
                tool,
                arguments,
                "--caller",
                SEATTLE,
                "--database-url",
                &url,
                "--model-dir",
                "/nonexistent/model",
            ],
            &[],
        )
    };
    let plain = call("top_products", r#"{"limit": 1}"#);
    assert!(plain.status.success(), "{}", stderr(&plain));
    let semantic = call(
        "semantic_search_products",
        r#"{"query_description": "a drill"}"#,
    );
    assert!(!semantic.status.success());
    assert!(
        stderr(&semantic).contains("/nonexistent/model")
            && stderr(&semantic).contains("scripts/fetch-model"),
        "{}",
        stderr(&semantic)
    );

    let model_dir = crate::helpers::model_dir();
    let found = sqlmcp(
        &[
            "call",
            "semantic_search_products",
            r#"{"query_description": "something to cut copper pipe", "max_rows": 1}"#,
            "--caller",
            SEATTLE,
            "--database-url",
            &url,
            "--model-dir",
            model_dir.to_str().unwrap(),
        ],
        &[],
    );
    assert!(found.status.success(), "{}", stderr(&found));
    assert!(
        stdout(&found).contains("PLB-TLS-1001"),
        "{}",
        stdout(&found)
    );
}
