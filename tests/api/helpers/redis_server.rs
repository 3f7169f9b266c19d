//! A real `redis-server` (Debian's package `redis-server`, which
//! `scripts/system-deps` installs) on a free port of 127.0.0.1, with no
//! persistence, killed when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
}

impl RedisServer {
    /// A Redis of this test's own, on a port that was free a moment ago.
    /// Another test may take the same port in between: then this one's
    /// `redis-server` cannot listen and the other's would answer in its
    /// place, so the answer must come from this process, or it tries again
    /// on another port.
    pub async fn start() -> RedisServer {
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(server) = RedisServer::try_start_on(port).await {
                return server;
            }
        }
        panic!("redis-server could not get a port of its own in 5 tries");
    }

    /// A Redis on `port`, ready to answer.
    pub async fn start_on(port: u16) -> RedisServer {
        RedisServer::try_start_on(port)
            .await
            .unwrap_or_else(|| panic!("another process listens on port {port}"))
    }

    /// A Redis on `port`, or `None` if another process answers there.
    async fn try_start_on(port: u16) -> Option<RedisServer> {
        let child = Command::new(binary())
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start redis-server: {err}"));
        let mut server = RedisServer {
            child: Some(child),
            port,
        };
        let started = Instant::now();
        loop {
            if let Some(pid) = server.process_id().await {
                return (pid == server.child.as_ref().unwrap().id()).then_some(server);
            }
            if let Ok(Some(_)) = server.child.as_mut().unwrap().try_wait() {
                return None;
            }
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "redis-server on port {port} did not answer within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The process id of the Redis that answers on this port, if one does.
    async fn process_id(&self) -> Option<u32> {
        let client = redis::Client::open(self.url()).ok()?;
        let mut connection = client.get_multiplexed_async_connection().await.ok()?;
        let info: String = redis::cmd("INFO")
            .arg("server")
            .query_async(&mut connection)
            .await
            .ok()?;
        info.lines()
            .find_map(|line| line.strip_prefix("process_id:"))
            .and_then(|pid| pid.trim().parse().ok())
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection of the test's own, to look at what the servers stored.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing answers.
    pub fn freeze(&self) {
        self.signal("STOP");
    }

    /// Lets a frozen server go on (SIGCONT).
    pub fn thaw(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill")
            .args([&format!("-{name}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {pid}");
    }

    /// Kills the server (SIGKILL) and waits until it has gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Debian's `redis-server`; a test that needs it fails without it.
fn binary() -> &'static str {
    const PATH: &str = "/usr/bin/redis-server";
    if std::path::Path::new(PATH).exists() {
        return PATH;
    }
    let on_path = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        on_path,
        "redis-server is not installed: the tests of --redis-url need a real Redis. \
         Run scripts/system-deps (it installs Debian's package redis-server)"
    );
    "redis-server"
}
