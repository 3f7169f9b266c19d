//! `cargo run --release --bin bench -- <what>`: benchmarks that print numbers.
//!
//! - `embeddings`: the local model (load time, latency per query, batch
//!   throughput) and `semantic_search_products` end to end over HTTP,
//!   against a release server this program starts.
//!
//! Numbers go to stdout as a table, and with `--json FILE` to a file too.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sqlmcp::embeddings::local::LocalEmbedder;
use sqlmcp::embeddings::{Embedder, Settings};

#[derive(Debug, Parser)]
#[command(name = "bench", about = "sqlmcp benchmarks")]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// The local embedding model, and semantic search end to end.
    Embeddings(EmbeddingArgs),
}

#[derive(Debug, clap::Args)]
struct EmbeddingArgs {
    /// The local model's folder [default: as the server's].
    #[arg(long, env = "SQLMCP_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Single-text embeddings to time.
    #[arg(long, default_value_t = 300)]
    queries: usize,
    /// The application role's URL of a seeded, embedded database; without
    /// it, the end-to-end part is skipped.
    #[arg(long, env = "SQLMCP_APP_DATABASE_URL", hide_env_values = true)]
    app_database_url: Option<String>,
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

/// What people type into a product search (none is a product's name).
const QUERIES: &[&str] = &[
    "something to cut copper pipe",
    "keeps tools dry in the truck",
    "drill holes in a concrete wall",
    "my toilet keeps running after a flush",
    "the bathroom sink drains slowly",
    "protect my lungs from sanding dust",
    "check whether a wire is live before touching it",
    "hang a heavy mirror on drywall",
    "seal the gap between the bathtub and the tiles",
    "water the vegetable beds automatically",
    "trim overgrown shrubs and branches",
    "paint the outside walls of the house",
    "hang bicycles in the garage",
    "cut angles on trim and moulding",
    "light the path to the front door at night",
    "put out a small fire in the kitchen",
];

/// The store managers of the Zava sample, and head office.
const CALLERS: &[&str] = &[
    "f47ac10b-58cc-4372-a567-0e02b2c3d479",
    "e7f8a9b0-c1d2-3e4f-5678-90abcdef1234",
    "2f4e6d8c-1a3b-5c7e-9f0a-b2d4f6e8c0a2",
    "00000000-0000-0000-0000-000000000000",
];

#[tokio::main]
async fn main() -> Result<()> {
    match Args::parse().what {
        What::Embeddings(args) => embeddings(args).await,
    }
}

/// Latencies of a run, in microseconds.
#[derive(Debug, Default)]
struct Latencies(Vec<u64>);

impl Latencies {
    fn record(&mut self, elapsed: Duration) {
        self.0.push(elapsed.as_micros() as u64);
    }

    fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1] as f64 / 1_000.0
    }
}

