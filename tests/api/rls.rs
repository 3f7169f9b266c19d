use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use sqlmcp::caller::{CallerId, Grant};
use tokio_postgres::NoTls;

use crate::helpers::{
    EAST_REGIONAL, HEAD_OFFICE, ONLINE, ONLINE_STORE_ID, REDMOND, REDMOND_STORE_ID, SEATTLE,
    SEATTLE_STORE_ID, TENANT_TABLES, TestDb, count_as, message, query_as, sqlstate,
};

/// Rows of each tenant table per store, counted as the owner (head office).
async fn counts_for_store(db: &TestDb, store_id: Option<i32>) -> Vec<i64> {
    let mut owner = db.owner().await;
    let mut counts = Vec::new();
    for (table, column) in TENANT_TABLES {
        let filter = store_id.map_or("true".to_owned(), |id| format!("{column} = {id}"));
        let rows = query_as(
            &mut owner,
            Some(HEAD_OFFICE),
            &format!("SELECT count(*) FROM {table} WHERE {filter}"),
        )
        .await
        .unwrap();
        counts.push(rows[0].get(0));
    }
    counts
}

async fn visible_counts(db: &TestDb, caller: Option<&str>) -> Vec<i64> {
    let mut app = db.app().await;
    let mut counts = Vec::new();
    for (table, _) in TENANT_TABLES {
        counts.push(count_as(&mut app, caller, table).await);
    }
    counts
}

#[tokio::test]
async fn a_store_manager_sees_only_their_store() {
    let db = TestDb::seeded().await;
    for (caller, store_id) in [
        (SEATTLE, SEATTLE_STORE_ID),
        (REDMOND, REDMOND_STORE_ID),
        (ONLINE, ONLINE_STORE_ID),
    ] {
        let expected = counts_for_store(&db, Some(store_id)).await;
        assert!(
            expected.iter().all(|&n| n > 0),
            "store {store_id} has rows in every table"
        );
        assert_eq!(
            visible_counts(&db, Some(caller)).await,
            expected,
            "caller {caller}"
        );

        // and not a single row of another store
        let mut app = db.app().await;
        for (table, column) in TENANT_TABLES {
            let foreign = query_as(
                &mut app,
                Some(caller),
                &format!("SELECT count(*) FROM {table} WHERE {column} IS DISTINCT FROM {store_id}"),
            )
            .await
            .unwrap()[0]
                .get::<_, i64>(0);
            assert_eq!(foreign, 0, "{caller} sees other stores' rows in {table}");
        }
    }
}

#[tokio::test]
async fn head_office_sees_every_row() {
    let db = TestDb::seeded().await;
    let all = counts_for_store(&db, None).await;
    assert_eq!(visible_counts(&db, Some(HEAD_OFFICE)).await, all);
}

#[tokio::test]
async fn unknown_malformed_or_missing_ids_see_no_tenant_rows_and_get_no_error() {
    let db = TestDb::seeded().await;
    let none = vec![0; TENANT_TABLES.len()];
    for caller in [
        Some("11111111-2222-4333-8444-555555555555"),
        Some("not-a-uuid"),
        Some("' OR 1=1 --"),
        Some(""),
        Some("00000000-0000-0000-0000-00000000000"),
        Some("{00000000-0000-0000-0000-000000000000}"),
        None,
    ] {
        assert_eq!(visible_counts(&db, caller).await, none, "caller {caller:?}");
    }
}

#[tokio::test]
async fn ids_are_matched_case_insensitively() {
    let db = TestDb::seeded().await;
    let expected = counts_for_store(&db, Some(SEATTLE_STORE_ID)).await;
    assert_eq!(
        visible_counts(&db, Some(&SEATTLE.to_uppercase())).await,
        expected
    );
}

#[tokio::test]
async fn reference_tables_are_readable_by_everyone() {
    let db = TestDb::seeded().await;
    let mut app = db.app().await;
    for caller in [None, Some(SEATTLE), Some("not-a-uuid")] {
        assert_eq!(count_as(&mut app, caller, "retail.stores").await, 8);
        assert!(count_as(&mut app, caller, "retail.categories").await >= 8);
        assert!(count_as(&mut app, caller, "retail.product_types").await >= 24);
        assert!(count_as(&mut app, caller, "retail.products").await >= 300);
        // one vector per product of the local model, for everyone
        assert_eq!(
            count_as(&mut app, caller, "retail.product_description_embeddings").await,
            count_as(&mut app, caller, "retail.products").await
        );
    }
}

