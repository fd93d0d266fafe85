//! Docker's `json-file` log format, written by the shim.
//!
//! One entry per framed message (see [`crate::framing`]):
//! `{"log":"...","stream":"stdout","time":"2024-03-21T10:00:00.123456789Z"}`,
//! byte-compatible with Docker's writer so existing readers and shippers work.
//! The writer rotates by size, keeps `max-file` files, gzips rotated ones and
//! adds `"attrs":{"tag":...}` when a tag is configured.
//!
//! The same writer writes Docker's `local` records instead ([`Format::Local`],
//! [`JsonFileWriter::open_local_under`]): everything below holds for both formats
//! (see [`Format`] for the few steps that differ).
//!
//! Failure policy: a container must never block or crash because its log disk
//! is full or unwritable. Entries go out in one `write(2)` per batch
//! ([`JsonFileWriter::write_many`]); an entry is either written whole or
//! dropped and counted (in [`JsonFileStats`]), and the call returns an error.
//! When the disk fills up in the middle of a batch, the entries that made it
//! whole stay and the fragment after them is truncated away. The next call retries from scratch (re-opening the file),
//! so logging resumes by itself once space is back, and the first success
//! reports how much was lost in between.
//!
//! Modes: directories 0755 (what containerd uses for `file://`), log files
//! 0640 (Docker's json-file mode: container output may hold secrets, so not
//! world-readable), both subject to the process umask.
//!
//! Links: the log directory is reached from the trusted root one component at a time without
//! following links, and every file in it is opened through that directory's fd with
//! `O_NOFOLLOW` (see `scribe_safefs`): a link planted in the log directory is refused, never
//! followed.
//!
//! Rotation does no file-system work on the caller's thread: a thread of its own (at most one
//! per writer at a time, so at most one per container, at nice 10) moves the live file aside
//! (`<name>.rotating.<seq>`), opens the next one and hands it over, then ages the older files
//! (listing the directory once: cost in proportion to the files present), names the moved ones
//! `.1`, `.2`, ... and gzips them. The caller only swaps file descriptors. Through
//! [`JsonFileWriter::write_some`] (the relay's way) the writer stops before an entry that needs
//! the next file until the thread handed it over, so no file grows past `max-size`: the
//! container's output waits in its pipe, as with Docker's synchronous rotation, and the shim's
//! thread never waits. [`JsonFileWriter::write_many`] never stops: until the next file is there,
//! its entries go on into the current one.
//!
//! Why so strict: with the service thread doing even one `renameat` and one `openat(O_CREAT)`
//! per rotation in a directory whose other 1000 files a thread renames, the neighbours' output
//! waited up to 250 ms (the directory lock and the journal are shared).

mod entry;
mod escape;
mod format;
mod options;
mod report;
mod rotate;
mod tag;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::SystemTime;

use scribe_safefs::{SafeDir, SafeFsError};

pub use format::{Format, Piece};
pub use options::{parse_size, JsonFileOptions, OptionError, MAX_FILE_LIMIT, OPTION_KEYS};
pub use report::{DropTracker, JsonFileReport, SETTLE};
pub use tag::{TagError, TagInfo, TagTemplate, MAX_TAG_LEN};

use crate::stream::Stream;
use rotate::{FinishError, FsError};

/// Mode of created log files (Docker's json-file mode).
pub(crate) const FILE_MODE: u32 = 0o640;
/// Mode of created parent directories.
const DIR_MODE: u32 = 0o755;
/// The entry buffer is given back when a huge entry grew it past this.
const KEEP_BUF: usize = 32 * 1024;

/// Running totals of one writer, for metrics and runtime-log records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonFileStats {
    /// Bytes of JSON written to disk.
    pub bytes_written: u64,
    /// Entries written.
    pub entries_written: u64,
    /// Entries lost to write errors.
    pub entries_dropped: u64,
    /// Container output bytes (the `log` payload, before JSON escaping) lost.
    pub bytes_dropped: u64,
    /// Rotations performed.
    pub rotations: u64,
}

/// What a run of failed writes lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Entries dropped.
    pub entries: u64,
    /// Container output bytes dropped.
    pub bytes: u64,
}

/// Result of a successful [`JsonFileWriter::write`]: the entry is on disk.
#[derive(Debug, Default)]
pub struct Written {
    /// Set on the first success after failed writes: what those writes lost.
    pub resumed_after: Option<DropCounts>,
    /// Rotation or compression went wrong; the entry itself was written (the
    /// live file may grow past `max-size` until rotation works again).
    pub warning: Option<JsonFileError>,
}

