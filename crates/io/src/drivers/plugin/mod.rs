//! A Docker logging plugin as a log driver: Scribe does what dockerd does for an installed
//! plugin (Activate, StartLogging with a FIFO, `[u32 BE size][LogEntry]` frames, StopLogging),
//! without a slow, stalled, missing or crashing plugin ever holding up the container for more
//! than [`STALL`] or taking it down.
//!
//! [`PluginLog::log`] only encodes frames and queues them (bounded by `max-buffer-size` with
//! `mode=non-blocking`, else [`DEFAULT_QUEUE_BYTES`]). When the queue is full: non-blocking
//! mode drops the new messages and counts them; blocking mode (the default) makes the container
//! wait while the plugin keeps reading, but once the plugin is missing or has read nothing for
//! [`STALL`], new messages are dropped and counted instead. A task on the shim's runtime
//! ([`task`]) finds the plugin (retrying with capped backoff while it is missing), activates it
//! once per shim ([`activate`]), makes the container's FIFO ([`fifo`]), calls StartLogging and
//! writes the frames whenever the FIFO has room. It watches an idle connection to the plugin:
//! when the plugin dies, the frames it left unread in the FIFO are read back out (the shim
//! holds the FIFO `O_RDWR`), a frame it read only part of is counted dropped, and the whole ones
//! are written again into a new FIFO once the plugin is back and has been activated and asked
//! to StartLogging again.
//!
//! At close the task writes what is queued, waits (bounded) for the plugin to empty the FIFO,
//! calls StopLogging, and removes the FIFO and its directory. Reports go to the
//! [`DriverReporter`] with the plugin's name as driver and its address as target.
//!
//! A plugin found at open is asked for its Capabilities then (bounded by [`PROBE_TIMEOUT`]):
//! one that serves ReadLogs gets no dual-logging cache, and the container's log directory gets
//! the descriptor `scribe logs` reads it back with ([`crate::plugin::readback`]), kept after
//! the container as a json-file log is. A plugin missing at open keeps the cache.

pub mod activate;
pub mod fifo;
pub mod options;
pub mod task;

use std::sync::{Arc, Mutex, MutexGuard};

use super::live::{wait_room, wait_until, LiveSet};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use super::{Batch, DriverFuture, DriverReporter, DriverStats, LogDriver, Mode, OpenContext};
use crate::jsonfile::{DropCounts, DropTracker, JsonFileReport};
use crate::localfmt::{EntryRef, PartialMeta};
use crate::plugin::discovery::{self, PluginAddr};
use crate::plugin::frame::encode_frame;
use crate::plugin::proto::Info;
use crate::plugin::readback;
pub use options::PluginOptions;

/// In blocking mode, how long a full queue may make the container wait for the plugin to read
/// before new messages are dropped instead.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes of frames the queue holds in blocking mode (non-blocking: `max-buffer-size`).
pub const DEFAULT_QUEUE_BYTES: u64 = 16 << 20;

/// Every plugin driver of this process whose task has not finished (see [`all_finished`]).
static LIVE: LiveSet<Shared> = LiveSet::new();

fn live() -> Vec<Arc<Shared>> {
    LIVE.live()
}

/// Resolves once every plugin driver of the shim is closed and its task has delivered (or
/// dropped and reported) everything and removed its FIFO. The shim awaits it, bounded.
pub async fn all_finished() {
    for s in live() {
        wait_until(&s.progress, || s.lock().finished).await;
    }
}

/// The shim is exiting: everything the plugin drivers still queue is counted dropped and
/// reported (their FIFO directories are on tmpfs and removed by their tasks when they can).
pub fn abandon_all(reason: &str) {
    for s in live() {
        let reports = {
            let mut st = s.lock();
            if st.finished {
                continue;
            }
            st.finished = true;
            let lost = DropCounts {
                entries: st.frames.len() as u64 + st.in_flight,
                bytes: st.payload_queued + st.payload_in_flight,
            };
            let mut reports = Vec::new();
            if lost.entries > 0 {
                st.stats.dropped += lost.entries;
                st.stats.dropped_bytes += lost.bytes;
                let error = format!("log plugin {}: {reason} with output not delivered", s.name);
                reports.extend(st.tracker.dropped(lost, &error));
            }
            reports.extend(st.tracker.closed());
            reports
        };
        s.progress.notify_waiters();
        for r in reports {
            s.emit(r);
        }
    }
}

