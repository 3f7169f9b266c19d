//! The MCP tools: one per curated query in `queries/`, generated at build
//! time (see `build.rs`), each with a JSON Schema for its arguments and its
//! result.

mod curated;
mod current_date;
pub mod progress;
pub mod raw_sql;
mod support;
pub mod table_schemas;

use std::time::Duration;

use deadpool_postgres::ClientWrapper;
use serde_json::Value;

use crate::caller::Grant;
use crate::db;
use crate::embeddings::Embedder;

pub use curated::CuratedCall;

/// What a tool states about itself. Every tool declares one, as a `TOOL`
/// constant of its module: the generated ones (`build.rs` writes them from
/// the query catalogue) and the three built in alike.
pub struct ToolDescriptor {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    /// The file it comes from: its `.sql`, or its module.
    pub source: &'static str,
    pub input_schema: fn() -> Value,
    pub output_schema: fn() -> Value,
}

/// The tools written by hand.
const BUILT_IN: [&ToolDescriptor; 3] = [&current_date::TOOL, &table_schemas::TOOL, &raw_sql::TOOL];

/// A tool as MCP lists it, its schemas made.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolDefinition {
    pub name: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub input_schema: Value,
    pub output_schema: Value,
    /// The file it comes from.
    pub source: &'static str,
}

impl From<&ToolDescriptor> for ToolDefinition {
    fn from(tool: &ToolDescriptor) -> ToolDefinition {
        ToolDefinition {
            name: tool.name,
            title: tool.title,
            description: tool.description,
            input_schema: (tool.input_schema)(),
            output_schema: (tool.output_schema)(),
            source: tool.source,
        }
    }
}

impl ToolDefinition {
    /// The tool as `tools/list` returns it. Every tool only reads the
    /// database and answers alike when called alike: the annotations are
    /// the same for all, and stated here only.
    pub fn to_mcp(&self) -> rmcp::model::Tool {
        let object = |value: &Value| match value {
            Value::Object(map) => std::sync::Arc::new(map.clone()),
            _ => std::sync::Arc::new(rmcp::model::JsonObject::new()),
        };
        rmcp::model::Tool::new(self.name, self.description, object(&self.input_schema))
            .with_title(self.title)
            .with_raw_output_schema(object(&self.output_schema))
            .with_annotations(
                rmcp::model::ToolAnnotations::with_title(self.title)
                    .read_only(true)
                    .destructive(false)
                    .idempotent(true)
                    .open_world(false),
            )
    }

    /// [`Self::to_mcp`] as JSON.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self.to_mcp()).expect("tools serialise")
    }
}

/// Every tool, in name order.
pub fn definitions() -> Vec<ToolDefinition> {
    let mut all: Vec<ToolDefinition> = curated::DEFINITIONS
        .iter()
        .chain(&BUILT_IN)
        .map(|tool| ToolDefinition::from(*tool))
        .collect();
    all.sort_by_key(|d| d.name);
    all
}

/// What the server tells a client about its tools when it connects: the
/// generated tools are named from the query catalogue, so a new `.sql` file
/// appears here too.
pub fn instructions() -> String {
    let mut curated: Vec<&str> = curated::DEFINITIONS.iter().map(|tool| tool.name).collect();
    curated.sort_unstable();
    format!(
        "Tools over the Zava Retail database (a DIY hardware chain with 8 stores). Prefer the \
         curated tools ({}): they are fast, typed and correct. Call {} to turn relative periods \
         into dates, and {} before writing SQL of your own with {}. Every result is limited to \
         what the caller may see: a store manager sees their own store's customers, orders and \
         inventory; head office sees all. Money amounts are exact decimal strings. When a result \
         says truncated: true, narrow the question (a date range, a store, a category) rather \
         than asking for everything.",
        curated.join(", "),
        current_date::TOOL.name,
        table_schemas::TOOL.name,
        raw_sql::TOOL.name,
    )
}

/// The queries of `queries/` that serve no tool, only a resource template
/// (`--@ resource-only`); a caller needs a scope for them as for a tool.
pub fn resource_only_queries() -> impl Iterator<Item = &'static str> {
    curated::RESOURCE_ONLY.iter().map(|query| query.name)
}

/// Whether `name` is a tool generated from `queries/`.
pub fn is_curated(name: &str) -> bool {
    curated::DEFINITIONS.iter().any(|tool| tool.name == name)
}

