//! The relay between a container process's stdio pipes and containerd's FIFOs.
//!
//! The runtime gets plain pipes; the shim copies them to the destinations containerd named.
//! For each stdout/stderr FIFO the shim also holds a read end open, so that when containerd (the
//! usual reader) restarts, the container's writes block as on a full pipe instead of failing with
//! SIGPIPE. stdin is read from its FIFO and copied into the container's stdin pipe; EOF there (or
//! `close_stdin`) closes the container's stdin.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::unistd::pipe2;
use std::os::fd::AsRawFd;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::binary::{BinaryLogger, DEFAULT_READY_TIMEOUT};
use crate::drivers::feed::DriverFeed;
pub use crate::drivers::json_file::JsonLog;
pub use crate::drivers::Drivers;
use crate::relay::{splice_some, CHUNK};
use crate::spool::{Spool, SpoolConfig};
use crate::stream::Stream;
use crate::uri::StdioUri;

/// Bytes moved per read; a compromise between syscalls per MiB and resident memory per stream.
///
/// A stream's relay holds exactly one buffer of this size, whatever it does: the copy loops
/// (log drivers attached, a terminal, a file) read the container's output into it, and a
/// spool replays through the same buffer (the loops do not read while they replay, and read no
/// more than the spool can take, so bytes read are never waiting in the buffer for a replay).
/// The zero-copy path allocates it only when its spool first replays.
const RELAY_BUF: usize = 32 * 1024;

/// The ends of the process's stdio that the runtime passes to the container (fds 0, 1, 2).
/// `None` means the stream was not asked for: give the container /dev/null.
#[derive(Debug, Default)]
pub struct ContainerEnds {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

/// What containerd asked for a process's stdio, and who the process is.
#[derive(Debug, Clone, Copy)]
pub struct StdioSpec<'a> {
    pub stdin: &'a str,
    pub stdout: &'a str,
    pub stderr: &'a str,
    pub id: &'a str,
    pub namespace: &'a str,
    /// Spooling for FIFOs whose reader stops reading (`None`: `SpoolMaxSize` 0, a full FIFO
    /// blocks the container, or is shed when a driver keeps every byte).
    pub spool: Option<&'a SpoolConfig>,
}

/// The running copies of one process's stdio.
#[derive(Debug, Default)]
pub struct Relay {
    outputs: Vec<JoinHandle<()>>,
    stdin: Option<JoinHandle<()>>,
    logger: Option<BinaryLogger>,
    console: Option<std::sync::Arc<AsyncFd<OwnedFd>>>,
    /// The log drivers the outputs feed, to wait for them in [`Relay::drain`].
    drivers: Drivers,
    /// Set by [`Relay::close`] (the process is deleted; the value is the grace the outputs get
    /// to finish a replay a reader is reading) or dropped with the relay (no grace): outputs then
    /// stop waiting for a FIFO reader, count what no reader will take and let their FIFOs go.
    deleted: Option<watch::Sender<Option<Duration>>>,
    /// The outputs' spools that exist ([`Spool::count_in`]): [`Relay::close`] waits for them.
    spools: Arc<AtomicUsize>,
    /// Bytes the outputs' spools replayed into their FIFOs: [`Relay::drain_replaying`] keeps
    /// waiting while this grows.
    replayed: Arc<std::sync::atomic::AtomicU64>,
}

fn ctx(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn new_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC)
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("pipe2: {e}")))
}

/// Where a stream's bytes go.
enum Sink {
    /// A FIFO, with the read end we hold to keep it from breaking when its reader goes away
    /// (let go once the process is deleted, so that a FIFO without a reader shows).
    Fifo {
        tx: pipe::Sender,
        hold: Option<File>,
    },
    /// A pipe to a logging binary (when the bytes also feed log drivers).
    Pipe(pipe::Sender),
    /// A regular file, appended to.
    File(File),
}

impl Sink {
    /// Opens what containerd named for an output stream: `None` when it named nothing.
    fn for_uri(uri: &StdioUri) -> io::Result<Option<Sink>> {
        match uri {
            StdioUri::None | StdioUri::Binary(_) => Ok(None),
            StdioUri::Fifo(path) => Sink::open(path).map(Some),
            StdioUri::File(path) => Sink::open_file(path).map(Some),
        }
    }

    /// `file://` destinations: parents 0755, the file 0644, appended to. The directories are
    /// the user's choice; the file itself is opened through its directory's fd with
    /// `O_NOFOLLOW` and must be a regular file, so a link (or FIFO) planted at the name is refused.
    fn open_file(path: &Path) -> io::Result<Sink> {
        scribe_safefs::open_append_last_component(path, 0o755, 0o644)
            .map(Sink::File)
            .map_err(io::Error::from)
    }

    fn open(path: &Path) -> io::Result<Sink> {
        let is_fifo = match std::fs::metadata(path) {
            Ok(m) => m.file_type().is_fifo(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => return Err(ctx(e, "stat", path)),
        };
        if !is_fifo {
            let file = OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o644)
                .open(path)
                .map_err(|e| ctx(e, "open", path))?;
            return Ok(Sink::File(file));
        }
        let hold = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| ctx(e, "open for reading", path))?;
        let tx = pipe::OpenOptions::new()
            .open_sender(path)
            .map_err(|e| ctx(e, "open for writing", path))?;
        Ok(Sink::Fifo {
            tx,
            hold: Some(hold),
        })
    }

    async fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Sink::Fifo { tx, .. } | Sink::Pipe(tx) => tx.write_all(buf).await,
            Sink::File(f) => f.write_all(buf),
        }
    }
}

