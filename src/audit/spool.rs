//! Where entries wait while the audit table is unreachable: a directory of
//! JSON-lines segment files, `<sequence>.jsonl`, bounded in bytes.
//!
//! Entries are appended to the newest segment (synced to disk after each
//! batch) and replayed oldest segment first; a segment is deleted only once
//! every entry in it is in the table. A new process never appends to a
//! segment left by an earlier one, whose last line may be torn: it starts
//! its own, and on replay a line that is not whole JSON is skipped and
//! counted as dropped. At the bound, entries that do not fit are dropped.
//! Blocking I/O: the writer calls it on a blocking thread.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A segment is closed once it holds this much, so a replay reads a
/// bounded amount at a time (a single larger entry makes a larger one).
const SEGMENT_BYTES: u64 = 1 << 20;

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes in all segments.
    bytes: u64,
    next_sequence: u64,
    /// The segment appended to, with its size.
    open: Option<(PathBuf, File, u64)>,
}

/// What one append did.
#[derive(Debug, PartialEq, Eq)]
pub struct Appended {
    /// Lines now on disk (the first ones given).
    pub kept: usize,
    /// Why the others are not: the bound, or an I/O error.
    pub failure: Option<String>,
}

impl Spool {
    /// Opens (or makes) the directory and counts what earlier processes
    /// left there; fails unless a file can be written in it.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        private(fs::DirBuilder::new().recursive(true)).create(dir)?;
        let probe = dir.join(".writable");
        File::create(&probe)?.sync_all()?;
        fs::remove_file(&probe)?;
        let mut spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            bytes: 0,
            next_sequence: 0,
            open: None,
        };
        for (sequence, path) in spool.segments()? {
            spool.bytes += fs::metadata(&path)?.len();
            spool.next_sequence = spool.next_sequence.max(sequence + 1);
        }
        Ok(spool)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Whether the spool is at its bound.
    pub fn is_full(&self) -> bool {
        self.bytes >= self.max_bytes
    }

    /// The segments, oldest first.
    fn segments(&self) -> io::Result<Vec<(u64, PathBuf)>> {
        let mut segments = Vec::new();
        for file in fs::read_dir(&self.dir)? {
            let path = file?.path();
            let sequence = path
                .file_name()
                .and_then(|name| name.to_str())
                .and_then(|name| name.strip_suffix(".jsonl"))
                .and_then(|stem| stem.parse::<u64>().ok());
            if let Some(sequence) = sequence {
                segments.push((sequence, path));
            }
        }
        segments.sort();
        Ok(segments)
    }

    /// Appends as many of `lines` as fit under the bound, in order, and
    /// syncs them to disk.
    pub fn append(&mut self, lines: &[String]) -> Appended {
        let mut kept = 0;
        let mut size = 0;
        for line in lines {
            let line_size = line.len() as u64 + 1;
            if self.bytes + size + line_size > self.max_bytes {
                break;
            }
            size += line_size;
            kept += 1;
        }
        let failure = (kept < lines.len()).then(|| {
            format!(
                "the spool is full ({} of {} bytes)",
                self.bytes, self.max_bytes
            )
        });
        if kept == 0 {
            return Appended { kept, failure };
        }
        let mut text = String::with_capacity(size as usize);
        for line in &lines[..kept] {
            text.push_str(line);
            text.push('\n');
        }
        match self.write(text.as_bytes()) {
            Ok(()) => Appended { kept, failure },
            Err(err) => {
                // what reached the file may be torn: never append after it
                if let Some((path, _, written)) = self.open.take() {
                    self.bytes +=
                        fs::metadata(&path).map_or(0, |m| m.len().saturating_sub(written));
                }
                Appended {
                    kept: 0,
                    failure: Some(format!("cannot write to the spool: {err}")),
                }
            }
        }
    }

    fn write(&mut self, text: &[u8]) -> io::Result<()> {
        if self.open.is_none() {
            let path = self.dir.join(format!("{:020}.jsonl", self.next_sequence));
            self.next_sequence += 1;
            let file =
                private_file(OpenOptions::new().create_new(true).append(true)).open(&path)?;
            self.open = Some((path, file, 0));
        }
        let (_, file, written) = self.open.as_mut().expect("opened above");
        file.write_all(text)?;
        file.sync_data()?;
        *written += text.len() as u64;
        self.bytes += text.len() as u64;
        if *written >= SEGMENT_BYTES {
            self.open = None;
        }
        Ok(())
    }

    /// The oldest segment's whole lines, and how many lines were not whole
    /// JSON; `None` when the spool is empty. The segment appended to is
    /// closed first, so the next append starts another.
    pub fn oldest(&mut self) -> io::Result<Option<Segment>> {
        let Some((_, path)) = self.segments()?.into_iter().next() else {
            return Ok(None);
        };
        if self.open.as_ref().is_some_and(|(open, _, _)| *open == path) {
            self.open = None;
        }
        let text = fs::read(&path)?;
        let mut lines = Vec::new();
        let mut torn = 0;
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            match std::str::from_utf8(line)
                .ok()
                .filter(|l| serde_json::from_str::<&serde_json::value::RawValue>(l).is_ok())
            {
                Some(line) => lines.push(line.to_owned()),
                None => torn += 1,
            }
        }
        Ok(Some(Segment {
            path,
            size: text.len() as u64,
            lines,
            torn,
        }))
    }

    /// Deletes a segment whose entries are all in the table.
    pub fn remove(&mut self, segment: &Segment) -> io::Result<()> {
        fs::remove_file(&segment.path)?;
        self.bytes = self.bytes.saturating_sub(segment.size);
        Ok(())
    }
}