/// One container's plugin driver.
pub struct PluginLog {
    shared: Arc<Shared>,
    max_bytes: u64,
    blocking: bool,
    /// The plugin serves ReadLogs and its descriptor was written: no cache is kept.
    reads_back: bool,
}

/// What the driver and its task share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the task: something was queued, or the driver closed.
    wake: Notify,
    /// Wakes drain() and room(): frames were written or dropped, or the task ended.
    progress: Notify,
    /// The plugin's name (the reports' driver).
    name: String,
    reporter: Option<Arc<dyn DriverReporter>>,
}

/// A queued frame: its length and its message's bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrameInfo {
    /// Bytes of the frame (size field included).
    pub len: u32,
    /// Bytes of the message in it (what a drop counts).
    pub payload: u32,
}

/// What the driver's `log` and its task share, under one mutex.
#[derive(Default)]
pub(crate) struct State {
    /// Encoded frames not yet taken by the task.
    pub queue: Vec<u8>,
    pub frames: Vec<FrameInfo>,
    pub payload_queued: u64,
    /// Frames the task holds, not yet written into a FIFO.
    pub in_flight: u64,
    pub payload_in_flight: u64,
    pub closed: bool,
    pub finished: bool,
    /// The plugin is missing, down or being restarted.
    pub outage: bool,
    /// Where the plugin is (for reports), once found.
    pub target: String,
    /// When the plugin last read from the FIFO (or the driver opened).
    pub last_progress: Option<Instant>,
    pub tracker: DropTracker,
    pub stats: DriverStats,
    ids: Option<super::PartialIds>,
}

impl Shared {
    /// The state (a panic elsewhere never makes it unusable: counting goes on).
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs `report` in the shim's log and hands it to the reporter (`runtime.log`).
    pub(crate) fn emit(&self, report: JsonFileReport) {
        let (n, t) = (&self.name, self.lock().target.clone());
        match &report {
            JsonFileReport::Dropping { error } => {
                log::error!("{error}; dropping output for log plugin {n}")
            }
            JsonFileReport::Resumed { lost } => log::warn!(
                "log plugin {n}: logging again after dropping {} messages ({} bytes)",
                lost.entries,
                lost.bytes
            ),
            JsonFileReport::Warning { error } => log::warn!("{error}"),
            JsonFileReport::Closed { total, .. } => log::warn!(
                "log plugin {n}: closed; {} messages ({} bytes) dropped in all",
                total.entries,
                total.bytes
            ),
        }
        if let Some(r) = &self.reporter {
            r.report(n, &t, report);
        }
    }

    /// Counts `lost` dropped because of `error` (and reports the start of an episode).
    pub(crate) fn dropped(&self, lost: DropCounts, error: &str) {
        if lost.entries == 0 {
            return;
        }
        let r = {
            let mut st = self.lock();
            st.stats.dropped += lost.entries;
            st.stats.dropped_bytes += lost.bytes;
            st.tracker.dropped(lost, error)
        };
        self.progress.notify_waiters();
        if let Some(r) = r {
            self.emit(r);
        }
    }

    /// The task wrote `frames` frames into the FIFO.
    pub(crate) fn written(&self, frames: u64, payload: u64) {
        let r = {
            let mut st = self.lock();
            st.in_flight = st.in_flight.saturating_sub(frames);
            st.payload_in_flight = st.payload_in_flight.saturating_sub(payload);
            st.stats.delivered += frames;
            st.last_progress = Some(Instant::now());
            if st.tracker.is_healthy() {
                None
            } else {
                st.tracker.written(Instant::now())
            }
        };
        self.progress.notify_waiters();
        if let Some(r) = r {
            self.emit(r);
        }
    }

    /// Frames counted delivered went back to the task (a dead plugin never read them).
    /// Messages counted delivered (written to the FIFO) that the plugin never read: they are
    /// un-counted as delivered and reported dropped, with `error` saying why.
    pub(crate) fn delivered_lost(&self, lost: DropCounts, error: &str) {
        if lost.entries == 0 {
            return;
        }
        {
            let mut st = self.lock();
            st.stats.delivered = st.stats.delivered.saturating_sub(lost.entries);
        }
        self.dropped(lost, error);
    }

