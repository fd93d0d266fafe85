//! A container's log-driver reports (output dropped, delivering again, closed after drops) as
//! records in its `runtime.log`, with `component` = the driver's name (`json-file`, `local`,
//! `fluentd`, a plugin's name). File drivers name their file in `file`, others their
//! destination in `destination`.
//!
//! Counting: `entries_dropped`/`bytes_dropped` of a record are the drops it is the first to
//! report, so they add up over the records to the `total_*` of the closing summary. Bytes are
//! container output bytes (before JSON escaping).
//!
//! The spool (component `spool`) drops bytes, not entries: it cuts the oldest run of bytes out
//! of a FIFO's byte stream, wherever a line happens to end, so there is no entry count to give
//! (a line cut in two would count as neither or both, and counting lines would mean reading
//! the dropped bytes back from disk). Its records carry `bytes_dropped` / `total_bytes_dropped`
//! only; an `entries_dropped` of 0 beside them would read as "no entries were lost". The spec's
//! runtime-log schema (timestamp, level, component, msg, error, pid) has no drop fields, so
//! the counts are additions either way.
//!
//! `runtime.log` lives under `LogRoot`; when the json-file log shares that file system and it is
//! full, the record cannot be written either, and the shim's own log (containerd's log) is what
//! still says it. `JsonFileRoot` puts json-file logs elsewhere so that this cannot happen.

use std::sync::Arc;

use scribe_events::{Level, RuntimeLog, RuntimeRecord};
use scribe_io::drivers::{DriverReport, DriverReporter, DropCounts};

/// Writes one container's driver reports to its `runtime.log`.
pub struct RuntimeLogReporter {
    container_id: String,
    sink: Arc<RuntimeLog>,
}

impl RuntimeLogReporter {
    /// Reports of container `container_id`'s drivers go to `sink`.
    pub fn new(container_id: &str, sink: Arc<RuntimeLog>) -> RuntimeLogReporter {
        RuntimeLogReporter {
            container_id: container_id.to_owned(),
            sink,
        }
    }
}

impl DriverReporter for RuntimeLogReporter {
    fn report(&self, driver: &str, target: &str, report: DriverReport) {
        let rec = record(&self.container_id, driver, target, &report).with_pid(std::process::id());
        if let Err(e) = self.sink.append(&rec) {
            // The shim's log already has the report (every driver logs its reports).
            log::error!(
                "container {}: writing {driver} record to runtime.log: {e}",
                self.container_id
            );
        }
    }
}

fn with_counts(rec: RuntimeRecord, prefix: &str, c: DropCounts, bytes_only: bool) -> RuntimeRecord {
    let rec = if bytes_only {
        rec
    } else {
        rec.with_field(format!("{prefix}entries_dropped"), c.entries)
    };
    rec.with_field(format!("{prefix}bytes_dropped"), c.bytes)
}

/// "3 entries (30 bytes)", or "30 bytes" for a component that drops bytes, not entries.
fn amount(c: DropCounts, bytes_only: bool) -> String {
    if bytes_only {
        format!("{} bytes", c.bytes)
    } else {
        format!("{} entries ({} bytes)", c.entries, c.bytes)
    }
}

/// Whether the driver writes a file (its target is a path) rather than sending to a peer.
fn is_file(target: &str) -> bool {
    target.starts_with('/')
}

