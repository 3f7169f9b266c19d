//! The transaction of one tool call, and its round trips.
//!
//! A call is one read-only transaction: `BEGIN READ ONLY` with the call's
//! settings, the caller's identity ([`OPEN_CALL`]), the tool's statement,
//! then COMMIT (curated tools) or ROLLBACK (raw SQL). [`Call::run`] writes
//! all four without waiting for an answer in between, so on a connection
//! that has the statements prepared a call costs one round trip: PostgreSQL
//! runs the messages in order, and answers a COMMIT after a failed statement
//! with a rollback, so a failure loses nothing.
//!
//! The end must never overtake the tool's statement, or the statement would
//! run outside the transaction: without its read-only mode, its settings and
//! its identity. So the end is written only once the statement has been
//! handed to the connection ([`Last`]), or once the tool's work is over; and
//! a statement issued after that is a bug that panics rather than runs.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Poll;

use deadpool_postgres::ClientWrapper;
use tokio_postgres::types::{BorrowToSql, ToSql, Type};
use tokio_postgres::{Error, Row, RowStream, Statement, ToStatement};

use crate::caller::Grant;

/// The server's own statement that opens every call with what the caller
/// may see: the caller's id, and the stores and regions a verified
/// credential lists, all three as bind parameters ([`Grant::open_call_params`]).
/// It must be sent exactly so: the database signs the store set only for
/// this text (see `migrations/V5__unforgeable_identity.sql` and
/// `V6__regions_and_store_sets.sql`), so no SQL running inside a call can
/// claim another. It answers with the stores the call may see (NULL: all).
pub const OPEN_CALL: &str = "SELECT sqlmcp_identity.open_call($1, $2, $3)";

/// The stores a call could see, as the database resolved them; `None`:
/// every store.
pub type Visible = Option<Vec<i32>>;

/// Sets what `grant` may see for the transaction `client` is in: one round
/// trip. The server pipelines it instead ([`Call::run`]).
pub async fn set_caller(
    client: &impl tokio_postgres::GenericClient,
    grant: &Grant,
) -> Result<Visible, tokio_postgres::Error> {
    let (id, stores, regions) = grant.open_call_params();
    let row = client
        .query_one(OPEN_CALL, &[&id, &stores, &regions])
        .await?;
    Ok(row.get(0))
}

/// The statement that sets a tool call's other settings,
/// transaction-locally (`set_config(…, true)`), so nothing survives on a
/// pooled connection:
/// - `statement_timeout`;
/// - `hnsw.iterative_scan`: an HNSW index scan goes on past `ef_search`
///   candidates until the LIMIT is met, in exact order; without it a
///   filtered search would return fewer rows than it should;
/// - `plan_cache_mode`: statements are prepared once per connection, and a
///   generic plan for the queries' optional filters (`$1 IS NULL OR …`)
///   would scan what a plan for the actual values skips;
/// - then `extra`.
///
/// The values come from this program and are literals, so the statement
/// goes as a simple query with `BEGIN`: one message, which can be pipelined
/// with what follows. They are quoted all the same.
pub fn call_settings(statement_timeout: std::time::Duration, extra: &[(&str, String)]) -> String {
    let fixed = [
        (
            "statement_timeout",
            format!("{}ms", statement_timeout.as_millis()),
        ),
        ("hnsw.iterative_scan", "strict_order".to_owned()),
        ("plan_cache_mode", "force_custom_plan".to_owned()),
    ];
    let calls: Vec<String> = fixed
        .iter()
        .map(|(name, value)| (*name, value.as_str()))
        .chain(extra.iter().map(|(name, value)| (*name, value.as_str())))
        .map(|(name, value)| {
            format!(
                "set_config({}, {}, true)",
                quote_literal(name),
                quote_literal(value)
            )
        })
        .collect();
    format!("SELECT {}", calls.join(", "))
}

