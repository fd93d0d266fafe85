//! One container's logging session: the FIFO dockerd writes `[u32 BE size][LogEntry]` frames
//! into, read on a thread of its own (a slow FIFO never holds up another container), every
//! entry written into the container's json-file or `local` log by `scribe_io`'s writer.
//!
//! The FIFO is opened `O_RDONLY|O_NONBLOCK` and polled together with an eventfd that
//! StopLogging signals: dockerd wrote everything before it calls StopLogging (its writer holds
//! the lock StopLogging takes), so once stopped, reading until the FIFO is empty reads all.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use scribe_io::drivers::local::{self, LocalOptions};
use scribe_io::drivers::{Partial, PartialId, PartialIds, Record};
use scribe_io::jsonfile::{JsonFileOptions, JsonFileWriter, TagInfo};
use scribe_io::localfmt::EntryRef;
use scribe_io::plugin::frame::decode_frame;
use scribe_io::plugin::proto::Info;
use scribe_io::stream::Stream;

use super::opts::Driver;

/// Log options dockerd itself acts on (or passes to every driver) that the file formats do not
/// use: accepted and left alone.
const DOCKERD_KEYS: [&str; 6] = [
    "mode",
    "max-buffer-size",
    "env",
    "env-regex",
    "labels",
    "labels-regex",
];

/// How much one read of the FIFO takes.
const READ_CHUNK: usize = 256 * 1024;

/// Checks a container id before it names a directory: Docker's ids are 64 hex digits; names
/// other runtimes use are letters, digits, `_`, `.` and `-`, never `.`/`..` or a leading `.`.
pub fn check_container_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= 255
        && !id.starts_with('.')
        && !id.starts_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!("refusing container id {id:?}: not a container id"))
    }
}

/// The container's options: the server's defaults overridden by its `--log-opt`s, checked for
/// the driver (unknown keys refused, as dockerd's own drivers refuse them).
pub fn file_options(
    driver: Driver,
    defaults: &BTreeMap<String, String>,
    config: &BTreeMap<String, String>,
) -> Result<JsonFileOptions, String> {
    let mut merged = defaults.clone();
    merged.extend(config.iter().map(|(k, v)| (k.clone(), v.clone())));
    merged.retain(|k, _| !DOCKERD_KEYS.contains(&k.as_str()));
    match driver {
        Driver::JsonFile => {
            JsonFileOptions::from_pairs(merged.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| format!("json-file: {e}"))
        }
        Driver::Local => {
            if let Some(k) = merged
                .keys()
                .find(|k| !local::OPTION_KEYS.contains(&k.as_str()))
            {
                return Err(format!(
                    "local: unknown log option {k:?}; supported: {}",
                    local::OPTION_KEYS.join(", ")
                ));
            }
            let o = LocalOptions::from_opts(&merged, "").map_err(|e| format!("local: {e}"))?;
            Ok(JsonFileOptions {
                max_size: Some(o.max_size),
                max_file: o.max_file,
                compress: o.compress,
                tag: None,
            })
        }
    }
}

/// Opens the container's log the way the shim lays it out:
/// `<root>/<ns>/<id>/<id>-json.log` or `<root>/<ns>/<id>/local-logs/container.log`.
pub fn open_writer(
    driver: Driver,
    root: &Path,
    ns: &str,
    info: &Info,
    opts: &JsonFileOptions,
) -> Result<JsonFileWriter, String> {
    let id = info.container_id.as_str();
    let w = match driver {
        Driver::JsonFile => {
            let tag = TagInfo {
                container_id: id.to_string(),
                container_name: info.container_name.clone(),
                image_name: info.container_image_name.clone(),
                image_id: info.container_image_id.clone(),
                daemon_name: info.daemon_name.clone(),
            };
            JsonFileWriter::open_under(root, &[ns, id], &format!("{id}-json.log"), opts, &tag)
        }
        Driver::Local => {
            JsonFileWriter::open_local_under(root, &[ns, id, local::DIR], local::FILE, opts)
        }
    };
    w.map_err(|e| format!("container {id}: {e}"))
}

