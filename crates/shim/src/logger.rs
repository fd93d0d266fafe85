//! The shim's own log: runtime-log records (JSON lines) on stderr, which in the daemon is the
//! bundle's `log` FIFO that containerd copies into its own log.

use std::io::Write;

use log::{LevelFilter, Metadata, Record};
use scribe_events::{Level, RuntimeRecord};

struct Logger {
    max: LevelFilter,
}

fn level_of(l: log::Level) -> Level {
    match l {
        log::Level::Error => Level::Error,
        log::Level::Warn => Level::Warn,
        log::Level::Info => Level::Info,
        log::Level::Debug | log::Level::Trace => Level::Debug,
    }
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.max
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let rec = RuntimeRecord::new(
            level_of(record.level()),
            "containerd-shim-scribe-v2",
            record.args().to_string(),
        )
        .with_pid(std::process::id());
        if let Ok(mut line) = rec.to_json() {
            line.push('\n');
            // One write per record; a full or readerless log FIFO drops the record rather than
            // stalling the shim (stderr is non-blocking in the daemon).
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
        }
    }

    fn flush(&self) {}
}

/// Installs the logger; `debug` lowers the level from info to debug.
pub fn init(debug: bool) {
    let max = if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    };
    if log::set_boxed_logger(Box::new(Logger { max })).is_ok() {
        log::set_max_level(max);
    }
}
