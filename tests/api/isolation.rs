//! Tenant isolation, layer by layer, each proven with the other layers out
//! of the way: the identity no SQL can forge (the raw-SQL policy switched
//! off, on a database migrated by a role that is not a superuser), one
//! deadline per call that SQL cannot extend, memory bounded while hostile
//! results stream, and the policy's verdict checked against PostgreSQL's own
//! resolution of function calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sqlmcp::caller::{CallerId, Grant};
use sqlmcp::tools::raw_sql::{self, Limits};
use sqlmcp::{db, migrate, sql_policy};
use tokio_util::sync::CancellationToken;

use crate::helpers::process::ServeProcess;
use crate::helpers::server::spawn_app_with;
use crate::helpers::{HEAD_OFFICE, SEATTLE, TestDb, admin_config, connect, open_as};

const MANAGED_OWNER: &str = "sqlmcp_managed_owner";
const MANAGED_OWNER_PASSWORD: &str = "managed-owner-password";

/// A database owned and migrated by a role that is neither superuser nor
/// BYPASSRLS, as on managed PostgreSQL (where the provider installs the
/// vector extension). Seeded by the test's superuser.
async fn managed_database() -> TestDb {
    let admin = connect(&admin_config()).await;
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
                 CREATE ROLE {MANAGED_OWNER} LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB PASSWORD '{MANAGED_OWNER_PASSWORD}';
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
             END $$"
        ))
        .await
        .unwrap();
    let db = TestDb::empty().await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {} OWNER TO {MANAGED_OWNER}",
            db.name
        ))
        .await
        .unwrap();
    let superuser = connect(&db.owner_config()).await;
    superuser
        .batch_execute("CREATE EXTENSION vector")
        .await
        .unwrap();
    let mut config = db.owner_config();
    config.user(MANAGED_OWNER).password(MANAGED_OWNER_PASSWORD);
    let mut owner = connect(&config).await;
    let not_superuser: bool = owner
        .query_one(
            "SELECT NOT rolsuper AND NOT rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(not_superuser);
    migrate::run(&mut owner)
        .await
        .expect("a non-superuser migrates");
    let mut superuser = superuser;
    sqlmcp::seed::seed(
        &mut superuser,
        sqlmcp::seed::SeedOptions {
            scale: sqlmcp::seed::Scale::Tiny,
            seed: sqlmcp::seed::DEFAULT_SEED,
            if_seeded: sqlmcp::seed::IfSeeded::Refuse,
            progress: false,
        },
    )
    .await
    .unwrap();
    db
}

/// Rows of other stores than Seattle's that the transaction sees (none
/// when reading fails: `row_security = off` makes such a read an error).
async fn others_seen(tx: &tokio_postgres::Transaction<'_>) -> i64 {
    tx.query_one(
        "SELECT (SELECT count(*) FROM retail.orders WHERE store_id <> 1) \
              + (SELECT count(*) FROM retail.customers WHERE primary_store_id <> 1) \
              + (SELECT count(*) FROM retail.inventory WHERE store_id <> 1)",
        &[],
    )
    .await
    .map_or(0, |row| row.get(0))
}

