//! Where a call's connection comes from: the primary (`--database-url`) or
//! one of its read replicas (`--replica-url`).
//!
//! Every tool only reads, so any hot standby can answer it, as long as it
//! is up and not too far behind. A monitor ([`Databases::monitor`]) probes
//! each replica every [`PROBE_EVERY`] and measures how far behind it is; a
//! call goes to the next usable replica in turn (round-robin), and to the
//! primary when none is usable. A call whose connection to a replica broke
//! reports it ([`Databases::failed`]): the replica is left out at once,
//! until the monitor finds it answering again.
//!
//! Lag is measured, not assumed: each probe reads the primary's WAL
//! position (`pg_current_wal_lsn()`), and keeps when it was first seen at
//! each new position; the replica's lag is the age of the oldest such
//! position it has not replayed yet (`pg_last_wal_replay_lsn()`), or zero
//! when it has replayed everything the primary had written. So an idle
//! primary never makes a replica look behind, however old its last
//! transaction, and a replica whose replay stopped (paused, or stuck on a
//! conflict) looks further behind with every probe once the primary writes.
//! The measure is a lower bound, off by at most one probe interval.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{Object, Pool, PoolError};
use tokio_postgres::{Config, NoTls};
use tokio_util::sync::CancellationToken;

/// How often the monitor probes every replica.
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// How long one probe (connecting included) may take before the replica
/// counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a connection came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Primary,
    /// The replica at this index of `--replica-url`.
    Replica(usize),
}

/// The primary's pool, and one per replica, with the replicas' state.
pub struct Databases {
    primary: Pool,
    primary_config: Config,
    /// Password-free, for metrics.
    primary_name: String,
    replicas: Vec<Replica>,
    /// A replica more than this far behind gets no calls.
    max_lag: Duration,
    /// Round-robin position among the replicas.
    next: AtomicUsize,
}

struct Replica {
    /// Password-free, for logs and metrics.
    name: String,
    config: Config,
    pool: Pool,
    /// Answered the last probe.
    up: AtomicBool,
    /// The last measured lag, in milliseconds.
    lag_ms: AtomicU64,
}

impl Replica {
    fn usable(&self, max_lag: Duration) -> bool {
        self.up.load(Ordering::Relaxed)
            && Duration::from_millis(self.lag_ms.load(Ordering::Relaxed)) <= max_lag
    }
}

