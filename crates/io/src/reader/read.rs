//! Reading a json-file log once: all of it, a time window, or the last N lines.
//!
//! - `--tail N` walks the files newest first, each plain file backwards in blocks
//!   ([`super::backward`]); a `.gz` is decompressed only when the lines still wanted reach it.
//! - `--since`/`--until` skip whole files by the time of their first entry (a file ends before
//!   the next one begins), and in a plain file `--since` finds its start by binary search.
//! - A corrupt entry is skipped with a warning; a `.gz` cut short is read up to the cut, with a
//!   warning, and reading goes on with the next file.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::time::SystemTime;

use super::backward::{Back, BackLines};
use super::entry::{decode_time, Entry};
use super::files::{FileLog, LogFile};
use super::format::Format;
use super::partial::Joiner;
use super::records::{PRead, Rec, Records};
use crate::stream::Stream;

/// Where lines go: stdout/stderr of `scribe logs`, a test's vector.
pub trait Sink {
    /// One whole line (pieces joined). An error (a closed pipe) stops reading.
    fn line(&mut self, e: &Entry) -> io::Result<()>;
    /// A skipped entry, a file cut short: said on stderr, reading goes on.
    fn warn(&mut self, msg: &str);
    /// Called by a follower when it has caught up (before it waits): buffered lines go out.
    fn flush(&mut self) {}
}

/// What to read.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// Entries at or after this time.
    pub since: Option<SystemTime>,
    /// Entries at or before this time.
    pub until: Option<SystemTime>,
    /// Only the last N lines (after the other filters).
    pub tail: Option<usize>,
    /// Only this stream.
    pub stream: Option<Stream>,
    /// Entries as stored, pieces of long lines not joined, and `tail` counting entries: what
    /// dockerd's own readers give (`scribe plugin`'s ReadLogs answers dockerd with it).
    pub pieces: bool,
}

impl Query {
    fn wants(&self, e: &Entry) -> bool {
        self.stream.is_none_or(|s| s == e.stream)
            && self.since.is_none_or(|t| e.time >= t)
            && self.until.is_none_or(|t| e.time <= t)
    }
}

/// Where a follower goes on: the live file as opened by the read, and how far it was read
/// (the end of its last whole entry).
pub struct Position {
    /// The live file and the offset read up to; `None` when there was no live file.
    pub live: Option<(File, u64)>,
}

/// Outcome of reading one file forward.
enum Flow {
    /// Read to the end; the offset after the last whole entry.
    Next(u64),
    /// `--until` passed or the sink is closed.
    Stop,
}

/// Reads `log` as `q` says into `sink`, then tells where a follower goes on.
pub fn read(log: &FileLog, q: &Query, sink: &mut dyn Sink) -> Result<Position, String> {
    let mut files = log.files()?;
    let live = match files.last() {
        Some(f) if !f.gz && log.path().file_name() == Some(&f.name) => {
            let size = f
                .file
                .metadata()
                .map_err(|e| format!("{}: {e}", f.path(log).display()))?
                .len();
            Some(size)
        }
        _ => None,
    };
    let live_index = live.map(|_| files.len() - 1);
    // Whole files outside the window.
    let (lo, hi) = window(log, &files, q, sink);
    let mut end_of_live = live.unwrap_or(0);
    if q.tail == Some(0) {
        // Nothing printed; follow from the end of the last whole entry.
        if let (Some(i), Some(size)) = (live_index, live) {
            end_of_live =
                whole_end(log.format(), &files[i].file, size).map_err(|e| e.to_string())?;
        }
    } else if let Some(n) = q.tail {
        let live_pos = tail(
            log,
            &files[lo..hi],
            live_index.map(|i| (i - lo, live.unwrap_or(0))),
            n,
            q,
            sink,
        )?;
        if let Some(p) = live_pos {
            end_of_live = p;
        } else if let (Some(i), Some(size)) = (live_index, live) {
            end_of_live =
                whole_end(log.format(), &files[i].file, size).map_err(|e| e.to_string())?;
        }
    } else {
        let mut joiner = Joiner::new(q.pieces);
        let mut stopped = false;
        for (i, f) in files.iter().enumerate().take(hi).skip(lo) {
            let limit = (Some(i) == live_index).then(|| live.unwrap_or(0));
            let start = match q.since {
                Some(t) if i == lo && !f.gz && log.format() == Format::JsonFile => {
                    let size =
                        limit.unwrap_or_else(|| f.file.metadata().map(|m| m.len()).unwrap_or(0));
                    seek_since(&f.file, size, t)
                }
                _ => 0,
            };
            match forward(log, f, start, limit, q, &mut joiner, sink)? {
                Flow::Next(end) => {
                    if limit.is_some() {
                        end_of_live = end;
                    }
                }
                Flow::Stop => {
                    stopped = true;
                    break;
                }
            }
        }
        if !stopped {
            for e in joiner.finish() {
                if sink.line(&e).is_err() {
                    break;
                }
            }
        }
        if let (Some(i), Some(size)) = (live_index, live) {
            if i >= hi {
                end_of_live =
                    whole_end(log.format(), &files[i].file, size).map_err(|e| e.to_string())?;
            }
        }
    }
    let live = live_index.map(|i| (files.swap_remove(i).file, end_of_live));
    Ok(Position { live })
}

