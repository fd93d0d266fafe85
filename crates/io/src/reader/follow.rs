//! Following a json-file log across rotations: read the live file as it grows; when `<base>`
//! is another file, finish the old one (its fd stays readable, renamed, gzipped or removed),
//! then read every file that came after it and take the new `<base>` as the live file. Which
//! files came after is decided by the first line of each (it holds the entry's nanosecond time
//! and its text, and survives gzip, which changes a file's inode): walking the files newest
//! first, everything before the old file's first line is new. No line twice, none missing,
//! unless the reader falls so far behind that a file it never saw was already removed (said
//! on stderr).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::Duration;

use super::entry::decode;
use super::files::JsonFileLog;
use super::partial::Joiner;
use super::read::{Position, Query, Sink};

/// Poll interval while nothing is written.
const IDLE: Duration = Duration::from_millis(50);
/// How long a moved file is given for a write in progress to land (the writer may still be
/// appending to it when the next file appears).
const SETTLE: Duration = Duration::from_millis(50);

struct Live {
    file: File,
    ino: u64,
    offset: u64,
    /// Bytes of an entry whose end is not written yet.
    carry: Vec<u8>,
}

impl Live {
    fn new(file: File, offset: u64) -> io::Result<Live> {
        let ino = file.metadata()?.ino();
        Ok(Live {
            file,
            ino,
            offset,
            carry: Vec::new(),
        })
    }
}

/// Why following ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `stop` said so (the container was deleted).
    Stopped,
    /// An entry after `--until`, or the sink closed.
    Done,
}

struct State<'a> {
    log: &'a JsonFileLog,
    q: &'a Query,
    sink: &'a mut dyn Sink,
    joiner: Joiner,
    done: bool,
}

impl State<'_> {
    /// Handles whole entries in `bytes`; returns how many bytes were consumed.
    fn entries(&mut self, bytes: &[u8], what: &dyn Fn() -> String) -> usize {
        let mut used = 0;
        while let Some(nl) = memchr::memchr(b'\n', &bytes[used..]) {
            let raw = &bytes[used..used + nl];
            used += nl + 1;
            if self.done {
                continue;
            }
            match decode(raw) {
                Ok(e) => {
                    if self.q.until.is_some_and(|t| e.time > t) {
                        self.done = true;
                        continue;
                    }
                    if !self.q.stream.is_none_or(|s| s == e.stream)
                        || self.q.since.is_some_and(|t| e.time < t)
                    {
                        continue;
                    }
                    if let Some(l) = self.joiner.push(e) {
                        if self.sink.line(&l).is_err() {
                            self.done = true;
                        }
                    }
                }
                Err(err) => self
                    .sink
                    .warn(&format!("{}: skipping a corrupt entry: {err}", what())),
            }
        }
        used
    }

    /// Reads `live` from its offset to the end; returns the bytes read.
    fn drain(&mut self, live: &mut Live) -> Result<u64, String> {
        let mut total = 0;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = live
                .file
                .read_at(&mut buf, live.offset)
                .map_err(|e| format!("{}: {e}", self.log.path().display()))?;
            if n == 0 {
                return Ok(total);
            }
            live.offset += n as u64;
            total += n as u64;
            let path = self.log.path();
            let what = || path.display().to_string();
            if live.carry.is_empty() {
                let used = self.entries(&buf[..n], &what);
                live.carry.extend_from_slice(&buf[used..n]);
            } else {
                let mut joined = std::mem::take(&mut live.carry);
                joined.extend_from_slice(&buf[..n]);
                let used = self.entries(&joined, &what);
                joined.drain(..used);
                live.carry = joined;
            }
        }
    }

    /// Reads a whole file that came between the followed one and the new live file.
    fn whole(&mut self, f: &super::files::LogFile) {
        let path = f.path(self.log);
        let mut r = match f.reader() {
            Ok(r) => r,
            Err(e) => {
                self.sink.warn(&format!("{}: {e}", path.display()));
                return;
            }
        };
        let mut data = Vec::new();
        if let Err(e) = io::Read::read_to_end(&mut r, &mut data) {
            self.sink.warn(&format!(
                "{}: {} (read what came before)",
                path.display(),
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    "the gzip data is cut short".to_string()
                } else {
                    e.to_string()
                }
            ));
        }
        let what = || path.display().to_string();
        let used = self.entries(&data, &what);
        if used < data.len() {
            self.sink.warn(&format!(
                "{}: the last entry is cut short ({} bytes without newline); skipped",
                path.display(),
                data.len() - used
            ));
        }
    }
}