#[tokio::test]
async fn the_app_role_cannot_write_even_as_head_office() {
    let db = TestDb::seeded().await;
    let before = counts_for_store(&db, None).await;
    let mut app = db.app().await;
    let statements = [
        "INSERT INTO retail.orders (customer_id, store_id, order_date) VALUES (1, 1, '2024-01-01')",
        "UPDATE retail.orders SET order_date = '2024-01-01'",
        "DELETE FROM retail.order_items",
        "TRUNCATE retail.inventory",
        "UPDATE retail.products SET base_price = 0",
        "INSERT INTO retail.stores (store_name, rls_user_id) VALUES ('x', gen_random_uuid())",
        "CREATE TABLE retail.sneaky (x int)",
        "CREATE TABLE public.sneaky (x int)",
        "CREATE FUNCTION retail.f() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "ALTER TABLE retail.orders DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE retail.orders NO FORCE ROW LEVEL SECURITY",
        "DROP POLICY orders_by_store ON retail.orders",
    ];
    for statement in statements {
        // a read-write transaction that commits: the privileges alone must stop it
        let tx = app.transaction().await.unwrap();
        sqlmcp::db::set_caller(&*tx, &Grant::ALL).await.unwrap();
        let err = tx
            .batch_execute(statement)
            .await
            .expect_err(&format!("`{statement}` must be refused"));
        assert_eq!(sqlstate(&err), "42501", "`{statement}`: {}", message(&err));
        drop(tx);
    }

    // Granting what one holds without GRANT OPTION is only a warning in
    // PostgreSQL: check that it granted nothing.
    app.batch_execute("GRANT SELECT ON retail.orders TO PUBLIC")
        .await
        .unwrap();
    let owner = db.owner().await;
    let public_grants: i64 = owner
        .query_one(
            "SELECT count(*) FROM information_schema.role_table_grants \
             WHERE table_schema = 'retail' AND grantee = 'PUBLIC'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(public_grants, 0);
    let stray_tables: i64 = owner
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname = 'sneaky'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stray_tables, 0);
    assert_eq!(counts_for_store(&db, None).await, before, "no row changed");
}

#[tokio::test]
async fn the_app_role_cannot_become_the_owner_or_turn_rls_off() {
    let db = TestDb::seeded().await;
    let owner_name: String = db
        .owner()
        .await
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    let app = db.app().await;

    for statement in [
        format!("SET ROLE {owner_name}"),
        format!("SET SESSION AUTHORIZATION {owner_name}"),
        "SET ROLE postgres".to_owned(),
    ] {
        let err = app.batch_execute(&statement).await.expect_err(&statement);
        // 42501: permission denied; 22023: no such role in this cluster
        assert!(
            ["42501", "22023"].contains(&sqlstate(&err).as_str()),
            "`{statement}`: {}",
            message(&err)
        );
    }

    // row_security = off makes a query that RLS would filter fail, never
    // return everything
    app.batch_execute("SET row_security = off").await.unwrap();
    let err = app
        .query("SELECT count(*) FROM retail.orders", &[])
        .await
        .expect_err("RLS cannot be switched off");
    assert_eq!(sqlstate(&err), "42501", "{}", message(&err));
    assert!(
        message(&err).contains("row-level security"),
        "{}",
        message(&err)
    );
}

