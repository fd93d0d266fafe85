//! The fluentd driver: Docker's fluentd records over the forward protocol v1, without a down or
//! stalled fluentd ever holding up the container or another driver for more than [`STALL`].
//!
//! [`FluentdLog::log`] only encodes and queues (bounded by `fluentd-buffer-limit` records and,
//! in bytes, by `max-buffer-size` with `mode=non-blocking`, else
//! [`options::DEFAULT_QUEUE_BYTES`]). When the queue is full: in `non-blocking` mode the new
//! messages are dropped and counted; in `blocking` mode (Docker's default) the container waits
//! as long as fluentd keeps taking bytes (a slow fluentd slows the container, as in Docker),
//! but once fluentd is unreachable or has taken nothing for [`STALL`], new messages are dropped
//! and counted instead: a down or stalled fluentd never hangs the container or its other
//! drivers for more than that. A task on the shim's runtime ([`conn`]) sends whatever is
//! queued as one PackedForward frame, reconnects with backoff, and with `fluentd-request-ack`
//! resends a batch until fluentd acknowledges it. The container starts while fluentd is down
//! (dockerd refuses to start it unless `fluentd-async`): its output waits in the queue.
//!
//! Reports (to the shim's log and the [`DriverReporter`], target = the address): a warning
//! when fluentd cannot be reached (once per outage), `Dropping` when messages start being
//! dropped, `Resumed` when they are queued again, and the totals once the driver is closed and
//! its task has sent (or dropped) everything.

pub mod ack;
pub mod address;
pub mod conn;
pub mod options;
pub mod record;

use std::sync::{Arc, Mutex, MutexGuard};

use super::live::{wait_room, wait_until, LiveSet};
use std::time::Instant;

use tokio::sync::Notify;

use super::{Batch, DriverFuture, DriverReporter, DriverStats, LogDriver, Mode, OpenContext};
use crate::jsonfile::{DropCounts, DropTracker, JsonFileReport, TagTemplate};
pub use address::{Address, DEFAULT_ADDRESS};
pub use options::{FluentdOptionError, FluentdOptions, OPTION_KEYS};
use record::{encode_entry, EncodedTime, RecordFields};

/// The driver's name, Docker's.
pub const NAME: &str = "fluentd";

/// In blocking mode, how long a full queue may make the container wait for fluentd to take a
/// batch before new messages are dropped instead (a down or stalled fluentd never hangs it).
pub const STALL: std::time::Duration = std::time::Duration::from_secs(1);

/// The default tag: the container id's first 12 characters, as dockerd.
const DEFAULT_TAG: &str = "{{.ID}}";

/// Every fluentd driver of this process whose sender has not finished, so the shim can give
/// them a bounded time to deliver before it exits ([`all_finished`], [`abandon_all`]).
static LIVE: LiveSet<Shared> = LiveSet::new();

fn live() -> Vec<Arc<Shared>> {
    LIVE.live()
}

/// Resolves once every fluentd driver of the shim is closed and has sent (or dropped and
/// reported) everything it queued. The shim awaits it, bounded, before it exits: a container
/// removed at once (`ctr run --rm`) still has its output delivered when fluentd was briefly away.
pub async fn all_finished() {
    for s in live() {
        wait_until(&s.progress, || s.lock().finished).await;
    }
}

