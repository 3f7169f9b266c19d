//! A long run under faults: many clients on the mixed workload for minutes,
//! with a PostgreSQL restart and an outage of the remote embedding provider
//! in the middle. Prints errors by cause, latency before, during and after
//! the faults, and the server's memory over the run.
//!
//! The embedding provider is a local stand-in for a remote, OpenAI-shaped
//! API: it answers the benchmark's search texts with the vectors the local
//! model gives them (computed once at start, so the stand-in costs the
//! machine nothing per call), and during the outage it refuses connections.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use sqlmcp::embeddings::local::{LocalEmbedder, MODEL_ID};
use sqlmcp::embeddings::{Embedder, Settings};
use sqlmcp::secret::Secret;

use crate::QUERIES;
use crate::harness::{Latencies, McpClient, Server, machine, round, write_json};
use crate::server::Workload;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The application role's URL of the full-scale seeded, embedded database.
    #[arg(long, env = "SQLMCP_APP_DATABASE_URL", hide_env_values = true)]
    app_database_url: Secret,
    /// The local model's folder, whose vectors the stand-in provider serves.
    #[arg(long, env = "SQLMCP_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Concurrent clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds the run lasts.
    #[arg(long, default_value_t = 300)]
    seconds: u64,
    /// Second of the run at which PostgreSQL is restarted.
    #[arg(long, default_value_t = 100)]
    restart_at: u64,
    /// The command that restarts PostgreSQL (run with `sh -c`).
    #[arg(long, default_value = "scripts/dev-db restart fast")]
    restart_command: String,
    /// Second of the run at which the embedding provider goes away.
    #[arg(long, default_value_t = 160)]
    outage_at: u64,
    /// Seconds the embedding provider stays away.
    #[arg(long, default_value_t = 30)]
    outage_seconds: u64,
    /// Database connections of the server.
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
    /// Milliseconds a call may wait for a connection. The run measures
    /// faults, not saturation: 64 clients on 16 connections queue, and the
    /// server's default (5 s) would turn a long queue into "busy" errors.
    #[arg(long, default_value_t = 30_000)]
    pool_wait_ms: u64,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One call: when it was sent (seconds into the run), how long it took, and
/// the cause of its failure, if it failed.
struct Call {
    at: f64,
    took: Duration,
    cause: Option<&'static str>,
}

/// The cause of a failed call, from its message.
fn cause_of(message: &str) -> &'static str {
    let message = message.to_lowercase();
    if message.contains("embed") {
        "embedding provider unavailable"
    } else if message.contains("database is unavailable") || message.contains("connection failed") {
        "database unavailable"
    } else if message.contains("busy") {
        "server busy (pool)"
    } else if message.contains("statement timeout") || message.contains("cancelled") {
        "timeout"
    } else if message.contains("error sending request") || message.contains("connection") {
        "http"
    } else {
        "other"
    }
}

