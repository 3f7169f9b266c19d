//! The real components of a scaled-out deployment, run as child processes
//! for a test: PgBouncer in transaction pooling mode in front of a test
//! database, and HAProxy balancing HTTP across server instances. Both come
//! from the distribution's packages (`scripts/test-deps`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::TestDb;
use super::cluster::free_port;

/// The system user `scripts/dev-db` runs PostgreSQL as; PgBouncer refuses
/// to run as root, so as root it runs as this user too.
const UNPRIVILEGED: &str = "sqlmcp-pg";

/// A working directory that the unprivileged user can read, removed on drop.
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(what: &str) -> WorkDir {
        let dir = std::env::temp_dir().join(format!("sqlmcp-{what}-{}", free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        WorkDir(dir)
    }

    fn hand_over(&self) {
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", UNPRIVILEGED])
                .arg(&self.0)
                .status()
                .expect("chown");
            assert!(
                status.success(),
                "chown {} to {UNPRIVILEGED}",
                self.0.display()
            );
        }
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| output.stdout.trim_ascii() == b"0")
}

/// A program from the distribution's packages, or a clear failure.
fn program(name: &str) -> PathBuf {
    ["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(name))
        .find(|path| path.exists())
        .unwrap_or_else(|| {
            panic!("{name} is not installed: run scripts/test-deps (or apt-get install {name})")
        })
}

/// Waits until something accepts connections at `address`.
fn wait_for(address: SocketAddr, what: &str, child: &mut Child) {
    for _ in 0..100 {
        if std::net::TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok() {
            // another test's process may have taken the port in between:
            // then ours could not listen, and exits
            std::thread::sleep(Duration::from_millis(100));
            if let Ok(Some(status)) = child.try_wait() {
                panic!("{what} exited at start ({status}): another process listens on {address}");
            }
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited at start: {status}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} does not listen on {address} after 5 s");
}

/// PgBouncer in transaction pooling mode with `server_connections` server
/// connections, in front of a test database, for the application role.
pub struct PgBouncer {
    child: Child,
    port: u16,
    database: String,
    _dir: WorkDir,
}

impl PgBouncer {
    pub fn start(db: &TestDb, server_connections: usize) -> PgBouncer {
        let app = db.app_config();
        let pg_port = app.get_ports().first().copied().unwrap_or(5432);
        let password = String::from_utf8(app.get_password().expect("a password").to_vec()).unwrap();
        let user = app.get_user().expect("a user").to_owned();
        let database = db.name.clone();
        let dir = WorkDir::new("pgbouncer");
        let port = free_port();
        std::fs::write(
            dir.0.join("pgbouncer.ini"),
            format!(
                "[databases]\n{database} = host=127.0.0.1 port={pg_port} dbname={database}\n\n\
                 [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
                 auth_type = scram-sha-256\nauth_file = {auth}\npool_mode = transaction\n\
                 default_pool_size = {server_connections}\nmax_client_conn = 500\n",
                auth = dir.0.join("userlist.txt").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            dir.0.join("userlist.txt"),
            format!("\"{user}\" \"{password}\"\n"),
        )
        .unwrap();
        dir.hand_over();
        let mut command = Command::new(program("pgbouncer"));
        if is_root() {
            command.args(["-u", UNPRIVILEGED]);
        }
        let mut child = command
            .arg("-q")
            .arg(dir.0.join("pgbouncer.ini"))
            .stdout(Stdio::null())
            .spawn()
            .expect("start pgbouncer");
        wait_for(
            SocketAddr::from(([127, 0, 0, 1], port)),
            "pgbouncer",
            &mut child,
        );
        PgBouncer {
            child,
            port,
            database,
            _dir: dir,
        }
    }

    /// The application role's URL through PgBouncer.
    pub fn app_url(&self, db: &TestDb) -> String {
        let app = db.app_config();
        let password = String::from_utf8(app.get_password().unwrap().to_vec()).unwrap();
        format!(
            "postgres://{}:{password}@127.0.0.1:{}/{}",
            app.get_user().unwrap(),
            self.port,
            self.database
        )
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HAProxy balancing HTTP round-robin across `backends`, checking each one's
/// `/readyz` every 500 ms. A request whose backend refuses the connection
/// goes to another one (`retries`, `redispatch`); one the backend took and
/// then lost is lost with it, as with any load balancer.
pub struct Haproxy {
    child: Child,
    pub address: SocketAddr,
    _dir: WorkDir,
}

impl Haproxy {
    pub fn start(backends: &[SocketAddr]) -> Haproxy {
        let dir = WorkDir::new("haproxy");
        let address = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let servers: String = backends
            .iter()
            .enumerate()
            .map(|(i, backend)| format!("    server sqlmcp{i} {backend} check\n"))
            .collect();
        std::fs::write(
            dir.0.join("haproxy.cfg"),
            format!(
                "global\n    maxconn 2000\n\n\
                 defaults\n    mode http\n    timeout connect 1s\n    timeout client 60s\n    timeout server 60s\n\
                 \x20   retries 3\n    option redispatch 1\n    option http-server-close\n\n\
                 frontend mcp\n    bind {address}\n    default_backend sqlmcp\n\n\
                 backend sqlmcp\n    balance roundrobin\n    option httpchk GET /readyz\n\
                 \x20   http-check expect status 200\n    default-server inter 500ms fall 2 rise 2\n{servers}"
            ),
        )
        .unwrap();
        let mut child = Command::new(program("haproxy"))
            .arg("-f")
            .arg(dir.0.join("haproxy.cfg"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start haproxy");
        wait_for(address, "haproxy", &mut child);
        Haproxy {
            child,
            address,
            _dir: dir,
        }
    }

    /// Where it serves MCP.
    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.address)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