impl Relay {
    /// Opens the destinations containerd named (empty = none; a FIFO or file path, `file://`,
    /// `binary://` / `binary-v2://` logging binaries) and starts copying. With `drivers`, both
    /// output streams are also framed into messages once and handed to every driver (and are
    /// captured even when containerd named no destination for them). `id` and `namespace` are
    /// what a logging binary is told.
    ///
    /// Must run inside the shim's tokio runtime. On error nothing is left running.
    pub async fn start(
        stdio: &StdioSpec<'_>,
        drivers: Drivers,
    ) -> io::Result<(ContainerEnds, Relay)> {
        let (stdin, stdout, stderr) = (stdio.stdin, stdio.stdout, stdio.stderr);
        let parse = |spec: &str| {
            StdioUri::parse(spec)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))
        };
        let uris = [parse(stdout)?, parse(stderr)?];
        let mut ends = ContainerEnds::default();
        let mut relay = Relay::default();
        let (deleted_tx, deleted) = watch::channel(None);
        relay.deleted = Some(deleted_tx);
        let framed = !drivers.is_empty();
        relay.drivers = drivers.clone();
        // containerd names the same logging binary for both streams; one logger serves both.
        let mut logger_ends = [None, None];
        if let Some(b) = uris.iter().find_map(|u| match u {
            StdioUri::Binary(b) => Some(b),
            _ => None,
        }) {
            let (logger, pipes) =
                BinaryLogger::start(b, stdio.id, stdio.namespace, DEFAULT_READY_TIMEOUT).await?;
            relay.logger = Some(logger);
            for (slot, (uri, fd)) in logger_ends
                .iter_mut()
                .zip(uris.iter().zip([pipes.stdout, pipes.stderr]))
            {
                if matches!(uri, StdioUri::Binary(_)) {
                    *slot = Some(fd);
                }
            }
        }
        for ((uri, stream), logger_end) in uris
            .iter()
            .zip([Stream::Stdout, Stream::Stderr])
            .zip(logger_ends)
        {
            let spec = if stream == Stream::Stdout {
                stdout
            } else {
                stderr
            };
            let path = Path::new(spec);
            let slot = match stream {
                Stream::Stdout => &mut ends.stdout,
                Stream::Stderr => &mut ends.stderr,
            };
            let sink = match (logger_end, framed) {
                // Nothing to transform: the container writes straight into the logger's pipe.
                (Some(fd), false) => {
                    *slot = Some(fd);
                    continue;
                }
                (Some(fd), true) => Some(Sink::Pipe(
                    pipe::Sender::from_owned_fd(fd)
                        .map_err(|e| ctx(e, "watching logger pipe for", path))?,
                )),
                (None, _) => Sink::for_uri(uri)?,
            };
            if sink.is_none() && !framed {
                continue;
            }
            let (r, w) = new_pipe()?;
            let rx =
                pipe::Receiver::from_owned_fd(r).map_err(|e| ctx(e, "watching pipe for", path))?;
            *slot = Some(w);
            let out = Output {
                sink,
                feed: DriverFeed::new(&drivers, stream),
                keeps_all: drivers.reads_back(),
                container: stdio.id.to_string(),
                name: if spec.is_empty() {
                    format!("{stream:?}")
                } else {
                    spec.to_string()
                },
                shed: 0,
                spool: SpoolState::new(
                    stdio.spool,
                    stream,
                    drivers.reads_back(),
                    relay.spools.clone(),
                ),
                deleted: deleted.clone(),
                replayed: relay.replayed.clone(),
            };
            relay.outputs.push(tokio::spawn(relay_output(rx, out)));
        }
        if !stdin.is_empty() {
            let path = Path::new(stdin);
            let src = pipe::OpenOptions::new()
                .open_receiver(path)
                .map_err(|e| ctx(e, "open for reading", path))?;
            let (r, w) = new_pipe()?;
            let tx =
                pipe::Sender::from_owned_fd(w).map_err(|e| ctx(e, "watching pipe for", path))?;
            ends.stdin = Some(r);
            relay.stdin = Some(tokio::spawn(copy_in(src, tx)));
        }
        Ok((ends, relay))
    }

    /// Copies between a terminal's pty master and containerd's FIFOs (stdin in, output to
    /// stdout: a terminal has no separate stderr), feeding `drivers` as stdout.
    pub fn start_console(
        master: OwnedFd,
        stdio: &StdioSpec<'_>,
        drivers: Drivers,
    ) -> io::Result<Relay> {
        let uri = StdioUri::parse(stdio.stdout)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        if matches!(uri, StdioUri::Binary(_)) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a logging binary cannot take a terminal's output in this Scribe build",
            ));
        }
        let sink = Sink::for_uri(&uri)?;
        nix::fcntl::fcntl(
            master.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK | OFlag::O_RDWR),
        )
        .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("fcntl pty master: {e}")))?;
        // SAFETY: the AsyncFd owns `master` (an OwnedFd), so the descriptor stays open and the same
        // for the AsyncFd's whole life.
        let master = unsafe { AsyncFd::register(master) }.map_err(|e| {
            let e = io::Error::from(e);
            io::Error::new(e.kind(), format!("watching pty master: {e}"))
        })?;
        let master = std::sync::Arc::new(master);
        let mut relay = Relay::default();
        let (deleted_tx, deleted) = watch::channel(None);
        relay.deleted = Some(deleted_tx);
        let out = Output {
            sink,
            feed: DriverFeed::new(&drivers, Stream::Stdout),
            keeps_all: drivers.reads_back(),
            container: stdio.id.to_string(),
            name: format!("terminal of {}", stdio.id),
            shed: 0,
            spool: SpoolState::new(
                stdio.spool,
                Stream::Stdout,
                drivers.reads_back(),
                relay.spools.clone(),
            ),
            deleted,
            replayed: relay.replayed.clone(),
        };
        relay.drivers = drivers;
        relay
            .outputs
            .push(tokio::spawn(copy_pty_out(master.clone(), out)));
        if !stdio.stdin.is_empty() {
            let path = Path::new(stdio.stdin);
            let src = pipe::OpenOptions::new()
                .open_receiver(path)
                .map_err(|e| ctx(e, "open for reading", path))?;
            relay.stdin = Some(tokio::spawn(copy_pty_in(src, master.clone())));
        }
        relay.console = Some(master);
        Ok(relay)
    }

    /// Sets the terminal's window size; an error when the process has no terminal.
    pub fn resize(&self, width: u32, height: u32) -> io::Result<()> {
        let master = self.console.as_ref().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the process has no terminal")
        })?;
        let clamp = |v: u32| u16::try_from(v).unwrap_or(u16::MAX);
        crate::console::resize(master.get_ref(), clamp(width), clamp(height))
    }

    /// Takes the logging binary, if any, so the caller can stop it once the process is deleted.
    pub fn take_logger(&mut self) -> Option<BinaryLogger> {
        self.logger.take()
    }

    /// Closes the container's stdin (containerd's CloseIO, or the process is gone).
    pub fn close_stdin(&mut self) {
        if let Some(task) = self.stdin.take() {
            task.abort();
        }
    }

    /// Waits until every output stream reached EOF (the process and everything that inherited its
    /// stdio exited) or `limit` passed; returns whether all finished. Copies that did not finish
    /// keep running, so late bytes are still delivered.
    pub async fn drain(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        let mut all = true;
        for task in &mut self.outputs {
            // Finished (and perhaps awaited by an earlier call: a JoinHandle is polled to its
            // end only once).
            if task.is_finished() {
                continue;
            }
            if tokio::time::timeout_at(deadline, &mut *task).await.is_err() {
                all = false;
            }
        }
        if all {
            self.outputs.clear();
            // Every message is with the drivers; let them deliver it (a background rotation
            // gives the files their final names, a network driver sends what it queued), within
            // the same limit: a driver never holds the exit up for long.
            let _ = tokio::time::timeout_at(deadline, self.drivers.drain()).await;
        }
        all
    }

    /// The process is being deleted: closes its stdin and tells its outputs, which then replay
    /// what their spools still hold to a FIFO reader that is reading, for at most `grace`, count
    /// what no reader will take (the spool's rest, and what the FIFO holds once no reader has it
    /// open) as dropped, report it, and let the FIFOs go. Waits for their spools to be gone (a
    /// little longer than `grace` at most), so that the drops are reported and the spool files
    /// removed when Delete answers.
    pub async fn close(&mut self, grace: Duration) {
        self.close_stdin();
        if let Some(deleted) = self.deleted.take() {
            deleted.send_replace(Some(grace));
        }
        // Outputs without a spool have nothing to settle (one a stray process keeps writing
        // to goes on copying): only the spools are waited for.
        let deadline = tokio::time::Instant::now() + grace + CLOSE_MARGIN;
        while self.spools.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(CLOSE_POLL).await;
        }
    }
}

impl Relay {
    /// Like [`Relay::drain`], but keeps waiting, up to `max` in all, while the outputs' spools
    /// replay into their FIFOs (some bytes replayed in each `stall`): a reader that came back
    /// and is reading a large spool gets all of it before the exit is published (`ctr` closes
    /// its FIFOs once it sees the exit), while a reader that is not reading, or a stray process
    /// holding the pipes, costs no more than `stall`.
    pub async fn drain_replaying(&mut self, stall: Duration, max: Duration) -> bool {
        let end = tokio::time::Instant::now() + max;
        loop {
            let before = self.replayed.load(Ordering::Relaxed);
            let left = end.saturating_duration_since(tokio::time::Instant::now());
            if self.drain(stall.min(left)).await {
                return true;
            }
            if self.replayed.load(Ordering::Relaxed) == before || tokio::time::Instant::now() >= end
            {
                return false;
            }
        }
    }
}

/// How much longer than its grace [`Relay::close`] waits for the outputs' spools.
const CLOSE_MARGIN: Duration = Duration::from_millis(500);
/// How often [`Relay::close`] looks whether the spools are gone.
const CLOSE_POLL: Duration = Duration::from_millis(2);

impl Drop for Relay {
    fn drop(&mut self) {
        self.close_stdin();
    }
}

