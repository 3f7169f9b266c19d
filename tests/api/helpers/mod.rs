//! Test databases: each test gets its own, cloned from a template that is
//! migrated and seeded once, and dropped when the test ends. The server
//! under test runs in the test's process ([`server`]) or as the binary
//! ([`process`]).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use std::sync::{Arc, LazyLock};

use deadpool_postgres::ClientWrapper as Client;
use rand::Rng;
use sqlmcp::embeddings::local::LocalEmbedder;
use sqlmcp::embeddings::{Embedder, Settings};
use sqlmcp::{backfill, db, migrate, seed};
use tokio_postgres::Config;

pub mod balancer;
pub mod cluster;
pub mod process;
pub mod redis_server;
pub mod server;

pub const HEAD_OFFICE: &str = "00000000-0000-0000-0000-000000000000";
pub const SEATTLE: &str = "f47ac10b-58cc-4372-a567-0e02b2c3d479";
pub const REDMOND: &str = "e7f8a9b0-c1d2-3e4f-5678-90abcdef1234";
pub const ONLINE: &str = "2f4e6d8c-1a3b-5c7e-9f0a-b2d4f6e8c0a2";
/// The regional manager of East: Bellevue, Spokane, Redmond and Kirkland.
pub const EAST_REGIONAL: &str = "7c3e5a9b-2d4f-4e6a-8b1c-3d5e7f9a1b2c";
pub const EAST_STORE_IDS: [i64; 4] = [2, 4, 6, 7];
pub const SEATTLE_STORE_ID: i32 = 1;
pub const REDMOND_STORE_ID: i32 = 6;
pub const ONLINE_STORE_ID: i32 = 8;

/// The tables under row-level security, with the column naming their store.
pub const TENANT_TABLES: [(&str, &str); 4] = [
    ("retail.customers", "primary_store_id"),
    ("retail.orders", "store_id"),
    ("retail.order_items", "store_id"),
    ("retail.inventory", "store_id"),
];

const TEMPLATE_LOCK_KEY: i64 = 0x5351_4c4d_4350_0002;

const HOW_TO_START: &str = "integration tests need PostgreSQL with pgvector: run `scripts/test`, \
     or start one with `scripts/dev-db start` and `eval \"$(scripts/dev-db env)\"` \
     (DATABASE_URL: a role that may create databases; SQLMCP_APP_DATABASE_URL: the store_manager role; \
     SQLMCP_AUDIT_DATABASE_URL: the sqlmcp_audit role)";

fn env_config(var: &str) -> Config {
    let url = std::env::var(var).unwrap_or_else(|_| panic!("{var} is not set; {HOW_TO_START}"));
    db::parse_database_url(&url).unwrap_or_else(|err| panic!("{var}: {err}"))
}

/// The administrative connection settings (a role that can create databases).
pub fn admin_config() -> Config {
    env_config("DATABASE_URL")
}

pub async fn connect(config: &Config) -> Client {
    db::connect(config)
        .await
        .unwrap_or_else(|err| panic!("{err:#}\n{HOW_TO_START}"))
}

/// The local model, loaded once for all tests of this binary.
pub fn local_embedder() -> Arc<dyn Embedder> {
    static MODEL: LazyLock<Arc<LocalEmbedder>> = LazyLock::new(|| {
        let dir = model_dir();
        Arc::new(LocalEmbedder::open(&dir).unwrap_or_else(|err| {
            panic!("{err:#}\n(scripts/test fetches the model before it runs the tests)")
        }))
    });
    MODEL.clone()
}

/// Where the tests find the local model: SQLMCP_MODEL_DIR or the default.
pub fn model_dir() -> std::path::PathBuf {
    std::env::var_os("SQLMCP_MODEL_DIR")
        .map(Into::into)
        .unwrap_or_else(Settings::default_model_dir)
}

/// Identifies the template by everything that shapes its content, so that a
/// changed migration or generator gets a fresh template.
fn template_name() -> String {
    let mut hasher = DefaultHasher::new();
    for migration in migrate::embedded() {
        migration.to_string().hash(&mut hasher);
        migration.checksum().hash(&mut hasher);
    }
    include_str!("../../../src/seed/assortment.tsv").hash(&mut hasher);
    include_str!("../../../src/seed/assortment.rs").hash(&mut hasher);
    include_str!("../../../src/seed/generate.rs").hash(&mut hasher);
    include_str!("../../../src/seed/mod.rs").hash(&mut hasher);
    include_str!("../../../src/backfill.rs").hash(&mut hasher);
    include_str!("../../../src/embeddings/local.rs").hash(&mut hasher);
    format!("sqlmcp_tpl_{:016x}", hasher.finish())
}

fn random_name(prefix: &str) -> String {
    format!("{prefix}_{:012x}", rand::rng().random::<u64>() >> 16)
}

/// A database that exists for one test.
pub struct TestDb {
    pub name: String,
    admin: Config,
    /// Given back after the database is dropped.
    _share: Held,
}

