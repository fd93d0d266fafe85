//! The json-file driver: the json-file log of one process, shared by its stdout and stderr
//! relays, and what it tells about lost output. [`JsonLog`] also drives a writer of `local`
//! records (the `local` driver and the dual-logging cache, see [`super::local`]): it is named
//! after the writer's format, and everything below holds for it too.
//!
//! A full or unwritable log disk never blocks or stops the container: entries are dropped and
//! counted (see [`crate::jsonfile`]). What was lost is reported twice: in the shim's own log
//! through the `log` crate, and, when the owner installed one, to a [`DriverReporter`] (the
//! shim's writes runtime-log records).
//!
//! Modes: in `blocking` mode (the default) the relay waits while the rotation thread is behind
//! (the container's output waits in its pipe, as with Docker's synchronous rotation); in
//! `non-blocking` mode it never waits: entries go on into the current file until the next one is
//! there. Writes themselves are never queued (a failed write drops and counts), so
//! `max-buffer-size` bounds nothing here. Reports come from a [`DropTracker`]: one when dropping
//! starts, one when writing has worked again for [`crate::jsonfile::SETTLE`], and a summary when
//! the log is closed, which happens when the last relay holding it finished (every process
//! holding the container's output exited).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use super::{Batch, DriverFuture, DriverReporter, DriverStats, LogDriver, Mode};
use crate::jsonfile::{
    DropCounts, DropTracker, Format, JsonFileReport, JsonFileStats, JsonFileWriter, Op, Piece,
    RotationHook,
};
use crate::stream::Stream;

/// The driver's name, Docker's.
pub const NAME: &str = "json-file";

/// A Docker json-file log fed by both output streams of a process (same bytes as the FIFOs).
pub struct JsonLog {
    /// [`NAME`], or `local` for a writer of `local` records (see [`super::local`]).
    name: &'static str,
    inner: Mutex<Inner>,
    max_line: usize,
    path: PathBuf,
    reporter: Option<Arc<dyn DriverReporter>>,
    mode: Mode,
}

struct Inner {
    writer: JsonFileWriter,
    tracker: DropTracker,
}

impl JsonLog {
    /// Wraps an opened writer; lines longer than `max_line` are split Docker's way.
    pub fn new(mut writer: JsonFileWriter, max_line: usize) -> JsonLog {
        let name = match writer.format() {
            Format::Json => NAME,
            Format::Local => super::local::NAME,
        };
        writer.set_rotation_hook(rotation_hook(name, writer.path().to_path_buf(), None));
        JsonLog {
            name,
            path: writer.path().to_path_buf(),
            inner: Mutex::new(Inner {
                writer,
                tracker: DropTracker::new(),
            }),
            max_line,
            reporter: None,
            mode: Mode::Blocking,
        }
    }

    /// Reports under `name` instead (the dual-logging cache is a `local` file with a name of
    /// its own).
    pub fn with_name(mut self, name: &'static str) -> JsonLog {
        self.name = name;
        let hook = rotation_hook(name, self.path.clone(), self.reporter.clone());
        self.lock().writer.set_rotation_hook(hook);
        self
    }

    /// Docker's `mode` for this log (see the module doc).
    pub fn with_mode(mut self, mode: Mode) -> JsonLog {
        self.mode = mode;
        self
    }

    /// How long writes must work after drops before the log counts as writable again
    /// (default [`crate::jsonfile::SETTLE`]).
    pub fn with_settle(self, settle: std::time::Duration) -> JsonLog {
        {
            let mut g = self.lock();
            g.tracker = std::mem::take(&mut g.tracker).with_settle(settle);
        }
        self
    }

    /// Also sends every report to `reporter` (besides the shim's own log).
    pub fn with_reporter(mut self, reporter: Arc<dyn DriverReporter>) -> JsonLog {
        let hook = rotation_hook(self.name, self.path.clone(), Some(reporter.clone()));
        self.lock().writer.set_rotation_hook(hook);
        self.reporter = Some(reporter);
        self
    }

    /// The longest message before a line is split.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The live file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was written and dropped so far.
    pub fn stats(&self) -> JsonFileStats {
        self.lock().writer.stats()
    }