/// Entries hold callers' arguments: the spool is its owner's alone.
#[cfg(unix)]
fn private(builder: &mut fs::DirBuilder) -> &mut fs::DirBuilder {
    std::os::unix::fs::DirBuilderExt::mode(builder, 0o700)
}

#[cfg(unix)]
fn private_file(options: &mut OpenOptions) -> &mut OpenOptions {
    std::os::unix::fs::OpenOptionsExt::mode(options, 0o600)
}

#[cfg(not(unix))]
fn private(builder: &mut fs::DirBuilder) -> &mut fs::DirBuilder {
    builder
}

#[cfg(not(unix))]
fn private_file(options: &mut OpenOptions) -> &mut OpenOptions {
    options
}

/// One segment as read for a replay.
pub struct Segment {
    path: PathBuf,
    size: u64,
    pub lines: Vec<String>,
    /// Lines that were not whole JSON (a write cut short).
    pub torn: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sqlmcp-spool-{}", uuid::Uuid::new_v4()));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn lines(range: std::ops::Range<u32>) -> Vec<String> {
        range.map(|n| format!(r#"{{"n":{n}}}"#)).collect()
    }

    #[test]
    fn entries_come_back_in_order_and_leave_when_removed() {
        let dir = scratch();
        let mut spool = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(spool.append(&lines(0..3)).kept, 3);
        assert_eq!(spool.append(&lines(3..5)).kept, 2);
        let segment = spool.oldest().unwrap().unwrap();
        assert_eq!(segment.lines, lines(0..5));
        spool.remove(&segment).unwrap();
        assert_eq!(spool.bytes(), 0);
        assert!(spool.oldest().unwrap().is_none());
        // the segment read was closed: appends go to a new one
        assert_eq!(spool.append(&lines(5..6)).kept, 1);
        assert_eq!(spool.oldest().unwrap().unwrap().lines, lines(5..6));
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn at_the_bound_the_lines_that_do_not_fit_are_refused() {
        let dir = scratch();
        let one = lines(0..1)[0].len() as u64 + 1;
        let mut spool = Spool::open(&dir, 2 * one).unwrap();
        let appended = spool.append(&lines(0..3));
        assert_eq!(appended.kept, 2);
        assert!(appended.failure.unwrap().contains("the spool is full"));
        assert!(spool.is_full());
        assert_eq!(spool.append(&lines(3..4)).kept, 0);
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_new_process_counts_old_segments_and_skips_a_torn_line() {
        let dir = scratch();
        let mut first = Spool::open(&dir, 1 << 20).unwrap();
        first.append(&lines(0..2));
        drop(first);
        // a crash in the middle of a write
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.join(format!("{:020}.jsonl", 0)))
            .unwrap();
        file.write_all(br#"{"n":"#).unwrap();
        let mut second = Spool::open(&dir, 1 << 20).unwrap();
        assert_eq!(
            second.bytes(),
            fs::metadata(dir.join(format!("{:020}.jsonl", 0)))
                .unwrap()
                .len()
        );
        second.append(&lines(2..3));
        let old = second.oldest().unwrap().unwrap();
        assert_eq!((old.lines.clone(), old.torn), (lines(0..2), 1));
        second.remove(&old).unwrap();
        let new = second.oldest().unwrap().unwrap();
        assert_eq!((new.lines.clone(), new.torn), (lines(2..3), 0));
        fs::remove_dir_all(dir).unwrap();
    }
}