/// `BEGIN READ ONLY` and [`call_settings`] as one simple query.
pub fn begin_read_only(statement_timeout: std::time::Duration, extra: &[(&str, String)]) -> String {
    format!(
        "BEGIN READ ONLY; {}",
        call_settings(statement_timeout, extra)
    )
}

/// A string literal that reads the same whatever `standard_conforming_strings` is.
fn quote_literal(value: &str) -> String {
    format!("E'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Polls `future` once: its first messages are then with the connection.
async fn poll_once<F: std::future::Future>(mut future: std::pin::Pin<&mut F>) -> Poll<F::Output> {
    std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await
}

/// How a call's transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// Curated tools and the schema tool: COMMIT (a read-only transaction
    /// has nothing to keep; after a failure PostgreSQL rolls back).
    Commit,
    /// Raw SQL: ROLLBACK, whatever the statement did, and a session-level
    /// advisory lock (which outlives a transaction) is let go.
    Rollback,
}

impl Settle {
    fn sql(self) -> &'static str {
        match self {
            Settle::Commit => "COMMIT",
            Settle::Rollback => "ROLLBACK; SELECT pg_catalog.pg_advisory_unlock_all()",
        }
    }
}

/// What [`Call::run`] reports: opening (settings and identity), the tool's
/// own output, and the end of the transaction.
#[derive(Debug)]
pub struct Settled<T> {
    /// The stores the call could see.
    pub opened: Result<Visible, Error>,
    pub output: T,
    pub ended: Result<(), Error>,
}

/// One call's transaction on one pooled connection. The tool's statements go
/// through it ([`sqlmcp_codegen::client::GenericClient`]), its last one
/// through [`Call::last`].
///
/// With `cache` on, statements are prepared once per connection and kept;
/// turn it off behind a transaction-pooling PgBouncer older than 1.21, which
/// cannot carry a prepared statement from one transaction to the next: each
/// call then prepares its statements inside its transaction and closes them
/// there before its end (two round trips more).
pub struct Call<'a> {
    client: &'a ClientWrapper,
    cache: bool,
    settle: Settle,
    /// Wakes the end of the transaction (see [`Call::allow_end`]).
    end: tokio::sync::Notify,
    /// The end may be written now: no statement may follow.
    ended: AtomicBool,
    /// [`Last`] prepared the statement it is about to run.
    last_prepared: AtomicBool,
}

impl<'a> Call<'a> {
    pub fn new(client: &'a ClientWrapper, cache: bool, settle: Settle) -> Call<'a> {
        Call {
            client,
            cache,
            settle,
            end: tokio::sync::Notify::new(),
            ended: AtomicBool::new(false),
            last_prepared: AtomicBool::new(false),
        }
    }

    /// Whether statements are prepared once per connection and kept.
    pub fn is_cached(&self) -> bool {
        self.cache
    }

    /// The connection, for work that runs its own statements; the end then
    /// waits until `work` is over.
    pub fn client(&self) -> &'a ClientWrapper {
        self.client
    }

