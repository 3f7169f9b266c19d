//! `execute_sales_query` under attack: every hostile input is refused with
//! the rule it breaks, the database is unchanged afterwards, and the writes
//! fail on the database's own layers when the policy is switched off.
//! Legitimate analytics pass.

use serde_json::{Value, json};
use sqlmcp::caller::{CallerId, Grant};
use sqlmcp::tools::raw_sql::{self, Limits};
use sqlmcp::tools::{self, CallLimits, ToolContext, ToolError};
use std::time::Duration;

use crate::helpers::{HEAD_OFFICE, SEATTLE, TestDb};
use crate::hostile_corpus::{MORE_ATTACKS, MORE_LEGITIMATE};

#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord)]
pub(crate) enum Class {
    /// Changes data or schema: the database layers alone must stop it too.
    Write,
    /// Side effects a read-only transaction does not stop: the policy's job.
    SideEffect,
    /// Changing who the caller is: the policy's job; the role cannot anyway.
    Escape,
    /// Reading outside retail: the system catalog, settings, the server.
    Snoop,
    /// Other tenants' volumes or credentials: statistics, estimates,
    /// `stores.rls_user_id`.
    Stats,
    /// Cancelling, terminating or observing other callers' backends.
    OtherCallers,
    /// Tricks of spelling that must not hide any of the above.
    Encoding,
    /// Transaction control and plans: no data changes even when run, but no
    /// business in a query either.
    Control,
}
pub(crate) use Class::*;