/// The offset after the last whole record in `file[..size]` (json-file: the last `\n`; a local
/// file is written a whole record at a time).
fn whole_end(format: Format, file: &File, size: u64) -> io::Result<u64> {
    if format == Format::Local {
        return Ok(size);
    }
    let mut b = BackLines::new(file, size);
    match b.next_line()? {
        Some(l) if !l.complete => Ok(l.offset),
        _ => Ok(size),
    }
}

/// The range of files that can hold entries in `[since, until]`, by their first entries' times.
fn window(log: &FileLog, files: &[LogFile], q: &Query, sink: &mut dyn Sink) -> (usize, usize) {
    if q.since.is_none() && q.until.is_none() {
        return (0, files.len());
    }
    let mut first = |f: &LogFile| -> Option<SystemTime> {
        match f.first_record(log.format()) {
            Ok(Some(l)) => log.format().time(&l),
            Ok(None) => None,
            Err(e) => {
                sink.warn(&format!("{}: {e}", f.path(log).display()));
                None
            }
        }
    };
    let mut lo = 0;
    if let Some(since) = q.since {
        for i in (0..files.len()).rev() {
            if first(&files[i]).is_some_and(|t| t <= since) {
                lo = i;
                break;
            }
        }
    }
    let mut hi = files.len();
    if let Some(until) = q.until {
        for (i, f) in files.iter().enumerate().skip(lo) {
            if first(f).is_some_and(|t| t > until) {
                hi = i;
                break;
            }
        }
    }
    (lo, hi.max(lo))
}

/// The offset of a line start at or before the first entry at or after `since` in a plain
/// file, by binary search on the times of the lines (entries are in time order).
fn seek_since(file: &File, size: u64, since: SystemTime) -> u64 {
    let (mut lo, mut hi) = (0u64, size);
    let mut buf = vec![0u8; 8192];
    while hi - lo > 64 * 1024 {
        let mid = lo + (hi - lo) / 2;
        let n = match file.read_at(&mut buf, mid) {
            Ok(n) => n,
            Err(_) => return lo,
        };
        let Some(nl) = memchr::memchr(b'\n', &buf[..n]) else {
            return lo;
        };
        let start = mid + nl as u64 + 1;
        let line = &buf[nl + 1..n];
        let line = match memchr::memchr(b'\n', line) {
            Some(e) => &line[..e],
            None => return lo,
        };
        match decode_time(line) {
            Some(t) if t < since => lo = start,
            Some(_) => hi = mid,
            None => return lo,
        }
    }
    lo
}

/// Reads one file from `start` (up to `limit` for the live file) through `joiner` into `sink`.
fn forward(
    log: &FileLog,
    f: &LogFile,
    start: u64,
    limit: Option<u64>,
    q: &Query,
    joiner: &mut Joiner,
    sink: &mut dyn Sink,
) -> Result<Flow, String> {
    let path = f.path(log);
    let fmt = log.format();
    let r: Box<dyn Read> = if f.gz {
        f.reader().map_err(|e| format!("{}: {e}", path.display()))?
    } else {
        Box::new(PRead {
            file: &f.file,
            offset: start,
            end: limit,
        })
    };
    let mut recs = Records::new(r, fmt);
    let mut offset = start;
    let mut n = 0u64;
    loop {
        let rec = match recs.next_record() {
            Ok(Some(rec)) => rec,
            Ok(None) => return Ok(Flow::Next(offset)),
            Err(e) => {
                sink.warn(&format!(
                    "{}: {} after {n} entries; going on with the next file",
                    path.display(),
                    read_error(f, &e)
                ));
                return Ok(Flow::Next(offset));
            }
        };
        n += 1;
        let len = match rec {
            Rec::Body(len) => len,
            Rec::Truncated(_) if limit.is_some() => {
                // A write in progress at the end of the live file: the follower reads it.
                return Ok(Flow::Next(offset));
            }
            Rec::Truncated(len) => {
                sink.warn(&format!(
                    "{}: the last entry is cut short ({len} bytes); skipped",
                    path.display()
                ));
                return Ok(Flow::Next(offset + len as u64));
            }
            Rec::Bad(m) => {
                sink.warn(&format!(
                    "{}: {m} (entry {n}); the rest of the file cannot be read",
                    path.display()
                ));
                return Ok(Flow::Next(offset));
            }
        };
        offset += len as u64;
        let e = match fmt.decode(recs.body()) {
            Ok(e) => e,
            Err(err) => {
                sink.warn(&format!(
                    "{}: skipping a corrupt entry (entry {n}): {err}",
                    path.display()
                ));
                continue;
            }
        };
        if q.until.is_some_and(|t| e.time > t) {
            return Ok(Flow::Stop);
        }
        if !q.wants(&e) {
            continue;
        }
        if let Some(l) = joiner.push(e) {
            if sink.line(&l).is_err() {
                return Ok(Flow::Stop);
            }
        }
    }
}