impl Databases {
    /// The primary's pool, and a pool of `size` for each replica. Replicas
    /// count as down until the monitor's first probe.
    pub fn new(
        primary: Pool,
        primary_config: Config,
        replicas: &[Config],
        size: usize,
        wait: Duration,
        max_lag: Duration,
    ) -> anyhow::Result<Databases> {
        let replicas = replicas
            .iter()
            .map(|config| {
                Ok(Replica {
                    name: super::describe(config),
                    config: config.clone(),
                    pool: super::pool(config, size, wait)?,
                    up: AtomicBool::new(false),
                    lag_ms: AtomicU64::new(0),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Databases {
            primary,
            primary_name: super::describe(&primary_config),
            primary_config,
            replicas,
            max_lag,
            next: AtomicUsize::new(0),
        })
    }

    /// The primary's pool.
    pub fn primary(&self) -> &Pool {
        &self.primary
    }

    /// A connection for one call: from the next usable replica, or from the
    /// primary when none is usable or every usable one failed to give one.
    /// A replica that cannot connect is marked down on the way.
    pub async fn connection(&self) -> Result<(Object, Target), PoolError> {
        let count = self.replicas.len();
        if count > 0 {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            for offset in 0..count {
                let index = (start + offset) % count;
                let replica = &self.replicas[index];
                if !replica.usable(self.max_lag) {
                    continue;
                }
                match replica.pool.get().await {
                    Ok(connection) => {
                        count_call(Target::Replica(index), &replica.name);
                        return Ok((connection, Target::Replica(index)));
                    }
                    // busy, not broken: the next one may have room
                    Err(PoolError::Timeout(_)) => continue,
                    Err(err) => {
                        tracing::warn!(replica = %replica.name, error = %err, "cannot connect to a replica; calls go elsewhere until it answers again");
                        self.failed(Target::Replica(index));
                    }
                }
            }
        }
        let connection = self.primary.get().await?;
        count_call(Target::Primary, &self.primary_name);
        Ok((connection, Target::Primary))
    }

    /// A call's connection to `target` broke: a replica gets no more calls
    /// until the monitor finds it answering. The primary is not left out:
    /// it is the last resort.
    pub fn failed(&self, target: Target) {
        if let Target::Replica(index) = target
            && let Some(replica) = self.replicas.get(index)
            && replica.up.swap(false, Ordering::Relaxed)
        {
            tracing::warn!(replica = %replica.name, "a call's connection to a replica broke; leaving it out until it answers again");
            metrics::gauge!("sqlmcp_replica_up", "replica" => replica.name.clone()).set(0.0);
        }
    }

    /// Whether any replica is up and within the lag bound now.
    pub fn any_replica_usable(&self) -> bool {
        self.replicas.iter().any(|r| r.usable(self.max_lag))
    }

    /// Probes every replica until `stop`, each on a task of its own.
    pub fn monitor(self: &Arc<Databases>, stop: CancellationToken) {
        for index in 0..self.replicas.len() {
            let databases = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move { databases.probe_forever(index, stop).await });
        }
    }

    async fn probe_forever(&self, index: usize, stop: CancellationToken) {
        let replica = &self.replicas[index];
        let mut probe = Probe::default();
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            let measured =
                tokio::time::timeout(PROBE_TIMEOUT, probe.measure(&self.primary_config, replica))
                    .await
                    .unwrap_or_else(|_| Err("timed out".to_owned()));
            match measured {
                Ok(lag) => {
                    replica
                        .lag_ms
                        .store(lag.as_millis() as u64, Ordering::Relaxed);
                    if !replica.up.swap(true, Ordering::Relaxed) {
                        tracing::info!(replica = %replica.name, lag_ms = lag.as_millis() as u64, "replica answers; it takes calls while within the lag bound");
                    }
                    metrics::gauge!("sqlmcp_replica_lag_seconds", "replica" => replica.name.clone())
                        .set(lag.as_secs_f64());
                    metrics::gauge!("sqlmcp_replica_up", "replica" => replica.name.clone())
                        .set(1.0);
                }
                Err(err) => {
                    probe.replica = None;
                    if replica.up.swap(false, Ordering::Relaxed) {
                        tracing::warn!(replica = %replica.name, error = %err, "replica does not answer; calls go elsewhere");
                    }
                    metrics::gauge!("sqlmcp_replica_up", "replica" => replica.name.clone())
                        .set(0.0);
                }
            }
        }
    }

    /// Closes every pool.
    pub fn close(&self) {
        self.primary.close();
        for replica in &self.replicas {
            replica.pool.close();
        }
    }
}

fn count_call(target: Target, database: &str) {
    let kind = match target {
        Target::Primary => "primary",
        Target::Replica(_) => "replica",
    };
    metrics::counter!("sqlmcp_database_calls_total", "target" => kind, "database" => database.to_owned())
        .increment(1);
}

/// One replica's monitor: its own connections (outside the pools, so a
/// busy pool never delays a probe) and the primary's WAL positions the
/// replica has not replayed yet.
#[derive(Default)]
struct Probe {
    primary: Option<tokio_postgres::Client>,
    replica: Option<tokio_postgres::Client>,
    positions: Positions,
}

impl Probe {
    /// Reads the primary's position, then the replica's, and returns the
    /// replica's lag. Only a failure on the replica fails the probe: with
    /// the primary unreachable, the positions already seen go on ageing.
    async fn measure(&mut self, primary: &Config, replica: &Replica) -> Result<Duration, String> {
        match self.primary_position(primary).await {
            Ok(position) => self.positions.seen(position, Instant::now()),
            Err(err) => {
                self.primary = None;
                tracing::debug!(error = %err, "cannot read the primary's WAL position for the replica lag");
            }
        }
        if self.replica.is_none() {
            self.replica = Some(connect(&replica.config).await?);
        }
        let client = self.replica.as_ref().expect("just connected");
        let row = client
            .query_one(
                "SELECT pg_is_in_recovery(), \
                        (pg_last_wal_replay_lsn() - '0/0'::pg_lsn)::bigint",
                &[],
            )
            .await
            .map_err(|err| err.to_string())?;
        let (in_recovery, replayed): (bool, Option<i64>) = (row.get(0), row.get(1));
        Ok(match (in_recovery, replayed) {
            (true, Some(replayed)) => self.positions.lag(replayed, Instant::now()),
            // not a standby (promoted, or a primary named as a replica): it
            // is as current as it gets
            _ => {
                self.positions.clear();
                Duration::ZERO
            }
        })
    }

