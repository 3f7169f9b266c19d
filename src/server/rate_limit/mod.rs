//! Per-caller rate limits and concurrency caps.
//!
//! Each caller has a token bucket (calls per second, with a burst) and a cap
//! on calls running at once, for all tools together; raw SQL
//! (`execute_sales_query`) has a second, lower budget of both, which its
//! calls spend as well as the first. Limits are set globally and per label
//! (a role or scope the caller holds): a caller gets, for each limit, the
//! most generous among their labels that set it, else the global one. All
//! are off unless configured.
//!
//! Where a call is refused:
//! - The handler admits every call ([`Limiter::admit`]): it spends a token
//!   and takes a slot, held by the returned [`CallPermit`] until the call
//!   ends however it ends. A call over a limit gets a tool error that names
//!   the limit and when to retry: a model reads tool results, and this is
//!   the only refusal stdio can carry.
//! - Over HTTP, a `tools/call` that is already over a limit when it arrives
//!   is answered at the door ([`refuse_over_limit`]), before rmcp reads it:
//!   `429 Too Many Requests`, `Retry-After`, and a JSON-RPC error with the
//!   same message. That is the one refusal HTTP clients and proxies know
//!   how to back off from: rmcp's client turns a 429 into an error that keeps
//!   the status and `Retry-After` and ignores the body, the TypeScript SDK
//!   into an error that quotes the body, and the session survives either
//!   way. It also makes a flood cheap: no MCP parsing, no handler, no
//!   database. The door only looks (it spends nothing), so a call it lets in
//!   can still be refused by the handler (a tool error) when two calls race
//!   for the last token or slot. In session mode the door answers the same
//!   way: the status of a POST is still unsent when it decides.
//!
//! The buckets are GCRA: per caller and budget, the instant at which the
//! bucket is full again. `governor` implements the same algorithm and keeps
//! its keyed state bounded with `retain_recent`, but it does not fit here: it
//! has no check that spends nothing (the door needs one), it cannot test two
//! buckets at once (a raw SQL call refused by the second would already have
//! spent a token of the first), and the concurrency cap needs a per-caller
//! entry anyway, which its store cannot hold. One map holds both, with one
//! rule for dropping idle callers.
//!
//! Memory: a caller has an entry only while a call of theirs runs or their
//! bucket is not yet full again (for a caller of one call, one interval:
//! 1/rate seconds); idle entries go when their last call ends, and the rest
//! on a sweep at most every second. However many distinct callers appear,
//! the map holds only those of the last few seconds.
//!
//! With `--redis-url`, the buckets and running calls live in Redis instead
//! ([`shared`]), so every instance that shares it enforces one limit per
//! caller; while Redis is down, each instance enforces the limits alone,
//! with the map above.

mod http;
mod settings;
mod shared;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

pub use http::refuse_over_limit;
pub use settings::{BudgetSettings, ByLabel, Concurrency, Flags, Labelled, Limit, Rate, Settings};

use crate::caller::{Caller, CallerId, Principal};

/// Whom a limit counts: who the caller is, whatever they may see. An id
/// counts as one caller however it came (header, stdio, the default
/// caller); a token's caller is its issuer and subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RateKey(Who);

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Who {
    Id(CallerId),
    Token { issuer: String, subject: String },
}

impl From<&Principal> for RateKey {
    fn from(principal: &Principal) -> RateKey {
        RateKey(match principal {
            Principal::Header(id) | Principal::Configured(id) | Principal::Default(id) => {
                Who::Id(*id)
            }
            Principal::Jwt { issuer, subject } => Who::Token {
                issuer: issuer.clone(),
                subject: subject.clone(),
            },
        })
    }
}

/// A bucket's arithmetic (GCRA): its state is the instant at which it is
/// full again.
impl Rate {
    /// The time one token takes to come back.
    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }

    /// How long a call at `now` must wait, given when the bucket is full
    /// again (`None`: full now); `None` when it may go now.
    fn wait(&self, full_at: Option<Instant>, now: Instant) -> Option<Duration> {
        let missing = full_at?.saturating_duration_since(now);
        // a call needs one token: at most burst - 1 may be missing
        let tolerated = self.interval() * (self.burst - 1);
        (missing > tolerated).then(|| missing - tolerated)
    }

    /// When the bucket is full again after a call at `now`.
    fn spend(&self, full_at: Option<Instant>, now: Instant) -> Instant {
        full_at.map_or(now, |at| at.max(now)) + self.interval()
    }
}

