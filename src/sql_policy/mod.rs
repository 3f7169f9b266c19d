//! Which raw SQL `execute_sales_query` may run, decided with PostgreSQL's own
//! grammar (libpg_query): exactly one `SELECT` (or `EXPLAIN` without `ANALYZE`
//! of one), reading only `retail` relations and calling only functions that
//! cannot change anything. The result is a [`ReadOnlySql`], the only thing
//! the raw-SQL tool executes.
//!
//! This is one layer of several: the statement also runs as a role that may
//! only read, in a read-only transaction that is rolled back, under
//! row-level security and timeouts, each of which holds on its own.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde_json::Value;

/// A statement the policy accepted; only [`check`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOnlySql {
    sql: String,
    explain: bool,
}

impl ReadOnlySql {
    pub fn sql(&self) -> &str {
        &self.sql
    }

    /// An `EXPLAIN`, whose result is a plan rather than rows of data.
    pub fn is_explain(&self) -> bool {
        self.explain
    }
}

/// Why a statement was refused, and where (a 1-based character position).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: String,
    pub position: Option<usize>,
    /// The rule is about a name the catalogue does not know: it may have been
    /// created since the catalogue was read.
    pub unknown_name: bool,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => write!(f, "{} (at character {position})", self.rule),
            None => write!(f, "{}", self.rule),
        }
    }
}

fn violation(rule: impl Into<String>, location: Option<i64>) -> Violation {
    Violation {
        rule: rule.into(),
        // libpg_query locations are 0-based byte offsets; -1 means unknown
        position: location.filter(|l| *l >= 0).map(|l| l as usize + 1),
        unknown_name: false,
    }
}

fn refuse<T>(rule: impl Into<String>, location: Option<i64>) -> Result<T, Violation> {
    Err(violation(rule, location))
}

/// What the database says about functions and relations; see
/// [`crate::tools::raw_sql`] for how it is loaded and refreshed.
#[derive(Debug, Default, Clone)]
pub struct Catalogue {
    /// Function name → is every overload of that name non-volatile?
    pub functions: HashMap<String, bool>,
    /// Relations of the `retail` schema that may be read.
    pub retail_relations: BTreeSet<String>,
    /// Relation names elsewhere (pg_catalog, public, …), which a CTE may not
    /// shadow.
    pub other_relations: BTreeSet<String>,
}

/// Functions refused whatever the catalogue says: side effects, file and
/// network access, other sessions, configuration, or SQL run from a string.
const DENIED_FUNCTION_PREFIXES: &[&str] = &[
    "pg_read_",
    "pg_ls_",
    "pg_stat_file",
    "pg_file",
    "lo_",
    "dblink",
    "pg_advisory",
    "pg_try_advisory",
    "pg_terminate_backend",
    "pg_cancel_backend",
    "pg_reload_conf",
    "pg_rotate_logfile",
    "pg_switch_wal",
    "pg_create_",
    "pg_drop_",
    "pg_replication_",
    "pg_logical_",
    "pg_promote",
    "pg_sleep",
    "set_config",
    "nextval",
    "setval",
    "currval",
    "lastval",
    "txid_current",
    "pg_current_xact_id",
    "pg_export_snapshot",
    "pg_notify",
    "pg_log_",
    "pg_import_",
    "binary_upgrade_",
    "query_to_xml",
    "cursor_to_xml",
    "table_to_xml",
    "schema_to_xml",
    "database_to_xml",
    "ts_stat",
    "pg_stat_reset",
    "pg_backup",
    "pg_start_backup",
    "pg_stop_backup",
    "pg_wal_replay",
    "pg_sequence_",
    "setseed",
    "pg_snapshot",
    "pg_xact_",
    "pg_visible_in_snapshot",
    "pg_relation_filenode",
    "current_setting",
    "pg_settings",
    "xmlexists",
];

/// Volatile functions that are nonetheless harmless, reviewed one by one.
const ALLOWED_VOLATILE: &[&str] = &[
    "random",
    "random_normal",
    "gen_random_uuid",
    "clock_timestamp",
    "timeofday",
];

