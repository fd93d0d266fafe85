//! The on-disk spool of one output stream whose FIFO reader stopped reading.
//!
//! While containerd's FIFO takes the container's output, the relay writes to it directly. When a
//! write would block (the reader, e.g. an attached `ctr` or a restarting containerd, is not
//! reading), the relay appends the stream's output to a spool file instead and keeps draining the
//! container's pipe; once the FIFO takes data again the spool is replayed into it, in order,
//! before any new output. The file lives under `LogRoot` (disk, not `/run`), in the container's
//! directory, opened through [`SafeDir`] (no link followed), and is removed once it is empty
//! again or the relay ends.
//!
//! The spool takes bytes with `splice(2)` (pipe to file) or one `pwrite(2)` of the relay's own
//! buffer, and replays them through the caller's buffer (the relay's one buffer of the stream):
//! it holds no buffer of its own, and its memory does not grow with its size. Its size is bounded
//! by [`SpoolConfig::max_size`]; when full, the relay either stops reading the container's pipe
//! (the default: the container blocks as on a full pipe) or, with `mode=non-blocking`, drops the
//! oldest spooled bytes, counts them and reports them ([`DriverReporter`], component `spool`).
//!
//! The file is used as a window `[read, write)` of offsets that only grow while it holds data:
//! delivered or dropped bytes before `read` are punched out (`FALLOC_FL_PUNCH_HOLE`), so the disk
//! used stays within the bound, and the file is truncated back to zero each time it empties.

use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{splice, FallocateFlags, SpliceFFlags};
use scribe_safefs::SafeDir;

use crate::drivers::{DriverReport, DriverReporter, DropCounts};
use crate::stream::Stream;

/// `SpoolMaxSize`'s default: room for a busy container's output while containerd restarts.
pub const DEFAULT_SPOOL_MAX_SIZE: u64 = 64 * 1024 * 1024;

/// The `component` of the spool's runtime.log reports.
pub const COMPONENT: &str = "spool";

/// How a container's output relays spool for a FIFO reader that stopped reading.
#[derive(Clone)]
pub struct SpoolConfig {
    /// `LogRoot`: the trusted root, opened by path.
    pub root: PathBuf,
    /// The container's directory below `root` (`[namespace, id]`), walked without following
    /// links; the spool files are created in it.
    pub subdirs: [String; 2],
    /// Bytes one stream may hold on disk (more than 0: 0 means no spooling and no config).
    pub max_size: u64,
    /// Full spool: drop the oldest spooled bytes (`mode=non-blocking`) instead of blocking.
    pub drop_oldest: bool,
    /// Where drops are reported (the container's runtime.log), besides the shim's log.
    pub reporter: Option<Arc<dyn DriverReporter>>,
}

impl std::fmt::Debug for SpoolConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpoolConfig")
            .field("root", &self.root)
            .field("subdirs", &self.subdirs)
            .field("max_size", &self.max_size)
            .field("drop_oldest", &self.drop_oldest)
            .finish()
    }
}

/// Spool files of this shim get distinct names: `.spool-<shim pid>-<n>-<stream>`.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn err(what: &str, name: &OsString, e: impl Into<io::Error>) -> io::Error {
    let e = e.into();
    io::Error::new(
        e.kind(),
        format!("spool {}: {what}: {e}", name.to_string_lossy()),
    )
}

/// One stream's spool file and its window of undelivered bytes.
pub struct Spool {
    dir: SafeDir,
    name: OsString,
    file: File,
    /// Offset of the oldest undelivered byte.
    read: i64,
    /// Offset where the next byte is appended.
    write: i64,
    /// Everything before this offset was punched out already.
    punched: i64,
    max: u64,
    drop_oldest: bool,
    /// Bytes dropped (full spool, non-blocking) in all, and since the last report.
    dropped: u64,
    reported: u64,
    /// Bytes that went through the spool in all.
    spooled: u64,
    /// Bytes the FIFO still held when its last reader closed it (counted in `dropped` too).
    unread: u64,
    reporter: Option<Arc<dyn DriverReporter>>,
    /// What the reports name: the FIFO.
    target: String,
    /// When the FIFO last took replayed bytes.
    taken: Option<std::time::Instant>,
    /// Counts this spool while it exists ([`Spool::count_in`]).
    live: Option<Arc<AtomicUsize>>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("name", &self.name)
            .field("read", &self.read)
            .field("write", &self.write)
            .field("dropped", &self.dropped)
            .finish()
    }
}

