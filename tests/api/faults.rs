//! Database faults under load: a restart of PostgreSQL costs callers
//! latency, not errors; a database away for longer than a call's deadline
//! fails calls clearly and quickly, and the server recovers by itself.
//! Each test restarts a cluster of its own ([`PrivateCluster`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rmcp::model::ProtocolVersion;
use serde_json::{Value, json};

use crate::helpers::cluster::PrivateCluster;
use crate::helpers::process::ServeProcess;
use crate::helpers::server::{client, text, try_call};
use crate::helpers::{SEATTLE, SEATTLE_STORE_ID};

/// What one call gave: when it started (since the load began), how long it
/// took, and the error text if it failed.
#[derive(Debug, Clone)]
struct Outcome {
    started: Duration,
    took: Duration,
    error: Option<String>,
}

/// The two calls the load alternates: a curated tool and raw SQL, each
/// checked for Seattle's own answer.
fn load_call(i: usize) -> (&'static str, Value) {
    if i.is_multiple_of(2) {
        ("product_details", json!({"sku": "PWR-DRL-1001"}))
    } else {
        (
            "execute_sales_query",
            json!({"postgresql_query": "SELECT DISTINCT store_id FROM retail.orders"}),
        )
    }
}

/// `callers` clients, as Seattle, calling in a loop until `stop` is set.
async fn load(
    url: String,
    callers: usize,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Outcome>> {
    let began = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..callers {
        clients.push(
            client(
                &url,
                &[("x-rls-user-id", SEATTLE)],
                ProtocolVersion::V_2025_11_25,
            )
            .await,
        );
    }
    tokio::spawn(async move {
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|client| {
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut outcomes = Vec::new();
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let (tool, arguments) = load_call(i);
                        i += 1;
                        let started = began.elapsed();
                        let at = Instant::now();
                        let error = match try_call(&client, tool, &arguments).await {
                            Ok(answer) => seattle_only(tool, &answer),
                            Err(error) => Some(error),
                        };
                        outcomes.push(Outcome {
                            started,
                            took: at.elapsed(),
                            error,
                        });
                    }
                    outcomes
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.extend(task.await.unwrap());
        }
        outcomes
    })
}

/// An error if an answer shows anything but Seattle's rows.
fn seattle_only(tool: &str, answer: &Value) -> Option<String> {
    let right = match tool {
        "product_details" => answer["row_count"] == 1,
        // raw SQL's compact shape: column names, then rows as arrays
        _ => answer["r"] == json!([[SEATTLE_STORE_ID]]),
    };
    (!right).then(|| format!("{tool}: unexpected answer {answer}"))
}

fn failures(outcomes: &[Outcome]) -> Vec<&str> {
    outcomes.iter().filter_map(|o| o.error.as_deref()).collect()
}

/// The slowest call that started within `window` (since the load began).
fn slowest(outcomes: &[Outcome], window: std::ops::Range<Duration>) -> Duration {
    outcomes
        .iter()
        .filter(|o| window.contains(&o.started))
        .map(|o| o.took)
        .max()
        .unwrap_or_default()
}

fn median(outcomes: &[Outcome], window: std::ops::Range<Duration>) -> Duration {
    let mut took: Vec<Duration> = outcomes
        .iter()
        .filter(|o| window.contains(&o.started))
        .map(|o| o.took)
        .collect();
    took.sort();
    took.get(took.len() / 2).copied().unwrap_or_default()
}

async fn readyz(server: &ServeProcess) -> u16 {
    reqwest::get(format!("http://{}/readyz", server.address))
        .await
        .map(|response| response.status().as_u16())
        .unwrap_or(0)
}

