//! The limits kept in Redis, for every instance that shares it
//! (`--redis-url`): the same buckets and caps as [`super::Limiter`] keeps
//! in memory, decided by one Lua script per admission, which Redis runs
//! atomically, so two instances admitting calls of one caller at once see
//! each other's.
//!
//! Per caller (a hash of who they are: no id or token subject in clear) and
//! budget, two keys, tagged with the hash so that they sit on one cluster
//! slot:
//! - `sqlmcp:v1:limit:{HASH}:BUDGET:tat`: when the bucket is full again, in
//!   microseconds of Redis's clock (GCRA, as in memory); it expires then.
//! - `sqlmcp:v1:limit:{HASH}:BUDGET:leases`: the calls running, a sorted set
//!   of leases scored by when they expire. A running call renews its lease
//!   ([`RENEW_EVERY`]); a finished one removes it; the lease of a call on an
//!   instance that died expires within [`LEASE`].
//!
//! The script checks every budget the call spends before it spends any, so
//! a refused call spends nothing, and a raw SQL call spends both budgets or
//! neither, as in memory. The clock is Redis's own (`TIME`): instances whose
//! clocks disagree still share one bucket.

use std::sync::Arc;
use std::time::Duration;

use super::{Budget, BudgetLimits, Limit, RateKey, Refusal, Who};
use crate::server::shared::Redis;

/// How long a running call's lease lasts without renewal: the time a dead
/// instance's calls go on counting against their caller's cap.
const LEASE: Duration = Duration::from_secs(30);

/// How often a running call renews its lease.
const RENEW_EVERY: Duration = Duration::from_secs(10);

/// KEYS: per budget the call spends, its `tat` and `leases` keys.
/// ARGV: mode (`admit` or `check`), lease id, lease milliseconds, then per
/// budget: interval µs (0: no rate), tolerance µs, cap (0: no cap).
/// Returns `{0}` (admitted, or would be), `{1, budget, µs to wait}` or
/// `{2, budget}`, the budget counted from 1 in the order given.
const ADMIT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now_ms = math.floor(now / 1000)
local n = #KEYS / 2
local lease_ms = tonumber(ARGV[3])
local tats = {}
for i = n, 1, -1 do
  local interval = tonumber(ARGV[4 + 3 * (i - 1)])
  local tolerance = tonumber(ARGV[5 + 3 * (i - 1)])
  if interval > 0 then
    local tat = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
    tats[i] = tat
    local missing = tat - now
    if missing > tolerance then
      return {1, i, missing - tolerance}
    end
  end
end
for i = n, 1, -1 do
  local cap = tonumber(ARGV[6 + 3 * (i - 1)])
  if cap > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[2 * i], '-inf', now_ms)
    if redis.call('ZCARD', KEYS[2 * i]) >= cap then
      return {2, i}
    end
  end
end
if ARGV[1] ~= 'admit' then
  return {0}
end
for i = 1, n do
  local interval = tonumber(ARGV[4 + 3 * (i - 1)])
  local cap = tonumber(ARGV[6 + 3 * (i - 1)])
  if interval > 0 then
    local full_at = math.max(tats[i], now) + interval
    redis.call('SET', KEYS[2 * i - 1], string.format('%.0f', full_at),
      'PX', math.floor((full_at - now) / 1000) + 1)
  end
  if cap > 0 then
    redis.call('ZADD', KEYS[2 * i], now_ms + lease_ms, ARGV[2])
    redis.call('PEXPIRE', KEYS[2 * i], lease_ms)
  end
end
return {0}
";

/// KEYS: lease sets; ARGV: lease id, lease milliseconds. Extends the lease
/// where it still is.
const RENEW: &str = r"
local t = redis.call('TIME')
local until_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + tonumber(ARGV[2])
for _, key in ipairs(KEYS) do
  if redis.call('ZSCORE', key, ARGV[1]) then
    redis.call('ZADD', key, until_ms, ARGV[1])
    redis.call('PEXPIRE', key, ARGV[2])
  end
end
return 0
";

/// The limits' scripts on the shared Redis.
pub struct SharedLimits {
    redis: Arc<Redis>,
    admit: redis::Script,
    renew: Arc<redis::Script>,
}

/// A running call's place in its caller's lease sets; removed when dropped.
pub struct Lease {
    redis: Arc<Redis>,
    keys: Vec<String>,
    id: String,
    renewing: tokio::task::AbortHandle,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.renewing.abort();
        let redis = self.redis.clone();
        let keys = std::mem::take(&mut self.keys);
        let id = std::mem::take(&mut self.id);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let _ = redis
                    .run("lease", |mut connection| async move {
                        let mut pipe = redis::pipe();
                        for key in &keys {
                            pipe.zrem(key, &id).ignore();
                        }
                        pipe.query_async::<()>(&mut connection).await
                    })
                    .await;
            });
        }
    }
}