/// The first line of an open file (by `pread`, the offset of others untouched).
fn first_line(f: &File) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    loop {
        let n = f.read_at(&mut buf, off)?;
        if n == 0 {
            return Ok((!out.is_empty()).then_some(out));
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            out.extend_from_slice(&buf[..i]);
            return Ok(Some(out));
        }
        out.extend_from_slice(&buf[..n]);
        off += n as u64;
        if out.len() > 1 << 20 {
            return Ok(Some(out));
        }
    }
}

/// Follows `log` from `pos` (the end of a [`super::read`]) until `stop` says so (checked while
/// nothing is written) or `q.until` is passed.
pub fn follow(
    log: &JsonFileLog,
    pos: Position,
    q: &Query,
    sink: &mut dyn Sink,
    stop: &mut dyn FnMut() -> bool,
) -> Result<Ended, String> {
    let mut st = State {
        log,
        q,
        sink,
        joiner: Joiner::default(),
        done: false,
    };
    let err = |e: io::Error| format!("{}: {e}", log.path().display());
    let mut live = match pos.live {
        Some((f, off)) => Some(Live::new(f, off).map_err(err)?),
        None => None,
    };
    let mut stopping = false;
    loop {
        if live.is_none() {
            if let Some(f) = log.open_live().map_err(err)? {
                live = Some(Live::new(f, 0).map_err(err)?);
            }
        }
        let mut grew = 0;
        if let Some(l) = live.as_mut() {
            grew = st.drain(l)?;
        }
        if st.done {
            return Ok(Ended::Done);
        }
        if grew > 0 {
            continue;
        }
        if let Some(l) = live.as_mut() {
            if let Some(next) = log.open_live().map_err(err)? {
                if next.metadata().map_err(err)?.ino() != l.ino {
                    std::thread::sleep(SETTLE);
                    st.drain(l)?;
                    if !l.carry.is_empty() {
                        st.sink.warn(&format!(
                            "{}: a rotated file ends in an entry cut short ({} bytes); skipped",
                            log.path().display(),
                            l.carry.len()
                        ));
                    }
                    let fp = first_line(&l.file).map_err(err)?;
                    live = catch_up(&mut st, fp)?;
                    continue;
                }
            }
        }
        if stopping {
            for e in st.joiner.finish() {
                if st.sink.line(&e).is_err() {
                    break;
                }
            }
            return Ok(Ended::Stopped);
        }
        if stop() {
            // One more pass: what was written before the delete.
            stopping = true;
            continue;
        }
        std::thread::sleep(IDLE);
    }
}

/// After a rotation: reads the files newer than the one whose first line is `fp`, and returns
/// the new live file.
fn catch_up(st: &mut State<'_>, fp: Option<Vec<u8>>) -> Result<Option<Live>, String> {
    let files = st.log.files()?;
    let base = st.log.path();
    let mut newer = Vec::new();
    let mut found = false;
    for f in files.into_iter().rev() {
        let first = f.first_line().unwrap_or(None);
        if first.is_some() && first == fp {
            found = true;
            break;
        }
        newer.push(f);
    }
    if !found {
        st.sink.warn(&format!(
            "{}: the log rotated faster than it was read: the files between were removed, their lines are lost",
            base.display()
        ));
    }
    let mut live = None;
    for f in newer.into_iter().rev() {
        if !f.gz && base.file_name() == Some(&f.name) {
            live = Some(Live::new(f.file, 0).map_err(|e| format!("{}: {e}", base.display()))?);
        } else {
            st.whole(&f);
        }
    }
    Ok(live)
}
