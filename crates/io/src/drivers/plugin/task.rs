//! The plugin driver's task: one tokio task per container on the shim's runtime. It finds and
//! starts the plugin (retrying with capped backoff while it is missing), writes frames into the
//! FIFO when it has room, notices the plugin's death on an idle watch connection, recovers what
//! the dead plugin left unread, and at close waits for the FIFO to empty, calls StopLogging and
//! removes the FIFO and its directory.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use super::activate::{activate, forget};
use super::fifo::{self, FifoDir, Ledger};
use super::{FrameInfo, PluginOptions, Shared};
use crate::jsonfile::DropCounts;
use crate::plugin::client::{call_json, Conn, CALL_TIMEOUT};
use crate::plugin::discovery::{self, PluginAddr};
use crate::plugin::frame::decode_frame;
use crate::plugin::proto::{ErrResponse, Info, StartLoggingRequest, StopLoggingRequest};
use crate::plugin::proto::{START_LOGGING, STOP_LOGGING};

/// The first wait before looking for a missing plugin again; doubled up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between looks for a missing plugin (dockerd gives up after 30 s; Scribe
/// keeps looking, this often, for as long as the container lives).
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// At close, how long the plugin may take to read what is in the FIFO before StopLogging.
pub const CLOSE_WAIT: Duration = Duration::from_secs(10);

/// Frames taken from the queue and not yet written whole into the FIFO.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    frames: VecDeque<FrameInfo>,
    /// Where the first frame not written whole starts in `buf`.
    frame_start: usize,
    /// Bytes of `buf` written.
    pos: usize,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn load(&mut self, buf: Vec<u8>, frames: Vec<FrameInfo>) {
        self.buf = buf;
        self.frames = frames.into();
        self.frame_start = 0;
        self.pos = 0;
    }

    /// `n` more bytes were written: the frames now written whole go to the ledger; returns how
    /// many and their payload bytes.
    fn advance(&mut self, n: usize, ledger: &mut Ledger) -> (u64, u64) {
        self.pos += n;
        let (mut count, mut payload) = (0, 0);
        while let Some(f) = self.frames.front() {
            let end = self.frame_start + f.len as usize;
            if end > self.pos {
                break;
            }
            ledger.wrote_frame(f.len as usize, f.payload as usize);
            self.frame_start = end;
            count += 1;
            payload += u64::from(f.payload);
            self.frames.pop_front();
        }
        if self.frames.is_empty() {
            self.buf.clear();
            self.frame_start = 0;
            self.pos = 0;
        }
        (count, payload)
    }

    /// Everything pending, counted dropped.
    fn drop_all(&mut self) -> DropCounts {
        let lost = DropCounts {
            entries: self.frames.len() as u64,
            bytes: self.frames.iter().map(|f| u64::from(f.payload)).sum(),
        };
        *self = Pending::default();
        lost
    }
}

/// A started plugin for this container.
struct Session {
    addr: PluginAddr,
    fifo: AsyncFd<File>,
    fifo_name: String,
    fifo_path: PathBuf,
    ledger: Ledger,
    /// An idle connection to the plugin: its end means the plugin died (or closed it).
    watch: Option<Conn>,
    /// When the watch connection was made.
    watch_since: Instant,
    pid: Option<i32>,
}

async fn watch_closed(watch: &mut Option<Conn>) {
    match watch {
        Some(c) => {
            let mut b = [0u8; 64];
            // Any byte or end: the connection is no longer a quiet keep-alive.
            let _ = c.read(&mut b).await;
        }
        None => std::future::pending().await,
    }
}

enum Event {
    Wrote,
    WatchEnded,
    /// The FIFO has held unread frames for [`PROBE_EVERY`]: is the plugin still there?
    Probe,
    Died,
}

/// A watch connection the plugin closes sooner than this is not kept (see [`still_alive`]).
pub const WATCH_MIN_LIFE: Duration = Duration::from_secs(1);

