//! Following a log (json-file or `local`) across rotations: read the live file as it grows;
//! when `<base>` is another file, read the old one to its end (its fd stays readable, renamed,
//! gzipped or removed), then read every file that came after it and take the new `<base>` as
//! the live file. Which files came after is decided by the first record of each (it holds the
//! entry's nanosecond time and its text, and survives gzip, which changes a file's inode):
//! walking the files newest first, everything before the old file's first record is new.
//!
//! The writer may still finish a write into a file it moved aside until its rotation thread
//! names it (`<base>.rotating.<seq>` -> `.1`): such files are read on, before the live file,
//! until they are named. No line twice, none missing, unless the reader falls so far behind
//! that a file it never saw was already removed (said on stderr).

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::Duration;

use super::files::FileLog;
use super::format::Split;
use super::partial::Joiner;
use super::read::{Position, Query, Sink};
use super::records::{PRead, Rec, Records};

/// Poll interval while nothing is written.
const IDLE: Duration = Duration::from_millis(50);

struct Live {
    file: File,
    ino: u64,
    offset: u64,
    /// Bytes of an entry whose end is not written yet.
    carry: Vec<u8>,
    /// A `local` record did not add up: the rest of this file is skipped.
    broken: bool,
}

impl Live {
    fn new(file: File, offset: u64) -> io::Result<Live> {
        let ino = file.metadata()?.ino();
        Ok(Live {
            file,
            ino,
            offset,
            carry: Vec::new(),
            broken: false,
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
    log: &'a FileLog,
    q: &'a Query,
    sink: &'a mut dyn Sink,
    joiner: Joiner,
    done: bool,
    /// Moved files still named `<base>.rotating.<seq>`: the writer may finish a write into
    /// them, so they are read on until the rotation thread names them.
    draining: Vec<Live>,
}

impl State<'_> {
    /// Reads what the moved files still being written got since.
    fn drain_moved(&mut self) -> Result<(), String> {
        let mut moved = std::mem::take(&mut self.draining);
        let r = moved.iter_mut().try_for_each(|d| self.drain(d).map(|_| ()));
        self.draining = moved;
        r
    }

    /// Reads what the moved files got since; drops those the rotation thread named (after a
    /// last read), or all of them when `all` (following ends).
    fn settle(&mut self, all: bool) -> Result<(), String> {
        let mut keep = Vec::new();
        for mut d in std::mem::take(&mut self.draining) {
            self.drain(&mut d)?;
            if !all && self.log.is_pending(d.ino) {
                keep.push(d);
                continue;
            }
            // Named now: whatever the last write added is there.
            self.drain(&mut d)?;
            if !d.carry.is_empty() {
                self.sink.warn(&format!(
                    "{}: a rotated file ends in an entry cut short ({} bytes); skipped",
                    self.log.path().display(),
                    d.carry.len()
                ));
            }
        }
        self.draining = keep;
        Ok(())
    }

    /// Handles whole entries in `bytes`; returns how many bytes were consumed, and whether a
    /// `local` record that does not add up was met (nothing after it can be found again).
    fn entries(&mut self, bytes: &[u8], what: &dyn Fn() -> String) -> (usize, bool) {
        let fmt = self.log.format();
        let mut used = 0;
        loop {
            let (body, len) = match fmt.split(&bytes[used..]) {
                Split::Record { body, len } => (body, len),
                Split::More => return (used, false),
                Split::Bad(m) => {
                    self.sink.warn(&format!(
                        "{}: {m}; the rest of this file cannot be read",
                        what()
                    ));
                    return (bytes.len(), true);
                }
            };
            let raw = &bytes[used + body.start..used + body.end];
            used += len;
            if self.done {
                continue;
            }
            match fmt.decode(raw) {
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
            if live.broken {
                continue;
            }
            if live.carry.is_empty() {
                let (used, bad) = self.entries(&buf[..n], &what);
                live.broken = bad;
                live.carry.extend_from_slice(&buf[used..n]);
            } else {
                let mut joined = std::mem::take(&mut live.carry);
                joined.extend_from_slice(&buf[..n]);
                let (used, bad) = self.entries(&joined, &what);
                live.broken = bad;
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
        let (used, _) = self.entries(&data, &what);
        if used < data.len() {
            self.sink.warn(&format!(
                "{}: the last entry is cut short ({} bytes without newline); skipped",
                path.display(),
                data.len() - used
            ));
        }
    }
}

/// The body of the first record of an open file (by `pread`, the offset of others untouched).
fn first_record(f: &File, fmt: super::format::Format) -> io::Result<Option<Vec<u8>>> {
    let r = PRead {
        file: f,
        offset: 0,
        end: Some(17 << 20),
    };
    let mut recs = Records::new(r, fmt);
    Ok(match recs.next_record()? {
        Some(Rec::Body(_)) => Some(recs.body().to_vec()),
        _ => None,
    })
}

/// Follows `log` from `pos` (the end of a [`super::read`]) until `stop` says so (checked while
/// nothing is written) or `q.until` is passed.
pub fn follow(
    log: &FileLog,
    pos: Position,
    q: &Query,
    sink: &mut dyn Sink,
    stop: &mut dyn FnMut() -> bool,
) -> Result<Ended, String> {
    let mut st = State {
        log,
        q,
        sink,
        joiner: Joiner::new(q.pieces),
        done: false,
        draining: Vec::new(),
    };
    let err = |e: io::Error| format!("{}: {e}", log.path().display());
    let mut live = match pos.live {
        Some((f, off)) => Some(Live::new(f, off).map_err(err)?),
        None => None,
    };
    let mut stopping = false;
    // The first record of the last file read to its end: while there is no live file (between
    // a rotation's rename and its create), what comes next is found from it, never by opening
    // whatever the live name holds later (it may be a file further on).
    let mut last_fp: Option<Vec<u8>> = None;
    loop {
        if live.is_none() {
            match &last_fp {
                Some(fp) => live = catch_up(&mut st, Some(fp.clone()), &mut last_fp)?,
                None => {
                    if let Some(f) = log.open_live().map_err(err)? {
                        live = Some(Live::new(f, 0).map_err(err)?);
                    }
                }
            }
        }
        // Moved files first: what the writer added to them came before anything in the live file.
        st.drain_moved()?;
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
        st.settle(false)?;
        st.sink.flush();
        if let Some(l) = live.as_mut() {
            if let Some(next) = log.open_live().map_err(err)? {
                if next.metadata().map_err(err)?.ino() != l.ino {
                    st.drain(l)?;
                    let fp = first_record(&l.file, log.format()).map_err(err)?;
                    if let Some(old) = live.take() {
                        // The writer may still finish a write into the moved file until the
                        // rotation thread names it: it is read on until then.
                        st.draining.push(old);
                    }
                    last_fp = fp.clone();
                    live = catch_up(&mut st, fp, &mut last_fp)?;
                    continue;
                }
            }
        }
        if stopping {
            st.settle(true)?;
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

/// After a rotation: reads the files newer than the one whose first record is `fp`, and returns
/// the new live file (`None` when the live name is not there yet; `last_fp` then names the
/// newest file read).
fn catch_up(
    st: &mut State<'_>,
    fp: Option<Vec<u8>>,
    last_fp: &mut Option<Vec<u8>>,
) -> Result<Option<Live>, String> {
    // What the moved files got comes before anything newer.
    st.drain_moved()?;
    let (files, settled) = st.log.files_settled()?;
    if !settled {
        st.sink.warn(&format!(
            "{}: the files kept rotating while they were listed; a file may have been missed",
            st.log.path().display()
        ));
    }
    let base = st.log.path();
    let mut newer = Vec::new();
    let mut found = false;
    for f in files.into_iter().rev() {
        let first = f.first_record(st.log.format()).unwrap_or(None);
        if first.is_some() && first == fp {
            found = true;
            break;
        }
        newer.push((f, first));
    }
    if !found {
        st.sink.warn(&format!(
            "{}: the log rotated faster than it was read: the files between were removed, their lines are lost",
            base.display()
        ));
    }
    let mut live = None;
    for (f, first) in newer.into_iter().rev() {
        if !f.gz && base.file_name() == Some(&f.name) {
            live = Some(Live::new(f.file, 0).map_err(|e| format!("{}: {e}", base.display()))?);
        } else {
            // A moved file not yet named may still get the end of a write: read as far as it
            // goes and read on until it is named.
            let pending = !f.gz && f.file.metadata().is_ok_and(|m| st.log.is_pending(m.ino()));
            if pending {
                let mut d = Live::new(f.file, 0).map_err(|e| format!("{}: {e}", base.display()))?;
                st.drain(&mut d)?;
                st.draining.push(d);
            } else {
                st.whole(&f);
            }
            if first.is_some() {
                *last_fp = first;
            }
        }
    }
    Ok(live)
}
