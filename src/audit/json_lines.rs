//! The audit log as JSON lines, for log shippers: to stderr (beside the
//! server's own log lines, told apart by `"log":"audit"`) or appended to a
//! file. Each batch is one write, so lines never interleave with other
//! writers' lines. Blocking I/O: the writer calls it on a blocking thread.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};

use anyhow::{Context, Result};

use super::LogTarget;

pub enum JsonLines {
    Stderr,
    File(File),
}

impl JsonLines {
    pub fn open(target: &LogTarget) -> Result<JsonLines> {
        Ok(match target {
            LogTarget::Stderr => JsonLines::Stderr,
            LogTarget::File(path) => JsonLines::File(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open --audit-log {}", path.display()))?,
            ),
        })
    }

    pub fn write(&mut self, lines: &[String]) -> io::Result<()> {
        let mut text = String::with_capacity(lines.iter().map(|l| l.len() + 1).sum());
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        match self {
            JsonLines::Stderr => io::stderr().lock().write_all(text.as_bytes()),
            JsonLines::File(file) => file.write_all(text.as_bytes()),
        }
    }
}
