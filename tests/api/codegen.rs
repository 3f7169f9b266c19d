//! The developer's loop, in a copy of the workspace: drop a `.sql` file into
//! `queries/`, build, and the tool is there with the right schema; a broken
//! query fails the build with the file, the query and PostgreSQL's error; a
//! query changed without a database to regenerate fails the offline build.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::helpers::{admin_config, stderr};

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");
const COPIED: [&str; 10] = [
    "Cargo.toml",
    "Cargo.lock",
    "build.rs",
    "src",
    "migrations",
    "queries",
    "codegen/Cargo.toml",
    "codegen/build",
    "codegen/src",
    "codegen/snapshot",
];

fn copy_tree(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        }
    } else {
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(from, to).unwrap();
    }
}

struct Workspace {
    root: PathBuf,
}

impl Workspace {
    fn copy() -> Workspace {
        let root = std::env::temp_dir().join(format!("sqlmcp-workspace-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for path in COPIED {
            copy_tree(&Path::new(REPOSITORY).join(path), &root.join(path));
        }
        Workspace { root }
    }

    /// `cargo build` of the copy; live when given a database URL. The target
    /// directory is kept between runs, so only the first one is slow.
    fn build(&self, codegen_url: Option<&str>) -> Output {
        let mut command =
            Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()));
        command
            .current_dir(&self.root)
            .args([
                "build", "--locked", "--quiet", "-p", "sqlmcp", "--bin", "sqlmcp",
            ])
            .env(
                "CARGO_TARGET_DIR",
                Path::new(REPOSITORY).join("target/workspace-copy"),
            )
            // A second full build: keep it small on disk.
            .env("CARGO_INCREMENTAL", "0")
            .env("CARGO_PROFILE_DEV_DEBUG", "false")
            .env_remove("SQLMCP_CODEGEN_DATABASE_URL");
        if let Some(url) = codegen_url {
            command.env("SQLMCP_CODEGEN_DATABASE_URL", url);
        }
        command.output().expect("run cargo")
    }

    fn tools(&self) -> Vec<Value> {
        let binary = Path::new(REPOSITORY).join("target/workspace-copy/debug/sqlmcp");
        let output = Command::new(binary)
            .arg("tools")
            .output()
            .expect("run sqlmcp tools");
        assert!(output.status.success());
        serde_json::from_slice(&output.stdout).expect("tools prints JSON")
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[tokio::test]
async fn a_new_sql_file_becomes_a_typed_tool_and_mistakes_fail_the_build_clearly() {
    let url = crate::helpers::url_of(&admin_config());
    let workspace = Workspace::copy();
    let fixture =
        std::fs::read_to_string(Path::new(REPOSITORY).join("tests/fixtures/recent_orders.sql"))
            .unwrap();
    let query_file = workspace.root.join("queries/recent_orders.sql");

    // A query that does not type-check.
    std::fs::write(
        &query_file,
        fixture.replace("s.is_online = :online", "s.online = :online"),
    )
    .unwrap();
    let broken = workspace.build(Some(&url));
    assert!(
        !broken.status.success(),
        "a broken query must fail the build"
    );
    let err = stderr(&broken);
    assert!(
        err.contains("queries/recent_orders.sql: query `recent_orders` does not type-check"),
        "{err}"
    );
    assert!(err.contains("line 24: AND s.online = :online"), "{err}");
    assert!(
        err.contains("PostgreSQL: column s.online does not exist (SQLSTATE 42703)"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    // The fixed query: built live, listed with the right schemas.
    std::fs::write(&query_file, &fixture).unwrap();
    let built = workspace.build(Some(&url));
    assert!(built.status.success(), "{}", stderr(&built));
    let tools = workspace.tools();
    let tool = tools
        .iter()
        .find(|t| t["name"] == "recent_orders")
        .expect("the new tool is listed");
    assert_eq!(tool["title"], "Recent orders");
    assert!(
        tool["description"]
            .as_str()
            .unwrap()
            .starts_with("The most recent orders")
    );
    let input = &tool["inputSchema"]["properties"];
    assert_eq!(input["since"]["format"], "date");
    assert_eq!(input["since"]["type"], json!(["string", "null"]));
    assert_eq!(input["min_total"]["default"], "0");
    assert_eq!(
        input["online"],
        json!({"description": "Online orders (true) or store orders (false)", "type": "boolean", "default": false})
    );
    assert_eq!(
        (
            input["limit"]["minimum"].clone(),
            input["limit"]["maximum"].clone()
        ),
        (json!(1), json!(50))
    );
    assert_eq!(tool["inputSchema"]["additionalProperties"], false);
    let columns = &tool["outputSchema"]["properties"]["rows"]["items"]["properties"];
    let expected = json!({
        "order_id": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
        "order_date": {"type": "string", "format": "date"},
        "created_at": {"type": "string", "description": "date and time without a time zone, YYYY-MM-DDTHH:MM:SS"},
        "created_at_utc": {"type": "string", "format": "date-time"},
        "phone": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "order_uuid": {"type": "string", "format": "uuid"},
        "is_online": {"type": "boolean"},
        "product_ids": {"type": "array", "items": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647}},
        "total": {"type": "string", "format": "decimal", "pattern": "^-?[0-9]+(\\.[0-9]+)?$"},
        "details": true,
        "mean_quantity": {"type": "number"},
    });
    assert_eq!(columns, &expected);
    // Called through the new binary: values cross into JSON as the schema says.
    let db = crate::helpers::TestDb::seeded().await;
    let called = Command::new(Path::new(REPOSITORY).join("target/workspace-copy/debug/sqlmcp"))
        .args([
            "call",
            "recent_orders",
            r#"{"online": true, "limit": 2, "min_total": "10.5"}"#,
        ])
        .args(["--caller", crate::helpers::HEAD_OFFICE])
        .args(["--database-url", &crate::helpers::url_of(&db.app_config())])
        .output()
        .expect("run sqlmcp call");
    assert!(called.status.success(), "{}", stderr(&called));
    let result: Value = serde_json::from_slice(&called.stdout).unwrap();
    let validator = jsonschema::validator_for(&tool["outputSchema"]).unwrap();
    assert!(validator.is_valid(&result), "{result:#}");
    let row = &result["rows"][0];
    assert_eq!(result["row_count"], 2);
    let order_uuid = row["order_uuid"].as_str().unwrap();
    assert!(uuid::Uuid::try_parse(order_uuid).is_ok(), "{order_uuid}");
    assert_eq!(row["is_online"], true);
    assert_eq!(row["details"], json!({"store": "Zava Retail Online"}));
    assert!(
        row["product_ids"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_i64)
    );
    let total = row["total"].as_str().unwrap();
    assert!(
        total
            .split_once('.')
            .is_some_and(|(_, cents)| cents.len() == 2),
        "{total}"
    );
    let created = row["created_at_utc"].as_str().unwrap();
    assert!(
        created.len() >= 20
            && created.as_bytes()[10] == b'T'
            && (created.ends_with('Z') || created.contains('+')),
        "RFC 3339: {created}"
    );
    assert!(row["mean_quantity"].is_f64());
    drop(db);

    let snapshot =
        std::fs::read_to_string(workspace.root.join("codegen/snapshot/catalogue.json")).unwrap();
    assert!(
        snapshot.contains("\"queries/recent_orders.sql\""),
        "the snapshot was refreshed"
    );

    // A result type sqlmcp cannot write as JSON.
    std::fs::write(
        &query_file,
        fixture.replace(
            "o.order_id,\n",
            "o.order_id,\n       '127.0.0.1'::inet AS address,\n",
        ),
    )
    .unwrap();
    let unsupported = workspace.build(Some(&url));
    assert!(!unsupported.status.success());
    let err = stderr(&unsupported);
    assert!(
        err.contains("result column `address` of query `recent_orders` has type inet, which sqlmcp cannot write as JSON; cast it"),
        "{err}"
    );

    // Every live build dropped its scratch database.
    let admin = crate::helpers::connect(&admin_config()).await;
    let scratch: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'sqlmcp\\_codegen\\_%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(scratch, 0, "scratch databases left behind");

    // Changed again, but no database to regenerate with: a clear refusal.
    std::fs::write(
        &query_file,
        fixture.replace("How many orders", "How many orders at most"),
    )
    .unwrap();
    let stale = workspace.build(None);
    assert!(
        !stale.status.success(),
        "a stale snapshot must fail the offline build"
    );
    let err = stderr(&stale);
    assert!(err.contains("queries/recent_orders.sql changed"), "{err}");
    assert!(err.contains("scripts/codegen"), "{err}");
}