    pub(crate) fn taken_back(&self, frames: u64, payload: u64) {
        let mut st = self.lock();
        st.stats.delivered = st.stats.delivered.saturating_sub(frames);
        st.in_flight += frames;
        st.payload_in_flight += payload;
    }

    /// Everything queued, if anything is.
    pub(crate) fn try_batch(&self) -> Option<(Vec<u8>, Vec<FrameInfo>)> {
        let mut st = self.lock();
        if st.frames.is_empty() {
            return None;
        }
        let frames = std::mem::take(&mut st.frames);
        let bytes = std::mem::take(&mut st.queue);
        st.in_flight += frames.len() as u64;
        st.payload_in_flight += std::mem::take(&mut st.payload_queued);
        drop(st);
        self.progress.notify_waiters();
        Some((bytes, frames))
    }

    /// The plugin is away (`Some(why)`, reported once per outage) or back (`None`).
    pub(crate) fn set_outage(&self, why: Option<String>) {
        let new = {
            let mut st = self.lock();
            let was = st.outage;
            st.outage = why.is_some();
            if why.is_none() {
                st.last_progress = Some(Instant::now());
            }
            !was && why.is_some()
        };
        self.progress.notify_waiters();
        if let (true, Some(why)) = (new, why) {
            self.emit(JsonFileReport::Warning {
                error: format!("{why}; keeping output queued and retrying"),
            });
        }
    }

    /// Where the plugin was found (the reports' target).
    pub(crate) fn set_target(&self, target: String) {
        self.lock().target = target;
    }

    /// The task ends.
    pub(crate) fn finished(&self) {
        let summary = {
            let mut st = self.lock();
            if std::mem::replace(&mut st.finished, true) {
                None
            } else {
                st.tracker.closed()
            }
        };
        self.progress.notify_waiters();
        if let Some(r) = summary {
            self.emit(r);
        }
    }
}

impl PluginLog {
    /// Opens the driver for the container of `ctx`: looks the plugin up once (a missing plugin
    /// is a warning, and the task keeps looking; an unusable one is an error naming it), makes
    /// the container's FIFO directory, and starts the task on the current tokio runtime.
    pub fn open(
        opts: &PluginOptions,
        mode: Mode,
        ctx: &OpenContext<'_>,
    ) -> Result<PluginLog, String> {
        discovery::validate_name(&opts.name)?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| format!("log plugin {} needs the shim's runtime: {e}", opts.name))?;
        let found = match discovery::find(&opts.name, &opts.search) {
            Ok(a) => Some(a),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.to_string()),
        };
        let [ns, id] = ctx.subdirs;
        let dir = fifo::FifoDir::create(&opts.fifo_root, ns, id)
            .map_err(|e| format!("log plugin {} FIFO directory: {e}", opts.name))?;
        let info = container_info(opts, ctx);
        let reads_back = match &found {
            Some(addr) => read_back(opts, ctx, addr, &info),
            None => false,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                last_progress: Some(Instant::now()),
                target: found
                    .as_ref()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| opts.name.clone()),
                ..State::default()
            }),
            wake: Notify::new(),
            progress: Notify::new(),
            name: opts.name.clone(),
            reporter: ctx.reporter.clone(),
        });
        if found.is_none() {
            shared.set_outage(Some(format!(
                "log plugin {:?} not found (searched {}); the container runs, and Scribe keeps looking for the plugin",
                opts.name,
                search_text(&opts.search)
            )));
        }
        LIVE.add(&shared);
        runtime.spawn(task::run(shared.clone(), opts.clone(), info, dir, found));
        Ok(PluginLog {
            shared,
            max_bytes: mode.max_buffer().unwrap_or(DEFAULT_QUEUE_BYTES),
            blocking: mode == Mode::Blocking,
            reads_back,
        })
    }

    fn stalled(&self, st: &State) -> bool {
        st.outage || st.closed || st.last_progress.is_none_or(|t| t.elapsed() >= STALL)
    }

    fn full(&self, st: &State) -> bool {
        st.queue.len() as u64 + 16 * 1024 + 256 > self.max_bytes
    }

    async fn room_or_stall(&self) {
        wait_room(&self.shared.progress, || {
            let st = self.shared.lock();
            if !self.full(&st) || self.stalled(&st) {
                return None;
            }
            st.last_progress.map(|t| t + STALL)
        })
        .await
    }

    async fn drained(&self) {
        wait_until(&self.shared.progress, || {
            let st = self.shared.lock();
            st.finished || (st.frames.is_empty() && st.in_flight == 0)
        })
        .await
    }
}

