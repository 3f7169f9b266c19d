//! `execute_sales_query`: one read-only SQL query written by the model, for
//! the questions no curated tool answers. Layers, each of which holds on its
//! own:
//! 1. [`crate::sql_policy`] accepts only one SELECT (or EXPLAIN without
//!    ANALYZE), reading only `retail` relations, calling only non-volatile
//!    built-in functions;
//! 2. it runs as the application role, which may only read;
//! 3. in a read-only transaction that is always rolled back, with the
//!    caller's identity, timeouts and `search_path` set for that transaction
//!    only, through the extended protocol (one statement per Parse);
//! 4. rows are fetched in chunks from a portal and stop at a row cap and a
//!    byte cap, so a huge result is never loaded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_postgres::types::Type;
use tokio_postgres::{Client, GenericClient};

use super::support::parse_arguments;
use super::{ToolError, ToolOutput};
use crate::caller::CallerId;
use crate::db;
use crate::sql_policy::{self, Catalogue, ReadOnlySql};

pub const NAME: &str = "execute_sales_query";
pub const TITLE: &str = "Run a read-only SQL query";
pub const DESCRIPTION: &str = "Run ONE read-only PostgreSQL SELECT against the Zava Retail \
     database, for questions the other tools do not answer. First call get_multiple_table_schemas \
     for the tables you need and use their exact column names; name tables with the retail schema \
     (retail.orders). Only SELECT (with joins, CTEs, window functions, aggregates) or EXPLAIN of a \
     SELECT is accepted: no writes, no SET, one statement, only built-in non-volatile functions, \
     only the retail tables. Results are limited to what the caller may see, to 500 rows and about \
     1 MB (truncated: true says more matched: aggregate or add LIMIT), and to a few seconds of \
     execution. The result is {c: column names, r: rows as arrays, n: row count, truncated}; \
     money is exact decimal strings.";

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// One PostgreSQL SELECT statement, e.g. SELECT store_id, count(*) FROM retail.orders GROUP BY 1.
    pub postgresql_query: String,
}

pub fn input_schema() -> Value {
    super::support::input_schema::<Args>()
}

pub fn output_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "c": { "type": "array", "items": { "type": "string" }, "description": "column names" },
            "r": { "type": "array", "items": { "type": "array" }, "description": "rows, values in column order" },
            "n": { "type": "integer", "minimum": 0, "description": "rows returned" },
            "truncated": { "type": "boolean", "description": "true when more rows matched than were returned" },
        },
        "required": ["c", "r", "n", "truncated"],
        "additionalProperties": false,
    })
}

/// Bounds of one raw query.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_rows: usize,
    pub max_bytes: usize,
    pub statement_timeout: Duration,
    pub lock_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rows: 500,
            max_bytes: 1 << 20,
            statement_timeout: Duration::from_secs(5),
            lock_timeout: Duration::from_secs(1),
        }
    }
}

/// The catalogue the policy judges names against, read from the database
/// and refreshed when it is older than a minute or a name is unknown.
#[derive(Default)]
pub struct CatalogueCache(Mutex<Option<(Instant, Arc<Catalogue>)>>);

const CATALOGUE_MAX_AGE: Duration = Duration::from_secs(60);

impl CatalogueCache {
    async fn get(
        &self,
        client: &impl GenericClient,
        refresh: bool,
    ) -> Result<Arc<Catalogue>, ToolError> {
        let mut slot = self.0.lock().await;
        if let Some((loaded, catalogue)) = slot.as_ref()
            && !refresh
            && loaded.elapsed() < CATALOGUE_MAX_AGE
        {
            return Ok(catalogue.clone());
        }
        let catalogue = Arc::new(load_catalogue(client).await?);
        *slot = Some((Instant::now(), catalogue.clone()));
        Ok(catalogue)
    }
}

/// Reads what the policy needs to know from the catalogue: functions and
/// their volatility, and the readable relations.
pub async fn load_catalogue(client: &impl GenericClient) -> Result<Catalogue, ToolError> {
    let db = ToolError::from_database;
    let mut catalogue = Catalogue::default();
    for row in client
        .query(
            "SELECT p.proname::text, bool_and(p.provolatile <> 'v' AND p.prokind IN ('f', 'a', 'w')) \
             FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = 'pg_catalog' GROUP BY p.proname",
            &[],
        )
        .await
        .map_err(db)?
    {
        catalogue.functions.insert(row.get(0), row.get(1));
    }
    for row in client
        .query(
            "SELECT n.nspname = 'retail' AND c.relkind IN ('r', 'p', 'v', 'm'), c.relname::text \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')",
            &[],
        )
        .await
        .map_err(db)?
    {
        let (readable, name): (bool, String) = (row.get(0), row.get(1));
        if readable {
            catalogue.retail_relations.insert(name);
        } else {
            catalogue.other_relations.insert(name);
        }
    }
    Ok(catalogue)
}

impl Args {
    pub fn parse(arguments: Value) -> Result<Args, ToolError> {
        let args: Args = parse_arguments(arguments)?;
        if args.postgresql_query.trim().is_empty() {
            return Err(rejected("write one SELECT statement"));
        }
        if args.postgresql_query.len() > 20_000 {
            return Err(rejected("the query is longer than 20,000 characters"));
        }
        Ok(args)
    }
}

fn rejected(rule: impl Into<String>) -> ToolError {
    ToolError::InvalidArgument {
        argument: "postgresql_query".to_owned(),
        rule: rule.into(),
    }
}

