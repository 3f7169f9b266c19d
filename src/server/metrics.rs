//! Prometheus metrics: calls, errors and latency per tool, pool usage.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The process-wide recorder (metrics has one global recorder).
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (several servers in one
        // test process); the calls then go to that one.
        let _ = metrics::set_global_recorder(recorder);
        // Histograms keep every sample until upkeep folds them into their
        // buckets; without it, a server nobody scrapes would grow by every
        // call. A thread, not a task: it outlives any one runtime.
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

/// How often histogram samples are folded into buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Makes sure the recorder exists before the first call.
pub fn install() {
    handle();
}

pub fn record_call(tool: &str, outcome: &'static str, elapsed: Duration) {
    let tool = tool.to_owned();
    metrics::counter!("sqlmcp_tool_calls_total", "tool" => tool.clone(), "outcome" => outcome)
        .increment(1);
    metrics::histogram!("sqlmcp_tool_call_duration_seconds", "tool" => tool)
        .record(elapsed.as_secs_f64());
}

/// A call cut short: `reason` is `client`, `disconnect`, `shutdown` or
/// `deadline` ([`super::progress::cancel_reason`]).
pub fn record_cancelled(tool: &str, reason: &'static str) {
    metrics::counter!("sqlmcp_cancelled_calls_total", "tool" => tool.to_owned(), "reason" => reason)
        .increment(1);
}

/// A call tried again after a transient database fault of `kind`.
pub fn record_retry(tool: &str, kind: crate::db::FaultKind) {
    metrics::counter!("sqlmcp_call_retries_total", "tool" => tool.to_owned(), "fault" => kind.label())
        .increment(1);
}

pub fn record_cache_lookup(tool: &str, lookup: super::result_cache::Lookup) {
    let result = match lookup {
        super::result_cache::Lookup::Hit => "hit",
        super::result_cache::Lookup::Miss => "miss",
    };
    metrics::counter!("sqlmcp_result_cache_lookups_total", "tool" => tool.to_owned(), "result" => result)
        .increment(1);
}

/// The exposition text, with the pool's current usage.
pub fn render(pool: &deadpool_postgres::Pool) -> String {
    let status = pool.status();
    metrics::gauge!("sqlmcp_pool_connections").set(status.size as f64);
    metrics::gauge!("sqlmcp_pool_connections_idle").set(status.available as f64);
    metrics::gauge!("sqlmcp_pool_waiting_calls").set(status.waiting as f64);
    metrics::gauge!("sqlmcp_pool_max_connections").set(status.max_size as f64);
    handle().render()
}