/// One output stream's destinations.
struct Output {
    sink: Option<Sink>,
    /// The stream's framer and the drivers it feeds (`None`: no driver).
    feed: Option<DriverFeed>,
    /// Some driver keeps every message for reading back: a FIFO nobody reads may be shed.
    keeps_all: bool,
    name: String,
    /// The container whose output this is: its log lines carry it as the `container` key, so that
    /// a shim serving a pod writes them to that container's runtime.log only.
    container: String,
    /// Bytes dropped from a FIFO nobody read (see `write_or_shed`).
    shed: u64,
    /// The FIFO's spool, when spooling is on.
    spool: SpoolState,
    /// Changes when the process is deleted ([`Relay::close`], or its [`Relay`] dropped).
    deleted: watch::Receiver<Option<Duration>>,
    /// The relay's count of replayed bytes ([`Relay::drain_replaying`]).
    replayed: Arc<std::sync::atomic::AtomicU64>,
}

/// A FIFO destination's spool: created at the first write that would block.
enum SpoolState {
    /// Spooling is off (or the destination is no FIFO).
    Off,
    /// On, nothing spooled yet; the spool, once created, is counted in the relay's spools.
    Ready(SpoolConfig, Stream, Arc<AtomicUsize>),
    On(Spool),
    /// Creating the spool failed (reported once): the FIFO blocks as without spooling.
    Failed,
}

impl SpoolState {
    /// `keeps_all`: a log driver keeps every message for reading back (json-file, local, the
    /// cache). Then a full spool drops its oldest bytes whatever the mode: the log still has
    /// them, and a FIFO nobody will ever read (`ctr run -d`) must not block the container once
    /// the spool is full, as it did not before spooling (the 2 s shedding).
    fn new(
        cfg: Option<&SpoolConfig>,
        stream: Stream,
        keeps_all: bool,
        live: Arc<AtomicUsize>,
    ) -> SpoolState {
        match cfg {
            Some(c) if c.max_size > 0 => {
                let mut c = c.clone();
                c.drop_oldest |= keeps_all;
                SpoolState::Ready(c, stream, live)
            }
            _ => SpoolState::Off,
        }
    }

    fn active(&self) -> bool {
        matches!(self, SpoolState::Ready(..) | SpoolState::On(_))
    }

    /// Bytes waiting in the spool for the FIFO.
    fn pending(&self) -> bool {
        matches!(self, SpoolState::On(s) if !s.is_empty())
    }

    /// How many bytes a copy loop with a `cap`-byte buffer may read from the container now: no
    /// more than a spool that blocks when full can still take, so that whatever is read goes
    /// to the FIFO or the spool at once and the buffer is free to replay through. 0: the spool
    /// is full, only replaying (the reader reading) makes room; the container waits meanwhile,
    /// as on a full pipe.
    fn read_limit(&self, cap: usize) -> usize {
        let room = match self {
            SpoolState::Ready(cfg, _, _) if !cfg.drop_oldest => cfg.max_size,
            SpoolState::On(s) if !s.drops_oldest() => s.room(),
            _ => return cap,
        };
        usize::try_from(room).unwrap_or(usize::MAX).min(cap)
    }

    /// The spool, created now if needed; `None` when off or failed.
    fn get(&mut self, name: &str, container: &str) -> Option<&mut Spool> {
        if let SpoolState::Ready(cfg, stream, live) = self {
            *self = match Spool::create(cfg, *stream, name) {
                Ok(mut s) => {
                    s.count_in(live.clone());
                    log::info!(
                        container;
                        "{name}: the reader is not reading: spooling its output to disk (up to {} bytes)",
                        cfg.max_size
                    );
                    SpoolState::On(s)
                }
                Err(e) => {
                    log::error!(
                        container;
                        "{name}: cannot create the spool ({e}): the container blocks while nobody reads"
                    );
                    SpoolState::Failed
                }
            };
        }
        match self {
            SpoolState::On(s) => Some(s),
            _ => None,
        }
    }
}

/// Replays one step of `spool` into the FIFO `tx` once it has room, copying through `buf` (the
/// stream's relay buffer); returns the bytes replayed. An error when the process was deleted
/// first (the output then settles its FIFO: [`Output::finish_deleted`]).
async fn replay_step(
    tx: &pipe::Sender,
    spool: &mut Spool,
    deleted: &mut watch::Receiver<Option<Duration>>,
    buf: &mut [u8],
) -> io::Result<usize> {
    tokio::select! {
        r = tx.writable() => r?,
        _ = deleted.changed() => {
            return Err(io::Error::other(
                "the process was deleted before its reader came back",
            ))
        }
    }
    // As much as the FIFO takes now (bounded, so that the container's pipe is read too).
    let mut moved = 0;
    while moved < REPLAY_BURST && !spool.is_empty() {
        match spool.replay_to(tx, CHUNK, buf) {
            Ok(n) => moved += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let _ = tx.try_io(|| Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock)));
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(moved)
}

/// Bytes replayed per wake-up at most.
const REPLAY_BURST: usize = 1024 * 1024;

/// How long a full FIFO may keep the relay waiting before the output goes to the spool: a
/// reader that is only a little slower than the container drains it well within this, and the
/// bytes then take the zero-copy path; a reader that stopped costs the container at most this.
const SPOOL_AFTER: Duration = Duration::from_millis(20);

/// Waits up to [`SPOOL_AFTER`] for the full FIFO `tx` to take data again; false when it did
/// not (its reader is not reading: spool).
async fn fifo_drains_soon(tx: &pipe::Sender) -> io::Result<bool> {
    match tokio::time::timeout(SPOOL_AFTER, tx.writable()).await {
        Ok(r) => r.map(|_| true),
        Err(_) => Ok(false),
    }
}

/// Writes `buf` to the FIFO `tx` as far as it takes it now; the rest (and everything while the
/// spool holds older bytes) is appended to the spool. A full spool drops its oldest bytes when
/// it may; one that blocks never gets more than it has room for (the copy loops read no more,
/// [`SpoolState::read_limit`]). When the spool cannot be created or written, the FIFO is
/// written as a pipe would be, after what the spool held.
///
/// Replaying here, with `buf` (the relay's buffer) still holding unspooled bytes, needs a second
/// buffer: it is allocated for that call only, on the two paths that should not happen in
/// steady state (a spool write that failed; a blocking spool offered more than its room).
async fn write_or_spool(
    tx: &mut pipe::Sender,
    state: &mut SpoolState,
    deleted: &mut watch::Receiver<Option<Duration>>,
    buf: &[u8],
    name: &str,
    container: &str,
) -> io::Result<()> {
    let mut rest = buf;
    if !state.pending() {
        while !rest.is_empty() {
            match nix::unistd::write(&*tx, rest) {
                Ok(n) => rest = &rest[n..],
                Err(nix::Error::EAGAIN) => {
                    let _ = tx.try_io(|| Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock)));
                    if !fifo_drains_soon(tx).await? {
                        break;
                    }
                }
                Err(nix::Error::EINTR) => {}
                Err(e) => return Err(io::Error::from(e)),
            }
        }
    }
    while !rest.is_empty() {
        let Some(spool) = state.get(name, container) else {
            return tx.write_all(rest).await;
        };
        if spool.room() == 0 {
            if spool.drops_oldest() {
                spool.make_room(rest.len() as u64);
            } else {
                let mut spare = vec![0u8; RELAY_BUF];
                if let Err(e) = replay_step(tx, spool, deleted, &mut spare).await {
                    // These never reached the spool or the FIFO.
                    spool.lost_before(rest.len() as u64);
                    return Err(e);
                }
                continue;
            }
        }
        let n = (spool.room() as usize).min(rest.len());
        if let Err(e) = spool.append(&rest[..n]) {
            log::error!(
                container;
                "{name}: writing the spool: {e}: the container blocks while nobody reads"
            );
            let mut spare = vec![0u8; RELAY_BUF];
            while !spool.is_empty() {
                if let Err(e) = replay_step(tx, spool, deleted, &mut spare).await {
                    spool.lost_before(rest.len() as u64);
                    return Err(e);
                }
            }
            *state = SpoolState::Failed;
            return tx.write_all(rest).await;
        }
        rest = &rest[n..];
    }
    Ok(())
}