    /// Runs `work` in the call's transaction, opened for `grant` with
    /// [`begin_read_only`] and [`OPEN_CALL`], and ends it as `settle` says.
    /// All four are written without waiting for answers in between: one
    /// round trip when `work`'s last statement goes through [`Call::last`]
    /// and the statements are prepared on the connection.
    ///
    /// `tokio::join!` polls the four in order, and each writes its first
    /// message on its first poll, so they reach PostgreSQL in this order.
    /// If opening fails before `work` could be sent behind it (preparing the
    /// identity statement), `work` does not run at all: never outside the
    /// transaction's settings.
    pub async fn run<T>(
        &self,
        grant: &Grant,
        statement_timeout: std::time::Duration,
        extra: &[(&str, String)],
        work: impl std::future::Future<Output = T>,
    ) -> Result<Settled<T>, Error> {
        let begin = begin_read_only(statement_timeout, extra);
        let (id, stores, regions) = grant.open_call_params();
        let params: [&(dyn ToSql + Sync); 3] = [&id, &stores, &regions];
        let visible = |row: Result<Row, Error>| row.map(|row| row.get::<_, Visible>(0));
        let work = async {
            let output = work.await;
            self.allow_end();
            output
        };
        let end = async {
            self.end.notified().await;
            self.client.batch_execute(self.settle.sql()).await
        };
        let (opened, output, ended) = if self.cache {
            let open = self.client.prepare_cached(OPEN_CALL).await?;
            let (began, opened, output, ended) = tokio::join!(
                self.client.batch_execute(&begin),
                self.client.query_one(&open, &params),
                work,
                end
            );
            (began.and(visible(opened)), output, ended)
        } else {
            // Behind a transaction-pooling PgBouncer older than 1.21 no
            // named statement may outlive its transaction: a Close written
            // after the end could reach another server connection, and the
            // statement would stay where it was made, its name ready to
            // clash with another process's. So the identity statement goes
            // unnamed, its parameter types given, right behind BEGIN; the
            // tool's own statements are prepared in the transaction and
            // dropped (closed) with `work`, before the end is written.
            let typed: [(&(dyn ToSql + Sync), Type); 3] = [
                (&id, Type::TEXT),
                (&stores, Type::INT4_ARRAY),
                (&regions, Type::TEXT_ARRAY),
            ];
            let (began, opened, output) = tokio::join!(
                self.client.batch_execute(&begin),
                self.client.query_typed_one(OPEN_CALL, &typed),
                work
            );
            let ended = self.client.batch_execute(self.settle.sql()).await;
            (began.and(visible(opened)), output, ended)
        };
        Ok(Settled {
            opened,
            output,
            ended,
        })
    }

    /// The client for `work`'s last statement: once it has handed that
    /// statement to the connection, the end of the transaction is written
    /// right behind it, in the same round trip.
    pub fn last(&self) -> Last<'_, 'a> {
        Last { call: self }
    }

    /// Runs a prepared statement as `work`'s last, and lets the end of the
    /// transaction follow it at once.
    pub async fn query_last<I>(&self, statement: &Statement, params: I) -> Result<RowStream, Error>
    where
        I: IntoIterator + Sync + Send,
        I::IntoIter: ExactSizeIterator,
        I::Item: BorrowToSql,
    {
        self.check_open();
        self.end_behind(self.client.query_raw(statement, params))
            .await
    }

    /// Runs `query` (a prepared statement's), letting the end of the
    /// transaction be written right behind it: tokio-postgres hands a
    /// prepared statement's Bind/Execute to the connection on the first
    /// poll, before it waits for anything.
    async fn end_behind<T>(&self, query: impl std::future::Future<Output = T>) -> T {
        let mut query = pin!(query);
        let first = poll_once(query.as_mut()).await;
        self.allow_end();
        match first {
            Poll::Ready(result) => result,
            Poll::Pending => query.await,
        }
    }

    /// Lets the end of the transaction be written; from now on a statement
    /// would run after it.
    fn allow_end(&self) {
        if !self.ended.swap(true, Ordering::SeqCst) {
            self.end.notify_one();
        }
    }

    fn check_open(&self) {
        assert!(
            !self.ended.load(Ordering::SeqCst),
            "a statement after its call's transaction was ended would run outside it"
        );
    }

    async fn prepare_statement(&self, query: &str) -> Result<Statement, Error> {
        self.check_open();
        if self.cache {
            self.client.prepare_cached(query).await
        } else {
            self.client.prepare(query).await
        }
    }
}

/// [`Call::last`]: the generated query functions run their statement
/// through it. They prepare it first ([`sqlmcp_codegen::client::GenericClient::stmt_cache`]),
/// then run it: only a statement prepared so is known to be handed over on
/// the first poll, so only then does the end follow at once; otherwise it
/// waits for the work to be over.
pub struct Last<'c, 'a> {
    call: &'c Call<'a>,
}