/// Validates `args` against the policy and runs it as `caller`.
pub async fn call(
    client: &mut Client,
    caller: &CallerId,
    cache: &CatalogueCache,
    limits: Limits,
    args: Args,
) -> Result<ToolOutput, ToolError> {
    let catalogue = cache.get(&*client, false).await?;
    let checked = match sql_policy::check(&args.postgresql_query, &catalogue) {
        Err(violation) if violation.unknown_name => {
            // perhaps created since the catalogue was read: look again once
            let fresh = cache.get(&*client, true).await?;
            sql_policy::check(&args.postgresql_query, &fresh)
        }
        other => other,
    }
    .map_err(|violation| rejected(violation.to_string()))?;
    execute(client, caller, &checked, limits).await
}

/// Runs a statement WITHOUT the policy. Only for the tests that prove the
/// database layers (role, read-only transaction, rollback, timeouts) hold on
/// their own; the server reaches statements only through [`call`].
#[doc(hidden)]
pub async fn execute_unchecked_for_tests(
    client: &mut Client,
    caller: &CallerId,
    sql: &str,
    limits: Limits,
) -> Result<ToolOutput, ToolError> {
    run(client, caller, sql, false, limits).await
}

async fn execute(
    client: &mut Client,
    caller: &CallerId,
    sql: &ReadOnlySql,
    limits: Limits,
) -> Result<ToolOutput, ToolError> {
    run(client, caller, sql.sql(), sql.is_explain(), limits).await
}

/// The settings a raw query runs under besides those of every call
/// ([`db::call_settings`]); its `statement_timeout` is `limits`'.
pub fn settings(limits: Limits) -> [(&'static str, String); 3] {
    [
        (
            "lock_timeout",
            format!("{}ms", limits.lock_timeout.as_millis()),
        ),
        (
            "idle_in_transaction_session_timeout",
            format!("{}ms", (limits.statement_timeout * 2).as_millis()),
        ),
        ("search_path", "retail, public".to_owned()),
    ]
}

async fn run(
    client: &mut Client,
    caller: &CallerId,
    sql: &str,
    explain: bool,
    limits: Limits,
) -> Result<ToolOutput, ToolError> {
    let tx = db::begin_with(client, caller, limits.statement_timeout, &settings(limits))
        .await
        .map_err(ToolError::from_database)?;
    let outcome = fetch(&tx, sql, explain, limits).await;
    // never commit: whatever the statement did is undone
    let _ = tx.rollback().await;
    outcome
}

async fn fetch(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    explain: bool,
    limits: Limits,
) -> Result<ToolOutput, ToolError> {
    let described = tx.prepare(sql).await.map_err(with_position)?;
    let columns: Vec<(String, Type)> = described
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_().clone()))
        .collect();
    // Every type arrives as exact JSON text through row_to_json; a plan is text already.
    let wrapped = if explain || columns.is_empty() {
        described
    } else {
        tx.prepare(&format!("SELECT row_to_json(q)::text FROM ({sql}\n) q"))
            .await
            .map_err(with_position)?
    };
    let portal = tx.bind(&wrapped, &[]).await.map_err(with_position)?;
    let mut rows: Vec<Value> = Vec::new();
    let mut bytes = 0usize;
    let mut truncated = false;
    'fetch: loop {
        let chunk = tx.query_portal(&portal, 100).await.map_err(with_position)?;
        if chunk.is_empty() {
            break;
        }
        for row in chunk {
            if rows.len() == limits.max_rows {
                truncated = true;
                break 'fetch;
            }
            let values = if explain || columns.is_empty() {
                vec![Value::String(
                    row.try_get::<_, String>(0).unwrap_or_default(),
                )]
            } else {
                let text: String = row.get(0);
                row_values(&text, &columns)?
            };
            let row = Value::Array(values);
            bytes += row.to_string().len() + 1;
            if bytes > limits.max_bytes {
                truncated = true;
                break 'fetch;
            }
            rows.push(row);
        }
    }
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    Ok(ToolOutput {
        structured: json!({ "c": names, "r": rows, "n": rows.len(), "truncated": truncated }),
    })
}

/// The values of a `row_to_json` object, in column order (duplicate names
/// included), numerics as exact strings.
fn row_values(text: &str, columns: &[(String, Type)]) -> Result<Vec<Value>, ToolError> {
    let entries: Entries = serde_json::from_str(text)
        .map_err(|err| ToolError::Database(format!("cannot read a row: {err}")))?;
    Ok(entries
        .0
        .into_iter()
        .zip(columns)
        .map(|(raw, (_, ty))| {
            let raw = raw.get();
            if (*ty == Type::NUMERIC) && raw != "null" {
                Value::String(raw.to_owned())
            } else {
                serde_json::from_str(raw).unwrap_or(Value::Null)
            }
        })
        .collect())
}

/// A JSON object's values in order, kept raw.
struct Entries(Vec<Box<RawValue>>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries, A::Error> {
                let mut values = Vec::new();
                while let Some((_, value)) =
                    map.next_entry::<serde::de::IgnoredAny, Box<RawValue>>()?
                {
                    values.push(value);
                }
                Ok(Entries(values))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// PostgreSQL's message, with where it points.
fn with_position(err: tokio_postgres::Error) -> ToolError {
    let position = err.as_db_error().and_then(|db| match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => Some(*p),
        _ => None,
    });
    match (ToolError::from_database(err), position) {
        (ToolError::Database(message), Some(position)) => {
            ToolError::Database(format!("{message} (at character {position})"))
        }
        (other, _) => other,
    }
}