/// Opens the FIFO dockerd created, without blocking and refusing anything that is no FIFO.
pub fn open_fifo(path: &str) -> Result<File, String> {
    if !path.starts_with('/') {
        return Err(format!("FIFO path {path:?} is not absolute"));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| format!("opening FIFO {path}: {e}"))?;
    let ft = f
        .metadata()
        .map_err(|e| format!("fstat FIFO {path}: {e}"))?
        .file_type();
    if !ft.is_fifo() {
        return Err(format!("{path} is not a FIFO"));
    }
    Ok(f)
}

/// Wakes a session's thread (an eventfd).
pub struct Wake {
    fd: OwnedFd,
    stop: AtomicBool,
}

impl Wake {
    /// A new, unsignalled one.
    pub fn new() -> io::Result<Wake> {
        // SAFETY: plain syscall; the fd is owned right after.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Wake {
            // SAFETY: eventfd just returned it and nothing else owns it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            stop: AtomicBool::new(false),
        })
    }

    /// Asks the thread to read what is left and end.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd.
        unsafe {
            libc::write(
                self.fd.as_raw_fd(),
                (&one as *const u64).cast(),
                std::mem::size_of::<u64>(),
            );
        }
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// What a session did, for StopLogging's reply and records.
#[derive(Debug, Default, Clone, Copy)]
pub struct Summary {
    /// Entries written.
    pub entries: u64,
    /// Entries the writer dropped (disk full, ...).
    pub dropped: u64,
    /// Entries that could not be decoded (and everything after a bad size).
    pub bad: u64,
}

/// Writes entries into the container's log.
struct Writer {
    w: JsonFileWriter,
    local: bool,
    ids: PartialIds,
    /// dockerd's id of the split line being written, and ours for it (`local` stores ids).
    split: Option<(String, PartialId)>,
    scratch: Vec<u8>,
    summary: Summary,
    first: Option<Box<dyn FnMut() + Send>>,
}

impl Writer {
    fn entry(&mut self, e: &EntryRef<'_>, container: &str) {
        if let Some(mut f) = self.first.take() {
            f();
        }
        let stream = match e.source {
            "stdout" => Stream::Stdout,
            "stderr" => Stream::Stderr,
            other => {
                self.summary.bad += 1;
                eprintln!("scribe plugin: container {container}: skipping an entry of unknown source {other:?}");
                return;
            }
        };
        // A piece of a split line ends no line, unless it is the last one (Docker's json-file
        // writes the pieces without newline and the last with one).
        let ends_line = !e.partial || e.partial_meta.as_ref().is_some_and(|m| m.last);
        self.scratch.clear();
        self.scratch.extend_from_slice(e.line);
        if ends_line {
            self.scratch.push(b'\n');
        }
        let time = nanos_time(e.time_nano);
        let result = if self.local {
            let partial = e.partial_meta.as_ref().map(|m| {
                let id = match &self.split {
                    Some((theirs, ours)) if theirs == m.id => *ours,
                    _ => {
                        let ours = self.ids.next_id();
                        self.split = Some((m.id.to_string(), ours));
                        ours
                    }
                };
                Partial {
                    id,
                    ordinal: u32::try_from(m.ordinal).unwrap_or(1).max(1),
                    last: m.last,
                }
            });
            let rec = Record {
                line: &self.scratch,
                partial,
            };
            self.w.write_many(stream, &[rec], time)
        } else {
            self.w.write(stream, &self.scratch, time)
        };
        match result {
            Ok(_) => self.summary.entries += 1,
            Err(err) => {
                self.summary.dropped += 1;
                if !err.is_repeat() {
                    eprintln!("scribe plugin: container {container}: {err}");
                }
            }
        }
    }
}

/// Unix nanoseconds as a time (before 1970 too).
pub fn nanos_time(n: i64) -> SystemTime {
    if n >= 0 {
        SystemTime::UNIX_EPOCH + Duration::from_nanos(n as u64)
    } else {
        SystemTime::UNIX_EPOCH - Duration::from_nanos(n.unsigned_abs())
    }
}

