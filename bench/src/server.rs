//! The server against the database's own ceiling.
//!
//! For every workload and concurrency, two runs of the same length:
//! - **server**: a release `sqlmcp serve` driven over Streamable HTTP;
//! - **ceiling**: the very same SQL with the same per-call transaction
//!   (`db::in_call_transaction`: read-only, the settings of
//!   `db::call_settings` and for raw SQL those of `raw_sql::settings`, the
//!   caller's identity, pipelined with the query; then COMMIT, or
//!   ROLLBACK for raw SQL), run directly through a tokio-postgres pool of the
//!   server's size, with statements prepared once per connection. Semantic
//!   search embeds its text with the same local model in both.
//!
//! The ratio server/ceiling of calls per second says what MCP, HTTP,
//! validation and JSON cost on top of the SQL.

use sqlmcp::secret::Secret;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::TryStreamExt;
use serde_json::{Value, json};
use sqlmcp::embeddings::local::{LocalEmbedder, MODEL_ID};
use sqlmcp::embeddings::{Embedder, Settings};
use sqlmcp_codegen::queries;

use crate::harness::{CpuTimes, McpClient, Run, Server, machine, round, run_for, write_json};
use crate::{CALLERS, QUERIES};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The application role's URL of the full-scale seeded, embedded database.
    #[arg(long, env = "SQLMCP_APP_DATABASE_URL", hide_env_values = true)]
    app_database_url: Secret,
    /// The local model's folder [default: as the server's].
    #[arg(long, env = "SQLMCP_MODEL_DIR")]
    model_dir: Option<PathBuf>,
    /// Concurrent clients, one row each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
    clients: Vec<usize>,
    /// Seconds each row spends on the server, and as many on the ceiling.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds each row's seconds are split into: server, ceiling, server,
    /// ceiling… The ratio is of the calls summed over all rounds; the
    /// table also prints each round's.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    rounds: u32,
    /// Database connections of the server, and of the ceiling's pool.
    #[arg(long, default_value_t = 16)]
    pool_size: usize,
    /// Only these workloads (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Also run the curated workloads through a server with the result cache
    /// on (`--result-cache-ttl-ms 60000`), against the same ceilings.
    #[arg(long)]
    with_result_cache: bool,
    /// Seconds of the mixed run that checks memory growth (0: skip).
    #[arg(long, default_value_t = 0)]
    soak_seconds: u64,
    /// Extra arguments for `sqlmcp serve`, e.g. --serve-arg=--max-rows=100.
    #[arg(long = "serve-arg", allow_hyphen_values = true)]
    serve_args: Vec<String>,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A light question for `execute_sales_query`: the server's own cost per
/// call shows, not the SQL's.
const LIGHT_SALES_QUERY: &str =
    "SELECT count(*) AS n FROM retail.orders WHERE order_date >= date '2025-12-01'";

/// A fixed analytic question for `execute_sales_query`.
const SALES_QUERY: &str = "SELECT c.category_name, sum(oi.total_amount) AS revenue, \
     count(DISTINCT oi.order_id) AS orders \
     FROM retail.order_items oi \
     JOIN retail.orders o ON o.order_id = oi.order_id \
     JOIN retail.products p ON p.product_id = oi.product_id \
     JOIN retail.categories c ON c.category_id = p.category_id \
     WHERE o.order_date >= DATE '2025-10-01' \
     GROUP BY c.category_name ORDER BY revenue DESC";

const SKUS: &[&str] = &[
    "PWR-DRL-1001",
    "PLB-TLS-1001",
    "ELE-TST-1001",
    "GRD-HOS-1006",
    "SAF-FIR-1002",
];

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Workload {
    TopProducts,
    RevenueByMonth,
    ProductDetails,
    SalesQuery,
    LightSalesQuery,
    SemanticSearch,
    /// The five before the light query in turn.
    Mix,
}