/// Every test connects as the one application role of the cluster, and a
/// role may cancel and terminate its own backends: a test that does so (the
/// hostile corpus without the policy) would reach other tests' connections.
/// Such a test runs alone. Every other test database holds a share while it
/// exists; a database made alone waits until none is held and blocks new ones
/// until it is dropped. Shares are granted whenever nothing runs alone, so a
/// test that makes a second database never waits behind one that would.
struct Shares {
    /// Databases holding a share, and whether one runs alone.
    state: std::sync::Mutex<(usize, bool)>,
    changed: tokio::sync::Notify,
}

static SHARES: LazyLock<Shares> = LazyLock::new(|| Shares {
    state: Default::default(),
    changed: tokio::sync::Notify::new(),
});

#[derive(Clone, Copy)]
enum Share {
    Shared,
    Alone,
}

/// A share of [`SHARES`], given back when dropped.
struct Held(Share);

impl Drop for Held {
    fn drop(&mut self) {
        SHARES.give_back(self.0);
    }
}

impl Shares {
    async fn take(&self, share: Share) -> Held {
        loop {
            // made before looking, so that a change meanwhile still wakes it
            let changed = self.changed.notified();
            {
                let mut state = self.state.lock().unwrap();
                let (held, alone) = &mut *state;
                match share {
                    Share::Shared if !*alone => {
                        *held += 1;
                        return Held(share);
                    }
                    Share::Alone if !*alone && *held == 0 => {
                        *alone = true;
                        return Held(share);
                    }
                    _ => {}
                }
            }
            changed.await;
        }
    }

    fn give_back(&self, share: Share) {
        let mut state = self.state.lock().unwrap();
        match share {
            Share::Shared => state.0 -= 1,
            Share::Alone => state.1 = false,
        }
        drop(state);
        self.changed.notify_waiters();
    }
}

impl TestDb {
    /// A migrated database seeded at tiny scale with the default seed, every
    /// product embedded with the local model.
    pub async fn seeded() -> TestDb {
        let template = ensure_template().await;
        TestDb::create(&format!("TEMPLATE {template}"), Share::Shared).await
    }

    /// [`TestDb::seeded`] for a test that signals other backends: it waits
    /// until no other test has a database, and none makes one until it is
    /// dropped (see [`Shares`]).
    pub async fn seeded_alone() -> TestDb {
        let template = ensure_template().await;
        TestDb::create(&format!("TEMPLATE {template}"), Share::Alone).await
    }

    /// An empty database: no migrations, no data.
    pub async fn empty() -> TestDb {
        TestDb::create("", Share::Shared).await
    }

    /// A migrated database without data.
    pub async fn migrated() -> TestDb {
        let db = TestDb::empty().await;
        migrate::run(&mut *db.owner().await)
            .await
            .expect("migrations apply");
        db
    }

    async fn create(options: &str, share: Share) -> TestDb {
        let share = SHARES.take(share).await;
        let admin = admin_config();
        let name = random_name("sqlmcp_test");
        connect(&admin)
            .await
            .batch_execute(&format!("CREATE DATABASE {name} {options}"))
            .await
            .unwrap_or_else(|err| panic!("cannot create test database {name}: {err}"));
        TestDb {
            name,
            admin,
            _share: share,
        }
    }

    /// Connection settings of the owning (migrating) role.
    pub fn owner_config(&self) -> Config {
        let mut config = self.admin.clone();
        config.dbname(&self.name);
        config
    }

    /// Connection settings of the application role `store_manager`.
    pub fn app_config(&self) -> Config {
        let mut config = env_config("SQLMCP_APP_DATABASE_URL");
        config.dbname(&self.name);
        config
    }

    /// Connection settings of the audit log's insert-only role `sqlmcp_audit`.
    pub fn audit_config(&self) -> Config {
        let mut config = env_config("SQLMCP_AUDIT_DATABASE_URL");
        config.dbname(&self.name);
        config
    }

    pub async fn owner(&self) -> Client {
        connect(&self.owner_config()).await
    }

    pub async fn app(&self) -> Client {
        connect(&self.app_config()).await
    }

    pub fn url(&self) -> String {
        url_of(&self.owner_config())
    }

    /// Makes the database look migrated by a newer sqlmcp (V999).
    pub async fn record_migration_from_a_newer_binary(&self) {
        self.owner()
            .await
            .batch_execute(
                "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
                 VALUES (999, 'from_the_future', '2030-01-01T00:00:00Z', '1')",
            )
            .await
            .unwrap();
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Drop runs outside any async context we could borrow.
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async move {
                    let client = db::connect(&admin).await?;
                    client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await?;
                    anyhow::Ok(())
                })
        })
        .join();
        if let Ok(Err(err)) = dropped {
            eprintln!("warning: cannot drop test database {}: {err:#}", self.name);
        }
    }
}

/// An exclusive lock on a table, held by the owner in an open transaction
/// until released: calls that read the table wait meanwhile.
pub struct TableLock(Client);

impl TableLock {
    pub async fn take(db: &TestDb, table: &str) -> TableLock {
        let owner = db.owner().await;
        owner
            .batch_execute(&format!(
                "BEGIN; LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"
            ))
            .await
            .unwrap();
        TableLock(owner)
    }