/// Statement kinds with no business in a query, wherever they appear
/// (data-modifying CTEs, `EXPLAIN` of a write, …).
const FORBIDDEN_NODES: &[(&str, &str)] = &[
    ("InsertStmt", "INSERT not allowed"),
    ("UpdateStmt", "UPDATE not allowed"),
    ("DeleteStmt", "DELETE not allowed"),
    ("MergeStmt", "MERGE not allowed"),
    ("IntoClause", "SELECT … INTO not allowed"),
    (
        "LockingClause",
        "locking clause (FOR UPDATE/SHARE) not allowed",
    ),
    ("CallStmt", "CALL not allowed"),
    ("DoStmt", "DO not allowed"),
    ("CopyStmt", "COPY not allowed"),
    ("VariableSetStmt", "SET not allowed"),
    ("TransactionStmt", "transaction control not allowed"),
];

/// Checks `sql` against the policy.
pub fn check(sql: &str, catalogue: &Catalogue) -> Result<ReadOnlySql, Violation> {
    let parsed = match pg_query::parse(sql, pg_query::ParserOptions::default()) {
        Ok(parsed) => parsed,
        Err(err) => return refuse(format!("syntax error: {err}"), None),
    };
    let statements = &parsed.protobuf.stmts;
    let statement = match statements.as_slice() {
        [one] => one,
        [] => return refuse("empty query: write one SELECT statement", None),
        [_, second, ..] => {
            return refuse(
                "only one statement allowed",
                Some(i64::from(second.stmt_location)),
            );
        }
    };
    let tree = serde_json::to_value(&statement.stmt)
        .map_err(|err| violation(format!("cannot inspect the statement: {err}"), None))?;
    let (kind, body) = top_level(&tree)?;
    let explain = match kind {
        "SelectStmt" => false,
        "ExplainStmt" => {
            check_explain(body)?;
            true
        }
        other => {
            let name = other.trim_end_matches("Stmt").to_uppercase();
            return refuse(format!("only SELECT or EXPLAIN allowed, not {name}"), None);
        }
    };

    let mut found = Found::default();
    walk(&tree, &mut found)?;
    for cte in &found.ctes {
        if catalogue.other_relations.contains(cte) {
            return refuse(
                format!("WITH query name {cte} shadows a system relation; choose another name"),
                None,
            );
        }
    }
    for function in &found.functions {
        check_function(function, catalogue)?;
    }
    for relation in &found.relations {
        check_relation(relation, &found.ctes, catalogue)?;
    }
    Ok(ReadOnlySql {
        sql: sql.trim().trim_end_matches(';').trim_end().to_owned(),
        explain,
    })
}

fn top_level(tree: &Value) -> Result<(&str, &Value), Violation> {
    let node = tree
        .get("node")
        .and_then(Value::as_object)
        .and_then(|o| o.iter().next());
    match node {
        Some((kind, body)) => Ok((kind.as_str(), body)),
        None => refuse("empty query: write one SELECT statement", None),
    }
}

fn check_explain(body: &Value) -> Result<(), Violation> {
    for option in body["options"].as_array().into_iter().flatten() {
        let name = option["node"]["DefElem"]["defname"]
            .as_str()
            .unwrap_or_default();
        if name.eq_ignore_ascii_case("analyze") {
            return refuse(
                "EXPLAIN ANALYZE not allowed: it runs the statement",
                option["node"]["DefElem"]["location"].as_i64(),
            );
        }
    }
    let (inner, _) = top_level(&body["query"])?;
    if inner != "SelectStmt" {
        return refuse("EXPLAIN allowed only of a SELECT", None);
    }
    Ok(())
}

#[derive(Default)]
struct Found {
    functions: Vec<(String, Option<String>, Option<i64>)>,
    relations: Vec<(Option<String>, String, Option<i64>)>,
    ctes: BTreeSet<String>,
}

