//! Several server instances behind a load balancer (HAProxy) and PgBouncer
//! in transaction pooling mode, called by real MCP clients as four
//! identities: every answer is the caller's own, calls spread over every
//! instance, and killing one instance mid-load loses only the calls that
//! were in flight on it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rmcp::model::ProtocolVersion;
use serde_json::json;

use crate::helpers::balancer::{Haproxy, PgBouncer};
use crate::helpers::process::ServeProcess;
use crate::helpers::server::{client, try_call};
use crate::helpers::{HEAD_OFFICE, ONLINE, REDMOND, SEATTLE, TestDb};

/// Each identity and the stores it must see.
fn identities() -> Vec<(&'static str, BTreeSet<i64>)> {
    vec![
        (SEATTLE, BTreeSet::from([1])),
        (REDMOND, BTreeSet::from([6])),
        (ONLINE, BTreeSet::from([8])),
        (HEAD_OFFICE, (1..=8).collect()),
    ]
}

/// One call: when it started and ended (since the load began), and why it
/// failed, if it did.
struct Outcome {
    started: Duration,
    ended: Duration,
    error: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn instances_behind_a_load_balancer_and_pgbouncer_lose_only_the_calls_in_flight_on_a_killed_one()
 {
    let db = TestDb::seeded().await;
    let bouncer = PgBouncer::start(&db, 4);
    let database = bouncer.app_url(&db);
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Some(
            ServeProcess::sqlmcp(&[
                "--database-url",
                &database,
                "--embedding-provider",
                "none",
                "--pool-size",
                "4",
                // PgBouncer 1.18 keeps no prepared statement across transactions
                "--statement-cache",
                "false",
            ])
            .await,
        ));
    }
    let backends: Vec<_> = instances.iter().flatten().map(|i| i.address).collect();
    let balancer = Haproxy::start(&backends);

    let began = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut callers = Vec::new();
    for (n, (caller, stores)) in identities().into_iter().cycle().take(12).enumerate() {
        let client = client(
            &balancer.url(),
            &[("x-rls-user-id", caller)],
            ProtocolVersion::V_2025_11_25,
        )
        .await;
        let stop = stop.clone();
        callers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            let mut i = n;
            while !stop.load(Ordering::Relaxed) {
                let (tool, arguments) = if i % 2 == 0 {
                    ("store_performance", json!({}))
                } else {
                    ("low_stock", json!({"limit": 500}))
                };
                i += 1;
                let started = began.elapsed();
                let error = match try_call(&client, tool, &arguments).await {
                    Err(error) => Some(format!("{error} (as {caller})")),
                    Ok(answer) => {
                        let seen: BTreeSet<i64> = answer["rows"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|row| row["store_id"].as_i64().unwrap())
                            .collect();
                        (seen != stores).then(|| {
                            format!("{tool} as {caller} saw stores {seen:?}, not {stores:?}")
                        })
                    }
                };
                outcomes.push(Outcome {
                    started,
                    ended: began.elapsed(),
                    error,
                });
            }
            outcomes
        }));
    }

    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill: Vec<f64> = futures_util::future::join_all(
        instances
            .iter()
            .flatten()
            .map(|instance| instance.metric_total("sqlmcp_tool_calls_total{")),
    )
    .await;
    let killed_at = began.elapsed();
    instances[1].take().unwrap().kill().await;
    let killed = began.elapsed();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut outcomes = Vec::new();
    for caller in callers {
        outcomes.extend(caller.await.unwrap());
    }

    // spread: every instance answered calls before the kill
    assert!(
        before_kill.iter().all(|served| *served > 0.0),
        "calls did not reach every instance: {before_kill:?}"
    );
    // the survivors went on answering
    let after: Vec<f64> = futures_util::future::join_all(
        instances
            .iter()
            .flatten()
            .map(|instance| instance.metric_total("sqlmcp_tool_calls_total{")),
    )
    .await;
    let after_kill = outcomes.iter().filter(|o| o.started > killed).count();
    assert!(after_kill >= 24, "only {after_kill} calls after the kill");
    // only calls in flight on the killed instance failed, and no answer
    // was anyone else's
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| o.error.is_some()).collect();
    for failure in &failed {
        assert!(
            failure.started <= killed && failure.ended >= killed_at,
            "a call that was not in flight at the kill ({:?}..{:?}, killed at {killed_at:?}..{killed:?}) failed: {}",
            failure.started,
            failure.ended,
            failure.error.as_deref().unwrap()
        );
    }
    assert!(
        failed.len() <= 12,
        "{} calls failed, more than were in flight",
        failed.len()
    );
    eprintln!(
        "scale-out: {} calls over 3 instances ({before_kill:?} before the kill, {after:?} at the end on the two left), \
         {} failed, all in flight at the kill: {:?}",
        outcomes.len(),
        failed.len(),
        failed
            .iter()
            .map(|f| f.error.as_deref().unwrap())
            .collect::<Vec<_>>()
    );
    drop(balancer);
    drop(bouncer);
}
