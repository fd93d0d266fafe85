//! A container's json-file log reports (output dropped, writing again, closed after drops) as
//! records in its `runtime.log`, component `json-file`.
//!
//! Counting: `entries_dropped`/`bytes_dropped` of a record are the drops it is the first to
//! report, so they add up over the records to the `total_*` of the closing summary. Bytes are
//! container output bytes (before JSON escaping).
//!
//! `runtime.log` lives under `LogRoot`; when the json-file log shares that file system and it is
//! full, the record cannot be written either, and the shim's own log (containerd's log) is what
//! still says it. `JsonFileRoot` puts json-file logs elsewhere so that this cannot happen.

use std::path::Path;
use std::sync::Arc;

use scribe_events::{Level, RuntimeLog, RuntimeRecord};
use scribe_io::jsonfile::{DropCounts, JsonFileReport, JsonFileReporter};

/// The `component` of these records.
pub const COMPONENT: &str = "json-file";

/// Writes one container's json-file reports to its `runtime.log`.
pub struct RuntimeLogReporter {
    container_id: String,
    sink: Arc<RuntimeLog>,
}

impl RuntimeLogReporter {
    /// Reports of container `container_id`'s json-file log go to `sink`.
    pub fn new(container_id: &str, sink: Arc<RuntimeLog>) -> RuntimeLogReporter {
        RuntimeLogReporter {
            container_id: container_id.to_owned(),
            sink,
        }
    }
}

impl JsonFileReporter for RuntimeLogReporter {
    fn report(&self, log: &Path, report: JsonFileReport) {
        let rec = record(&self.container_id, log, &report).with_pid(std::process::id());
        if let Err(e) = self.sink.append(&rec) {
            // The shim's log already has the report (JsonLog logs every one).
            log::error!(
                "container {}: writing json-file record to runtime.log: {e}",
                self.container_id
            );
        }
    }
}

fn with_counts(rec: RuntimeRecord, prefix: &str, c: DropCounts) -> RuntimeRecord {
    rec.with_field(format!("{prefix}entries_dropped"), c.entries)
        .with_field(format!("{prefix}bytes_dropped"), c.bytes)
}

/// The runtime-log record of `report` about container `id`'s json-file log at `log`.
pub fn record(id: &str, log: &Path, report: &JsonFileReport) -> RuntimeRecord {
    let base = |level: Level, msg: String| {
        RuntimeRecord::new(level, COMPONENT, msg)
            .with_field("container_id", id)
            .with_field("file", log.to_string_lossy().into_owned())
    };
    match report {
        JsonFileReport::Dropping { error } => base(
            Level::Error,
            "cannot write the json-file log: dropping container output until writes succeed again"
                .into(),
        )
        .with_error(error.clone()),
        JsonFileReport::Resumed { lost } => with_counts(
            base(
                Level::Warn,
                format!(
                    "json-file log writable again: {} entries ({} bytes) of container output were dropped",
                    lost.entries, lost.bytes
                ),
            ),
            "",
            *lost,
        ),
        JsonFileReport::Warning { error } => base(
            Level::Warn,
            "json-file rotation failed; entries are kept in the live file".into(),
        )
        .with_error(error.clone()),
        JsonFileReport::Closed {
            unreported,
            total,
            still_dropping,
        } => {
            let msg = if *still_dropping {
                format!(
                    "json-file log closed while still dropping: {} entries ({} bytes) dropped since the last report, {} entries ({} bytes) in all",
                    unreported.entries, unreported.bytes, total.entries, total.bytes
                )
            } else {
                format!(
                    "json-file log closed: {} entries ({} bytes) of container output were dropped in all",
                    total.entries, total.bytes
                )
            };
            let level = if *still_dropping {
                Level::Error
            } else {
                Level::Warn
            };
            with_counts(with_counts(base(level, msg), "", *unreported), "total_", *total)
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
            Path::new(LOG),
            &JsonFileReport::Dropping { error: err.into() },
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
            Path::new(LOG),
            &JsonFileReport::Resumed { lost },
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

        let closed = JsonFileReport::Closed {
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
        let v = json(&record("c1", Path::new(LOG), &closed));
        assert_eq!(v["level"], "error", "closed while still dropping");
        assert_eq!(v["entries_dropped"], 2);
        assert_eq!(v["bytes_dropped"], 20);
        assert_eq!(v["total_entries_dropped"], 5);
        assert_eq!(v["total_bytes_dropped"], 50);
    }

    #[test]
    fn a_rotation_problem_is_a_warning_with_its_error() {
        let v = json(&record(
            "c1",
            Path::new(LOG),
            &JsonFileReport::Warning {
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
