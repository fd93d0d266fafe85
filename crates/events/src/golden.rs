//! Golden tests: every container and runtime JSON sample of log-spec
//! (sections 3.2, 3.3, 5.1, 5.2), verbatim, must parse, re-serialize and parse
//! back equal, and pass the schema check.

use serde_json::Value;

use crate::container::{ContainerEvent, ContainerRecord, ContainerStatus};
use crate::runtime::{Level, RuntimeRecord};
use crate::validate::{validate_container_record, validate_runtime_record};

/// Spec 3.2.
const RUNTIME_JSON_FORMAT: &str = r#"{
  "timestamp": "2024-03-21T10:00:00.123456789Z",
  "level": "info",
  "component": "containerd",
  "msg": "starting containerd",
  "pid": 1234,
  "error": null
}"#;

/// Spec 5.1, sample 1.
const RUNTIME_STARTUP: &str = r#"{
  "timestamp": "2024-03-21T10:00:00.123456789Z",
  "level": "info",
  "component": "containerd",
  "msg": "starting containerd",
  "pid": 1234,
  "version": "1.6.0",
  "revision": "abc123def"
}"#;

/// Spec 5.1, sample 2.
const RUNTIME_ERROR: &str = r#"{
  "timestamp": "2024-03-21T10:01:00.123456789Z",
  "level": "error",
  "component": "containerd",
  "msg": "container start failed",
  "error": "no such image",
  "container_id": "abc123def456"
}"#;

/// Spec 3.3.
const CONTAINER_EVENT_FORMAT: &str = r#"{
  "timestamp": "2024-03-21T10:00:00.123456789Z",
  "container_id": "abc123def456",
  "event": "start",
  "status": "running",
  "pid": 5678,
  "exit_code": null,
  "error": null
}"#;

/// Spec 5.2, sample 1.
const CONTAINER_START: &str = r#"{
  "timestamp": "2024-03-21T10:02:00.123456789Z",
  "container_id": "abc123def456",
  "event": "start",
  "status": "running",
  "pid": 5678,
  "image": "nginx:1.21",
  "command": ["nginx", "-g", "daemon off;"]
}"#;

/// Spec 5.2, sample 2.
const CONTAINER_OOM: &str = r#"{
  "timestamp": "2024-03-21T10:02:01.123456789Z",
  "container_id": "abc123def456",
  "event": "oom",
  "status": "killed",
  "pid": 5678,
  "memory_max_usage_bytes": 268435456,
  "memory_limit_bytes": 262144000
}"#;

fn json(s: &str) -> Value {
    serde_json::from_str(s).expect("sample is JSON")
}

/// Drops `null` members: Scribe omits absent fields instead of writing null.
fn without_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        other => other,
    }
}

#[test]
fn container_samples_round_trip() {
    for sample in [CONTAINER_EVENT_FORMAT, CONTAINER_START, CONTAINER_OOM] {
        let first = ContainerRecord::from_json(sample).expect(sample);
        let line = first.to_json().expect("serialize");
        assert!(!line.contains('\n'));
        let second = ContainerRecord::from_json(&line).expect("reparse");
        assert_eq!(first, second, "{sample}");
        // Same content as the sample, nulls aside, and schema-valid.
        assert_eq!(json(&line), without_nulls(json(sample)), "{sample}");
        assert_eq!(validate_container_record(&json(sample)), Ok(()), "{sample}");
        assert_eq!(validate_container_record(&json(&line)), Ok(()), "{line}");
    }
}

#[test]
fn runtime_samples_round_trip() {
    for sample in [RUNTIME_JSON_FORMAT, RUNTIME_STARTUP, RUNTIME_ERROR] {
        let first = RuntimeRecord::from_json(sample).expect(sample);
        let line = first.to_json().expect("serialize");
        let second = RuntimeRecord::from_json(&line).expect("reparse");
        assert_eq!(first, second, "{sample}");
        assert_eq!(json(&line), without_nulls(json(sample)), "{sample}");
        assert_eq!(validate_runtime_record(&json(sample)), Ok(()), "{sample}");
        assert_eq!(validate_runtime_record(&json(&line)), Ok(()), "{line}");
    }
}

#[test]
fn samples_parse_into_the_expected_values() {
    let oom = ContainerRecord::from_json(CONTAINER_OOM).expect("oom");
    assert_eq!(oom.event, ContainerEvent::Oom);
    assert_eq!(oom.status, ContainerStatus::Killed);
    assert_eq!(oom.memory_max_usage_bytes, Some(268_435_456));
    assert_eq!(oom.memory_limit_bytes, Some(262_144_000));

    let start = ContainerRecord::from_json(CONTAINER_START).expect("start");
    assert_eq!(
        start.command,
        Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()])
    );
    assert_eq!(
        start.timestamp.to_string(),
        "2024-03-21T10:02:00.123456789Z"
    );

    let boot = RuntimeRecord::from_json(RUNTIME_STARTUP).expect("startup");
    assert_eq!(boot.level, Level::Info);
    assert_eq!(boot.pid, Some(1234));
    assert_eq!(boot.extra.get("version"), Some(&Value::from("1.6.0")));
    assert_eq!(boot.extra.get("revision"), Some(&Value::from("abc123def")));

    let err = RuntimeRecord::from_json(RUNTIME_ERROR).expect("error");
    assert_eq!(err.error.as_deref(), Some("no such image"));
    assert_eq!(err.pid, None);
    assert_eq!(
        err.to_text(),
        r#"2024-03-21T10:01:00.123456789Z error [containerd] container start failed error="no such image" container_id="abc123def456""#
    );
}

#[test]
fn constructors_produce_schema_valid_lines() {
    let records = [
        ContainerRecord::create("c", 1),
        ContainerRecord::start("c", 1, Some("img".into()), Some(vec!["sh".into()])),
        ContainerRecord::exec_added("c", "e"),
        ContainerRecord::exec_started("c", "e", 2),
        ContainerRecord::exit("c", None, 1, 0, std::time::SystemTime::now()),
        ContainerRecord::oom("c", Some(1), Some(10), Some(5)),
        ContainerRecord::pause("c"),
        ContainerRecord::resume("c"),
        ContainerRecord::update("c", ContainerStatus::Running),
        ContainerRecord::checkpoint("c", ContainerStatus::Paused),
        ContainerRecord::delete("c", Some(1), Some(137)),
        ContainerRecord::failed(ContainerEvent::Exit, "c", "wait failed"),
    ];
    for r in records {
        let line = r.to_json().expect("serialize");
        assert_eq!(validate_container_record(&json(&line)), Ok(()), "{line}");
    }
    let rt = RuntimeRecord::new(Level::Warn, "scribe", "hi").with_pid(3);
    assert_eq!(
        validate_runtime_record(&json(&rt.to_json().expect("serialize"))),
        Ok(())
    );
}
