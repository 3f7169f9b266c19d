//! Revoked tokens (`--jwt-revoked-file`): one `jti` per line (`#` starts a
//! comment). The file is read at start-up, which fails if it cannot be, and
//! read again when it changes, checked at most once per [`RECHECK`], so a
//! token is revoked without a restart. If a changed file cannot be read,
//! the list read before stays in force.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};

/// How often the file's modification time is looked at.
pub const RECHECK: Duration = Duration::from_secs(1);

/// A file's modification time and length: a change of either reads it
/// again.
type Signature = (SystemTime, u64);

pub struct Revoked {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    jtis: HashSet<String>,
    /// The file's signature when read.
    modified: Option<Signature>,
    checked: Instant,
}

impl Revoked {
    pub fn load(path: &Path) -> Result<Revoked> {
        let (jtis, modified) = read(path)
            .with_context(|| format!("cannot read the revoked tokens {}", path.display()))?;
        Ok(Revoked {
            path: path.to_owned(),
            state: Mutex::new(State {
                jtis,
                modified,
                checked: Instant::now(),
            }),
        })
    }

    pub fn contains(&self, jti: &str) -> bool {
        let mut state = self.state.lock().expect("not poisoned");
        if state.checked.elapsed() >= RECHECK {
            state.checked = Instant::now();
            let modified = signature(&self.path).ok().flatten();
            if modified != state.modified {
                match read(&self.path) {
                    Ok((jtis, modified)) => {
                        tracing::info!(file = %self.path.display(), revoked = jtis.len(), "read the revoked tokens again");
                        state.jtis = jtis;
                        state.modified = modified;
                    }
                    Err(err) => tracing::warn!(
                        file = %self.path.display(),
                        error = %err,
                        "cannot read the revoked tokens; the list read before stays in force"
                    ),
                }
            }
        }
        state.jtis.contains(jti)
    }
}

fn signature(path: &Path) -> std::io::Result<Option<Signature>> {
    let metadata = std::fs::metadata(path)?;
    Ok(metadata.modified().ok().map(|at| (at, metadata.len())))
}

fn read(path: &Path) -> std::io::Result<(HashSet<String>, Option<Signature>)> {
    let modified = signature(path)?;
    let text = std::fs::read_to_string(path)?;
    let jtis = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|jti| !jti.is_empty())
        .map(str::to_owned)
        .collect();
    Ok((jtis, modified))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_jtis_and_comments_are_not() {
        let dir = std::env::temp_dir().join(format!("sqlmcp-revoked-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("revoked");
        std::fs::write(
            &file,
            "# revoked by the security team\nabc-1\n  abc-2  # leaked\n\n",
        )
        .unwrap();
        let revoked = Revoked::load(&file).unwrap();
        assert!(revoked.contains("abc-1") && revoked.contains("abc-2"));
        assert!(!revoked.contains("abc-3") && !revoked.contains("# revoked by the security team"));
        assert!(Revoked::load(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