/// The file-system step a json-file error happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Creating the log directory.
    CreateDir,
    /// Opening (creating) the live log file.
    Open,
    /// Writing an entry.
    Write,
    /// Renaming or removing files to rotate.
    Rotate,
    /// Gzipping a rotated file.
    Compress,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::CreateDir => "create directory",
            Op::Open => "open",
            Op::Write => "write",
            Op::Rotate => "rotate",
            Op::Compress => "compress",
        }
    }
}

/// A json-file I/O failure, with the step, the path and the OS error.
#[derive(Debug)]
pub struct JsonFileError {
    op: Op,
    detail: &'static str,
    path: PathBuf,
    source: io::Error,
    repeated: bool,
    /// The driver whose file it is (`json-file`, `local`), first word of the message.
    driver: &'static str,
}

impl JsonFileError {
    fn new(op: Op, path: &Path, source: io::Error) -> Self {
        JsonFileError {
            op,
            detail: "",
            path: path.to_path_buf(),
            source,
            repeated: false,
            driver: Format::Json.driver(),
        }
    }

    fn from_safe(op: Op, e: SafeFsError) -> Self {
        JsonFileError {
            op,
            detail: "",
            path: e.path,
            source: e.source,
            repeated: false,
            driver: Format::Json.driver(),
        }
    }

    fn from_fs(op: Op, e: FsError) -> Self {
        JsonFileError {
            op,
            detail: e.op,
            path: e.path,
            source: e.source,
            repeated: false,
            driver: Format::Json.driver(),
        }
    }

    /// Names the driver of `format` in the message.
    fn of(mut self, format: Format) -> Self {
        self.driver = format.driver();
        self
    }

    /// The step that failed.
    pub fn op(&self) -> Op {
        self.op
    }

    /// The file or directory involved.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The underlying OS error (e.g. ENOSPC, EACCES).
    pub fn io_error(&self) -> &io::Error {
        &self.source
    }

    /// True when the previous call failed the same way: lets callers log the
    /// first error of a run and only count the rest.
    pub fn is_repeat(&self) -> bool {
        self.repeated
    }
}

impl fmt::Display for JsonFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.driver, self.op.as_str())?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        write!(f, " {}: {}", self.path.display(), self.source)
    }
}

impl std::error::Error for JsonFileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Told, on the rotation thread, how a background rotation ended: `None` when it worked, else
/// what failed. Lets the owner report a failure when it happens instead of at the next write
/// (which may never come). Without one, the failure is the `warning` of the next write.
pub type RotationHook = Arc<dyn Fn(Option<JsonFileError>) + Send + Sync>;

/// What a writer and its rotation thread share.
#[derive(Debug, Default)]
struct RotState {
    /// Sequence number of the last live file moved aside.
    queued: u64,
    /// Every file moved aside up to this number was handled (named, or failed and reported).
    handled: u64,
    /// A rotation thread runs.
    running: bool,
    /// A failure no hook took, for the next write to return.
    error: Option<JsonFileError>,
    /// The writer asked the thread to move the live file aside and open the next one.
    want: bool,
    /// The next live file, opened by the thread, for the writer to take.
    next: Option<File>,
    /// The last request failed: the writer appends to the live file until the next request.
    failed: bool,
    /// The writer is between looking for `next` and the end of its write: it may be appending
    /// to a file the thread has just moved aside.
    writing: bool,
}

/// [`RotState`] with the conditions its waiters wait on.
#[derive(Debug, Default)]
struct Rotation {
    state: Mutex<RotState>,
    /// The thread ended.
    idle: Condvar,
    /// The writer finished a write: a file moved aside before it began gets nothing more.
    written: Condvar,
}

impl Rotation {
    fn lock(&self) -> MutexGuard<'_, RotState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A [`RotationHook`] in a field of a `Debug` type.
#[derive(Clone)]
struct Hook(RotationHook);

impl fmt::Debug for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RotationHook")
    }
}