/// What a call spends: every call the first, raw SQL both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    AllTools = 0,
    RawSql = 1,
}

impl Budget {
    /// The budgets a call of `tool` spends, the more specific last.
    fn of(tool: &str) -> &'static [Budget] {
        if tool == crate::tools::raw_sql::NAME {
            &[Budget::AllTools, Budget::RawSql]
        } else {
            &[Budget::AllTools]
        }
    }

    /// Its value of the `budget` label in `/metrics`.
    fn label(self) -> &'static str {
        match self {
            Budget::AllTools => "all_tools",
            Budget::RawSql => "raw_sql",
        }
    }

    /// Who allows what, in a refusal.
    fn who(self) -> &'static str {
        match self {
            Budget::AllTools => "this server",
            Budget::RawSql => "raw SQL",
        }
    }
}

/// Why a call may not run now.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Rate {
        budget: Budget,
        rate: Rate,
        retry_in: Duration,
    },
    Concurrency {
        budget: Budget,
        cap: Concurrency,
    },
}

impl Refusal {
    /// The `limit` label in `/metrics`.
    fn limit(&self) -> &'static str {
        match self {
            Refusal::Rate { .. } => "rate",
            Refusal::Concurrency { .. } => "concurrency",
        }
    }

    fn budget(&self) -> Budget {
        match self {
            Refusal::Rate { budget, .. } | Refusal::Concurrency { budget, .. } => *budget,
        }
    }

    /// Its `error_class` in the audit log.
    pub fn audit_class(&self) -> &'static str {
        match self {
            Refusal::Rate { .. } => "rate_limit",
            Refusal::Concurrency { .. } => "concurrency_limit",
        }
    }

    /// Whole seconds for `Retry-After`, at least 1. A concurrency refusal
    /// has no known end: a second is a guess that costs the caller little.
    fn retry_after_seconds(&self) -> u64 {
        match self {
            Refusal::Rate { retry_in, .. } => {
                (retry_in.as_secs() + u64::from(retry_in.subsec_nanos() > 0)).max(1)
            }
            Refusal::Concurrency { .. } => 1,
        }
    }

    fn count(&self) {
        metrics::counter!(REFUSALS, "limit" => self.limit(), "budget" => self.budget().label())
            .increment(1);
    }
}

/// Counts refusals by limit and budget: never by caller, so the label set
/// stays bounded.
const REFUSALS: &str = "sqlmcp_rate_limited_calls_total";

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Rate {
                budget,
                rate,
                retry_in,
            } => {
                // tenths of a second, rounded up: retrying at the time said works
                let tenths = (retry_in.as_secs_f64() * 10.0).ceil().max(1.0) / 10.0;
                write!(
                    f,
                    "rate limit: {} allows {}/s per caller (burst {}); retry in {tenths:.1} s",
                    budget.who(),
                    calls(rate.per_second),
                    rate.burst
                )
            }
            Refusal::Concurrency { budget, cap } => write!(
                f,
                "concurrency limit: {} allows {} at once per caller; retry when one of yours has finished",
                budget.who(),
                calls(f64::from(cap.0))
            ),
        }
    }
}

/// "1 call", "2 calls", "0.5 calls".
fn calls(n: f64) -> String {
    if n == 1.0 {
        "1 call".to_owned()
    } else {
        format!("{n} calls")
    }
}

/// One budget's limits for one caller.
#[derive(Clone, Copy)]
struct BudgetLimits {
    rate: Limit<Rate>,
    concurrent: Limit<Concurrency>,
}

/// A caller's state: per budget, when the bucket is full again (`None`:
/// full) and the calls running.
#[derive(Debug, Default)]
struct Entry {
    full_at: [Option<Instant>; 2],
    running: [u32; 2],
}