/// Ways a caller (Seattle) might try to see more than their store, given
/// their own signed setting and head office's from another transaction.
fn forgeries(seattle_token: &str, head_office_token: &str) -> Vec<String> {
    let mac = seattle_token.split_once(':').unwrap().1.to_owned();
    vec![
        // the legacy setting the policies used to read
        "SELECT set_config('app.current_rls_user_id', '00000000-0000-0000-0000-000000000000', true)".to_owned(),
        // the signed setting, every store or a longer list, with Seattle's own valid MAC
        format!("SELECT set_config('sqlmcp.caller', '*:{mac}', true)"),
        format!("SELECT set_config('sqlmcp.caller', '1,2,3,4,5,6,7,8:{mac}', true)"),
        "SELECT set_config('sqlmcp.caller', '1,2:' || split_part(current_setting('sqlmcp.caller'), ':', 2), true)"
            .to_owned(),
        // the format of before (an id), with the MAC
        format!("SELECT set_config('sqlmcp.caller', '00000000-0000-0000-0000-000000000000:{mac}', true)"),
        // head office's token from another transaction (a leak, replayed)
        format!("SELECT set_config('sqlmcp.caller', '{head_office_token}', true)"),
        // Seattle's own token from another transaction
        format!("SELECT set_config('sqlmcp.caller', '{seattle_token}', true)"),
        // through a function that runs SQL from a string
        "SELECT * FROM ts_stat($q$SELECT to_tsvector('simple', set_config('sqlmcp.caller', \
         '*:' || repeat('0', 64), true))$q$)"
            .to_owned(),
        "SELECT query_to_xml($q$SELECT sqlmcp_identity.open_call(NULL, ARRAY[1,2,3,4,5,6,7,8], NULL)$q$, true, true, '')".to_owned(),
        // the server's statement, written by a caller, in either form
        "SELECT sqlmcp_identity.open_call('00000000-0000-0000-0000-000000000000', NULL, NULL)".to_owned(),
        "SELECT sqlmcp_identity.open_call(NULL, '{1,2,3,4,5,6,7,8}', '{West,East,Online}')".to_owned(),
        "SELECT sqlmcp_identity.open_call('00000000-0000-0000-0000-000000000000')".to_owned(),
        // becoming a regional manager: the mapping is neither readable nor writable
        "INSERT INTO sqlmcp_identity.region_managers VALUES ('f47ac10b-58cc-4372-a567-0e02b2c3d479', 2)".to_owned(),
        "SELECT * FROM sqlmcp_identity.region_managers".to_owned(),
        "UPDATE retail.stores SET region_id = 2 WHERE store_id = 1".to_owned(),
        "SELECT sqlmcp_identity.granted_stores()".to_owned(),
        // the key and the signer
        "SELECT * FROM sqlmcp_identity.key".to_owned(),
        "SELECT sqlmcp_identity.mac('*')".to_owned(),
        "SELECT set_config('role', 'sqlmcp_managed_owner', true)".to_owned(),
        "SELECT set_config('row_security', 'off', true)".to_owned(),
    ]
}

#[tokio::test]
async fn no_sql_forges_the_identity_on_a_database_migrated_without_superuser() {
    let db = managed_database().await;
    let mut app = db.app().await;
    let app: &mut tokio_postgres::Client = &mut app;

    // what head office's transaction holds, as if it leaked somewhere
    let tx = open_as(app, HEAD_OFFICE).await;
    assert!(others_seen(&tx).await > 0, "head office sees every store");
    let head_office_token: String = tx
        .query_one("SELECT current_setting('sqlmcp.caller')", &[])
        .await
        .unwrap()
        .get(0);
    tx.rollback().await.unwrap();

    let tx = open_as(app, SEATTLE).await;
    let seattle_token: String = tx
        .query_one("SELECT current_setting('sqlmcp.caller')", &[])
        .await
        .unwrap()
        .get(0);
    let own: i64 = tx
        .query_one("SELECT count(*) FROM retail.orders", &[])
        .await
        .unwrap()
        .get(0);
    assert!(own > 0);
    tx.rollback().await.unwrap();

    let forgeries = forgeries(&seattle_token, &head_office_token);
    // what signs or maps identities must not even run: it would leak a
    // credential or a signature, whatever the rows
    let must_fail = [
        "sqlmcp_identity.key",
        "mac(",
        "region_managers",
        "open_call",
    ];
    for forgery in &forgeries {
        let tx = open_as(app, SEATTLE).await;
        let ran = tx.batch_execute(forgery).await.is_ok();
        assert!(
            !(ran && must_fail.iter().any(|part| forgery.contains(part))),
            "{forgery} ran"
        );
        if ran {
            assert_eq!(
                others_seen(&tx).await,
                0,
                "{forgery}: Seattle saw another store"
            );
            let now: i64 = tx
                .query_one("SELECT count(*) FROM retail.orders", &[])
                .await
                .map_or(0, |row| row.get(0));
            assert!(now == own || now == 0, "{forgery}: {now} orders");
        }
        drop(tx);
    }
}

#[tokio::test]
async fn a_call_cannot_outlive_its_deadline_even_when_its_sql_lifts_the_timeout() {
    let db = TestDb::seeded().await;
    let connection = db.app().await;
    let cancel = connection.cancel_token();
    let caller = Grant::from(CallerId::for_tests(SEATTLE));
    // the policy would refuse both; without it, only the deadline stops this
    let hostile = "SELECT set_config('statement_timeout', '0', false), pg_sleep(30)";
    let task = tokio::spawn(async move {
        let limits = Limits {
            statement_timeout: Duration::from_secs(20),
            ..Limits::default()
        };
        let outcome =
            raw_sql::execute_unchecked_for_tests(&connection, &caller, hostile, limits).await;
        (outcome, connection)
    });
    let started = Instant::now();
    let outcome = db::run_within(
        cancel,
        Duration::from_secs(1),
        &CancellationToken::new(),
        task,
    )
    .await;
    let elapsed = started.elapsed();
    assert!(matches!(outcome, Err(db::Interrupted::Deadline)));
    println!("a call limited to 1 s that lifted its own timeout ended after {elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(1) + db::CANCEL_GRACE + Duration::from_secs(1),
        "{elapsed:?}"
    );
    assert_eq!(active_queries(&db, "pg_sleep(30)").await, 0);
}

