//! The MCP side: `tools/list` and `tools/call` over the tool list, and the
//! protocol versions the server speaks; the prompts (`src/prompts/`),
//! resources (`src/resources/`) and completions (`src/completion/`) it
//! hands on.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams, CompleteResult,
    ContentBlock, DiscoverResult, GetPromptRequestParams, GetPromptResponse, Implementation,
    JsonObject, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
    ListToolsResult, PaginatedRequestParams, ProtocolVersion, ReadResourceRequestParams,
    ReadResourceResponse, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::State;
use super::cache_hints::{self, Cacheable};
use super::progress::Progress;
use super::rate_limit::CallPermit;
use super::result_cache::{Answer, Lookup};
use crate::audit;
use crate::caller::Caller;
use crate::prompts;
use crate::tools::progress::Reporter;
use crate::tools::{self, ToolContext, ToolError};
use crate::{completion, resources};

/// The MCP revisions the server speaks, oldest first: exactly those its tests
/// prove with the official clients and the conformance suite
/// (`tests/api/clients.rs`). `initialize` agrees to 2025-06-18 or 2025-11-25
/// (a client asking for another gets 2025-11-25); 2026-07-28 has no
/// handshake: `server/discover` lists these, and each request names its
/// version in its `_meta` (and, over HTTP, the `MCP-Protocol-Version`
/// header), which is refused with this list when it is not one of them.
pub const PROTOCOL_VERSIONS: &[ProtocolVersion] = &[
    ProtocolVersion::V_2025_06_18,
    ProtocolVersion::V_2025_11_25,
    ProtocolVersion::V_2026_07_28,
];

/// One per connection (stdio, session) or per request (stateless HTTP), so
/// it only holds shared state: making one costs two reference counts.
#[derive(Clone)]
pub struct Handler {
    state: Arc<State>,
    /// The identity of a stdio client, from the configuration.
    fixed_caller: Option<Arc<Caller>>,
}

impl Handler {
    pub fn new(state: Arc<State>, fixed_caller: Option<Arc<Caller>>) -> Handler {
        Handler {
            state,
            fixed_caller,
        }
    }

