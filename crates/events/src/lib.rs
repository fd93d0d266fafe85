//! `scribe-events`: Scribe's event model and where events go.
//!
//! - Records of log-spec: [`ContainerRecord`] (`container.log`, lifecycle) and
//!   [`RuntimeRecord`] (`runtime.log`, the shim's and the OCI runtime's log),
//!   timestamped with [`Timestamp`] (RFC3339Nano UTC, nine digits).
//! - Schema checks for written lines: [`validate_container_record`],
//!   [`validate_runtime_record`] (for end-to-end tests).
//! - Sinks appending records as JSON lines under
//!   `<log_root>/<namespace>/<container_id>/`: [`ContainerLog`], [`RuntimeLog`].
//! - The ordered, retrying [`Publisher`] of task events to containerd
//!   (`Events/Forward` at `TTRPC_ADDRESS`), and the envelope helpers in
//!   [`envelope`].
//!
//! Everything runs on the caller's tokio runtime (a current_thread one in the
//! shim): the publisher adds one task, and the sinks write synchronously.

#![warn(missing_docs)]

mod container;
pub mod envelope;
mod publisher;
mod queue;
mod runtime;
mod sender;
mod sink;
mod timestamp;
mod validate;

#[cfg(test)]
mod golden;

pub use container::{ContainerEvent, ContainerRecord, ContainerStatus};
pub use publisher::{Publisher, PublisherConfig};
pub use runtime::{Level, RuntimeRecord};
pub use sink::{
    check_component, container_log_dir, ContainerLog, RuntimeLog, SinkError, CONTAINER_LOG_FILE,
    RUNTIME_LOG_FILE,
};
pub use timestamp::{format_rfc3339_nano, parse_rfc3339, Timestamp, TimestampError};
pub use validate::{validate_container_record, validate_runtime_record};