/// Statements of the application role still running that contain `marker`,
/// after waiting up to 10 s for them to end: far less than the 30 s such a
/// statement may run, so one nobody cancelled is still caught, and enough
/// for a cancel to land on a loaded machine.
async fn active_queries(db: &TestDb, marker: &str) -> i64 {
    let admin = db.owner().await;
    let mut running = 0;
    for _ in 0..100 {
        running = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = 'store_manager' \
                 AND state = 'active' AND position($1 in query) > 0",
                &[&marker],
            )
            .await
            .unwrap()
            .get(0);
        if running == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running
}

fn post_call(url: &str, caller: &str, tool: &str, arguments: Value) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("x-rls-user-id", caller)
        .body(
            json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                   "params": {"name": tool, "arguments": arguments}})
            .to_string(),
        )
}

/// `execute_sales_query` over HTTP: the JSON-RPC answer.
async fn raw_sql_over_http(url: &str, caller: &str, sql: &str) -> Value {
    post_call(
        url,
        caller,
        "execute_sales_query",
        json!({"postgresql_query": sql}),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap()
}

#[tokio::test]
async fn hostile_calls_end_at_their_deadline_and_a_caller_who_leaves_stops_its_query() {
    let db = Arc::new(TestDb::seeded().await);
    let limit = Duration::from_secs(1);
    let app = spawn_app_with(db.clone(), |settings| {
        settings.limits.raw_sql.statement_timeout = limit;
    })
    .await;
    let hostile = [
        "SELECT count(*) FROM retail.order_items a, retail.order_items b, retail.order_items c",
        "SELECT count(*) FROM generate_series(1, 1000000000000)",
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT count(*) FROM r",
        "SELECT md5(repeat(md5(g::text), 100000)) FROM generate_series(1, 100000000) g",
        "SELECT count(*) FROM generate_series(1, 3000) a, generate_series(1, 3000) b, generate_series(1, 3000) c",
    ];
    let mut worst = Duration::ZERO;
    for sql in hostile {
        let started = Instant::now();
        let answer = raw_sql_over_http(&app.url, SEATTLE, sql).await;
        let elapsed = started.elapsed();
        worst = worst.max(elapsed);
        assert_eq!(answer["result"]["isError"], true, "{sql}: {answer}");
        assert!(answer.to_string().contains("timeout"), "{sql}: {answer}");
    }
    println!("worst wall time of a hostile call limited to {limit:?}: {worst:?}");
    // the bound that holds however busy the machine: the deadline, then at
    // most the grace a cancelled call gets before its task is dropped (the
    // number printed is the one to compare with the limit)
    assert!(
        worst < limit + db::CANCEL_GRACE + Duration::from_secs(1),
        "{worst:?}"
    );

    // a caller who goes away: its statement is cancelled in PostgreSQL
    let app = spawn_app_with(db.clone(), |settings| {
        settings.limits.raw_sql.statement_timeout = Duration::from_secs(30);
    })
    .await;
    let marker = "caller_who_leaves";
    let sql = format!(
        "SELECT count(*) AS {marker} FROM retail.order_items a, retail.order_items b, retail.order_items c"
    );
    let leaving = post_call(
        &app.url,
        SEATTLE,
        "execute_sales_query",
        json!({"postgresql_query": sql}),
    )
    .timeout(Duration::from_millis(500))
    .send()
    .await;
    if let Ok(answered) = leaving {
        let status = answered.status();
        panic!(
            "the server answered within 500 ms, before the client gave up: {status} {}",
            answered.text().await.unwrap_or_default()
        );
    }
    let started = Instant::now();
    assert_eq!(
        active_queries(&db, marker).await,
        0,
        "the query outlived its caller"
    );
    println!(
        "the query of a caller who left stopped within {:?}",
        started.elapsed()
    );
    // and the server still answers
    let answer = raw_sql_over_http(&app.url, SEATTLE, "SELECT 1 AS one").await;
    assert_eq!(
        answer["result"]["structuredContent"]["r"],
        json!([[1]]),
        "{answer}"
    );
}

/// The resident set of process `pid`, now and at its peak, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test]
async fn memory_stays_bounded_while_sixteen_hostile_results_stream() {
    let db = TestDb::seeded().await;
    let cap = 1 << 20;
    let server = ServeProcess::sqlmcp(&[
        "--embedding-provider",
        "none",
        "--pool-size",
        "16",
        "--sql-max-bytes",
        &cap.to_string(),
        "--sql-timeout-ms",
        "20000",
        "--database-url",
        &crate::helpers::url_of(&db.app_config()),
    ])
    .await;
    let pid = server.pid();
    let url = server.url();
    // warm up: every pooled connection and the code paths once
    let warm: Vec<_> = (0..16)
        .map(|_| post_call(&url, HEAD_OFFICE, "execute_sales_query", json!({"postgresql_query": "SELECT repeat('x', 1000) FROM generate_series(1, 900)"})))
        .collect();
    for request in warm {
        request.send().await.unwrap().bytes().await.unwrap();
    }
    let (before, _) = memory_kib(pid);
    let hostile = [
        "SELECT repeat('x', 10000000) FROM generate_series(1, 100)",
        "SELECT repeat('y', 900000) AS a, repeat('z', 900000) AS b FROM generate_series(1, 1000)",
        "SELECT array_agg(repeat('w', 1000)) FROM generate_series(1, 50000)",
        "SELECT string_agg(md5(g::text), '') FROM generate_series(1, 2000000) g",
        // rows that fill the cap exactly: the largest answer there can be
        "SELECT repeat('v', 100000) FROM generate_series(1, 1000)",
        "SELECT g, repeat(md5(g::text), 1000) FROM generate_series(1, 100000) g",
    ];
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let sql = hostile[i % hostile.len()];
            let request = post_call(
                &url,
                HEAD_OFFICE,
                "execute_sales_query",
                json!({"postgresql_query": sql}),
            );
            tokio::spawn(async move {
                let answer: Value = request.send().await.unwrap().json().await.unwrap();
                answer
            })
        })
        .collect();
    for call in calls {
        let answer = call.await.unwrap();
        let result = &answer["result"];
        // cut at the cap, never refused nor failed
        assert_eq!(
            result["structuredContent"]["truncated"],
            true,
            "{:.300}",
            answer.to_string()
        );
    }
    let (_, peak) = memory_kib(pid);
    let grew_mib = peak.saturating_sub(before) as f64 / 1024.0;
    println!(
        "RSS before {:.1} MiB, peak {:.1} MiB: grew {grew_mib:.1} MiB under 16 hostile calls with a 1 MiB cap",
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    // each call holds at most its capped rows, as JSON and as text
    assert!(grew_mib < 16.0 * 6.0, "{grew_mib:.1} MiB");
    server.kill().await;
}

