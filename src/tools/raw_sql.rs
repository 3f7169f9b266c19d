//! `execute_sales_query`: one read-only SQL query written by the model, for
//! the questions no curated tool answers. Layers, each of which holds on its
//! own (the README's table says which attacks each stops):
//! 1. [`crate::sql_policy`] accepts only one SELECT (or EXPLAIN (COSTS OFF)),
//!    reading only `retail` relations and reaching only allow-listed
//!    functions, types and operators;
//! 2. the identity is one only the server can sign ([`db::OPEN_CALL`]);
//! 3. it runs as the application role, which may only read, in a read-only
//!    transaction that is always rolled back, with timeouts and
//!    `search_path` set for that transaction only, through the extended
//!    protocol (one statement per Parse);
//! 4. the server's deadline cancels it in PostgreSQL (`db::run_within`);
//! 5. PostgreSQL sends rows only within a row cap and a byte cap
//!    (`bounded`), so a huge value is never sent, let alone loaded.

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::ClientWrapper;
use futures_util::{FutureExt, TryStreamExt};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::Mutex;
use tokio_postgres::types::Type;
use tokio_postgres::{GenericClient, Row};

use super::progress::Reporter;
use super::support::parse_arguments;
use super::{ToolDescriptor, ToolError, ToolOutput};
use crate::caller::Grant;
use crate::db;
use crate::sql_policy::{self, DatabaseNames, ReadOnlySql};

pub const TOOL: ToolDescriptor = ToolDescriptor {
    name: "execute_sales_query",
    title: "Run a read-only SQL query",
    description: "Run ONE read-only PostgreSQL SELECT against the Zava Retail \
         database, for questions the other tools do not answer. First call get_multiple_table_schemas \
         for the tables you need and use their exact column names; name tables with the retail schema \
         (retail.orders). Only SELECT (with joins, CTEs, window functions, aggregates) or EXPLAIN of a \
         SELECT is accepted: no writes, no SET, one statement, only built-in non-volatile functions, \
         only the retail tables. Results are limited to what the caller may see, to 500 rows and about \
         1 MB (truncated: true says more matched: aggregate or add LIMIT), and to a few seconds of \
         execution. The result is {c: column names, r: rows as arrays, n: row count, truncated}; \
         money is exact decimal strings.",
    source: "src/tools/raw_sql.rs",
    input_schema: super::support::input_schema::<Args>,
    output_schema,
};

pub const NAME: &str = TOOL.name;

#[derive(Debug, Clone, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Args {
    /// One PostgreSQL SELECT statement, e.g. SELECT store_id, count(*) FROM retail.orders GROUP BY 1.
    pub postgresql_query: String,
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

/// What raw SQL keeps between calls: the names the policy judges a query
/// against, read from the database and refreshed when they are older than a
/// minute or a name is unknown; and the verdicts on recent texts, with their
/// result columns once described, so that a repeated query is neither parsed
/// by the policy nor described by PostgreSQL again. A verdict holds only for
/// the names it was given against: new names, new verdicts.
pub struct NamesCache {
    names: Mutex<Option<Names>>,
    verdicts: moka::future::Cache<String, Arc<Verdict>>,
}

#[derive(Clone)]
struct Names {
    loaded: Instant,
    names: Arc<DatabaseNames>,
    generation: u64,
}

/// A text the policy accepted.
struct Verdict {
    sql: ReadOnlySql,
    /// The [`Names::generation`] it was judged against.
    generation: u64,
    /// Its result columns, once PostgreSQL described them.
    columns: std::sync::OnceLock<Arc<[(String, Type)]>>,
}

/// Bytes of accepted texts kept at most (with their columns, about as much
/// again).
const VERDICTS_MAX_BYTES: u64 = 4 << 20;

impl Default for NamesCache {
    fn default() -> Self {
        NamesCache {
            names: Mutex::new(None),
            verdicts: moka::future::Cache::builder()
                .max_capacity(VERDICTS_MAX_BYTES)
                .weigher(|text: &String, _| u32::try_from(text.len() * 2).unwrap_or(u32::MAX))
                .build(),
        }
    }
}

