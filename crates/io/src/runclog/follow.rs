//! Incremental reading of a runtime log, one runtime invocation at a time.
//!
//! Every runtime call for a container (create, start, exec, kill, delete...)
//! appends to the same `log.json`. After each call the shim asks a
//! [`RuntimeLogFollower`] for the lines written since the last time and turns
//! them into runtime-log records. The follower keeps only an offset: no file
//! handle and no buffer stay alive between calls.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::{RuncLogError, RuntimeLogLine};

/// Read granularity, and the longest line kept whole: a longer line is
/// emitted in pieces of this size rather than buffered without bound.
const BLOCK: usize = 64 * 1024;

/// Remembers how far a runtime log has been read.
#[derive(Debug, Clone)]
pub struct RuntimeLogFollower {
    path: PathBuf,
    offset: u64,
}

impl RuntimeLogFollower {
    /// Follows `path` from its beginning (the file need not exist yet).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        RuntimeLogFollower {
            path: path.into(),
            offset: 0,
        }
    }

    /// Follows `path` from its current end, e.g. when a restarted shim must not
    /// re-report old lines.
    pub fn from_end(path: impl Into<PathBuf>) -> Result<Self, RuncLogError> {
        let path = path.into();
        let offset = match std::fs::metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(source) => {
                return Err(RuncLogError {
                    op: "stat",
                    path,
                    source,
                })
            }
        };
        Ok(RuntimeLogFollower { path, offset })
    }

    /// The followed file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes consumed so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Complete lines appended since the last call. An unterminated last line
    /// is left for later (the runtime may still be writing it).
    pub fn read_new(&mut self) -> Result<Vec<RuntimeLogLine>, RuncLogError> {
        self.read(false)
    }

    /// Like [`read_new`](Self::read_new), but also takes an unterminated last
    /// line: for when the runtime process has exited and nothing more comes.
    pub fn drain(&mut self) -> Result<Vec<RuntimeLogLine>, RuncLogError> {
        self.read(true)
    }

    fn read(&mut self, take_partial: bool) -> Result<Vec<RuntimeLogLine>, RuncLogError> {
        let path = &self.path;
        let err = |op: &'static str| {
            move |source: io::Error| RuncLogError {
                op,
                path: path.clone(),
                source,
            }
        };
        let mut file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.offset = 0;
                return Ok(Vec::new());
            }
            Err(e) => return Err(err("open")(e)),
        };
        let len = file.metadata().map_err(err("stat"))?.len();
        if len < self.offset {
            // Truncated or replaced: start over.
            self.offset = 0;
        }
        file.seek(SeekFrom::Start(self.offset))
            .map_err(err("seek"))?;

        let mut out = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        let mut eof = false;
        while !eof {
            let old = buf.len();
            buf.resize(old + BLOCK, 0);
            let n = read_retrying(&mut file, &mut buf[old..]).map_err(err("read"))?;
            buf.truncate(old + n);
            eof = n == 0;
            // Hand out every complete line; keep the unterminated rest.
            let mut consumed = 0;
            while let Some(i) = buf[consumed..].iter().position(|b| *b == b'\n') {
                out.extend(RuntimeLogLine::parse(&buf[consumed..consumed + i]));
                consumed += i + 1;
            }
            if consumed == 0 && buf.len() >= BLOCK {
                // An endless line: emit what we have rather than grow.
                out.extend(RuntimeLogLine::parse(&buf));
                consumed = buf.len();
            }
            self.offset += consumed as u64;
            buf.drain(..consumed);
        }
        if take_partial && !buf.is_empty() {
            out.extend(RuntimeLogLine::parse(&buf));
            self.offset += buf.len() as u64;
        }
        Ok(out)
    }
}

fn read_retrying(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runclog::Level;
    use std::fs::{self, OpenOptions};
    use std::io::Write;

    fn append(path: &Path, s: &str) {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(s.as_bytes()).unwrap();
    }

    #[test]
    fn reads_only_new_complete_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mut f = RuntimeLogFollower::new(&path);
        assert!(f.read_new().unwrap().is_empty()); // not created yet
        append(
            &path,
            "{\"level\":\"info\",\"msg\":\"one\"}\n{\"level\":\"error\",\"msg\":\"tw",
        );
        let got = f.read_new().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].msg, "one");
        append(&path, "o\"}\n");
        let got = f.read_new().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].level, got[0].msg.as_str()), (Level::Error, "two"));
        assert!(f.read_new().unwrap().is_empty());
        assert_eq!(f.offset(), fs::metadata(&path).unwrap().len());
    }

    #[test]
    fn drain_takes_the_unterminated_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        append(&path, "{\"level\":\"warning\",\"msg\":\"last\"}");
        let mut f = RuntimeLogFollower::new(&path);
        assert!(f.read_new().unwrap().is_empty());
        let got = f.drain().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].level, Level::Warn);
        assert!(f.drain().unwrap().is_empty());
    }

    #[test]
    fn genuine_runc_log_across_invocations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let fixture = include_str!("../../testdata/runc-log.json");
        let (first, second) = fixture.split_at(fixture.find("nsexec").unwrap());
        let cut = first.rfind('\n').unwrap() + 1;
        let (first, second) = (&fixture[..cut], format!("{}{second}", &first[cut..]));
        let mut f = RuntimeLogFollower::new(&path);
        append(&path, first);
        let a = f.read_new().unwrap();
        append(&path, &second);
        let b = f.read_new().unwrap();
        assert_eq!(a.len() + b.len(), fixture.lines().count());
        // Four failed commands (state, delete, kill, run), one error line each.
        assert_eq!(a.len(), 4);
        assert!(a.iter().all(|l| l.level == Level::Error));
        assert_eq!(a[0].msg, "container does not exist");
        assert_eq!(b.last().unwrap().level, Level::Error);
    }

    #[test]
    fn truncation_restarts_and_from_end_skips_history() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        append(&path, "{\"msg\":\"old 1\"}\n{\"msg\":\"old 2\"}\n");
        let mut tail = RuntimeLogFollower::from_end(&path).unwrap();
        let mut f = RuntimeLogFollower::new(&path);
        assert_eq!(f.read_new().unwrap().len(), 2);
        fs::write(&path, "{\"msg\":\"new\"}\n").unwrap();
        let got = f.read_new().unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].msg, "new");
        // from_end started past 30-odd bytes; the file is now shorter, so it restarts too.
        assert_eq!(tail.read_new().unwrap().len(), 1);
        let mut fresh = RuntimeLogFollower::from_end(dir.path().join("missing")).unwrap();
        assert_eq!(fresh.offset(), 0);
        assert!(fresh.read_new().unwrap().is_empty());
    }

    #[test]
    fn very_long_lines_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let long = "x".repeat(BLOCK * 2 + 10);
        append(&path, &format!("{long}\n{{\"msg\":\"after\"}}\n"));
        let got = RuntimeLogFollower::new(&path).read_new().unwrap();
        let total: usize = got.iter().filter(|l| l.raw).map(|l| l.msg.len()).sum();
        assert_eq!(total, long.len());
        assert_eq!(got.last().unwrap().msg, "after");
    }
}