/// Writes one container's json-file log, rotating and compressing as configured.
#[derive(Debug)]
pub struct JsonFileWriter {
    /// The trusted root the log directory is reached from (opened by path).
    root: PathBuf,
    /// The directories below `root`, walked without following links.
    subdirs: Vec<OsString>,
    /// The live file's name in its directory.
    name: OsString,
    /// The live file's full path, for messages.
    path: PathBuf,
    /// The log directory the live file was last opened in.
    dir: Option<Arc<SafeDir>>,
    /// Rotations moved aside and their thread.
    rot: Arc<Rotation>,
    /// Finish rotations on a thread of their own (else in the caller).
    background: bool,
    /// Told how each background rotation ended.
    hook: Option<Hook>,
    /// json-file lines or `local` records.
    format: Format,
    /// Ids for `local` messages that end no line (see [`Format::encode`]).
    partial_ids: Option<crate::drivers::PartialIds>,
    max_size: Option<u64>,
    max_file: u32,
    compress: bool,
    attrs: Option<Vec<u8>>,
    file: Option<File>,
    /// Size of the live file as far as this writer knows.
    size: u64,
    /// The live file does not end in `\n` (a fragment survived a failed write).
    needs_newline: bool,
    buf: Vec<u8>,
    stats: JsonFileStats,
    /// Counts of the current run of dropped entries.
    failing: Option<DropCounts>,
    last_error: Option<Op>,
    last_warning: Option<Op>,
}

impl JsonFileWriter {
    /// Opens (creating the directories and the file) the live log `name` in
    /// `<root>/<subdirs...>`, e.g. root `<log root>`, subdirs `[<ns>, <id>]`, name `<id>-json.log`;
    /// `info` feeds the tag template. `root` is trusted (opened by path, links followed); no
    /// component below it may be a link. Fails if the file cannot be opened now (a planted link
    /// included), so a bad log location is reported at container creation rather than at the
    /// first output. Rotations finish in the background (see the module doc).
    pub fn open_under<S: AsRef<OsStr>>(
        root: &Path,
        subdirs: &[S],
        name: &str,
        opts: &JsonFileOptions,
        info: &TagInfo,
    ) -> Result<Self, JsonFileError> {
        Self::open_format(Format::Json, root, subdirs, name, opts, info)
    }

    /// Like [`JsonFileWriter::open_under`], for a file of Docker's `local` records (the `local`
    /// driver and the dual-logging cache). `opts.tag` is ignored: dockerd 20.10's `local` keeps
    /// no attributes.
    pub fn open_local_under<S: AsRef<OsStr>>(
        root: &Path,
        subdirs: &[S],
        name: &str,
        opts: &JsonFileOptions,
    ) -> Result<Self, JsonFileError> {
        let opts = JsonFileOptions {
            tag: None,
            ..opts.clone()
        };
        let info = TagInfo::default();
        Self::open_format(Format::Local, root, subdirs, name, &opts, &info)
    }

    /// Opens a writer of `format` entries (see [`JsonFileWriter::open_under`]).
    pub fn open_format<S: AsRef<OsStr>>(
        format: Format,
        root: &Path,
        subdirs: &[S],
        name: &str,
        opts: &JsonFileOptions,
        info: &TagInfo,
    ) -> Result<Self, JsonFileError> {
        let subdirs: Vec<OsString> = subdirs.iter().map(|s| s.as_ref().to_os_string()).collect();
        let mut path = root.to_path_buf();
        path.extend(&subdirs);
        path.push(name);
        let tag = match &opts.tag {
            Some(t) => t.render(info).map_err(|e| {
                JsonFileError::new(
                    Op::Open,
                    &path,
                    io::Error::new(io::ErrorKind::InvalidInput, e),
                )
            })?,
            None => String::new(),
        };
        let attrs = (!tag.is_empty()).then(|| entry::tag_attrs(&tag));
        let mut w = JsonFileWriter {
            root: root.to_path_buf(),
            subdirs,
            name: OsString::from(name),
            path,
            dir: None,
            rot: Arc::default(),
            background: true,
            hook: None,
            format,
            partial_ids: None,
            max_size: opts.max_size,
            max_file: opts.max_file.max(1),
            compress: opts.compress && opts.max_file >= 2,
            attrs,
            file: None,
            size: 0,
            needs_newline: false,
            buf: Vec::new(),
            stats: JsonFileStats::default(),
            failing: None,
            last_error: None,
            last_warning: None,
        };
        w.open_live().map_err(|e| e.of(format))?;
        w.finish_left_over();
        if let Some(dir) = &w.dir {
            if let Err(e) = rotate::remove_stale_temps(dir, &w.name) {
                log::warn!(
                    "{} {}: removing stale temp files: {}",
                    format.driver(),
                    w.path.display(),
                    e.source
                );
            }
        }
        Ok(w)
    }