impl Spool {
    /// Creates the spool file of `stream` in the container's directory (created if missing);
    /// `target` (the FIFO) is what reports name.
    pub fn create(cfg: &SpoolConfig, stream: Stream, target: &str) -> io::Result<Spool> {
        let root = SafeDir::open_root(&cfg.root, true, 0o755).map_err(io::Error::from)?;
        let dir = root
            .create_dir_all(cfg.subdirs.iter(), 0o755)
            .map_err(io::Error::from)?;
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let stream = match stream {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        };
        let name = OsString::from(format!(".spool-{}-{n}-{stream}", std::process::id()));
        let file = dir.create_excl_rw(&name, 0o600).map_err(io::Error::from)?;
        Ok(Spool {
            dir,
            name,
            file,
            read: 0,
            write: 0,
            punched: 0,
            max: cfg.max_size.max(1),
            drop_oldest: cfg.drop_oldest,
            dropped: 0,
            reported: 0,
            spooled: 0,
            unread: 0,
            reporter: cfg.reporter.clone(),
            target: target.to_string(),
            taken: None,
            live: None,
        })
    }

    /// Counts this spool in `live` until it is dropped (reported, its file removed): the relay's
    /// close at Delete waits for its spools by this count.
    pub fn count_in(&mut self, live: Arc<AtomicUsize>) {
        live.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = self.live.replace(live) {
            old.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Undelivered bytes.
    pub fn len(&self) -> u64 {
        (self.write - self.read) as u64
    }

    /// Whether everything spooled was delivered (or dropped).
    pub fn is_empty(&self) -> bool {
        self.write == self.read
    }

    /// Bytes that can be appended before the spool is full.
    pub fn room(&self) -> u64 {
        self.max.saturating_sub(self.len())
    }

    /// Whether a full spool drops its oldest bytes rather than blocking.
    pub fn drops_oldest(&self) -> bool {
        self.drop_oldest
    }

    /// When the reader last took replayed bytes (`None`: not since the spool was created).
    pub fn last_taken(&self) -> Option<std::time::Instant> {
        self.taken
    }

    /// Bytes dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes that went into the spool so far.
    pub fn spooled(&self) -> u64 {
        self.spooled
    }

    /// Drops the oldest bytes so that `want` bytes (at most the spool's size) fit; returns how
    /// many were dropped. Only for a spool that drops ([`Spool::drops_oldest`]).
    pub fn make_room(&mut self, want: u64) -> u64 {
        let want = want.min(self.max);
        let room = self.room();
        if room >= want {
            return 0;
        }
        let drop = (want - room).min(self.len());
        if self.dropped == self.reported && drop > 0 {
            let msg = format!(
                "spool of {} full ({} bytes): dropping its oldest bytes (mode=non-blocking)",
                self.target, self.max
            );
            log::warn!("{msg}");
            if let Some(r) = &self.reporter {
                r.report(
                    COMPONENT,
                    &self.target,
                    DriverReport::Dropping { error: msg },
                );
            }
        }
        self.read += drop as i64;
        self.dropped += drop;
        self.after_read();
        drop
    }

    /// Counts `n` bytes that reached the FIFO but that no reader will read (its last reader
    /// closed it with them still queued, e.g. `ctr` cancelling its copy before Delete) as
    /// dropped: they were written, yet never delivered, and must not be lost silently.
    pub fn lost_in_fifo(&mut self, n: u64) {
        self.dropped += n;
        self.unread += n;
    }

    /// Counts `n` bytes of output that never reached the spool or the FIFO (the process was
    /// deleted while they waited for room) as dropped.
    pub fn lost_before(&mut self, n: u64) {
        self.dropped += n;
    }

    /// Appends all of `buf` (the caller made room) with `pwrite(2)`.
    pub fn append(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            match nix::sys::uio::pwrite(self.file.as_fd(), buf, self.write) {
                Ok(0) => return Err(err("pwrite", &self.name, io::ErrorKind::WriteZero)),
                Ok(n) => {
                    buf = &buf[n..];
                    self.write += n as i64;
                    self.spooled += n as u64;
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(err("pwrite", &self.name, e)),
            }
        }
        Ok(())
    }

    /// Moves up to `len` bytes from pipe `rx` into the spool (`splice(2)`, non-blocking). `Ok(0)`:
    /// EOF on `rx`; `WouldBlock`: `rx` is empty.
    pub fn splice_in(&mut self, rx: &impl AsFd, len: usize) -> io::Result<usize> {
        let len = len.min(self.room() as usize).max(1);
        let mut off = self.write;
        loop {
            match splice(
                rx.as_fd(),
                None,
                self.file.as_fd(),
                Some(&mut off),
                len,
                SpliceFFlags::SPLICE_F_MOVE | SpliceFFlags::SPLICE_F_NONBLOCK,
            ) {
                Ok(n) => {
                    self.write = off;
                    self.spooled += n as u64;
                    return Ok(n);
                }
                Err(Errno::EINTR) => {}
                Err(e) => return Err(err("splice from the container's pipe", &self.name, e)),
            }
        }
    }

    /// Replays the oldest spooled bytes (up to `len`, and up to `buf`'s size) into pipe `tx`,
    /// which must be non-blocking, copying through `buf`; returns how many moved. `WouldBlock`:
    /// `tx` is full.
    ///
    /// A copy through the caller's buffer, not `splice(2)`: a spliced page stays the file's
    /// page while it sits in the FIFO, and the truncation or hole punching that frees the
    /// spool's disk would take it from the reader (the kernel drops truncated pages from a
    /// pipe). The buffer is the caller's (the relay's buffer of the stream, idle while it
    /// replays), so that a spooling stream holds one buffer, not two.
    pub fn replay_to(&mut self, tx: &impl AsFd, len: usize, buf: &mut [u8]) -> io::Result<usize> {
        let len = len.min(self.len() as usize).min(buf.len());
        if len == 0 {
            return Ok(0);
        }
        let got = loop {
            match nix::sys::uio::pread(self.file.as_fd(), &mut buf[..len], self.read) {
                Ok(0) => return Err(err("pread", &self.name, io::ErrorKind::UnexpectedEof)),
                Ok(n) => break n,
                Err(Errno::EINTR) => {}
                Err(e) => return Err(err("pread", &self.name, e)),
            }
        };
        let wrote = loop {
            match nix::unistd::write(tx.as_fd(), &buf[..got]) {
                Ok(n) => break n,
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Err(io::ErrorKind::WouldBlock.into()),
                Err(e) => return Err(err("write to the FIFO", &self.name, e)),
            }
        };
        self.read += wrote as i64;
        if wrote > 0 {
            self.taken = Some(std::time::Instant::now());
        }
        self.after_read();
        Ok(wrote)
    }

    /// After `read` moved: an empty spool starts over at offset 0; otherwise whole blocks
    /// before `read` are punched out so that the disk holds only undelivered bytes.
    fn after_read(&mut self) {
        if self.is_empty() {
            if self.file.set_len(0).is_ok() {
                self.read = 0;
                self.write = 0;
                self.punched = 0;
            }
            return;
        }
        const BLOCK: i64 = 1024 * 1024;
        let upto = self.read - self.read % BLOCK;
        if upto > self.punched {
            // Best effort: a file system without hole punching keeps the blocks until the spool
            // empties.
            let _ = nix::fcntl::fallocate(
                self.file.as_raw_fd(),
                FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE,
                self.punched,
                upto - self.punched,
            );
            self.punched = upto;
        }
    }

    /// Reports the drops not yet reported (at the end of the stream, or when the spool is
    /// discarded with bytes still in it, which count as dropped too).
    pub fn close(&mut self) {
        let left = self.len();
        if left > 0 {
            self.dropped += left;
            self.read = self.write;
        }
        if self.dropped == self.reported {
            return;
        }
        let unreported = self.dropped - self.reported;
        log::warn!(
            "spool of {}: {} bytes of container output were dropped in all ({left} still spooled when the output was closed, {} left unread in the FIFO by its last reader)",
            self.target,
            self.dropped,
            self.unread
        );
        if let Some(r) = &self.reporter {
            r.report(
                COMPONENT,
                &self.target,
                DriverReport::Closed {
                    unreported: DropCounts {
                        entries: 0,
                        bytes: unreported,
                    },
                    total: DropCounts {
                        entries: 0,
                        bytes: self.dropped,
                    },
                    still_dropping: left > 0 || self.unread > 0,
                },
            );
        }
        self.reported = self.dropped;
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        self.close();
        if let Err(e) = self.dir.remove(&self.name) {
            log::warn!(
                "removing spool {} of {}: {e}",
                self.name.to_string_lossy(),
                self.target
            );
        }
        if let Some(live) = &self.live {
            live.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::fd::OwnedFd;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Reports(Mutex<Vec<DriverReport>>);
    impl DriverReporter for Reports {
        fn report(&self, driver: &str, _target: &str, report: DriverReport) {
            assert_eq!(driver, COMPONENT);
            self.0.lock().unwrap().push(report);
        }
    }

    fn cfg(root: &std::path::Path, max: u64, drop_oldest: bool, r: Arc<Reports>) -> SpoolConfig {
        SpoolConfig {
            root: root.to_path_buf(),
            subdirs: ["ns".into(), "c".into()],
            max_size: max,
            drop_oldest,
            reporter: Some(r),
        }
    }

    fn pipe() -> (File, File) {
        let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
        (File::from(r), File::from(w))
    }

    fn files(root: &std::path::Path) -> Vec<String> {
        std::fs::read_dir(root.join("ns/c"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    /// Appends (pwrite and splice) and replays come out in order, exactly once; the file is
    /// emptied when delivered and removed when dropped.
    #[test]
    fn append_and_replay_in_order() {
        let t = tempfile::tempdir().unwrap();
        let reports = Arc::new(Reports::default());
        let mut s = Spool::create(
            &cfg(t.path(), 1 << 20, false, reports.clone()),
            Stream::Stdout,
            "/f",
        )
        .unwrap();
        assert_eq!(files(t.path()).len(), 1);
        s.append(b"one\n").unwrap();
        let (r, mut w) = pipe();
        w.write_all(b"two\nthree\n").unwrap();
        assert_eq!(s.splice_in(&r, 4).unwrap(), 4);
        assert_eq!(s.splice_in(&r, 100).unwrap(), 6);
        s.append(b"four\n").unwrap();
        assert_eq!(s.len(), 19);
        let (out_r, out_w) = pipe();
        let mut moved = 0;
        while !s.is_empty() {
            moved += s.replay_to(&out_w, 3, &mut [0u8; 8]).unwrap();
        }
        assert_eq!(moved, 19);
        assert_eq!(s.spooled(), 19);
        // Emptied: the file starts over.
        assert_eq!(s.len(), 0);
        assert_eq!(s.file.metadata().unwrap().len(), 0);
        s.append(b"five\n").unwrap();
        assert_eq!(s.replay_to(&out_w, 100, &mut [0u8; 64]).unwrap(), 5);
        drop((out_w, w));
        let mut got = String::new();
        (&out_r).read_to_string(&mut got).unwrap();
        assert_eq!(got, "one\ntwo\nthree\nfour\nfive\n");
        drop(s);
        assert!(files(t.path()).is_empty(), "{:?}", files(t.path()));
        assert!(reports.0.lock().unwrap().is_empty());
    }

    /// A full pipe makes replay return WouldBlock without losing the spool's bytes.
    #[test]
    fn replay_to_a_full_pipe_would_block() {
        let t = tempfile::tempdir().unwrap();
        let mut s = Spool::create(
            &cfg(t.path(), 1 << 20, false, Arc::default()),
            Stream::Stderr,
            "/f",
        )
        .unwrap();
        let (r, w) = pipe();
        nix::fcntl::fcntl(
            w.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .unwrap();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut buf = vec![0u8; 32 * 1024];
        s.append(&big).unwrap();
        let mut moved = 0;
        loop {
            match s.replay_to(&w, 1 << 20, &mut buf) {
                Ok(n) => moved += n,
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    break;
                }
            }
        }
        assert!(moved > 0 && moved < big.len());
        assert_eq!(s.len() as usize, big.len() - moved);
        // The reader reads everything; the rest follows, in order.
        let reader = std::thread::spawn(move || {
            let mut v = Vec::new();
            (&r).read_to_end(&mut v).unwrap();
            v
        });
        while !s.is_empty() {
            match s.replay_to(&w, 1 << 20, &mut buf) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(1))
                }
                Err(e) => panic!("{e}"),
            }
        }
        drop(w);
        assert_eq!(reader.join().unwrap(), big);
    }

    /// Full spool, blocking: no room, nothing dropped (the relay stops reading).
    #[test]
    fn full_spool_that_blocks_has_no_room_and_drops_nothing() {
        let t = tempfile::tempdir().unwrap();
        let reports = Arc::new(Reports::default());
        let mut s = Spool::create(
            &cfg(t.path(), 10, false, reports.clone()),
            Stream::Stdout,
            "/f",
        )
        .unwrap();
        s.append(b"0123456789").unwrap();
        assert_eq!(s.room(), 0);
        assert!(!s.drops_oldest());
        assert_eq!(s.dropped(), 0);
        let (out_r, out_w) = pipe();
        assert_eq!(s.replay_to(&out_w, 4, &mut [0u8; 64]).unwrap(), 4);
        assert_eq!(s.room(), 4);
        s.append(b"abcd").unwrap();
        while !s.is_empty() {
            s.replay_to(&out_w, 100, &mut [0u8; 64]).unwrap();
        }
        drop(out_w);
        let mut got = String::new();
        (&out_r).read_to_string(&mut got).unwrap();
        assert_eq!(got, "0123456789abcd");
        drop(s);
        assert!(reports.0.lock().unwrap().is_empty());
    }

    /// Full spool, non-blocking: the oldest bytes go, counted exactly, reported once when it
    /// starts and once at the end with the total.
    #[test]
    fn full_spool_that_drops_drops_the_oldest_and_counts() {
        let t = tempfile::tempdir().unwrap();
        let reports = Arc::new(Reports::default());
        let mut s = Spool::create(
            &cfg(t.path(), 10, true, reports.clone()),
            Stream::Stdout,
            "/f",
        )
        .unwrap();
        s.append(b"0123456789").unwrap();
        assert_eq!(s.make_room(4), 4);
        s.append(b"abcd").unwrap();
        assert_eq!(s.make_room(3), 3);
        s.append(b"xyz").unwrap();
        assert_eq!(s.dropped(), 7);
        let (out_r, out_w) = pipe();
        while !s.is_empty() {
            s.replay_to(&out_w, 100, &mut [0u8; 64]).unwrap();
        }
        drop(out_w);
        let mut got = String::new();
        (&out_r).read_to_string(&mut got).unwrap();
        assert_eq!(got, "789abcdxyz");
        s.close();
        let r = reports.0.lock().unwrap().clone();
        assert_eq!(r.len(), 2, "{r:?}");
        assert!(matches!(r[0], DriverReport::Dropping { .. }), "{r:?}");
        assert_eq!(
            r[1],
            DriverReport::Closed {
                unreported: DropCounts {
                    entries: 0,
                    bytes: 7
                },
                total: DropCounts {
                    entries: 0,
                    bytes: 7
                },
                still_dropping: false,
            }
        );
    }

    /// A spool discarded with bytes in it (the container was deleted before its reader came
    /// back) counts them as dropped and removes its file.
    #[test]
    fn discarded_spool_reports_what_it_held() {
        let t = tempfile::tempdir().unwrap();
        let reports = Arc::new(Reports::default());
        let mut s = Spool::create(
            &cfg(t.path(), 100, false, reports.clone()),
            Stream::Stdout,
            "/f",
        )
        .unwrap();
        s.append(b"never read\n").unwrap();
        drop(s);
        assert!(files(t.path()).is_empty());
        let r = reports.0.lock().unwrap().clone();
        assert!(
            matches!(&r[..], [DriverReport::Closed { total, still_dropping: true, .. }] if total.bytes == 11),
            "{r:?}"
        );
    }

    /// A link planted at the container's directory is refused.
    #[test]
    fn refuses_a_linked_directory() {
        let t = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("ns")).unwrap();
        std::os::unix::fs::symlink(other.path(), t.path().join("ns/c")).unwrap();
        let e = Spool::create(
            &cfg(t.path(), 100, false, Arc::default()),
            Stream::Stdout,
            "/f",
        )
        .unwrap_err();
        assert!(!e.to_string().is_empty());
        assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
    }

    /// At close, bytes the FIFO's last reader left unread and bytes that never reached the
    /// spool count as dropped beside the spool's own drops and rest: one total, reported once.
    #[test]
    fn close_counts_what_the_fifo_and_the_spool_still_held() {
        let t = tempfile::tempdir().unwrap();
        let reports = Arc::new(Reports::default());
        let mut s = Spool::create(
            &cfg(t.path(), 10, true, reports.clone()),
            Stream::Stdout,
            "/f",
        )
        .unwrap();
        s.append(b"0123456789").unwrap();
        assert_eq!(s.make_room(4), 4);
        s.append(b"abcd").unwrap();
        s.lost_in_fifo(100);
        s.lost_before(7);
        assert_eq!(s.dropped(), 111);
        drop(s);
        let r = reports.0.lock().unwrap().clone();
        assert!(matches!(r[0], DriverReport::Dropping { .. }), "{r:?}");
        assert_eq!(
            r[1],
            DriverReport::Closed {
                unreported: DropCounts {
                    entries: 0,
                    bytes: 121
                },
                total: DropCounts {
                    entries: 0,
                    bytes: 121
                },
                still_dropping: true,
            }
        );
        assert_eq!(r.len(), 2, "{r:?}");
    }
}
