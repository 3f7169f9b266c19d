//! What every benchmark needs: latency percentiles, a release server in a
//! child process (start time, memory), and clients that drive it over
//! stateless Streamable HTTP.

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// Latencies of a run, in microseconds.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn record(&mut self, elapsed: Duration) {
        self.0.push(elapsed.as_micros() as u64);
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn extend(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    /// The p-th percentile (nearest rank), in milliseconds.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        self.0.sort_unstable();
        let rank = ((p / 100.0) * self.0.len() as f64).ceil() as usize;
        self.0[rank.clamp(1, self.0.len()) - 1] as f64 / 1_000.0
    }
}

/// The outcome of driving a workload for a while.
#[derive(Default)]
pub struct Run {
    pub latencies: Latencies,
    pub rate: f64,
    pub errors: usize,
    /// The first error message seen, to say what went wrong.
    pub first_error: Option<String>,
    /// Seconds the run took.
    pub elapsed: f64,
}

impl Run {
    /// `self` and `other` as one run: their calls over their summed time
    /// (an empty run absorbs another into a copy of it).
    pub fn absorb(&mut self, other: Run) {
        self.latencies.extend(other.latencies);
        self.errors += other.errors;
        self.first_error = self.first_error.take().or(other.first_error);
        self.elapsed += other.elapsed;
        self.rate = self.latencies.len() as f64 / self.elapsed;
    }

    pub fn summary(&mut self) -> Value {
        json!({
            "calls_per_s": round(self.rate, 1),
            "p50_ms": round(self.latencies.percentile_ms(50.0), 3),
            "p95_ms": round(self.latencies.percentile_ms(95.0), 3),
            "p99_ms": round(self.latencies.percentile_ms(99.0), 3),
            "calls": self.latencies.len(),
            "errors": self.errors,
        })
    }
}

pub fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// Runs `clients` loops of `call(n)` for `duration`; `n` counts calls
/// across all clients. Errors are counted, not fatal.
pub async fn run_for<F, Fut>(clients: usize, duration: Duration, call: F) -> Result<Run>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let call = Arc::new(call);
    let counter = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (call, counter) = (call.clone(), counter.clone());
            tokio::spawn(async move {
                let mut latencies = Latencies::default();
                let mut errors = 0;
                let mut first_error = None;
                while Instant::now() < deadline {
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let sent = Instant::now();
                    let outcome = call(n).await;
                    latencies.record(sent.elapsed());
                    if let Err(err) = outcome {
                        errors += 1;
                        first_error.get_or_insert_with(|| format!("{err:#}"));
                    }
                }
                (latencies, errors, first_error)
            })
        })
        .collect();
    let mut all = Latencies::default();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let (latencies, failed, first) = task.await?;
        all.extend(latencies);
        errors += failed;
        first_error = first_error.or(first);
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok(Run {
        rate: all.len() as f64 / elapsed,
        latencies: all,
        errors,
        first_error,
        elapsed,
    })
}

/// A client of the server's `/mcp` endpoint in stateless JSON mode.
#[derive(Clone)]
pub struct McpClient {
    http: reqwest::Client,
    url: String,
}

impl McpClient {
    pub fn new(url: &str, connections: usize) -> Result<McpClient> {
        Ok(McpClient {
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(connections)
                .build()?,
            url: url.to_owned(),
        })
    }

    /// One `tools/call`; an error result (`isError`) is an error too.
    pub async fn call(&self, caller: &str, name: &str, arguments: &Value) -> Result<()> {
        let body = json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        });
        let response: Value = self
            .http
            .post(&self.url)
            .header("accept", "application/json, text/event-stream")
            .header("x-rls-user-id", caller)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if response["result"]["isError"] != false {
            bail!(
                "{name}: {}",
                response["result"]["content"][0]["text"]
                    .as_str()
                    .unwrap_or(&response.to_string())
            );
        }
        Ok(())
    }
}