/// A failed tool call, worded for the model that made it.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ToolError {
    #[error("unknown tool `{0}`")]
    UnknownTool(String),
    #[error("invalid argument `{argument}`: {rule}")]
    InvalidArgument { argument: String, rule: String },
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("this tool needs an embedding model, and none is configured")]
    NoEmbeddingModel,
    #[error("could not embed the text: {0}")]
    Embedding(String),
    #[error("the query was cancelled: it ran longer than the statement timeout")]
    Timeout,
    /// The client cancelled the call or went away (or the server is
    /// stopping) while it ran.
    #[error("the call was cancelled before it finished")]
    Cancelled,
    #[error("database error: {0}")]
    Database(String),
    /// The connection broke or the server went away before the call had
    /// an answer; the call changed nothing, and a fresh connection may
    /// answer it ([`db::transient`]).
    #[error("the database connection failed: {0}")]
    Transient(db::Transient),
}

impl ToolError {
    pub fn from_database(err: tokio_postgres::Error) -> ToolError {
        if let Some(transient) = db::transient(&err) {
            return ToolError::Transient(transient);
        }
        let Some(db) = err.as_db_error() else {
            return ToolError::Database(err.to_string());
        };
        if *db.code() == tokio_postgres::error::SqlState::QUERY_CANCELED {
            return ToolError::Timeout;
        }
        let mut message = db.message().to_owned();
        if let Some(detail) = db.detail() {
            message.push_str(&format!(" ({detail})"));
        }
        ToolError::Database(message)
    }
}

/// A successful result: `structuredContent`, also sent as text.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub structured: Value,
    /// The stores the call could see, as the database resolved them when
    /// the call's transaction opened (for the audit log); `None` when the
    /// tool answered without one.
    pub visible: Option<db::Visible>,
}

impl ToolOutput {
    /// A row result with no rows.
    pub fn is_empty(&self) -> bool {
        self.structured["row_count"] == 0
    }

    /// The rows returned: `row_count`, or `n` in raw SQL's compact shape.
    pub fn rows(&self) -> Option<u64> {
        let count = self.structured.get("row_count");
        count.or_else(|| self.structured.get("n"))?.as_u64()
    }
}

/// The bounds of every call, set once (from the command line) and passed
/// whole to each call.
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// How long one statement of a curated tool may run.
    pub statement_timeout: Duration,
    /// Rows a curated tool returns at most; more set `truncated`.
    pub max_rows: usize,
    /// The bounds of `execute_sales_query`.
    pub raw_sql: raw_sql::Limits,
    /// Prepare statements once per connection ([`db::Call`]).
    pub statement_cache: bool,
}

impl Default for CallLimits {
    fn default() -> Self {
        CallLimits {
            statement_timeout: db::DEFAULT_STATEMENT_TIMEOUT,
            max_rows: 1_000,
            raw_sql: raw_sql::Limits::default(),
            statement_cache: true,
        }
    }
}

impl CallLimits {
    /// How long the database part of a call of `tool` may take, all of it:
    /// the tool's statement timeout (which PostgreSQL enforces per statement
    /// and reports itself), and a little more for the statements around it.
    pub fn deadline(&self, tool: &str) -> Duration {
        let timeout = if tool == raw_sql::NAME {
            self.raw_sql.statement_timeout
        } else {
            self.statement_timeout
        };
        timeout + Duration::from_millis(250)
    }
}

/// What a tool call may use besides the database.
#[derive(Default)]
pub struct ToolContext<'a> {
    pub embedder: Option<&'a dyn Embedder>,
    /// Table descriptions, read once per process.
    pub schemas: Option<&'a table_schemas::Cache>,
    /// The database's names raw SQL is judged against, cached.
    pub sql_names: Option<&'a raw_sql::NamesCache>,
    pub limits: CallLimits,
    /// Where the call reports how far it got, when its client asked.
    pub progress: Option<&'a progress::Reporter>,
}

impl ToolContext<'_> {
    /// The embedder, for a tool about to embed its text (the generated
    /// tools ask for it only then, so it reports that stage).
    pub fn embedder(&self) -> Result<&dyn Embedder, ToolError> {
        let embedder = self.embedder.ok_or(ToolError::NoEmbeddingModel)?;
        if let Some(progress) = self.progress {
            progress.embedding();
        }
        Ok(embedder)
    }
}

/// A call whose arguments are valid and whose texts are embedded: all that
/// needs no database is done. A clone runs the call again after a
/// transient fault.
#[derive(Clone)]
pub enum Admitted {
    /// Answered without the database.
    Done(ToolOutput),
    RawSql(raw_sql::Args),
    Curated(curated::ReadyCall),
    Schemas(table_schemas::Args),
}