/// Gives up on everything the fluentd drivers still hold (the shim is exiting): it is counted as
/// dropped and the closing totals are reported, so nothing is lost without a record.
pub fn abandon_all(reason: &str) {
    for s in live() {
        let reports = {
            let mut st = s.lock();
            if st.finished {
                continue;
            }
            st.finished = true;
            let lost = DropCounts {
                entries: st.count + st.in_flight,
                bytes: st.queue.len() as u64,
            };
            let mut reports = Vec::new();
            if lost.entries > 0 {
                st.stats.dropped += lost.entries;
                st.stats.dropped_bytes += lost.bytes;
                let error = format!("fluentd {}: {reason} with output not delivered", s.target);
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

/// One container's fluentd driver (shared by its output relays).
pub struct FluentdLog {
    shared: Arc<Shared>,
    fields: RecordFields,
    sub_second: bool,
    max_records: u64,
    max_bytes: u64,
    blocking: bool,
}

/// What the driver and its sender task share.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// Wakes the task: something was queued, or the driver closed.
    wake: Notify,
    /// Wakes drain(): a batch was delivered or dropped, or the task ended.
    progress: Notify,
    target: String,
    reporter: Option<Arc<dyn DriverReporter>>,
}

#[derive(Default)]
struct State {
    /// Encoded `[time, record]` entries not yet taken by the task.
    queue: Vec<u8>,
    count: u64,
    /// Records the task holds (being sent or retried).
    in_flight: u64,
    closed: bool,
    finished: bool,
    /// fluentd could not be reached since the last successful send.
    outage: bool,
    /// When a batch was last delivered or given up (or the driver opened): in blocking mode a
    /// full queue makes the container wait only while this is recent (see [`STALL`]).
    last_progress: Option<Instant>,
    tracker: DropTracker,
    stats: DriverStats,
    /// Ids for output that ended without a newline (created on first use).
    ids: Option<super::PartialIds>,
}

impl FluentdLog {
    /// Opens the driver for the container of `ctx` and starts its sender on the current tokio
    /// runtime (the shim's). Errors name the tag or the missing runtime.
    pub fn open(
        opts: &FluentdOptions,
        mode: Mode,
        ctx: &OpenContext<'_>,
    ) -> Result<FluentdLog, String> {
        let tag = match &opts.tag {
            Some(t) => t.render(ctx.tag),
            None => TagTemplate::parse(DEFAULT_TAG).and_then(|t| t.render(ctx.tag)),
        }
        .map_err(|e| format!("fluentd tag: {e}"))?;
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| format!("fluentd driver needs the shim's runtime: {e}"))?;
        let name = &ctx.tag.container_name;
        let name = if name.starts_with('/') {
            name.clone()
        } else {
            format!("/{name}")
        };
        let fields = RecordFields::new(ctx.tag.container_id.clone(), name)
            .map_err(|e| format!("fluentd record fields: {e}"))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                last_progress: Some(Instant::now()),
                ..State::default()
            }),
            wake: Notify::new(),
            progress: Notify::new(),
            target: opts.address.to_string(),
            reporter: ctx.reporter.clone(),
        });
        LIVE.add(&shared);
        runtime.spawn(conn::run(shared.clone(), conn::SendConfig::new(opts, tag)));
        Ok(FluentdLog {
            shared,
            fields,
            sub_second: opts.sub_second,
            max_records: opts.buffer_limit,
            max_bytes: mode.max_buffer().unwrap_or(options::DEFAULT_QUEUE_BYTES),
            blocking: mode == Mode::Blocking,
        })
    }

    /// The address the driver sends to.
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    /// Whether fluentd has taken nothing for [`STALL`] or is unreachable: a full queue then
    /// drops rather than makes the container wait.
    fn stalled(&self, st: &State) -> bool {
        st.outage || st.closed || st.last_progress.is_none_or(|t| t.elapsed() >= STALL)
    }

    /// Whether the queue cannot take another message (a message of up to 16 KiB: the wait
    /// ends when the task took the queue, which empties it).
    fn full(&self, st: &State) -> bool {
        st.count >= self.max_records || st.queue.len() as u64 + 16 * 1024 + 256 > self.max_bytes
    }

    /// Blocking mode's wait: until the queue has room or fluentd counts as stalled.
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
            st.finished || (st.count == 0 && st.in_flight == 0)
        })
        .await
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next batch for the task: everything queued; `None` once closed and empty.
    pub(crate) async fn next_batch(&self) -> Option<(Vec<u8>, u64)> {
        loop {
            {
                let mut st = self.lock();
                if st.count > 0 {
                    let n = std::mem::take(&mut st.count);
                    st.in_flight = n;
                    let batch = std::mem::take(&mut st.queue);
                    drop(st);
                    // The queue has room again: a relay waiting in room() goes on.
                    self.progress.notify_waiters();
                    return Some((batch, n));
                }
                if st.closed {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }

    /// The batch in hand reached fluentd (acknowledged when asked).
    pub(crate) fn delivered(&self, count: u64) {
        let report = {
            let mut st = self.lock();
            st.in_flight = 0;
            st.last_progress = Some(Instant::now());
            st.stats.delivered += count;
            st.outage = false;
            if st.tracker.is_healthy() {
                None
            } else {
                st.tracker.written(Instant::now())
            }
        };
        self.progress.notify_waiters();
        if let Some(r) = report {
            self.emit(r);
        }
    }

    /// Part of a frame was written.
    pub(crate) fn progressed(&self) {
        self.lock().last_progress = Some(Instant::now());
    }

    /// The batch in hand was given up: dropped and counted.
    pub(crate) fn batch_failed(&self, count: u64, bytes: usize, error: &str) {
        let report = {
            let mut st = self.lock();
            st.in_flight = 0;
            st.last_progress = Some(Instant::now());
            let lost = DropCounts {
                entries: count,
                bytes: bytes as u64,
            };
            st.stats.dropped += count;
            st.stats.dropped_bytes += bytes as u64;
            st.tracker.dropped(lost, error)
        };
        self.progress.notify_waiters();
        if let Some(r) = report {
            self.emit(r);
        }
    }

    /// A connect, write or ack failed (the batch will be retried).
    pub(crate) fn send_failed(&self, error: &str, first_of_batch: bool) {
        let new_outage = {
            let mut st = self.lock();
            !std::mem::replace(&mut st.outage, true)
        };
        if new_outage {
            self.emit(JsonFileReport::Warning {
                error: format!("{error}; keeping output queued and retrying"),
            });
        } else if first_of_batch {
            log::warn!("{error}; retrying");
        }
    }

    /// A new connection is up.
    pub(crate) fn connected(&self, after_failure: bool) {
        if after_failure {
            log::info!("fluentd {}: connected again", self.target);
        }
    }

    /// The task ends (the driver is closed and everything was sent or dropped).
    pub(crate) fn finished(&self) {
        let summary = {
            let mut st = self.lock();
            if std::mem::replace(&mut st.finished, true) {
                None // abandoned at exit: already reported
            } else {
                st.tracker.closed()
            }
        };
        self.progress.notify_waiters();
        if let Some(r) = summary {
            self.emit(r);
        }
    }

    fn emit(&self, report: JsonFileReport) {
        let t = &self.target;
        match &report {
            JsonFileReport::Dropping { error } => {
                log::error!("{error}; dropping output for fluentd {t}")
            }
            JsonFileReport::Resumed { lost } => log::warn!(
                "fluentd {t}: queueing again after dropping {} messages ({} bytes)",
                lost.entries,
                lost.bytes
            ),
            JsonFileReport::Warning { error } => log::warn!("{error}"),
            JsonFileReport::Closed { total, .. } => log::warn!(
                "fluentd {t}: closed; {} messages ({} bytes) dropped in all",
                total.entries,
                total.bytes
            ),
        }
        if let Some(r) = &self.reporter {
            r.report(NAME, t, report);
        }
    }
}

impl Drop for FluentdLog {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

impl LogDriver for FluentdLog {
    fn name(&self) -> &str {
        NAME
    }

    fn log(&self, batch: &Batch<'_>) -> usize {
        let mut lost = DropCounts::default();
        let mut queued = 0u64;
        let time = EncodedTime::new(batch.time, self.sub_second);
        let mut taken = batch.records.len();
        let report = {
            let mut st = self.shared.lock();
            for (i, r) in batch.records.iter().enumerate() {
                let before = st.queue.len();
                let room = st.count < self.max_records && (before as u64) < self.max_bytes;
                // Output that ended without a newline (and is no piece of a split line) is, as
                // dockerd's copier sends it, the first piece of a line that never ended.
                let partial = match r.partial {
                    None if room && !r.line.ends_with(b"\n") => Some(super::Partial {
                        id: st.ids.get_or_insert_with(super::PartialIds::new).next_id(),
                        ordinal: 1,
                        last: false,
                    }),
                    p => p,
                };
                let encoded = room
                    && time.as_ref().is_ok_and(|t| {
                        encode_entry(
                            &mut st.queue,
                            &self.fields,
                            t,
                            batch.stream,
                            r.line,
                            partial,
                        )
                        .is_ok()
                    });
                // One message always fits an empty queue, however long.
                let over = encoded && st.count > 0 && st.queue.len() as u64 > self.max_bytes;
                if encoded && !over {
                    st.count += 1;
                    queued += 1;
                    continue;
                }
                st.queue.truncate(before);
                if (!room || over) && self.blocking && !self.stalled(&st) {
                    // Blocking mode, fluentd taking batches: the container waits (room()).
                    taken = i;
                    break;
                }
                lost.entries += 1;
                lost.bytes += r.line.len() as u64;
            }
            if lost.entries > 0 {
                st.stats.dropped += lost.entries;
                st.stats.dropped_bytes += lost.bytes;
                let error = format!(
                    "fluentd {}: queue full ({} messages, {} bytes waiting{})",
                    self.shared.target,
                    st.count + st.in_flight,
                    st.queue.len(),
                    if st.outage {
                        ", fluentd unreachable"
                    } else {
                        ""
                    }
                );
                st.tracker.dropped(lost, &error)
            } else if queued > 0 && !st.tracker.is_healthy() {
                st.tracker.written(Instant::now())
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

    fn reads_back(&self) -> bool {
        false
    }

    fn stats(&self) -> DriverStats {
        self.shared.lock().stats
    }
}

impl std::fmt::Debug for FluentdLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FluentdLog")
            .field("target", &self.shared.target)
            .finish()
    }
}

#[cfg(test)]
mod tests;