/// Functions allowed and refused, and every syntax that calls one.
const ALLOWED_FUNCTIONS: &[(&str, &str)] = &[
    ("upper", "'a'::text"),
    ("abs", "-1::int"),
    ("md5", "'a'::text"),
    ("length", "'a'::text"),
    ("sqrt", "4::float8"),
];
const REFUSED_FUNCTIONS: &[(&str, &str)] = &[
    ("pg_sleep", "0::float8"),
    ("setseed", "0.5::float8"),
    ("current_setting", "'search_path'::text"),
    ("pg_advisory_unlock_all", ""),
    ("pg_backend_pid", ""),
    ("txid_current", ""),
    ("pg_typeof", "1"),
    ("pg_column_size", "1"),
];

/// One call of `function` on `argument` in one of the syntaxes that reach
/// a function, placed in one of the clauses that take an expression.
fn generated_query(rng: &mut StdRng, function: &str, argument: &str) -> String {
    let call = match (rng.random_range(0..4), argument.is_empty()) {
        (0, _) | (_, true) => format!("{function}({argument})"),
        (1, false) => format!("pg_catalog.{function}({argument})"),
        (2, false) => format!("({argument}).{function}"),
        _ => format!("({argument}).\"{function}\""),
    };
    let call = format!("({call})::text");
    let part = match rng.random_range(0..10) {
        0 => format!("SELECT {call} AS v"),
        1 => format!("SELECT 'x'::text AS v WHERE {call} IS NOT NULL"),
        2 => format!(
            "SELECT (count(*) FILTER (WHERE {call} IS NOT NULL))::text AS v FROM retail.categories"
        ),
        3 => format!(
            "SELECT v FROM (SELECT category_name::text AS v FROM retail.categories ORDER BY {call}) s"
        ),
        4 => format!("SELECT v FROM (SELECT {call} AS v) s"),
        5 => format!("WITH c AS (SELECT {call} AS v) SELECT v FROM c"),
        6 => {
            format!("SELECT x.v FROM retail.categories c CROSS JOIN LATERAL (SELECT {call} AS v) x")
        }
        7 => format!(
            "SELECT max(category_name)::text AS v FROM retail.categories GROUP BY category_id \
             HAVING max({call}) IS NOT NULL"
        ),
        8 => format!(
            "SELECT (row_number() OVER (PARTITION BY {call}))::text AS v FROM retail.categories"
        ),
        _ => format!("SELECT v FROM (VALUES ({call})) t(v)"),
    };
    format!("({part})")
}