/// How long a FIFO may stay full, with nobody reading it, before its oldest bytes are dropped.
const FIFO_STALL: Duration = Duration::from_secs(2);
/// Once a reader was found stopped: how long a full FIFO waits before it is emptied again (a
/// reader that came back, e.g. `ctr task attach`, drains a FIFO well within this).
const FIFO_STALL_AGAIN: Duration = Duration::from_millis(50);

/// Writes to a FIFO; when it stays full for [`FIFO_STALL`] (the reader stopped, e.g. a detached
/// `ctr run -d` exited), drops the oldest bytes queued in it through the read end the shim holds,
/// so that the container and its logs keep going. Used only when a log driver that can be read
/// back holds every byte anyway; without one, a stopped reader blocks the container as a pipe
/// would.
async fn write_or_shed(
    tx: &mut pipe::Sender,
    hold: &File,
    buf: &[u8],
    shed: &mut u64,
    name: &str,
    container: &str,
) -> io::Result<()> {
    let mut rest = buf;
    while !rest.is_empty() {
        let patience = if *shed == 0 {
            FIFO_STALL
        } else {
            FIFO_STALL_AGAIN
        };
        match tokio::time::timeout(patience, tx.writable()).await {
            Ok(ready) => {
                ready?;
                match tx.try_write(rest) {
                    Ok(n) => rest = &rest[n..],
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
            }
            Err(_stalled) => {
                // Empty what is queued (a pipe holds 64 KiB by default; bounded in case a writer
                // we do not know of keeps filling it).
                let mut scratch = [0u8; 16 * 1024];
                let mut n = 0;
                for _ in 0..64 {
                    match nix::unistd::read(hold.as_raw_fd(), &mut scratch) {
                        Ok(0) | Err(nix::Error::EAGAIN) => break,
                        Ok(got) => n += got,
                        Err(e) => return Err(io::Error::from(e)),
                    }
                }
                if *shed == 0 {
                    log::warn!(
                        container;
                        "nobody read {name} for {FIFO_STALL:?}: dropping its oldest bytes so the container keeps running (its log keeps everything)"
                    );
                }
                *shed += n as u64;
            }
        }
    }
    Ok(())
}

impl Output {
    async fn deliver(&mut self, chunk: &[u8]) {
        if let Some(feed) = &mut self.feed {
            feed.push(chunk).await;
        }
        if let Some(sink) = &mut self.sink {
            let written = match (sink, self.keeps_all) {
                (Sink::Fifo { tx, .. }, _) if self.spool.active() => {
                    write_or_spool(
                        tx,
                        &mut self.spool,
                        &mut self.deleted,
                        chunk,
                        &self.name,
                        &self.container,
                    )
                    .await
                }
                // With a driver that keeps every message the container's output is on record
                // whatever the FIFO reader does, so a reader that stopped reading does not stall
                // the container.
                (
                    Sink::Fifo {
                        tx,
                        hold: Some(hold),
                    },
                    true,
                ) => {
                    write_or_shed(tx, hold, chunk, &mut self.shed, &self.name, &self.container)
                        .await
                }
                (sink, _) => sink.write_all(chunk).await,
            };
            if let Err(e) = written {
                if self.must_finish() {
                    // The relay's buffer holds the chunk being written: the replay after the
                    // delete gets a buffer of its own (only on this path).
                    self.finish_deleted(&mut Vec::new()).await;
                    return;
                }
                // The destination is gone for good; the other destinations keep getting the
                // bytes, and the pipe keeps draining so the container is not blocked forever.
                self.give_up("writing container output to", &e);
            }
        }
    }

    /// Whether the FIFO has a spool (empty or not): [`Output::replay`] then has work, or waits
    /// for the delete.
    fn spooling(&self) -> bool {
        matches!(self.spool, SpoolState::On(_)) && matches!(self.sink, Some(Sink::Fifo { .. }))
    }

    /// How many bytes to read from the container now, with a `cap`-byte buffer
    /// ([`SpoolState::read_limit`]); never 0 unless spooled bytes wait for the FIFO.
    fn read_limit(&self, cap: usize) -> usize {
        match self.spool.read_limit(cap) {
            0 if !(self.spooling() && self.spool.pending()) => cap,
            n => n,
        }
    }

    /// Replays one step of the spool into the FIFO (waiting for room) through `buf`; a FIFO that
    /// is gone for good takes nothing more (the spool is discarded, counted as dropped). Once
    /// the process is deleted this returns at once: the caller settles the FIFO
    /// ([`Output::must_finish`]).
    async fn replay(&mut self, buf: &mut Vec<u8>) {
        let (Some(Sink::Fifo { tx, .. }), SpoolState::On(spool)) = (&self.sink, &mut self.spool)
        else {
            return;
        };
        if spool.is_empty() {
            // Nothing to replay until new output is spooled; the delete, though, must be seen
            // (the caller then settles the FIFO).
            let _ = self.deleted.changed().await;
            return;
        }
        if buf.is_empty() {
            buf.resize(RELAY_BUF, 0);
        }
        match replay_step(tx, spool, &mut self.deleted, buf).await {
            Ok(n) => {
                self.replayed
                    .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(_) if self.must_finish() => {}
            Err(e) => self.give_up("replaying the spool of", &e),
        }
    }

    /// The destination failed for good (`doing` it, with `e`): it takes nothing more, and what
    /// its spool held is discarded (the file removed, counted as dropped and reported).
    fn give_up(&mut self, doing: &str, e: &io::Error) {
        log::error!(
            container = self.container.as_str();
            "{doing} {}: {e}",
            self.name
        );
        self.sink = None;
        self.spool = SpoolState::Off;
    }

    /// Whether the process was deleted ([`Relay::close`], or the relay dropped).
    fn is_deleted(&self) -> bool {
        self.deleted.has_changed().is_err() || self.deleted.borrow().is_some()
    }

    /// Whether the process was deleted while this stream's spool was in use: its FIFO must be
    /// settled ([`Output::finish_deleted`]) before it is let go.
    fn must_finish(&self) -> bool {
        matches!(self.sink, Some(Sink::Fifo { .. }))
            && matches!(self.spool, SpoolState::On(_))
            && self.is_deleted()
    }

    /// The process was deleted while its spool was in use: replays what the spool holds to a
    /// reader that reads, for the grace [`Relay::close`] gave (none when the relay was dropped),
    /// then counts as dropped what no reader will take: the spool's rest and, when no reader
    /// has the FIFO open any more, what the FIFO holds (`ctr` closes its FIFOs before Delete;
    /// bytes left in them were written, but never delivered). Then lets the FIFO go and reports.
    async fn finish_deleted(&mut self, buf: &mut Vec<u8>) {
        let grace = self.deleted.borrow().unwrap_or_default();
        let until = tokio::time::Instant::now() + grace;
        if let (Some(Sink::Fifo { tx, hold }), SpoolState::On(spool)) =
            (&mut self.sink, &mut self.spool)
        {
            // The shim's own read end would count as a reader.
            drop(hold.take());
            if buf.is_empty() {
                buf.resize(RELAY_BUF, 0);
            }
            loop {
                if !has_reader(tx) {
                    spool.lost_in_fifo(queued(tx) as u64);
                    break;
                }
                if (spool.is_empty() && queued(tx) == 0) || tokio::time::Instant::now() >= until {
                    // Delivered; or a reader that is not reading keeps what the FIFO holds.
                    break;
                }
                if !spool.is_empty() {
                    match spool.replay_to(tx, CHUNK, buf) {
                        Ok(_) => continue,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                        // The reader just went: counted on the next turn.
                        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => continue,
                        Err(e) => {
                            log::error!(
                                container = self.container.as_str();
                                "replaying the spool of {} after delete: {e}",
                                self.name
                            );
                            break;
                        }
                    }
                }
                tokio::time::sleep(FIFO_POLL).await;
            }
        }
        self.sink = None;
        // Drops the spool: what it still holds counts as dropped, its file goes, it reports.
        self.spool = SpoolState::Off;
    }

    /// At EOF: replays everything spooled, then waits until the reader took what the FIFO
    /// holds. The FIFO stays open meanwhile, so that what a reader leaves in it (closing its
    /// end, as `ctr` does before Delete) is still seen, and counted, at Delete. Only for a
    /// stream whose spool was used; waiting ends when the process is deleted.
    async fn flush_spool(&mut self, buf: &mut Vec<u8>) {
        let mut nap = FIFO_POLL_MIN;
        loop {
            if self.must_finish() {
                self.finish_deleted(buf).await;
                break;
            }
            let (Some(Sink::Fifo { tx, .. }), SpoolState::On(spool)) = (&self.sink, &self.spool)
            else {
                break;
            };
            if !spool.is_empty() {
                self.replay(buf).await;
                continue;
            }
            if queued(tx) == 0 {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(nap) => {}
                _ = self.deleted.changed() => {}
            }
            nap = (nap * 2).min(FIFO_POLL);
        }
        if let SpoolState::On(s) = &self.spool {
            log::debug!(
                container = self.container.as_str();
                "{}: {} bytes went through the spool",
                self.name,
                s.spooled()
            );
        }
        // Drops the spool: its file is removed and its drops reported.
        self.spool = SpoolState::Off;
    }

    async fn finish(&mut self, buf: &mut Vec<u8>) {
        self.flush_spool(buf).await;
        if self.shed > 0 {
            log::warn!(
                container = self.container.as_str();
                "{}: {} bytes were dropped from the FIFO while nobody read it",
                self.name,
                self.shed
            );
        }
        if let Some(feed) = &mut self.feed {
            feed.finish().await;
        }
    }
}

/// Relays one output stream: zero-copy `splice(2)` when the bytes go to a single destination
/// untransformed, a read/write copy when they are also framed for log drivers.
async fn relay_output(rx: pipe::Receiver, mut out: Output) {
    // The stream's one buffer: empty (no memory) until the copy loop or a replay needs it.
    let mut buf = Vec::new();
    // splice(2) needs a pipe on both ends (an O_APPEND file refuses it): FIFOs and logger pipes.
    let pipe_sink = matches!(out.sink, Some(Sink::Fifo { .. } | Sink::Pipe(_)));
    let fifo = matches!(out.sink, Some(Sink::Fifo { .. }));
    if out.feed.is_none() && fifo && out.spool.active() {
        match splice_spooled(&rx, &mut out, &mut buf).await {
            Ok(n) => {
                out.flush_spool(&mut buf).await;
                log::debug!(
                    container = out.container.as_str();
                    "{}: {n} bytes relayed (splice), EOF",
                    out.name
                );
                return;
            }
            // Deleted while the spool was in use: settle the FIFO; the copy loop drains the
            // container's pipe (into the drivers, if any) until EOF.
            Err(_) if out.must_finish() => out.finish_deleted(&mut buf).await,
            // Nothing was lost (what moved is in the FIFO or the spool): the copy loop takes
            // over with the same FIFO and spool.
            Err(e) => log::warn!(
                container = out.container.as_str();
                "splice to {} failed ({e}); copying instead",
                out.name
            ),
        }
    } else if out.feed.is_none() && pipe_sink {
        if let Some(sink) = out.sink.take() {
            match splice_out(&rx, &sink).await {
                Ok(n) => {
                    log::debug!(
                        container = out.container.as_str();
                        "{}: {n} bytes relayed (splice), EOF",
                        out.name
                    );
                    return;
                }
                // A failed splice moved nothing: the copy loop takes over with the same sink
                // (and reports the error again if the destination is really gone).
                Err(e) => log::warn!(
                    container = out.container.as_str();
                    "splice to {} failed ({e}); copying instead",
                    out.name
                ),
            }
            out.sink = Some(sink);
        }
    }
    copy_out(rx, out, buf).await;
}

/// Moves bytes from the container's pipe to the sink with `splice(2)` until EOF; returns how many.
async fn splice_out(rx: &pipe::Receiver, sink: &Sink) -> io::Result<u64> {
    let tx = match sink {
        Sink::Fifo { tx, .. } | Sink::Pipe(tx) => tx,
        Sink::File(_) => return Err(io::Error::other("splice needs a pipe destination")),
    };
    let mut total = 0u64;
    loop {
        rx.readable().await?;
        tx.writable().await?;
        let moved = splice_some(rx, tx, CHUNK, true);
        match moved {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // One side would block: find which, and clear only its readiness so the next
                // wait is for the right edge.
                let (readable, writable) = poll_now(rx, tx);
                if !readable {
                    let _ = rx.try_io(|| Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock)));
                }
                if !writable {
                    let _ = tx.try_io(|| Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock)));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The zero-copy relay to a FIFO with a spool: `splice(2)` from the container's pipe to the FIFO
/// while it has room; when it is full, from the pipe into the spool, and from the spool into the
/// FIFO as it drains, oldest first, until the spool is empty again. Returns the bytes read from
/// the pipe at EOF (the spool may still hold some: [`Output::flush_spool`]). Replays copy
/// through `buf`, the stream's one buffer, allocated at the first replay.
async fn splice_spooled(
    rx: &pipe::Receiver,
    out: &mut Output,
    buf: &mut Vec<u8>,
) -> io::Result<u64> {
    let Output {
        sink,
        spool,
        deleted,
        name,
        container,
        replayed,
        ..
    } = out;
    let Some(Sink::Fifo { tx, .. }) = sink.as_ref() else {
        return Err(io::Error::other("the spool needs a FIFO"));
    };
    let clear_rx = || {
        let _ = rx.try_io(|| Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock)));
    };
    let mut total = 0u64;
    // While the reader reads the spool back, the container's pipe is read into the spool at most
    // once per SPOOL_AFTER: the spool drains and the stream returns to the zero-copy path, and
    // the container still never waits longer than that. A reader that took nothing for
    // SPOOL_AFTER does not hold the container at all.
    let mut next_in = tokio::time::Instant::now();
    // One timer for the stream, pushed forward at every full FIFO (an atomic update while it is
    // armed): a fresh timer per full FIFO took the timer driver's lock and woke the event loop
    // (an eventfd write) each time, on the attached reader's zero-copy path.
    let stalled = tokio::time::sleep(SPOOL_AFTER);
    tokio::pin!(stalled);
    loop {
        if let SpoolState::On(sp) = spool {
            if !sp.is_empty() {
                // Old bytes first: new ones go behind them, into the spool.
                let full = sp.room() == 0 && !sp.drops_oldest();
                let now = tokio::time::Instant::now();
                let reading = sp.last_taken().is_some_and(|t| t.elapsed() < SPOOL_AFTER);
                let wait_in = reading && now < next_in;
                if buf.is_empty() {
                    buf.resize(RELAY_BUF, 0);
                }
                tokio::select! {
                    biased;
                    r = replay_step(tx, sp, deleted, buf) => {
                        replayed.fetch_add(r? as u64, std::sync::atomic::Ordering::Relaxed);
                        continue;
                    }
                    r = rx.readable(), if !full && !wait_in => r?,
                    _ = tokio::time::sleep_until(next_in), if !full && wait_in => continue,
                }
                if reading {
                    next_in = tokio::time::Instant::now() + SPOOL_AFTER;
                }
                if sp.room() == 0 {
                    // Drop no more than what waits in the pipe (nothing at EOF).
                    sp.make_room(queued(rx).min(CHUNK) as u64);
                }
                match sp.splice_in(rx, CHUNK) {
                    Ok(0) => return Ok(total),
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => clear_rx(),
                    Err(e) => return Err(e),
                }
                continue;
            }
        }
        // An empty spool still has a FIFO to settle at Delete.
        let spooling = matches!(spool, SpoolState::On(_));
        tokio::select! {
            r = rx.readable() => r?,
            _ = deleted.changed(), if spooling => {
                return Err(io::Error::other("the process was deleted"))
            }
        }
        match splice_some(rx, tx, CHUNK, true) {
            Ok(0) => return Ok(total),
            Ok(n) => total += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let (readable, writable) = poll_now(rx, tx);
                if !readable {
                    clear_rx();
                    continue;
                }
                if writable {
                    continue;
                }
                let _ = tx.try_io(|| Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock)));
                stalled
                    .as_mut()
                    .reset(tokio::time::Instant::now() + SPOOL_AFTER);
                let drained = tokio::select! {
                    biased;
                    r = tx.writable() => r.map(|_| true)?,
                    _ = &mut stalled => false,
                };
                if drained {
                    continue;
                }
                // The FIFO stayed full for SPOOL_AFTER: its reader is not reading. Spool.
                let Some(sp) = spool.get(name, container) else {
                    return Err(io::Error::other("no spool"));
                };
                match sp.splice_in(rx, CHUNK) {
                    Ok(0) => return Ok(total),
                    Ok(n) => total += n as u64,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => clear_rx(),
                    Err(e) => return Err(e),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Bytes queued in a pipe or FIFO, through either end (`FIONREAD`); 0 when unknown.
fn queued(fd: &impl AsRawFd) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at `n`; `fd` keeps the
    // descriptor open for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n as *mut libc::c_int) };
    if r < 0 {
        0
    } else {
        usize::try_from(n).unwrap_or(0)
    }
}

/// How often a FIFO is looked at while the relay waits for its reader to empty it or go
/// (reading frees room without waking a writer that did not find it full), at most.
const FIFO_POLL: Duration = Duration::from_millis(20);
/// ... and at first.
const FIFO_POLL_MIN: Duration = Duration::from_millis(1);

/// Whether a FIFO, whose read end the shim no longer holds, still has a reader: with none, the
/// kernel flags its write end with POLLERR. When unknown, a reader is assumed.
fn has_reader(tx: &impl std::os::fd::AsFd) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut fds = [PollFd::new(tx.as_fd(), PollFlags::POLLOUT)];
    if poll(&mut fds, PollTimeout::ZERO).is_err() {
        return true;
    }
    !fds[0]
        .revents()
        .is_some_and(|r| r.contains(PollFlags::POLLERR))
}