/// Admits a call of tool `name`: parses and validates its arguments and
/// embeds its texts, before any database connection is taken. (To
/// "prepare" is left to its SQL meaning: a statement prepared on a
/// connection.)
pub async fn admit(
    name: &str,
    arguments: Value,
    context: &ToolContext<'_>,
) -> Result<Admitted, ToolError> {
    Ok(match name {
        current_date::NAME => {
            support::parse_arguments::<current_date::Args>(arguments)?;
            Admitted::Done(current_date::call())
        }
        raw_sql::NAME => Admitted::RawSql(raw_sql::Args::parse(arguments)?),
        table_schemas::NAME => Admitted::Schemas(table_schemas::Args::parse(arguments)?),
        _ => Admitted::Curated(
            CuratedCall::parse(name, arguments)
                .ok_or_else(|| ToolError::UnknownTool(name.to_owned()))??
                .admit(context)
                .await?,
        ),
    })
}

/// The calls that run in the transaction of [`execute`].
enum InTransaction {
    Curated(curated::ReadyCall),
    Schemas(table_schemas::Args),
}

/// Runs an admitted call for `grant`, in one read-only transaction with
/// what the caller may see set for that transaction only ([`db::Call::run`]):
/// `BEGIN READ ONLY` with the settings, the identity, the query and COMMIT,
/// written without waiting in between, so one round trip once the query is
/// prepared on the connection. A tool with a second statement (an embedding
/// tool that found nothing checks the stored vectors) and the schema tool
/// send the COMMIT once they are done: two round trips.
///
/// A future dropped before the end would leave the transaction open, so the
/// server runs calls to completion on a task of their own (and closes the
/// connection of a call that still did not finish).
pub async fn execute(
    client: &mut ClientWrapper,
    grant: &Grant,
    admitted: Admitted,
    context: &ToolContext<'_>,
) -> Result<ToolOutput, ToolError> {
    let request = match admitted {
        Admitted::Done(output) => return Ok(output),
        // raw SQL runs in a transaction of its own, always rolled back
        Admitted::RawSql(args) => {
            let fresh = raw_sql::NamesCache::default();
            let names = context.sql_names.unwrap_or(&fresh);
            return raw_sql::call(
                client,
                context.limits.statement_cache,
                grant,
                names,
                context.limits.raw_sql,
                args,
                context.progress,
            )
            .await;
        }
        Admitted::Curated(call) => InTransaction::Curated(call),
        Admitted::Schemas(args) => InTransaction::Schemas(args),
    };
    let client: &ClientWrapper = client;
    let call = db::Call::new(client, context.limits.statement_cache, db::Settle::Commit);
    if let Some(progress) = context.progress {
        progress.query_sent();
    }
    let settled = call
        .run(grant, context.limits.statement_timeout, &[], async {
            match request {
                InTransaction::Curated(ready) => ready.run(&call, context).await,
                InTransaction::Schemas(args) => {
                    table_schemas::call(&**call.client(), context.schemas, args).await
                }
            }
        })
        .await;
    outcome(settled)
}

/// A call's result once its transaction is settled: a failure to open it
/// first, then the tool's own, then one to end it.
fn outcome(
    settled: Result<db::Settled<Result<ToolOutput, ToolError>>, tokio_postgres::Error>,
) -> Result<ToolOutput, ToolError> {
    let settled = settled.map_err(ToolError::from_database)?;
    let visible = settled.opened.map_err(ToolError::from_database)?;
    let output = settled.output?;
    settled.ended.map_err(ToolError::from_database)?;
    Ok(ToolOutput {
        visible: Some(visible),
        ..output
    })
}

/// [`admit`], then [`execute`].
pub async fn call(
    client: &mut ClientWrapper,
    grant: &Grant,
    name: &str,
    arguments: Value,
    context: &ToolContext<'_>,
) -> Result<ToolOutput, ToolError> {
    let admitted = admit(name, arguments, context).await?;
    execute(client, grant, admitted, context).await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The generator refuses queries named like a built-in tool by a list of
    /// its own (`codegen/catalogue/src/lib.rs`): it must be this one.
    #[test]
    fn the_generator_knows_every_built_in_tool() {
        let mut built_in: Vec<&str> = definitions()
            .iter()
            .map(|d| d.name)
            .filter(|name| !is_curated(name))
            .collect();
        built_in.sort_unstable();
        assert_eq!(built_in, curated::BUILT_IN_NAMES);
    }

    #[test]
    fn the_instructions_name_every_tool_from_the_query_catalogue() {
        let instructions = instructions();
        for tool in definitions() {
            assert!(instructions.contains(tool.name), "{}", tool.name);
        }
    }

    #[test]
    fn tool_names_are_unique() {
        let names: Vec<&str> = definitions().iter().map(|d| d.name).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique, "definitions() is sorted by name");
    }
}