/// Reads the FIFO until stopped and drained; `first` runs before the first entry is written.
pub fn pump(
    mut fifo: File,
    wake: Arc<Wake>,
    writer: JsonFileWriter,
    container: String,
    first: Box<dyn FnMut() + Send>,
) -> Summary {
    let local = writer.format() == scribe_io::jsonfile::Format::Local;
    let mut w = Writer {
        w: writer,
        local,
        ids: PartialIds::new(),
        split: None,
        scratch: Vec::new(),
        summary: Summary::default(),
        first: Some(first),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut chunk = vec![0u8; READ_CHUNK];
    // After a bad size the stream is out of step: what follows is read and thrown away.
    let mut broken = false;
    let mut eof = false;
    loop {
        let stopping = wake.stopping();
        // Drain what is there now.
        loop {
            match fifo.read(&mut chunk) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    eof = false;
                    if broken {
                        continue;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let mut used = 0;
                    loop {
                        match decode_frame(&buf[used..]) {
                            Ok(Some((e, len))) => {
                                w.entry(&e, &container);
                                used += len;
                            }
                            Ok(None) => break,
                            Err(err) => {
                                eprintln!("scribe plugin: container {container}: bad frame in the FIFO ({err}); the rest of this stream is discarded");
                                w.summary.bad += 1;
                                broken = true;
                                buf.clear();
                                used = 0;
                                break;
                            }
                        }
                    }
                    buf.drain(..used);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    eprintln!("scribe plugin: container {container}: reading the FIFO: {e}");
                    eof = true;
                    break;
                }
            }
        }
        if stopping {
            break;
        }
        // Wait for data or the stop signal. At end of input (no writer now) only the signal is
        // waited for, with a timeout, so a hung-up FIFO does not spin.
        let mut fds = [
            libc::pollfd {
                fd: wake.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: fifo.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let (n, timeout) = if eof { (1, 200) } else { (2, -1) };
        // SAFETY: `fds` outlives the call and `n` <= its length.
        unsafe { libc::poll(fds.as_mut_ptr(), n, timeout) };
    }
    if !buf.is_empty() && !broken {
        eprintln!(
            "scribe plugin: container {container}: {} bytes of an incomplete frame left in the FIFO at StopLogging",
            buf.len()
        );
        w.summary.bad += 1;
    }
    if let Some(e) = w.w.wait_rotation() {
        eprintln!("scribe plugin: container {container}: {e}");
    }
    w.summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_container_ids() {
        for bad in [
            "", ".", "..", "../x", "a/b", ".hidden", "-rf", "a\0b", "x y", "ü",
        ] {
            assert!(check_container_id(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(256);
        assert!(check_container_id(&long).is_err());
        for good in [
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "web-1",
            "my_container.v2",
        ] {
            check_container_id(good).unwrap();
        }
    }

    #[test]
    fn options_merge_and_check() {
        let defaults: BTreeMap<String, String> =
            [("max-size".to_string(), "1m".to_string())].into();
        let config: BTreeMap<String, String> = [
            ("max-file".to_string(), "3".to_string()),
            ("mode".to_string(), "non-blocking".to_string()),
        ]
        .into();
        let o = file_options(Driver::JsonFile, &defaults, &config).unwrap();
        assert_eq!(o.max_size, Some(1_000_000));
        assert_eq!(o.max_file, 3);
        let over: BTreeMap<String, String> = [("max-size".to_string(), "2k".to_string())].into();
        assert_eq!(
            file_options(Driver::JsonFile, &defaults, &over)
                .unwrap()
                .max_size,
            Some(2_000)
        );
        let bad: BTreeMap<String, String> = [("bogus".to_string(), "1".to_string())].into();
        assert!(file_options(Driver::JsonFile, &defaults, &bad).is_err());
        assert!(file_options(Driver::Local, &defaults, &bad).is_err());
        let o = file_options(Driver::Local, &BTreeMap::new(), &BTreeMap::new()).unwrap();
        assert_eq!(o.max_size, Some(local::DEFAULT_MAX_SIZE));
        assert!(o.compress);
    }
}