    /// Opens the live log at `path` whose parent directory is trusted (created if missing,
    /// links in it followed); only the file itself must not be a link. Under a log root that
    /// others can write, use [`JsonFileWriter::open_under`].
    pub fn open(
        path: impl Into<PathBuf>,
        opts: &JsonFileOptions,
        info: &TagInfo,
    ) -> Result<Self, JsonFileError> {
        let path = path.into();
        let name = path
            .file_name()
            .and_then(OsStr::to_str)
            .ok_or_else(|| {
                JsonFileError::new(
                    Op::Open,
                    &path,
                    io::Error::new(io::ErrorKind::InvalidInput, "not a UTF-8 file name"),
                )
            })?
            .to_owned();
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        Self::open_under(parent, &[] as &[&str], &name, opts, info)
    }

    /// Finishes every rotation in the caller instead of a background thread: for tools and tests
    /// that want the files in place when `write` returns.
    pub fn with_inline_rotation(mut self) -> Self {
        self.background = false;
        self
    }

    /// Reports how each background rotation ended through `hook`, from the rotation thread,
    /// instead of as the next write's warning.
    pub fn set_rotation_hook(&mut self, hook: RotationHook) {
        self.hook = Some(Hook(hook));
    }

    /// Whether the rotation thread still runs (files moved aside still wait for their names).
    pub fn rotation_running(&self) -> bool {
        self.rot.lock().running
    }

    /// Waits until the rotation thread is done; returns its failure, if one no hook took.
    pub fn wait_rotation(&mut self) -> Option<JsonFileError> {
        self.adopt_next();
        let e = {
            let mut st = self.rot.lock();
            while st.running {
                st = self.rot.idle.wait(st).unwrap_or_else(|p| p.into_inner());
            }
            st.error.take()
        };
        e.map(|e| self.warn(e))
    }

