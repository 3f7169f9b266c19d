//! sqlmcp: typed MCP tools over PostgreSQL, with row-level security per caller.
//!
//! # Layout
//!
//! - [`cli`] — the `sqlmcp` command line: subcommands, flags and their
//!   environment fallbacks. `main.rs` only calls [`cli::run`].
//! - [`auth`] — how HTTP callers prove who they are: a trusted header or a
//!   verified JWT, whose keys may come from OAuth authorization servers
//!   (`auth::issuers`, with the RFC 9728 metadata); revoked `jti`s; what a
//!   token's claims let it see (`auth::claims`) and the scope each tool
//!   needs (`auth::scopes`).
//! - [`caller`] — a caller: who (a principal, for logs), which stores (a
//!   grant, that row-level security enforces) and which tools (scopes).
//!   Only [`auth`] and the operator's flags make one from text.
//! - [`secret`] — secrets from flags and the environment, which no `Debug`
//!   or `Display` shows.
//! - [`db`] — connecting to PostgreSQL with errors that say what to do next,
//!   and the deadline that bounds a call; `db::call`, the read-only
//!   transaction every tool call runs in, opened with an identity only the
//!   server can sign and ended in the same round trip as the query.
//! - [`server`] — `sqlmcp serve`: MCP over Streamable HTTP (axum + rmcp) or
//!   stdio, health and metrics endpoints, per-caller rate limits
//!   (`server::rate_limit`), graceful shutdown, and the workbench at `/ui`
//!   with `--ui` (`server/ui.rs`, its page in `ui/`).
//! - [`audit`] — the audit log: an entry per tool call, written off the
//!   call path in batches to `sqlmcp_audit.calls` (as an insert-only role)
//!   and as JSON lines, with a disk spool while the table is unreachable.
//! - [`sql_policy`] — which raw SQL may run: the parse-tree walk (through
//!   serde's data model, over every field of every message), every node type
//!   classified, and the reviewed allow-lists of functions and types.
//! - [`tools`] — the MCP tools, each declared by a [`tools::ToolDescriptor`]:
//!   one per `.sql` file in `queries/`, generated at build time by
//!   `build.rs` from the query catalogue of the `codegen/` crate (whose
//!   cornucopia functions are type-checked against `migrations/`), and three
//!   built in. A call is admitted ([`tools::admit`]: arguments parsed,
//!   validated and embedded, no database) and then executed in one
//!   [`db::Call`] transaction.
//! - [`prompts`] — the MCP prompts: one per `.md` file in `prompts/`
//!   (TOML front matter and a Markdown template), checked when the query
//!   catalogue is made and embedded in the binary; offered to a caller only
//!   if their scopes allow every tool the prompt chains.
//! - [`resources`] — MCP resources, all from files: each `retail` table
//!   (what `get_multiple_table_schemas` says of it), each query file's text
//!   (embedded at build time), and the resource templates query files
//!   declare (`--@ resource`), whose reads are calls of their query through
//!   the handler's tool path ([`server::Handler`]: scopes, rate limits,
//!   audit, deadline, the caller's identity).
//! - [`completion`] — `completion/complete`: values for a template's
//!   variables (and, through the same engine, prompts' arguments) from a
//!   list or from a query checked at build time and run as the caller.
//! - [`embeddings`] — embedding models for tools that search by meaning:
//!   all-MiniLM-L6-v2 in-process (candle), or any OpenAI-shaped API.
//! - [`backfill`] — `sqlmcp embed`: missing or stale product vectors, in
//!   resumable batches.
//! - [`migrate`] — the refinery migrations in `migrations/`, embedded in the
//!   binary: schema, row-level-security policies, the application role and
//!   the audit log's table and role.
//! - [`seed`] — deterministic Zava Retail sample data (the assortment in
//!   `seed/assortment.tsv`, stores, customers, orders), bulk-loaded with COPY.
//!
//! Beside this crate: `codegen/` (the generated query functions and the
//! query catalogue), `codegen/catalogue/` (the catalogue's types and the
//! `.sql` reader, shared by both build scripts) and `bench/` (benchmarks
//! that print numbers).

pub mod audit;
pub mod auth;
pub mod backfill;
pub mod caller;
pub mod cli;
pub mod completion;
pub mod db;
pub mod embeddings;
pub mod migrate;
mod progress;
pub mod prompts;
pub mod resources;
pub mod secret;
pub mod seed;
pub mod server;
pub mod sql_policy;
pub mod tools;