/// Every entry of a file that `q` wants (pieces not joined), oldest first: a `.gz` is read
/// whole when the tail reaches it.
fn whole_file(
    log: &FileLog,
    f: &LogFile,
    q: &Query,
    sink: &mut dyn Sink,
) -> Result<Vec<Entry>, String> {
    let path = f.path(log);
    let fmt = log.format();
    let r = f.reader().map_err(|e| format!("{}: {e}", path.display()))?;
    let mut recs = Records::new(r, fmt);
    let mut v = Vec::new();
    let mut n = 0u64;
    loop {
        match recs.next_record() {
            Ok(None) => break,
            Ok(Some(Rec::Body(_))) => {}
            Ok(Some(Rec::Truncated(len))) => {
                sink.warn(&format!(
                    "{}: the last entry is cut short ({len} bytes); skipped",
                    path.display()
                ));
                break;
            }
            Ok(Some(Rec::Bad(m))) => {
                sink.warn(&format!(
                    "{}: {m} (entry {}); the rest of the file cannot be read",
                    path.display(),
                    n + 1
                ));
                break;
            }
            Err(e) => {
                sink.warn(&format!(
                    "{}: {} after {n} entries",
                    path.display(),
                    read_error(f, &e)
                ));
                break;
            }
        }
        n += 1;
        match fmt.decode(recs.body()) {
            Ok(e) if q.wants(&e) => v.push(e),
            Ok(_) => {}
            Err(err) => sink.warn(&format!(
                "{}: skipping a corrupt entry (entry {n}): {err}",
                path.display()
            )),
        }
    }
    Ok(v)
}

/// A read error in words: a `.gz` ending early is the common case.
fn read_error(f: &LogFile, e: &io::Error) -> String {
    if f.gz && e.kind() == io::ErrorKind::UnexpectedEof {
        "the gzip data is cut short (the file is truncated)".to_string()
    } else {
        e.to_string()
    }
}

/// Backwards over `files` (live: its index and size) until `n` whole lines are collected;
/// prints them and returns the offset the live file was read to.
fn tail(
    log: &FileLog,
    files: &[LogFile],
    live: Option<(usize, u64)>,
    n: usize,
    q: &Query,
    sink: &mut dyn Sink,
) -> Result<Option<u64>, String> {
    let mut got: Vec<Entry> = Vec::new();
    let mut open = [false; 2];
    let mut completed = 0usize;
    let mut live_pos = None;
    // Returns false when enough is collected.
    let mut take = |e: Entry, got: &mut Vec<Entry>| -> bool {
        if q.pieces {
            if got.len() >= n {
                return false;
            }
            got.push(e);
            return true;
        }
        let s = (e.stream == Stream::Stderr) as usize;
        if !e.is_partial() && open[s] {
            completed += 1;
            open[s] = false;
        }
        if completed >= n && !open[0] && !open[1] {
            return false;
        }
        open[s] = true;
        got.push(e);
        true
    };
    'files: for (i, f) in files.iter().enumerate().rev() {
        let path = f.path(log);
        if f.gz {
            for e in whole_file(log, f, q, sink)?.into_iter().rev() {
                if q.since.is_some_and(|t| e.time < t) {
                    break 'files;
                }
                if !take(e, &mut got) {
                    break 'files;
                }
            }
            continue;
        }
        let size = match live {
            Some((li, size)) if li == i => size,
            _ => f
                .file
                .metadata()
                .map_err(|e| format!("{}: {e}", path.display()))?
                .len(),
        };
        let mut back = Back::new(log.format(), &f.file, size);
        let is_live = live.is_some_and(|(li, _)| li == i);
        if is_live {
            live_pos = Some(size);
        }
        loop {
            let l = match back.next_line() {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(e) => {
                    sink.warn(&format!(
                        "{}: {e}; going on with the previous file",
                        path.display()
                    ));
                    break;
                }
            };
            if !l.complete {
                if is_live {
                    live_pos = Some(l.offset);
                } else {
                    sink.warn(&format!(
                        "{}: the last entry is cut short ({} bytes without newline); skipped",
                        path.display(),
                        l.bytes.len()
                    ));
                }
                continue;
            }
            let e = match log.format().decode(&l.bytes) {
                Ok(e) => e,
                Err(err) => {
                    sink.warn(&format!(
                        "{}: skipping a corrupt entry at offset {}: {err}",
                        path.display(),
                        l.offset
                    ));
                    continue;
                }
            };
            if q.since.is_some_and(|t| e.time < t) {
                break 'files;
            }
            if !q.wants(&e) {
                continue;
            }
            if !take(e, &mut got) {
                break 'files;
            }
        }
    }
    got.reverse();
    let mut joiner = Joiner::new(q.pieces);
    let mut lines: Vec<Entry> = got.into_iter().filter_map(|e| joiner.push(e)).collect();
    lines.extend(joiner.finish());
    let skip = lines.len().saturating_sub(n);
    for l in &lines[skip..] {
        if sink.line(l).is_err() {
            break;
        }
    }
    Ok(live_pos)
}