impl Entry {
    /// Indistinguishable from no entry at all.
    fn is_idle(&self, now: Instant) -> bool {
        self.running == [0, 0] && self.full_at.iter().all(|at| at.is_none_or(|at| at <= now))
    }
}

/// How often idle entries are swept at most.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

struct Callers {
    entries: HashMap<RateKey, Entry>,
    next_sweep: Instant,
}

impl Callers {
    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + SWEEP_EVERY;
        self.entries.retain(|_, entry| !entry.is_idle(now));
        if self.entries.capacity() > 4 * self.entries.len().max(256) {
            self.entries.shrink_to_fit();
        }
    }
}

/// Every caller's buckets and running calls.
pub struct Limiter {
    settings: Settings,
    on: bool,
    // One lock: an admission is a lookup and a few comparisons, far shorter
    // than the call it admits.
    callers: Mutex<Callers>,
    /// The limits every instance shares, while Redis is up.
    shared: Option<shared::SharedLimits>,
}

impl Limiter {
    pub fn new(settings: Settings) -> Limiter {
        let on = !(settings.all_tools.rate.is_off()
            && settings.all_tools.concurrent.is_off()
            && settings.raw_sql.rate.is_off()
            && settings.raw_sql.concurrent.is_off());
        if on {
            // every series from zero, so a rate over them is defined
            super::metrics::install();
            for limit in ["rate", "concurrency"] {
                for budget in [Budget::AllTools, Budget::RawSql] {
                    metrics::counter!(REFUSALS, "limit" => limit, "budget" => budget.label())
                        .increment(0);
                }
            }
        }
        Limiter {
            settings,
            on,
            callers: Mutex::new(Callers {
                entries: HashMap::new(),
                next_sweep: Instant::now() + SWEEP_EVERY,
            }),
            shared: None,
        }
    }

    /// Keeps the limits in `redis`, shared with the other instances that
    /// use it, while it is up.
    pub fn shared_through(
        mut self,
        redis: Option<std::sync::Arc<super::shared::Redis>>,
    ) -> Limiter {
        if self.on {
            self.shared = redis.map(shared::SharedLimits::new);
        }
        self
    }