/// A pool of one connection, alternating identities: what one transaction set
/// is gone in the next, so nothing leaks between callers.
#[tokio::test]
async fn identity_does_not_leak_across_pooled_transactions() {
    let db = TestDb::seeded().await;
    let expected_seattle = counts_for_store(&db, Some(SEATTLE_STORE_ID)).await[1];
    let expected_redmond = counts_for_store(&db, Some(REDMOND_STORE_ID)).await[1];
    let expected_all = counts_for_store(&db, None).await[1];

    let manager = Manager::from_config(
        db.app_config(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(1).build().unwrap();
    let mut backend_pids = std::collections::HashSet::new();

    // the setting holds the signed store set: `*` for every store
    let sequence = [
        (Some(SEATTLE), expected_seattle, "1"),
        (None, 0, ""),
        (Some(HEAD_OFFICE), expected_all, "*"),
        (None, 0, ""),
        (Some(REDMOND), expected_redmond, "6"),
        (Some(SEATTLE), expected_seattle, "1"),
        (None, 0, ""),
    ];
    for round in 0..3 {
        for (caller, expected, signed) in sequence {
            let mut conn = pool.get().await.unwrap();
            let tx = conn
                .build_transaction()
                .read_only(true)
                .start()
                .await
                .unwrap();
            if let Some(caller) = caller {
                sqlmcp::db::set_caller(&*tx, &CallerId::for_tests(caller).into())
                    .await
                    .unwrap();
            }
            let row = tx
                .query_one(
                    "SELECT count(*), pg_backend_pid(), \
                            split_part(coalesce(current_setting('sqlmcp.caller', true), ''), ':', 1) \
                     FROM retail.orders",
                    &[],
                )
                .await
                .unwrap();
            tx.commit().await.unwrap();
            let (count, pid, setting): (i64, i32, String) = (row.get(0), row.get(1), row.get(2));
            backend_pids.insert(pid);
            assert_eq!(count, expected, "round {round}, caller {caller:?}");
            assert_eq!(setting, signed, "round {round}: setting leaked");
        }
    }
    assert_eq!(backend_pids.len(), 1, "all calls shared one connection");
}

/// Rows of each tenant table of any of `stores`, counted as head office.
async fn counts_for_stores(db: &TestDb, stores: &[i32]) -> Vec<i64> {
    let list = format!(
        "{{{}}}",
        stores
            .iter()
            .map(i32::to_string)
            .collect::<Vec<_>>()
            .join(",")
    );
    let mut owner = db.owner().await;
    let mut counts = Vec::new();
    for (table, column) in TENANT_TABLES {
        let rows = query_as(
            &mut owner,
            Some(HEAD_OFFICE),
            &format!("SELECT count(*) FROM {table} WHERE {column} = ANY ('{list}')"),
        )
        .await
        .unwrap();
        counts.push(rows[0].get(0));
    }
    counts
}

/// What each tenant table shows under `grant`, straight from the database:
/// no server, no policy, only the signed set.
async fn counts_under(db: &TestDb, grant: &Grant) -> (Vec<i64>, Option<Vec<i32>>) {
    let mut app = db.app().await;
    let tx = app
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .unwrap();
    let visible = sqlmcp::db::set_caller(&*tx, grant).await.unwrap();
    let mut counts = Vec::new();
    for (table, _) in TENANT_TABLES {
        counts.push(
            tx.query_one(&format!("SELECT count(*) FROM {table}"), &[])
                .await
                .unwrap()
                .get(0),
        );
    }
    (counts, visible)
}

#[tokio::test]
async fn a_set_of_stores_sees_exactly_the_union_of_their_rows() {
    let db = TestDb::seeded().await;
    let listed = |stores: &[i32], regions: &[&str]| Grant::Listed {
        stores: stores.iter().copied().collect(),
        regions: regions.iter().map(|r| r.to_string()).collect(),
    };
    let cases = [
        (
            Grant::from(CallerId::for_tests(EAST_REGIONAL)),
            vec![2, 4, 6, 7],
        ),
        (listed(&[1, 7], &[]), vec![1, 7]),
        (listed(&[], &["west"]), vec![1, 3, 5]),
        (listed(&[8], &["EAST"]), vec![2, 4, 6, 7, 8]),
        (listed(&[0, -1, 999], &["Atlantis", ""]), vec![]),
        (listed(&[], &[]), vec![]),
    ];
    for (grant, stores) in cases {
        let (counts, visible) = counts_under(&db, &grant).await;
        assert_eq!(counts, counts_for_stores(&db, &stores).await, "{grant}");
        assert_eq!(
            visible,
            Some(stores.clone()),
            "{grant}: what open_call returns"
        );
        if !stores.is_empty() {
            assert!(
                counts.iter().all(|&n| n > 0),
                "{grant}: rows in every table"
            );
        }
    }
    let (counts, visible) = counts_under(&db, &Grant::ALL).await;
    assert_eq!(counts, counts_for_store(&db, None).await);
    assert_eq!(visible, None, "every store");
}
