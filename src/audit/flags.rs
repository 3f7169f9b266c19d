//! The command line's audit-log flags.

use anyhow::Result;
use tokio_postgres::Config;

use super::{FailClosed, LogTarget, Settings, TableSettings};

/// The audit log of every tool call (off unless a table or JSON lines are
/// named).
/// clap names a group after its struct, so the group is named here: the
/// rate limits' flags are a `Flags` too.
#[derive(Debug, clap::Args)]
#[group(id = "audit")]
pub struct Flags {
    /// Record every tool call in the table sqlmcp_audit.calls, connected as
    /// the insert-only role sqlmcp_audit (e.g.
    /// postgres://sqlmcp_audit:PASSWORD@HOST/sqlmcp).
    #[arg(long, env = "SQLMCP_AUDIT_DATABASE_URL", hide_env_values = true, value_parser = crate::db::parse_database_url)]
    audit_database_url: Option<Config>,
    /// Also write every audit entry as a JSON line: `stderr`, or a file to
    /// append to.
    #[arg(long, env = "SQLMCP_AUDIT_LOG")]
    audit_log: Option<String>,
    /// Where audit entries wait while the audit table is unreachable; one
    /// server per directory. Default: $XDG_STATE_HOME/sqlmcp/audit-spool
    /// (~/.local/state/sqlmcp/audit-spool).
    #[arg(long, env = "SQLMCP_AUDIT_SPOOL_DIR")]
    audit_spool_dir: Option<std::path::PathBuf>,
    /// Bytes the spool holds at most. Beyond, entries are dropped and the
    /// --audit-fail-closed tools refused.
    #[arg(long, env = "SQLMCP_AUDIT_SPOOL_MAX_BYTES", default_value_t = 256 << 20)]
    audit_spool_max_bytes: u64,
    /// The tools refused while no audit entry can be stored (the table
    /// unreachable and the spool full or failing), comma-separated, or
    /// `all`, or `none`. The others run on, unaudited.
    #[arg(
        long,
        env = "SQLMCP_AUDIT_FAIL_CLOSED",
        value_delimiter = ',',
        default_value = "execute_sales_query"
    )]
    audit_fail_closed: Vec<String>,
    /// Audit entries written in one batch at most.
    #[arg(long, env = "SQLMCP_AUDIT_BATCH_SIZE", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    audit_batch_size: u64,
    /// Milliseconds an audit entry waits for its batch at most.
    #[arg(long, env = "SQLMCP_AUDIT_FLUSH_MS", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    audit_flush_ms: u64,
}

impl Flags {
    pub fn settings(&self) -> Result<Settings> {
        let table = match &self.audit_database_url {
            Some(database) => Some(TableSettings {
                database: database.clone(),
                spool_dir: match &self.audit_spool_dir {
                    Some(dir) => dir.clone(),
                    None => default_spool_dir()?,
                },
                spool_max_bytes: self.audit_spool_max_bytes,
            }),
            None => None,
        };
        let log = match self.audit_log.as_deref() {
            None | Some("") => None,
            Some("stderr") => Some(LogTarget::Stderr),
            Some(path) => Some(LogTarget::File(path.into())),
        };
        let named: Vec<&str> = self
            .audit_fail_closed
            .iter()
            .map(|tool| tool.trim())
            .filter(|tool| !tool.is_empty())
            .collect();
        let fail_closed = match named[..] {
            ["all"] => FailClosed::All,
            ["none"] | [] => FailClosed::Tools(Vec::new()),
            _ => {
                let definitions = crate::tools::definitions();
                if let Some(unknown) = named
                    .iter()
                    .find(|tool| !definitions.iter().any(|d| d.name == **tool))
                {
                    anyhow::bail!(
                        "--audit-fail-closed: there is no tool `{unknown}` (`sqlmcp tools` lists them; or say all or none)"
                    );
                }
                FailClosed::Tools(named.iter().map(|tool| (*tool).to_owned()).collect())
            }
        };
        Ok(Settings {
            table,
            log,
            batch_size: usize::try_from(self.audit_batch_size).unwrap_or(usize::MAX),
            flush_every: std::time::Duration::from_millis(self.audit_flush_ms),
            fail_closed,
        })
    }
}

/// `$XDG_STATE_HOME/sqlmcp/audit-spool`, or under `~/.local/state`.
fn default_spool_dir() -> Result<std::path::PathBuf> {
    let non_empty = |var| std::env::var_os(var).filter(|value| !value.is_empty());
    let state = non_empty("XDG_STATE_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| non_empty("HOME").map(|home| std::path::Path::new(&home).join(".local/state")))
        .ok_or_else(|| {
            anyhow::anyhow!("--audit-database-url needs --audit-spool-dir (neither XDG_STATE_HOME nor HOME is set)")
        })?;
    Ok(state.join("sqlmcp").join("audit-spool"))
}