/// Visits every node of the tree (the serialised parse tree holds all of
/// them, so nothing can hide from this walk).
fn walk(value: &Value, found: &mut Found) -> Result<(), Violation> {
    match value {
        Value::Array(items) => items.iter().try_for_each(|item| walk(item, found)),
        Value::Object(map) => {
            for (key, child) in map {
                if let Some((_, rule)) = FORBIDDEN_NODES.iter().find(|(node, _)| node == key) {
                    return refuse(*rule, child["location"].as_i64());
                }
                // SELECT … INTO is a field of SelectStmt, not a node of its own
                if key == "into_clause" && !child.is_null() {
                    return refuse("SELECT … INTO not allowed", None);
                }
                match key.as_str() {
                    "FuncCall" => {
                        let names: Vec<String> = child["funcname"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|n| {
                                n["node"]["String"]["sval"].as_str().map(str::to_lowercase)
                            })
                            .collect();
                        let (schema, name) = match names.as_slice() {
                            [name] => (None, name.clone()),
                            [schema, name] => (Some(schema.clone()), name.clone()),
                            _ => {
                                return refuse(
                                    format!("function name {} not allowed", names.join(".")),
                                    child["location"].as_i64(),
                                );
                            }
                        };
                        found
                            .functions
                            .push((name, schema, child["location"].as_i64()));
                    }
                    "RangeVar" => {
                        let schema = child["schemaname"]
                            .as_str()
                            .filter(|s| !s.is_empty())
                            .map(str::to_lowercase);
                        if child["catalogname"].as_str().is_some_and(|c| !c.is_empty()) {
                            return refuse(
                                "database-qualified names not allowed",
                                child["location"].as_i64(),
                            );
                        }
                        let name = child["relname"].as_str().unwrap_or_default().to_lowercase();
                        found
                            .relations
                            .push((schema, name, child["location"].as_i64()));
                    }
                    "CommonTableExpr" => {
                        if let Some(name) = child["ctename"].as_str() {
                            found.ctes.insert(name.to_lowercase());
                        }
                    }
                    _ => {}
                }
                walk(child, found)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_relation(
    (schema, name, location): &(Option<String>, String, Option<i64>),
    ctes: &BTreeSet<String>,
    catalogue: &Catalogue,
) -> Result<(), Violation> {
    let allowed = match schema.as_deref() {
        Some("retail") => catalogue.retail_relations.contains(name),
        Some(_) => false,
        None => catalogue.retail_relations.contains(name) || ctes.contains(name),
    };
    if allowed {
        return Ok(());
    }
    let shown = schema
        .as_ref()
        .map_or(name.clone(), |s| format!("{s}.{name}"));
    let known =
        catalogue.retail_relations.contains(name) || catalogue.other_relations.contains(name);
    let refused = violation(
        format!(
            "relation {shown} not allowed: only the retail tables may be read ({})",
            catalogue
                .retail_relations
                .iter()
                .map(|r| format!("retail.{r}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        *location,
    );
    Err(Violation {
        unknown_name: !known,
        ..refused
    })
}

fn check_function(
    (name, schema, location): &(String, Option<String>, Option<i64>),
    catalogue: &Catalogue,
) -> Result<(), Violation> {
    if let Some(schema) = schema.as_deref().filter(|s| *s != "pg_catalog") {
        return refuse(
            format!("function {schema}.{name} not allowed: only built-in functions may be called"),
            *location,
        );
    }
    if ALLOWED_VOLATILE.contains(&name.as_str()) {
        return Ok(());
    }
    let denied = DENIED_FUNCTION_PREFIXES
        .iter()
        .any(|prefix| name.starts_with(prefix));
    match catalogue.functions.get(name) {
        Some(false) => refuse(format!("function {name} is volatile"), *location),
        _ if denied => refuse(format!("function {name} is not allowed"), *location),
        Some(true) => Ok(()),
        None => Err(Violation {
            unknown_name: true,
            ..violation(
                format!("function {name} does not exist or is not allowed"),
                *location,
            )
        }),
    }
}