/// How long [`PluginLog::open`] waits for the plugin's Capabilities.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Whether the container's logs can be read back through the plugin at `addr`: its
/// Capabilities (asked at open, bounded by [`PROBE_TIMEOUT`], as the cache is decided then)
/// say ReadLogs and the descriptor readers need ([`readback::FILE`]) was written in the
/// container's log directory. Any failure keeps the dual-logging cache (a warning says why).
fn read_back(opts: &PluginOptions, ctx: &OpenContext<'_>, addr: &PluginAddr, info: &Info) -> bool {
    let caps = {
        let addr = addr.clone();
        // The shim's runtime may be current-thread and busy in this call: the probe runs its
        // own, on its own thread. Activation is remembered for the task (once per shim).
        std::thread::Builder::new()
            .name("plugin-caps".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(async {
                    match tokio::time::timeout(
                        PROBE_TIMEOUT,
                        activate::activate(&addr, PROBE_TIMEOUT),
                    )
                    .await
                    {
                        Ok(r) => r.map_err(|e| e.to_string()),
                        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
                    }
                })
            })
            .map_err(|e| format!("spawning a thread: {e}"))
            .and_then(|t| t.join().map_err(|_| "the probe panicked".to_string()))
            .and_then(|r| r)
    };
    let caps = match caps {
        Ok(c) => c,
        Err(e) => {
            log::warn!(
                "log plugin {}: capabilities unknown at open ({e}); keeping the dual-logging cache",
                opts.name
            );
            return false;
        }
    };
    if !caps.read_logs {
        return false;
    }
    let [ns, id] = ctx.subdirs;
    let d = readback::Descriptor::new(&opts.name, addr, info);
    match write_descriptor(ctx.root, ns, id, &d) {
        Ok(()) => true,
        Err(e) => {
            log::warn!(
                "log plugin {}: reads logs back, but {}/{ns}/{id}/{}: {e}; keeping the dual-logging cache",
                opts.name,
                ctx.root.display(),
                readback::FILE
            );
            false
        }
    }
}

/// Writes `d` as `<root>/<ns>/<id>/`[`readback::FILE`] (through a temporary name, no link
/// followed below `root`).
fn write_descriptor(
    root: &std::path::Path,
    ns: &str,
    id: &str,
    d: &readback::Descriptor,
) -> Result<(), String> {
    use std::io::Write;
    let json = serde_json::to_vec_pretty(d).map_err(|e| e.to_string())?;
    let dir = scribe_safefs::SafeDir::open_root(root, true, 0o755)
        .and_then(|r| r.create_dir_all([ns, id], 0o755))
        .map_err(|e| e.to_string())?;
    let tmp = format!(".{}.tmp", readback::FILE);
    let mut f = dir.replace_file(&tmp, 0o644).map_err(|e| e.to_string())?;
    f.write_all(&json)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("writing {tmp}: {e}"))?;
    dir.rename(&tmp, readback::FILE).map_err(|e| e.to_string())
}

fn search_text(s: &discovery::SearchPath) -> String {
    let mut v: Vec<String> = Vec::new();
    for d in s.socket_dirs.iter().chain(&s.spec_dirs) {
        let d = d.display().to_string();
        if !v.contains(&d) {
            v.push(d);
        }
    }
    v.join(", ")
}