async fn blocking(work: impl FnOnce() + Send + 'static) {
    tokio::task::spawn_blocking(work).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_of_postgresql_in_fast_or_immediate_mode_costs_callers_latency_not_errors() {
    let cluster = Arc::new(PrivateCluster::start("restart"));
    let server = ServeProcess::sqlmcp(&[
        "--database-url",
        &cluster.url("app"),
        "--embedding-provider",
        "none",
        "--pool-size",
        "8",
        "--statement-timeout-ms",
        "5000",
    ])
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(server.url(), 8, stop.clone()).await;
    let second = Duration::from_secs(1);
    let mut restarts = Vec::new();
    tokio::time::sleep(second).await;
    for mode in ["fast", "immediate"] {
        let at = Instant::now();
        let restarting = cluster.clone();
        blocking(move || restarting.restart(mode)).await;
        restarts.push((mode, at.elapsed()));
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let outcomes = running.await.unwrap();

    let failed = failures(&outcomes);
    assert!(
        failed.is_empty(),
        "{} of {} calls failed across the restarts, e.g. {:?}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)]
    );
    // the restarts really broke connections: calls were tried again
    let retries = server.metric_total("sqlmcp_call_retries_total").await;
    assert!(
        retries > 0.0,
        "no call was retried: the restarts broke nothing"
    );
    let before = Duration::ZERO..second;
    let across = second..Duration::from_secs(60);
    let after_restarts = outcomes
        .iter()
        .filter(|o| o.started > second + restarts[0].1)
        .count();
    assert!(
        after_restarts >= 16,
        "only {after_restarts} calls after the first restart"
    );
    eprintln!(
        "restart: {} calls, {} retries; restarts took {:?}; median {:?} before, slowest {:?} before and {:?} across the restarts",
        outcomes.len(),
        retries,
        restarts,
        median(&outcomes, before.clone()),
        slowest(&outcomes, before),
        slowest(&outcomes, across),
    );
    assert_eq!(readyz(&server).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_away_longer_than_the_deadline_fails_calls_clearly_and_the_server_recovers() {
    let cluster = Arc::new(PrivateCluster::start("outage"));
    // a deadline of 1.25 s: the statement timeout and a quarter second
    let server = ServeProcess::sqlmcp(&[
        "--database-url",
        &cluster.url("app"),
        "--embedding-provider",
        "none",
        "--statement-timeout-ms",
        "1000",
        "--sql-timeout-ms",
        "1000",
    ])
    .await;
    let seattle = client(
        &server.url(),
        &[("x-rls-user-id", SEATTLE)],
        ProtocolVersion::V_2025_11_25,
    )
    .await;
    let call = |i: usize| {
        let (tool, arguments) = load_call(i);
        seattle.call_tool(
            rmcp::model::CallToolRequestParams::new(tool)
                .with_arguments(arguments.as_object().unwrap().clone()),
        )
    };
    assert_eq!(readyz(&server).await, 200);
    assert_ne!(call(0).await.unwrap().is_error, Some(true));

    let stopping = cluster.clone();
    blocking(move || stopping.stop("fast")).await;
    for i in 0..4 {
        let at = Instant::now();
        let result = call(i).await.unwrap();
        let took = at.elapsed();
        assert_eq!(
            result.is_error,
            Some(true),
            "a call succeeded with the database stopped"
        );
        let message = text(&result);
        assert!(
            message.contains("the database is unavailable") && message.contains("tried"),
            "{message}"
        );
        // the deadline (1.25 s) and the way there and back, with room for
        // a loaded machine: no hang (opening a connection may take 10 s)
        assert!(
            took < Duration::from_secs(5),
            "a failing call took {took:?}: {message}"
        );
        if i == 0 {
            eprintln!("outage: a call failed after {took:?}: {message}");
        }
    }
    assert_eq!(
        readyz(&server).await,
        503,
        "/readyz while the database is stopped"
    );

    let starting = cluster.clone();
    blocking(move || starting.resume()).await;
    let back = Instant::now();
    for i in 0..4 {
        let result = call(i).await.unwrap();
        assert_ne!(
            result.is_error,
            Some(true),
            "after the database came back: {}",
            text(&result)
        );
        let answer = result.structured_content.unwrap();
        assert_eq!(seattle_only(load_call(i).0, &answer), None);
    }
    assert_eq!(
        readyz(&server).await,
        200,
        "/readyz after the database came back"
    );
    eprintln!(
        "outage: recovered, 4 calls answered {:?} after the database started",
        back.elapsed()
    );
}
