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

/// Three tokens: a store manager's by id, one that lists two stores, and
/// one that lists a region, whose stores the database resolves.
fn jwt_callers() -> [String; 3] {
    let key = jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes());
    let signed = |subject: &str, listing: Option<(&str, Value)>| {
        let mut claims = claims(subject, "sqlmcp", JWT_ISSUER, 300);
        if let Some((claim, value)) = listing {
            claims[claim] = value;
        }
        token(claims, jsonwebtoken::Algorithm::HS256, &key)
    };
    [
        signed(SEATTLE, None),
        signed("auditor-7", Some(("stores", json!([1, 6])))),
        signed("west-lead", Some(("regions", json!(["West"])))),
    ]
}

const STORE_ONE: &str = "SELECT store_name FROM retail.stores WHERE store_id = 1";

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
    let tokens = jwt_callers();
    for (n, jwt) in tokens.iter().enumerate() {
        let (bearer, trace) = (format!("Bearer {jwt}"), format!("trace-{n}"));
        let headers = [("authorization", &*bearer), ("x-request-id", &*trace)];
        let version = rmcp::model::ProtocolVersion::V_2025_11_25;
        let client = client(&app.url, &headers, version).await;
        let arguments = json!({"postgresql_query": STORE_ONE});
        let result = call(&client, "execute_sales_query", arguments).await;
        assert_eq!(result.is_error, Some(false), "{}", text(&result));
    }
    app.stop().await.unwrap();

    let owner = db.owner().await;
    let select = "SELECT json_build_object('request_id', request_id, 'auth_method', auth_method, \
                  'issuer', issuer, 'subject', subject, 'caller_id', caller_id, 'stores', stores, \
                  'arguments', arguments) FROM sqlmcp_audit.calls ORDER BY request_id";
    let entries: Vec<Value> = owner
        .query(select, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let west = "SELECT json_agg(store_id ORDER BY store_id) FROM retail.stores \
                JOIN retail.regions USING (region_id) WHERE region_name = 'West'";
    let west: Value = owner.query_one(west, &[]).await.unwrap().get(0);
    let expected = |n: usize, subject: &str, caller_id: Option<&str>, stores: Value| {
        json!({"request_id": format!("trace-{n}"), "auth_method": "jwt", "issuer": JWT_ISSUER,
               "subject": subject, "caller_id": caller_id, "stores": stores,
               "arguments": {"postgresql_query": STORE_ONE}})
    };
    assert_eq!(
        entries,
        [
            expected(0, SEATTLE, Some(SEATTLE), json!([1])),
            expected(1, "auditor-7", None, json!([1, 6])),
            expected(2, "west-lead", None, west),
        ]
    );
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

/// `sqlmcp serve` auditing `db` with a spool too small for one entry, and
/// JSON lines in `scratch`/audit.jsonl.
async fn serve_with_no_room_to_spool(db: &TestDb, scratch: &Scratch) -> ServerUnderTest {
    let (log, spool) = (scratch.path("audit.jsonl"), scratch.path("spool"));
    let process = ServeProcess::sqlmcp(&[
        "--database-url",
        &url_of(&db.app_config()),
        "--audit-database-url",
        &url_of(&db.audit_config()),
        "--audit-spool-dir",
        spool.to_str().unwrap(),
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
    ServerUnderTest {
        url: process.url(),
        metrics: format!("http://{}/metrics", process.address),
        _process: process,
    }
}

#[tokio::test]
async fn when_not_even_the_spool_can_take_entries_raw_sql_is_refused_and_curated_tools_run_on() {
    let db = TestDb::seeded().await;
    let scratch = Scratch::new();
    let app = serve_with_no_room_to_spool(&db, &scratch).await;
    let version = rmcp::model::ProtocolVersion::V_2025_11_25;
    let seattle = client(&app.url, &[("x-rls-user-id", SEATTLE)], version).await;
    let raw = || json!({"postgresql_query": "SELECT count(*) AS orders FROM retail.orders"});
    let runs = |tool: &'static str, arguments: Value| {
        let seattle = &seattle;
        async move { call(seattle, tool, arguments).await.is_error == Some(false) }
    };
    assert!(runs("execute_sales_query", raw()).await);

    cut_off_audit(&db).await;
    assert!(runs("top_products", json!({"limit": 1})).await);
    let dropped = r#"sqlmcp_audit_entries_total{outcome="dropped"}"#;
    wait_until("an entry is dropped", || async {
        app.metric(dropped).await >= 1.0
    })
    .await;
    let refused = call(&seattle, "execute_sales_query", raw()).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(
        text(&refused).contains("cannot be audited right now"),
        "{}",
        text(&refused)
    );
    assert!(runs("top_products", json!({"limit": 2})).await);
    assert_eq!(app.metric("sqlmcp_audit_refused_calls_total").await, 1.0);
    assert_eq!(app.metric("sqlmcp_audit_table_up").await, 0.0);

    restore_audit(&db).await;
    let mut calls = 4;
    wait_until("raw SQL runs again", || {
        calls += 1;
        runs("execute_sales_query", raw())
    })
    .await;
    assert_eq!(app.metric("sqlmcp_audit_table_up").await, 1.0);
    let spooled = r#"sqlmcp_audit_entries_total{outcome="spooled"}"#;
    assert_eq!(app.metric(spooled).await, 0.0);
    let refusals = app.metric("sqlmcp_audit_refused_calls_total").await as usize;
    assert_every_call_is_a_json_line(&scratch, calls, refusals).await;
    // the first call and the last reach the table; those in between not all
    let in_table = || count(&db, "SELECT count(*) FROM sqlmcp_audit.calls");
    wait_until("the last call is in the table", || async {
        in_table().await >= 2
    })
    .await;
    assert!(in_table().await < calls as i64);
}

/// The JSON lines hold every call, those the table never got included, and
/// the refused ones as refused raw SQL.
async fn assert_every_call_is_a_json_line(scratch: &Scratch, calls: usize, refusals: usize) {
    let read = || {
        std::fs::read_to_string(scratch.path("audit.jsonl"))
            .unwrap()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect::<Vec<Value>>()
    };
    wait_until("every call is a JSON line", || async {
        read().len() == calls
    })
    .await;
    let lines = read();
    let refused: Vec<&Value> = lines.iter().filter(|l| l["outcome"] == "refused").collect();
    assert_eq!(refused.len(), refusals);
    for line in refused {
        assert_eq!(
            (&line["error_class"], &line["tool"]),
            (&json!("audit_unavailable"), &json!("execute_sales_query"))
        );
    }
}

/// A `sqlmcp serve` process and its addresses; killed when dropped.
struct ServerUnderTest {
    url: String,
    metrics: String,
    _process: ServeProcess,
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