const ATTACKS: &[(&str, &str, Class)] = &[
    // statement stacking and transaction escape
    (
        "SELECT 1; DELETE FROM retail.orders",
        "only one statement allowed",
        Write,
    ),
    (
        "SELECT 1; COMMIT; DELETE FROM retail.orders",
        "only one statement allowed",
        Write,
    ),
    (
        "COMMIT; DELETE FROM retail.orders",
        "only one statement allowed",
        Write,
    ),
    (
        "END; DROP TABLE retail.orders",
        "only one statement allowed",
        Write,
    ),
    (
        "ROLLBACK; INSERT INTO retail.categories (category_name) VALUES ('x')",
        "only one statement allowed",
        Write,
    ),
    (
        "SELECT 1 /* ; */; DELETE FROM retail.orders",
        "only one statement allowed",
        Write,
    ),
    (
        "SELECT $$;$$; DELETE FROM retail.orders",
        "only one statement allowed",
        Write,
    ),
    (
        "SELECT $tag$ ; $tag$; UPDATE retail.products SET base_price = 0",
        "only one statement allowed",
        Write,
    ),
    (
        "SELECT ';'; UPDATE retail.products SET base_price = 0",
        "only one statement allowed",
        Write,
    ),
    (
        "SELECT 1 -- ;\n; TRUNCATE retail.orders",
        "only one statement allowed",
        Write,
    ),
    (
        "SELECT E'\\';'; DELETE FROM retail.orders",
        "only one statement allowed",
        Write,
    ),
    ("COMMIT", "only SELECT or EXPLAIN allowed", Control),
    (
        "BEGIN READ WRITE",
        "only SELECT or EXPLAIN allowed",
        Control,
    ),
    (
        "START TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "only SELECT or EXPLAIN allowed",
        Control,
    ),
    ("SAVEPOINT s", "only SELECT or EXPLAIN allowed", Control),
    ("ABORT", "only SELECT or EXPLAIN allowed", Control),
    (
        "PREPARE p AS DELETE FROM retail.orders",
        "only SELECT or EXPLAIN allowed",
        Control,
    ),
    ("EXECUTE p", "only SELECT or EXPLAIN allowed", Control),
    ("DEALLOCATE ALL", "only SELECT or EXPLAIN allowed", Control),
    ("DISCARD ALL", "only SELECT or EXPLAIN allowed", Control),
    ("NOTIFY channel", "only SELECT or EXPLAIN allowed", Control),
    // writes in disguise
    (
        "WITH d AS (DELETE FROM retail.orders RETURNING *) SELECT count(*) FROM d",
        "DELETE not allowed",
        Write,
    ),
    (
        "WITH u AS (UPDATE retail.products SET base_price = 0 RETURNING 1) SELECT * FROM u",
        "UPDATE not allowed",
        Write,
    ),
    (
        "WITH i AS (INSERT INTO retail.categories (category_name) VALUES ('x') RETURNING 1) SELECT * FROM i",
        "INSERT not allowed",
        Write,
    ),
    (
        "SELECT * FROM (WITH d AS (DELETE FROM retail.inventory RETURNING 1) SELECT * FROM d) s",
        "DELETE not allowed",
        Write,
    ),
    (
        "SELECT * INTO retail.stolen FROM retail.customers",
        "SELECT … INTO not allowed",
        Write,
    ),
    (
        "SELECT * INTO TEMP stolen FROM retail.customers",
        "SELECT … INTO not allowed",
        Write,
    ),
    (
        "CREATE TABLE retail.t AS SELECT 1",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "EXPLAIN ANALYZE DELETE FROM retail.orders",
        "EXPLAIN ANALYZE not allowed",
        Write,
    ),
    (
        "EXPLAIN (ANALYZE) SELECT * FROM retail.orders",
        "EXPLAIN ANALYZE not allowed",
        Control,
    ),
    (
        "EXPLAIN (COSTS OFF, FORMAT XML) SELECT 1",
        "EXPLAIN FORMAT XML not allowed",
        Control,
    ),
    (
        "EXPLAIN (BUFFERS, ANALYZE true) SELECT 1",
        "EXPLAIN ANALYZE not allowed",
        Control,
    ),
    (
        "EXPLAIN DELETE FROM retail.orders",
        "EXPLAIN allowed only of a SELECT",
        Control,
    ),
    (
        "SELECT nextval('retail.orders_order_id_seq')",
        "function nextval",
        Write,
    ),
    (
        "SELECT setval('retail.orders_order_id_seq', 1)",
        "function setval",
        Write,
    ),
    (
        "SELECT * FROM nextval('retail.orders_order_id_seq')",
        "function nextval",
        Write,
    ),
    (
        "DO $$ BEGIN DELETE FROM retail.orders; END $$",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "COPY retail.orders TO STDOUT",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "COPY (SELECT * FROM retail.customers) TO '/tmp/customers'",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "COPY retail.orders FROM STDIN",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "INSERT INTO retail.orders (customer_id, store_id, order_date) VALUES (1, 1, now())",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "UPDATE retail.orders SET store_id = 1",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "DELETE FROM retail.inventory",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "MERGE INTO retail.categories c USING (SELECT 'x' AS n) v ON false WHEN NOT MATCHED THEN INSERT (category_name) VALUES (v.n)",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "TRUNCATE retail.orders",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "DROP TABLE retail.orders",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "ALTER TABLE retail.orders DISABLE ROW LEVEL SECURITY",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "GRANT ALL ON retail.orders TO PUBLIC",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "CREATE FUNCTION retail.f() RETURNS int AS 'SELECT 1' LANGUAGE sql",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "VACUUM retail.orders",
        "only SELECT or EXPLAIN allowed",
        Write,
    ),
    (
        "SELECT * FROM retail.orders FOR UPDATE",
        "locking clause (FOR UPDATE/SHARE) not allowed",
        Write,
    ),
    (
        "SELECT * FROM retail.orders FOR SHARE SKIP LOCKED",
        "locking clause (FOR UPDATE/SHARE) not allowed",
        Write,
    ),
    (
        "SELECT * FROM (SELECT * FROM retail.orders FOR NO KEY UPDATE) s",
        "locking clause (FOR UPDATE/SHARE) not allowed",
        Write,
    ),
    // side effects a read-only transaction does not stop
    (
        "SELECT pg_read_file('/etc/passwd')",
        "function pg_read_file",
        SideEffect,
    ),
    (
        "SELECT * FROM pg_read_binary_file('/etc/passwd')",
        "function pg_read_binary_file",
        SideEffect,
    ),
    ("SELECT pg_ls_dir('.')", "function pg_ls_dir", SideEffect),
    (
        "SELECT lo_import('/etc/passwd')",
        "function lo_import",
        SideEffect,
    ),
    (
        "SELECT lo_export(1, '/tmp/x')",
        "function lo_export",
        SideEffect,
    ),
    ("SELECT lo_create(0)", "function lo_create", SideEffect),
    (
        "SELECT * FROM dblink('host=127.0.0.1', 'DELETE FROM retail.orders') AS t(a int)",
        "function dblink",
        SideEffect,
    ),
    (
        "SELECT pg_terminate_backend(pg_backend_pid())",
        "function pg_terminate_backend",
        SideEffect,
    ),
    (
        "SELECT pg_cancel_backend(1)",
        "function pg_cancel_backend",
        SideEffect,
    ),
    (
        "SELECT pg_reload_conf()",
        "function pg_reload_conf",
        SideEffect,
    ),
    (
        "SELECT pg_rotate_logfile()",
        "function pg_rotate_logfile",
        SideEffect,
    ),
    (
        "SELECT pg_advisory_lock(42)",
        "function pg_advisory_lock",
        SideEffect,
    ),
    (
        "SELECT pg_try_advisory_lock(42)",
        "function pg_try_advisory_lock",
        SideEffect,
    ),
    (
        "SELECT pg_advisory_xact_lock(42)",
        "function pg_advisory_xact_lock",
        SideEffect,
    ),
    (
        "SELECT pg_notify('channel', 'x')",
        "function pg_notify",
        SideEffect,
    ),
    ("SELECT pg_sleep(30)", "function pg_sleep", SideEffect),
    (
        "SELECT * FROM pg_sleep(30)",
        "function pg_sleep",
        SideEffect,
    ),
    (
        "SELECT 1 FROM retail.orders WHERE pg_sleep(1) IS NULL",
        "function pg_sleep",
        SideEffect,
    ),
    (
        "SELECT query_to_xml('DELETE FROM retail.orders', true, true, '')",
        "function query_to_xml",
        SideEffect,
    ),
    ("SELECT txid_current()", "function txid_current", SideEffect),
    (
        "SELECT pg_switch_wal()",
        "function pg_switch_wal",
        SideEffect,
    ),
    ("SELECT setseed(0.5)", "function setseed", SideEffect),
    // identity and RLS escape
    (
        "SELECT set_config('app.current_rls_user_id', '00000000-0000-0000-0000-000000000000', false)",
        "function set_config",
        Escape,
    ),
    (
        "SELECT set_config('role', 'sqlmcp', true)",
        "function set_config",
        Escape,
    ),
    (
        "SELECT * FROM retail.orders, (SELECT set_config('app.current_rls_user_id', '00000000-0000-0000-0000-000000000000', true)) s",
        "function set_config",
        Escape,
    ),
    ("SET ROLE sqlmcp", "only SELECT or EXPLAIN allowed", Escape),
    (
        "SET app.current_rls_user_id = '00000000-0000-0000-0000-000000000000'",
        "only SELECT or EXPLAIN allowed",
        Escape,
    ),
    (
        "SET LOCAL row_security = off",
        "only SELECT or EXPLAIN allowed",
        Escape,
    ),
    ("RESET ALL", "only SELECT or EXPLAIN allowed", Escape),
    (
        "SET SESSION AUTHORIZATION sqlmcp",
        "only SELECT or EXPLAIN allowed",
        Escape,
    ),
    (
        "SELECT current_setting('app.current_rls_user_id')",
        "function current_setting is not allowed",
        Escape,
    ),
    (
        "SELECT retail.caller_store_ids()",
        "function retail.caller_store_ids",
        Escape,
    ),
    (
        "SELECT caller_is_head_office()",
        "function caller_is_head_office",
        Escape,
    ),
    // system catalog snooping
    (
        "SELECT * FROM pg_authid",
        "relation pg_authid not allowed",
        Snoop,
    ),
    (
        "SELECT usename, passwd FROM pg_shadow",
        "relation pg_shadow not allowed",
        Snoop,
    ),
    (
        "SELECT * FROM pg_catalog.pg_user",
        "relation pg_catalog.pg_user not allowed",
        Snoop,
    ),
    (
        "SELECT * FROM information_schema.tables",
        "relation information_schema.tables not allowed",
        Snoop,
    ),
    (
        "SELECT * FROM public.refinery_schema_history",
        "relation public.refinery_schema_history not allowed",
        Snoop,
    ),
    (
        "SELECT * FROM refinery_schema_history",
        "relation refinery_schema_history not allowed",
        Snoop,
    ),
    (
        "SELECT * FROM pg_stat_activity",
        "relation pg_stat_activity not allowed",
        Snoop,
    ),
    (
        "SELECT * FROM retail.orders_order_id_seq",
        "relation retail.orders_order_id_seq not allowed",
        Snoop,
    ),
    (
        "WITH pg_authid AS (SELECT 1) SELECT * FROM pg_authid",
        "shadows a system relation",
        Snoop,
    ),
    (
        "SELECT (SELECT rolpassword FROM pg_authid LIMIT 1)",
        "relation pg_authid not allowed",
        Snoop,
    ),
    (
        "SELECT * FROM retail.orders o JOIN pg_roles r ON true",
        "relation pg_roles not allowed",
        Snoop,
    ),
    ("TABLE pg_authid", "relation pg_authid not allowed", Snoop),
    (
        "SELECT public.pg_sleep(1)",
        "function public.pg_sleep",
        SideEffect,
    ),
    (
        "SELECT * FROM sqlmcp.retail.orders",
        "database-qualified names not allowed",
        Snoop,
    ),
    // encoding tricks
    (
        "SELECT U&\"\\0070g_sleep\"(1)",
        "function pg_sleep",
        Encoding,
    ),
    ("SELECT \"pg_sleep\"(1)", "function pg_sleep", Encoding),
    ("SeLeCt Pg_SlEeP(1)", "function pg_sleep", Encoding),
    ("select/**/pg_sleep(1)", "function pg_sleep", Encoding),
    (
        "SELECT pg_catalog.pg_sleep\n(1)",
        "function pg_catalog.pg_sleep",
        Encoding,
    ),
    (
        "SELECT * FROM \"pg_authid\"",
        "relation pg_authid not allowed",
        Encoding,
    ),
    (
        "SELECT * FROM PG_CATALOG.PG_AUTHID",
        "relation pg_catalog.pg_authid not allowed",
        Encoding,
    ),
    (
        "SELECT * FROM U&\"pg\\005fauthid\"",
        "relation pg_authid not allowed",
        Encoding,
    ),
    ("SELECT 1 \\g", "syntax error", Encoding),
    ("ＳＥＬＥＣＴ 1", "syntax error", Encoding),
    ("", "write one SELECT statement", Encoding),
    ("  ;  ", "empty query", Encoding),
];