    pub(crate) fn caller(&self, context: &RequestContext<RoleServer>) -> Option<Arc<Caller>> {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Arc<Caller>>())
            .or(self.fixed_caller.as_ref())
            .or(self.state.default_caller.as_ref())
            .cloned()
    }

    /// The answer to a call, from the result cache when it is on and holds
    /// one for this tool, these arguments and what this caller may see.
    async fn answer(
        &self,
        caller: &Caller,
        name: &str,
        arguments: Value,
        gone: &CancellationToken,
        progress: Option<Arc<Reporter>>,
    ) -> Result<(Answer, Lookup), ToolError> {
        // a cached answer may be awaited by several callers: one going
        // away does not cancel it
        let shared = CancellationToken::new();
        let progress = progress.as_ref();
        let answer = |arguments, gone| async move {
            let output = self.call(caller, name, arguments, gone, progress).await?;
            Ok(Answer {
                rows: output.rows(),
                visible: output.visible,
                result: CallToolResult::structured(output.structured),
            })
        };
        match &self.state.result_cache {
            Some(cache) if tools::is_curated(name) => {
                let (kept, lookup) = cache
                    .get_or_answer(
                        name,
                        &arguments,
                        &caller.grant,
                        answer(arguments.clone(), &shared),
                    )
                    .await?;
                super::metrics::record_cache_lookup(name, lookup);
                Ok((Answer::clone(&kept), lookup))
            }
            _ => Ok((answer(arguments, gone).await?, Lookup::Miss)),
        }
    }

    async fn call(
        &self,
        caller: &Caller,
        name: &str,
        arguments: Value,
        gone: &CancellationToken,
        progress: Option<&Arc<Reporter>>,
    ) -> Result<tools::ToolOutput, ToolError> {
        // Validation and embedding first: no connection is held meanwhile.
        let admitted = tools::admit(
            name,
            arguments,
            &context(&self.state, progress.map(|p| &**p)),
        )
        .await?;
        if let tools::Admitted::Done(output) = admitted {
            return Ok(output);
        }
        // One deadline for the whole database part, however many tries it
        // takes: a fault costs the caller time, not the call, unless the
        // database stays away longer than that.
        let deadline = Instant::now() + self.state.limits.deadline(name);
        let mut backoff = crate::db::Backoff::default();
        loop {
            let attempt = self.attempt(caller, admitted.clone(), gone, progress, deadline);
            let fault = match attempt.await {
                Err(ToolError::Transient(fault)) => fault,
                other => return other,
            };
            let Some(pause) = backoff.pause(deadline) else {
                tracing::error!(tool = name, tries = backoff.tries(), error = %fault, "a call failed: the database stayed unavailable");
                return Err(ToolError::Unavailable(format!(
                    "the database is unavailable ({fault}); the call was tried {} times over {:.1}s, \
                     as long as its deadline allows; try again later",
                    backoff.tries(),
                    backoff.elapsed().as_secs_f64()
                )));
            };
            super::metrics::record_retry(name, fault.kind);
            tracing::warn!(
                tool = name,
                tries = backoff.tries(),
                pause_ms = pause.as_millis() as u64,
                error = %fault,
                "retrying a call on a fresh connection after a transient database fault"
            );
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = gone.cancelled() => return Err(ToolError::Cancelled),
            }
        }
    }

    /// One try of a call's database part, on a connection of its own,
    /// ending by `deadline`.
    async fn attempt(
        &self,
        caller: &Caller,
        admitted: tools::Admitted,
        gone: &CancellationToken,
        progress: Option<&Arc<Reporter>>,
        deadline: Instant,
    ) -> Result<tools::ToolOutput, ToolError> {
        let wait = deadline.saturating_duration_since(Instant::now());
        // a replica when one is usable, else the primary (db::Databases)
        let connection = tokio::time::timeout(wait, self.state.databases.connection());
        let (connection, target) = match connection.await {
            Ok(Ok(found)) => found,
            Ok(Err(deadpool_postgres::PoolError::Timeout(
                deadpool_postgres::TimeoutType::Wait,
            ))) => {
                return Err(ToolError::Unavailable(format!(
                    "the server is busy: no database connection became free within {:.1}s; try again shortly",
                    self.state.pool_wait.as_secs_f64()
                )));
            }
            Ok(Err(err)) => {
                return Err(match crate::db::transient_connect(&err) {
                    Some(fault) => ToolError::Transient(fault),
                    None => {
                        tracing::error!(error = %err, "no database connection");
                        ToolError::Unavailable(
                            "the database is unavailable; try again later".to_owned(),
                        )
                    }
                });
            }
            Err(_) => {
                return Err(ToolError::Transient(crate::db::Transient {
                    kind: crate::db::FaultKind::Connect,
                    message: "no database connection could be opened before the call's deadline"
                        .to_owned(),
                }));
            }
        };
        // cancelled while it embedded or waited for the connection: the
        // connection goes back unused
        if gone.is_cancelled() {
            return Err(ToolError::Cancelled);
        }
        // On a task of its own, so that the call ends its transaction
        // however it ends; bounded by the call's deadline, and cancelled in
        // PostgreSQL when the caller goes away.
        let limit = deadline.saturating_duration_since(Instant::now());
        let cancel = connection.cancel_token();
        let state = self.state.clone();
        let grant = caller.grant.clone();
        let progress = progress.cloned();
        let task = tokio::spawn(async move {
            let mut checkout = Checkout(Some(connection));
            let context = context(&state, progress.as_deref());
            let output = tools::execute(checkout.client(), &grant, admitted, &context).await;
            (output, checkout)
        });
        match crate::db::run_within(cancel, limit, gone, task).await {
            // a connection that broke is never pooled again, and its
            // replica gets no calls until it answers again: the next try
            // goes elsewhere
            Ok((output @ Err(ToolError::Transient(_)), checkout)) => {
                if checkout.is_closed() {
                    self.state.databases.failed(target);
                }
                checkout.discard();
                output
            }
            Ok((output, checkout)) => {
                checkout.finish();
                output
            }
            Err(crate::db::Interrupted::Deadline) => Err(ToolError::Timeout),
            Err(crate::db::Interrupted::CallerGone) => Err(ToolError::Cancelled),
            Err(crate::db::Interrupted::Failed) => {
                tracing::error!("a tool call failed unexpectedly");
                Err(ToolError::Unavailable(
                    "the call failed unexpectedly; try again".to_owned(),
                ))
            }
        }
    }
}

