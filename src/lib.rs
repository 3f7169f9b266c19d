//! sqlmcp: typed MCP tools over PostgreSQL, with row-level security per caller.
//!
//! # Layout
//!
//! - [`cli`] — the `sqlmcp` command line: subcommands, flags and their
//!   environment fallbacks. `main.rs` only calls [`cli::run`].
//! - [`db`] — connecting to PostgreSQL with errors that say what to do next.
//! - [`migrate`] — the refinery migrations in `migrations/`, embedded in the
//!   binary: schema, row-level-security policies and the application role.
//! - [`seed`] — deterministic Zava Retail sample data, bulk-loaded with COPY.

pub mod cli;
pub mod db;
pub mod migrate;
pub mod seed;