    /// Whether any limit is set.
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Admits a call of `tool` by `caller`: spends a token of each budget
    /// the call spends and takes a slot, kept until the permit is dropped;
    /// or says which limit refuses it. Nothing is spent when it is refused.
    pub async fn admit(&self, caller: &Caller, tool: &str) -> Result<CallPermit<'_>, Refusal> {
        if !self.on {
            return Ok(CallPermit::free());
        }
        let (key, labels) = (RateKey::from(&caller.principal), labels(caller));
        if let Some(decision) = self.decide_shared(&key, &labels, tool, true).await {
            return match decision {
                shared::Decision::Admitted(lease) => Ok(CallPermit { held: None, lease }),
                shared::Decision::Refused(refusal) => Err(refusal),
            };
        }
        self.admit_as(&key, &labels, tool)
    }

    /// Why a call of `tool` by `caller` would be refused now, without
    /// spending anything.
    pub async fn refusal(&self, caller: &Caller, tool: &str) -> Option<Refusal> {
        if !self.on {
            return None;
        }
        let (key, labels) = (RateKey::from(&caller.principal), labels(caller));
        if let Some(decision) = self.decide_shared(&key, &labels, tool, false).await {
            return match decision {
                shared::Decision::Admitted(_) => None,
                shared::Decision::Refused(refusal) => Some(refusal),
            };
        }
        self.refusal_as(&key, &labels, tool)
    }

    /// What Redis decides, when limits are shared and it is up; a refusal
    /// is counted.
    async fn decide_shared(
        &self,
        key: &RateKey,
        labels: &[&str],
        tool: &str,
        spend: bool,
    ) -> Option<shared::Decision> {
        let shared = self.shared.as_ref()?;
        let Some(limits) = self.limits(labels) else {
            return Some(shared::Decision::Admitted(None));
        };
        let decision = shared.decide(key, &limits, Budget::of(tool), spend).await?;
        if let shared::Decision::Refused(refusal) = &decision {
            refusal.count();
        }
        Some(decision)
    }

    /// [`Limiter::admit`] for the caller `key` holding `labels`.
    fn admit_as(
        &self,
        key: &RateKey,
        labels: &[&str],
        tool: &str,
    ) -> Result<CallPermit<'_>, Refusal> {
        let budgets = Budget::of(tool);
        let Some(limits) = self.limits(labels) else {
            return Ok(CallPermit::free());
        };
        let now = Instant::now();
        let mut callers = self.lock();
        callers.sweep(now);
        let entry = callers.entries.entry(key.clone()).or_default();
        let checked = check(entry, &limits, budgets, now);
        if let Err(refusal) = checked {
            if entry.is_idle(now) {
                callers.entries.remove(key);
            }
            refusal.count();
            return Err(refusal);
        }
        for &budget in budgets {
            let b = budget as usize;
            if let Limit::On(rate) = limits[b].rate {
                entry.full_at[b] = Some(rate.spend(entry.full_at[b], now));
            }
            entry.running[b] += 1;
        }
        Ok(CallPermit {
            held: Some(Held {
                limiter: self,
                key: key.clone(),
                budgets,
            }),
            lease: None,
        })
    }

    /// [`Limiter::refusal`] for the caller `key` holding `labels`.
    fn refusal_as(&self, key: &RateKey, labels: &[&str], tool: &str) -> Option<Refusal> {
        let limits = self.limits(labels)?;
        let now = Instant::now();
        let refusal = check(
            self.lock().entries.get(key)?,
            &limits,
            Budget::of(tool),
            now,
        )
        .err()?;
        refusal.count();
        Some(refusal)
    }

    /// The caller's limits per budget; `None` when they have none.
    fn limits(&self, labels: &[&str]) -> Option<[BudgetLimits; 2]> {
        if !self.on {
            return None;
        }
        let limits = [Budget::AllTools, Budget::RawSql].map(|budget| {
            let settings = self.settings.budget(budget);
            BudgetLimits {
                rate: settings.rate.for_labels(labels),
                concurrent: settings.concurrent.for_labels(labels),
            }
        });
        let unlimited = limits
            .iter()
            .all(|l| l.rate == Limit::Off && l.concurrent == Limit::Off);
        (!unlimited).then_some(limits)
    }

    fn lock(&self) -> MutexGuard<'_, Callers> {
        // nothing panics while holding it; a poisoned map is still consistent
        self.callers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.lock().entries.len()
    }
}

/// What per-label limits match: the caller's roles and scopes.
fn labels(caller: &Caller) -> Vec<&str> {
    let roles = caller.roles.iter().map(String::as_str);
    roles.chain(caller.scopes.iter()).collect()
}

/// Whether a call of the caller in `entry` may go now: rate first (a
/// refusal that says when), then running calls, the more specific budget
/// first in each.
fn check(
    entry: &Entry,
    limits: &[BudgetLimits; 2],
    budgets: &[Budget],
    now: Instant,
) -> Result<(), Refusal> {
    for &budget in budgets.iter().rev() {
        let b = budget as usize;
        if let Limit::On(rate) = limits[b].rate
            && let Some(retry_in) = rate.wait(entry.full_at[b], now)
        {
            return Err(Refusal::Rate {
                budget,
                rate,
                retry_in,
            });
        }
    }
    for &budget in budgets.iter().rev() {
        let b = budget as usize;
        if let Limit::On(cap) = limits[b].concurrent
            && entry.running[b] >= cap.0
        {
            return Err(Refusal::Concurrency { budget, cap });
        }
    }
    Ok(())
}

/// A call's slot: released when dropped, however the call ends (finished,
/// cancelled, past its deadline, or a panic).
#[must_use = "the slot is released when the permit is dropped"]
pub struct CallPermit<'a> {
    /// A slot in this instance's map.
    held: Option<Held<'a>>,
    /// A lease in Redis, which dropping it removes.
    lease: Option<shared::Lease>,
}

impl CallPermit<'_> {
    /// A permit that holds nothing: no limit applies.
    fn free() -> CallPermit<'static> {
        CallPermit {
            held: None,
            lease: None,
        }
    }
}

