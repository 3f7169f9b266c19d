//! `completion/complete`: the values offered for a resource template's
//! variable, and (through the same engine, [`complete`]) for a prompt's
//! argument. Where they come from is declared in the files, as a
//! [`CompletionSource`]:
//!
//! - a fixed list (`--@ complete rank_by ["revenue", "units"]`, or a
//!   parameter's `enum=`), filtered here by the typed prefix, ignoring case;
//! - a query (`--@ complete sku "SELECT sku FROM … WHERE sku ILIKE :prefix
//!   || '%'"`), checked against the schema at build time and run under the
//!   caller's identity ([`db::Call`], opened as every tool call is), so
//!   row-level security decides what a caller is offered. `:prefix` is the
//!   typed text as a LIKE pattern that matches it literally (`\`, `%` and
//!   `_` escaped): what a user types is never a wildcard. Each query runs
//!   with a short statement timeout, is prepared once per connection, and
//!   reads at most 101 rows: MCP offers 100, the 101st says there are more.
//!
//! A caller needs the scope of the template's query; a completion is
//! neither audited nor rate-limited (a client asks at every keystroke),
//! and bounded by its timeout instead.

use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use rmcp::model::{
    CompleteRequestParams, CompleteResult, CompletionInfo, ErrorData as McpError, Reference,
};
use sqlmcp_catalogue::CompletionSource;
use tokio_util::sync::CancellationToken;

use crate::caller::Caller;
use crate::db;
use crate::server::State;
use crate::tools::ToolError;

/// How long a completion query may run.
pub const STATEMENT_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a completion may take in all, its transaction included.
const DEADLINE: Duration = Duration::from_millis(750);

/// Values offered at most: MCP's limit.
pub const MAX_VALUES: usize = CompletionInfo::MAX_VALUES;

/// `completion/complete`: for a resource template's variable or a prompt's
/// argument, which the caller must be allowed to read or get.
pub async fn answer(
    state: &State,
    caller: Option<Arc<Caller>>,
    request: CompleteRequestParams,
    gone: &CancellationToken,
) -> Result<CompleteResult, McpError> {
    let (about, source) = match &request.r#ref {
        Reference::Resource(reference) => {
            template_source(state, caller.as_deref(), &reference.uri, &request)?
        }
        Reference::Prompt(reference) => {
            let access = crate::prompts::Access {
                tool_scopes: &state.tool_scopes,
                scopes: caller.as_deref().map(|caller| &caller.scopes),
            };
            let source =
                crate::prompts::completion_source(&reference.name, &request.argument.name, access)
                    .map_err(|refused| refused.to_mcp())?;
            (reference.name.as_str(), source)
        }
        // what later versions may add
        _ => return Ok(CompleteResult::default()),
    };
    let (Some(source), Some(caller)) = (source, caller) else {
        return Ok(CompleteResult::default());
    };
    let started = std::time::Instant::now();
    let engine = Engine {
        databases: &state.databases,
        pool_wait: state.pool_wait,
        statement_cache: state.limits.statement_cache,
    };
    let completion = complete(engine, &caller, source, &request.argument.value, gone)
        .await
        .map_err(|err| McpError::internal_error(err.to_string(), None))?;
    tracing::debug!(
        of = about,
        argument = %request.argument.name,
        values = completion.values.len(),
        duration_us = started.elapsed().as_micros() as u64,
        "completion"
    );
    Ok(CompleteResult::new(completion))
}

/// The completion source of a template's variable, if the caller may read
/// the template.
fn template_source<'r>(
    state: &State,
    caller: Option<&Caller>,
    uri: &'r str,
    request: &CompleteRequestParams,
) -> Result<(&'r str, Option<&'static CompletionSource>), McpError> {
    let template = crate::resources::template(uri)
        .ok_or_else(|| McpError::invalid_params(format!("no resource template `{uri}`"), None))?;
    let variable = template
        .variables()
        .iter()
        .find(|v| v.name == request.argument.name)
        .ok_or_else(|| {
            McpError::invalid_params(
                format!("`{uri}` has no variable `{}`", request.argument.name),
                None,
            )
        })?;
    crate::resources::permitted(state, caller, template.uri.as_str(), &template.query.name)?;
    Ok((uri, variable.completion.as_ref()))
}

/// What completion queries run on: the server's databases and how it
/// prepares statements.
#[derive(Clone, Copy)]
pub struct Engine<'a> {
    pub databases: &'a db::Databases,
    /// How long a completion waits for a free connection.
    pub pool_wait: Duration,
    /// Prepare statements once per connection ([`db::Call`]).
    pub statement_cache: bool,
}

/// The values `source` offers `caller` for what they typed so far
/// (`prefix`): at most [`MAX_VALUES`], with `hasMore` when there are more,
/// and `total` when it is known.
pub async fn complete(
    engine: Engine<'_>,
    caller: &Caller,
    source: &CompletionSource,
    prefix: &str,
    gone: &CancellationToken,
) -> Result<CompletionInfo, ToolError> {
    match source {
        CompletionSource::Values(values) => Ok(from_values(values, prefix)),
        CompletionSource::Query { sql, .. } => from_query(engine, caller, sql, prefix, gone).await,
    }
}