impl Handler {
    /// Whether `caller` may call `tool` now: a caller is named, their scopes
    /// allow the tool, and their rate limits let one more call in. A
    /// refusal says why, with the audit log's class for it.
    async fn gate(
        &self,
        caller: Option<Arc<Caller>>,
        tool: &str,
    ) -> Result<(Arc<Caller>, CallPermit<'_>), (String, &'static str)> {
        let Some(caller) = caller else {
            return Err((
                "refused: this call names no caller. Send the x-rls-user-id header (header mode) or an \
                 Authorization: Bearer token (jwt mode), or configure a stdio caller or a default caller."
                    .to_owned(),
                "no_identity",
            ));
        };
        if !self.state.tool_scopes.allows(&caller.scopes, tool) {
            return Err((
                format!(
                    "refused: `{tool}` needs the scope `{}`, which this caller's credential does not grant \
                     (it grants: {})",
                    self.state.tool_scopes.required(tool),
                    caller.scopes
                ),
                "missing_scope",
            ));
        }
        let permit = self
            .state
            .rate_limits
            .admit(&caller, tool)
            .await
            .map_err(|refused| (refused.to_string(), refused.audit_class()))?;
        Ok((caller, permit))
    }
}

impl Handler {
    /// Which prompts `caller` is offered: those whose tools they may use.
    fn prompt_access<'a>(&'a self, caller: Option<&'a Caller>) -> prompts::Access<'a> {
        prompts::Access {
            tool_scopes: &self.state.tool_scopes,
            scopes: caller.map(|caller| &caller.scopes),
        }
    }
}

/// What a call may use besides the database.
fn context<'a>(state: &'a State, progress: Option<&'a Reporter>) -> ToolContext<'a> {
    ToolContext {
        embedder: state.embedder.as_deref(),
        schemas: Some(&state.schemas),
        sql_names: Some(&state.sql_names),
        limits: state.limits,
        progress,
    }
}

/// A pooled connection lent to one call. Returned to the pool when the call
/// finished; if it did not (interrupted, a panic, a shutdown), its
/// transaction may be open or a cancel request on its way, so the
/// connection is closed instead.
struct Checkout(Option<deadpool_postgres::Object>);

impl Checkout {
    fn client(&mut self) -> &mut deadpool_postgres::ClientWrapper {
        self.0.as_mut().expect("present until finished")
    }

    fn finish(mut self) {
        self.0.take();
    }

    /// Whether the connection broke under the call.
    fn is_closed(&self) -> bool {
        self.0
            .as_ref()
            .is_some_and(|connection| connection.is_closed())
    }

    /// Closes a connection that failed rather than pooling it.
    fn discard(mut self) {
        if let Some(connection) = self.0.take() {
            drop(deadpool_postgres::Object::take(connection));
        }
    }
}

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(connection) = self.0.take() {
            tracing::warn!("a call was interrupted; closing its database connection");
            drop(deadpool_postgres::Object::take(connection));
        }
    }
}

/// The tool list as MCP lists it, in name order.
pub fn tool_list() -> Vec<Tool> {
    tools::definitions()
        .iter()
        .map(tools::ToolDefinition::to_mcp)
        .collect()
}