const LEGITIMATE: &[&str] = &[
    "SELECT count(*) FROM retail.orders",
    "SELECT count(*) FROM orders",
    "SELECT s.store_name, count(o.order_id) AS orders FROM retail.stores s LEFT JOIN retail.orders o USING (store_id) GROUP BY s.store_name ORDER BY 2 DESC",
    "SELECT date_trunc('month', order_date) AS month, count(*) FROM retail.orders GROUP BY 1 ORDER BY 1",
    "SELECT product_id, sum(total_amount) AS revenue, rank() OVER (ORDER BY sum(total_amount) DESC) FROM retail.order_items GROUP BY product_id ORDER BY 3 LIMIT 10",
    "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY total_amount) AS median FROM retail.order_items",
    "WITH monthly AS (SELECT date_trunc('month', o.order_date) AS m, sum(oi.total_amount) AS r FROM retail.orders o JOIN retail.order_items oi USING (order_id) GROUP BY 1) SELECT m, r, r - lag(r) OVER (ORDER BY m) AS change FROM monthly ORDER BY m",
    "SELECT c.category_name, top.product_name FROM retail.categories c CROSS JOIN LATERAL (SELECT p.product_name FROM retail.products p WHERE p.category_id = c.category_id ORDER BY p.base_price DESC LIMIT 1) top",
    "SELECT count(*) FILTER (WHERE discount_percent > 0) AS discounted, count(*) AS all_items FROM retail.order_items",
    "SELECT store_id, extract(year FROM order_date) AS y, count(*) FROM retail.orders GROUP BY GROUPING SETS ((store_id), (extract(year FROM order_date)), ())",
    "SELECT c.category_name, t.type_name, count(*) FROM retail.products p JOIN retail.categories c USING (category_id) JOIN retail.product_types t USING (type_id) GROUP BY ROLLUP (c.category_name, t.type_name)",
    "SELECT 'store' AS kind, store_name AS name FROM retail.stores UNION ALL SELECT 'category', category_name FROM retail.categories",
    "SELECT product_id FROM retail.products EXCEPT SELECT product_id FROM retail.order_items",
    "VALUES (1, 'a'), (2, 'b')",
    "SELECT * FROM (VALUES (1), (2)) AS v(x)",
    "SELECT customer_id, first_name FROM retail.customers WHERE customer_id IN (SELECT customer_id FROM retail.orders GROUP BY customer_id HAVING count(*) > 5)",
    "SELECT p.sku FROM retail.products p WHERE NOT EXISTS (SELECT 1 FROM retail.order_items oi WHERE oi.product_id = p.product_id)",
    "SELECT upper(first_name) || ' ' || lower(last_name) AS name, length(email) FROM retail.customers LIMIT 5",
    "SELECT order_date, order_date - interval '30 days', extract(dow FROM order_date) FROM retail.orders LIMIT 5",
    "SELECT to_char(order_date, 'YYYY-MM') AS month, count(*) FROM retail.orders GROUP BY 1 ORDER BY 1",
    "SELECT CASE WHEN stock_level = 0 THEN 'out' WHEN stock_level < 10 THEN 'low' ELSE 'ok' END AS status, count(*) FROM retail.inventory GROUP BY 1",
    "SELECT round(avg(total_amount), 2), max(total_amount), min(total_amount), stddev(total_amount) FROM retail.order_items",
    "SELECT json_build_object('store', store_name, 'online', is_online) AS store FROM retail.stores",
    "SELECT store_id, array_agg(DISTINCT product_id ORDER BY product_id) FROM retail.inventory WHERE stock_level < 5 GROUP BY store_id",
    "SELECT c.category_name, string_agg(t.type_name, ', ' ORDER BY t.type_name) FROM retail.product_types t JOIN retail.categories c USING (category_id) GROUP BY c.category_name",
    "SELECT DISTINCT ON (store_id) store_id, order_date FROM retail.orders ORDER BY store_id, order_date DESC",
    "SELECT d::date AS day FROM generate_series('2024-01-01'::date, '2024-01-31'::date, interval '1 day') AS d",
    "SELECT e2.product_id FROM retail.product_description_embeddings e1 \
     JOIN retail.product_description_embeddings e2 ON e2.model_id = e1.model_id \
     WHERE e1.product_id = 1 ORDER BY e2.description_embedding <=> e1.description_embedding LIMIT 3",
    "SELECT percentile_disc(0.9) WITHIN GROUP (ORDER BY quantity), ntile(4) OVER () FROM retail.order_items GROUP BY quantity LIMIT 3",
    "EXPLAIN (COSTS OFF) SELECT * FROM retail.orders WHERE order_date > '2024-01-01'",
    "EXPLAIN (FORMAT JSON, COSTS false) SELECT count(*) FROM retail.order_items",
    "EXPLAIN (COSTS 0, FORMAT YAML, VERBOSE) SELECT store_id FROM retail.orders LIMIT 1",
    // column names that are the bounding query's own aliases
    "SELECT date_part('year', o.order_date) AS y, date_part('quarter', o.order_date) AS q, count(*) AS orders FROM retail.orders o GROUP BY 1, 2",
    "SELECT 1 AS q, 2 AS r, 3 AS w, 4 AS j, 5 AS n, 6 AS \"q.*\"",
];