/// The StartLogging `Info` of the container: what the shim gave (`ctx.container`), completed
/// from the tag info, with the plugin's options as `Config` and the environment only when an
/// option asks for it (`env`, `env-regex`, as Docker's drivers read it).
pub fn container_info(opts: &PluginOptions, ctx: &OpenContext<'_>) -> Info {
    let mut info = ctx.container.cloned().unwrap_or_default();
    info.container_id = ctx.tag.container_id.clone();
    if info.container_name.is_empty() {
        info.container_name = ctx.tag.container_name.clone();
    }
    if !info.container_name.starts_with('/') {
        info.container_name.insert(0, '/');
    }
    if info.container_image_name.is_empty() {
        info.container_image_name = ctx.tag.image_name.clone();
    }
    if info.container_image_id.is_empty() {
        info.container_image_id = ctx.tag.image_id.clone();
    }
    info.config = opts.config.clone();
    if !(opts.config.contains_key("env") || opts.config.contains_key("env-regex")) {
        info.container_env.clear();
    }
    info.log_path.clear();
    info.daemon_name = "scribe".into();
    info
}

impl Drop for PluginLog {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl LogDriver for PluginLog {
    fn name(&self) -> &str {
        &self.shared.name
    }

    fn log(&self, batch: &Batch<'_>) -> usize {
        let mut lost = DropCounts::default();
        let mut queued = 0u64;
        let time_nano = nanos(batch.time);
        let mut taken = batch.records.len();
        let mut id = String::new();
        let report = {
            let mut st = self.shared.lock();
            for (i, r) in batch.records.iter().enumerate() {
                let line = r.line.strip_suffix(b"\n");
                let room = st.frames.is_empty() || (st.queue.len() as u64) < self.max_bytes;
                if !room {
                    if self.blocking && !self.stalled(&st) {
                        taken = i;
                        break;
                    }
                    lost.entries += 1;
                    lost.bytes += r.line.len() as u64;
                    continue;
                }
                // Output that ended without a newline is, as dockerd's copier sends it, the
                // first piece of a line that never ended.
                let partial = r.partial.or_else(|| {
                    line.is_none().then(|| super::Partial {
                        id: st.ids.get_or_insert_with(super::PartialIds::new).next_id(),
                        ordinal: 1,
                        last: false,
                    })
                });
                if let Some(p) = &partial {
                    use std::fmt::Write;
                    id.clear();
                    let _ = write!(id, "{}", p.id);
                }
                let line = line.unwrap_or(r.line);
                let entry = EntryRef {
                    source: batch.stream.as_str(),
                    time_nano,
                    line,
                    partial: partial.is_some(),
                    partial_meta: partial.map(|p| PartialMeta {
                        last: p.last,
                        id: &id,
                        ordinal: i32::try_from(p.ordinal).unwrap_or(i32::MAX),
                    }),
                };
                let before = st.queue.len();
                encode_frame(&entry, &mut st.queue);
                let len = u32::try_from(st.queue.len() - before).unwrap_or(u32::MAX);
                let payload = u32::try_from(line.len()).unwrap_or(u32::MAX);
                st.frames.push(FrameInfo { len, payload });
                st.payload_queued += u64::from(payload);
                queued += 1;
            }
            if lost.entries > 0 {
                st.stats.dropped += lost.entries;
                st.stats.dropped_bytes += lost.bytes;
                let error = format!(
                    "log plugin {}: queue full ({} messages, {} bytes waiting{})",
                    self.shared.name,
                    st.frames.len() as u64 + st.in_flight,
                    st.queue.len(),
                    if st.outage {
                        ", plugin unreachable"
                    } else {
                        ", plugin not reading"
                    }
                );
                st.tracker.dropped(lost, &error)
            } else {
                None
            }
        };
        if queued > 0 {
            self.shared.wake.notify_one();
        }
        if let Some(r) = report {
            self.shared.emit(r);
        }
        taken
    }

    fn room(&self) -> DriverFuture<'_> {
        Box::pin(self.room_or_stall())
    }

    fn drain(&self) -> DriverFuture<'_> {
        Box::pin(self.drained())
    }

    /// True when the plugin's Capabilities say ReadLogs (asked at open) and its descriptor is
    /// written: `scribe logs` reads through the plugin, no dual-logging cache is kept.
    fn reads_back(&self) -> bool {
        self.reads_back
    }

    fn stats(&self) -> DriverStats {
        self.shared.lock().stats
    }
}

impl std::fmt::Debug for PluginLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginLog")
            .field("plugin", &self.shared.name)
            .finish()
    }
}

#[cfg(test)]
mod tests;