/// Whether the pipe has data (or EOF) and the destination pipe has room, right now.
fn poll_now(rx: &pipe::Receiver, tx: &pipe::Sender) -> (bool, bool) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut fds = [
        PollFd::new(rx.as_fd(), PollFlags::POLLIN),
        PollFd::new(tx.as_fd(), PollFlags::POLLOUT),
    ];
    if poll(&mut fds, PollTimeout::ZERO).is_err() {
        return (true, true);
    }
    let ready = |i: usize, want: PollFlags| {
        fds.get(i)
            .and_then(|f| f.revents())
            .map(|r| r.intersects(want | PollFlags::POLLHUP | PollFlags::POLLERR))
            .unwrap_or(true)
    };
    (ready(0, PollFlags::POLLIN), ready(1, PollFlags::POLLOUT))
}

/// The copy loop: reads the container's pipe into the stream's one buffer (`buf`, sized here),
/// and replays a spool through the same buffer while it waits; reads no more than a blocking
/// spool can take ([`Output::read_limit`]).
async fn copy_out(rx: pipe::Receiver, mut out: Output, mut buf: Vec<u8>) {
    buf.resize(RELAY_BUF, 0);
    let mut total = 0u64;
    loop {
        if out.must_finish() {
            out.finish_deleted(&mut buf).await;
        }
        let limit = out.read_limit(buf.len());
        let ready = tokio::select! {
            r = rx.readable(), if limit > 0 => r,
            _ = out.replay(&mut buf), if out.spooling() => continue,
        };
        let read = match ready {
            Ok(()) => match rx.try_read(&mut buf[..limit]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => r,
            },
            Err(e) => Err(e),
        };
        match read {
            Ok(0) => {
                log::debug!(
                    container = out.container.as_str();
                    "{}: {total} bytes relayed (copy), EOF",
                    out.name
                );
                break;
            }
            Ok(n) => {
                total += n as u64;
                out.deliver(&buf[..n]).await
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                log::error!(
                    container = out.container.as_str();
                    "reading container output for {}: {e}",
                    out.name
                );
                break;
            }
        }
    }
    // A last line without a newline is still written.
    out.finish(&mut buf).await;
}

