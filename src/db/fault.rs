//! Which database failures a read-only call may be retried after, and how
//! long to wait between tries.
//!
//! Every tool call is one read-only transaction whose answer is sent only
//! once it is complete, so a call whose connection broke, or whose server
//! went away, changed nothing and answered nothing: running it again on a
//! fresh connection is safe. [`Transient`] names the failures that say so;
//! any other error (a syntax error, a constraint, a cancelled statement)
//! would fail again and is reported at once.

use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

/// A failure that a fresh connection may not meet: the kind, for metrics
/// and logs, and PostgreSQL's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transient {
    pub kind: FaultKind,
    pub message: String,
}

/// The kinds of [`Transient`] failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The connection closed or broke (an immediate shutdown, a crash, a
    /// network fault), or the server is shutting down or starting up
    /// (57P01, 57P02, 57P03, class 08).
    Connection,
    /// No connection could be opened: refused, or the server is starting.
    Connect,
    /// The transaction lost a serialization conflict (40001) or a deadlock
    /// (40P01); on a hot standby, a conflict with recovery (40001).
    Conflict,
}

impl FaultKind {
    /// A label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Connection => "connection",
            FaultKind::Connect => "connect",
            FaultKind::Conflict => "conflict",
        }
    }
}

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Whether `err`, met while a call ran on an open connection, is worth a
/// retry on a fresh one.
pub fn transient(err: &tokio_postgres::Error) -> Option<Transient> {
    let kind = match err.as_db_error() {
        Some(db) => kind_of(db.code())?,
        // no error from the server: the connection itself failed
        None if err.is_closed() || io_error(err).is_some() => FaultKind::Connection,
        None => return None,
    };
    Some(Transient {
        kind,
        message: message_of(err),
    })
}

/// Whether a failure to take a connection from the pool is worth a retry:
/// the server refused or dropped the new connection, or is starting up.
/// A pool that is merely busy is not: waiting longer is the pool's own job.
pub fn transient_connect(err: &deadpool_postgres::PoolError) -> Option<Transient> {
    use deadpool_postgres::{PoolError, TimeoutType};
    match err {
        PoolError::Backend(err) => {
            let kind = match err.as_db_error() {
                Some(db) => kind_of(db.code()).map(|_| FaultKind::Connect)?,
                None => FaultKind::Connect,
            };
            Some(Transient {
                kind,
                message: message_of(err),
            })
        }
        PoolError::Timeout(TimeoutType::Create | TimeoutType::Recycle) => Some(Transient {
            kind: FaultKind::Connect,
            message: "opening a database connection timed out".to_owned(),
        }),
        _ => None,
    }
}

fn kind_of(code: &SqlState) -> Option<FaultKind> {
    if *code == SqlState::ADMIN_SHUTDOWN
        || *code == SqlState::CRASH_SHUTDOWN
        || *code == SqlState::CANNOT_CONNECT_NOW
        || *code == SqlState::IDLE_SESSION_TIMEOUT
        || code.code().starts_with("08")
    {
        Some(FaultKind::Connection)
    } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
    {
        Some(FaultKind::Conflict)
    } else {
        None
    }
}

fn io_error(err: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut source = std::error::Error::source(err);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        source = err.source();
    }
    None
}

/// The server's own message when there is one, else the client's.
fn message_of(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match io_error(err) {
            Some(io) => format!("{err}: {io}"),
            None => err.to_string(),
        },
    }
}

/// Pauses between tries: 20 ms, doubling up to 500 ms, each shortened by a
/// random part of itself so that callers who failed together do not all
/// come back at once, and never past the call's deadline.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    tries: u32,
    started: Instant,
}

/// The first pause of a [`Backoff`].
pub const FIRST_PAUSE: Duration = Duration::from_millis(20);
/// The longest pause of a [`Backoff`].
pub const LONGEST_PAUSE: Duration = Duration::from_millis(500);

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            next: FIRST_PAUSE,
            tries: 1,
            started: Instant::now(),
        }
    }
}

impl Backoff {
    /// The pause before the next try, or `None` when the next try could
    /// not start before `deadline`.
    pub fn pause(&mut self, deadline: Instant) -> Option<Duration> {
        let jitter = self.next.mul_f64(unit_random() / 2.0);
        let pause = self.next - jitter;
        self.next = (self.next * 2).min(LONGEST_PAUSE);
        if Instant::now() + pause >= deadline {
            return None;
        }
        self.tries += 1;
        Some(pause)
    }

    /// How many tries were started, counting the first.
    pub fn tries(&self) -> u32 {
        self.tries
    }

    /// Time since the first try.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

/// A number in [0, 1) that differs between calls: enough for jitter.
fn unit_random() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let bits = std::hash::RandomState::new().build_hasher().finish();
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_and_conflict_codes_are_transient_and_others_are_not() {
        for (code, kind) in [
            (SqlState::ADMIN_SHUTDOWN, Some(FaultKind::Connection)),
            (SqlState::CRASH_SHUTDOWN, Some(FaultKind::Connection)),
            (SqlState::CANNOT_CONNECT_NOW, Some(FaultKind::Connection)),
            (SqlState::CONNECTION_FAILURE, Some(FaultKind::Connection)),
            (
                SqlState::T_R_SERIALIZATION_FAILURE,
                Some(FaultKind::Conflict),
            ),
            (SqlState::T_R_DEADLOCK_DETECTED, Some(FaultKind::Conflict)),
            (SqlState::QUERY_CANCELED, None),
            (SqlState::SYNTAX_ERROR, None),
            (SqlState::INSUFFICIENT_PRIVILEGE, None),
            (SqlState::READ_ONLY_SQL_TRANSACTION, None),
            (SqlState::TOO_MANY_CONNECTIONS, None),
        ] {
            assert_eq!(kind_of(&code), kind, "{}", code.code());
        }
    }

    #[test]
    fn pauses_grow_to_the_longest_and_stop_before_the_deadline() {
        let mut backoff = Backoff::default();
        let far = Instant::now() + Duration::from_secs(60);
        let pauses: Vec<Duration> = (0..8).map(|_| backoff.pause(far).unwrap()).collect();
        assert!(pauses[0] <= FIRST_PAUSE && pauses[0] >= FIRST_PAUSE / 2);
        assert!(pauses.iter().all(|pause| *pause <= LONGEST_PAUSE));
        assert!(pauses[7] >= LONGEST_PAUSE / 2);
        assert_eq!(backoff.tries(), 9);
        let near = Instant::now() + Duration::from_millis(5);
        assert_eq!(backoff.pause(near), None);
        assert_eq!(backoff.tries(), 9);
    }
}
