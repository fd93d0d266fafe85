//! Log drivers: every destination of a container's framed output behind one small interface.
//!
//! The relay reads a stream, frames it into messages once ([`crate::framing`]: lines, split at
//! 16 KiB with partial metadata) and hands each read's messages, as one [`Batch`], to every
//! driver the container asked for. A driver is one module behind [`LogDriver`]; the relay holds
//! no driver-specific code. containerd's FIFOs and `file://` destinations are not drivers: they
//! take raw bytes (zero-copy when no driver is on).
//!
//! Drivers are shared by a process's two output relays (`Arc<dyn LogDriver>`), so every method
//! takes `&self`. None of them may block the shim's thread on a peer: a driver that cannot take
//! a batch now either takes fewer messages (the relay waits on [`LogDriver::room`], which is
//! back-pressure on this container only) or, per its [`Mode`], drops and counts them.

pub mod feed;
pub mod fluentd;
pub mod json_file;
pub mod live;
pub mod local;
pub mod mode;
pub mod partial;
pub mod plugin;
pub mod registry;

use std::fmt::Debug;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use crate::jsonfile::TagInfo;
use crate::stream::Stream;

pub use crate::jsonfile::{DropCounts, DropTracker, JsonFileReport as DriverReport};

pub use mode::{Mode, ModeError, DEFAULT_MAX_BUFFER_SIZE, MODE_KEYS};
pub use partial::{Partial, PartialId, PartialIds};

/// A future a driver returns from its async methods (the relays that await them are tokio
/// tasks, which must be `Send`).
pub type DriverFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One message as every driver sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The bytes of the message, with the trailing `\n` when it ends a line (drivers that store
    /// lines without it, as `local`, fluentd and plugins do, strip it).
    pub line: &'a [u8],
    /// `Some` for every piece of a line longer than the framing limit.
    pub partial: Option<Partial>,
}

/// The messages of one read of one stream: all carry the time of that read.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    /// Which stream they came from.
    pub stream: Stream,
    /// When they were read (Docker's entry time; pieces of a split line carry their first
    /// piece's time as closely as the reads allow).
    pub time: SystemTime,
    /// The messages, in order.
    pub records: &'a [Record<'a>],
}

/// Running totals of one driver, for reports and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    /// Messages delivered to the destination (written, sent, acknowledged where asked).
    pub delivered: u64,
    /// Messages dropped (buffer full, destination failing), counted, never silently.
    pub dropped: u64,
    /// Payload bytes of the dropped messages.
    pub dropped_bytes: u64,
}

/// One destination of a container's framed output (json-file, local, fluentd, a plugin).
pub trait LogDriver: Debug + Send + Sync {
    /// Docker's name of the driver (`json-file`, `local`, `fluentd`, a plugin's name): the
    /// `component` of its reports in `runtime.log`.
    fn name(&self) -> &str;

    /// Takes the messages of `batch` from the first on and returns how many it took (delivered,
    /// queued, or dropped and counted). Fewer than all means "not now": the relay waits on
    /// [`LogDriver::room`] and passes the rest. Never blocks the calling thread on a peer.
    fn log(&self, batch: &Batch<'_>) -> usize;

    /// Resolves when the driver can take more after [`LogDriver::log`] took fewer than given.
    fn room(&self) -> DriverFuture<'_>;

    /// Resolves when everything taken so far reached the destination (files renamed into place,
    /// network peer acknowledged), as far as the driver can tell; the caller bounds the wait.
    fn drain(&self) -> DriverFuture<'_>;

    /// Whether `scribe logs` can read this driver's output back (json-file, local, a plugin with
    /// ReadLogs). When none of a container's drivers can, the dual-logging cache is kept.
    fn reads_back(&self) -> bool;

    /// Totals so far.
    fn stats(&self) -> DriverStats;
}

/// Receives every driver's reports (dropping started, delivering again, closed after drops,
/// warnings); the shim writes them as `runtime.log` records with `component` = `driver`.
pub trait DriverReporter: Send + Sync {
    /// `driver` is [`LogDriver::name`]; `target` names the destination (a file path, a
    /// fluentd address, a plugin). Called in order; never blocks for long.
    fn report(&self, driver: &str, target: &str, report: DriverReport);
}

/// What a driver is opened with, besides its own options.
#[derive(Clone)]
pub struct OpenContext<'a> {
    /// The trusted root of the container's directory (`LogRoot`, or `JsonFileRoot` for the
    /// file drivers' logs): opened by path, links followed.
    pub root: &'a Path,
    /// The container's directory below `root`, walked without following links:
    /// `[namespace, container id]`. File drivers create their files in it (or below it) through
    /// `scribe_safefs::SafeDir` only.
    pub subdirs: [&'a str; 2],
    /// The container, for tags, records and plugins.
    pub tag: &'a TagInfo,
    /// Where reports go (also logged in the shim's own log by the driver).
    pub reporter: Option<Arc<dyn DriverReporter>>,
    /// What the shim knows of the container for a logging plugin's StartLogging (name, image,
    /// labels, entrypoint, args, creation time, environment); `None`: built from `tag`.
    pub container: Option<&'a crate::plugin::proto::Info>,
}

impl Debug for OpenContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenContext")
            .field("root", &self.root)
            .field("subdirs", &self.subdirs)
            .finish()
    }
}

/// The drivers of one process, shared by its output relays.
#[derive(Clone, Debug)]
pub struct Drivers {
    list: Vec<Arc<dyn LogDriver>>,
    max_line: usize,
}

impl Default for Drivers {
    fn default() -> Self {
        Drivers {
            list: Vec::new(),
            max_line: crate::framing::DEFAULT_MAX_LINE,
        }
    }
}

impl Drivers {
    /// `list`, fed lines split at `max_line` bytes (Docker: 16 KiB).
    pub fn new(list: Vec<Arc<dyn LogDriver>>, max_line: usize) -> Drivers {
        Drivers { list, max_line }
    }

    /// No driver: the relay may splice.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The longest message before a line is split.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// The drivers.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn LogDriver>> {
        self.list.iter()
    }

    /// Whether some driver keeps every message for reading back.
    pub fn reads_back(&self) -> bool {
        self.list.iter().any(|d| d.reads_back())
    }

    /// Resolves when every driver delivered what it took (the caller bounds the wait).
    pub async fn drain(&self) {
        for d in &self.list {
            d.drain().await;
        }
    }
}