/// A release `sqlmcp serve` on a free port, killed when dropped.
pub struct Server {
    child: std::process::Child,
    pub url: String,
    /// From spawning the process to the first successful `/readyz`.
    pub ready_after: Duration,
    peak_rss_kb: Arc<AtomicU64>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts the server next to this benchmark's binary, with `args`.
    pub async fn start(app_database_url: &str, args: &[&str]) -> Result<Server> {
        let binary = std::env::current_exe()?.with_file_name("sqlmcp");
        if !binary.exists() {
            bail!(
                "{} is missing: run `cargo build --release --workspace` first",
                binary.display()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let ready = format!("http://127.0.0.1:{port}/readyz");
        let http = reqwest::Client::new();
        let started = Instant::now();
        let child = std::process::Command::new(&binary)
            .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
            .args(args)
            .env("DATABASE_URL", app_database_url)
            // unaudited unless the bench's own arguments say otherwise
            .env_remove("SQLMCP_AUDIT_DATABASE_URL")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        let pid = child.id();
        let peak_rss_kb = Arc::new(AtomicU64::new(0));
        let peak = peak_rss_kb.clone();
        let sampler = tokio::spawn(async move {
            while let Some(kb) = rss_kb(pid) {
                peak.fetch_max(kb, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        });
        let mut server = Server {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
            ready_after: Duration::ZERO,
            peak_rss_kb,
            sampler,
        };
        let deadline = started + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(response) = http.get(&ready).send().await
                && response.status().is_success()
            {
                server.ready_after = started.elapsed();
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                bail!("the server exited during start-up ({status})");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        bail!("the server did not get ready within 30 s")
    }

    pub fn rss_mb(&self) -> f64 {
        rss_kb(self.child.id()).unwrap_or(0) as f64 / 1024.0
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn peak_rss_mb(&self) -> f64 {
        self.peak_rss_kb.load(Ordering::Relaxed) as f64 / 1024.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.sampler.abort();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// CPU seconds (user + system) used so far by processes: this one, the
/// server, and every PostgreSQL process, from /proc.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub bench: f64,
    pub server: f64,
    pub postgres: f64,
}

impl CpuTimes {
    pub fn now(server_pid: Option<u32>) -> CpuTimes {
        let mut postgres = 0.0;
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry
                    .file_name()
                    .to_str()
                    .and_then(|s| s.parse::<u32>().ok())
                else {
                    continue;
                };
                if let Some(("postgres", seconds)) =
                    cpu_of(pid).as_ref().map(|(c, s)| (c.as_str(), *s))
                {
                    postgres += seconds;
                }
            }
        }
        CpuTimes {
            bench: cpu_of(std::process::id()).map_or(0.0, |(_, s)| s),
            server: server_pid.and_then(cpu_of).map_or(0.0, |(_, s)| s),
            postgres,
        }
    }

    /// The CPU seconds used from `self` until `later`.
    pub fn until(self, later: CpuTimes) -> CpuTimes {
        CpuTimes {
            bench: later.bench - self.bench,
            server: later.server - self.server,
            postgres: later.postgres - self.postgres,
        }
    }

    /// These CPU seconds (used over `calls` calls) in milliseconds per call.
    pub fn per_call_ms(self, calls: usize) -> Value {
        let per = |seconds: f64| round(seconds * 1e3 / calls.max(1) as f64, 3);
        json!({
            "bench": per(self.bench),
            "server": per(self.server),
            "postgres": per(self.postgres),
        })
    }
}

impl std::ops::AddAssign for CpuTimes {
    fn add_assign(&mut self, other: CpuTimes) {
        self.bench += other.bench;
        self.server += other.server;
        self.postgres += other.postgres;
    }
}

/// A process's command name and CPU seconds (utime + stime).
fn cpu_of(pid: u32) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // after the command: state is field 3; utime and stime are fields 14 and 15
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((comm, ticks / 100.0))
}

/// Resident memory of a process, from /proc.
fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// One line about the machine, for the record.
pub fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gb = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map(|kb| round(kb / 1024.0 / 1024.0, 1));
    json!({
        "cpu": model,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gb": memory_gb,
        "os": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

pub fn write_json(path: Option<&Path>, report: &Value) -> Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("\nwrote {}", path.display());
    }
    Ok(())
}
