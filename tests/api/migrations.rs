use refinery::Migration;
use sqlmcp::migrate;

use crate::helpers::{TestDb, sqlmcp, stderr, stdout};

#[tokio::test]
async fn migrate_applies_everything_then_is_a_no_op() {
    let db = TestDb::empty().await;
    let url = db.url();

    let first = sqlmcp(&["migrate"], &[("DATABASE_URL", &url)]);
    assert!(first.status.success(), "{}", stderr(&first));
    for migration in migrate::embedded() {
        assert!(
            stdout(&first).contains(&format!("applied {migration}")),
            "{migration} not reported in:\n{}",
            stdout(&first)
        );
    }

    let second = sqlmcp(&["migrate", "--database-url", &url], &[]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(
        stdout(&second).contains("up to date"),
        "{}",
        stdout(&second)
    );
    assert!(!stdout(&second).contains("applied"), "{}", stdout(&second));

    let owner = db.owner().await;
    let tables: i64 = owner
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'retail'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 10);
    let history: i64 = owner
        .query_one("SELECT count(*) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(history, migrate::embedded().len() as i64);
}

#[tokio::test]
async fn migrate_without_a_database_url_says_what_is_missing() {
    let output = sqlmcp(&["migrate"], &[]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("--database-url"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test]
async fn unreachable_database_is_a_clear_error() {
    let output = sqlmcp(
        &[
            "migrate",
            "--database-url",
            "postgres://nobody:secret@127.0.0.1:9/none",
        ],
        &[],
    );
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("cannot connect to PostgreSQL at nobody@127.0.0.1:9/none"),
        "{err}"
    );
    assert!(!err.contains("secret"), "the password leaked: {err}");
}

#[tokio::test]
async fn a_failing_migration_names_file_line_and_error_and_is_rolled_back() {
    let db = TestDb::empty().await;
    let mut client = db.owner().await;
    let good = Migration::unapplied("V1__good", "CREATE TABLE good (x int);").unwrap();
    let bad = Migration::unapplied(
        "V2__bad",
        "CREATE TABLE half_done (y int);\n\nCREATE TABLE broken (z no_such_type);\n",
    )
    .unwrap();

    let err = migrate::run_migrations(&mut client, &[good, bad])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("migration V2__bad failed and was rolled back"),
        "{err}"
    );
    assert!(
        err.contains("1 earlier migration(s) of this run were applied"),
        "{err}"
    );
    assert!(
        err.contains("migrations/V2__bad.sql line 3: CREATE TABLE broken (z no_such_type);"),
        "{err}"
    );
    assert!(
        err.contains("type \"no_such_type\" does not exist"),
        "{err}"
    );
    assert!(err.contains("SQLSTATE 42704"), "{err}");

    let exists = |table: &'static str| {
        let client = &client;
        async move {
            client
                .query_one("SELECT to_regclass($1) IS NOT NULL", &[&table])
                .await
                .unwrap()
                .get::<_, bool>(0)
        }
    };
    assert!(exists("good").await, "the earlier migration stays applied");
    assert!(
        !exists("half_done").await,
        "nothing of the failed migration is left"
    );
}

#[tokio::test]
async fn refuses_a_database_whose_history_diverges() {
    let db = TestDb::migrated().await;
    db.owner()
        .await
        .batch_execute("UPDATE refinery_schema_history SET checksum = '1' WHERE version = 2")
        .await
        .unwrap();
    let output = sqlmcp(&["migrate", "--database-url", &db.url()], &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("differs from this binary's V2__application_role"),
        "{err}"
    );
}

#[tokio::test]
async fn refuses_a_database_migrated_by_a_newer_binary() {
    let db = TestDb::migrated().await;
    db.record_migration_from_a_newer_binary().await;
    let output = sqlmcp(&["migrate", "--database-url", &db.url()], &[]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("V999__from_the_future"), "{err}");
    assert!(err.contains("newer sqlmcp"), "{err}");
}

#[tokio::test]
async fn concurrent_migrations_take_turns() {
    let db = TestDb::empty().await;
    let (mut a, mut b) = (db.owner().await, db.owner().await);
    let (ra, rb) = tokio::join!(migrate::run(&mut a), migrate::run(&mut b));
    let (ra, rb) = (ra.expect("first runner"), rb.expect("second runner"));
    assert_eq!(
        ra.len() + rb.len(),
        migrate::embedded().len(),
        "each migration applied exactly once: {ra:?} {rb:?}"
    );
}