/// The runtime-log record of `report` about container `id`'s driver `driver` writing to `target`.
pub fn record(id: &str, driver: &str, target: &str, report: &DriverReport) -> RuntimeRecord {
    let file = is_file(target);
    let base = |level: Level, msg: String| {
        RuntimeRecord::new(level, driver, msg)
            .with_field("container_id", id)
            .with_field(if file { "file" } else { "destination" }, target)
    };
    // The spool's drops are byte runs cut out of a byte stream (see the module's doc).
    let bytes_only = driver == scribe_io::spool::COMPONENT;
    let (what, write) = if bytes_only {
        ("spool".to_string(), "write")
    } else if file {
        (format!("{driver} log"), "write")
    } else {
        (driver.to_string(), "deliver to")
    };
    match report {
        DriverReport::Dropping { error } => base(
            Level::Error,
            if bytes_only {
                "the spool is full: dropping its oldest bytes of container output".to_string()
            } else {
                format!(
                    "cannot {write} the {what}: dropping container output until that works again"
                )
            },
        )
        .with_error(error.clone()),
        DriverReport::Resumed { lost } => with_counts(
            base(
                Level::Warn,
                format!(
                    "{what} writable again: {} of container output were dropped",
                    amount(*lost, bytes_only)
                ),
            ),
            "",
            *lost,
            bytes_only,
        ),
        DriverReport::Warning { error } => base(
            Level::Warn,
            if file {
                format!("{what}: rotation failed; entries are kept in the live file")
            } else {
                format!("{what}: {error}")
            },
        )
        .with_error(error.clone()),
        DriverReport::Closed {
            unreported,
            total,
            still_dropping,
        } => {
            let msg = if *still_dropping {
                format!(
                    "{what} closed while still dropping: {} dropped since the last report, {} in all",
                    amount(*unreported, bytes_only),
                    amount(*total, bytes_only)
                )
            } else {
                format!(
                    "{what} closed: {} of container output were dropped in all",
                    amount(*total, bytes_only)
                )
            };
            let level = if *still_dropping {
                Level::Error
            } else {
                Level::Warn
            };
            with_counts(
                with_counts(base(level, msg), "", *unreported, bytes_only),
                "total_",
                *total,
                bytes_only,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scribe_events::validate_runtime_record;

    fn json(r: &RuntimeRecord) -> serde_json::Value {
        let line = r.to_json().expect("encode");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        validate_runtime_record(&v).unwrap_or_else(|e| panic!("{e}: {line}"));
        v
    }

    const LOG: &str = "/big/ns/c1/c1-json.log";

    #[test]
    fn dropping_names_the_file_and_the_error() {
        let err = "json-file write /big/ns/c1/c1-json.log: No space left on device (os error 28)";
        let v = json(&record(
            "c1",
            "json-file",
            LOG,
            &DriverReport::Dropping { error: err.into() },
        ));
        assert_eq!(v["level"], "error");
        assert_eq!(v["component"], "json-file");
        assert_eq!(v["error"], err);
        assert_eq!(v["file"], LOG);
        assert_eq!(v["container_id"], "c1");
    }

    #[test]
    fn counts_add_up_across_resumed_and_closed() {
        let lost = DropCounts {
            entries: 3,
            bytes: 30,
        };
        let v = json(&record(
            "c1",
            "json-file",
            LOG,
            &DriverReport::Resumed { lost },
        ));
        assert_eq!(v["level"], "warn");
        assert_eq!(
            (v["entries_dropped"].as_u64(), v["bytes_dropped"].as_u64()),
            (Some(3), Some(30))
        );
        assert!(
            v["msg"]
                .as_str()
                .unwrap_or("")
                .contains("3 entries (30 bytes)"),
            "{v}"
        );

        let closed = DriverReport::Closed {
            unreported: DropCounts {
                entries: 2,
                bytes: 20,
            },
            total: DropCounts {
                entries: 5,
                bytes: 50,
            },
            still_dropping: true,
        };
        let v = json(&record("c1", "json-file", LOG, &closed));
        assert_eq!(v["level"], "error", "closed while still dropping");
        assert_eq!(v["entries_dropped"], 2);
        assert_eq!(v["bytes_dropped"], 20);
        assert_eq!(v["total_entries_dropped"], 5);
        assert_eq!(v["total_bytes_dropped"], 50);
    }

    /// The spool's drops are bytes: its records give bytes only, no entry count of 0.
    #[test]
    fn spool_drops_are_counted_in_bytes_only() {
        let closed = DriverReport::Closed {
            unreported: DropCounts {
                entries: 0,
                bytes: 7,
            },
            total: DropCounts {
                entries: 0,
                bytes: 70,
            },
            still_dropping: false,
        };
        let v = json(&record("c1", "spool", "/run/ns/c1-stdout", &closed));
        assert_eq!(v["component"], "spool");
        assert_eq!(v["bytes_dropped"], 7);
        assert_eq!(v["total_bytes_dropped"], 70);
        assert!(v.get("entries_dropped").is_none(), "{v}");
        assert!(v.get("total_entries_dropped").is_none(), "{v}");
        let msg = v["msg"].as_str().unwrap_or("");
        assert!(msg.contains("70 bytes") && !msg.contains("entries"), "{v}");
        // Other components keep their entry counts.
        let v = json(&record("c1", "json-file", LOG, &closed));
        assert_eq!(v["total_entries_dropped"], 0);
    }

    #[test]
    fn a_rotation_problem_is_a_warning_with_its_error() {
        let v = json(&record(
            "c1",
            "json-file",
            LOG,
            &DriverReport::Warning {
                error: "json-file compress /x: No space left on device (os error 28)".into(),
            },
        ));
        assert_eq!(v["level"], "warn");
        assert!(
            v["error"].as_str().unwrap_or("").contains("compress"),
            "{v}"
        );
    }
}
