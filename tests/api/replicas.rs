//! Read replicas: the server on a hot standby alone, and a primary with a
//! replica that takes the calls until it lags or dies.
//!
//! The tests share one private primary and its streaming standby
//! (`scripts/dev-db start --replica` under the target directory), made once
//! per run: migrated, seeded at the tiny scale and embedded on the primary.
//! They take turns ([`pair`]), since pausing or killing the standby changes
//! what the others would see. A run destroys what an earlier one left;
//! `scripts/test` destroys the pair when the tests end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::CallToolResult;
use serde_json::{Value, json};
use sqlmcp::server::Settings;
use tokio::sync::{Mutex, MutexGuard, OnceCell};
use tokio_postgres::Config;

use crate::helpers::cluster::PrivateCluster;
use crate::helpers::server::{TestApp, as_caller, call, settings_for, spawn_app_on, text};
use crate::helpers::{HEAD_OFFICE, SEATTLE, SEATTLE_STORE_ID, connect};

/// The primary and its standby, with their URLs.
struct Pair {
    cluster: PrivateCluster,
    primary_owner: Config,
    primary_app: Config,
    replica_owner: Config,
    replica_app: Config,
}

/// The pair, made on first use, held by one test at a time.
async fn pair() -> MutexGuard<'static, Pair> {
    static PAIR: OnceCell<Mutex<Pair>> = OnceCell::const_new();
    let pair = PAIR
        .get_or_init(|| async {
            let cluster = tokio::task::spawn_blocking(|| {
                let cluster = PrivateCluster::start("replicas");
                cluster.start_replica();
                cluster
            })
            .await
            .expect("the private pair starts");
            let parse = |url: String| url.parse::<Config>().expect("a dev-db URL");
            let pair = Pair {
                primary_owner: parse(cluster.url("owner")),
                primary_app: parse(cluster.url("app")),
                replica_owner: parse(cluster.replica_url("owner")),
                replica_app: parse(cluster.replica_url("app")),
                cluster,
            };
            // the seed went in before the copy; the embeddings after it
            fill_embeddings(&pair.primary_owner).await;
            Mutex::new(pair)
        })
        .await;
    let pair = pair.lock().await;
    // a test before this one may have left it stopped or paused
    pair.cluster.start_replica();
    connect(&pair.replica_owner)
        .await
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .expect("replay resumes");
    pair.caught_up().await;
    pair
}

/// Embeds the products of the seeded primary (migrations and seed ran).
async fn fill_embeddings(owner: &Config) {
    let mut client = connect(owner).await;
    sqlmcp::backfill::run(
        &mut client,
        crate::helpers::local_embedder().as_ref(),
        32,
        false,
    )
    .await
    .expect("embed the products");
}

impl Pair {
    /// Waits until the standby has replayed all the primary has written.
    async fn caught_up(&self) {
        let primary = connect(&self.primary_owner).await;
        let target: String = primary
            .query_one("SELECT pg_current_wal_lsn()::text", &[])
            .await
            .unwrap()
            .get(0);
        let replica = connect(&self.replica_owner).await;
        let started = Instant::now();
        loop {
            let reached: bool = replica
                .query_one(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&target],
                )
                .await
                .unwrap()
                .get(0);
            if reached {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the standby did not replay up to {target} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A server on the primary with the standby as its replica.
    async fn server_with_replica(&self, max_lag: Duration) -> TestApp {
        let mut settings: Settings = settings_for(self.primary_app.clone());
        settings.replicas = vec![self.replica_app.clone()];
        settings.max_replica_lag = max_lag;
        spawn_app_on(settings).await
    }
}

/// Arguments for every tool: an empty object where every argument is optional.
fn arguments(tool: &str) -> Value {
    match tool {
        "execute_sales_query" => json!({"postgresql_query":
            "SELECT store_id, count(*) AS orders, sum(oi.total_amount) AS revenue \
             FROM retail.orders o JOIN retail.order_items oi USING (order_id, store_id) \
             GROUP BY store_id ORDER BY store_id"}),
        "get_multiple_table_schemas" => json!({"table_names": ["retail.orders", "retail.stores"]}),
        "semantic_search_products" => json!({"query_description": "a cordless drill"}),
        "product_details" => json!({"name_contains": "drill"}),
        _ => json!({}),
    }
}

fn answer(tool: &str, result: &CallToolResult) -> Value {
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} failed: {}",
        text(result)
    );
    result
        .structured_content
        .clone()
        .unwrap_or_else(|| panic!("{tool} has no structured content"))
}

