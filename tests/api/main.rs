//! Integration tests against a real PostgreSQL with pgvector; all in one
//! binary so that they share one build. See `helpers` for the databases
//! and the server under test.

mod access;
mod audit;
mod cancellation;
mod clients;
mod codegen;
mod edge;
mod embeddings;
mod faults;
mod golden;
mod helpers;
mod hostile_corpus;
mod http;
mod identity;
mod isolation;
mod lifecycle;
mod migrations;
mod oauth;
mod prompts;
mod rate_limits;
mod raw_sql;
mod replicas;
mod resources;
mod result_cache;
mod rls;
mod round_trips;
mod scale_out;
mod seed;
mod semantic;
mod shared_state;
mod stdio;
mod tools;
mod ui;