async fn run(
    client: &mut deadpool_postgres::ClientWrapper,
    caller: &str,
    sql: &str,
    limits: Limits,
) -> Result<Value, ToolError> {
    let context = ToolContext {
        limits: CallLimits {
            raw_sql: limits,
            ..CallLimits::default()
        },
        ..ToolContext::default()
    };
    let caller = Grant::from(CallerId::for_tests(caller));
    tools::call(
        client,
        &caller,
        "execute_sales_query",
        json!({ "postgresql_query": sql }),
        &context,
    )
    .await
    .map(|output| output.structured)
}

/// Everything an attack could have changed: every table's rows, objects,
/// locks and settings.
async fn fingerprint(db: &TestDb) -> (Vec<sqlmcp::seed::TableChecksum>, i64) {
    let mut owner = db.owner().await;
    let checksums = sqlmcp::seed::checksums(&mut owner).await.unwrap();
    let objects: i64 = owner
        .query_one("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname NOT IN ('pg_toast')", &[])
        .await
        .unwrap()
        .get(0);
    (checksums, objects)
}

/// What a connection's session holds that a call could have left behind:
/// an identity, settings, advisory locks, prepared statements, cursors,
/// notification channels.
pub(crate) async fn session_state(client: &tokio_postgres::Client) -> String {
    let row = client
        .query_one(
            "SELECT coalesce(current_setting('sqlmcp.caller', true), ''), \
                    coalesce(current_setting('app.current_rls_user_id', true), ''), \
                    (SELECT string_agg(name || '=' || setting, ',' ORDER BY name) FROM pg_settings \
                      WHERE source = 'session'), \
                    (SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() AND locktype = 'advisory'), \
                    (SELECT string_agg(name, ',' ORDER BY name) FROM pg_prepared_statements WHERE from_sql), \
                    (SELECT string_agg(name, ',' ORDER BY name) FROM pg_cursors), \
                    (SELECT string_agg(c, ',') FROM pg_listening_channels() c), \
                    pg_backend_pid()",
            &[],
        )
        .await
        .expect("the connection answers");
    let text = |i: usize| row.get::<_, Option<String>>(i);
    let (identity, legacy, settings) = (text(0), text(1), text(2));
    let (prepared, cursors, channels) = (text(4), text(5), text(6));
    let (advisory, pid): (i64, i32) = (row.get(3), row.get(7));
    format!(
        "pid {pid}; identity {identity:?} {legacy:?}; session settings {settings:?}; advisory locks {advisory}; \
         prepared {prepared:?}; cursors {cursors:?}; listening {channels:?}"
    )
}

