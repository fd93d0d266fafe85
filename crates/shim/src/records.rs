//! A container's lifecycle records (`container.log`), written beside the events containerd gets.
//!
//! Writing a record never fails an operation: a record that cannot be written is reported in the
//! shim's own log, naming the file and the error.

use scribe_events::{ContainerLog, ContainerRecord};

/// The `container.log` of one container, or nothing when records are off.
pub struct Recorder {
    log: Option<ContainerLog>,
}

impl Recorder {
    /// Opens `<root>/<namespace>/<id>/container.log` when `enabled`.
    pub fn open(enabled: bool, root: &std::path::Path, namespace: &str, id: &str) -> Recorder {
        if !enabled {
            return Recorder { log: None };
        }
        match ContainerLog::open(root, namespace, id) {
            Ok(log) => Recorder { log: Some(log) },
            Err(e) => {
                log::error!(container = id, error:% = e; "container.log disabled");
                Recorder { log: None }
            }
        }
    }

    /// Appends one record.
    pub fn record(&self, rec: ContainerRecord) {
        if let Some(log) = &self.log {
            if let Err(e) = log.append(&rec) {
                log::error!(
                    container = rec.container_id.as_str(), error:% = e;
                    "writing the {} record", rec.event.as_str()
                );
            }
        }
    }
}
