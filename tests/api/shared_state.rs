//! Several instances sharing one Redis (`--redis-url`), each a real server
//! with a real `redis-server`: one bucket per caller across instances; one
//! result cache whose answers another instance serves, never to a caller
//! with another grant; calls that go on, each instance on its own limits and
//! cache, while Redis is frozen or gone, and sharing again when it is back;
//! and a server that starts and serves, warning, with no Redis at all.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::ProtocolVersion;
use serde_json::{Value, json};
use sqlmcp::server::{result_cache, shared};

use crate::helpers::process::ServeProcess;
use crate::helpers::redis_server::RedisServer;
use crate::helpers::server::{TestApp, call, client, spawn_app_with, text};
use crate::helpers::{HEAD_OFFICE, ONLINE, REDMOND, SEATTLE, TableLock, TestDb, url_of};
use crate::rate_limits::{Mcp, limits, poll};

/// A cheap tool that every caller may call and the cache does not keep.
const CLOCK: &str = "get_current_utc_date";

/// An instance on `db` that shares through `redis_url`, limited by
/// `rate_flags`, with a result cache of `ttl`.
async fn instance(db: Arc<TestDb>, redis_url: &str, rate_flags: &[&str], ttl: Duration) -> TestApp {
    let redis = shared::Settings::parse(redis_url).unwrap();
    let rate_limits = limits(rate_flags);
    spawn_app_with(db, move |s| {
        s.redis = Some(redis);
        s.rate_limits = rate_limits;
        s.result_cache = Some(result_cache::Settings {
            ttl,
            max_bytes: 1 << 20,
        });
    })
    .await
}

/// Two instances on one database and one Redis.
async fn two_instances(
    redis: &RedisServer,
    rate_flags: &[&str],
    ttl: Duration,
) -> (Arc<TestDb>, TestApp, TestApp) {
    let db = Arc::new(TestDb::seeded().await);
    let a = instance(db.clone(), &redis.url(), rate_flags, ttl).await;
    let b = instance(db.clone(), &redis.url(), rate_flags, ttl).await;
    (db, a, b)
}

/// The keys the instances stored in `redis`.
async fn keys(redis: &RedisServer) -> Vec<String> {
    redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut redis.connection().await)
        .await
        .unwrap()
}

/// Leases of running calls held in `redis`, over every caller.
async fn running_leases(redis: &RedisServer) -> usize {
    let mut connection = redis.connection().await;
    let mut held = 0;
    for key in keys(redis)
        .await
        .iter()
        .filter(|key| key.ends_with(":leases"))
    {
        held += redis::cmd("ZCARD")
            .arg(key)
            .query_async::<usize>(&mut connection)
            .await
            .unwrap();
    }
    held
}

