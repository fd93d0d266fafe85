//! Container-log records: one JSON object a line in `container.log`
//! (log-spec sections 2.2, 3.3 and 5.2), describing a container's lifecycle.
//!
//! Absent optional fields are omitted when writing; Scribe never writes
//! `"exit_code": null` or `"error": null`. Reading accepts both `null` and
//! absence, so the seed samples (which show `null`) parse.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::timestamp::Timestamp;

/// The lifecycle event a container record reports (`event` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerEvent {
    /// The runtime created the container (init process exists, not started).
    Create,
    /// The init process was started.
    Start,
    /// An exec process was registered.
    ExecAdded,
    /// An exec process was started.
    ExecStarted,
    /// A process (init or exec) exited.
    Exit,
    /// The kernel OOM killer fired in the container's cgroup.
    Oom,
    /// The container was frozen.
    Pause,
    /// The container was thawed.
    Resume,
    /// The container's resources were updated.
    Update,
    /// The container was checkpointed.
    Checkpoint,
    /// The container was deleted.
    Delete,
}

impl ContainerEvent {
    /// Every event, for schema checks and tests.
    pub const ALL: [ContainerEvent; 11] = [
        Self::Create,
        Self::Start,
        Self::ExecAdded,
        Self::ExecStarted,
        Self::Exit,
        Self::Oom,
        Self::Pause,
        Self::Resume,
        Self::Update,
        Self::Checkpoint,
        Self::Delete,
    ];

    /// The wire name (`exec_added`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Start => "start",
            Self::ExecAdded => "exec_added",
            Self::ExecStarted => "exec_started",
            Self::Exit => "exit",
            Self::Oom => "oom",
            Self::Pause => "pause",
            Self::Resume => "resume",
            Self::Update => "update",
            Self::Checkpoint => "checkpoint",
            Self::Delete => "delete",
        }
    }
}

/// The state a container (or exec) is in after the event (`status` field).
/// `Failed` marks a record of an operation that did not succeed; its `error`
/// field says why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContainerStatus {
    /// Created, not yet started.
    Created,
    /// Running.
    Running,
    /// Exited.
    Stopped,
    /// Frozen.
    Paused,
    /// Killed by the OOM killer.
    Killed,
    /// Removed.
    Deleted,
    /// The operation named by `event` failed.
    Failed,
}

impl ContainerStatus {
    /// Every status, for schema checks and tests.
    pub const ALL: [ContainerStatus; 7] = [
        Self::Created,
        Self::Running,
        Self::Stopped,
        Self::Paused,
        Self::Killed,
        Self::Deleted,
        Self::Failed,
    ];

    /// The wire name (`running`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Running => "running",
            Self::Stopped => "stopped",
            Self::Paused => "paused",
            Self::Killed => "killed",
            Self::Deleted => "deleted",
            Self::Failed => "failed",
        }
    }
}

/// One line of `container.log`.
///
/// Field order matches the spec's samples. Build one with the per-event
/// constructors, which stamp the current time (except [`Self::exit`], which
/// uses the exit time).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// When the event happened (RFC3339Nano UTC).
    pub timestamp: Timestamp,
    /// The container (task) id.
    pub container_id: String,
    /// What happened.
    pub event: ContainerEvent,
    /// The resulting state.
    pub status: ContainerStatus,
    /// The process concerned (init, or the exec for exec events).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Exit status, for `exit` and `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why the operation failed (with status `failed`), or extra detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The exec id, for exec events and an exec's exit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_id: Option<String>,
    /// Image reference, for `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The process arguments, for `start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// Peak memory usage, for `oom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_max_usage_bytes: Option<u64>,
    /// Memory limit, for `oom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit_bytes: Option<u64>,
}

impl ContainerRecord {
    /// A bare record stamped now; the per-event constructors build on it.
    pub fn new(
        container_id: impl Into<String>,
        event: ContainerEvent,
        status: ContainerStatus,
    ) -> Self {
        Self {
            timestamp: Timestamp::now(),
            container_id: container_id.into(),
            event,
            status,
            pid: None,
            exit_code: None,
            error: None,
            exec_id: None,
            image: None,
            command: None,
            memory_max_usage_bytes: None,
            memory_limit_bytes: None,
        }
    }

    /// `create`: the runtime created the container; `pid` is the init's.
    pub fn create(container_id: impl Into<String>, pid: u32) -> Self {
        Self::new(
            container_id,
            ContainerEvent::Create,
            ContainerStatus::Created,
        )
        .with_pid(pid)
    }

    /// `start`: the init process runs; `image` and `command` when known.
    pub fn start(
        container_id: impl Into<String>,
        pid: u32,
        image: Option<String>,
        command: Option<Vec<String>>,
    ) -> Self {
        let mut r = Self::new(
            container_id,
            ContainerEvent::Start,
            ContainerStatus::Running,
        )
        .with_pid(pid);
        r.image = image;
        r.command = command;
        r
    }

    /// `exec_added`: an exec process was registered (not yet started).
    pub fn exec_added(container_id: impl Into<String>, exec_id: impl Into<String>) -> Self {
        Self::new(
            container_id,
            ContainerEvent::ExecAdded,
            ContainerStatus::Created,
        )
        .with_exec_id(exec_id)
    }

    /// `exec_started`: an exec process runs as `pid`.
    pub fn exec_started(
        container_id: impl Into<String>,
        exec_id: impl Into<String>,
        pid: u32,
    ) -> Self {
        Self::new(
            container_id,
            ContainerEvent::ExecStarted,
            ContainerStatus::Running,
        )
        .with_exec_id(exec_id)
        .with_pid(pid)
    }