async fn assert_connection_is_clean(client: &tokio_postgres::Client, before: &str, after: &str) {
    let now = session_state(client).await;
    assert_eq!(now, before, "after {after:?}: the session changed");
}

/// Whether a refusal (the policy's or the database's) names `word`.
fn names_word(error: &ToolError, word: &str) -> bool {
    error
        .to_string()
        .to_lowercase()
        .contains(&word.to_lowercase())
}

#[tokio::test]
async fn every_attack_is_refused_with_its_rule_and_changes_nothing() {
    let attacks: Vec<_> = ATTACKS.iter().chain(MORE_ATTACKS).collect();
    assert!(attacks.len() >= 170, "{} attacks", attacks.len());
    let db = TestDb::seeded().await;
    let before = fingerprint(&db).await;
    let mut client = db.app().await;
    let clean = session_state(&client).await;
    let limits = Limits {
        statement_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let mut wrong = Vec::new();
    for (sql, word, class) in attacks {
        match run(&mut client, SEATTLE, sql, limits).await {
            // the policy's refusal, naming the rule
            Err(ToolError::InvalidArgument { argument, rule }) => {
                assert_eq!(argument, "postgresql_query");
                if !rule.to_lowercase().contains(&word.to_lowercase()) {
                    wrong.push(format!(
                        "{class:?} {sql:?}: expected {word:?}, got {rule:?}"
                    ));
                }
            }
            // the database's own, for what only the database knows (a
            // column it will not let this role read)
            Err(err) if matches!(class, Stats | Encoding) && names_word(&err, word) => {}
            other => wrong.push(format!("{class:?} {sql:?} was not refused: {other:?}")),
        }
        assert_connection_is_clean(&client, &clean, sql).await;
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    assert_eq!(fingerprint(&db).await, before, "the database changed");
}

/// Runs `sql` with the policy switched off, as `SEATTLE`, in a call's
/// transaction, then asks in the same transaction whether the caller now
/// sees another store's rows. Some(true) when the statement ran and the
/// identity changed; Some(false) when it ran and nothing changed; None when
/// the statement failed.
async fn forges_identity(client: &mut deadpool_postgres::ClientWrapper, sql: &str) -> Option<bool> {
    let tx = crate::helpers::open_as(client, SEATTLE).await;
    tx.batch_execute("SET LOCAL statement_timeout = '2s'")
        .await
        .unwrap();
    if tx.query(sql, &[]).await.is_err() {
        return None;
    }
    let others: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM retail.orders WHERE store_id <> 1) \
                  + (SELECT count(*) FROM retail.customers WHERE primary_store_id <> 1)",
            &[],
        )
        .await
        .map_or(0, |row| row.get(0));
    Some(others > 0)
}

