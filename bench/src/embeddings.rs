//! The local embedding model on its own, and semantic search end to end.

use sqlmcp::secret::Secret;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use sqlmcp::embeddings::local::{LocalEmbedder, MODEL_ID};
use sqlmcp::embeddings::{Embedder, Settings};

use crate::harness::{Latencies, McpClient, Server, machine, round, run_for, write_json};
use crate::{CALLERS, QUERIES};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The local model's folder [default: as the server's].
    #[arg(long, env = "SQLMCP_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Single-text embeddings to time.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    /// The application role's URL of a seeded, embedded database; without
    /// it, the end-to-end part is skipped.
    #[arg(long, env = "SQLMCP_APP_DATABASE_URL", hide_env_values = true)]
    app_database_url: Option<Secret>,
    /// Concurrent clients of the end-to-end part.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Seconds per end-to-end run.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

pub async fn run(args: Args) -> Result<()> {
    let dir = args
        .model_dir
        .clone()
        .unwrap_or_else(Settings::default_model_dir);
    let mut report = json!({"machine": machine(), "model": MODEL_ID});
    time_model(&dir, &args, &mut report).await?;
    if let Some(url) = args.app_database_url.as_ref().map(Secret::expose) {
        report["semantic_search_products"] = search_over_http(url, &dir, &args).await?;
    }
    write_json(args.json.as_deref(), &report)
}

/// The model in-process: loading it, one query, and batches of products.
async fn time_model(dir: &Path, args: &Args, report: &mut Value) -> Result<()> {
    let model = LocalEmbedder::open(dir)?;
    let started = Instant::now();
    model.warm_up().await?;
    let load = started.elapsed();

    let mut single = Latencies::default();
    for i in 0..args.queries {
        let started = Instant::now();
        model.embed(QUERIES[i % QUERIES.len()]).await?;
        single.record(started.elapsed());
    }

    // product-sized texts, 32 at a time as `sqlmcp embed` sends them
    let texts: Vec<String> = (0..256)
        .map(|i| {
            format!(
                "Product {i}. {}: a sturdy item for home repair and improvement \
                 projects, rated for daily use by professionals and weekend builders.",
                QUERIES[i % QUERIES.len()]
            )
        })
        .collect();
    let started = Instant::now();
    for batch in texts.chunks(32) {
        model.embed_batch(batch).await?;
    }
    let batch_rate = texts.len() as f64 / started.elapsed().as_secs_f64();

    println!("local embedding model {MODEL_ID}");
    println!(
        "  load (read, verify, build):  {:.0} ms",
        load.as_secs_f64() * 1e3
    );
    println!(
        "  one query ({} calls):        p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        args.queries,
        single.percentile_ms(50.0),
        single.percentile_ms(95.0),
        single.percentile_ms(99.0)
    );
    println!("  batches of 32 product texts: {batch_rate:.0} texts/s");
    report["load_ms"] = json!(round(load.as_secs_f64() * 1e3, 1));
    report["query_p50_ms"] = json!(round(single.percentile_ms(50.0), 2));
    report["query_p95_ms"] = json!(round(single.percentile_ms(95.0), 2));
    report["query_p99_ms"] = json!(round(single.percentile_ms(99.0), 2));
    report["batch32_texts_per_s"] = json!(round(batch_rate, 1));
    Ok(())
}

/// `semantic_search_products` through a release server, one row per
/// number of clients.
async fn search_over_http(url: &str, dir: &Path, args: &Args) -> Result<Value> {
    let model_dir = dir.to_string_lossy().into_owned();
    let server = Server::start(url, &["--model-dir", &model_dir]).await?;
    let client = McpClient::new(&server.url, 64)?;
    // the first call waits for the model the server loads in the background
    client
        .call(
            CALLERS[0],
            "semantic_search_products",
            &json!({"query_description": QUERIES[0]}),
        )
        .await?;
    println!(
        "\nsemantic_search_products over HTTP, release server, {} s per row",
        args.seconds
    );
    println!(
        "{:>8} {:>9} {:>8} {:>8} {:>8} {:>7}",
        "clients", "calls/s", "p50 ms", "p95 ms", "p99 ms", "errors"
    );
    let mut rows = Vec::new();
    for &clients in &args.clients {
        let client = client.clone();
        let mut run = run_for(clients, Duration::from_secs(args.seconds), move |n| {
            let client = client.clone();
            async move {
                let arguments =
                    json!({"query_description": QUERIES[n % QUERIES.len()], "max_rows": 10});
                client
                    .call(
                        CALLERS[n % CALLERS.len()],
                        "semantic_search_products",
                        &arguments,
                    )
                    .await
            }
        })
        .await?;
        println!(
            "{clients:>8} {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>7}",
            run.rate,
            run.latencies.percentile_ms(50.0),
            run.latencies.percentile_ms(95.0),
            run.latencies.percentile_ms(99.0),
            run.errors
        );
        if let Some(error) = &run.first_error {
            println!("         first error: {error}");
        }
        let mut row = run.summary();
        row["clients"] = clients.into();
        rows.push(row);
    }
    Ok(Value::Array(rows))
}