/// The statement methods a client passes on unchanged to `$to` (after
/// `$check`): all but `prepare` and `query_raw`.
macro_rules! pass_on {
    ($self:ident, $check:expr, $to:expr) => {
        async fn execute<T>(&$self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error>
        where
            T: ?Sized + ToStatement + Sync + Send,
        {
            $check;
            $to.execute(query, params).await
        }

        async fn query_one<T>(&$self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Error>
        where
            T: ?Sized + ToStatement + Sync + Send,
        {
            $check;
            $to.query_one(query, params).await
        }

        async fn query_opt<T>(
            &$self,
            query: &T,
            params: &[&(dyn ToSql + Sync)],
        ) -> Result<Option<Row>, Error>
        where
            T: ?Sized + ToStatement + Sync + Send,
        {
            $check;
            $to.query_opt(query, params).await
        }

        async fn query<T>(&$self, query: &T, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>, Error>
        where
            T: ?Sized + ToStatement + Sync + Send,
        {
            $check;
            $to.query(query, params).await
        }
    };
}

impl sqlmcp_codegen::client::GenericClient for Call<'_> {
    /// Tells the generated code to `prepare` each query before running it,
    /// rather than to pass its text (which tokio-postgres would prepare
    /// anew every time): `prepare` then decides whether to cache.
    fn stmt_cache() -> bool {
        true
    }

    async fn prepare(&self, query: &str) -> Result<Statement, Error> {
        self.prepare_statement(query).await
    }

    pass_on!(self, self.check_open(), self.client);

    async fn query_raw<T, I>(&self, statement: &T, params: I) -> Result<RowStream, Error>
    where
        T: ?Sized + ToStatement + Sync + Send,
        I: IntoIterator + Sync + Send,
        I::IntoIter: ExactSizeIterator,
        I::Item: BorrowToSql,
    {
        self.check_open();
        self.client.query_raw(statement, params).await
    }
}

impl sqlmcp_codegen::client::GenericClient for Last<'_, '_> {
    fn stmt_cache() -> bool {
        true
    }

    async fn prepare(&self, query: &str) -> Result<Statement, Error> {
        let statement = self.call.prepare_statement(query).await?;
        self.call.last_prepared.store(true, Ordering::SeqCst);
        Ok(statement)
    }

    pass_on!(self, self.call.check_open(), self.call);

    async fn query_raw<T, I>(&self, statement: &T, params: I) -> Result<RowStream, Error>
    where
        T: ?Sized + ToStatement + Sync + Send,
        I: IntoIterator + Sync + Send,
        I::IntoIter: ExactSizeIterator,
        I::Item: BorrowToSql,
    {
        self.call.check_open();
        // the statement is the one just prepared, so it goes on the first
        // poll; anything else runs as an ordinary statement
        if !self.call.last_prepared.swap(false, Ordering::SeqCst) {
            return self.call.client.query_raw(statement, params).await;
        }
        self.call
            .end_behind(self.call.client.query_raw(statement, params))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_settings_are_transaction_local_quoted_literals() {
        let sql = call_settings(
            std::time::Duration::from_millis(1500),
            &[("search_path", "retail, public".to_owned())],
        );
        assert_eq!(
            sql,
            "SELECT set_config(E'statement_timeout', E'1500ms', true), \
             set_config(E'hnsw.iterative_scan', E'strict_order', true), \
             set_config(E'plan_cache_mode', E'force_custom_plan', true), \
             set_config(E'search_path', E'retail, public', true)"
        );
    }

    #[test]
    fn literals_cannot_be_broken_out_of() {
        assert_eq!(quote_literal("it's"), "E'it''s'");
        assert_eq!(quote_literal("a\\'; DROP"), "E'a\\\\''; DROP'");
    }
}