/// The hostile corpus with the policy switched off: what the database's own
/// layers (the identity only the server can sign, the role's privileges,
/// the read-only transaction, rollback, the call's end, timeouts and caps)
/// stop by themselves, class by class. Writes and identity forgery must be
/// stopped, every one; the table this prints is the README's.
#[tokio::test]
async fn without_the_policy_the_database_stops_writes_and_identity_forgery() {
    // alone: its attacks cancel and terminate every backend of the role
    let db = TestDb::seeded_alone().await;
    let before = fingerprint(&db).await;
    let caller = Grant::from(CallerId::for_tests(SEATTLE));
    let limits = Limits {
        statement_timeout: Duration::from_millis(500),
        max_bytes: 64 * 1024,
        ..Limits::default()
    };
    let mut matrix: std::collections::BTreeMap<Class, (usize, usize)> = Default::default();
    let mut leaks = Vec::new();
    for (sql, _, class) in ATTACKS.iter().chain(MORE_ATTACKS) {
        let mut client = db.app().await;
        let clean = session_state(&client).await;
        let failed = raw_sql::execute_unchecked_for_tests(&client, &caller, sql, limits)
            .await
            .is_err();
        let stopped = match class {
            Write => failed,
            // ran or not, it must not have changed who the caller is
            Escape => forges_identity(&mut client, sql).await != Some(true),
            _ => failed,
        };
        let entry = matrix.entry(*class).or_default();
        entry.1 += 1;
        if stopped {
            entry.0 += 1;
        } else if matches!(class, Write | Escape) {
            leaks.push(format!("{class:?}: {sql:?}"));
        }
        // whatever ran, the call's end leaves the session as it found it,
        // but for what only the policy refuses (PREPARE, DECLARE … WITH HOLD)
        if *class != Control && !client.is_closed() {
            let after = session_state(&client).await;
            if after != clean {
                leaks.push(format!(
                    "{class:?}: {sql:?} left the session changed: {after}"
                ));
            }
        }
    }
    println!("class | attacks | stopped by the database alone");
    for (class, (stopped, total)) in &matrix {
        println!("{class:?} | {total} | {stopped}");
    }
    assert!(
        leaks.is_empty(),
        "without the policy:\n{}",
        leaks.join("\n")
    );
    assert_eq!(fingerprint(&db).await, before, "the database changed");
}

