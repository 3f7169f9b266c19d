//! A PostgreSQL cluster of a test's own, made by `scripts/dev-db` under
//! the build's target directory, for tests that stop or restart the
//! database: the shared dev cluster serves every other test meanwhile.

use std::path::PathBuf;
use std::process::Command;

/// A cluster on a free port of 127.0.0.1, migrated and seeded at the tiny
/// scale; destroyed when dropped.
pub struct PrivateCluster {
    dir: PathBuf,
    port: u16,
    /// Where its standby listens, once started ([`PrivateCluster::start_replica`]).
    replica_port: u16,
}

impl PrivateCluster {
    /// Makes a fresh cluster named `name` (whatever a run before left under
    /// that name is destroyed first), then migrates and seeds it.
    pub fn start(name: &str) -> PrivateCluster {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join("clusters")
            .join(name);
        let cluster = PrivateCluster {
            dir,
            port: free_port(),
            replica_port: free_port(),
        };
        cluster.dev_db(&["destroy"]);
        cluster.dev_db(&["start"]);
        let owner = cluster.url("owner");
        for args in [
            vec!["migrate", "--database-url", &owner],
            vec!["seed", "--scale", "tiny", "--database-url", &owner],
        ] {
            let output = super::sqlmcp(&args, &[]);
            assert!(
                output.status.success(),
                "sqlmcp {args:?} on the private cluster: {}",
                super::stderr(&output)
            );
        }
        cluster
    }

    /// The URL for `role`: `owner`, `app` (store_manager) or `audit`.
    pub fn url(&self, role: &str) -> String {
        let args: &[&str] = match role {
            "owner" => &["url"],
            role => &["url", role],
        };
        self.dev_db(args).trim().to_owned()
    }

    /// Shuts the cluster down in `mode` (`fast` or `immediate`) and starts
    /// it again, as an operator would.
    pub fn restart(&self, mode: &str) {
        self.dev_db(&["restart", mode]);
    }

    pub fn stop(&self, mode: &str) {
        self.dev_db(&["stop", mode]);
    }

    pub fn resume(&self) {
        self.dev_db(&["start"]);
    }

    /// Starts its streaming hot standby (`scripts/dev-db start --replica`):
    /// made the first time, started again after a stop.
    pub fn start_replica(&self) {
        self.dev_db(&["start", "--replica"]);
    }

    /// Shuts the standby down in `mode` (`fast` or `immediate`).
    pub fn stop_replica(&self, mode: &str) {
        self.dev_db(&["stop", "--replica", mode]);
    }

    /// The standby's URL for `role`: `owner` or `app` (store_manager).
    pub fn replica_url(&self, role: &str) -> String {
        let args: &[&str] = match role {
            "owner" => &["url", "--replica"],
            role => &["url", "--replica", role],
        };
        self.dev_db(args).trim().to_owned()
    }

    /// Runs `scripts/dev-db args` for this cluster; panics if it fails.
    fn dev_db(&self, args: &[&str]) -> String {
        let output = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-db"))
            .args(args)
            .env("SQLMCP_PG_DATA_DIR", &self.dir)
            .env("SQLMCP_PG_PORT", self.port.to_string())
            .env("SQLMCP_PG_REPLICA_PORT", self.replica_port.to_string())
            .output()
            .expect("run scripts/dev-db");
        assert!(
            output.status.success(),
            "scripts/dev-db {args:?} for {}: {}",
            self.dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let _ = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/dev-db"))
            .arg("destroy")
            .env("SQLMCP_PG_DATA_DIR", &self.dir)
            .env("SQLMCP_PG_PORT", self.port.to_string())
            .output();
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