const NAMES_MAX_AGE: Duration = Duration::from_secs(60);
const NAMES_MIN_AGE: Duration = Duration::from_secs(1);

impl NamesCache {
    async fn get(&self, client: &impl GenericClient, refresh: bool) -> Result<Names, ToolError> {
        let mut slot = self.names.lock().await;
        // a refresh asked for by an unknown name reads the system catalog at most
        // once a second, however many such queries come
        let max_age = if refresh {
            NAMES_MIN_AGE
        } else {
            NAMES_MAX_AGE
        };
        if let Some(names) = slot.as_ref()
            && names.loaded.elapsed() < max_age
        {
            return Ok(names.clone());
        }
        let generation = slot.as_ref().map_or(0, |names| names.generation + 1);
        let names = Names {
            loaded: Instant::now(),
            names: Arc::new(load_names(client).await?),
            generation,
        };
        *slot = Some(names.clone());
        Ok(names)
    }

    /// The policy's verdict on `text`: remembered, or judged now (against
    /// fresh names once if a name is unknown, perhaps created since).
    async fn check(
        &self,
        client: &impl GenericClient,
        text: &str,
    ) -> Result<Arc<Verdict>, ToolError> {
        let names = self.get(client, false).await?;
        if let Some(verdict) = self.verdicts.get(text).await
            && verdict.generation == names.generation
        {
            return Ok(verdict);
        }
        let (checked, names) = self.judge(client, text, names).await?;
        let verdict = Arc::new(Verdict {
            sql: checked.map_err(|violation| rejected(violation.to_string()))?,
            generation: names.generation,
            columns: std::sync::OnceLock::new(),
        });
        self.verdicts.insert(text.to_owned(), verdict.clone()).await;
        Ok(verdict)
    }

    /// The policy's verdict on `text` against `names`, or against fresh
    /// names once if a name is unknown (perhaps created since).
    async fn judge(
        &self,
        client: &impl GenericClient,
        text: &str,
        names: Names,
    ) -> Result<(Result<ReadOnlySql, sql_policy::Violation>, Names), ToolError> {
        Ok(match sql_policy::check(text, &names.names) {
            Err(violation) if violation.unknown_name => {
                let fresh = self.get(client, true).await?;
                if fresh.generation == names.generation {
                    // read less than a second ago: the same names, the same verdict
                    (Err(violation), names)
                } else {
                    (sql_policy::check(text, &fresh.names), fresh)
                }
            }
            other => (other, names),
        })
    }

    /// What the policy would say of `query` as `execute_sales_query`'s
    /// argument, without running it: the workbench shows it before a run.
    /// The database is asked only for the names of its catalogue (when
    /// those kept are older than a minute), never for data.
    pub async fn preview(
        &self,
        client: &impl GenericClient,
        query: &str,
    ) -> Result<Result<(), sql_policy::Violation>, ToolError> {
        let argument = Args::parse(json!({ "postgresql_query": query }));
        if let Err(ToolError::InvalidArgument { rule, .. }) = argument {
            return Ok(Err(sql_policy::Violation {
                rule,
                position: None,
                unknown_name: false,
            }));
        }
        let names = self.get(client, false).await?;
        let (checked, _) = self.judge(client, query, names).await?;
        Ok(checked.map(|_| ()))
    }
}