/// The stores whose orders `caller` sees through raw SQL.
async fn stores_seen(app: &TestApp, caller: &str) -> Vec<i64> {
    let client = as_caller(app, caller).await;
    let result = call(
        &client,
        "execute_sales_query",
        json!({"postgresql_query": "SELECT DISTINCT store_id FROM retail.orders ORDER BY 1"}),
    )
    .await;
    let rows = answer("execute_sales_query", &result)["r"].clone();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|row| row[0].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn every_tool_and_row_level_security_work_on_a_standby_alone() {
    let pair = pair().await;
    let on_standby = spawn_app_on(settings_for(pair.replica_app.clone())).await;
    let on_primary = spawn_app_on(settings_for(pair.primary_app.clone())).await;
    let is_standby: bool = connect(&pair.replica_app)
        .await
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .unwrap()
        .get(0);
    assert!(is_standby, "the server's database is a hot standby");

    let mut checked = 0;
    for caller in [SEATTLE, HEAD_OFFICE] {
        let standby = as_caller(&on_standby, caller).await;
        let primary = as_caller(&on_primary, caller).await;
        let tools = standby.list_all_tools().await.unwrap();
        assert_eq!(tools.len(), sqlmcp::tools::definitions().len());
        for tool in tools {
            let name = tool.name.to_string();
            let arguments = arguments(&name);
            let here = answer(&name, &call(&standby, &name, arguments.clone()).await);
            if name == "get_current_utc_date" {
                continue;
            }
            let there = answer(&name, &call(&primary, &name, arguments).await);
            assert_eq!(
                here, there,
                "{name} as {caller}: the standby answers as the primary"
            );
            checked += 1;
        }
    }
    // every tool but the date, for both callers
    assert_eq!(checked, 2 * (sqlmcp::tools::definitions().len() - 1));

    let seattle = stores_seen(&on_standby, SEATTLE).await;
    assert_eq!(seattle, [i64::from(SEATTLE_STORE_ID)]);
    let every: Vec<i64> = connect(&pair.primary_owner)
        .await
        .query(
            "SELECT DISTINCT store_id::bigint FROM retail.orders ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert!(every.len() > 1);
    assert_eq!(stores_seen(&on_standby, HEAD_OFFICE).await, every);

    let ready = reqwest::get(format!("http://{}/readyz", on_standby.address()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 200, "a standby server is ready");
    on_standby.stop().await.unwrap();
    on_primary.stop().await.unwrap();
}

#[tokio::test]
async fn the_audit_log_refuses_a_standby() {
    let pair = pair().await;
    let scratch = std::env::temp_dir().join(format!("sqlmcp-replica-audit-{}", std::process::id()));
    // the audit role's URL, on the standby's port
    let audit_on_standby = pair
        .cluster
        .url("audit")
        .replace(
            &format!(":{}/", port_of(&pair.primary_app)),
            &format!(":{}/", port_of(&pair.replica_app)),
        )
        .parse::<Config>()
        .unwrap();
    let mut settings = settings_for(pair.replica_app.clone());
    settings.audit = sqlmcp::audit::Settings {
        table: Some(sqlmcp::audit::TableSettings {
            database: audit_on_standby,
            spool_dir: scratch.join("spool"),
            spool_max_bytes: 1 << 20,
        }),
        log: None,
        batch_size: 10,
        flush_every: Duration::from_millis(100),
        fail_closed: Default::default(),
    };
    let refused = sqlmcp::server::Application::build(settings)
        .await
        .err()
        .expect("the server refuses an audit log on a standby");
    let message = format!("{refused:#}");
    assert!(
        message.contains("hot standby") && message.contains("--audit-database-url"),
        "{message}"
    );
    let _ = std::fs::remove_dir_all(scratch);
}

/// The calls `sqlmcp_database_calls_total` counted for the database on `port`.
async fn calls_on(app: &TestApp, port: u16) -> u64 {
    let body = reqwest::get(format!("http://{}/metrics", app.address()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let needle = format!(":{port}/");
    body.lines()
        .filter(|line| line.starts_with("sqlmcp_database_calls_total{") && line.contains(&needle))
        .map(|line| line.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

fn port_of(config: &Config) -> u16 {
    *config.get_ports().first().unwrap()
}

/// The orders Seattle counts, through raw SQL.
async fn seattle_orders(app: &TestApp) -> i64 {
    let client = as_caller(app, SEATTLE).await;
    let result = call(
        &client,
        "execute_sales_query",
        json!({"postgresql_query": "SELECT count(*) FROM retail.orders"}),
    )
    .await;
    answer("execute_sales_query", &result)["r"][0][0]
        .as_i64()
        .unwrap()
}

/// Calls Seattle's order count until `done` holds for (count, calls on the
/// primary, calls on the replica) since the first; at most `within`.
async fn until(
    app: &TestApp,
    pair: &Pair,
    within: Duration,
    what: &str,
    done: impl Fn(i64, u64, u64) -> bool,
) -> i64 {
    let (primary, replica) = (port_of(&pair.primary_app), port_of(&pair.replica_app));
    let started = Instant::now();
    loop {
        let (on_primary, on_replica) = (calls_on(app, primary).await, calls_on(app, replica).await);
        let count = seattle_orders(app).await;
        let on_primary = calls_on(app, primary).await - on_primary;
        let on_replica = calls_on(app, replica).await - on_replica;
        if done(count, on_primary, on_replica) {
            return count;
        }
        assert!(
            started.elapsed() < within,
            "{what}: not within {within:?} (last call: {count} orders, {on_primary} on the primary, {on_replica} on the replica)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn calls_go_to_the_replica_and_to_the_primary_while_it_lags() {
    let pair = pair().await;
    let max_lag = Duration::from_secs(1);
    let app = pair.server_with_replica(max_lag).await;
    let (primary, replica) = (port_of(&pair.primary_app), port_of(&pair.replica_app));

    // the monitor's first probe: then every call lands on the replica
    let before = until(
        &app,
        &pair,
        Duration::from_secs(10),
        "calls reach the replica",
        |_, p, r| p == 0 && r == 1,
    )
    .await;
    let (p0, r0) = (calls_on(&app, primary).await, calls_on(&app, replica).await);
    for _ in 0..10 {
        assert_eq!(seattle_orders(&app).await, before);
    }
    assert_eq!(
        calls_on(&app, primary).await,
        p0,
        "no call went to the primary"
    );
    assert_eq!(
        calls_on(&app, replica).await,
        r0 + 10,
        "every call went to the replica"
    );

    // the standby stops replaying, the primary takes a new order for Seattle
    connect(&pair.replica_owner)
        .await
        .batch_execute("SELECT pg_wal_replay_pause()")
        .await
        .unwrap();
    connect(&pair.primary_owner)
        .await
        .batch_execute(&format!(
            "INSERT INTO retail.orders (customer_id, store_id, order_date) \
             SELECT customer_id, {SEATTLE_STORE_ID}, current_date FROM retail.customers \
             WHERE primary_store_id = {SEATTLE_STORE_ID} ORDER BY customer_id LIMIT 1"
        ))
        .await
        .unwrap();
    let paused_at = Instant::now();
    // still within the bound: the replica answers, without the new order
    assert_eq!(seattle_orders(&app).await, before);
    // past it (measured: the primary's new WAL is not replayed): the primary
    // answers, with the new order
    let after = until(
        &app,
        &pair,
        Duration::from_secs(10),
        "calls move to the primary",
        |count, p, r| count == before + 1 && p == 1 && r == 0,
    )
    .await;
    assert!(
        paused_at.elapsed() >= max_lag,
        "moved only once the lag passed the bound: {:?}",
        paused_at.elapsed()
    );
    assert_eq!(after, before + 1);
    let metrics = reqwest::get(format!("http://{}/metrics", app.address()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lag: f64 = metrics
        .lines()
        .find(|line| {
            line.starts_with("sqlmcp_replica_lag_seconds{")
                && line.contains(&format!(":{replica}/"))
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
        .expect("a lag gauge for the replica");
    assert!(lag >= max_lag.as_secs_f64(), "lag gauge {lag}");

    // replay resumes: back to the replica, which now has the order too
    connect(&pair.replica_owner)
        .await
        .batch_execute("SELECT pg_wal_replay_resume()")
        .await
        .unwrap();
    until(
        &app,
        &pair,
        Duration::from_secs(10),
        "calls return to the replica",
        |count, p, r| count == before + 1 && p == 0 && r == 1,
    )
    .await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn killing_the_replica_mid_load_loses_no_call() {
    let pair = pair().await;
    let app = Arc::new(pair.server_with_replica(Duration::from_secs(5)).await);
    let replica = port_of(&pair.replica_app);
    until(
        &app,
        &pair,
        Duration::from_secs(10),
        "calls reach the replica",
        |_, p, r| p == 0 && r == 1,
    )
    .await;
    let expected = seattle_orders(&app).await;

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut callers = Vec::new();
    for _ in 0..8 {
        let (app, stop) = (app.clone(), stop.clone());
        callers.push(tokio::spawn(async move {
            let client = as_caller(&app, SEATTLE).await;
            let mut outcomes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let result = call(
                    &client,
                    "execute_sales_query",
                    json!({"postgresql_query": "SELECT count(*) FROM retail.orders"}),
                )
                .await;
                outcomes.push(if result.is_error == Some(true) {
                    Err(text(&result))
                } else {
                    Ok(result.structured_content.unwrap()["r"][0][0]
                        .as_i64()
                        .unwrap())
                });
            }
            outcomes
        }));
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    let on_replica = calls_on(&app, replica).await;
    // immediate shutdown: every backend gone at once, nothing said to clients
    // (the pair stays held until the test ends: the others wait for it)
    let _pair = tokio::task::spawn_blocking(move || {
        pair.cluster.stop_replica("immediate");
        pair
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut answered = 0;
    for caller in callers {
        for outcome in caller.await.unwrap() {
            assert_eq!(
                outcome,
                Ok(expected),
                "a call was lost when the replica died"
            );
            answered += 1;
        }
    }
    eprintln!(
        "replica killed under 8 callers: {answered} calls answered, none lost ({on_replica} on the replica before)"
    );
    assert!(on_replica > 0, "the load ran on the replica before it died");
    assert!(answered > 16, "the load kept going: {answered} calls");
    Arc::try_unwrap(app).ok().unwrap().stop().await.unwrap();
}