#[tokio::test]
async fn the_policy_agrees_with_postgresql_on_which_functions_a_query_calls() {
    let db = TestDb::migrated().await;
    let owner = db.owner().await;
    let names = raw_sql::load_names(&*owner).await.unwrap();
    let mut rng = StdRng::seed_from_u64(12);
    let mut accepted = 0;
    for case in 0..300 {
        // one to three calls, each allowed or not
        let mut parts = Vec::new();
        for _ in 0..rng.random_range(1..=3) {
            let (function, argument) = if rng.random_bool(0.5) {
                ALLOWED_FUNCTIONS[rng.random_range(0..ALLOWED_FUNCTIONS.len())]
            } else {
                REFUSED_FUNCTIONS[rng.random_range(0..REFUSED_FUNCTIONS.len())]
            };
            parts.push(generated_query(&mut rng, function, argument));
        }
        let sql = parts.join(" UNION ALL ");
        // PostgreSQL's own resolution: a view of the query is analysed
        // (never run), and its definition printed back names every
        // function the analyser resolved, whatever the syntax was
        let view = format!("policy_case_{case}");
        let resolved: Vec<String> = match owner
            .batch_execute(&format!("CREATE TEMP VIEW {view} AS {sql}"))
            .await
        {
            Ok(()) => {
                let definition: String = owner
                    .query_one("SELECT pg_get_viewdef($1::text::regclass)", &[&view])
                    .await
                    .unwrap()
                    .get(0);
                ALLOWED_FUNCTIONS
                    .iter()
                    .chain(REFUSED_FUNCTIONS)
                    .map(|(name, _)| name.to_string())
                    .filter(|name| definition.contains(&format!("{name}(")))
                    .collect()
            }
            // not a valid query (e.g. a function that takes no whole row):
            // nothing to compare
            Err(_) => continue,
        };
        let forbidden: Vec<&String> = resolved
            .iter()
            .filter(|f| REFUSED_FUNCTIONS.iter().any(|(name, _)| name == f))
            .collect();
        assert!(
            REFUSED_FUNCTIONS
                .iter()
                .all(|(name, _)| !sql_policy::allowed::FUNCTIONS.contains(name)),
            "a function the test expects refused is on the allow-list"
        );
        match sql_policy::check(&sql, &names) {
            Ok(_) => {
                accepted += 1;
                assert!(
                    forbidden.is_empty(),
                    "accepted {sql:?}, which calls {forbidden:?}"
                );
            }
            Err(violation) => assert!(
                !forbidden.is_empty(),
                "refused {sql:?}, which calls only {resolved:?}: {violation}"
            ),
        }
    }
    assert!(
        accepted > 20,
        "only {accepted} of 300 generated queries were accepted"
    );
}

#[tokio::test]
async fn the_server_refuses_a_role_that_could_sign_identities() {
    let db = TestDb::seeded().await;
    let role = format!("sqlmcp_signer_{}", std::process::id());
    let admin = connect(&admin_config()).await;
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN PASSWORD 'signer'"
        ))
        .await
        .unwrap();
    let owner = db.owner().await;
    owner
        .batch_execute(&format!(
            "GRANT USAGE ON SCHEMA retail, sqlmcp_identity TO {role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA retail TO {role}; \
             GRANT SELECT ON refinery_schema_history TO {role}; \
             GRANT SELECT ON sqlmcp_identity.key TO {role}"
        ))
        .await
        .unwrap();
    let mut signer = crate::helpers::server::settings(&db);
    signer.database.user(&role).password("signer");
    let refused = sqlmcp::server::Application::build(signer)
        .await
        .err()
        .map(|e| format!("{e:#}"));
    owner
        .batch_execute(&format!("DROP OWNED BY {role}"))
        .await
        .unwrap();
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .unwrap();
    let err = refused.expect("refused");
    assert!(err.contains("can read the identity key"), "{err}");
}