impl ServerHandler for Handler {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(
            ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .enable_resources()
                .enable_completions()
                .build(),
        )
        .with_server_info(
            Implementation::new("sqlmcp", env!("CARGO_PKG_VERSION"))
                .with_title("sqlmcp: Zava Retail"),
        )
        .with_instructions(self.state.instructions.clone())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(PROTOCOL_VERSIONS)
    }

    /// What `initialize` would say, for 2026-07-28 clients: the same for
    /// every caller, so any cache may keep it until a restart could change it.
    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, McpError> {
        Ok(
            DiscoverResult::from_server_info(PROTOCOL_VERSIONS.to_vec(), self.get_info())
                .with_hint(cache_hints::SHARED_UNTIL_RESTART),
        )
    }

    /// The tools the caller's scopes allow; every tool to a request that
    /// names no caller (it can call none of them). Only a restart changes
    /// the list, but it is the caller's own: private.
    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let tools = match self.caller(&context) {
            Some(caller) => self
                .state
                .tools
                .iter()
                .filter(|tool| self.state.tool_scopes.allows(&caller.scopes, &tool.name))
                .cloned()
                .collect(),
            None => self.state.tools.as_ref().clone(),
        };
        Ok(ListToolsResult::with_all_items(tools).with_hint(cache_hints::CALLERS_LIST))
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        let caller = self.caller(&context);
        Ok(prompts::list(self.prompt_access(caller.as_deref())))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        let caller = self.caller(&context);
        prompts::get(
            &request.name,
            request.arguments,
            self.prompt_access(caller.as_deref()),
        )
        .map(Into::into)
        .map_err(|refused| refused.to_mcp())
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.state.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(resources::list(
            &self.state,
            self.caller(&context).as_deref(),
        ))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        Ok(resources::templates(
            &self.state,
            self.caller(&context).as_deref(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        resources::read(self, &self.state, &request.uri, &context)
            .await
            .map(Into::into)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        completion::answer(&self.state, self.caller(&context), request, &context.ct).await
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = &*request.name;
        if !self.state.tools.iter().any(|t| t.name == name) {
            return Err(McpError::invalid_params(
                format!("unknown tool `{name}`"),
                None,
            ));
        }
        let called = self.run_call(name, request.arguments, &context).await;
        Ok(called.into_result().into())
    }
}

/// How a call ended: [`Handler::run_call`]'s result as the caller gets it,
/// and whether it was refused or failed.
pub(crate) enum Called {
    Answered(CallToolResult),
    /// Refused before it ran (identity, scope, rate limit, audit log).
    Refused(CallToolResult),
    Failed(CallToolResult, ToolError),
}

impl Called {
    pub(crate) fn into_result(self) -> CallToolResult {
        match self {
            Called::Answered(result) | Called::Refused(result) | Called::Failed(result, _) => {
                result
            }
        }
    }
}

impl Handler {
    /// One call of the tool or query `name`, as `tools/call` and a resource
    /// template's read make it: audited, gated by the caller's scopes and
    /// rate limits, then answered (from the result cache, or by the
    /// database under the caller's identity within the call's deadline).
    pub(crate) async fn run_call(
        &self,
        name: &str,
        arguments: Option<JsonObject>,
        context: &RequestContext<RoleServer>,
    ) -> Called {
        let started = Instant::now();
        let caller = self.caller(context);
        let arguments = arguments.map_or(Value::Null, Value::Object);
        let request_id = || audit::request_id(context.extensions.get());
        let entry = || audit::Entry::new(request_id(), caller.as_deref(), name, &arguments);
        let audited = match self.state.audit.begin(entry).await {
            Ok(audited) => audited,
            Err(refused) => {
                super::metrics::record_call(name, "refused", started.elapsed());
                return Called::Refused(CallToolResult::error(vec![ContentBlock::text(
                    refused.to_string(),
                )]));
            }
        };
        // the permit is held until the call has ended, however it ends
        let (caller, _permit) = match self.gate(caller, name).await {
            Ok(admitted) => admitted,
            Err((refusal, class)) => {
                super::metrics::record_call(name, "refused", started.elapsed());
                tracing::info!(tool = %name, outcome = "refused", class, "{refusal}");
                let result = CallToolResult::error(vec![ContentBlock::text(refusal)]);
                audited.failed(&result, audit::Outcome::Refused, class);
                return Called::Refused(result);
            }
        };
        // notifications/progress, only for a call that asked for them
        let progress = context
            .meta
            .get_progress_token()
            .map(|token| Progress::new(context.peer.clone(), token));
        let (outcome, progress) = super::progress::run(progress, |reporter| {
            self.answer(&caller, name, arguments, &context.ct, reporter)
        })
        .await;
        let elapsed = started.elapsed();
        match outcome {
            Ok((
                Answer {
                    result,
                    rows,
                    visible,
                },
                lookup,
            )) => {
                super::metrics::record_call(name, "ok", elapsed);
                let cached = lookup == Lookup::Hit;
                tracing::info!(tool = %name, caller = %caller.principal, grant = %caller.grant, duration_ms = elapsed.as_millis() as u64, rows, cached, outcome = "ok", "tool call");
                audited.ok(&result, rows, cached, visible);
                if let Some(progress) = progress {
                    let counts_rows = name == tools::raw_sql::NAME;
                    progress.send(|last| last.done(counts_rows, rows)).await;
                }
                Called::Answered(result)
            }
            Err(err) => {
                let cancelled = super::progress::cancel_reason(&err, context, &self.state.stopping);
                let label = if err == ToolError::Cancelled {
                    "cancelled"
                } else {
                    "error"
                };
                super::metrics::record_call(name, label, elapsed);
                if let Some(reason) = cancelled {
                    super::metrics::record_cancelled(name, reason);
                }
                tracing::info!(tool = %name, caller = %caller.principal, grant = %caller.grant, duration_ms = elapsed.as_millis() as u64, outcome = label, error = %err, "tool call");
                let result = CallToolResult::error(vec![ContentBlock::text(err.to_string())]);
                audited.failed(&result, audit::Outcome::Error, audit::error_class(&err));
                Called::Failed(result, err)
            }
        }
    }
}
