//! A `sqlmcp serve` binary run as its own process, serving MCP over HTTP.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// A `serve` process on a free port of 127.0.0.1, killed when dropped.
pub struct ServeProcess {
    child: tokio::process::Child,
    /// Where it listens.
    pub address: SocketAddr,
    /// The lines it logged before it served, as JSON text.
    pub startup_logs: Vec<String>,
}

impl ServeProcess {
    /// Runs `binary serve --bind 127.0.0.1:0 --log-format json` with `args`
    /// (these name the database and the audit log's: neither `DATABASE_URL`
    /// nor `SQLMCP_AUDIT_DATABASE_URL` is passed on), and waits
    /// up to 30 s until it logs the address it serves at. Its logs are read
    /// on, so that it never blocks writing them.
    pub async fn start(binary: &Path, args: &[&str]) -> ServeProcess {
        let mut child = tokio::process::Command::new(binary)
            .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("SQLMCP_AUDIT_DATABASE_URL")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        let mut logs = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut startup_logs = Vec::new();
        let address = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(text) = logs.next_line().await.unwrap() {
                let line: Value = serde_json::from_str(&text).unwrap_or_default();
                startup_logs.push(text);
                if let Some(address) = line["fields"]["address"].as_str() {
                    return address.parse().expect("the logged address");
                }
            }
            panic!("the server exited before serving");
        })
        .await
        .expect("the server starts within 30 s");
        // keep reading the logs so that the server never blocks on them
        tokio::spawn(async move { while let Ok(Some(_)) = logs.next_line().await {} });
        ServeProcess {
            child,
            address,
            startup_logs,
        }
    }

    /// The `sqlmcp` binary of this build.
    pub async fn sqlmcp(args: &[&str]) -> ServeProcess {
        ServeProcess::start(Path::new(env!("CARGO_BIN_EXE_sqlmcp")), args).await
    }

    /// Where it serves MCP.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }

    /// The sum of the `/metrics` samples whose line starts with `prefix`
    /// (a name, or a name and the start of its labels), 0 if none.
    pub async fn metric_total(&self, prefix: &str) -> f64 {
        let text = reqwest::get(format!("http://{}/metrics", self.address))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|line| line.starts_with(prefix))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id().expect("the server is running")
    }

    /// Kills the server and waits until it has gone.
    pub async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}