#[tokio::test]
async fn legitimate_analytics_pass() {
    assert!(LEGITIMATE.len() + MORE_LEGITIMATE.len() >= 51);
    let db = TestDb::seeded().await;
    let mut client = db.app().await;
    for sql in LEGITIMATE.iter().chain(MORE_LEGITIMATE) {
        let result = run(&mut client, HEAD_OFFICE, sql, Limits::default())
            .await
            .unwrap_or_else(|err| panic!("{sql:?} was refused: {err}"));
        assert!(
            result["c"].as_array().is_some_and(|c| !c.is_empty()),
            "{sql:?}: {result}"
        );
        assert_eq!(
            result["n"].as_u64().unwrap() as usize,
            result["r"].as_array().unwrap().len()
        );
    }
}

/// The policy lexes as PostgreSQL does with `standard_conforming_strings`
/// on. A database whose default says off would read `\'` as a quote, and
/// code the policy saw inside a string would run: the call pins it on.
#[tokio::test]
async fn the_policys_lexer_holds_whatever_the_database_defaults_to() {
    let db = TestDb::seeded().await;
    db.owner()
        .await
        .batch_execute(&format!(
            "ALTER DATABASE {} SET standard_conforming_strings = off",
            db.name
        ))
        .await
        .unwrap();
    let mut client = db.app().await;
    // with the setting on, two string literals; with it off, one string, a
    // call of pg_backend_pid() and a comment
    let sql = r#"SELECT 'a\' AS x, ' , pg_backend_pid() AS pid --'"#;
    let result = run(&mut client, SEATTLE, sql, Limits::default())
        .await
        .unwrap();
    assert_eq!(result["c"], json!(["x", "?column?"]), "{result}");
}

#[tokio::test]
async fn results_keep_their_types_and_respect_rls() {
    let db = TestDb::seeded().await;
    let mut client = db.app().await;
    let sql = concat!(
        "SELECT 1.50::numeric AS price, '2024-02-29'::date AS day, '00000000-0000-0000-0000-000000000001'::uuid AS id, ",
        "'{\"a\": [1, 2]}'::jsonb AS doc, ARRAY[1, 2] AS list, NULL::text AS nothing, 2::bigint AS n, 0.5::float8 AS f, true AS yes, 1 AS yes",
    );
    let result = run(&mut client, SEATTLE, sql, Limits::default())
        .await
        .unwrap();
    assert_eq!(
        result["c"],
        json!([
            "price", "day", "id", "doc", "list", "nothing", "n", "f", "yes", "yes"
        ])
    );
    assert_eq!(
        result["r"][0],
        json!(["1.50", "2024-02-29", "00000000-0000-0000-0000-000000000001", {"a": [1, 2]}, [1, 2], null, 2, 0.5, true, 1])
    );

    let stores = run(
        &mut client,
        SEATTLE,
        "SELECT DISTINCT store_id FROM retail.orders",
        Limits::default(),
    )
    .await
    .unwrap();
    assert_eq!(stores["r"], json!([[1]]), "Seattle sees only Seattle");
    let all = run(
        &mut client,
        HEAD_OFFICE,
        "SELECT count(DISTINCT store_id) FROM retail.orders",
        Limits::default(),
    )
    .await
    .unwrap();
    assert_eq!(all["r"], json!([[8]]));
}