    /// `exit`: the init (`exec_id` None) or an exec exited; stamped with the
    /// exit time rather than now.
    pub fn exit(
        container_id: impl Into<String>,
        exec_id: Option<String>,
        pid: u32,
        exit_code: i32,
        exited_at: SystemTime,
    ) -> Self {
        let mut r =
            Self::new(container_id, ContainerEvent::Exit, ContainerStatus::Stopped).with_pid(pid);
        r.exec_id = exec_id;
        r.exit_code = Some(exit_code);
        if let Ok(ts) = Timestamp::from_system_time(exited_at) {
            r.timestamp = ts;
        }
        r
    }

    /// `oom`: the OOM killer fired; memory figures when the cgroup has them.
    pub fn oom(
        container_id: impl Into<String>,
        pid: Option<u32>,
        memory_max_usage_bytes: Option<u64>,
        memory_limit_bytes: Option<u64>,
    ) -> Self {
        let mut r = Self::new(container_id, ContainerEvent::Oom, ContainerStatus::Killed);
        r.pid = pid;
        r.memory_max_usage_bytes = memory_max_usage_bytes;
        r.memory_limit_bytes = memory_limit_bytes;
        r
    }

    /// `pause`: the container is frozen.
    pub fn pause(container_id: impl Into<String>) -> Self {
        Self::new(container_id, ContainerEvent::Pause, ContainerStatus::Paused)
    }

    /// `resume`: the container is thawed.
    pub fn resume(container_id: impl Into<String>) -> Self {
        Self::new(
            container_id,
            ContainerEvent::Resume,
            ContainerStatus::Running,
        )
    }

    /// `update`: resources changed; `status` is the container's current state.
    pub fn update(container_id: impl Into<String>, status: ContainerStatus) -> Self {
        Self::new(container_id, ContainerEvent::Update, status)
    }

    /// `checkpoint`: a checkpoint was taken; `status` is the state afterwards.
    pub fn checkpoint(container_id: impl Into<String>, status: ContainerStatus) -> Self {
        Self::new(container_id, ContainerEvent::Checkpoint, status)
    }

    /// `delete`: the container is gone; pid and exit code of its init if known.
    pub fn delete(
        container_id: impl Into<String>,
        pid: Option<u32>,
        exit_code: Option<i32>,
    ) -> Self {
        let mut r = Self::new(
            container_id,
            ContainerEvent::Delete,
            ContainerStatus::Deleted,
        );
        r.pid = pid;
        r.exit_code = exit_code;
        r
    }

    /// A failed operation: the event it attempted, status `failed`, and why.
    pub fn failed(
        event: ContainerEvent,
        container_id: impl Into<String>,
        error: impl Into<String>,
    ) -> Self {
        let mut r = Self::new(container_id, event, ContainerStatus::Failed);
        r.error = Some(error.into());
        r
    }

    /// Sets `pid`.
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// Sets `exec_id`.
    pub fn with_exec_id(mut self, exec_id: impl Into<String>) -> Self {
        self.exec_id = Some(exec_id.into());
        self
    }

    /// The record as one JSON line, without the trailing newline.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    /// Parses one JSON line.
    pub fn from_json(line: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn event_and_status_names_match_serde() {
        for e in ContainerEvent::ALL {
            assert_eq!(
                serde_json::to_value(e).ok(),
                Some(serde_json::Value::from(e.as_str()))
            );
        }
        for s in ContainerStatus::ALL {
            assert_eq!(
                serde_json::to_value(s).ok(),
                Some(serde_json::Value::from(s.as_str()))
            );
        }
    }

    #[test]
    fn start_omits_absent_fields() {
        let r = ContainerRecord::start("c1", 42, None, None);
        let v = serde_json::to_value(&r).expect("serialize");
        let obj = v.as_object().expect("object");
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["container_id", "event", "pid", "status", "timestamp"]
        );
        assert_eq!(obj["event"], "start");
        assert_eq!(obj["status"], "running");
    }

    #[test]
    fn exit_uses_exit_time_and_code() {
        let at = UNIX_EPOCH + Duration::new(1_711_015_200, 7);
        let r = ContainerRecord::exit("c1", Some("e1".into()), 9, 137, at);
        assert_eq!(r.timestamp.to_string(), "2024-03-21T10:00:00.000000007Z");
        assert_eq!(r.exit_code, Some(137));
        assert_eq!(r.exec_id.as_deref(), Some("e1"));
        assert_eq!(r.status, ContainerStatus::Stopped);
    }

    #[test]
    fn failed_records_carry_the_error() {
        let r = ContainerRecord::failed(ContainerEvent::Start, "c1", "exec: no such file");
        let line = r.to_json().expect("serialize");
        assert!(line.contains(r#""event":"start""#), "{line}");
        assert!(line.contains(r#""status":"failed""#), "{line}");
        assert!(line.contains(r#""error":"exec: no such file""#), "{line}");
    }

    #[test]
    fn null_and_absent_read_the_same() {
        let with_null = r#"{"timestamp":"2024-03-21T10:00:00.123456789Z","container_id":"a","event":"exit","status":"stopped","exit_code":null,"error":null}"#;
        let absent = r#"{"timestamp":"2024-03-21T10:00:00.123456789Z","container_id":"a","event":"exit","status":"stopped"}"#;
        assert_eq!(
            ContainerRecord::from_json(with_null).ok(),
            ContainerRecord::from_json(absent).ok()
        );
    }

    #[test]
    fn unknown_event_is_rejected() {
        let line = r#"{"timestamp":"2024-03-21T10:00:00.123456789Z","container_id":"a","event":"explode","status":"running"}"#;
        assert!(ContainerRecord::from_json(line).is_err());
    }
}