    /// Names the files a crashed shim left moved aside (they are older than the live file), so
    /// their numbers continue after theirs. Failures are only logged: the log still opens.
    fn finish_left_over(&mut self) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let Ok(Some(last)) =
            rotate::pending_files(&dir, &self.name).map(|v| v.last().map(|(seq, _)| *seq))
        else {
            return;
        };
        {
            let mut st = self.rot.lock();
            st.queued = last;
            st.handled = last;
        }
        let result =
            rotate::finish_pending(&dir, &self.name, self.max_file.max(2), self.gzip(), last);
        if let Err(e) = result {
            log::warn!("{}", finish_error(e));
        }
    }

    /// The format rotated files are gzipped as, when they are.
    fn gzip(&self) -> Option<Format> {
        self.compress.then_some(self.format)
    }

    /// json-file lines or `local` records.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Totals so far.
    pub fn stats(&self) -> JsonFileStats {
        self.stats
    }

    /// Whether the last write failed (its entries were dropped); the next write retries.
    pub fn is_dropping(&self) -> bool {
        self.failing.is_some()
    }

    /// Current size of the live file, as tracked by the writer.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes one message as one entry. `time` is when the output was read
    /// (all pieces of a split line should carry the first piece's time, as
    /// Docker does). `Err` means the entry was dropped and counted; the next
    /// call tries again.
    pub fn write(
        &mut self,
        stream: Stream,
        line: &[u8],
        time: SystemTime,
    ) -> Result<Written, JsonFileError> {
        self.write_many(stream, &[line], time)
    }

    /// Writes several messages of one stream, read at the same `time`, as consecutive entries
    /// with as few `write(2)` calls as rotation allows: one per file they land in. One write per
    /// entry cost about 1.3 µs per 100-byte line (76 MB/s measured); a relay read carries
    /// hundreds of lines. `Err` means some entries were dropped (all counted); the others are
    /// on disk.
    pub fn write_many<P: Piece>(
        &mut self,
        stream: Stream,
        lines: &[P],
        time: SystemTime,
    ) -> Result<Written, JsonFileError> {
        self.write_lines(stream, lines, time, false).1
    }

    /// Like [`JsonFileWriter::write_many`], but stops before an entry that needs the next live
    /// file until the rotation thread handed it over ([`JsonFileWriter::rotation_backlogged`]),
    /// instead of letting the live file grow past `max-size`; returns how many of `lines` it took
    /// (written or dropped). An async caller waits for room and passes the rest: back-pressure on this log's
    /// container only, never a blocked thread.
    pub fn write_some<P: Piece>(
        &mut self,
        stream: Stream,
        lines: &[P],
        time: SystemTime,
    ) -> (usize, Result<Written, JsonFileError>) {
        self.write_lines(stream, lines, time, true)
    }

    /// Whether a rotation was asked of the thread and the next live file is not there yet:
    /// [`JsonFileWriter::write_some`] would stop before the entry that needs it.
    pub fn rotation_backlogged(&self) -> bool {
        self.backlogged()
    }

    fn write_lines<P: Piece>(
        &mut self,
        stream: Stream,
        lines: &[P],
        time: SystemTime,
        stop_when_backlogged: bool,
    ) -> (usize, Result<Written, JsonFileError>) {
        let mut stamp = format::BatchStamp::new(self.format, time);
        let mut merged = Written::default();
        let mut first_err = None;
        let mut i = 0;
        while i < lines.len() {
            self.begin_write();
            self.buf.clear();
            self.buf.push(b'\n'); // used only if the live file lacks a final newline
            let mut j = i;
            // Where the batch starts: after the live file's bytes, or at 0 in a fresh file when
            // its first entry already forces a rotation.
            let mut base = self.size;
            let mut stopped = false;
            while j < lines.len() {
                let before = self.buf.len();
                self.format.encode(
                    &mut self.buf,
                    &lines[j],
                    stream,
                    self.attrs.as_deref(),
                    &mut stamp,
                    &mut self.partial_ids,
                );
                let batch_len = (self.buf.len() - 1) as u64;
                if j == i {
                    if self.should_rotate(self.buf.len() - 1) {
                        if stop_when_backlogged && self.background && !self.take_failed() {
                            self.request_rotation();
                            stopped = true;
                            break;
                        }
                        base = 0;
                    }
                } else if self.max_size.is_some_and(|max| base + batch_len > max) {
                    // A batch stays inside one file: it ends before an entry that would overflow.
                    self.buf.truncate(before);
                    break;
                }
                j += 1;
            }
            if stopped {
                self.end_write();
                break;
            }
            let committed = self.commit(&lines[i..j]);
            self.end_write();
            match committed {
                Ok(w) => {
                    if merged.resumed_after.is_none() {
                        merged.resumed_after = w.resumed_after;
                    }
                    if merged.warning.is_none() {
                        merged.warning = w.warning;
                    }
                }
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
            i = j;
        }
        let result = match first_err {
            Some(e) => Err(e),
            None => Ok(merged),
        };
        (i, result)
    }

    /// Writes the entries encoded in `buf`, one for each of `lines` (rotating first when they
    /// would overflow the file).
    fn commit<P: Piece>(&mut self, lines: &[P]) -> Result<Written, JsonFileError> {
        let entries = lines.len() as u64;
        let bytes = payload(lines);
        if self.file.is_none() {
            if let Err(e) = self.open_live() {
                return Err(self.dropped(entries, bytes, e));
            }
        }

        let mut warning = self.rotation_error();
        let mut finish_here = None;
        if self.background {
            // The thread moves the file aside and opens the next one; the entries go into the
            // live file until then (only `write_many` gets here with a rotation due).
            if self.should_rotate(self.buf.len() - 1) {
                self.request_rotation();
            }
        } else if self.should_rotate(self.buf.len() - 1) {
            match self.start_rotation() {
                Ok(inline) => {
                    // The old live file is gone from its name; start a new one.
                    finish_here = inline;
                    self.file = None;
                    if let Err(e) = self.reopen_live() {
                        if let Some(upto) = finish_here {
                            self.finish_inline(upto);
                        }
                        return Err(self.dropped(entries, bytes, e));
                    }
                    self.stats.rotations += 1;
                }
                Err(e) => {
                    // Nothing was moved that matters to the open file: keep
                    // appending to it rather than lose output.
                    let e = self.warn(JsonFileError::from_fs(Op::Rotate, e));
                    warning.get_or_insert(e);
                }
            }
        }

        let start = usize::from(!self.needs_newline);
        let written = self.write_entry(start, entries);
        // Inline, the old file is aged and gzipped after the entries are safe: on a nearly full
        // disk the entries get the room rather than the gzip file.
        if let Some(upto) = finish_here {
            if let Some(w) = self.finish_inline(upto) {
                warning.get_or_insert(w);
            }
        }
        if let Err((kept, e)) = written {
            // The entries that made it whole before the disk filled up stay.
            let lost = lines.get(kept..).unwrap_or_default();
            return Err(self.dropped(lost.len() as u64, payload(lost), e));
        }

        if self.buf.capacity() > KEEP_BUF {
            self.buf = Vec::new();
        }
        self.last_error = None;
        Ok(Written {
            resumed_after: self.failing.take(),
            warning,
        })
    }

    fn should_rotate(&self, entry_len: usize) -> bool {
        match self.max_size {
            Some(max) => self.size > 0 && self.size.saturating_add(entry_len as u64) > max,
            None => false,
        }
    }

    /// Whether a rotation was asked of the thread and its next live file is not there yet.
    fn backlogged(&self) -> bool {
        let st = self.rot.lock();
        st.want && st.next.is_none()
    }

    /// Asks the rotation thread to move the live file aside and open the next one (starting the
    /// thread if it does not run). Touches no file: the service path does no metadata work.
    fn request_rotation(&mut self) {
        let spawn = {
            let mut st = self.rot.lock();
            if st.want || st.next.is_some() {
                return;
            }
            st.want = true;
            !std::mem::replace(&mut st.running, true)
        };
        if !spawn {
            return;
        }
        let Some(dir) = self.dir.clone() else {
            let mut st = self.rot.lock();
            st.want = false;
            st.running = false;
            return;
        };
        let job = RotationJob {
            format: self.format,
            rot: self.rot.clone(),
            dir,
            base: self.name.clone(),
            max_file: self.max_file,
            compress: self.gzip(),
            hook: self.hook.clone(),
        };
        let spawned = std::thread::Builder::new()
            .name("json-rotate".into())
            .spawn(move || job.run());
        if let Err(e) = spawned {
            // No thread: this rotation fails like a failed rename (the file keeps growing).
            let mut st = self.rot.lock();
            st.want = false;
            st.running = false;
            st.failed = true;
            st.error
                .get_or_insert(JsonFileError::new(Op::Rotate, &self.path, e));
        }
    }

    /// Starts a write: takes the next live file the thread opened, if there is one, and tells
    /// the thread that entries may go to the current file until [`Self::end_write`].
    fn begin_write(&mut self) {
        let next = {
            let mut st = self.rot.lock();
            st.writing = true;
            st.next.take()
        };
        self.use_next(next);
    }

    /// Ends a write: a file the thread moved aside meanwhile gets nothing more (the next write
    /// takes the next live file first), so the thread may name and gzip it.
    fn end_write(&mut self) {
        self.rot.lock().writing = false;
        self.rot.written.notify_all();
    }

    /// Takes the next live file the thread opened, if there is one.
    fn adopt_next(&mut self) {
        let next = self.rot.lock().next.take();
        self.use_next(next);
    }

    /// Makes `next` (the thread's new live file) the live file.
    fn use_next(&mut self, next: Option<File>) {
        if let Some(file) = next {
            match self.use_live(file) {
                Ok(()) => self.stats.rotations += 1,
                // The next write re-opens by name.
                Err(_) => self.file = None,
            }
        }
    }

    /// Whether the last rotation the thread tried failed (clearing it): the writer then writes
    /// into the live file and asks again at the next entry that needs a rotation.
    fn take_failed(&mut self) -> bool {
        std::mem::take(&mut self.rot.lock().failed)
    }

    /// A failure of the rotation thread that no hook took, as a warning.
    fn rotation_error(&mut self) -> Option<JsonFileError> {
        let e = self.rot.lock().error.take();
        e.map(|e| self.warn(e))
    }

    /// Moves the live file aside (one `renameat`; with one file kept, removes it), inline mode:
    /// `Ok(Some(seq))`, the caller finishes the rotation with [`Self::finish_inline`].
    fn start_rotation(&mut self) -> Result<Option<u64>, FsError> {
        let Some(dir) = self.dir.clone() else {
            return Ok(None);
        };
        if self.max_file < 2 {
            return rotate::remove_if_exists(&dir, &self.name).map(|()| None);
        }
        let seq = self.rot.lock().queued + 1;
        match dir.rename(&self.name, rotate::pending_name(&self.name, seq)) {
            // A live file deleted behind our back is simply not moved; the writer
            // then re-creates it instead of appending to the unlinked inode.
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e.into()),
            Ok(()) => {}
        }
        self.rot.lock().queued = seq;
        Ok(Some(seq))
    }

    /// Finishes, here, the files moved aside up to `upto`; the warning if that failed.
    fn finish_inline(&mut self, upto: u64) -> Option<JsonFileError> {
        let dir = self.dir.clone()?;
        let result = rotate::finish_pending(&dir, &self.name, self.max_file, self.gzip(), upto);
        {
            let mut st = self.rot.lock();
            st.handled = st.handled.max(upto);
        }
        self.finished(result)
    }

    /// The warning for a finished rotation's result, if it failed.
    fn finished(&mut self, result: Result<(), FinishError>) -> Option<JsonFileError> {
        match result {
            Ok(()) => {
                self.last_warning = None;
                None
            }
            Err(e) => Some(self.warn(finish_error(e))),
        }
    }

    /// Opens the live file for appending, creating it and its directories: walks from the
    /// trusted root again each time (cheap: a few `openat`s), so a log directory removed while
    /// the container runs is re-created, and a link planted in its place is refused.
    fn open_live(&mut self) -> Result<(), JsonFileError> {
        let dir = SafeDir::open_root(&self.root, true, DIR_MODE)
            .and_then(|r| r.create_dir_all(&self.subdirs, DIR_MODE))
            .map_err(|e| JsonFileError::from_safe(Op::CreateDir, e))?;
        let file = dir
            .open_append(&self.name, FILE_MODE, true)
            .map_err(|e| JsonFileError::from_safe(Op::Open, e))?;
        self.dir = Some(Arc::new(dir));
        self.use_live(file)
    }

    /// After a rotation: opens the new live file in the directory already held (one `openat`
    /// on the service path instead of a walk from the root), else walks again.
    fn reopen_live(&mut self) -> Result<(), JsonFileError> {
        let fast = self
            .dir
            .as_ref()
            .and_then(|d| d.open_append(&self.name, FILE_MODE, true).ok());
        match fast {
            Some(file) => self.use_live(file),
            None => self.open_live(),
        }
    }

    /// Makes `file` the live file, learning its size and whether it ends in a newline.
    fn use_live(&mut self, file: File) -> Result<(), JsonFileError> {
        let size = file
            .metadata()
            .map_err(|e| JsonFileError::new(Op::Open, &self.path, e))?
            .len();
        let mut last = [0u8; 1];
        self.needs_newline = self.format.line_based()
            && size > 0
            && file.read_exact_at(&mut last, size - 1).is_ok()
            && last[0] != b'\n';
        self.size = size;
        self.file = Some(file);
        Ok(())
    }

    /// Appends `buf[start..]` in one `write(2)` (more only on a short write).
    /// On failure, keeps the entries that were written whole (a full disk takes what fits), cuts
    /// any fragment off again, closes the file so the next call re-opens it, and returns how
    /// many entries were kept.
    fn write_entry(&mut self, start: usize, entries: u64) -> Result<(), (usize, JsonFileError)> {
        let result = match self.file.as_mut() {
            Some(file) => write_all(file, &self.buf[start..]),
            None => Err((
                0,
                io::Error::new(io::ErrorKind::NotConnected, "log file is not open"),
            )),
        };
        if let Err((partial, e)) = result {
            let kept = self.fail_write(start, partial);
            return Err((kept, JsonFileError::new(Op::Write, &self.path, e)));
        }
        let n = (self.buf.len() - start) as u64;
        self.size += n;
        self.needs_newline = false;
        self.stats.bytes_written += n;
        self.stats.entries_written += entries;
        Ok(())
    }

    /// After `partial` bytes of `buf[start..]` were written: keeps the whole entries among them
    /// (every entry ends with the only raw `\n` it contains), truncates the rest, and returns
    /// the number of entries kept.
    fn fail_write(&mut self, start: usize, partial: usize) -> usize {
        let data = self.buf.get(start..).unwrap_or_default();
        let written = data.get(..partial).unwrap_or(data);
        // With start 0 the batch begins with a newline ending a torn last line: not an entry.
        let (keep, kept) = self.format.whole_entries(written, start == 0);
        if let Some(file) = self.file.take() {
            let new_size = self.size + keep as u64;
            if partial > keep && file.set_len(new_size).is_err() && self.format.line_based() {
                // The fragment stays; the next open sees no final newline and
                // starts the next entry on a fresh line.
                self.needs_newline = true;
            } else if keep > 0 {
                self.needs_newline = false;
            }
            self.size = new_size;
        }
        self.stats.bytes_written += keep as u64;
        self.stats.entries_written += kept as u64;
        kept
    }

    fn dropped(&mut self, entries: u64, bytes: u64, e: JsonFileError) -> JsonFileError {
        let mut e = e.of(self.format);
        let counts = self.failing.get_or_insert_with(DropCounts::default);
        counts.entries += entries;
        counts.bytes += bytes;
        self.stats.entries_dropped += entries;
        self.stats.bytes_dropped += bytes;
        e.repeated = self.last_error == Some(e.op);
        self.last_error = Some(e.op);
        e
    }

    fn warn(&mut self, e: JsonFileError) -> JsonFileError {
        let mut e = e.of(self.format);
        e.repeated = self.last_warning == Some(e.op);
        self.last_warning = Some(e.op);
        e
    }
}