/// The value of the series `name{labels}` in an exposition, if any.
fn series(exposition: &str, name_and_labels: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// `sqlmcp_redis_up` for the Redis on `port`.
fn redis_up(exposition: &str, port: u16) -> Option<f64> {
    series(
        exposition,
        &format!(r#"sqlmcp_redis_up{{server="127.0.0.1:{port}"}}"#),
    )
}

/// All `sqlmcp_redis_errors_total` of the Redis on `port`, every op.
fn redis_errors(exposition: &str, port: u16) -> f64 {
    let prefix = format!(r#"sqlmcp_redis_errors_total{{server="127.0.0.1:{port}","#);
    exposition
        .lines()
        .filter(|line| line.starts_with(&prefix))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Calls [`CLOCK`] as `caller` on each of `instances` in turn, `times`
/// times: how many were let through (the rest were refused).
async fn admitted(instances: &[&Mcp], caller: &str, times: usize) -> usize {
    let mut admitted = 0;
    for i in 0..times {
        let answer = instances[i % instances.len()]
            .call(caller, i as u64, CLOCK, json!({}))
            .await;
        match answer.refusal() {
            None => admitted += 1,
            Some(refusal) => assert!(refusal.starts_with("rate limit: "), "{refusal}"),
        }
    }
    admitted
}

/// Calls spread over two instances spend one bucket per caller: a burst of
/// four is four calls in all, not four on each; another caller has a bucket
/// of their own; raw SQL spends both budgets or neither; and no key in Redis
/// names a caller.
#[tokio::test]
async fn instances_sharing_redis_share_each_callers_bucket() {
    let redis = RedisServer::start().await;
    // a token every 20 s: none comes back while the test runs
    let (_db, a, b) = two_instances(
        &redis,
        &["--rate-limit", "0.05:4", "--raw-sql-rate-limit", "0.05:1"],
        Duration::from_secs(5),
    )
    .await;
    let (a, b) = (Mcp::of(&a), Mcp::of(&b));
    assert_eq!(admitted(&[&a, &b], SEATTLE, 4).await, 4);
    for (id, instance) in [&a, &b].into_iter().enumerate() {
        let refused = instance
            .call(SEATTLE, 10 + id as u64, CLOCK, json!({}))
            .await;
        assert_eq!(refused.status, 429, "{}", refused.body);
        assert!(
            refused
                .refusal()
                .unwrap()
                .starts_with("rate limit: this server allows 0.05 calls/s per caller (burst 4)"),
            "{}",
            refused.body
        );
    }
    assert_eq!(
        admitted(&[&b, &a], REDMOND, 6).await,
        4,
        "another caller: a bucket of their own, shared too"
    );
    assert_raw_sql_spends_both_shared_budgets_or_neither(&a, &b).await;
    let keys = keys(&redis).await;
    assert!(
        keys.iter().any(|key| key.starts_with("sqlmcp:v1:limit:{")),
        "{keys:?}"
    );
    for key in &keys {
        assert!(
            !key.contains(SEATTLE) && !key.contains(REDMOND),
            "a caller in clear: {key}"
        );
    }
}

/// With `--max-concurrent-calls 1`, a caller's call running on one instance
/// keeps their next call on the other out until it ends; another caller is
/// not kept out.
#[tokio::test]
async fn a_call_running_on_one_instance_counts_against_the_cap_on_another() {
    let redis = RedisServer::start().await;
    let (db, a, b) = two_instances(
        &redis,
        &["--max-concurrent-calls", "1"],
        Duration::from_secs(5),
    )
    .await;
    let (a, b) = (Mcp::of(&a), Mcp::of(&b));
    // A call that reads products waits for the lock, holding a lease in
    // Redis. On a starved machine one Redis operation may miss its
    // deadline: that instance then admits the call on its own, as it must
    // while Redis is away, and the lease never reaches Redis. Such a try
    // proves nothing about sharing, and is made again.
    let mut tries = 0;
    let (lock, running) = loop {
        tries += 1;
        let lock = TableLock::take(&db, "retail.products").await;
        let calling = a.clone();
        let running = tokio::spawn(async move {
            calling
                .call(
                    SEATTLE,
                    1,
                    "product_details",
                    json!({"sku": "PWR-DRL-1001"}),
                )
                .await
        });
        let leased = poll(Duration::from_secs(5), async || {
            running_leases(&redis).await.gt(&0).then_some(())
        })
        .await;
        if leased.is_some() {
            break (lock, running);
        }
        lock.release().await;
        running.await.unwrap();
        let errors = redis_errors(&a.metrics().await, redis.port);
        assert!(
            errors > 0.0 && tries < 3,
            "try {tries}: the running call's lease never reached Redis ({errors} Redis errors on A)"
        );
        eprintln!("try {tries}: A missed Redis ({errors} errors) and admitted on its own; again");
    };
    let refused = poll(Duration::from_secs(10), async || {
        let answer = b.call(SEATTLE, 2, CLOCK, json!({})).await;
        answer.refusal().filter(|_| answer.status == 429)
    })
    .await
    .expect("the call running on A keeps Seattle's next call on B out");
    assert!(
        refused.starts_with("concurrency limit: this server allows 1 call at once per caller"),
        "{refused}"
    );
    let other = b.call(REDMOND, 3, CLOCK, json!({})).await;
    assert_eq!(other.refusal(), None, "{}", other.body);
    assert!(
        keys(&redis)
            .await
            .iter()
            .any(|key| key.ends_with(":all_tools:leases")),
        "the running call holds a lease"
    );
    lock.release().await;
    let ran = running.await.unwrap();
    assert_eq!(ran.refusal(), None, "{}", ran.body);
    let freed = poll(Duration::from_secs(10), async || {
        b.call(SEATTLE, 4, CLOCK, json!({}))
            .await
            .refusal()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(freed.is_some(), "the lease went when the call ended");
}

/// Under `--raw-sql-rate-limit 0.05:1` besides `--rate-limit 0.05:4`, a raw
/// SQL call on A spends a token of both budgets; a second on B is refused
/// by the raw SQL budget and spends nothing of the first: three calls of
/// any other tool are left, across both instances.
async fn assert_raw_sql_spends_both_shared_budgets_or_neither(a: &Mcp, b: &Mcp) {
    let sql = json!({"postgresql_query": "SELECT 1 AS one"});
    let ran = a.call(ONLINE, 1, "execute_sales_query", sql.clone()).await;
    assert_eq!(ran.refusal(), None, "{}", ran.body);
    let refused = b.call(ONLINE, 2, "execute_sales_query", sql).await;
    let refusal = refused.refusal().unwrap_or_default();
    assert!(
        refusal.starts_with("rate limit: raw SQL allows 0.05 calls/s per caller (burst 1)"),
        "{}",
        refused.body
    );
    assert_eq!(admitted(&[a, b], ONLINE, 5).await, 3);
}

/// `product_details` for the drill: its price and the units in stock in
/// the stores the caller may see.
fn drill(answer: &Value) -> (Value, Value) {
    let row = &answer["result"]["structuredContent"]["rows"][0];
    assert!(row.is_object(), "{answer}");
    (row["base_price"].clone(), row["units_in_stock"].clone())
}

/// The drill's units in stock in one store, as the owner counts them.
async fn units_in_store(db: &TestDb, store_id: i32) -> i64 {
    db.owner()
        .await
        .query_one(
            "SELECT coalesce(sum(i.stock_level), 0)::bigint FROM retail.inventory i \
             JOIN retail.products p USING (product_id) \
             WHERE p.sku = 'PWR-DRL-1001' AND i.store_id = $1",
            &[&store_id],
        )
        .await
        .unwrap()
        .get(0)
}

/// An answer one instance cached is served by another within the TTL, even
/// after the data changed; a caller with another grant gets their own rows
/// (row-level security holds across instances); the entry lives in Redis
/// for the TTL under a key that names neither caller nor arguments.
#[tokio::test]
async fn an_answer_cached_by_one_instance_is_served_by_another_only_to_the_same_grant() {
    let redis = RedisServer::start().await;
    let ttl = Duration::from_secs(20);
    let (db, a, b) = two_instances(&redis, &[], ttl).await;
    let (a, b) = (Mcp::of(&a), Mcp::of(&b));
    let arguments = json!({"sku": "PWR-DRL-1001", "limit": 5});
    let seattle_on_a = a
        .call(SEATTLE, 1, "product_details", arguments.clone())
        .await;
    let (old_price, seattle_units) = drill(&seattle_on_a.body);
    assert_eq!(seattle_units, json!(units_in_store(&db, 1).await));

    db.owner()
        .await
        .execute(
            "UPDATE retail.products SET base_price = base_price + 1 WHERE sku = 'PWR-DRL-1001'",
            &[],
        )
        .await
        .unwrap();

    // instance B never ran the query: the answer is A's, from before the update
    let seattle_on_b = b
        .call(
            SEATTLE,
            2,
            "product_details",
            json!({"limit": 5, "sku": "PWR-DRL-1001"}),
        )
        .await;
    assert_eq!(
        seattle_on_b.body["result"]["structuredContent"],
        seattle_on_a.body["result"]["structuredContent"],
        "B answers with what A cached"
    );
    // another grant on B: the data as it is now, and Redmond's stock
    let redmond_on_b = b
        .call(REDMOND, 3, "product_details", arguments.clone())
        .await;
    let (new_price, redmond_units) = drill(&redmond_on_b.body);
    assert_ne!(new_price, old_price, "Redmond did not get Seattle's answer");
    assert_eq!(redmond_units, json!(units_in_store(&db, 6).await));
    assert_ne!(
        redmond_units, seattle_units,
        "the two stores hold different stock of the drill, so the rows differ by grant"
    );
    let head_office_on_a = a.call(HEAD_OFFICE, 4, "product_details", arguments).await;
    assert_eq!(drill(&head_office_on_a.body).0, new_price);

    let mut connection = redis.connection().await;
    let answers: Vec<String> = keys(&redis)
        .await
        .into_iter()
        .filter(|key| key.starts_with("sqlmcp:v1:answer:"))
        .collect();
    assert_eq!(answers.len(), 3, "one per grant: {answers:?}");
    for key in &answers {
        assert!(!key.contains(SEATTLE) && !key.contains("PWR-DRL"), "{key}");
        let left: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(
            left > 0 && left <= ttl.as_millis() as i64,
            "kept for the TTL at most: {left} ms"
        );
    }
}

/// Redis frozen (it accepts but never answers): a call still takes well
/// under a second. Redis killed: calls go on, each instance enforcing its
/// own limits, and `/metrics` says Redis is down and counts the errors.
/// Redis started again on the same port: the instances share again.
#[tokio::test]
async fn calls_go_on_while_redis_is_down_and_share_again_when_it_is_back() {
    let mut redis = RedisServer::start().await;
    let port = redis.port;
    let (_db, a_app, b_app) =
        two_instances(&redis, &["--rate-limit", "0.05:3"], Duration::from_secs(30)).await;
    let (a, b) = (Mcp::of(&a_app), Mcp::of(&b_app));
    assert_eq!(admitted(&[&a], HEAD_OFFICE, 1).await, 1);
    assert_eq!(redis_up(&a.metrics().await, port), Some(1.0));
    let errors_before = redis_errors(&a.metrics().await, port);

    // the same call, uncached, while Redis answers: what it costs anyway
    let started = Instant::now();
    let baseline = a
        .call(ONLINE, 1, "product_details", json!({"sku": "PWR-SAW-1001"}))
        .await;
    let baseline_took = started.elapsed();
    assert!(baseline.refusal().is_none(), "{}", baseline.body);

    redis.freeze();
    let started = Instant::now();
    let answer = a
        .call(ONLINE, 1, "product_details", json!({"sku": "PWR-DRL-1001"}))
        .await;
    let elapsed = started.elapsed();
    assert!(answer.refusal().is_none(), "{}", answer.body);
    drill(&answer.body);
    assert!(
        elapsed < baseline_took + Duration::from_millis(300),
        "a Redis that does not answer cost the call {elapsed:?} (without it: {baseline_took:?})"
    );
    redis.thaw();
    redis.kill();

    // each instance on its own: a burst of three on each
    assert_eq!(admitted(&[&a], SEATTLE, 4).await, 3);
    assert_eq!(admitted(&[&b], SEATTLE, 4).await, 3);
    let again = a
        .call(ONLINE, 2, "product_details", json!({"sku": "PWR-DRL-1001"}))
        .await;
    assert_eq!(
        drill(&again.body),
        drill(&answer.body),
        "the local cache serves"
    );
    let metrics = a.metrics().await;
    assert_eq!(redis_up(&metrics, port), Some(0.0), "down");
    assert!(
        redis_errors(&metrics, port) > errors_before,
        "errors counted"
    );

    let _redis = RedisServer::start_on(port).await;
    let started = Instant::now();
    while redis_up(&a.metrics().await, port) != Some(1.0) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the instances did not notice Redis was back within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // both instances probe on their own: give the slower one two probes
    tokio::time::sleep(shared::PROBE_EVERY * 3).await;
    assert_eq!(
        admitted(&[&a, &b], REDMOND, 5).await,
        3,
        "one bucket again across the two"
    );
}

/// A Redis that is not there when the server starts: the server starts,
/// warns (without the URL's password), says so in `/metrics`, and serves
/// with its own cache and limits.
#[tokio::test]
async fn a_server_whose_redis_is_absent_starts_warns_and_serves() {
    let db = TestDb::seeded().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let redis_url = format!("redis://:hunter2@127.0.0.1:{closed}");
    let server = ServeProcess::sqlmcp(&[
        "--database-url",
        &url_of(&db.app_config()),
        "--embedding-provider",
        "none",
        "--redis-url",
        &redis_url,
        "--rate-limit",
        "0.05:2",
        "--result-cache-ttl-ms",
        "10000",
    ])
    .await;
    let warning = server
        .startup_logs
        .iter()
        .find(|line| line.contains("Redis is unreachable"))
        .unwrap_or_else(|| panic!("no warning: {:#?}", server.startup_logs));
    assert!(
        warning.contains(&format!("redis://:***@127.0.0.1:{closed}")),
        "{warning}"
    );
    assert!(
        server
            .startup_logs
            .iter()
            .all(|line| !line.contains("hunter2")),
        "the password reached the log"
    );

    let seattle = client(
        &server.url(),
        &[("x-rls-user-id", SEATTLE)],
        ProtocolVersion::V_2025_11_25,
    )
    .await;
    let arguments = json!({"sku": "PWR-DRL-1001"});
    let first = call(&seattle, "product_details", arguments.clone()).await;
    assert_eq!(first.is_error, Some(false), "{}", text(&first));
    let second = seattle
        .call_tool(
            rmcp::model::CallToolRequestParams::new("product_details")
                .with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await;
    assert!(second.is_ok(), "{second:?}");
    let third = seattle
        .call_tool(
            rmcp::model::CallToolRequestParams::new("product_details")
                .with_arguments(arguments.as_object().unwrap().clone()),
        )
        .await;
    assert!(third.is_err(), "its own limits hold: a burst of two");

    let metrics = reqwest::get(format!("http://{}/metrics", server.address))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(redis_up(&metrics, closed), Some(0.0), "{metrics}");
    assert!(!metrics.contains("hunter2"));
    server.kill().await;
}