/// Reads what the policy needs to know of the database: the functions and
/// operators on the search path, and the relations. Outside any
/// transaction, so each query goes unnamed, in one message batch: behind a
/// transaction-pooling PgBouncer, a named statement's Parse and Execute
/// could reach different server connections.
pub async fn load_names(client: &impl GenericClient) -> Result<DatabaseNames, ToolError> {
    let db = ToolError::from_database;
    let schemas: Vec<&str> = sql_policy::SEARCH_PATH.to_vec();
    let mut names = DatabaseNames::default();
    for row in client
        .query_typed(
            "SELECT p.proname::text, array_agg(DISTINCT n.nspname::text) \
             FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace \
             WHERE n.nspname = ANY ($1) GROUP BY p.proname",
            &[(&schemas, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(db)?
    {
        let found: Vec<String> = row.get(1);
        names
            .functions
            .insert(row.get(0), found.into_iter().collect());
    }
    for row in client
        .query_typed(
            "SELECT o.oprname::text, \
                    coalesce(array_agg(DISTINCT p.proname::text) FILTER (WHERE p.provolatile <> 'i'), '{}') \
             FROM pg_catalog.pg_operator o \
             JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode \
             JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace \
             WHERE n.nspname = ANY ($1) GROUP BY o.oprname",
            &[(&schemas, Type::TEXT_ARRAY)],
        )
        .await
        .map_err(db)?
    {
        let functions: Vec<String> = row.get(1);
        names.operators.insert(row.get(0), functions.into_iter().collect());
    }
    for row in client
        .query_typed(
            "SELECT n.nspname::text, c.relkind IN ('r', 'p', 'v', 'm'), c.relname::text \
             FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S')",
            &[],
        )
        .await
        .map_err(db)?
    {
        let (schema, readable, name): (String, bool, String) = (row.get(0), row.get(1), row.get(2));
        match schema.as_str() {
            "retail" if readable => names.retail_relations.insert(name),
            "pg_catalog" => names.system_relations.insert(name),
            _ => names.other_relations.insert(name),
        };
    }
    Ok(names)
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

/// Validates `args` against the policy and runs it for `grant`.
pub async fn call(
    client: &ClientWrapper,
    statement_cache: bool,
    grant: &Grant,
    cache: &NamesCache,
    limits: Limits,
    args: Args,
    progress: Option<&Reporter>,
) -> Result<ToolOutput, ToolError> {
    let verdict = cache.check(&**client, &args.postgresql_query).await?;
    run(
        client,
        statement_cache,
        grant,
        &verdict.sql,
        &verdict.columns,
        limits,
        progress,
    )
    .await
}

/// Runs a statement WITHOUT the policy. Only for the tests that prove the
/// database layers (identity, role, read-only transaction, rollback,
/// timeouts, caps) hold on their own; the server reaches statements only
/// through [`call`]. The text is still parsed, to find the statement in it,
/// but nothing is refused. Built only with the `test-support` feature.
#[cfg(any(test, feature = "test-support"))]
pub async fn execute_unchecked_for_tests(
    client: &ClientWrapper,
    grant: &Grant,
    sql: &str,
    limits: Limits,
) -> Result<ToolOutput, ToolError> {
    let unchecked = ReadOnlySql::unchecked_for_tests(sql);
    run(
        client,
        true,
        grant,
        &unchecked,
        &std::sync::OnceLock::new(),
        limits,
        None,
    )
    .await
}

/// The settings a raw query runs under besides those of every call
/// ([`db::call_settings`]); its `statement_timeout` is `limits`'.
/// `standard_conforming_strings` is pinned to how the policy's parser lexes
/// (`'\'` is a backslash in a string): with it off, as a database or role
/// default may say, `\'` would be a quote to PostgreSQL, and text the policy
/// read as a string literal would run as code.
pub fn settings(limits: Limits) -> [(&'static str, String); 4] {
    [
        ("standard_conforming_strings", "on".to_owned()),
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

/// Runs `sql` in a call's transaction, always rolled back
/// ([`db::Settle::Rollback`]).
async fn run(
    client: &ClientWrapper,
    statement_cache: bool,
    grant: &Grant,
    sql: &ReadOnlySql,
    columns: &std::sync::OnceLock<Arc<[(String, Type)]>>,
    limits: Limits,
    progress: Option<&Reporter>,
) -> Result<ToolOutput, ToolError> {
    let call = db::Call::new(client, statement_cache, db::Settle::Rollback);
    let settled = call
        .run(
            grant,
            limits.statement_timeout,
            &settings(limits),
            fetch(&call, sql, columns, limits, progress),
        )
        .await;
    super::outcome(settled)
}

/// Statements a connection keeps prepared at most; past this many, it
/// forgets them all (the curated tools' too, prepared again on next use),
/// so that many different raw queries cannot grow a connection without end.
const STATEMENTS_PER_CONNECTION: usize = 256;

/// The query that runs a checked statement: its own bytes, unchanged, as a
/// subquery whose rows come back as `row_to_json` text (exact for every
/// type), each row only while the bytes so far stay within `max_bytes`,
/// and at most one row more than `max_rows`. So PostgreSQL never sends
/// more than the caps, however large a value the statement makes: the
/// first row past the byte cap comes as NULL, and nothing after it is
/// read. `q.*` is the subquery's row whatever its columns are called.
fn bounded(statement: &str, limits: Limits) -> (String, usize) {
    let prefix = format!(
        "SELECT CASE WHEN w.n <= {max_bytes} THEN w.j END \
         FROM (SELECT r.j, pg_catalog.sum(pg_catalog.octet_length(r.j)) OVER (ROWS UNBOUNDED PRECEDING) AS n \
               FROM (SELECT pg_catalog.row_to_json(q.*)::text AS j FROM (\n",
        max_bytes = limits.max_bytes,
    );
    let text = format!(
        "{prefix}{statement}\n) AS q) AS r) AS w LIMIT {limit}",
        limit = limits.max_rows + 1
    );
    (text, prefix.chars().count())
}

async fn fetch(
    call: &db::Call<'_>,
    sql: &ReadOnlySql,
    columns: &std::sync::OnceLock<Arc<[(String, Type)]>>,
    limits: Limits,
    progress: Option<&Reporter>,
) -> Result<ToolOutput, ToolError> {
    let client = call.client();
    if sql.is_explain() {
        // a plan: a few lines of text, or one document
        let described = client.prepare(sql.text()).await.map_err(with_position)?;
        let columns: Arc<[(String, Type)]> = column_types(&described);
        let rows = client.query(&described, &[]).await.map_err(with_position)?;
        return collect(sql, &columns, rows, limits);
    }
    // PostgreSQL's positions in the bounding query, moved back to the
    // caller's text
    let (bounded, prefix) = bounded(sql.statement(), limits);
    let before = sql.statement_offset();
    let shift = |p: usize| p.checked_sub(prefix).filter(|p| *p > 0).map(|p| p + before);
    let prepare_bounded = async {
        if call.is_cached() {
            if client.statement_cache.size() >= STATEMENTS_PER_CONNECTION {
                client.statement_cache.clear();
            }
            client.prepare_cached(&bounded).await
        } else {
            client.prepare(&bounded).await
        }
    };
    // The text's own columns (names and types) come from describing it:
    // once per text, pipelined with preparing the bounding query.
    let (columns, statement) = match columns.get() {
        Some(columns) => (columns.clone(), prepare_bounded.await),
        None => {
            let (described, statement) = tokio::join!(client.prepare(sql.text()), prepare_bounded);
            let described = described.map_err(with_position)?;
            (
                columns.get_or_init(|| column_types(&described)).clone(),
                statement,
            )
        }
    };
    let statement = statement.map_err(|err| with_position_shifted(err, shift))?;
    if let Some(progress) = progress {
        progress.rows_expected(limits.max_rows);
    }
    let rows = call
        .query_last(&statement, std::iter::empty::<&str>())
        .await
        .map_err(|err| with_position_shifted(err, shift))?;
    let rows: Vec<Row> = match progress {
        None => rows.try_collect().await,
        Some(progress) => receive(rows, progress, limits.max_rows).await,
    }
    .map_err(|err| with_position_shifted(err, shift))?;
    collect(sql, &columns, rows, limits)
}

/// The rows of `rows`, reporting how many of them are within the caps
/// whenever the next has not arrived yet: so progress moves as PostgreSQL
/// sends rows (it flushes them in blocks of 8 kB), and the rows that come
/// with the end of the statement are reported once, as the row count. Once
/// a row past the byte cap has come (the bounding query sends NULLs from
/// there on), the count is final and reported as such. The rows are only
/// counted here, and read as fast as before: the statement is not held up
/// by the reporting.
async fn receive(
    rows: tokio_postgres::RowStream,
    progress: &Reporter,
    max_rows: usize,
) -> Result<Vec<Row>, tokio_postgres::Error> {
    let mut rows = std::pin::pin!(rows);
    let mut received = Vec::new();
    let (mut within, mut capped) = (0, false);
    loop {
        let next = match rows.try_next().now_or_never() {
            Some(next) => next,
            None => {
                let fetched = within.min(max_rows);
                if capped {
                    progress.report(progress.done(true, Some(fetched as u64)));
                } else if within > 0 {
                    progress.rows_fetched(fetched, max_rows);
                }
                rows.try_next().await
            }
        };
        let Some(row) = next? else {
            return Ok(received);
        };
        match row.try_get::<_, Option<&str>>(0) {
            Ok(Some(_)) => within += 1,
            Ok(None) => capped = true,
            Err(_) => {}
        }
        received.push(row);
    }
}

fn column_types(statement: &tokio_postgres::Statement) -> Arc<[(String, Type)]> {
    statement
        .columns()
        .iter()
        .map(|c| (c.name().to_owned(), c.type_().clone()))
        .collect()
}

/// The rows as the tool returns them, within the caps.
fn collect(
    sql: &ReadOnlySql,
    columns: &[(String, Type)],
    rows: Vec<Row>,
    limits: Limits,
) -> Result<ToolOutput, ToolError> {
    let mut values: Vec<Value> = Vec::with_capacity(rows.len().min(limits.max_rows));
    let mut bytes = 0usize;
    let mut truncated = false;
    for row in rows {
        if values.len() == limits.max_rows {
            truncated = true;
            break;
        }
        let row = if sql.is_explain() {
            // text, one line a row; or one JSON document (FORMAT JSON)
            let plan = if columns.first().is_some_and(|(_, ty)| *ty == Type::JSON) {
                row.try_get::<_, Value>(0)
            } else {
                row.try_get::<_, String>(0).map(Value::String)
            }
            .map_err(ToolError::from_database)?;
            bytes += plan.to_string().len();
            Value::Array(vec![plan])
        } else {
            match row
                .try_get::<_, Option<String>>(0)
                .map_err(ToolError::from_database)?
            {
                Some(text) => {
                    bytes += text.len();
                    Value::Array(row_values(&text, columns)?)
                }
                None => {
                    truncated = true;
                    break;
                }
            }
        };
        if bytes > limits.max_bytes {
            truncated = true;
            break;
        }
        values.push(row);
    }
    let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
    Ok(ToolOutput {
        structured: json!({ "c": names, "r": values, "n": values.len(), "truncated": truncated }),
        visible: None,
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

/// PostgreSQL's message, with where it points, and what to do about a
/// column this role may not read.
fn with_position(err: tokio_postgres::Error) -> ToolError {
    with_position_shifted(err, Some)
}

/// [`with_position`], for a statement whose positions `shift` maps back to
/// the caller's text (or to none, when they point outside it).
fn with_position_shifted(
    err: tokio_postgres::Error,
    shift: impl Fn(usize) -> Option<usize>,
) -> ToolError {
    let hidden_column = err.code()
        == Some(&tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE)
        && err
            .as_db_error()
            .is_some_and(|db| db.message() == "permission denied for table stores");
    if hidden_column {
        return ToolError::Database(
            "permission denied for table stores: its column rls_user_id (a store manager's \
             credential) may not be read, nor a whole row or * of it; name the columns you need \
             (store_id, store_name, is_online)"
                .to_owned(),
        );
    }
    let position = err.as_db_error().and_then(|db| match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => shift(*p as usize),
        _ => None,
    });
    match (ToolError::from_database(err), position) {
        (ToolError::Database(message), Some(position)) => {
            ToolError::Database(format!("{message} (at character {position})"))
        }
        (other, _) => other,
    }
}