    /// Resolves once no rotation of this log runs in the background, so the files have their
    /// final names (`.1`, `.1.gz`, ...) when the process's exit is published. Polls every 2 ms
    /// rather than block the caller's thread on the rotation.
    pub async fn rotation_done(&self) {
        while self.lock().writer.rotation_running() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the messages of one read of `stream` as entries. Never fails: what cannot be
    /// written is dropped, counted and reported. Never waits: if the rotation thread is behind,
    /// the live file grows past `max-size` (for the last output of a process; see
    /// [`JsonLog::write_some`]).
    pub fn write_messages(&self, stream: Stream, messages: &[&[u8]]) {
        self.write(stream, messages, false, SystemTime::now());
    }

    /// Like [`JsonLog::write_messages`] but stops before a rotation while the rotation thread is
    /// behind; returns how many messages it took. The relay then awaits
    /// [`JsonLog::rotation_room`] and passes the rest: the container's output waits in its pipe
    /// (as with Docker's synchronous rotation), the shim's thread never does.
    pub fn write_some(&self, stream: Stream, messages: &[&[u8]]) -> usize {
        self.write(stream, messages, true, SystemTime::now())
    }

    /// Resolves once the rotation thread has room for another file (polls every 2 ms).
    pub async fn rotation_room(&self) {
        while self.lock().writer.rotation_backlogged() {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }

    fn write<P: Piece>(
        &self,
        stream: Stream,
        messages: &[P],
        stop: bool,
        time: SystemTime,
    ) -> usize {
        if messages.is_empty() {
            return 0;
        }
        let consumed;
        let mut reports: Vec<JsonFileReport> = Vec::new();
        {
            let mut g = self.lock();
            let Inner { writer, tracker } = &mut *g;
            let before = writer.stats();
            let (taken, result) = if stop {
                writer.write_some(stream, messages, time)
            } else {
                (messages.len(), writer.write_many(stream, messages, time))
            };
            consumed = taken;
            let after = writer.stats();
            let wrote = after.entries_written > before.entries_written;
            let lost = DropCounts {
                entries: after.entries_dropped - before.entries_dropped,
                bytes: after.bytes_dropped - before.bytes_dropped,
            };
            // One call can both write and drop. Writes come in order, so if the call ended
            // dropping, what it wrote came before the drop (the disk filled up during the call),
            // else after it (the disk had room again).
            let ended_dropping = writer.is_dropping();
            if wrote && ended_dropping && !tracker.is_healthy() {
                reports.extend(tracker.written(Instant::now()));
            }
            match &result {
                Ok(w) => {
                    if let Some(e) = w.warning.as_ref().filter(|e| !e.is_repeat()) {
                        reports.push(JsonFileReport::Warning {
                            error: e.to_string(),
                        });
                    }
                }
                Err(e) if lost.entries > 0 => reports.extend(tracker.dropped(lost, &e.to_string())),
                Err(_) => {}
            }
            if wrote && !ended_dropping && !tracker.is_healthy() {
                reports.extend(tracker.written(Instant::now()));
            }
        }
        for r in reports {
            self.emit(r);
        }
        consumed
    }

    fn emit(&self, report: JsonFileReport) {
        emit(self.name, &self.path, self.reporter.as_ref(), report);
    }
}

/// Reports a background rotation's failure from the rotation thread, when it happens (the
/// container may write nothing more to carry it as a warning): in the shim's log and to
/// `reporter`. A run of failures of the same step is reported once, until a rotation works.
fn rotation_hook(
    name: &'static str,
    path: PathBuf,
    reporter: Option<Arc<dyn DriverReporter>>,
) -> RotationHook {
    let last: Mutex<Option<Op>> = Mutex::new(None);
    Arc::new(move |outcome| {
        let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            None => *last = None,
            Some(e) if *last == Some(e.op()) => {}
            Some(e) => {
                *last = Some(e.op());
                let report = JsonFileReport::Warning {
                    error: e.to_string(),
                };
                emit(name, &path, reporter.as_ref(), report);
            }
        }
    })
}

/// Logs `report` in the shim's own log and hands it to `reporter`.
fn emit(
    name: &str,
    path: &Path,
    reporter: Option<&Arc<dyn DriverReporter>>,
    report: JsonFileReport,
) {
    let shown = path.display();
    {
        let path = shown;
        match &report {
            JsonFileReport::Dropping { error } => {
                log::error!("{error}; dropping entries of {path} until writes succeed again")
            }
            JsonFileReport::Resumed { lost } => log::warn!(
                "{name} log {path} writable again after dropping {} entries ({} bytes)",
                lost.entries,
                lost.bytes
            ),
            JsonFileReport::Warning { error } => log::warn!("{error}"),
            JsonFileReport::Closed {
                unreported,
                total,
                still_dropping,
            } => log::warn!(
                "{name} log {path} closed{}: {} entries ({} bytes) dropped in all, {} entries ({} bytes) of them since the last report",
                if *still_dropping { " while dropping" } else { "" },
                total.entries,
                total.bytes,
                unreported.entries,
                unreported.bytes
            ),
        }
    }
    if let Some(r) = reporter {
        r.report(name, &path.to_string_lossy(), report);
    }
}

impl Drop for JsonLog {
    fn drop(&mut self) {
        let summary = self
            .inner
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .tracker
            .closed();
        if let Some(r) = summary {
            self.emit(r);
        }
    }
}

impl LogDriver for JsonLog {
    fn name(&self) -> &str {
        self.name
    }