const WORKLOADS: [Workload; 7] = [
    Workload::TopProducts,
    Workload::RevenueByMonth,
    Workload::ProductDetails,
    Workload::SalesQuery,
    Workload::SemanticSearch,
    Workload::LightSalesQuery,
    Workload::Mix,
];

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::TopProducts => "top_products",
            Workload::RevenueByMonth => "revenue_by_month",
            Workload::ProductDetails => "product_details",
            Workload::SalesQuery => "execute_sales_query",
            Workload::LightSalesQuery => "execute_sales_query_light",
            Workload::SemanticSearch => "semantic_search_products",
            Workload::Mix => "mix",
        }
    }

    /// The MCP tool the workload calls.
    pub(crate) fn tool(self) -> &'static str {
        match self {
            Workload::LightSalesQuery => "execute_sales_query",
            other => other.name(),
        }
    }

    /// The workload and caller of call `n`: identities rotate; the mix
    /// rotates tools too.
    pub(crate) fn pick(self, n: usize) -> (Workload, &'static str) {
        match self {
            Workload::Mix => (WORKLOADS[n % 5], CALLERS[(n / 5) % CALLERS.len()]),
            other => (other, CALLERS[n % CALLERS.len()]),
        }
    }

    pub(crate) fn arguments(self, n: usize) -> Value {
        match self {
            Workload::TopProducts => {
                json!({"start_date": "2025-10-01", "end_date": "2025-12-31", "limit": 10})
            }
            Workload::RevenueByMonth => {
                json!({"start_date": "2025-01-01", "end_date": "2025-12-31"})
            }
            Workload::ProductDetails => json!({"sku": SKUS[n % SKUS.len()]}),
            Workload::SalesQuery => json!({"postgresql_query": SALES_QUERY}),
            Workload::LightSalesQuery => json!({"postgresql_query": LIGHT_SALES_QUERY}),
            Workload::SemanticSearch => {
                json!({"query_description": QUERIES[n % QUERIES.len()], "max_rows": 10})
            }
            Workload::Mix => unreachable!("a mix picks one of the others"),
        }
    }
}

/// The ceiling's per-call work: the workload's SQL, directly.
struct Ceiling {
    pool: deadpool_postgres::Pool,
    model: Arc<LocalEmbedder>,
}

impl Ceiling {
    async fn call(&self, workload: Workload, caller: &str, n: usize) -> Result<()> {
        // embedding needs no connection, as in the server
        let embedding = match workload {
            Workload::SemanticSearch => Some(self.model.embed(QUERIES[n % QUERIES.len()]).await?),
            _ => None,
        };
        let client = self.pool.get().await?;
        let grant = sqlmcp::caller::CallerId::for_tests(caller).into();
        let (timeout, settings, settle) = call_settings(workload);
        let call = sqlmcp::db::Call::new(&client, true, settle);
        let query = run_query(workload, &client, &call, n, embedding);
        let settled = call.run(&grant, timeout, &settings, query).await?;
        settled.opened?;
        settled.output?;
        settled.ended?;
        Ok(())
    }
}

