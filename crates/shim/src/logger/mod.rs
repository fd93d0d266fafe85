//! The shim's own log: every line logged through the `log` facade becomes a runtime-log record
//! (component `shim`). It is written as a JSON line to stderr, which in the daemon is the bundle's
//! `log` FIFO that containerd copies into its own log, and appended to the `runtime.log` of the
//! containers it concerns (see [`route`]).
//!
//! A line concerns one container when it carries the key-value `container`:
//! `log::info!(container = id; "created")`. It then goes to that container's runtime.log, with
//! the id as `container_id`; a line without it goes to the runtime.log of every container the
//! shim serves. An `error` key-value fills the record's `error` field; any other key-value
//! becomes an extra field (as text). Debug lines are written only when the shim runs with
//! `-debug`.
//!
//! Everything is synchronous on the calling thread: one `write(2)` of a few hundred bytes per
//! destination, no thread, no queue.

mod fields;
mod route;

use std::io::Write;
use std::sync::Arc;

use log::{LevelFilter, Metadata, Record};
use scribe_events::{RuntimeLog, RuntimeRecord};

use fields::Fields;
use route::{Routes, Trouble};

/// The `component` of the shim's own records.
pub const COMPONENT: &str = "shim";

/// The runtime.log files of the containers this shim serves.
static ROUTES: Routes = Routes::new();

/// Lines about `container`, and lines about no container in particular, go to `sink` until
/// [`detach`].
pub fn attach(container: &str, sink: Arc<RuntimeLog>) {
    ROUTES.attach(container, sink);
}

/// The shim no longer serves `container`: its runtime.log gets no more of the shim's lines.
pub fn detach(container: &str) {
    ROUTES.detach(container);
}

struct Logger {
    max: LevelFilter,
    pid: u32,
}

impl Logger {
    fn record(&self, record: &Record, fields: Fields) -> RuntimeRecord {
        let mut rec =
            RuntimeRecord::new(record.level().into(), COMPONENT, record.args().to_string())
                .with_pid(self.pid);
        rec.error = fields.error;
        if let Some(id) = fields.container {
            rec = rec.with_field("container_id", id);
        }
        for (k, v) in fields.extra {
            rec = rec.with_field(k, v);
        }
        rec
    }
}

/// One JSON line on stderr. A full or readerless log FIFO drops the line rather than stalling
/// the shim (stderr is non-blocking in the daemon).
fn to_stderr(rec: &RuntimeRecord) {
    if let Ok(mut line) = rec.to_json() {
        line.push('\n');
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }
}

/// A runtime.log that stopped (or resumed) taking records is reported on stderr only: through
/// the `log` facade the report would be routed to the failing file again.
fn report(pid: u32, trouble: Trouble) {
    let rec = match trouble {
        Trouble::Failed { container, error } => RuntimeRecord::new(
            scribe_events::Level::Error,
            COMPONENT,
            "runtime.log: the shim's log lines are not written there until it works again",
        )
        .with_error(error.to_string())
        .with_field("container_id", container),
        Trouble::Recovered { container } => RuntimeRecord::new(
            scribe_events::Level::Info,
            COMPONENT,
            "runtime.log takes the shim's log lines again (some are missing)",
        )
        .with_field("container_id", container),
    };
    to_stderr(&rec.with_pid(pid));
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= self.max
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let fields = Fields::of(record);
        let container = fields.container.clone();
        let rec = self.record(record, fields);
        to_stderr(&rec);
        ROUTES.write(&rec, container.as_deref(), |t| report(self.pid, t));
    }

    fn flush(&self) {}
}

/// The level the shim logs at: debug with `-debug`, else info.
fn max_level(debug: bool) -> LevelFilter {
    if debug {
        LevelFilter::Debug
    } else {
        LevelFilter::Info
    }
}

/// Installs the logger; `debug` lowers the level from info to debug.
pub fn init(debug: bool) {
    let max = max_level(debug);
    let logger = Logger {
        max,
        pid: std::process::id(),
    };
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(max);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use log::Log;

    fn logger(debug: bool) -> Logger {
        Logger {
            max: max_level(debug),
            pid: 42,
        }
    }

    #[test]
    fn debug_lines_only_with_debug() {
        let debug = Metadata::builder().level(log::Level::Debug).build();
        let info = Metadata::builder().level(log::Level::Info).build();
        assert!(!logger(false).enabled(&debug));
        assert!(logger(false).enabled(&info));
        assert!(logger(true).enabled(&debug));
        let trace = Metadata::builder().level(log::Level::Trace).build();
        assert!(!logger(true).enabled(&trace));
    }

    #[test]
    fn key_values_become_record_fields() {
        let kvs: [(&str, &str); 3] = [
            ("container", "c1"),
            ("error", "no such process"),
            ("signal", "9"),
        ];
        let args = format_args!("kill failed");
        let record = Record::builder()
            .level(log::Level::Warn)
            .args(args)
            .key_values(&kvs)
            .build();
        let rec = logger(false).record(&record, Fields::of(&record));
        let v: serde_json::Value =
            serde_json::from_str(&rec.to_json().expect("json")).expect("json");
        assert_eq!(scribe_events::validate_runtime_record(&v), Ok(()), "{v}");
        assert_eq!(v["component"], "shim");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["msg"], "kill failed");
        assert_eq!(v["error"], "no such process");
        assert_eq!(v["container_id"], "c1");
        assert_eq!(v["signal"], "9");
        assert_eq!(v["pid"], 42);
    }
}