    fn log(&self, batch: &Batch<'_>) -> usize {
        // Lines are written as the framer cut them (json-file keeps no partial metadata: a
        // piece without a trailing newline is how Docker's readers know it is partial; `local`
        // records carry it).
        let stop = self.mode == Mode::Blocking;
        self.write(batch.stream, batch.records, stop, batch.time)
    }

    fn room(&self) -> DriverFuture<'_> {
        Box::pin(self.rotation_room())
    }

    fn drain(&self) -> DriverFuture<'_> {
        Box::pin(self.rotation_done())
    }

    fn reads_back(&self) -> bool {
        true
    }

    fn stats(&self) -> DriverStats {
        let s = self.stats();
        DriverStats {
            delivered: s.entries_written,
            dropped: s.entries_dropped,
            dropped_bytes: s.bytes_dropped,
        }
    }
}

impl std::fmt::Debug for JsonLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonLog")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("max_line", &self.max_line)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonfile::{JsonFileOptions, TagInfo};

    /// Collects reports.
    #[derive(Default)]
    struct Collect(Mutex<Vec<(PathBuf, JsonFileReport)>>);

    impl DriverReporter for Collect {
        fn report(&self, driver: &str, target: &str, report: JsonFileReport) {
            assert_eq!(driver, NAME);
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((PathBuf::from(target), report));
        }
    }

    impl Collect {
        fn reports(&self) -> Vec<JsonFileReport> {
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .map(|(_, r)| r.clone())
                .collect()
        }
    }

    fn info() -> TagInfo {
        TagInfo {
            container_id: "c".into(),
            container_name: "c".into(),
            image_name: String::new(),
            image_id: String::new(),
            daemon_name: "scribe".into(),
        }
    }

    #[test]
    fn a_healthy_log_reports_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let w = JsonFileWriter::open(
            dir.path().join("c-json.log"),
            &JsonFileOptions::default(),
            &info(),
        )
        .expect("open");
        let sink = Arc::new(Collect::default());
        let log = JsonLog::new(w, 16 * 1024).with_reporter(sink.clone());
        log.write_messages(Stream::Stdout, &[b"a\n", b"b\n"]);
        log.write_messages(Stream::Stderr, &[b"c\n"]);
        assert_eq!(log.stats().entries_written, 3);
        drop(log);
        assert_eq!(sink.reports(), []);
    }

    /// The disk fills up in the middle of one call after it had room again: the writes before
    /// the drop end the old episode (`Resumed`) before the new one starts.
    #[test]
    fn a_call_that_writes_then_fills_the_disk_reports_resumed_then_dropping() {
        let fs = crate::testutil::TinyTmpfs::must_mount("64k");
        let filler = fs.path().join("filler");
        std::fs::write(&filler, vec![0u8; 40 * 1024]).expect("filler");
        let w = JsonFileWriter::open(
            fs.path().join("c-json.log"),
            &JsonFileOptions::default(),
            &info(),
        )
        .expect("open");
        let sink = Arc::new(Collect::default());
        let log = JsonLog::new(w, 16 * 1024)
            .with_reporter(sink.clone())
            .with_settle(std::time::Duration::ZERO);
        let line = format!("{}\n", "q".repeat(700));
        let big: Vec<&[u8]> = vec![line.as_bytes(); 100]; // 70 kB
        log.write_messages(Stream::Stdout, &big);
        let first = log.stats();
        assert!(
            first.entries_written > 0 && first.entries_dropped > 0,
            "{first:?}"
        );
        std::fs::remove_file(&filler).expect("free space");
        log.write_messages(Stream::Stdout, &[b"room again\n"]);
        log.write_messages(Stream::Stdout, &big);
        let kinds: Vec<&str> = sink
            .reports()
            .iter()
            .map(|r| match r {
                JsonFileReport::Dropping { .. } => "dropping",
                JsonFileReport::Resumed { .. } => "resumed",
                JsonFileReport::Warning { .. } => "warning",
                JsonFileReport::Closed { .. } => "closed",
            })
            .collect();
        assert_eq!(kinds, ["dropping", "resumed", "dropping"]);
        let Some(JsonFileReport::Resumed { lost }) = sink.reports().get(1).cloned() else {
            panic!("{:?}", sink.reports());
        };
        assert_eq!(
            lost.entries, first.entries_dropped,
            "the first episode's drops"
        );
    }

    /// A full disk fails every write with ENOSPC: one `Dropping` naming the file and the errno,
    /// then at close the count of everything dropped. (The log is a regular file on a full
    /// tmpfs: `/dev/full` is not a regular file, and log files must be.)
    #[test]
    fn full_disk_reports_when_dropping_starts_and_the_count_at_close() {
        let fs = crate::testutil::TinyTmpfs::must_mount("64k");
        let path = fs.path().join("c-json.log");
        let w = JsonFileWriter::open(&path, &JsonFileOptions::default(), &info()).expect("open");
        // Take every block left; the write stops short with ENOSPC.
        let _ = std::fs::write(fs.path().join("filler"), vec![0u8; 128 * 1024]);
        let sink = Arc::new(Collect::default());
        let log = JsonLog::new(w, 16 * 1024).with_reporter(sink.clone());
        log.write_messages(Stream::Stdout, &[b"one\n", b"two\n"]);
        log.write_messages(Stream::Stderr, &[b"three\n"]);
        let reports = sink.reports();
        assert_eq!(reports.len(), 1, "{reports:?}");
        let JsonFileReport::Dropping { error } = &reports[0] else {
            panic!("first report is not Dropping: {reports:?}");
        };
        assert!(error.contains(&*path.to_string_lossy()), "{error}");
        assert!(error.contains("No space left on device"), "{error}");
        drop(log);
        assert_eq!(
            sink.reports().last(),
            Some(&JsonFileReport::Closed {
                unreported: DropCounts {
                    entries: 3,
                    bytes: 14
                },
                total: DropCounts {
                    entries: 3,
                    bytes: 14
                },
                still_dropping: true
            })
        );
    }

    /// A background rotation that fails (here: a link planted at the gzip temp name) is reported
    /// when it happens, though the container writes nothing more; a repeat is not.
    #[test]
    fn a_failed_background_rotation_is_reported_without_further_writes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious").expect("victim");
        let opts = JsonFileOptions::from_pairs([
            ("max-size", "100"),
            ("max-file", "3"),
            ("compress", "true"),
        ])
        .expect("options");
        let path = dir.path().join("c-json.log");
        let w = JsonFileWriter::open(&path, &opts, &info()).expect("open");
        std::os::unix::fs::symlink(&victim, dir.path().join("c-json.log.1.gz.tmp")).expect("plant");
        let sink = Arc::new(Collect::default());
        let log = JsonLog::new(w, 16 * 1024).with_reporter(sink.clone());
        let line = format!("{}\n", "w".repeat(80));
        log.write_messages(Stream::Stdout, &[line.as_bytes()]);
        // This write rotates; nothing is written after it.
        log.write_messages(Stream::Stdout, &[line.as_bytes()]);
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while sink.reports().is_empty() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let reports = sink.reports();
        assert_eq!(reports.len(), 1, "{reports:?}");
        let JsonFileReport::Warning { error } = &reports[0] else {
            panic!("not a warning: {reports:?}");
        };
        assert!(error.contains("c-json.log.1.gz.tmp"), "{error}");
        assert_eq!(
            std::fs::read_to_string(&victim).expect("victim"),
            "precious"
        );
    }
}
