//! A container's lifecycle records (`container.log`), written beside the events containerd gets.
//!
//! Writing a record never fails an operation: a record that cannot be written is reported in the
//! shim's own log, naming the file and the error. Opening does: a Create whose `container.log`
//! cannot be opened fails, naming the file, rather than run unrecorded.

use scribe_events::{ContainerLog, ContainerRecord, SinkError};

/// The `container.log` of one container, or nothing when records are off.
pub struct Recorder {
    log: Option<ContainerLog>,
}

impl Recorder {
    /// Opens `<root>/<namespace>/<id>/container.log` when `enabled`; a file that cannot be
    /// opened (a planted link, say) is an error naming it, for Create to fail with: a container
    /// must not run unrecorded because its records were silently disabled.
    pub fn open(
        enabled: bool,
        root: &std::path::Path,
        namespace: &str,
        id: &str,
    ) -> Result<Recorder, SinkError> {
        if !enabled {
            return Ok(Recorder { log: None });
        }
        ContainerLog::open(root, namespace, id).map(|log| Recorder { log: Some(log) })
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