/// What the script decided.
pub enum Decision {
    Admitted(Option<Lease>),
    Refused(Refusal),
}

impl SharedLimits {
    pub fn new(redis: Arc<Redis>) -> SharedLimits {
        SharedLimits {
            redis,
            admit: redis::Script::new(ADMIT),
            renew: Arc::new(redis::Script::new(RENEW)),
        }
    }

    /// Admits (`spend`) or checks a call of `key` that spends `budgets`
    /// under `limits`; `None` when Redis is down, and the instance decides
    /// alone.
    pub async fn decide(
        &self,
        key: &RateKey,
        limits: &[BudgetLimits; 2],
        budgets: &'static [Budget],
        spend: bool,
    ) -> Option<Decision> {
        let prefix = format!("sqlmcp:v1:limit:{{{}}}", caller_hash(key));
        let lease_id = uuid::Uuid::new_v4().simple().to_string();
        let lease_ms = LEASE.as_millis() as u64;
        let mut invocation = self.admit.prepare_invoke();
        invocation
            .arg(if spend { "admit" } else { "check" })
            .arg(&lease_id)
            .arg(lease_ms);
        let mut lease_keys = Vec::new();
        for &budget in budgets {
            let b = budget as usize;
            invocation
                .key(format!("{prefix}:{}:tat", budget.label()))
                .key(format!("{prefix}:{}:leases", budget.label()));
            let (interval, tolerance) = match limits[b].rate {
                Limit::On(rate) => {
                    let interval = rate.interval().as_micros() as u64;
                    (interval.max(1), interval * u64::from(rate.burst - 1))
                }
                Limit::Off => (0, 0),
            };
            let cap = match limits[b].concurrent {
                Limit::On(cap) => {
                    lease_keys.push(format!("{prefix}:{}:leases", budget.label()));
                    cap.0
                }
                Limit::Off => 0,
            };
            invocation.arg(interval).arg(tolerance).arg(cap);
        }
        let reply: Vec<i64> = self
            .redis
            .run("limit", |mut connection| async move {
                invocation.invoke_async(&mut connection).await
            })
            .await?;
        let budget_at =
            |i: i64| budgets[usize::try_from(i - 1).unwrap_or(0).min(budgets.len() - 1)];
        Some(match reply.as_slice() {
            [1, i, wait_us] => {
                let budget = budget_at(*i);
                let Limit::On(rate) = limits[budget as usize].rate else {
                    return None;
                };
                Decision::Refused(Refusal::Rate {
                    budget,
                    rate,
                    retry_in: Duration::from_micros(u64::try_from(*wait_us).unwrap_or(0)),
                })
            }
            [2, i] => {
                let budget = budget_at(*i);
                let Limit::On(cap) = limits[budget as usize].concurrent else {
                    return None;
                };
                Decision::Refused(Refusal::Concurrency { budget, cap })
            }
            _ if !spend || lease_keys.is_empty() => Decision::Admitted(None),
            _ => Decision::Admitted(Some(self.lease(lease_keys, lease_id))),
        })
    }

    /// A lease renewed until it is dropped.
    fn lease(&self, keys: Vec<String>, id: String) -> Lease {
        let (redis, renew) = (self.redis.clone(), self.renew.clone());
        let (renewed_keys, renewed_id) = (keys.clone(), id.clone());
        let renewing = tokio::spawn(async move {
            let lease_ms = LEASE.as_millis() as u64;
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let mut invocation = renew.prepare_invoke();
                for key in &renewed_keys {
                    invocation.key(key);
                }
                invocation.arg(&renewed_id).arg(lease_ms);
                let _ = redis
                    .run("lease", |mut connection| async move {
                        invocation.invoke_async::<i64>(&mut connection).await
                    })
                    .await;
            }
        })
        .abort_handle();
        Lease {
            redis: self.redis.clone(),
            keys,
            id,
            renewing,
        }
    }
}

/// Who the caller is, hashed: the same caller on every instance, with no
/// id or token subject in clear.
fn caller_hash(key: &RateKey) -> String {
    match &key.0 {
        Who::Id(id) => crate::server::shared::digest([b"id".as_slice(), id.to_string().as_bytes()]),
        Who::Token { issuer, subject } => crate::server::shared::digest([
            b"token".as_slice(),
            issuer.as_bytes(),
            subject.as_bytes(),
        ]),
    }
}