impl fmt::Debug for CallPermit<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallPermit")
            .field("budgets", &self.held.as_ref().map(|held| held.budgets))
            .field("shared", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

struct Held<'a> {
    limiter: &'a Limiter,
    key: RateKey,
    budgets: &'static [Budget],
}

impl Drop for CallPermit<'_> {
    fn drop(&mut self) {
        let Some(held) = self.held.take() else {
            return;
        };
        let now = Instant::now();
        let mut callers = held.limiter.lock();
        if let Some(entry) = callers.entries.get_mut(&held.key) {
            for &budget in held.budgets {
                let running = &mut entry.running[budget as usize];
                *running = running.saturating_sub(1);
            }
            if entry.is_idle(now) {
                callers.entries.remove(&held.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAW_SQL: &str = crate::tools::raw_sql::NAME;

    fn key(n: u32) -> RateKey {
        RateKey(Who::Token {
            issuer: "https://issuer.test".to_owned(),
            subject: n.to_string(),
        })
    }

    fn rate(text: &str) -> Limit<Rate> {
        text.parse().unwrap()
    }

    fn cap(calls: u32) -> Limit<Concurrency> {
        Limit::On(Concurrency::new(calls).unwrap())
    }

    fn limiter(all_tools: BudgetSettings, raw_sql: BudgetSettings) -> Limiter {
        Limiter::new(Settings { all_tools, raw_sql })
    }

    fn budget(rate: Limit<Rate>, concurrent: Limit<Concurrency>) -> BudgetSettings {
        BudgetSettings {
            rate: ByLabel {
                global: rate,
                labels: HashMap::new(),
            },
            concurrent: ByLabel {
                global: concurrent,
                labels: HashMap::new(),
            },
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_one_call_per_interval() {
        let limiter = limiter(budget(rate("10:3"), Limit::Off), BudgetSettings::default());
        for _ in 0..3 {
            drop(limiter.admit_as(&key(1), &[], "top_products").unwrap());
        }
        let Err(Refusal::Rate {
            budget, retry_in, ..
        }) = limiter.admit_as(&key(1), &[], "top_products")
        else {
            panic!("the fourth call is over the burst")
        };
        assert_eq!(budget, Budget::AllTools);
        assert!(
            retry_in > Duration::from_millis(50) && retry_in <= Duration::from_millis(100),
            "one token back within a tenth of a second: {retry_in:?}"
        );
        assert!(
            limiter.refusal_as(&key(1), &[], "top_products").is_some(),
            "the door sees the same"
        );
        assert!(
            limiter.admit_as(&key(2), &[], "top_products").is_ok(),
            "another caller has a bucket of their own"
        );
        std::thread::sleep(retry_in);
        assert!(limiter.refusal_as(&key(1), &[], "top_products").is_none());
        drop(limiter.admit_as(&key(1), &[], "top_products").unwrap());
        assert!(
            limiter.admit_as(&key(1), &[], "top_products").is_err(),
            "one token came back, not more"
        );
    }

    #[test]
    fn raw_sql_spends_both_budgets_and_a_refusal_spends_neither() {
        let limiter = limiter(
            budget(rate("100:3"), Limit::Off),
            budget(rate("1:1"), Limit::Off),
        );
        drop(limiter.admit_as(&key(1), &[], RAW_SQL).unwrap());
        let refused = limiter.admit_as(&key(1), &[], RAW_SQL).unwrap_err();
        assert_eq!(refused.budget(), Budget::RawSql);
        assert!(
            refused
                .to_string()
                .starts_with("rate limit: raw SQL allows 1 call/s per caller (burst 1); retry in "),
            "{refused}"
        );
        // the raw SQL call spent one of three; the refused one spent nothing
        drop(limiter.admit_as(&key(1), &[], "top_products").unwrap());
        drop(limiter.admit_as(&key(1), &[], "top_products").unwrap());
        let refused = limiter.admit_as(&key(1), &[], "top_products").unwrap_err();
        assert_eq!(refused.budget(), Budget::AllTools);
        assert!(
            refused
                .to_string()
                .starts_with("rate limit: this server allows 100 calls/s per caller (burst 3)"),
            "{refused}"
        );
    }

    #[test]
    fn running_calls_are_capped_until_their_permits_drop_however_the_call_ends() {
        let limiter = limiter(budget(Limit::Off, cap(2)), budget(Limit::Off, cap(1)));
        let raw = limiter.admit_as(&key(1), &[], RAW_SQL).unwrap();
        let refused = limiter.admit_as(&key(1), &[], RAW_SQL).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "concurrency limit: raw SQL allows 1 call at once per caller; retry when one of yours has finished"
        );
        assert_eq!(refused.retry_after_seconds(), 1);
        let curated = limiter.admit_as(&key(1), &[], "top_products").unwrap();
        let refused = limiter.admit_as(&key(1), &[], "top_products").unwrap_err();
        assert_eq!(
            refused.budget(),
            Budget::AllTools,
            "raw SQL holds a slot of both"
        );
        assert!(
            limiter.admit_as(&key(2), &[], RAW_SQL).is_ok(),
            "per caller"
        );

        // a panic mid-call
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _held = raw;
            panic!("the call failed");
        }));
        assert!(panicked.is_err());
        let raw = limiter.admit_as(&key(1), &[], RAW_SQL).unwrap();
        // a call cancelled: its future dropped while it waits
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            let call = async move {
                let _held = raw;
                std::future::pending::<()>().await;
            };
            let _ = tokio::time::timeout(Duration::from_millis(1), call).await;
        });
        drop(curated);
        assert!(limiter.admit_as(&key(1), &[], RAW_SQL).is_ok());
        assert_eq!(
            limiter.tracked(),
            0,
            "nothing left of a caller with no calls"
        );
    }

    #[test]
    fn a_caller_gets_the_most_generous_limit_among_their_labels_else_the_global_one() {
        let mut all_tools = budget(rate("1:1"), cap(1));
        all_tools.rate.labels = HashMap::from([
            ("analyst".to_owned(), rate("5:5")),
            ("sales:sql".to_owned(), rate("5:10")),
            ("batch".to_owned(), Limit::Off),
            ("intern".to_owned(), rate("0.5:1")),
        ]);
        let limiter = limiter(all_tools, BudgetSettings::default());
        let allowed = |n: u32, labels: &[&str]| {
            let mut permits = 0;
            while limiter
                .admit_as(&key(n), labels, "top_products")
                .map(drop)
                .is_ok()
            {
                permits += 1;
                if permits == 50 {
                    break;
                }
            }
            permits
        };
        assert_eq!(allowed(1, &[]), 1, "global");
        assert_eq!(allowed(2, &["unknown"]), 1, "a label with no limit: global");
        assert_eq!(
            allowed(3, &["analyst", "sales:sql"]),
            10,
            "the larger burst"
        );
        assert_eq!(allowed(4, &["intern", "analyst"]), 5, "the larger rate");
        assert_eq!(
            allowed(5, &["intern"]),
            1,
            "a label may limit more than global"
        );
        assert_eq!(allowed(6, &["batch", "analyst"]), 50, "off beats any");
        // the label set only the rate: the cap is still the global one
        let first = limiter
            .admit_as(&key(7), &["batch"], "top_products")
            .unwrap();
        assert!(matches!(
            limiter.admit_as(&key(7), &["batch"], "top_products"),
            Err(Refusal::Concurrency { .. })
        ));
        drop(first);
    }

    #[test]
    fn memory_holds_only_callers_of_the_last_moments() {
        // a token comes back in half a second; a sweep runs at most every second
        let limiter = limiter(budget(rate("2:1"), Limit::Off), BudgetSettings::default());
        for n in 0..10_000 {
            drop(limiter.admit_as(&key(n), &[], "top_products").unwrap());
        }
        assert_eq!(limiter.tracked(), 10_000, "each bucket is short of a token");
        for n in 0..10_000 {
            assert!(limiter.admit_as(&key(n), &[], "top_products").is_err());
            assert!(
                limiter
                    .refusal_as(&key(n + 20_000), &[], "top_products")
                    .is_none()
            );
        }
        assert_eq!(limiter.tracked(), 10_000, "refusals and looks add nothing");
        std::thread::sleep(SWEEP_EVERY + Duration::from_millis(10));
        drop(limiter.admit_as(&key(10_000), &[], "top_products").unwrap());
        assert_eq!(limiter.tracked(), 1, "the sweep dropped every full bucket");
        assert!(
            limiter.lock().entries.capacity() < 10_000,
            "and gave back their memory"
        );
    }

    #[test]
    fn a_caller_is_counted_by_who_they_are_and_limited_by_their_roles_and_scopes() {
        use crate::caller::{Grant, Scopes};
        let seattle = CallerId::for_tests("f47ac10b-58cc-4372-a567-0e02b2c3d479");
        let by_header = RateKey::from(&Principal::Header(seattle));
        assert_eq!(by_header, RateKey::from(&Principal::Default(seattle)));
        let token = |issuer: &str, subject: &str| {
            RateKey::from(&Principal::Jwt {
                issuer: issuer.to_owned(),
                subject: subject.to_owned(),
            })
        };
        assert_ne!(token("https://a.test", "x"), token("https://b.test", "x"));
        assert_ne!(by_header, token("https://a.test", &seattle.to_string()));

        let mut all_tools = budget(rate("1:1"), Limit::Off);
        all_tools.rate.labels = HashMap::from([
            ("batch".to_owned(), Limit::Off),
            ("sales:sql".to_owned(), rate("1:2")),
        ]);
        let limiter = limiter(all_tools, BudgetSettings::default());
        let caller = |subject: &str, roles: &[&str], scopes: &[&str]| Caller {
            principal: Principal::Jwt {
                issuer: "https://a.test".to_owned(),
                subject: subject.to_owned(),
            },
            grant: Grant::ALL,
            scopes: Scopes::new(scopes.iter().copied()),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        };
        let allowed = |caller: &Caller| {
            let key = RateKey::from(&caller.principal);
            (0..5)
                .take_while(|_| {
                    limiter
                        .admit_as(&key, &labels(caller), "top_products")
                        .map(drop)
                        .is_ok()
                })
                .count()
        };
        assert_eq!(allowed(&caller("1", &[], &["sales:read"])), 1, "global");
        assert_eq!(
            allowed(&caller("2", &[], &["sales:read", "sales:sql"])),
            2,
            "a scope"
        );
        assert_eq!(
            allowed(&caller("3", &["batch"], &["sales:read"])),
            5,
            "a role"
        );
        assert!(
            limiter
                .refusal_as(
                    &RateKey::from(&caller("1", &[], &[]).principal),
                    &[],
                    "top_products"
                )
                .is_some()
        );
    }

    #[test]
    fn without_limits_nothing_is_tracked() {
        let off = Limiter::new(Settings::default());
        assert!(!off.is_on());
        let permits: Vec<_> = (0..100)
            .map(|_| off.admit_as(&key(1), &[], RAW_SQL).unwrap())
            .collect();
        assert_eq!(off.tracked(), 0);
        drop(permits);
        let mut batch_only = budget(Limit::Off, Limit::Off);
        batch_only.concurrent.labels = HashMap::from([("batch".to_owned(), cap(1))]);
        let limiter = limiter(batch_only, BudgetSettings::default());
        let _held = limiter.admit_as(&key(1), &[], "top_products").unwrap();
        assert_eq!(
            limiter.tracked(),
            0,
            "a caller without the label is not limited"
        );
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let refusal = |millis| Refusal::Rate {
            budget: Budget::RawSql,
            rate: Rate::new(2.0, 4).unwrap(),
            retry_in: Duration::from_millis(millis),
        };
        assert_eq!(refusal(1).retry_after_seconds(), 1);
        assert_eq!(refusal(1_000).retry_after_seconds(), 1);
        assert_eq!(refusal(1_001).retry_after_seconds(), 2);
        assert_eq!(
            refusal(310).to_string(),
            "rate limit: raw SQL allows 2 calls/s per caller (burst 4); retry in 0.4 s"
        );
        assert!(refusal(0).to_string().ends_with("retry in 0.1 s"));
    }
}