/// The stand-in for a remote embedding provider.
struct Provider {
    vectors: Arc<HashMap<String, Vec<f32>>>,
    port: u16,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl Provider {
    async fn start(model: &LocalEmbedder) -> Result<Provider> {
        let mut vectors = HashMap::new();
        for text in QUERIES {
            vectors.insert((*text).to_owned(), model.embed(text).await?);
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let mut provider = Provider {
            vectors: Arc::new(vectors),
            port,
            serving: None,
        };
        provider.resume().await?;
        Ok(provider)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Serves `POST /v1/embeddings` in OpenAI's shape.
    async fn resume(&mut self) -> Result<()> {
        let vectors = self.vectors.clone();
        let app = axum::Router::new().route(
            "/v1/embeddings",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let vectors = vectors.clone();
                async move {
                    let inputs: Vec<String> = match &body["input"] {
                        Value::String(text) => vec![text.clone()],
                        other => serde_json::from_value(other.clone()).unwrap_or_default(),
                    };
                    let data: Option<Vec<Value>> = inputs
                        .iter()
                        .enumerate()
                        .map(|(index, text)| {
                            vectors
                                .get(text)
                                .map(|v| json!({"index": index, "embedding": v}))
                        })
                        .collect();
                    match data {
                        Some(data) => (
                            axum::http::StatusCode::OK,
                            axum::Json(
                                json!({"object": "list", "model": body["model"], "data": data}),
                            ),
                        ),
                        None => (
                            axum::http::StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": {"message": "unknown text"}})),
                        ),
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .with_context(|| format!("cannot listen on port {} again", self.port))?;
        self.serving = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
        Ok(())
    }

    /// Stops listening: connections are refused, open ones dropped.
    async fn go_away(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
            let _ = serving.await;
        }
    }
}

pub async fn run(args: Args) -> Result<()> {
    if !(args.restart_at < args.outage_at && args.outage_at + args.outage_seconds < args.seconds) {
        bail!("the restart must come before the outage, and the outage end before the run's end");
    }
    let model_dir = args
        .model_dir
        .clone()
        .unwrap_or_else(Settings::default_model_dir);
    let model = LocalEmbedder::open(&model_dir)?;
    let mut provider = Provider::start(&model).await?;
    drop(model);
    let pool_size = args.pool_size.to_string();
    let pool_wait = args.pool_wait_ms.to_string();
    let provider_url = provider.url();
    let server = Server::start(
        args.app_database_url.expose(),
        &[
            "--pool-size",
            &pool_size,
            "--pool-wait-ms",
            &pool_wait,
            "--embedding-provider",
            "openai",
            "--embedding-url",
            &provider_url,
            "--embedding-model",
            MODEL_ID,
            "--embedding-dimensions",
            "384",
        ],
    )
    .await?;
    let client = McpClient::new(&server.url, args.clients * 2)?;
    println!(
        "soak: {} clients for {} s on the mix; PostgreSQL restarted at {} s ({}), the embedding provider away {}–{} s",
        args.clients,
        args.seconds,
        args.restart_at,
        args.restart_command,
        args.outage_at,
        args.outage_at + args.outage_seconds
    );

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let counter = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..args.clients)
        .map(|_| {
            let (client, counter) = (client.clone(), counter.clone());
            tokio::spawn(async move {
                let mut calls = Vec::new();
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let (workload, caller) = Workload::Mix.pick(n);
                    let sent = Instant::now();
                    let outcome = client
                        .call(caller, workload.tool(), &workload.arguments(n))
                        .await;
                    calls.push(Call {
                        at: sent.duration_since(started).as_secs_f64(),
                        took: sent.elapsed(),
                        cause: outcome.err().map(|err| cause_of(&format!("{err:#}"))),
                    });
                }
                calls
            })
        })
        .collect();

    // the faults, and the server's memory every 10 s
    let mut rss = Vec::new();
    let mut events = Vec::new();
    let at = |second: u64| started + Duration::from_secs(second);
    let mut next_sample = 0;
    let mut restarted = false;
    let mut outage = 0; // 0 before, 1 during, 2 after
    while Instant::now() < deadline {
        let now = started.elapsed().as_secs();
        if now >= next_sample {
            rss.push((now, server.rss_mb()));
            next_sample += 10;
        }
        if !restarted && Instant::now() >= at(args.restart_at) {
            restarted = true;
            let began = Instant::now();
            let status = tokio::process::Command::new("sh")
                .args(["-c", &args.restart_command])
                .stderr(std::process::Stdio::null())
                .status()
                .await?;
            if !status.success() {
                bail!("`{}` failed: {status}", args.restart_command);
            }
            let took = began.elapsed().as_secs_f64();
            println!(
                "  {:>5.1} s: PostgreSQL restarted in {took:.2} s",
                started.elapsed().as_secs_f64()
            );
            events.push(json!({"at_s": round(started.elapsed().as_secs_f64(), 1), "event": "postgres restarted", "took_s": round(took, 2)}));
        }
        if outage == 0 && Instant::now() >= at(args.outage_at) {
            outage = 1;
            provider.go_away().await;
            println!(
                "  {:>5.1} s: the embedding provider is away",
                started.elapsed().as_secs_f64()
            );
            events.push(json!({"at_s": round(started.elapsed().as_secs_f64(), 1), "event": "embedding provider away"}));
        }
        if outage == 1 && Instant::now() >= at(args.outage_at + args.outage_seconds) {
            outage = 2;
            provider.resume().await?;
            println!(
                "  {:>5.1} s: the embedding provider is back",
                started.elapsed().as_secs_f64()
            );
            events.push(json!({"at_s": round(started.elapsed().as_secs_f64(), 1), "event": "embedding provider back"}));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut calls = Vec::new();
    for worker in workers {
        calls.extend(worker.await?);
    }
    let end_rss = server.rss_mb();
    rss.push((args.seconds, end_rss));

    let phases = [
        ("before", 0.0, args.restart_at as f64),
        (
            "during",
            args.restart_at as f64,
            (args.outage_at + args.outage_seconds) as f64,
        ),
        (
            "after",
            (args.outage_at + args.outage_seconds) as f64,
            args.seconds as f64,
        ),
    ];
    let mut report_phases = Vec::new();
    println!("\n  phase     seconds    calls   calls/s   errors   p50 ms   p99 ms");
    for (name, from, to) in phases {
        let mut latencies = Latencies::default();
        let mut errors = 0;
        for call in calls.iter().filter(|c| c.at >= from && c.at < to) {
            latencies.record(call.took);
            errors += usize::from(call.cause.is_some());
        }
        let count = latencies.len();
        let rate = count as f64 / (to - from);
        let (p50, p99) = (latencies.percentile_ms(50.0), latencies.percentile_ms(99.0));
        println!(
            "  {name:<8} {from:>4.0}–{to:<4.0} {count:>8} {rate:>9.1} {errors:>8} {p50:>8.2} {p99:>8.2}"
        );
        report_phases.push(json!({
            "phase": name, "from_s": from, "to_s": to, "calls": count,
            "calls_per_s": round(rate, 1), "errors": errors,
            "p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
        }));
    }
    let mut causes: BTreeMap<&str, (usize, f64, f64)> = BTreeMap::new();
    for call in &calls {
        if let Some(cause) = call.cause {
            let entry = causes.entry(cause).or_insert((0, f64::MAX, 0.0));
            entry.0 += 1;
            entry.1 = entry.1.min(call.at);
            entry.2 = entry.2.max(call.at);
        }
    }
    println!("\n  errors by cause:");
    if causes.is_empty() {
        println!("    none");
    }
    for (cause, (count, first, last)) in &causes {
        println!("    {cause}: {count} (sent between {first:.1} s and {last:.1} s)");
    }
    let start_rss = rss
        .iter()
        .find(|(at, _)| *at >= 10)
        .map_or(end_rss, |(_, mb)| *mb);
    println!(
        "\n  server RSS: {start_rss:.1} MB at 10 s, {end_rss:.1} MB at the end, peak {:.1} MB",
        server.peak_rss_mb()
    );
    let report = json!({
        "machine": machine(),
        "clients": args.clients,
        "seconds": args.seconds,
        "pool_size": args.pool_size,
        "pool_wait_ms": args.pool_wait_ms,
        "workload": "mix: top_products, revenue_by_month, product_details, execute_sales_query, semantic_search_products; callers rotate",
        "events": events,
        "phases": report_phases,
        "errors_by_cause": causes.iter().map(|(cause, (count, first, last))| json!({
            "cause": cause, "count": count, "first_sent_at_s": round(*first, 1), "last_sent_at_s": round(*last, 1),
        })).collect::<Vec<_>>(),
        "rss_mb_at_10s": round(start_rss, 1),
        "rss_mb_at_end": round(end_rss, 1),
        "peak_rss_mb": round(server.peak_rss_mb(), 1),
        "rss_samples": rss.iter().map(|(at, mb)| json!([at, round(*mb, 1)])).collect::<Vec<_>>(),
    });
    write_json(args.json.as_deref(), &report)
}