/// The terminal's copy loop: as [`copy_out`], with the pty master for the pipe (one buffer;
/// no more read than a blocking spool can take).
async fn copy_pty_out(master: std::sync::Arc<AsyncFd<OwnedFd>>, mut out: Output) {
    let mut buf = vec![0u8; RELAY_BUF];
    loop {
        if out.must_finish() {
            out.finish_deleted(&mut buf).await;
        }
        let limit = out.read_limit(buf.len());
        let ready = tokio::select! {
            r = master.readable(), if limit > 0 => r,
            _ = out.replay(&mut buf), if out.spooling() => continue,
        };
        let n = match ready {
            Ok(mut guard) => match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_raw_fd(), &mut buf[..limit])
                    .map_err(io::Error::from)
            }) {
                Ok(r) => r,
                Err(_would_block) => continue,
            },
            Err(e) => Err(e),
        };
        match n {
            Ok(0) => break,
            Ok(n) => out.deliver(&buf[..n]).await,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // EIO: every slave end is closed, the terminal's processes are gone.
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => {
                log::error!(container = out.container.as_str(); "reading {}: {e}", out.name);
                break;
            }
        }
    }
    out.finish(&mut buf).await;
}

async fn copy_pty_in(mut src: pipe::Receiver, master: std::sync::Arc<AsyncFd<OwnedFd>>) {
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        let n = match src.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        let mut rest = &buf[..n];
        while !rest.is_empty() {
            let Ok(mut guard) = master.writable().await else {
                return;
            };
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), rest).map_err(io::Error::from))
            {
                Ok(Ok(w)) => rest = &rest[w..],
                Ok(Err(_)) => return,
                Err(_would_block) => continue,
            }
        }
    }
}

