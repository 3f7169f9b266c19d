//! Integration tests against a real PostgreSQL with pgvector; all in one
//! binary so that they share one build. See `helpers` for the databases.

mod codegen;
mod edge;
mod embeddings;
mod golden;
mod helpers;
mod hostile_corpus;
mod isolation;
mod migrations;
mod raw_sql;
mod rls;
mod round_trips;
mod seed;
mod semantic;
mod server;
mod tools;