    async fn primary_position(&mut self, config: &Config) -> Result<i64, String> {
        if self.primary.is_none() {
            self.primary = Some(connect(config).await?);
        }
        let client = self.primary.as_ref().expect("just connected");
        // a primary that is itself a standby has no current position of its
        // own: what it replayed is what its replicas can reach
        let row = client
            .query_one(
                "SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() \
                        ELSE pg_current_wal_lsn() END - '0/0'::pg_lsn)::bigint",
                &[],
            )
            .await
            .map_err(|err| err.to_string())?;
        row.get::<_, Option<i64>>(0)
            .ok_or_else(|| "the primary reports no WAL position".to_owned())
    }
}

async fn connect(config: &Config) -> Result<tokio_postgres::Client, String> {
    let (client, connection) = config.connect(NoTls).await.map_err(|err| err.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// The primary's WAL positions in the order they were first seen, each
/// with when: only those a replica has not replayed yet are kept.
#[derive(Default)]
struct Positions(VecDeque<(i64, Instant)>);

impl Positions {
    /// The primary is at `position` at `at`; kept only when it moved.
    fn seen(&mut self, position: i64, at: Instant) {
        let positions = &mut self.0;
        if positions.back().is_none_or(|&(last, _)| position > last) {
            positions.push_back((position, at));
        }
    }

    /// How far behind a replica that replayed up to `replayed` is at `now`:
    /// the age of the oldest position it has not reached.
    fn lag(&mut self, replayed: i64, now: Instant) -> Duration {
        let positions = &mut self.0;
        while positions
            .front()
            .is_some_and(|&(position, _)| position <= replayed)
        {
            positions.pop_front();
        }
        positions
            .front()
            .map_or(Duration::ZERO, |&(_, at)| now.saturating_duration_since(at))
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_primary_leaves_a_caught_up_replica_at_zero_lag() {
        let mut positions = Positions::default();
        let start = Instant::now();
        positions.seen(100, start);
        // the same position, probe after probe: nothing new to replay
        positions.seen(100, start + Duration::from_secs(60));
        let lag = positions.lag(100, start + Duration::from_secs(3600));
        assert_eq!(lag, Duration::ZERO);
    }

    #[test]
    fn a_replica_that_stopped_replaying_falls_further_behind() {
        let mut positions = Positions::default();
        let start = Instant::now();
        positions.seen(100, start);
        positions.seen(200, start + Duration::from_secs(1));
        positions.seen(300, start + Duration::from_secs(2));
        // replayed up to 150: the write first seen at 200 (1 s in) is missing
        assert_eq!(
            positions.lag(150, start + Duration::from_secs(5)),
            Duration::from_secs(4)
        );
        assert_eq!(
            positions.lag(150, start + Duration::from_secs(9)),
            Duration::from_secs(8)
        );
        // caught up to 300: nothing is missing
        assert_eq!(
            positions.lag(300, start + Duration::from_secs(10)),
            Duration::ZERO
        );
    }

    #[test]
    fn under_steady_writes_a_keeping_up_replica_lags_one_probe_at_most() {
        let mut positions = Positions::default();
        let start = Instant::now();
        for step in 0..100u64 {
            let at = start + PROBE_EVERY * step as u32;
            positions.seen(1_000 * step as i64 + 1_000, at);
            // the replica replays what the primary had at the previous probe
            let lag = positions.lag(1_000 * step as i64, at + Duration::from_millis(10));
            assert!(lag <= Duration::from_millis(10), "{lag:?} at step {step}");
        }
    }
}