async fn copy_in(mut src: pipe::Receiver, mut tx: pipe::Sender) {
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match src.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                if tx.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn copies_to_fifo_and_file_until_eof() {
        rt().block_on(async {
            let dir = std::env::temp_dir().join(format!("scribe-stdio-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let fifo = dir.join("out");
            let _ = std::fs::remove_file(&fifo);
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            let file = dir.join("err.log");
            let _ = std::fs::remove_file(&file);
            let mut reader = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .unwrap();
            let spec = StdioSpec {
                stdin: "",
                stdout: fifo.to_str().unwrap(),
                stderr: file.to_str().unwrap(),
                id: "c",
                namespace: "ns",
                spool: None,
            };
            let (ends, mut relay) = Relay::start(&spec, Drivers::default()).await.unwrap();
            assert!(ends.stdin.is_none());
            let mut out = File::from(ends.stdout.unwrap());
            let mut err = File::from(ends.stderr.unwrap());
            out.write_all(b"hello\n").unwrap();
            err.write_all(b"oops\n").unwrap();
            drop((out, err));
            assert!(relay.drain(Duration::from_secs(5)).await);
            let mut got = String::new();
            reader.read_to_string(&mut got).ok();
            assert_eq!(got, "hello\n");
            assert_eq!(std::fs::read_to_string(&file).unwrap(), "oops\n");
            std::fs::remove_dir_all(&dir).unwrap();
        });
    }

    /// Every line logged by this process, as (message, value of the `container` key).
    struct Capture(std::sync::Mutex<Vec<(String, Option<String>)>>);

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            let container = record
                .key_values()
                .get(log::kv::Key::from_str("container"))
                .map(|v| v.to_string());
            if let Ok(mut v) = self.0.lock() {
                v.push((record.args().to_string(), container));
            }
        }
        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture(std::sync::Mutex::new(Vec::new()));

    /// A shim serving a pod routes a line to one container's runtime.log by its `container` key:
    /// the relay's lines carry the id it was started for.
    #[test]
    fn relay_log_lines_name_their_container() {
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Trace);
        rt().block_on(async {
            let dir = std::env::temp_dir().join(format!("scribe-stdio-kv-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let file = dir.join("out.log");
            let spec = StdioSpec {
                stdin: "",
                stdout: file.to_str().unwrap(),
                stderr: "",
                id: "kv-container",
                namespace: "ns",
                spool: None,
            };
            let (ends, mut relay) = Relay::start(&spec, Drivers::default()).await.unwrap();
            let mut out = File::from(ends.stdout.unwrap());
            out.write_all(b"line\n").unwrap();
            drop(out);
            assert!(relay.drain(Duration::from_secs(5)).await);
            std::fs::remove_dir_all(&dir).unwrap();
        });
        let lines = CAPTURE.0.lock().map(|v| v.clone()).unwrap_or_default();
        let eof: Vec<_> = lines
            .iter()
            .filter(|(msg, _)| msg.contains("out.log") && msg.contains("bytes relayed"))
            .collect();
        assert_eq!(eof.len(), 1, "{lines:?}");
        assert_eq!(eof[0].1.as_deref(), Some("kv-container"), "{lines:?}");
    }

    #[derive(Default)]
    struct Reports(std::sync::Mutex<Vec<crate::drivers::DriverReport>>);
    impl crate::drivers::DriverReporter for Reports {
        fn report(&self, _: &str, _: &str, r: crate::drivers::DriverReport) {
            if let Ok(mut v) = self.0.lock() {
                v.push(r);
            }
        }
    }

    /// 2 MiB of numbered lines.
    fn numbered() -> Vec<u8> {
        (0..2 * 1024 * 1024 / 9)
            .flat_map(|i: u32| format!("{i:08}\n").into_bytes())
            .collect()
    }

    struct SpoolRun {
        got: Vec<u8>,
        /// Whether the writer finished while nobody read the FIFO.
        finished_unread: bool,
        reports: Vec<crate::drivers::DriverReport>,
        left: usize,
    }

    /// A container writes `data` to stdout (a FIFO with a spool of `max` bytes); nobody reads
    /// the FIFO for `stall`, then everything is read.
    fn spool_run(data: &[u8], max: u64, drop_oldest: bool, framed: bool) -> SpoolRun {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let root = t.path().join("logroot");
        let reports = std::sync::Arc::new(Reports::default());
        let cfg = SpoolConfig {
            root: root.clone(),
            subdirs: ["ns".into(), "c".into()],
            max_size: max,
            drop_oldest,
            reporter: Some(reports.clone()),
        };
        let drivers = if framed {
            let w = crate::jsonfile::JsonFileWriter::open(
                t.path().join("c-json.log"),
                &Default::default(),
                &Default::default(),
            )
            .unwrap();
            let log = JsonLog::new(w, 16 * 1024);
            Drivers::new(vec![std::sync::Arc::new(log)], 16 * 1024)
        } else {
            Drivers::default()
        };
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let data = data.to_vec();
        let want = data.len();
        rt().block_on(async {
            let spec = StdioSpec {
                stdin: "",
                stdout: fifo.to_str().unwrap(),
                stderr: "",
                id: "c",
                namespace: "ns",
                spool: Some(&cfg),
            };
            let (ends, mut relay) = Relay::start(&spec, drivers).await.unwrap();
            let mut out = File::from(ends.stdout.unwrap());
            let writer = std::thread::spawn(move || {
                out.write_all(&data).unwrap();
            });
            let until = tokio::time::Instant::now() + Duration::from_secs(3);
            while !writer.is_finished() && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let finished_unread = writer.is_finished();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 64 * 1024];
            let until = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                match reader.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        if writer.is_finished() && relay.drain(Duration::from_millis(1)).await {
                            // Everything was relayed; read what is left in the FIFO.
                            while let Ok(n) = reader.read(&mut buf) {
                                if n == 0 {
                                    break;
                                }
                                got.extend_from_slice(&buf[..n]);
                            }
                            break;
                        }
                        assert!(
                            tokio::time::Instant::now() < until,
                            "{} of {want}",
                            got.len()
                        );
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            writer.join().unwrap();
            let left = std::fs::read_dir(root.join("ns/c"))
                .map(|d| d.count())
                .unwrap_or(0);
            SpoolRun {
                got,
                finished_unread,
                reports: reports.0.lock().unwrap().clone(),
                left,
            }
        })
    }

    /// A spooling stream holds one buffer: the copy loops read no more than a spool that blocks
    /// when full can take (so what they read is never waiting in the buffer while the spool
    /// replays through it), and read freely beside a spool that drops or no spool at all.
    #[test]
    fn copy_loops_read_no_more_than_a_blocking_spool_takes() {
        let t = tempfile::tempdir().unwrap();
        let cfg = SpoolConfig {
            root: t.path().to_path_buf(),
            subdirs: ["ns".into(), "c".into()],
            max_size: 100,
            drop_oldest: false,
            reporter: None,
        };
        assert_eq!(SpoolState::Off.read_limit(RELAY_BUF), RELAY_BUF);
        // Not created yet: at most the spool's size.
        let ready = SpoolState::new(Some(&cfg), Stream::Stdout, false, Arc::default());
        assert_eq!(ready.read_limit(RELAY_BUF), 100);
        // Beside a driver that keeps everything the spool drops its oldest bytes: no limit.
        let dropping = SpoolState::new(Some(&cfg), Stream::Stdout, true, Arc::default());
        assert_eq!(dropping.read_limit(RELAY_BUF), RELAY_BUF);
        let mut on = SpoolState::new(Some(&cfg), Stream::Stdout, false, Arc::default());
        on.get("/f", "c").unwrap().append(&[b'x'; 60]).unwrap();
        assert_eq!(on.read_limit(RELAY_BUF), 40);
        assert_eq!(on.read_limit(16), 16);
        on.get("/f", "c").unwrap().append(&[b'y'; 40]).unwrap();
        // Full: nothing is read until the reader takes some, and then only what fits.
        assert_eq!(on.read_limit(RELAY_BUF), 0);
        assert!(on.pending());
        let (r, w): (OwnedFd, OwnedFd) = nix::unistd::pipe().unwrap();
        // The replay copies through the caller's buffer (here 8 bytes): the spool has none.
        let mut buf = [0u8; 8];
        let moved = on
            .get("/f", "c")
            .unwrap()
            .replay_to(&w, 100, &mut buf)
            .unwrap();
        assert_eq!(moved, 8);
        assert_eq!(on.read_limit(RELAY_BUF), 8);
        drop(w);
        let mut got = Vec::new();
        File::from(r).read_to_end(&mut got).unwrap();
        assert_eq!(got, b"xxxxxxxx");
    }

    /// The reader stops: the container is not blocked (its output is spooled); the reader then
    /// gets every byte once, in order; the spool file is gone.
    #[test]
    fn spool_keeps_the_container_going_and_loses_nothing() {
        let data = numbered();
        for framed in [false, true] {
            let r = spool_run(&data, 64 << 20, false, framed);
            assert!(r.finished_unread, "framed {framed}: the writer was blocked");
            assert_eq!(r.got.len(), data.len(), "framed {framed}");
            assert!(r.got == data, "framed {framed}: out of order");
            assert!(r.reports.is_empty(), "{:?}", r.reports);
            assert_eq!(r.left, 0, "framed {framed}: spool file left");
        }
    }

    /// A full spool blocks the container by default (as a full pipe would), losing nothing.
    #[test]
    fn full_spool_blocks_and_loses_nothing() {
        let data = numbered();
        let r = spool_run(&data, 256 * 1024, false, false);
        assert!(!r.finished_unread, "the writer was not blocked");
        assert!(r.got == data, "lost or out of order");
        assert!(r.reports.is_empty(), "{:?}", r.reports);
        assert_eq!(r.left, 0);
    }

    /// With a log driver that keeps every message (json-file here), a full spool drops its
    /// oldest bytes even in blocking mode: the log has them, and a FIFO nobody reads again
    /// (`ctr run -d`) must not hold the container up.
    #[test]
    fn full_spool_beside_a_log_that_keeps_all_never_blocks() {
        let data = numbered();
        let r = spool_run(&data, 256 * 1024, false, true);
        assert!(r.finished_unread, "the writer was blocked");
        let missed = data.len() - r.got.len();
        assert!(missed > 0);
        let total = r.reports.iter().find_map(|x| match x {
            crate::drivers::DriverReport::Closed { total, .. } => Some(total.bytes),
            _ => None,
        });
        assert_eq!(total, Some(missed as u64), "{:?}", r.reports);
        assert_eq!(r.left, 0);
    }

    /// A full spool with mode=non-blocking drops the oldest spooled bytes: the container keeps
    /// going, the reader misses one contiguous run, and the reported count is exactly its size.
    #[test]
    fn full_spool_non_blocking_drops_oldest_and_counts_exactly() {
        let data = numbered();
        for framed in [false, true] {
            let r = spool_run(&data, 256 * 1024, true, framed);
            assert!(r.finished_unread, "framed {framed}: the writer was blocked");
            let missed = data.len() - r.got.len();
            assert!(missed > 0, "framed {framed}");
            let head = r.got.iter().zip(&data).take_while(|(a, b)| a == b).count();
            assert!(
                r.got[head..] == data[head + missed..],
                "framed {framed}: not one contiguous gap"
            );
            let total = r.reports.iter().find_map(|x| match x {
                crate::drivers::DriverReport::Closed { total, .. } => Some(total.bytes),
                _ => None,
            });
            assert_eq!(total, Some(missed as u64), "{:?}", r.reports);
            assert_eq!(r.left, 0);
        }
    }

    /// Delete while output waits in the spool and the FIFO (the reader was stopped, the
    /// container exited): every byte is either delivered or counted as dropped. A reader that
    /// closed its end before Delete (`ctr` cancels its copy first) misses what the FIFO held
    /// and what the spool still held, and the report counts exactly those; a reader that still
    /// reads at Delete gets the spool's rest within the grace, and only the oldest bytes the
    /// full spool dropped are missing.
    #[test]
    fn close_delivers_or_counts_every_byte() {
        let data = numbered();
        for reads_at_close in [false, true] {
            let t = tempfile::tempdir().unwrap();
            let fifo = t.path().join("out");
            nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
            let reports = std::sync::Arc::new(Reports::default());
            let cfg = SpoolConfig {
                root: t.path().join("logroot"),
                subdirs: ["ns".into(), "c".into()],
                max_size: 256 * 1024,
                drop_oldest: true,
                reporter: Some(reports.clone()),
            };
            let mut reader = OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(&fifo)
                .unwrap();
            let mut got = Vec::new();
            rt().block_on(async {
                let spec = StdioSpec {
                    stdin: "",
                    stdout: fifo.to_str().unwrap(),
                    stderr: "",
                    id: "c",
                    namespace: "ns",
                    spool: Some(&cfg),
                };
                let (ends, mut relay) = Relay::start(&spec, Drivers::default()).await.unwrap();
                let mut out = File::from(ends.stdout.unwrap());
                let all = data.clone();
                let writer = std::thread::spawn(move || out.write_all(&all).unwrap());
                let until = tokio::time::Instant::now() + Duration::from_secs(20);
                while !writer.is_finished() {
                    assert!(
                        tokio::time::Instant::now() < until,
                        "the writer was blocked"
                    );
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                writer.join().unwrap();
                // The exit's drain gives up: the spool and the FIFO still hold output.
                assert!(!relay.drain(Duration::from_millis(300)).await);
                // The reader takes a little (the spool's replay refills the FIFO behind it).
                let mut buf = vec![0u8; 16 * 1024];
                while got.len() < 100_000 {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            tokio::time::sleep(Duration::from_millis(1)).await
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
                let rest = if reads_at_close {
                    // Reading on (blocking) until EOF while Delete runs.
                    nix::fcntl::fcntl(
                        reader.as_raw_fd(),
                        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
                    )
                    .unwrap();
                    Some(std::thread::spawn(move || {
                        let mut v = Vec::new();
                        reader.read_to_end(&mut v).unwrap();
                        v
                    }))
                } else {
                    // The reader closes its end with bytes still in the FIFO.
                    drop(reader);
                    None
                };
                relay.close(Duration::from_secs(5)).await;
                if let Some(rest) = rest {
                    got.extend(rest.join().unwrap());
                }
            });
            let total = reports
                .0
                .lock()
                .unwrap()
                .iter()
                .find_map(|x| match x {
                    crate::drivers::DriverReport::Closed { total, .. } => Some(total.bytes),
                    _ => None,
                })
                .unwrap_or(0);
            let missed = data.len() - got.len();
            assert!(missed > 0, "reads_at_close {reads_at_close}");
            assert_eq!(
                total,
                missed as u64,
                "reads_at_close {reads_at_close}: {} bytes read, {:?}",
                got.len(),
                reports.0.lock().unwrap()
            );
            // What was read is in order, around the missing runs.
            let head = got.iter().zip(&data).take_while(|(a, b)| a == b).count();
            assert!(head > 0, "reads_at_close {reads_at_close}");
            if reads_at_close {
                assert!(
                    got[head..] == data[head + missed..],
                    "not one contiguous gap"
                );
            }
            let left = std::fs::read_dir(t.path().join("logroot/ns/c"))
                .map(|d| d.count())
                .unwrap_or(0);
            assert_eq!(left, 0, "reads_at_close {reads_at_close}: spool file left");
        }
    }

    /// Close at Delete waits only for spools: an output whose pipe a stray process still holds
    /// open, with nothing spooled, does not hold Delete up.
    #[test]
    fn close_does_not_wait_for_a_stream_without_a_spool() {
        let t = tempfile::tempdir().unwrap();
        let fifo = t.path().join("out");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let cfg = SpoolConfig {
            root: t.path().join("logroot"),
            subdirs: ["ns".into(), "c".into()],
            max_size: 1 << 20,
            drop_oldest: false,
            reporter: None,
        };
        let _reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        rt().block_on(async {
            let spec = StdioSpec {
                stdin: "",
                stdout: fifo.to_str().unwrap(),
                stderr: "",
                id: "c",
                namespace: "ns",
                spool: Some(&cfg),
            };
            let (ends, mut relay) = Relay::start(&spec, Drivers::default()).await.unwrap();
            // The "stray process": the container's end stays open.
            let mut out = File::from(ends.stdout.unwrap());
            out.write_all(b"hello\n").unwrap();
            assert!(!relay.drain(Duration::from_millis(100)).await);
            let started = std::time::Instant::now();
            relay.close(Duration::from_secs(5)).await;
            assert!(
                started.elapsed() < Duration::from_secs(1),
                "{:?}",
                started.elapsed()
            );
            drop(out);
        });
    }
}