/// The rotation thread's work: name every file moved aside, until none waits.
struct RotationJob {
    /// Names the driver in errors.
    format: Format,
    rot: Arc<Rotation>,
    dir: Arc<SafeDir>,
    base: OsString,
    max_file: u32,
    compress: Option<Format>,
    hook: Option<Hook>,
}

impl RotationJob {
    fn run(self) {
        lower_priority();
        loop {
            let (want, upto) = {
                let mut st = self.rot.lock();
                if st.want {
                    (true, st.queued + 1)
                } else if st.handled >= st.queued {
                    st.running = false;
                    self.rot.idle.notify_all();
                    return;
                } else {
                    (false, st.queued)
                }
            };
            if want {
                self.next_live(upto);
                continue;
            }
            // A write that began before the file was moved aside may still append to it
            // (`write_many` never waits): naming and gzipping it first would lose those entries.
            // Writes that begin later take the next live file first.
            {
                let mut st = self.rot.lock();
                while st.writing {
                    st = self.rot.written.wait(st).unwrap_or_else(|p| p.into_inner());
                }
            }
            let result =
                rotate::finish_pending(&self.dir, &self.base, self.max_file, self.compress, upto);
            self.report(result.err().map(finish_error));
            // Handled, worked or not: a failure is reported and its files wait for the next
            // rotation's pass rather than make this thread spin.
            self.rot.lock().handled = upto;
        }
    }