/// The listed values that start with `prefix`, ignoring case, in order.
pub fn from_values(values: &[String], prefix: &str) -> CompletionInfo {
    let typed = prefix.to_lowercase();
    let matching: Vec<String> = values
        .iter()
        .filter(|value| value.to_lowercase().starts_with(&typed))
        .cloned()
        .collect();
    let total = matching.len();
    let offered = matching.into_iter().take(MAX_VALUES).collect();
    CompletionInfo::with_pagination(offered, u32::try_from(total).ok(), total > MAX_VALUES)
        .expect("at most MAX_VALUES values")
}

/// `typed` as a LIKE pattern that matches it literally: `\`, `%` and `_`
/// escaped with LIKE's default escape character.
pub fn like_pattern(typed: &str) -> String {
    let mut pattern = String::with_capacity(typed.len() + 4);
    for c in typed.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

/// The statement a completion query runs as: at most one row more than
/// MCP offers.
fn limited(sql: &str) -> String {
    format!(
        "SELECT * FROM ({sql}\n) AS completion LIMIT {}",
        MAX_VALUES + 1
    )
}

/// Runs a completion query as `caller`, in a read-only transaction opened
/// for them, on a pooled connection.
async fn from_query(
    engine: Engine<'_>,
    caller: &Caller,
    sql: &str,
    prefix: &str,
    gone: &CancellationToken,
) -> Result<CompletionInfo, ToolError> {
    let statement_text = limited(sql);
    let pattern = like_pattern(prefix);
    let (connection, target) = engine
        .databases
        .connection()
        .await
        .map_err(|err| match err {
            deadpool_postgres::PoolError::Timeout(_) => ToolError::Unavailable(format!(
                "the server is busy: no database connection became free within {:.1}s",
                engine.pool_wait.as_secs_f64()
            )),
            other => {
                tracing::error!(error = %other, "no database connection");
                ToolError::Unavailable("the database is unavailable; try again later".to_owned())
            }
        })?;
    let mut lent = Lent(Some(connection));
    let work = async {
        let call = db::Call::new(lent.client(), engine.statement_cache, db::Settle::Commit);
        call.run(&caller.grant, STATEMENT_TIMEOUT, &[], async {
            let statement =
                sqlmcp_codegen::client::GenericClient::prepare(&call, &statement_text).await?;
            let rows = call.query_last(&statement, [&pattern]).await?;
            rows.try_collect::<Vec<tokio_postgres::Row>>().await
        })
        .await
    };
    let settled = tokio::select! {
        settled = work => settled,
        () = tokio::time::sleep(DEADLINE) => return Err(ToolError::Timeout),
        () = gone.cancelled() => {
            return Err(ToolError::Unavailable("the caller went away".to_owned()));
        }
    };
    if lent.client().is_closed() {
        engine.databases.failed(target);
    }
    lent.finish();
    let settled = settled.map_err(ToolError::from_database)?;
    settled.opened.map_err(ToolError::from_database)?;
    let rows = settled.output.map_err(ToolError::from_database)?;
    settled.ended.map_err(ToolError::from_database)?;
    let mut values: Vec<String> = rows
        .iter()
        .filter_map(|row| row.try_get::<_, Option<String>>(0).ok().flatten())
        .collect();
    let more = rows.len() > MAX_VALUES;
    values.truncate(MAX_VALUES);
    let total = (!more).then(|| u32::try_from(values.len()).unwrap_or(u32::MAX));
    Ok(CompletionInfo::with_pagination(values, total, more).expect("at most MAX_VALUES values"))
}

/// A pooled connection lent to one completion: given back when it
/// finished, closed when it did not (its transaction may be open).
struct Lent(Option<deadpool_postgres::Object>);

impl Lent {
    fn client(&self) -> &deadpool_postgres::ClientWrapper {
        self.0.as_ref().expect("present until finished")
    }

    fn finish(&mut self) {
        self.0.take();
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            drop(deadpool_postgres::Object::take(connection));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_user_types_is_never_a_wildcard() {
        assert_eq!(like_pattern("PWR-"), "PWR-");
        assert_eq!(like_pattern("50%_off\\"), "50\\%\\_off\\\\");
    }

    #[test]
    fn lists_are_filtered_by_prefix_ignoring_case() {
        let values = vec!["revenue".to_owned(), "units".to_owned(), "Rank".to_owned()];
        let offered = from_values(&values, "R");
        assert_eq!(offered.values, ["revenue", "Rank"]);
        assert_eq!((offered.total, offered.has_more), (Some(2), Some(false)));
        let many: Vec<String> = (0..150).map(|n| format!("v{n}")).collect();
        let offered = from_values(&many, "");
        assert_eq!(offered.values.len(), MAX_VALUES);
        assert_eq!((offered.total, offered.has_more), (Some(150), Some(true)));
    }
}