#[tokio::test]
async fn tables_belong_to_the_migrating_role_and_the_app_role_owns_nothing() {
    let db = TestDb::migrated().await;
    let owner = db.owner().await;
    let rows = owner
        .query(
            "SELECT c.relname::text, pg_get_userbyid(c.relowner)::text = current_user \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'retail' AND c.relkind IN ('r', 'v', 'm', 'S')",
            &[],
        )
        .await
        .unwrap();
    assert!(rows.len() >= 9);
    for row in &rows {
        assert!(
            row.get::<_, bool>(1),
            "{} is not owned by the migrating role",
            row.get::<_, String>(0)
        );
    }
    let owned: i64 = owner
        .query_one(
            "SELECT (SELECT count(*) FROM pg_class WHERE relowner = r.oid) \
                  + (SELECT count(*) FROM pg_namespace WHERE nspowner = r.oid) \
                  + (SELECT count(*) FROM pg_proc WHERE proowner = r.oid) \
             FROM pg_roles r WHERE r.rolname = 'store_manager'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(owned, 0, "store_manager owns objects");
    let (superuser, bypass): (bool, bool) = {
        let row = owner
            .query_one(
                "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'store_manager'",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert!(!superuser && !bypass);
}

/// The migrations and the seed also work for an owner that is not a
/// superuser, and FORCE ROW LEVEL SECURITY then applies to that owner too.
#[tokio::test]
async fn a_non_superuser_owner_can_migrate_and_seed_and_is_itself_subject_to_rls() {
    let admin = crate::helpers::connect(&crate::helpers::admin_config()).await;
    let role = format!("sqlmcp_owner_{}", std::process::id());
    let password = "owner-test-password";
    let db = TestDb::empty().await;
    admin
        .batch_execute(&format!(
            "DROP ROLE IF EXISTS {role}; \
             CREATE ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOBYPASSRLS; \
             ALTER DATABASE {db} OWNER TO {role};",
            db = db.name
        ))
        .await
        .unwrap();
    // The extension is created by a superuser where it is not trusted.
    db.owner()
        .await
        .batch_execute("CREATE EXTENSION IF NOT EXISTS vector")
        .await
        .unwrap();

    let mut config = db.owner_config();
    config.user(&role).password(password);
    let url = crate::helpers::url_of(&config);
    let migrated = sqlmcp(&["migrate", "--database-url", &url], &[]);
    let seeded = sqlmcp(&["seed", "--scale", "tiny", "--database-url", &url], &[]);

    let mut as_owner = crate::helpers::connect(&config).await;
    let hidden = crate::helpers::count_as(&mut as_owner, None, "retail.orders").await;
    let all = crate::helpers::count_as(
        &mut as_owner,
        Some(crate::helpers::HEAD_OFFICE),
        "retail.orders",
    )
    .await;
    let forced: i64 = as_owner
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'retail' AND c.relforcerowsecurity",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    drop(as_owner);
    drop(db);
    admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {role}"))
        .await
        .unwrap();

    assert!(migrated.status.success(), "{}", stderr(&migrated));
    assert!(seeded.status.success(), "{}", stderr(&seeded));
    assert_eq!(hidden, 0, "the owner without an identity sees no orders");
    assert!(all > 0, "the owner as head office sees the orders");
    assert_eq!(
        forced, 4,
        "FORCE ROW LEVEL SECURITY is back on after seeding"
    );
}

#[tokio::test]
async fn migrate_can_set_the_application_role_password() {
    // Set it to the password the tests already use, so nothing else changes.
    let app = crate::helpers::TestDb::migrated().await;
    let app_config = app.app_config();
    let password = String::from_utf8_lossy(
        app_config
            .get_password()
            .expect("SQLMCP_APP_DATABASE_URL carries a password"),
    )
    .into_owned();
    let output = sqlmcp(
        &["migrate", "--database-url", &app.url()],
        &[("SQLMCP_APP_PASSWORD", &password)],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stdout(&output).contains("set the password of role store_manager"));
    assert!(!stdout(&output).contains(&password) && !stderr(&output).contains(&password));
    let client = app.app().await;
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(user, "store_manager");
}