#[tokio::test]
async fn results_are_bounded_by_rows_bytes_and_time() {
    let db = TestDb::seeded().await;
    let mut client = db.app().await;
    let clean = session_state(&client).await;
    let many = run(
        &mut client,
        HEAD_OFFICE,
        "SELECT * FROM retail.order_items",
        Limits::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        (many["n"].as_u64(), many["truncated"].as_bool()),
        (Some(500), Some(true))
    );
    let small = Limits {
        max_bytes: 10_000,
        ..Limits::default()
    };
    let wide = run(
        &mut client,
        HEAD_OFFICE,
        "SELECT repeat('x', 3000) FROM generate_series(1, 100)",
        small,
    )
    .await
    .unwrap();
    assert_eq!(wide["truncated"], true);
    assert!(wide["n"].as_u64().unwrap() < 5, "{}", wide["n"]);
    // (generate_series in the select list yields rows one at a time; in
    // FROM it would make all of them first)
    for huge in [
        "SELECT generate_series(1, 100000000) AS n",
        // rows of no columns are rows too
        "SELECT FROM (SELECT generate_series(1, 100000000)) AS s",
    ] {
        let result = run(&mut client, HEAD_OFFICE, huge, Limits::default())
            .await
            .unwrap();
        assert_eq!(
            (result["n"].as_u64(), result["truncated"].as_bool()),
            (Some(500), Some(true)),
            "{huge}"
        );
    }

    let quick = Limits {
        statement_timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let err = run(
        &mut client,
        HEAD_OFFICE,
        "SELECT count(*) FROM retail.order_items a, retail.order_items b, retail.order_items c",
        quick,
    )
    .await
    .unwrap_err();
    assert_eq!(err, ToolError::Timeout);
    assert!(err.to_string().contains("statement timeout"));
    assert_connection_is_clean(&client, &clean, "the timeout").await;
}

#[tokio::test]
async fn database_errors_carry_postgresql_message_and_position() {
    let db = TestDb::seeded().await;
    let mut client = db.app().await;
    let err = run(
        &mut client,
        SEATTLE,
        "SELECT ordr_date FROM retail.orders",
        Limits::default(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("column \"ordr_date\" does not exist") && err.contains("at character 8"),
        "{err}"
    );
    let err = run(&mut client, SEATTLE, "SELECT 1 / 0", Limits::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("division by zero"), "{err}");
}

/// The node types of a statement's parse tree, as the policy walks them.
fn node_types(sql: &str) -> std::collections::BTreeSet<String> {
    fn collect(value: &Value, out: &mut std::collections::BTreeSet<String>) {
        match value {
            Value::Array(items) => items.iter().for_each(|item| collect(item, out)),
            Value::Object(map) => {
                for (key, child) in map {
                    if key.starts_with(|c: char| c.is_ascii_uppercase()) {
                        out.insert(key.clone());
                    } else if key == "type_name" && child.get("names").is_some() {
                        // a cast's type is a message held by a field
                        out.insert("TypeName".to_owned());
                    }
                    collect(child, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Default::default();
    if let Ok(parsed) = pg_query::parse(sql, pg_query::ParserOptions::default()) {
        for statement in &parsed.protobuf.stmts {
            collect(&serde_json::to_value(&statement.stmt).unwrap(), &mut out);
        }
    }
    out
}

/// Every node type the hostile corpus and the legitimate queries produce
/// is classified, and every one that can reach a function (or a relation)
/// is exercised by some hostile input: no path is left unchecked or
/// untested.
#[test]
fn every_syntax_that_reaches_a_function_is_attacked() {
    use sqlmcp::sql_policy::{ALL_NODE_NAMES, NodeClass, class_of};
    let attacked: std::collections::BTreeSet<String> = ATTACKS
        .iter()
        .chain(MORE_ATTACKS)
        .flat_map(|(sql, _, _)| node_types(sql))
        .collect();
    let legitimate: std::collections::BTreeSet<String> = LEGITIMATE
        .iter()
        .chain(MORE_LEGITIMATE)
        .flat_map(|sql| node_types(sql))
        .collect();
    for node in attacked.iter().chain(&legitimate) {
        if ["Ival", "Fval", "Sval", "Boolval", "Bsval"].contains(&node.as_str()) {
            continue;
        }
        assert!(
            ALL_NODE_NAMES.contains(&node.as_str()),
            "{node} is not classified"
        );
    }
    for node in legitimate
        .iter()
        .filter(|n| ALL_NODE_NAMES.contains(&n.as_str()))
    {
        assert_ne!(
            class_of(node),
            NodeClass::Refused,
            "legitimate queries use {node}"
        );
    }
    let untested: Vec<&&str> = ALL_NODE_NAMES
        .iter()
        .filter(|n| class_of(n) == NodeClass::Reaches && !attacked.contains(**n))
        .collect();
    assert!(untested.is_empty(), "no hostile input uses {untested:?}");
}
