//! The audit log: every tool call leaves exactly one entry, through an
//! outage of the audit table during a burst (spooled, replayed, never
//! doubled) and through a shutdown; the table is out of callers' reach and
//! its writer may only append; when not even the spool can take an entry,
//! raw SQL is refused before it runs while curated tools run on.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use sqlmcp::audit;
use sqlmcp::auth::ClaimNames;
use sqlmcp::server::Application;

use crate::helpers::process::ServeProcess;
use crate::helpers::server::{
    JWT_ISSUER, JWT_SECRET, as_caller, call, claims, client, settings, spawn_app_with,
    spawn_jwt_app_with, text, token,
};
use crate::helpers::{HEAD_OFFICE, SEATTLE, TestDb, connect, sqlstate, url_of};

/// A directory of one test's own, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("sqlmcp-audit-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The entries waiting in the spool under `spool`.
    fn spooled(&self, spool: &str) -> usize {
        let Ok(files) = std::fs::read_dir(self.path(spool)) else {
            return 0;
        };
        files
            .map(|file| std::fs::read_to_string(file.unwrap().path()).unwrap_or_default())
            .map(|text| text.lines().count())
            .sum()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `db`'s audit table in small, quick batches, spooling under
/// `scratch`/spool.
fn audited(db: &TestDb, scratch: &Scratch) -> audit::Settings {
    audit::Settings {
        table: Some(audit::TableSettings {
            database: db.audit_config(),
            spool_dir: scratch.path("spool"),
            spool_max_bytes: 64 << 20,
        }),
        batch_size: 16,
        flush_every: Duration::from_millis(20),
        ..Default::default()
    }
}

/// An outage of the audit table for this test's database alone: the audit
/// role may no longer connect to it and its sessions there end. The rest
/// of the cluster, which other tests share, is untouched.
async fn cut_off_audit(db: &TestDb) {
    db.owner()
        .await
        .batch_execute(&format!(
            "GRANT CONNECT ON DATABASE {0} TO store_manager; \
             REVOKE CONNECT ON DATABASE {0} FROM PUBLIC; \
             SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
              WHERE datname = '{0}' AND usename = 'sqlmcp_audit'",
            db.name
        ))
        .await
        .unwrap();
}

async fn restore_audit(db: &TestDb) {
    db.owner()
        .await
        .batch_execute(&format!("GRANT CONNECT ON DATABASE {} TO PUBLIC", db.name))
        .await
        .unwrap();
}

/// One number from the audit table, as the owner reads it.
async fn count(db: &TestDb, sql: &str) -> i64 {
    db.owner().await.query_one(sql, &[]).await.unwrap().get(0)
}

/// Polls `check` every 50 ms for up to 30 s.
async fn wait_until<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The `n`th call of a burst, with arguments no other call has: raw SQL
/// that runs, a curated tool, or raw SQL the policy refuses.
fn burst_call(n: usize) -> (&'static str, Value) {
    match n % 3 {
        0 => (
            "execute_sales_query",
            json!({"postgresql_query": format!("SELECT {n} AS call_number, count(*) AS orders FROM retail.orders")}),
        ),
        1 => ("low_stock", json!({"threshold": n + 1, "limit": 1})),
        _ => (
            "execute_sales_query",
            json!({"postgresql_query": format!("DELETE FROM retail.orders WHERE order_id = {n}")}),
        ),
    }
}

const WORKERS: usize = 4;
const BURST: usize = 180;

/// Four clients (two callers) make the burst's calls, counting them in `done`.
async fn run_burst(app: &crate::helpers::server::TestApp, done: Arc<AtomicUsize>) {
    let mut workers = Vec::new();
    for worker in 0..WORKERS {
        let caller = [SEATTLE, HEAD_OFFICE][worker % 2];
        let client = as_caller(app, caller).await;
        let done = done.clone();
        workers.push(tokio::spawn(async move {
            for n in (worker..BURST).step_by(WORKERS) {
                let (tool, arguments) = burst_call(n);
                let result = call(&client, tool, arguments).await;
                assert_eq!(result.is_error, Some(n % 3 == 2), "{n}: {}", text(&result));
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for worker in workers {
        worker.await.unwrap();
    }
}

#[tokio::test]
async fn every_call_has_exactly_one_entry_through_an_outage_of_the_audit_table() {
    let db = Arc::new(TestDb::seeded().await);
    let scratch = Scratch::new();
    let app = spawn_app_with(db.clone(), |s| s.audit = audited(&db, &scratch)).await;
    let done = Arc::new(AtomicUsize::new(0));
    let burst = run_burst(&app, done.clone());
    let outage = async {
        wait_until("a third of the burst is done", || async {
            done.load(Ordering::SeqCst) >= BURST / 3
        })
        .await;
        cut_off_audit(&db).await;
        wait_until("entries wait in the spool", || async {
            scratch.spooled("spool") > 0
        })
        .await;
        wait_until("two thirds of the burst are done", || async {
            done.load(Ordering::SeqCst) >= 2 * BURST / 3
        })
        .await;
        let spooled = scratch.spooled("spool");
        restore_audit(&db).await;
        spooled
    };
    let ((), spooled) = tokio::join!(burst, outage);
    // and a call that names no caller, refused and recorded
    let anonymous = client(&app.url, &[], rmcp::model::ProtocolVersion::V_2025_11_25).await;
    assert_eq!(
        call(&anonymous, "low_stock", json!({})).await.is_error,
        Some(true)
    );
    let total = BURST as i64 + 1;
    wait_until("every entry is in the table", || async {
        count(&db, "SELECT count(*) FROM sqlmcp_audit.calls").await >= total
    })
    .await;
    wait_until("the spool is empty", || async {
        scratch.spooled("spool") == 0
    })
    .await;
    eprintln!("{spooled} entries went through the spool during the outage");
    assert!(spooled > 0);
    assert_one_entry_per_call(&db, total).await;
    app.stop().await.unwrap();
}

/// Each call of the burst is in the table exactly once, with its fields.
async fn assert_one_entry_per_call(db: &TestDb, total: i64) {
    let checks = [
        ("rows", "SELECT count(*) FROM sqlmcp_audit.calls", total),
        (
            "distinct request ids",
            "SELECT count(DISTINCT request_id) FROM sqlmcp_audit.calls",
            total,
        ),
        (
            "calls whose arguments appear more than once",
            "SELECT count(*) FROM (SELECT tool, arguments FROM sqlmcp_audit.calls \
             GROUP BY 1, 2 HAVING count(*) > 1) AS twice",
            0,
        ),
        (
            "raw SQL that ran",
            "SELECT count(*) FROM sqlmcp_audit.calls WHERE tool = 'execute_sales_query' \
             AND outcome = 'ok' AND row_count = 1 AND error_class IS NULL \
             AND arguments->>'postgresql_query' LIKE 'SELECT % AS call_number, count(*) AS orders FROM retail.orders'",
            BURST as i64 / 3,
        ),
        (
            "raw SQL the policy refused",
            "SELECT count(*) FROM sqlmcp_audit.calls WHERE tool = 'execute_sales_query' \
             AND outcome = 'error' AND error_class = 'invalid_arguments' AND row_count IS NULL \
             AND arguments->>'postgresql_query' LIKE 'DELETE FROM retail.orders WHERE order_id = %'",
            BURST as i64 / 3,
        ),
        (
            "curated calls",
            "SELECT count(*) FROM sqlmcp_audit.calls WHERE tool = 'low_stock' AND outcome = 'ok' \
             AND arguments->>'limit' = '1' AND NOT cached",
            BURST as i64 / 3,
        ),
        (
            "calls as each caller, by header",
            "SELECT count(*) FROM sqlmcp_audit.calls WHERE auth_method = 'header' \
             AND subject = caller_id::text AND issuer IS NULL \
             AND caller_id IN ('f47ac10b-58cc-4372-a567-0e02b2c3d479', '00000000-0000-0000-0000-000000000000')",
            BURST as i64,
        ),
        (
            "calls that ran, with the stores the database let them see (head office: all)",
            "SELECT count(*) FROM sqlmcp_audit.calls WHERE outcome = 'ok' \
             AND CASE caller_id WHEN 'f47ac10b-58cc-4372-a567-0e02b2c3d479' THEN stores = '{1}' \
                                ELSE stores IS NULL END",
            2 * BURST as i64 / 3,
        ),
        (
            "the refused call that named no caller",
            "SELECT count(*) FROM sqlmcp_audit.calls WHERE caller_id IS NULL AND auth_method IS NULL \
             AND outcome = 'refused' AND error_class = 'no_identity' AND tool = 'low_stock'",
            1,
        ),
        (
            "entries with a size, a duration and a time",
            "SELECT count(*) FROM sqlmcp_audit.calls WHERE bytes > 0 AND duration_ms > 0 \
             AND at <= recorded_at AND at > now() - interval '10 minutes'",
            total,
        ),
    ];
    for (what, sql, expected) in checks {
        assert_eq!(count(db, sql).await, expected, "{what}: {sql}");
    }
}

#[tokio::test]
async fn entries_queued_at_shutdown_reach_the_table_or_the_spool_and_a_restart_replays_them() {
    let db = Arc::new(TestDb::seeded().await);
    let scratch = Scratch::new();
    // batches that never fill up nor fall due: only the shutdown writes them
    let slow = |s: &mut sqlmcp::server::Settings| {
        s.audit = audit::Settings {
            batch_size: 1_000,
            flush_every: Duration::from_secs(3_600),
            ..audited(&db, &scratch)
        }
    };
    let calls = |app| async move {
        let seattle = as_caller(&app, SEATTLE).await;
        for limit in 1..=5 {
            call(&seattle, "top_products", json!({"limit": limit})).await;
        }
        app
    };
    let app = calls(spawn_app_with(db.clone(), &slow).await).await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM sqlmcp_audit.calls").await,
        0
    );
    app.stop().await.unwrap();
    assert_eq!(
        count(&db, "SELECT count(*) FROM sqlmcp_audit.calls").await,
        5
    );

    let app = calls(spawn_app_with(db.clone(), &slow).await).await;
    cut_off_audit(&db).await;
    app.stop().await.unwrap();
    assert_eq!(scratch.spooled("spool"), 5);
    assert_eq!(
        count(&db, "SELECT count(*) FROM sqlmcp_audit.calls").await,
        5
    );

    restore_audit(&db).await;
    let app = spawn_app_with(db.clone(), |s| s.audit = audited(&db, &scratch)).await;
    wait_until("the spool is replayed and emptied", || async {
        scratch.spooled("spool") == 0
    })
    .await;
    assert_eq!(
        count(&db, "SELECT count(*) FROM sqlmcp_audit.calls").await,
        10
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(DISTINCT arguments) FROM sqlmcp_audit.calls"
        )
        .await,
        5
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_audit_table_is_out_of_callers_reach_and_its_writer_may_only_append() {
    let db = Arc::new(TestDb::seeded().await);
    let scratch = Scratch::new();
    let app = spawn_app_with(db.clone(), |s| s.audit = audited(&db, &scratch)).await;
    let seattle = as_caller(&app, SEATTLE).await;
    for query in [
        "SELECT * FROM sqlmcp_audit.calls",
        "SELECT count(*) FROM sqlmcp_audit.calls",
    ] {
        let result = call(
            &seattle,
            "execute_sales_query",
            json!({"postgresql_query": query}),
        )
        .await;
        assert_eq!(result.is_error, Some(true), "{query}: {}", text(&result));
    }

    let app_role = db.app().await;
    let audit_role = connect(&db.audit_config()).await;
    let entry = "INSERT INTO sqlmcp_audit.calls (id, at, request_id, tool, arguments, outcome, \
                 duration_ms, cached) VALUES (gen_random_uuid(), now(), 'forged', 'low_stock', '{}', \
                 'ok', 1, false)";
    let refused = [
        (&app_role, "SELECT count(*) FROM sqlmcp_audit.calls"),
        (&app_role, entry),
        (&app_role, "SET ROLE sqlmcp_audit"),
        (&audit_role, "SELECT count(*) FROM sqlmcp_audit.calls"),
        (&audit_role, "UPDATE sqlmcp_audit.calls SET outcome = 'ok'"),
        (&audit_role, "DELETE FROM sqlmcp_audit.calls"),
        (&audit_role, "TRUNCATE sqlmcp_audit.calls"),
    ];
    for (role, sql) in refused {
        let err = role.batch_execute(sql).await.expect_err(sql);
        assert_eq!(sqlstate(&err), "42501", "{sql}: {err}");
    }
    audit_role.batch_execute(entry).await.unwrap();
    app.stop().await.unwrap();
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM sqlmcp_audit.calls WHERE tool = 'execute_sales_query'"
        )
        .await,
        2
    );

    // the server writes only as an insert-only role
    for (role, config, expected) in [
        (
            "owner",
            db.owner_config(),
            "may read or change sqlmcp_audit.calls",
        ),
        (
            "application role",
            db.app_config(),
            "cannot insert into sqlmcp_audit.calls",
        ),
    ] {
        let mut refused = settings(&db);
        refused.audit = audited(&db, &scratch);
        refused.audit.table.as_mut().unwrap().database = config;
        let Err(err) = Application::build(refused).await else {
            panic!("audits as the {role}")
        };
        assert!(format!("{err:#}").contains(expected), "{role}: {err:#}");
    }
}

#[tokio::test]
async fn jwt_callers_are_recorded_by_issuer_subject_and_stores_and_their_token_is_never_logged() {
    let db = Arc::new(TestDb::seeded().await);
    let scratch = Scratch::new();
    let app = spawn_jwt_app_with(db.clone(), ClaimNames::default(), |s| {
        s.audit = audit::Settings {
            log: Some(audit::LogTarget::File(scratch.path("audit.jsonl"))),
            ..audited(&db, &scratch)
        };
    })
    .await;
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let signed = |claims| token(claims, jsonwebtoken::Algorithm::HS256, &key);
    // a store manager by id, and a token that lists two stores
    let mut two_stores = claims("auditor-7", "sqlmcp", JWT_ISSUER, 300);
    two_stores["stores"] = json!([1, 6]);
    let tokens = [
        signed(claims(SEATTLE, "sqlmcp", JWT_ISSUER, 300)),
        signed(two_stores),
    ];
    let sql = "SELECT store_name FROM retail.stores WHERE store_id = 1";
    for (n, jwt) in tokens.iter().enumerate() {
        let (bearer, trace) = (format!("Bearer {jwt}"), format!("trace-{n}"));
        let headers = [
            ("authorization", bearer.as_str()),
            ("x-request-id", trace.as_str()),
        ];
        let client = client(
            &app.url,
            &headers,
            rmcp::model::ProtocolVersion::V_2025_11_25,
        )
        .await;
        let result = call(
            &client,
            "execute_sales_query",
            json!({"postgresql_query": sql}),
        )
        .await;
        assert_eq!(result.is_error, Some(false), "{}", text(&result));
    }
    app.stop().await.unwrap();

    let rows = db
        .owner()
        .await
        .query(
            "SELECT request_id, auth_method, issuer, subject, caller_id::text, stores, arguments \
             FROM sqlmcp_audit.calls ORDER BY request_id",
            &[],
        )
        .await
        .unwrap();
    let entry = |n: usize| -> (
        String,
        String,
        String,
        String,
        Option<String>,
        Vec<i32>,
        Value,
    ) {
        let row = &rows[n];
        (
            row.get(0),
            row.get(1),
            row.get(2),
            row.get(3),
            row.get(4),
            row.get(5),
            row.get(6),
        )
    };
    let arguments = json!({"postgresql_query": sql});
    let by_id = (
        "trace-0",
        "jwt",
        JWT_ISSUER,
        SEATTLE,
        Some(SEATTLE),
        vec![1],
        &arguments,
    );
    let listed = (
        "trace-1",
        "jwt",
        JWT_ISSUER,
        "auditor-7",
        None,
        vec![1, 6],
        &arguments,
    );
    for (n, expected) in [by_id, listed].into_iter().enumerate() {
        let (request, method, issuer, subject, caller, stores, args) = entry(n);
        assert_eq!(
            (
                request.as_str(),
                method.as_str(),
                issuer.as_str(),
                subject.as_str()
            ),
            (expected.0, expected.1, expected.2, expected.3)
        );
        assert_eq!(
            (caller.as_deref(), stores, &args),
            (expected.4, expected.5, expected.6)
        );
    }
    assert_no_token_nor_answer_logged(&db, &scratch, &tokens).await;
}

/// Neither the table nor the JSON lines hold any part of a token, nor of
/// an answer (Seattle's store name).
async fn assert_no_token_nor_answer_logged(db: &TestDb, scratch: &Scratch, tokens: &[String]) {
    let table: Vec<String> = db
        .owner()
        .await
        .query("SELECT row_to_json(c)::text FROM sqlmcp_audit.calls c", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let lines = std::fs::read_to_string(scratch.path("audit.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), tokens.len());
    for line in lines.lines() {
        assert_eq!(serde_json::from_str::<Value>(line).unwrap()["log"], "audit");
    }
    for logged in table.iter().chain([&lines]) {
        for jwt in tokens {
            let signature = jwt.rsplit('.').next().unwrap();
            assert!(!logged.contains(signature), "{logged}");
        }
        assert!(!logged.contains("Bearer"), "{logged}");
        assert!(!logged.contains("Zava Retail Seattle"), "{logged}");
    }
}

#[tokio::test]
async fn when_not_even_the_spool_can_take_entries_raw_sql_is_refused_and_curated_tools_run_on() {
    let db = TestDb::seeded().await;
    let scratch = Scratch::new();
    let (log, spool) = (scratch.path("audit.jsonl"), scratch.path("spool"));
    let server = ServeProcess::sqlmcp(&[
        "--database-url",
        &url_of(&db.app_config()),
        "--audit-database-url",
        &url_of(&db.audit_config()),
        "--audit-spool-dir",
        spool.to_str().unwrap(),
        // not one entry fits
        "--audit-spool-max-bytes",
        "1",
        "--audit-log",
        log.to_str().unwrap(),
        "--audit-flush-ms",
        "20",
        "--embedding-provider",
        "none",
    ])
    .await;
    let app = ServerUnderTest {
        url: server.url(),
        metrics: format!("http://{}/metrics", server.address),
    };
    let seattle = client(
        &app.url,
        &[("x-rls-user-id", SEATTLE)],
        rmcp::model::ProtocolVersion::V_2025_11_25,
    )
    .await;
    let raw = json!({"postgresql_query": "SELECT count(*) AS orders FROM retail.orders"});
    let curated = json!({"limit": 1});
    assert_eq!(
        call(&seattle, "execute_sales_query", raw.clone())
            .await
            .is_error,
        Some(false)
    );

    cut_off_audit(&db).await;
    assert_eq!(
        call(&seattle, "top_products", curated.clone())
            .await
            .is_error,
        Some(false)
    );
    wait_until("an entry is dropped", || async {
        app.metric(r#"sqlmcp_audit_entries_total{outcome="dropped"}"#)
            .await
            >= 1.0
    })
    .await;
    let refused = call(&seattle, "execute_sales_query", raw.clone()).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(
        text(&refused).contains("cannot be audited right now"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        call(&seattle, "top_products", curated.clone())
            .await
            .is_error,
        Some(false)
    );
    assert_eq!(app.metric("sqlmcp_audit_refused_calls_total").await, 1.0);
    assert_eq!(app.metric("sqlmcp_audit_table_up").await, 0.0);

    restore_audit(&db).await;
    let mut calls = 4;
    wait_until("raw SQL runs again", || {
        calls += 1;
        let (seattle, raw) = (&seattle, raw.clone());
        async move { call(seattle, "execute_sales_query", raw).await.is_error == Some(false) }
    })
    .await;
    assert_eq!(app.metric("sqlmcp_audit_table_up").await, 1.0);
    assert_eq!(
        app.metric(r#"sqlmcp_audit_entries_total{outcome="spooled"}"#)
            .await,
        0.0
    );
    let refusals = app.metric("sqlmcp_audit_refused_calls_total").await as usize;

    // the JSON lines hold every call, those the table never got included
    let read = || async {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect::<Vec<Value>>()
    };
    wait_until("every call is a JSON line", || async {
        read().await.len() == calls
    })
    .await;
    drop(server);
    let lines = read().await;
    let refused: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "refused").collect();
    assert_eq!(refused.len(), refusals);
    assert!(
        refused
            .iter()
            .all(|line| line["error_class"] == "audit_unavailable"
                && line["tool"] == "execute_sales_query")
    );
    let in_table = count(&db, "SELECT count(*) FROM sqlmcp_audit.calls").await;
    assert!(
        (2..calls as i64).contains(&in_table),
        "{in_table} of {calls}"
    );
}

/// A `sqlmcp serve` process's addresses.
struct ServerUnderTest {
    url: String,
    metrics: String,
}

impl ServerUnderTest {
    /// The value of the sample named `name` (with its labels), 0 if absent.
    async fn metric(&self, name: &str) -> f64 {
        let text = reqwest::get(&self.metrics)
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }
}