    /// Moves the live file aside as `seq` (or, with one file kept, removes it) and opens the
    /// next one for the writer. First thing in a pass, so the writer waits for this only.
    fn next_live(&self, seq: u64) {
        let moved = if self.max_file < 2 {
            rotate::remove_if_exists(&self.dir, &self.base).map(|()| false)
        } else {
            match self
                .dir
                .rename(&self.base, rotate::pending_name(&self.base, seq))
            {
                Ok(()) => Ok(true),
                // Deleted behind our back: nothing to move, a new file all the same.
                Err(e) if e.is_not_found() => Ok(false),
                Err(e) => Err(FsError::from(e)),
            }
        };
        let opened = moved.and_then(|moved| {
            self.dir
                .open_append(&self.base, FILE_MODE, true)
                .map(|f| (moved, f))
                .map_err(FsError::from)
        });
        let error = {
            let mut st = self.rot.lock();
            st.want = false;
            match opened {
                Ok((moved, file)) => {
                    if moved {
                        st.queued = seq;
                    }
                    st.next = Some(file);
                    None
                }
                Err(e) => {
                    st.failed = true;
                    Some(JsonFileError::from_fs(Op::Rotate, e))
                }
            }
        };
        if error.is_some() {
            self.report(error);
        }
    }

    /// Hands a pass's outcome to the hook, or keeps a failure for the writer.
    fn report(&self, error: Option<JsonFileError>) {
        let error = error.map(|e| e.of(self.format));
        match &self.hook {
            Some(Hook(hook)) => hook(error),
            None => {
                if let Some(e) = error {
                    self.rot.lock().error.get_or_insert(e);
                }
            }
        }
    }
}

