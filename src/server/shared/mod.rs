//! State shared between server instances through Redis (`--redis-url`):
//! the result cache's answers ([`cache`]) and the rate limits' buckets and
//! running calls (`rate_limit::shared`). Without a URL, nothing here runs and
//! every instance keeps its own.
//!
//! Redis is a helper, never a dependency of a call: every operation has a
//! short deadline ([`OP_TIMEOUT`]), and the first that fails marks Redis down.
//! While it is down, calls use the instance's own cache and limits without
//! asking Redis at all, so an outage costs a call at most one deadline,
//! once; a probe ([`PROBE_EVERY`]) notices when it is back, and sharing
//! resumes. `/metrics` shows `sqlmcp_redis_up` and
//! `sqlmcp_redis_errors_total`, labelled with the server's address.
//!
//! The `redis` crate (redis-rs) speaks the protocol: its `ConnectionManager`
//! multiplexes one connection for all calls and reconnects after a failure,
//! and its `Script` sends Lua by `EVALSHA`, loading it again when a restarted
//! server has forgotten it.

pub mod cache;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio_util::sync::CancellationToken;

use crate::secret::Secret;

/// The deadline of one Redis operation: a Redis that does not answer within
/// it costs a call no more than this.
pub const OP_TIMEOUT: Duration = Duration::from_millis(200);

/// How often a Redis that is down is asked whether it is back (and one that
/// is up whether it still is).
pub const PROBE_EVERY: Duration = Duration::from_millis(500);

/// A probe may wait longer than a call's operation: it also reconnects.
const PROBE_TIMEOUT: Duration = Duration::from_millis(400);

/// `sqlmcp serve --redis-url`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RedisFlags {
    /// Share the result cache and the rate limits with the other instances
    /// that use this Redis: redis://[:PASSWORD@]HOST[:PORT][/DB]. While it
    /// is unreachable, each instance uses its own (see README, "Several
    /// instances").
    #[arg(long, env = "SQLMCP_REDIS_URL", value_name = "URL")]
    redis_url: Option<Secret>,
}

impl RedisFlags {
    pub fn settings(&self) -> Result<Option<Settings>> {
        self.redis_url
            .as_ref()
            .map(|url| Settings::parse(url.expose()))
            .transpose()
    }
}

/// Where Redis is.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The URL with its password, if any.
    url: Secret,
    /// The URL as logs and `/metrics` show it: no password.
    shown: String,
    /// `host:port`, the `server` label of the metrics.
    server: String,
}

impl Settings {
    /// A `redis://` URL; a clear error for anything else.
    pub fn parse(url: &str) -> Result<Settings> {
        const EXPECTED: &str = "expected redis://[:PASSWORD@]HOST[:PORT][/DB]";
        let parsed = url::Url::parse(url)
            .map_err(|err| anyhow::anyhow!("--redis-url: not a URL ({err}): {EXPECTED}"))?;
        if parsed.scheme() != "redis" {
            anyhow::bail!(
                "--redis-url: the scheme is `{}`, not `redis` (TLS is not built in): {EXPECTED}",
                parsed.scheme()
            );
        }
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|err| anyhow::anyhow!("--redis-url: not a Redis URL ({err}): {EXPECTED}"))?;
        let server = match info.addr() {
            redis::ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
            other => other.to_string(),
        };
        Ok(Settings {
            url: Secret::new(url),
            shown: redacted(url),
            server,
        })
    }
}

/// `url` with its password replaced by `***`.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(a URL that does not parse)".to_owned(),
    }
}

/// The connection to Redis, and whether it is up.
pub struct Redis {
    connection: ConnectionManager,
    up: AtomicBool,
    server: String,
    shown: String,
}