async fn embeddings(args: EmbeddingArgs) -> Result<()> {
    let dir = args
        .model_dir
        .clone()
        .unwrap_or_else(Settings::default_model_dir);
    let model = Arc::new(LocalEmbedder::open(&dir)?);
    let started = Instant::now();
    model.warm_up().await?;
    let load = started.elapsed();

    let mut single = Latencies::default();
    for i in 0..args.queries {
        let started = Instant::now();
        model.embed(QUERIES[i % QUERIES.len()]).await?;
        single.record(started.elapsed());
    }

    // product-sized texts, embedded 32 at a time as `sqlmcp embed` does
    let texts: Vec<String> = (0..256)
        .map(|i| {
            format!(
                "Product {i}. {} — a sturdy, well-made item for home repair and \
                 improvement projects, rated for daily use by professionals and \
                 weekend builders alike.",
                QUERIES[i % QUERIES.len()]
            )
        })
        .collect();
    let started = Instant::now();
    for batch in texts.chunks(32) {
        model.embed_batch(batch).await?;
    }
    let batch_rate = texts.len() as f64 / started.elapsed().as_secs_f64();

    println!(
        "local embedding model {}",
        sqlmcp::embeddings::local::MODEL_ID
    );
    println!(
        "  load (read, verify, build):      {:>8.1} ms",
        load.as_secs_f64() * 1e3
    );
    println!(
        "  one query, {} calls:             p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
        args.queries,
        single.percentile_ms(50.0),
        single.percentile_ms(95.0),
        single.percentile_ms(99.0)
    );
    println!("  batches of 32 product texts:     {batch_rate:>8.1} texts/s");
    let mut report = json!({
        "model": sqlmcp::embeddings::local::MODEL_ID,
        "load_ms": load.as_secs_f64() * 1e3,
        "query_p50_ms": single.percentile_ms(50.0),
        "query_p95_ms": single.percentile_ms(95.0),
        "query_p99_ms": single.percentile_ms(99.0),
        "batch32_texts_per_s": batch_rate,
    });

    if let Some(url) = &args.app_database_url {
        let server = Server::start(url, &dir).await?;
        println!(
            "\nsemantic_search_products over HTTP (release server, {} s per row)",
            args.seconds
        );
        println!(
            "{:>8} {:>10} {:>9} {:>9} {:>9} {:>7}",
            "clients", "calls/s", "p50 ms", "p95 ms", "p99 ms", "errors"
        );
        let mut rows = Vec::new();
        for &clients in &args.clients {
            let mut run = drive(
                &server.url,
                clients,
                Duration::from_secs(args.seconds),
                |n| {
                    (
                        CALLERS[n % CALLERS.len()],
                        json!({
                            "name": "semantic_search_products",
                            "arguments": {"query_description": QUERIES[n % QUERIES.len()], "max_rows": 10},
                        }),
                    )
                },
            )
            .await?;
            let (p50, p95, p99) = (
                run.latencies.percentile_ms(50.0),
                run.latencies.percentile_ms(95.0),
                run.latencies.percentile_ms(99.0),
            );
            println!(
                "{clients:>8} {:>10.1} {p50:>9.2} {p95:>9.2} {p99:>9.2} {:>7}",
                run.rate, run.errors
            );
            rows.push(json!({
                "clients": clients, "calls_per_s": run.rate, "p50_ms": p50,
                "p95_ms": p95, "p99_ms": p99, "errors": run.errors,
            }));
        }
        report["semantic_search_products"] = Value::Array(rows);
        server.stop();
    }
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// A release `sqlmcp serve` on a free port, stopped when dropped.
struct Server {
    child: std::process::Child,
    url: String,
}

impl Server {
    async fn start(app_database_url: &str, model_dir: &std::path::Path) -> Result<Server> {
        let binary = std::env::current_exe()?.with_file_name("sqlmcp");
        if !binary.exists() {
            bail!(
                "{} is missing: run the benchmark with `cargo run --release --bin bench`, which builds it",
                binary.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = std::process::Command::new(&binary)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", app_database_url)
            .env("SQLMCP_MODEL_DIR", model_dir)
            .env("SQLMCP_LOG_FORMAT", "json")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let server = Server {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        };
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = client.get(&ready).send().await
                && response.status().is_success()
            {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the server did not get ready within 30 s")
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

struct Run {
    latencies: Latencies,
    rate: f64,
    errors: usize,
}

/// `clients` loops calling tools over stateless Streamable HTTP for
/// `duration`; `call(n)` gives the n-th call's caller and `tools/call` params.
async fn drive(
    url: &str,
    clients: usize,
    duration: Duration,
    call: impl Fn(usize) -> (&'static str, Value) + Send + Sync + 'static,
) -> Result<Run> {
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()?;
    let call = Arc::new(call);
    let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, call, counter) =
                (http.clone(), url.to_owned(), call.clone(), counter.clone());
            tokio::spawn(async move {
                let mut latencies = Latencies::default();
                let mut errors = 0;
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let (caller, params) = call(n);
                    let body = json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": params});
                    let sent = Instant::now();
                    let ok = match http
                        .post(&url)
                        .header("accept", "application/json, text/event-stream")
                        .header("x-rls-user-id", caller)
                        .json(&body)
                        .send()
                        .await
                    {
                        Ok(response) => response
                            .json::<Value>()
                            .await
                            .is_ok_and(|v| v["result"]["isError"] == false),
                        Err(_) => false,
                    };
                    latencies.record(sent.elapsed());
                    if !ok {
                        errors += 1;
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut all = Latencies::default();
    let mut errors = 0;
    for task in tasks {
        let (latencies, failed) = task.await?;
        all.0.extend(latencies.0);
        errors += failed;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Run {
        rate: all.0.len() as f64 / elapsed,
        latencies: all,
        errors,
    })
}
