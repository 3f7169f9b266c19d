//! sqlmcp: typed MCP tools over PostgreSQL, with row-level security per caller.
//!
//! # Layout
//!
//! - [`cli`] — the `sqlmcp` command line: subcommands, flags and their
//!   environment fallbacks. `main.rs` only calls [`cli::run`].
//! - [`auth`] — how HTTP callers prove who they are: a trusted header or a
//!   verified JWT.
//! - [`caller`] — the caller's identity, a UUID that row-level security
//!   filters by.
//! - [`db`] — connecting to PostgreSQL with errors that say what to do next,
//!   and the deadline that bounds a call; `db::call`, the read-only
//!   transaction every tool call runs in, opened with an identity only the
//!   server can sign and ended in the same round trip as the query.
//! - [`server`] — `sqlmcp serve`: MCP over Streamable HTTP (axum + rmcp) or
//!   stdio, health and metrics endpoints, graceful shutdown.
//! - [`sql_policy`] — which raw SQL may run: the parse-tree walk, every node
//!   type classified, and the reviewed allow-lists of functions and types.
//! - [`tools`] — the MCP tools. One per `.sql` file in `queries/`, generated
//!   at build time by `build.rs` from the query catalogue of the `codegen/` crate
//!   (whose cornucopia functions are type-checked against `migrations/`).
//! - [`embeddings`] — embedding models for tools that search by meaning:
//!   all-MiniLM-L6-v2 in-process (candle), or any OpenAI-shaped API.
//! - [`backfill`] — `sqlmcp embed`: missing or stale product vectors, in
//!   resumable batches.
//! - [`migrate`] — the refinery migrations in `migrations/`, embedded in the
//!   binary: schema, row-level-security policies and the application role.
//! - [`seed`] — deterministic Zava Retail sample data, bulk-loaded with COPY.

pub mod auth;
pub mod backfill;
pub mod caller;
pub mod cli;
pub mod db;
pub mod embeddings;
pub mod migrate;
pub mod secret;
pub mod seed;
pub mod server;
pub mod sql_policy;
pub mod tools;