impl Redis {
    /// [`Redis::start`] when `settings` name a Redis and there is something
    /// to `share` (a result cache or a rate limit); a warning when there is not.
    pub async fn start_for(
        settings: Option<&Settings>,
        share: bool,
        stopping: &CancellationToken,
    ) -> Result<Option<Arc<Redis>>> {
        match settings {
            Some(settings) if share => Ok(Some(Redis::start(settings, stopping.clone()).await?)),
            Some(settings) => {
                tracing::warn!(
                    redis = %settings.shown,
                    "--redis-url has nothing to share: neither --result-cache-ttl-ms nor a rate limit is set"
                );
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Connects in the background: a Redis that is unreachable now is
    /// warned about and used once it is reachable. Probes until `stopping`.
    pub async fn start(settings: &Settings, stopping: CancellationToken) -> Result<Arc<Redis>> {
        super::metrics::install();
        let client = redis::Client::open(settings.url.expose())
            .with_context(|| format!("--redis-url {}", settings.shown))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(PROBE_TIMEOUT))
            .set_response_timeout(Some(PROBE_TIMEOUT))
            // a failed connection is retried by the probe, not by calls
            .set_number_of_retries(0);
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .with_context(|| format!("--redis-url {}", settings.shown))?;
        let redis = Arc::new(Redis {
            connection,
            up: AtomicBool::new(false),
            server: settings.server.clone(),
            shown: settings.shown.clone(),
        });
        for op in ERROR_OPS {
            metrics::counter!(ERRORS, "server" => redis.server.clone(), "op" => op).increment(0);
        }
        redis.gauge(false);
        match redis.probe().await {
            Ok(()) => {
                redis.mark_up();
                tracing::info!(redis = %redis.shown, "sharing the result cache and rate limits through Redis");
            }
            Err(err) => tracing::warn!(
                redis = %redis.shown, error = %err,
                "Redis is unreachable: each instance uses its own result cache and rate limits until it is back"
            ),
        }
        let probing = Arc::downgrade(&redis);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stopping.cancelled() => return,
                    () = tokio::time::sleep(PROBE_EVERY) => {}
                }
                let Some(redis) = probing.upgrade() else {
                    return;
                };
                match redis.probe().await {
                    Ok(()) => redis.mark_up(),
                    Err(err) => redis.mark_down("probe", &err),
                }
            }
        });
        Ok(redis)
    }

    async fn probe(&self) -> Result<(), String> {
        let mut connection = self.connection.clone();
        let ping = redis::cmd("PING");
        match tokio::time::timeout(PROBE_TIMEOUT, ping.query_async::<String>(&mut connection)).await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }

    /// Whether calls use Redis now.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }

    /// `op` on the shared connection within [`OP_TIMEOUT`]; `None` when
    /// Redis is down or the operation failed (which marks it down), so the
    /// caller falls back to what the instance has.
    pub async fn run<T, F>(
        &self,
        what: &'static str,
        op: impl FnOnce(ConnectionManager) -> F,
    ) -> Option<T>
    where
        F: Future<Output = redis::RedisResult<T>>,
    {
        if !self.is_up() {
            return None;
        }
        match tokio::time::timeout(OP_TIMEOUT, op(self.connection.clone())).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                self.mark_down(what, &err.to_string());
                None
            }
            Err(_) => {
                self.mark_down(what, &format!("no answer within {OP_TIMEOUT:?}"));
                None
            }
        }
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::AcqRel) {
            self.gauge(true);
            tracing::info!(redis = %self.shown, "Redis is reachable: sharing the result cache and rate limits again");
        }
    }

    fn mark_down(&self, op: &'static str, error: &str) {
        metrics::counter!(ERRORS, "server" => self.server.clone(), "op" => op).increment(1);
        if self.up.swap(false, Ordering::AcqRel) {
            self.gauge(false);
            tracing::warn!(
                redis = %self.shown, op, error,
                "Redis failed: each instance uses its own result cache and rate limits until it is back"
            );
        }
    }

    fn gauge(&self, up: bool) {
        metrics::gauge!(UP, "server" => self.server.clone()).set(if up { 1.0 } else { 0.0 });
    }
}

/// 1 while calls share state through Redis, 0 while each instance uses its own.
const UP: &str = "sqlmcp_redis_up";
/// Operations that failed or timed out, by operation.
const ERRORS: &str = "sqlmcp_redis_errors_total";
/// The `op` label's values.
const ERROR_OPS: [&str; 5] = ["probe", "cache_get", "cache_put", "limit", "lease"];

/// The first 128 bits of `parts`' SHA-256, in hex: what keys hold instead
/// of a caller's id, token subject or arguments. Each part is length-prefixed,
/// so no two lists of parts hash the same text.
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize()[..16]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_is_checked_and_shown_without_its_password() {
        let settings = Settings::parse("redis://:hunter2@127.0.0.1:6380/2").unwrap();
        assert_eq!(settings.shown, "redis://:***@127.0.0.1:6380/2");
        assert_eq!(settings.server, "127.0.0.1:6380");
        assert!(!format!("{settings:?}").contains("hunter2"));
        let plain = Settings::parse("redis://cache.internal").unwrap();
        assert_eq!(plain.server, "cache.internal:6379");
        let err = Settings::parse("http://cache.internal").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("--redis-url: the scheme is `http`, not `redis`"),
            "{err}"
        );
        let err = Settings::parse("redis://:hunter2@cache.internal:99999").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--redis-url: not a URL (invalid port number): expected redis://[:PASSWORD@]HOST[:PORT][/DB]"
        );
    }

    #[test]
    fn parts_are_hashed_with_their_lengths() {
        let a = digest([b"ab".as_slice(), b"c".as_slice()]);
        assert_eq!(a.len(), 32);
        assert_ne!(a, digest([b"a".as_slice(), b"bc".as_slice()]));
        assert_eq!(a, digest([b"ab".as_slice(), b"c".as_slice()]));
    }
}