/// The server's own settings for the workload's tool, so that both sides
/// run under the same ones.
fn call_settings(
    workload: Workload,
) -> (Duration, Vec<(&'static str, String)>, sqlmcp::db::Settle) {
    if matches!(workload, Workload::SalesQuery | Workload::LightSalesQuery) {
        let limits = sqlmcp::tools::raw_sql::Limits::default();
        (
            limits.statement_timeout,
            sqlmcp::tools::raw_sql::settings(limits).to_vec(),
            sqlmcp::db::Settle::Rollback,
        )
    } else {
        (
            sqlmcp::db::DEFAULT_STATEMENT_TIMEOUT,
            Vec::new(),
            sqlmcp::db::Settle::Commit,
        )
    }
}

/// The workload's SQL in the call's transaction: as the call's last
/// statement, so that the end follows it in the same round trip, as in the
/// server.
async fn run_query(
    workload: Workload,
    client: &deadpool_postgres::Object,
    call: &sqlmcp::db::Call<'_>,
    n: usize,
    embedding: Option<Vec<f32>>,
) -> Result<()> {
    let last = call.last();
    let date = |s: &str| chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
    match workload {
        Workload::TopProducts => {
            queries::top_products::top_products()
                .bind(
                    &last,
                    &date("2025-10-01"),
                    &date("2025-12-31"),
                    &None::<&str>,
                    &None,
                    &"revenue",
                    &10,
                )
                .all()
                .await?;
        }
        Workload::RevenueByMonth => {
            queries::revenue_by_month::revenue_by_month()
                .bind(
                    &last,
                    &date("2025-01-01"),
                    &date("2025-12-31"),
                    &None,
                    &None::<&str>,
                )
                .all()
                .await?;
        }
        Workload::ProductDetails => {
            queries::product_details::product_details()
                .bind(&last, &Some(SKUS[n % SKUS.len()]), &None::<&str>, &20)
                .all()
                .await?;
        }
        Workload::SalesQuery | Workload::LightSalesQuery => {
            let text = if workload == Workload::SalesQuery {
                SALES_QUERY
            } else {
                LIGHT_SALES_QUERY
            };
            let statement = client.prepare_cached(text).await?;
            let rows: Vec<tokio_postgres::Row> = call
                .query_last(&statement, std::iter::empty::<&str>())
                .await?
                .try_collect()
                .await?;
            drop(rows);
        }
        Workload::SemanticSearch => {
            // the server's search may check the stored vectors after an
            // empty result, so its COMMIT waits for the rows
            queries::semantic_search_products::semantic_search_products()
                .bind(call, &embedding.unwrap_or_default(), &MODEL_ID, &30.0, &10)
                .all()
                .await?;
        }
        Workload::Mix => unreachable!("a mix picks one of the others"),
    }
    Ok(())
}

pub async fn run(args: Args) -> Result<()> {
    let model_dir = args
        .model_dir
        .clone()
        .unwrap_or_else(Settings::default_model_dir);
    let model_dir_arg = model_dir.to_string_lossy().into_owned();
    let pool_size = args.pool_size.to_string();
    let mut serve_args: Vec<&str> = vec!["--pool-size", &pool_size];
    serve_args.extend(args.serve_args.iter().map(String::as_str));
    let mut report = json!({"machine": machine(), "seconds_per_run": args.seconds, "rounds": args.rounds, "pool_size": args.pool_size});
    start_up_and_memory(&args, &serve_args, &mut report).await?;

    // the validator of execute_sales_query on its own
    let (validator_p50_us, validator_p99_us) =
        time_validator(args.app_database_url.expose()).await?;
    println!(
        "execute_sales_query validator alone: p50 {validator_p50_us:.1} µs, p99 {validator_p99_us:.1} µs"
    );
    report["validator_us"] =
        json!({"p50": round(validator_p50_us, 1), "p99": round(validator_p99_us, 1)});

    let mut with_model = serve_args.clone();
    with_model.extend(["--model-dir", &model_dir_arg]);
    let server = Server::start(args.app_database_url.expose(), &with_model).await?;
    let client = McpClient::new(&server.url, 128)?;
    // the model loads in the background; wait for it with one search
    client
        .call(
            CALLERS[0],
            "semantic_search_products",
            &json!({"query_description": "warm up"}),
        )
        .await?;
    let idle_with_model = server.rss_mb();
    println!("idle RSS with the embedding model loaded: {idle_with_model:.1} MB");
    report["idle_rss_mb_with_model"] = json!(round(idle_with_model, 1));

    let config = sqlmcp::db::parse_database_url(args.app_database_url.expose())
        .map_err(anyhow::Error::msg)?;
    let ceiling = Arc::new(Ceiling {
        pool: sqlmcp::db::pool(&config, args.pool_size, Duration::from_secs(30))?,
        model: Arc::new(LocalEmbedder::open(&model_dir)?),
    });
    ceiling.model.warm_up().await?;

    print_header();
    let duration = Duration::from_secs(args.seconds);
    let mut rows = Vec::new();
    let mut ceilings = Vec::new();
    for workload in WORKLOADS {
        if !args.only.is_empty() && !args.only.iter().any(|w| w == workload.name()) {
            continue;
        }
        for &clients in &args.clients {
            let turns = Turns::take(&client, &ceiling, &server, workload, clients, &args).await?;
            ceilings.push((workload, clients, turns.baseline.rate));
            rows.push(turns.report(workload, clients));
        }
    }
    report["rows"] = Value::Array(rows);
    report["peak_rss_mb"] = json!(round(server.peak_rss_mb(), 1));
    println!("\nserver RSS: peak {:.1} MB", server.peak_rss_mb());

    if args.with_result_cache {
        // the first server idles meanwhile; the soak below uses it
        let mut cached_args = with_model.clone();
        cached_args.extend(["--result-cache-ttl-ms", "60000"]);
        let cached = Server::start(args.app_database_url.expose(), &cached_args).await?;
        let cached_client = McpClient::new(&cached.url, 128)?;
        report["result_cache_rows"] =
            result_cache_rows(&cached_client, &ceilings, duration).await?;
    }

    if args.soak_seconds > 0 {
        let soak = soak(&client, &server, Duration::from_secs(args.soak_seconds)).await?;
        report["soak"] = soak;
    }
    write_json(args.json.as_deref(), &report)
}

/// Start to ready and idle memory, without the model: five starts.
async fn start_up_and_memory(args: &Args, serve_args: &[&str], report: &mut Value) -> Result<()> {
    let mut starts = Vec::new();
    let mut idle_rss = Vec::new();
    for _ in 0..5 {
        let mut bare = serve_args.to_vec();
        bare.extend(["--embedding-provider", "none"]);
        let server = Server::start(args.app_database_url.expose(), &bare).await?;
        starts.push(server.ready_after.as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(300)).await;
        idle_rss.push(server.rss_mb());
    }
    starts.sort_by(f64::total_cmp);
    idle_rss.sort_by(f64::total_cmp);
    println!(
        "start to ready, no embedding model: median {:.0} ms (of {:?} ms); idle RSS {:.1} MB",
        starts[2],
        starts.iter().map(|s| s.round()).collect::<Vec<_>>(),
        idle_rss[2]
    );
    report["start_to_ready_ms"] = json!({"median": round(starts[2], 1), "runs": starts.iter().map(|s| round(*s, 1)).collect::<Vec<_>>()});
    report["idle_rss_mb_without_model"] = json!(round(idle_rss[2], 1));
    Ok(())
}

fn print_header() {
    println!(
        "\n{:<26} {:>7} | {:>9} {:>8} {:>8} {:>8} {:>6} | {:>9} {:>8} | {:>6}",
        "workload",
        "clients",
        "calls/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "errors",
        "ceiling/s",
        "p50 ms",
        "ratio"
    );
}

/// One row: the server and the ceiling, taking turns.
#[derive(Default)]
struct Turns {
    served: Run,
    baseline: Run,
    served_cpu: CpuTimes,
    baseline_cpu: CpuTimes,
    round_ratios: Vec<f64>,
}

impl Turns {
    /// Server and ceiling take turns, so that a drift in the machine's
    /// speed (a busy neighbour, a warming cache) falls on both alike; each
    /// side's rounds add up to `--seconds`.
    async fn take(
        client: &McpClient,
        ceiling: &Arc<Ceiling>,
        server: &Server,
        workload: Workload,
        clients: usize,
        args: &Args,
    ) -> Result<Turns> {
        let round_length = Duration::from_secs(args.seconds) / args.rounds;
        let mut turns = Turns::default();
        for _ in 0..args.rounds {
            let before = CpuTimes::now(Some(server.pid()));
            let served_round = drive(client.clone(), workload, clients, round_length).await?;
            let between = CpuTimes::now(Some(server.pid()));
            let direct = ceiling.clone();
            let baseline_round = run_for(clients, round_length, move |n| {
                let direct = direct.clone();
                async move {
                    let (tool, caller) = workload.pick(n);
                    direct.call(tool, caller, n).await
                }
            })
            .await?;
            turns.served_cpu += before.until(between);
            turns.baseline_cpu += between.until(CpuTimes::now(Some(server.pid())));
            turns
                .round_ratios
                .push(served_round.rate / baseline_round.rate);
            turns.served.absorb(served_round);
            turns.baseline.absorb(baseline_round);
        }
        Ok(turns)
    }

    /// Prints the row and returns it as JSON.
    fn report(mut self, workload: Workload, clients: usize) -> Value {
        let ratio = self.served.rate / self.baseline.rate;
        let baseline_p50 = self.baseline.latencies.percentile_ms(50.0);
        print_row(
            workload,
            clients,
            &mut self.served,
            self.baseline.rate,
            Some(baseline_p50),
        );
        let (s, c) = (
            self.served_cpu.per_call_ms(self.served.latencies.len()),
            self.baseline_cpu.per_call_ms(self.baseline.latencies.len()),
        );
        let by_round: Vec<String> = self
            .round_ratios
            .iter()
            .map(|r| format!("{:.0}%", r * 100.0))
            .collect();
        println!(
            "{:<26} {:>7}   ratio by round: {} | CPU ms per call: server {} + postgres {} + load generator {} | ceiling: postgres {} + load generator {}",
            "",
            "",
            by_round.join(" "),
            s["server"],
            s["postgres"],
            s["bench"],
            c["postgres"],
            c["bench"]
        );
        for (who, run) in [("server", &self.served), ("ceiling", &self.baseline)] {
            if let Some(error) = &run.first_error {
                println!("    first {who} error: {error}");
            }
        }
        json!({
            "workload": workload.name(),
            "clients": clients,
            "server": self.served.summary(),
            "ceiling": self.baseline.summary(),
            "server_cpu_ms_per_call": s,
            "ceiling_cpu_ms_per_call": c,
            "ratio": round(ratio, 3),
            "ratio_by_round": self.round_ratios.iter().map(|r| round(*r, 3)).collect::<Vec<_>>(),
        })
    }
}

/// One row of the table: the server's run against the ceiling's calls/s
/// (and its p50, when that run is in this table).
fn print_row(
    workload: Workload,
    clients: usize,
    served: &mut Run,
    ceiling_rate: f64,
    ceiling_p50_ms: Option<f64>,
) {
    let ceiling_p50 = ceiling_p50_ms.map_or(String::new(), |ms| format!("{ms:.2}"));
    println!(
        "{:<26} {clients:>7} | {:>9.1} {:>8.2} {:>8.2} {:>8.2} {:>6} | {:>9.1} {:>8} | {:>5.0}%",
        workload.name(),
        served.rate,
        served.latencies.percentile_ms(50.0),
        served.latencies.percentile_ms(95.0),
        served.latencies.percentile_ms(99.0),
        served.errors,
        ceiling_rate,
        ceiling_p50,
        served.rate / ceiling_rate * 100.0
    );
}

/// `workload` through the server by `clients` concurrent clients for
/// `duration`, each call as the next caller in turn.
fn drive(
    client: McpClient,
    workload: Workload,
    clients: usize,
    duration: Duration,
) -> impl Future<Output = Result<Run>> + Send + 'static {
    run_for(clients, duration, move |n| {
        let mcp = client.clone();
        async move {
            let (tool, caller) = workload.pick(n);
            mcp.call(caller, tool.tool(), &tool.arguments(n)).await
        }
    })
}