/// Nice value of rotation threads: housekeeping yields the CPU to the shim's service thread
/// and to the containers when they compete for it.
const ROTATION_NICE: libc::c_int = 10;

/// Lowers the calling thread's CPU priority to [`ROTATION_NICE`] (best effort: a failure only
/// leaves it at the shim's priority).
fn lower_priority() {
    // SAFETY: setpriority takes plain integers; on Linux, PRIO_PROCESS with who 0 applies to
    // the calling thread only.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, ROTATION_NICE) };
    if rc != 0 {
        log::debug!(
            "json-file rotation thread: setpriority: {}",
            io::Error::last_os_error()
        );
    }
}

/// The error of a failed rotation step.
fn finish_error(e: FinishError) -> JsonFileError {
    match e {
        FinishError::Rotate(e) => JsonFileError::from_fs(Op::Rotate, e),
        FinishError::Compress(e) => JsonFileError::from_fs(Op::Compress, e),
    }
}

/// Container output bytes of `lines` (the `log` payloads before escaping).
fn payload<P: Piece>(lines: &[P]) -> u64 {
    lines.iter().map(|l| l.bytes().len() as u64).sum()
}

/// `write_all` that reports how many bytes made it before an error.
fn write_all(file: &mut File, data: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut done = 0;
    while done < data.len() {
        match file.write(&data[done..]) {
            Ok(0) => return Err((done, io::ErrorKind::WriteZero.into())),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((done, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