/// While the FIFO holds frames the plugin has not read, how often Scribe checks that the plugin
/// still answers on its socket (a plugin on TCP has no watch connection that tells its death,
/// and a unix one may have none if it was refused).
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// The task: runs until the driver is closed and everything is written (or dropped).
pub(super) async fn run(
    shared: Arc<Shared>,
    opts: PluginOptions,
    info: Info,
    dir: FifoDir,
    found: Option<PluginAddr>,
) {
    let mut addr = found;
    let mut session: Option<Session> = None;
    let mut pending = Pending::default();
    let mut backoff = FIRST_BACKOFF;
    loop {
        let closed = shared.lock().closed;
        let Some(s) = session.as_mut() else {
            match start(&opts, &info, &dir, &mut addr).await {
                Ok(s) => {
                    shared.set_target(s.addr.to_string());
                    shared.set_outage(None);
                    log::info!("log plugin {}: logging to {}", opts.name, s.addr);
                    session = Some(s);
                    backoff = FIRST_BACKOFF;
                }
                Err(e) if closed => {
                    // Closed with no plugin to give the output to: count it and end.
                    let mut lost = pending.drop_all();
                    if let Some((_, frames)) = shared.try_batch() {
                        lost.entries += frames.len() as u64;
                        lost.bytes += frames.iter().map(|f| u64::from(f.payload)).sum::<u64>();
                    }
                    in_flight_lost(&shared, lost, &format!("{e}; closed"));
                    break;
                }
                Err(e) => {
                    shared.set_outage(Some(e));
                    sleep_unless_closed(&shared, backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            continue;
        };
        let event = if pending.is_empty() {
            if let Some((buf, frames)) = shared.try_batch() {
                pending.load(buf, frames);
                continue;
            } else if closed {
                if close_session(&shared, &opts, s).await {
                    break;
                }
                // The plugin died while reading the last frames: start it again.
                Event::Died
            } else {
                let wake = shared.wake.notified();
                let unread = fifo::pending(s.fifo.get_ref()).is_ok_and(|n| n > 0);
                tokio::select! {
                    _ = wake => continue,
                    _ = watch_closed(&mut s.watch) => Event::WatchEnded,
                    _ = tokio::time::sleep(PROBE_EVERY), if unread => Event::Probe,
                }
            }
        } else {
            // Write what the FIFO takes.
            tokio::select! {
                ready = s.fifo.writable() => match ready {
                    Err(_) => Event::Died,
                    Ok(mut guard) => {
                        let chunk = &pending.buf[pending.pos..];
                        match guard.try_io(|f| f.get_ref().write(chunk)) {
                            Ok(Ok(n)) => {
                                let (count, payload) = pending.advance(n, &mut s.ledger);
                                if count > 0 {
                                    shared.written(count, payload);
                                }
                                Event::Wrote
                            }
                            Ok(Err(e)) => {
                                log::warn!("log plugin {}: writing {}: {e}", opts.name, s.fifo_path.display());
                                Event::Died
                            }
                            Err(_would_block) => Event::Wrote,
                        }
                    }
                },
                _ = watch_closed(&mut s.watch) => Event::WatchEnded,
                _ = tokio::time::sleep(PROBE_EVERY) => Event::Probe,
            }
        };
        match event {
            Event::Wrote => {
                if s.ledger.tracked() > 16 * 1024 {
                    if let Ok(inpipe) = fifo::pending(s.fifo.get_ref()) {
                        s.ledger.settle(inpipe);
                    }
                }
            }
            Event::WatchEnded => {
                if !still_alive(s).await {
                    died(&shared, &opts, &dir, &mut session, &mut pending).await;
                }
            }
            Event::Probe => {
                if !answers(s).await {
                    died(&shared, &opts, &dir, &mut session, &mut pending).await;
                }
            }
            Event::Died => died(&shared, &opts, &dir, &mut session, &mut pending).await,
        }
    }
    if let Err(e) = dir.remove() {
        log::warn!("log plugin {}: removing the FIFO directory: {e}", opts.name);
    }
    shared.finished();
}

async fn sleep_unless_closed(shared: &Shared, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !shared.lock().closed {
        tokio::time::sleep(Duration::from_millis(50).min(d)).await;
    }
}

/// Frames the task held are lost.
fn in_flight_lost(shared: &Shared, lost: DropCounts, why: &str) {
    {
        let mut st = shared.lock();
        st.in_flight = st.in_flight.saturating_sub(lost.entries);
        st.payload_in_flight = st.payload_in_flight.saturating_sub(lost.bytes);
    }
    shared.dropped(lost, why);
}

/// Finds, activates and starts the plugin for this container with a new FIFO.
async fn start(
    opts: &PluginOptions,
    info: &Info,
    dir: &FifoDir,
    addr: &mut Option<PluginAddr>,
) -> Result<Session, String> {
    let a = match addr.clone() {
        Some(a) => a,
        None => {
            let a = discovery::find(&opts.name, &opts.search).map_err(|e| e.to_string())?;
            *addr = Some(a.clone());
            a
        }
    };
    if let Err(e) = activate(&a, CALL_TIMEOUT).await {
        if e.is_connect() {
            // The plugin may come back elsewhere (another search directory, a spec file).
            *addr = None;
        }
        return Err(e.to_string());
    }
    let watch = Conn::connect(&a).await.ok();
    let pid = watch.as_ref().and_then(Conn::peer_pid);
    let f = dir.new_fifo()?;
    let req = StartLoggingRequest {
        file: f.path.display().to_string(),
        info: info.clone(),
    };
    if let Err(e) = call_json::<_, ErrResponse>(&a, START_LOGGING, &req, CALL_TIMEOUT).await {
        let _ = dir.remove_fifo(&f.name);
        if e.is_connect() {
            forget(&a).await;
        }
        return Err(e.to_string());
    }
    // SAFETY: the AsyncFd owns the File, so the descriptor stays open and the same for the
    // AsyncFd's whole life.
    let fifo = unsafe { AsyncFd::register(f.file) }
        .map_err(|e| format!("polling {}: {e}", f.path.display()))?;
    Ok(Session {
        addr: a,
        fifo,
        fifo_name: f.name,
        fifo_path: f.path,
        ledger: Ledger::default(),
        watch,
        watch_since: Instant::now(),
        pid,
    })
}

/// The watch connection ended: is the same plugin still there (it only closed an idle
/// connection)? Re-arms the watch when so.
async fn still_alive(s: &mut Session) -> bool {
    tokio::time::sleep(Duration::from_millis(20)).await;
    let alive = match Conn::connect(&s.addr).await {
        Ok(c) => {
            let pid = c.peer_pid();
            // TCP has no pid: no way to tell; the probes cover it.
            let same = pid.is_none() || pid == s.pid;
            if same {
                s.watch = Some(c);
            }
            same
        }
        Err(_) => false,
    };
    if alive && s.watch_since.elapsed() < WATCH_MIN_LIFE {
        // The plugin closes idle connections: watching would reconnect in a loop. The probes
        // (while the FIFO holds unread frames) are left to notice its death.
        log::info!(
            "log plugin at {} closes idle connections; relying on probes",
            s.addr
        );
        s.watch = None;
    }
    s.watch_since = Instant::now();
    alive
}

/// The probe: the plugin's socket still answers, and (unix) from the same process.
async fn answers(s: &Session) -> bool {
    match tokio::time::timeout(Duration::from_secs(1), Conn::connect(&s.addr)).await {
        Ok(Ok(c)) => match (c.peer_pid(), s.pid) {
            (Some(now), Some(was)) => now == was,
            _ => true,
        },
        // Slow to accept is not dead.
        Err(_) => true,
        Ok(Err(_)) => false,
    }
}

/// The plugin died or restarted: reads back what it left in the FIFO, counts the frame it read
/// only part of as dropped, puts the unread whole frames back in front of `pending`, and drops
/// the session (the loop starts the plugin again with a new FIFO).
async fn died(
    shared: &Shared,
    opts: &PluginOptions,
    dir: &FifoDir,
    session: &mut Option<Session>,
    pending: &mut Pending,
) {
    let Some(mut s) = session.take() else {
        return;
    };
    let residue = fifo::read_residue(s.fifo.get_ref()).unwrap_or_default();
    // The head of a frame being written when the plugin died is at the end of the residue.
    let head = pending.pos - pending.frame_start;
    let mut lost = DropCounts::default();
    let mut back = (0u64, 0u64);
    let mut whole_frames: Vec<u8> = Vec::new();
    let mut infos: Vec<FrameInfo> = Vec::new();
    if residue.len() >= head {
        let whole_len = residue.len() - head;
        let r = s.ledger.residue(whole_len);
        if let Some(p) = r.partial {
            lost.entries += 1;
            lost.bytes += p;
        }
        let mut rest = &residue[r.skip.min(whole_len)..whole_len];
        while let Ok(Some((e, used))) = decode_frame(rest) {
            infos.push(FrameInfo {
                len: u32::try_from(used).unwrap_or(u32::MAX),
                payload: u32::try_from(e.line.len()).unwrap_or(u32::MAX),
            });
            back.0 += 1;
            back.1 += e.line.len() as u64;
            whole_frames.extend_from_slice(&rest[..used]);
            rest = &rest[used..];
        }
        // The frame being written is written again whole.
        pending.pos = pending.frame_start;
    } else {
        // The plugin read every whole frame and part of the one being written: that one is lost.
        s.ledger.residue(0);
        if let Some(f) = pending.frames.pop_front() {
            pending.frame_start += f.len as usize;
            pending.pos = pending.frame_start;
            in_flight_lost(
                shared,
                DropCounts {
                    entries: 1,
                    bytes: u64::from(f.payload),
                },
                &format!("log plugin {} died mid-frame", opts.name),
            );
        }
    }
    shared.delivered_lost(
        lost,
        &format!(
            "log plugin {} at {} died while reading a frame",
            opts.name, s.addr
        ),
    );
    if back.0 > 0 {
        shared.taken_back(back.0, back.1);
        let mut buf = whole_frames;
        buf.extend_from_slice(&pending.buf[pending.frame_start..]);
        let mut frames: VecDeque<FrameInfo> = infos.into();
        frames.extend(pending.frames.drain(..));
        pending.buf = buf;
        pending.frames = frames;
        pending.frame_start = 0;
        pending.pos = 0;
    }
    let _ = dir.remove_fifo(&s.fifo_name);
    forget(&s.addr).await;
    shared.set_outage(Some(format!(
        "log plugin {} at {} stopped or restarted ({} unread messages kept to send again)",
        opts.name, s.addr, back.0
    )));
}

/// Everything is written: waits (bounded) for the plugin to read the FIFO empty, then calls
/// StopLogging and removes the FIFO. False when the plugin died meanwhile.
async fn close_session(shared: &Shared, opts: &PluginOptions, s: &mut Session) -> bool {
    let until = Instant::now() + CLOSE_WAIT;
    loop {
        match fifo::pending(s.fifo.get_ref()) {
            Ok(0) => break,
            Ok(_) if Instant::now() >= until => {
                log::warn!(
                    "log plugin {}: {} not read empty within {CLOSE_WAIT:?}; stopping anyway",
                    opts.name,
                    s.fifo_path.display()
                );
                break;
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            _ = watch_closed(&mut s.watch) => {
                if !still_alive(s).await {
                    return false;
                }
            }
        }
    }
    let left = fifo::pending(s.fifo.get_ref()).unwrap_or(0);
    let r = s.ledger.residue(left);
    let mut lost = DropCounts {
        entries: r.unread + u64::from(r.partial.is_some()),
        bytes: r.partial.unwrap_or(0),
    };
    let req = StopLoggingRequest {
        file: s.fifo_path.display().to_string(),
    };
    if let Err(e) = call_json::<_, ErrResponse>(&s.addr, STOP_LOGGING, &req, CALL_TIMEOUT).await {
        log::warn!("{e}");
    }
    // What the plugin never read (it was too slow within CLOSE_WAIT) is counted.
    lost.bytes = lost.bytes.max(left as u64);
    shared.delivered_lost(
        lost,
        &format!(
            "log plugin {} at {}: FIFO not read at StopLogging",
            opts.name, s.addr
        ),
    );
    // The FIFO goes with its directory when the task ends.
    true
}
