//! The developer's loop, in a copy of the workspace: drop a `.sql` file into
//! `queries/`, build, and the tool is there with the right schema; a broken
//! query fails the build with the file, the query and PostgreSQL's error; a
//! query changed without a database to regenerate fails the offline build.
//! A prompt dropped beside the query goes the same way (`prompts.rs`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

use crate::helpers::process::ServeProcess;
use crate::helpers::{TestDb, admin_config, stderr};

const REPOSITORY: &str = env!("CARGO_MANIFEST_DIR");
const COPIED: [&str; 14] = [
    "Cargo.toml",
    "Cargo.lock",
    "build.rs",
    "src",
    "bench",
    "migrations",
    "queries",
    "prompts",
    // the workbench's page, embedded in the binary
    "ui",
    "codegen/Cargo.toml",
    "codegen/build",
    "codegen/catalogue",
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

/// Held by each test that builds a copy of the workspace: they share its
/// target directory, and a live build's scratch database would show up in
/// another test's count of them.
pub(crate) static WORKSPACE_BUILDS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) struct Workspace {
    pub(crate) root: PathBuf,
}

impl Workspace {
    fn copy() -> Workspace {
        Workspace::copy_as("workspace")
    }

    /// A copy of the workspace in a temporary directory named by `tag`.
    pub(crate) fn copy_as(tag: &str) -> Workspace {
        let root = std::env::temp_dir().join(format!("sqlmcp-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for path in COPIED {
            copy_tree(&Path::new(REPOSITORY).join(path), &root.join(path));
        }
        Workspace { root }
    }

    /// The query file the test writes: `tests/fixtures/recent_orders.sql`
    /// as it is, or with a mistake.
    fn recent_orders_file(&self) -> PathBuf {
        self.root.join("queries/recent_orders.sql")
    }

    fn add_query(&self, file: &Path) {
        std::fs::copy(
            file,
            self.root.join("queries").join(file.file_name().unwrap()),
        )
        .unwrap();
    }

    /// `cargo build` of the copy; live when given a database URL. The crates
    /// of the workspace compile through clippy with warnings denied, so the
    /// generated code is held to the project's lints in the same build. The
    /// target directory is kept between runs, so only the first one is slow.
    pub(crate) fn build(&self, codegen_url: Option<&str>) -> Output {
        self.cargo_build(&["-p", "sqlmcp", "--bin", "sqlmcp"], codegen_url)
    }

    /// The build of the `sqlmcp-codegen` crate alone: its build script
    /// checks `queries/`, and refuses what it cannot generate.
    pub(crate) fn build_codegen(&self, codegen_url: &str) -> Output {
        self.cargo_build(&["-p", "sqlmcp-codegen"], Some(codegen_url))
    }

    fn cargo_build(&self, packages: &[&str], codegen_url: Option<&str>) -> Output {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let clippy_driver = Path::new(&cargo).with_file_name("clippy-driver");
        let clippy_driver = if clippy_driver.exists() {
            clippy_driver
        } else {
            PathBuf::from("clippy-driver")
        };
        let mut command = Command::new(&cargo);
        command
            .current_dir(&self.root)
            .args(["build", "--locked", "--quiet"])
            .args(packages)
            .env(
                "CARGO_TARGET_DIR",
                Path::new(REPOSITORY).join("target/workspace-copy"),
            )
            .env("RUSTC_WORKSPACE_WRAPPER", clippy_driver)
            .env("RUSTFLAGS", "-D warnings")
            // A second full build: keep it small on disk.
            .env("CARGO_INCREMENTAL", "0")
            .env("CARGO_PROFILE_DEV_DEBUG", "false")
            .env_remove("SQLMCP_CODEGEN_DATABASE_URL");
        if let Some(url) = codegen_url {
            command.env("SQLMCP_CODEGEN_DATABASE_URL", url);
        }
        command.output().expect("run cargo")
    }

    pub fn binary(&self) -> PathBuf {
        Path::new(REPOSITORY).join("target/workspace-copy/debug/sqlmcp")
    }

    fn tools(&self) -> Vec<Value> {
        let output = Command::new(self.binary())
            .arg("tools")
            .output()
            .expect("run sqlmcp tools");
        assert!(output.status.success());
        serde_json::from_slice(&output.stdout).expect("tools prints JSON")
    }

    /// The copy's binary serving MCP over HTTP on a free port.
    async fn serve(&self, db: &TestDb) -> ServeProcess {
        ServeProcess::start(
            &self.binary(),
            &[
                "--model-dir",
                crate::helpers::model_dir().to_str().unwrap(),
                "--database-url",
                &crate::helpers::url_of(&db.app_config()),
            ],
        )
        .await
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

#[tokio::test]
async fn a_new_sql_file_becomes_a_typed_tool_and_mistakes_fail_the_build_clearly() {
    let _alone = WORKSPACE_BUILDS.lock().await;
    let url = crate::helpers::url_of(&admin_config());
    let workspace = Workspace::copy();
    let fixture =
        std::fs::read_to_string(Path::new(REPOSITORY).join("tests/fixtures/recent_orders.sql"))
            .unwrap();

    check_a_query_that_does_not_type_check(&workspace, &url, &fixture);

    // The fixed query and every shape of the matrix, built live in one
    // build: no error, no warning, and the snapshot refreshed.
    std::fs::write(workspace.recent_orders_file(), &fixture).unwrap();
    for shape in shape_fixtures() {
        workspace.add_query(&shape);
    }
    crate::prompts::add_fixture(&workspace);
    let built = workspace.build(Some(&url));
    assert!(built.status.success(), "{}", stderr(&built));
    assert!(!stderr(&built).contains("warning"), "{}", stderr(&built));
    let snapshot =
        std::fs::read_to_string(workspace.root.join("codegen/snapshot/catalogue.json")).unwrap();
    assert!(
        snapshot.contains("\"queries/recent_orders.sql\""),
        "the snapshot was refreshed"
    );

    crate::prompts::check_fixture(&workspace);
    let db = TestDb::seeded().await;
    check_recent_orders(&workspace, &db);
    check_shapes(&workspace, &db).await;
    drop(db);

    check_refusals(&workspace, &url, &fixture);
    crate::prompts::check_build_refusals(&workspace, &url);

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

    check_a_stale_snapshot_fails_the_offline_build(&workspace, &fixture);
}

/// A query that does not type-check fails the build with the file, the
/// query, the line and PostgreSQL's error.
fn check_a_query_that_does_not_type_check(workspace: &Workspace, url: &str, fixture: &str) {
    std::fs::write(
        workspace.recent_orders_file(),
        fixture.replace("s.is_online = :online", "s.online = :online"),
    )
    .unwrap();
    let broken = workspace.build(Some(url));
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
}

/// Changed again, but no database to regenerate with: a clear refusal.
fn check_a_stale_snapshot_fails_the_offline_build(workspace: &Workspace, fixture: &str) {
    std::fs::write(
        workspace.recent_orders_file(),
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

/// The new tool is listed with the right schemas, and the new binary's
/// `call` writes every type into JSON as the schema says.
fn check_recent_orders(workspace: &Workspace, db: &TestDb) {
    let tools = workspace.tools();
    let tool = tools
        .iter()
        .find(|t| t["name"] == "recent_orders")
        .expect("the new tool is listed");
    check_recent_orders_definition(tool);
    check_recent_orders_call(workspace, db, tool);
}

/// The listed title, description, and input and output schemas, which
/// follow from the query's annotations and column types.
fn check_recent_orders_definition(tool: &Value) {
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
        "created_at": {"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?$", "description": "date and time without a time zone, YYYY-MM-DDTHH:MM:SS[.fraction]"},
        "created_at_utc": {"type": "string", "format": "date-time"},
        "phone": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "order_uuid": {"type": "string", "format": "uuid"},
        "is_online": {"type": "boolean"},
        "product_ids": {"type": "array", "items": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647}},
        "total": {"type": "string", "pattern": "^-?[0-9]+(\\.[0-9]+)?$", "description": "exact decimal number, written as a string"},
        "details": true,
        "mean_quantity": {"type": "number"},
    });
    assert_eq!(columns, &expected);
}

/// The copy's binary runs `call recent_orders`: the answer fits the output
/// schema and writes each type as it says.
fn check_recent_orders_call(workspace: &Workspace, db: &TestDb, tool: &Value) {
    let called = Command::new(workspace.binary())
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
}

/// One query file per shape a tool can have (`tests/fixtures/shapes/`).
fn shape_fixtures() -> Vec<PathBuf> {
    let dir = Path::new(REPOSITORY).join("tests/fixtures/shapes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "sql"))
        .collect();
    files.sort();
    assert!(files.len() >= 8, "the shape fixtures are there");
    files
}

/// A schema as strict validators (Ajv's defaults) read it: formats are
/// checked, and a format they do not know makes the schema invalid.
fn strict_validator(schema: &Value) -> Result<jsonschema::Validator, String> {
    jsonschema::options()
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .build(schema)
        .map_err(|err| err.to_string())
}

/// Every shape served by the copy's binary to a real MCP client: the listed
/// definitions and the answers to `tests/fixtures/shapes/calls.json` match
/// the golden files, every schema is standard, and every answer fits its
/// tool's output schema.
async fn check_shapes(workspace: &Workspace, db: &TestDb) {
    let server = workspace.serve(db).await;
    let client = crate::helpers::server::client(
        &server.url(),
        &[("x-rls-user-id", crate::helpers::HEAD_OFFICE)],
        rmcp::model::ProtocolVersion::V_2025_11_25,
    )
    .await;
    let tools = client.list_all_tools().await.expect("tools/list");
    let shapes: Vec<String> = shape_fixtures()
        .iter()
        .map(|file| file.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    let mut definitions = Vec::new();
    let mut output_validators = std::collections::HashMap::new();
    for tool in &tools {
        let tool = serde_json::to_value(tool).unwrap();
        for schema in ["inputSchema", "outputSchema"] {
            if let Err(err) = strict_validator(&tool[schema]) {
                panic!("{} {schema} is not standard: {err}", tool["name"]);
            }
        }
        let name = tool["name"].as_str().unwrap().to_owned();
        if shapes.contains(&name) {
            output_validators.insert(name, strict_validator(&tool["outputSchema"]).unwrap());
            definitions.push(tool);
        }
    }
    assert_eq!(definitions.len(), shapes.len(), "every shape is a tool");
    crate::golden::compare_with_golden(
        "shapes/tools.json",
        &(serde_json::to_string_pretty(&definitions).unwrap() + "\n"),
    );

    let calls: Vec<(String, Value)> = serde_json::from_str(
        &std::fs::read_to_string(Path::new(REPOSITORY).join("tests/fixtures/shapes/calls.json"))
            .unwrap(),
    )
    .unwrap();
    let mut answers = Vec::new();
    for (tool, arguments) in calls {
        let result = crate::helpers::server::call(&client, &tool, arguments.clone()).await;
        let answer = if result.is_error == Some(true) {
            json!({ "error": crate::helpers::server::text(&result) })
        } else {
            let content = result
                .structured_content
                .clone()
                .expect("structured content");
            let validator = &output_validators[&tool];
            assert!(validator.is_valid(&content), "{tool}: {content:#}");
            content
        };
        answers.push(json!({ "tool": tool, "arguments": arguments, "answer": answer }));
    }
    crate::golden::compare_with_golden(
        "shapes/answers.json",
        &(serde_json::to_string_pretty(&answers).unwrap() + "\n"),
    );
    client.cancel().await.unwrap();
}

/// Shapes no tool can have fail the build with the file, the line and what
/// to write instead; never with an error inside generated code.
fn check_refusals(workspace: &Workspace, url: &str, fixture: &str) {
    let cases = [
        (
            "recent_orders",
            fixture.replace(
                "o.order_id,\n",
                "o.order_id,\n       '127.0.0.1'::inet AS address,\n",
            ),
            "queries/recent_orders.sql: line 8: result column `address` of query `recent_orders` has type inet, which sqlmcp cannot write as JSON; cast it",
        ),
        (
            "recent_orders",
            fixture.replace("AND s.is_online = :online", "AND s.is_online = :online\n  AND :net::inet IS NOT NULL"),
            "queries/recent_orders.sql: line 25: parameter :net of query `recent_orders` has type inet, which sqlmcp cannot take from JSON; cast it in the SQL (e.g. `:net::text::inet`)",
        ),
        (
            "shape_no_columns",
            "--! shape_no_columns\n--- Nothing.\n\nSELECT FROM retail.stores;\n".to_owned(),
            "queries/shape_no_columns.sql: line 4: query `shape_no_columns` returns no columns, so its tool would have nothing to answer; select the values the tool should return",
        ),
        (
            "shape_writes",
            "--! shape_writes\n--- Renames.\n--@ param name \"New name\"\nUPDATE retail.stores\nSET store_name = :name\nRETURNING store_id;\n".to_owned(),
            "queries/shape_writes.sql: line 4: a `UPDATE` statement cannot be a tool: every call runs in a read-only transaction; write a query (SELECT, WITH … SELECT, VALUES or TABLE)",
        ),
        (
            "shape_rust_name",
            "--! shape_rust_name\n--- A name Rust cannot take.\nSELECT store_id\nFROM retail.stores\nWHERE store_id = :self;\n".to_owned(),
            "queries/shape_rust_name.sql: line 5: parameter :self of query `shape_rust_name` has a name Rust cannot use for a field; rename it (e.g. :self_value)",
        ),
        (
            "shape_rust_name",
            "--! shape_rust_name\n--- A name Rust cannot take.\nSELECT store_id AS crate FROM retail.stores;\n".to_owned(),
            "queries/shape_rust_name.sql: line 3: result column `crate` of query `shape_rust_name` has a name Rust cannot use for a field; alias it (`AS crate_value`)",
        ),
        (
            "execute_sales_query",
            "--! execute_sales_query\n--- A tool named like a built-in one.\nSELECT 1 AS one;\n".to_owned(),
            "queries/execute_sales_query.sql: line 1: `execute_sales_query` is the name of a built-in tool; name the query (and its file) differently",
        ),
        (
            "type",
            "--! type\n--- A tool named by a Rust keyword.\nSELECT 1 AS one;\n".to_owned(),
            "queries/type.sql: line 1: the query name `type` is a Rust keyword, and the generated code names a module after the query; choose another name (e.g. `type_query`)",
        ),
    ];
    for (name, text, expected) in cases {
        let file = workspace.root.join(format!("queries/{name}.sql"));
        let original = std::fs::read_to_string(&file).ok();
        std::fs::write(&file, text).unwrap();
        let refused = workspace.build(Some(url));
        match original {
            Some(original) => std::fs::write(&file, original).unwrap(),
            None => std::fs::remove_file(&file).unwrap(),
        }
        assert!(!refused.status.success(), "{name} must fail the build");
        let err = stderr(&refused);
        assert!(err.contains(expected), "{err}");
        assert!(
            !err.contains("panicked") && !err.contains("error["),
            "{err}"
        );
    }
}