    pub async fn release(self) {
        self.0.batch_execute("ROLLBACK").await.unwrap();
    }
}

/// Rebuilds a `postgres://` URL from a `Config` (for the CLI under test).
pub fn url_of(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        _ => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let password = config
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}{password}@{host}:{port}/{dbname}")
}

/// Creates the template database once per content version.
async fn ensure_template() -> String {
    let name = template_name();
    let admin = admin_config();
    let client = connect(&admin).await;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK_KEY])
        .await
        .expect("template lock");
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await
        .expect("pg_database")
        .is_some();
    if !exists {
        drop_stale_templates(&client).await;
        build_template(&client, &admin, &name).await;
    }
    client
        .batch_execute(&format!(
            "COMMENT ON DATABASE {name} IS 'used {}'",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        ))
        .await
        .expect("mark the template used");
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK_KEY])
        .await
        .expect("template unlock");
    name
}

/// Templates of older content are of no further use, once no other
/// checkout sharing this cluster has built or used one for a day.
async fn drop_stale_templates(client: &Client) {
    let stale = client
        .query(
            "SELECT datname FROM pg_database d WHERE datname LIKE 'sqlmcp\\_tpl\\_%' \
               AND substring(shobj_description(d.oid, 'pg_database') FROM '^used (\\d+)$')::bigint \
                   < extract(epoch FROM now()) - 86400",
            &[],
        )
        .await
        .expect("pg_database");
    for row in stale {
        let stale: String = row.get(0);
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {stale} WITH (FORCE)"))
            .await;
    }
}

/// Builds the template under a temporary name and renames it when complete,
/// so that an interrupted build never passes for a template.
async fn build_template(client: &Client, admin: &Config, name: &str) {
    let building = format!("{name}_building");
    // one statement per call: neither may run inside a transaction block
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
        .await
        .expect("drop an unfinished template database");
    client
        .batch_execute(&format!("CREATE DATABASE {building}"))
        .await
        .expect("create template database");
    let mut config = admin.clone();
    config.dbname(&building);
    fill_template(&config).await;
    // Renaming waits for nothing: the builder's connection is closed, but
    // the server may take a moment to notice.
    let mut renamed = false;
    for _ in 0..50 {
        if client
            .batch_execute(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .await
            .is_ok()
        {
            renamed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(renamed, "cannot rename {building} to {name}");
}

/// Migrates, seeds and embeds the database of `config`; its connection is
/// closed on return, which renaming the database needs.
async fn fill_template(config: &Config) {
    let mut owner = connect(config).await;
    migrate::run(&mut owner).await.expect("migrate template");
    let options = seed::SeedOptions {
        scale: seed::Scale::Tiny,
        seed: seed::DEFAULT_SEED,
        if_seeded: seed::IfSeeded::Refuse,
        progress: false,
    };
    seed::seed(&mut owner, options)
        .await
        .expect("seed template");
    backfill::run(&mut owner, local_embedder().as_ref(), 32, false)
        .await
        .expect("embed the template's products");
}

/// Opens a read-only transaction for `caller` with the identity statement
/// the server sends.
pub async fn open_as<'a>(
    client: &'a mut tokio_postgres::Client,
    caller: &str,
) -> tokio_postgres::Transaction<'a> {
    let tx = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .unwrap();
    db::set_caller(&tx, &sqlmcp::caller::CallerId::for_tests(caller).into())
        .await
        .unwrap();
    tx
}

/// Runs `sql` as the given caller in a read-only transaction, the way the
/// server does: identity set transaction-locally.
pub async fn query_as(
    client: &mut Client,
    caller: Option<&str>,
    sql: &str,
) -> Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let tx = client.build_transaction().read_only(true).start().await?;
    if let Some(caller) = caller {
        tx.execute(
            db::OPEN_CALL,
            &[&caller, &None::<Vec<i32>>, &None::<Vec<String>>],
        )
        .await?;
    }
    let rows = tx.query(sql, &[]).await?;
    tx.commit().await?;
    Ok(rows)
}

pub async fn count_as(client: &mut Client, caller: Option<&str>, table: &str) -> i64 {
    query_as(client, caller, &format!("SELECT count(*) FROM {table}"))
        .await
        .unwrap_or_else(|err| panic!("count {table} as {caller:?}: {err}"))[0]
        .get(0)
}

/// The SQLSTATE of a failed statement, for asserting on refusals.
pub fn sqlstate(err: &tokio_postgres::Error) -> String {
    err.code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("(no SQLSTATE: {err})"))
}

/// PostgreSQL's own message of a failed statement.
pub fn message(err: &tokio_postgres::Error) -> String {
    err.as_db_error()
        .map(|db| db.message().to_owned())
        .unwrap_or_else(|| err.to_string())
}

/// Runs the `sqlmcp` binary with arguments and environment (and neither
/// `DATABASE_URL` nor `SQLMCP_AUDIT_DATABASE_URL` of the tests' own).
pub fn sqlmcp(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_sqlmcp"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("SQLMCP_AUDIT_DATABASE_URL")
        .envs(env.iter().copied())
        .output()
        .expect("run sqlmcp")
}

pub fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
