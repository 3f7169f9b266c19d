//! `cargo run --release --bin bench -- <what>`: benchmarks that print numbers.
//!
//! - `server`: the server over Streamable HTTP against the database's own
//!   ceiling (the same SQL, transaction and identity setting through a
//!   tokio-postgres pool), per tool and for a mix, at several concurrencies;
//!   start-up time, memory, and the raw-SQL validator alone.
//! - `embeddings`: the local model (load time, latency per query, batch
//!   throughput) and `semantic_search_products` end to end over HTTP.
//! - `validator`: the raw-SQL policy alone on the analytic query, the same
//!   number `server` reports, without the rest of the run.
//!
//! `server` and `embeddings` start a release server in a child process and need a seeded,
//! embedded database (`scripts/run` makes one). They print a table, and
//! with `--json FILE` write the same numbers as JSON.

mod embeddings;
mod harness;
mod server;
mod soak;

use clap::{Parser, Subcommand};
use sqlmcp::secret::Secret;

#[derive(Debug, Parser)]
#[command(name = "bench", about = "sqlmcp benchmarks")]
struct Args {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, Subcommand)]
enum What {
    /// The server against the database's own ceiling.
    Server(server::Args),
    /// The local embedding model, and semantic search end to end.
    Embeddings(embeddings::Args),
    /// A long run under faults: a PostgreSQL restart and an outage of the
    /// embedding provider under load; errors by cause, latency, memory.
    Soak(soak::Args),
    /// The raw-SQL policy alone on the analytic query.
    Validator {
        /// The application role's connection (any migrated database).
        #[arg(long, env = "SQLMCP_APP_DATABASE_URL", hide_env_values = true)]
        app_database_url: Secret,
    },
}

/// What people type into a product search (none is a product's name).
pub const QUERIES: &[&str] = &[
    "something to cut copper pipe",
    "keeps tools dry in the truck",
    "drill holes in a concrete wall",
    "my toilet keeps running after a flush",
    "the bathroom sink drains slowly",
    "protect my lungs from sanding dust",
    "check whether a wire is live before touching it",
    "hang a heavy mirror on drywall",
    "seal the gap between the bathtub and the tiles",
    "water the vegetable beds automatically",
    "trim overgrown shrubs and branches",
    "paint the outside walls of the house",
    "hang bicycles in the garage",
    "cut angles on trim and moulding",
    "light the path to the front door at night",
    "put out a small fire in the kitchen",
];

/// The Seattle, Redmond and Online store managers, and head office.
pub const CALLERS: &[&str] = &[
    "f47ac10b-58cc-4372-a567-0e02b2c3d479",
    "e7f8a9b0-c1d2-3e4f-5678-90abcdef1234",
    "2f4e6d8c-1a3b-5c7e-9f0a-b2d4f6e8c0a2",
    "00000000-0000-0000-0000-000000000000",
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().what {
        What::Server(args) => server::run(args).await,
        What::Embeddings(args) => embeddings::run(args).await,
        What::Soak(args) => soak::run(args).await,
        What::Validator { app_database_url } => {
            let (p50, p99) = server::time_validator(app_database_url.expose()).await?;
            println!("execute_sales_query validator alone: p50 {p50:.1} µs, p99 {p99:.1} µs");
            Ok(())
        }
    }
}
