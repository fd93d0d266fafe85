//! Stdio plumbing for the Scribe shim.
//!
//! This crate holds the pieces of the shim that move or shape a container's
//! output and the runtime's own log, independent of ttrpc and of the event
//! model:
//!
//! - [`uri`]: what containerd's `stdout`/`stderr` strings mean (fifo, `file://`,
//!   `binary://`, `binary-v2://`, none);
//! - [`framing`]: Docker-compatible line framing with partial lines;
//! - [`jsonfile`]: the Docker `json-file` writer with rotation, compression and tags;
//! - [`localfmt`]: Docker's `local` log format (records read forwards and backwards);
//! - [`drivers`]: the log drivers (json-file, ...) every framed message goes to;
//! - [`runclog`]: reading the runtime's `log.json`;
//! - [`childenv`]: the environment of the runtime and the logging binaries (no systemd variables);
//! - [`spool`]: the on-disk spool of a stream whose FIFO reader stopped reading;
//! - [`relay`]: zero-copy `splice(2)`/`tee(2)` building blocks;
//! - [`reader`]: reading json-file logs back (`scribe logs`): tail, time windows, follow;
//! - [`timefmt`]: the RFC 3339 timestamp form Docker and the log spec use.
//!
//! Everything here is synchronous and allocation-light on purpose: the shim runs
//! a current-thread runtime and must stay small per container.

pub mod binary;
#[warn(missing_docs)]
pub mod childenv;
pub mod console;
#[warn(missing_docs)]
pub mod drivers;
#[warn(missing_docs)]
pub mod framing;
#[warn(missing_docs)]
pub mod jsonfile;
#[warn(missing_docs)]
pub mod localfmt;
mod percent;
#[warn(missing_docs)]
pub mod plugin;
#[warn(missing_docs)]
pub mod reader;
#[warn(missing_docs)]
pub mod relay;
#[warn(missing_docs)]
pub mod runclog;
pub mod spool;
pub mod stdio;
#[warn(missing_docs)]
pub mod stream;
#[cfg(test)]
mod testutil;
#[warn(missing_docs)]
pub mod timefmt;
#[warn(missing_docs)]
pub mod uri;

pub use drivers::json_file::JsonLog;
pub use drivers::{DriverReporter, LogDriver};
pub use framing::{LineFramer, Message, PartialInfo, DEFAULT_MAX_LINE};
pub use jsonfile::{
    JsonFileError, JsonFileOptions, JsonFileReport, JsonFileStats, JsonFileWriter, TagInfo,
};
pub use runclog::{last_error, Level, RuntimeLogFollower, RuntimeLogLine};
pub use stream::Stream;
pub use uri::{BinaryUri, StdioUri, UriError};