/// The curated workloads through a server with the result cache on, each
/// against the ceiling measured for it above. Raw SQL is never cached.
async fn result_cache_rows(
    client: &McpClient,
    ceilings: &[(Workload, usize, f64)],
    duration: Duration,
) -> Result<Value> {
    println!("\nwith the result cache on (--result-cache-ttl-ms 60000):");
    let mut rows = Vec::new();
    for &(workload, clients, ceiling) in ceilings {
        if matches!(workload, Workload::SalesQuery | Workload::LightSalesQuery) {
            continue;
        }
        let mut served = drive(client.clone(), workload, clients, duration).await?;
        let ratio = served.rate / ceiling;
        print_row(workload, clients, &mut served, ceiling, None);
        rows.push(json!({
            "workload": workload.name(),
            "clients": clients,
            "server": served.summary(),
            "ceiling_calls_per_s": round(ceiling, 1),
            "ratio": round(ratio, 3),
        }));
    }
    Ok(Value::Array(rows))
}

/// The mix at 16 clients for `duration`, with the server's memory at the
/// start and the end.
async fn soak(client: &McpClient, server: &Server, duration: Duration) -> Result<Value> {
    let started = Instant::now();
    let mut samples = Vec::new();
    let worker = tokio::spawn(drive(client.clone(), Workload::Mix, 16, duration));
    while started.elapsed() < duration {
        samples.push((started.elapsed().as_secs(), server.rss_mb()));
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
    let mut run = worker.await??;
    let end = server.rss_mb();
    // the first sample after the caches have filled
    let start = samples
        .iter()
        .find(|(at, _)| *at >= 10)
        .map_or(end, |(_, mb)| *mb);
    println!(
        "\nmixed run of {:.0} s at 16 clients: {:.1} calls/s, {} errors; RSS {start:.1} MB at 10 s, {end:.1} MB at the end",
        duration.as_secs_f64(),
        run.rate,
        run.errors
    );
    Ok(json!({
        "seconds": duration.as_secs(),
        "run": run.summary(),
        "rss_mb_at_10s": round(start, 1),
        "rss_mb_at_end": round(end, 1),
        "rss_samples": samples.iter().map(|(at, mb)| json!([at, round(*mb, 1)])).collect::<Vec<_>>(),
    }))
}

/// The policy check of [`SALES_QUERY`] alone, against the database's names.
pub async fn time_validator(url: &str) -> Result<(f64, f64)> {
    let config = sqlmcp::db::parse_database_url(url).map_err(anyhow::Error::msg)?;
    let client = sqlmcp::db::connect(&config).await?;
    let names = sqlmcp::tools::raw_sql::load_names(&*client)
        .await
        .context("cannot read the database's names")?;
    // What PostgreSQL's parser alone costs of it (pg_query: parse, and the
    // tree through protobuf into Rust), timed in turn with the whole check
    // so that both see the machine alike.
    let mut times = crate::harness::Latencies::default();
    let mut parse = crate::harness::Latencies::default();
    for _ in 0..20_000 {
        let started = Instant::now();
        let checked = sqlmcp::sql_policy::check(SALES_QUERY, &names);
        times.record(started.elapsed());
        anyhow::ensure!(checked.is_ok(), "the policy refuses the benchmark's query");
        let started = Instant::now();
        let parsed = pg_query::parse(SALES_QUERY, pg_query::ParserOptions::default());
        parse.record(started.elapsed());
        anyhow::ensure!(
            parsed.is_ok(),
            "pg_query cannot parse the benchmark's query"
        );
    }
    println!(
        "  of which pg_query::parse: p50 {:.1} µs",
        parse.percentile_ms(50.0) * 1e3
    );
    // microseconds: Latencies keeps microseconds and reports milliseconds
    Ok((
        times.percentile_ms(50.0) * 1e3,
        times.percentile_ms(99.0) * 1e3,
    ))
}
