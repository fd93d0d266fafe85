//! Schema checks for log lines, so end-to-end tests can verify what the shim
//! wrote against log-spec without depending on Scribe's own types.
//!
//! The checks are strict about what Scribe promises: timestamps in the
//! canonical RFC3339Nano UTC form (nine digits, `Z`), known enum values, and
//! for container records no fields outside the schema. Optional fields may be
//! absent or `null` (the spec's samples show `null`).

use serde_json::{Map, Value};

use crate::container::{ContainerEvent, ContainerStatus};
use crate::runtime::Level;
use crate::timestamp::Timestamp;

const CONTAINER_FIELDS: [&str; 12] = [
    "timestamp",
    "container_id",
    "event",
    "status",
    "pid",
    "exit_code",
    "error",
    "exec_id",
    "image",
    "command",
    "memory_max_usage_bytes",
    "memory_limit_bytes",
];

/// Checks one parsed `container.log` line against the container-log schema
/// (spec 2.2 plus Scribe's per-event fields); the error names the field.
pub fn validate_container_record(v: &Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("record is not a JSON object")?;
    if let Some(unknown) = obj.keys().find(|k| !CONTAINER_FIELDS.contains(&k.as_str())) {
        return Err(format!("unknown field {unknown:?}"));
    }
    check_timestamp(obj)?;
    let id = required_str(obj, "container_id")?;
    if id.is_empty() {
        return Err("container_id is empty".into());
    }
    let event = required_str(obj, "event")?;
    if !ContainerEvent::ALL.iter().any(|e| e.as_str() == event) {
        return Err(format!("event {event:?} is not a known event"));
    }
    let status = required_str(obj, "status")?;
    if !ContainerStatus::ALL.iter().any(|s| s.as_str() == status) {
        return Err(format!("status {status:?} is not a known status"));
    }
    optional_int(obj, "pid", 0, i128::from(u32::MAX))?;
    optional_int(obj, "exit_code", i128::from(i32::MIN), i128::from(i32::MAX))?;
    optional_int(obj, "memory_max_usage_bytes", 0, i128::from(u64::MAX))?;
    optional_int(obj, "memory_limit_bytes", 0, i128::from(u64::MAX))?;
    for field in ["error", "exec_id", "image"] {
        optional_str(obj, field)?;
    }
    if let Some(cmd) = present(obj, "command") {
        let all_strings = cmd
            .as_array()
            .is_some_and(|a| a.iter().all(Value::is_string));
        if !all_strings {
            return Err("command is not an array of strings".into());
        }
    }
    if status == ContainerStatus::Failed.as_str()
        && matches!(optional_str(obj, "error")?, None | Some(""))
    {
        return Err("status \"failed\" without an error".into());
    }
    // An exit without its code must say why (a log-driver plugin, `scribe plugin`, sees the
    // container's logging stop but is never told the exit code).
    if event == ContainerEvent::Exit.as_str()
        && status != ContainerStatus::Failed.as_str()
        && present(obj, "exit_code").is_none()
        && matches!(optional_str(obj, "error")?, None | Some(""))
    {
        return Err("exit record without exit_code".into());
    }
    Ok(())
}

/// Checks one parsed `runtime.log` line against the runtime-log schema
/// (spec 2.1); extra fields are allowed (spec 5.1 has `version`, ...).
pub fn validate_runtime_record(v: &Value) -> Result<(), String> {
    let obj = v.as_object().ok_or("record is not a JSON object")?;
    check_timestamp(obj)?;
    let level = required_str(obj, "level")?;
    if !Level::ALL.iter().any(|l| l.as_str() == level) {
        return Err(format!(
            "level {level:?} is not one of debug|info|warn|error|fatal"
        ));
    }
    if required_str(obj, "component")?.is_empty() {
        return Err("component is empty".into());
    }
    required_str(obj, "msg")?;
    optional_str(obj, "error")?;
    optional_int(obj, "pid", 0, i128::from(u32::MAX))?;
    Ok(())
}

fn check_timestamp(obj: &Map<String, Value>) -> Result<(), String> {
    let ts = required_str(obj, "timestamp")?;
    if Timestamp::is_canonical(ts) {
        Ok(())
    } else {
        Err(format!(
            "timestamp {ts:?} is not RFC3339Nano UTC with nine fractional digits"
        ))
    }
}

/// The field's value unless it is absent or null.
fn present<'a>(obj: &'a Map<String, Value>, field: &str) -> Option<&'a Value> {
    obj.get(field).filter(|v| !v.is_null())
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, String> {
    match obj.get(field) {
        None | Some(Value::Null) => Err(format!("missing required field {field:?}")),
        Some(v) => v.as_str().ok_or_else(|| format!("{field} is not a string")),
    }
}

fn optional_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<Option<&'a str>, String> {
    present(obj, field)
        .map(|v| v.as_str().ok_or_else(|| format!("{field} is not a string")))
        .transpose()
}

fn optional_int(obj: &Map<String, Value>, field: &str, min: i128, max: i128) -> Result<(), String> {
    let Some(v) = present(obj, field) else {
        return Ok(());
    };
    let n = v
        .as_i64()
        .map(i128::from)
        .or_else(|| v.as_u64().map(i128::from))
        .ok_or_else(|| format!("{field} is not an integer"))?;
    if (min..=max).contains(&n) {
        Ok(())
    } else {
        Err(format!("{field} = {n} is out of range {min}..={max}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn good() -> Value {
        json!({
            "timestamp": "2024-03-21T10:02:00.123456789Z",
            "container_id": "abc123def456",
            "event": "start",
            "status": "running",
            "pid": 5678,
            "image": "nginx:1.21",
            "command": ["nginx", "-g", "daemon off;"]
        })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = good();
        v[field] = value;
        v
    }

    fn without(field: &str) -> Value {
        let mut v = good();
        if let Some(o) = v.as_object_mut() {
            o.remove(field);
        }
        v
    }

    #[test]
    fn accepts_good_records() {
        assert_eq!(validate_container_record(&good()), Ok(()));
        assert_eq!(
            validate_container_record(&with("exit_code", Value::Null)),
            Ok(())
        );
        let exit = json!({"timestamp": "2024-03-21T10:02:00.123456789Z", "container_id": "a",
            "event": "exit", "status": "stopped", "pid": 1, "exit_code": -1, "exec_id": "e"});
        assert_eq!(validate_container_record(&exit), Ok(()));
        let failed = json!({"timestamp": "2024-03-21T10:02:00.123456789Z", "container_id": "a",
            "event": "start", "status": "failed", "error": "boom"});
        assert_eq!(validate_container_record(&failed), Ok(()));
        // `scribe plugin`'s exit: the code is unknown and the record says so.
        let unknown = json!({"timestamp": "2024-03-21T10:02:00.123456789Z", "container_id": "a",
            "event": "exit", "status": "stopped", "error": "exit code not known"});
        assert_eq!(validate_container_record(&unknown), Ok(()));
    }

    #[test]
    fn rejects_bad_records() {
        let cases = [
            (json!("not an object"), "object"),
            (without("timestamp"), "timestamp"),
            (without("container_id"), "container_id"),
            (without("event"), "event"),
            (without("status"), "status"),
            (
                with("timestamp", json!("2024-03-21T10:02:00Z")),
                "timestamp",
            ),
            (with("timestamp", json!(1711015200)), "timestamp"),
            (with("container_id", json!("")), "container_id"),
            (with("event", json!("explode")), "event"),
            (with("status", json!("happy")), "status"),
            (with("pid", json!("5678")), "pid"),
            (with("pid", json!(-1)), "pid"),
            (with("pid", json!(1.5)), "pid"),
            (with("exit_code", json!(1u64 << 40)), "exit_code"),
            (with("error", json!(42)), "error"),
            (with("command", json!("nginx -g")), "command"),
            (with("command", json!(["nginx", 1])), "command"),
            (with("memory_limit_bytes", json!(-5)), "memory_limit_bytes"),
            (with("colour", json!("blue")), "colour"),
            (with("status", json!("failed")), "failed"),
            (with("event", json!("exit")), "exit_code"),
        ];
        for (value, needle) in cases {
            let err = validate_container_record(&value).expect_err(needle);
            assert!(err.contains(needle), "{needle}: {err}");
        }
    }

    #[test]
    fn runtime_records() {
        let ok = json!({"timestamp": "2024-03-21T10:00:00.123456789Z", "level": "info",
            "component": "containerd", "msg": "starting", "pid": 1, "error": null, "version": "1.6.0"});
        assert_eq!(validate_runtime_record(&ok), Ok(()));
        let mut bad = ok.clone();
        bad["level"] = json!("warning");
        assert!(validate_runtime_record(&bad).is_err_and(|e| e.contains("level")));
        let mut bad = ok.clone();
        bad["msg"] = Value::Null;
        assert!(validate_runtime_record(&bad).is_err_and(|e| e.contains("msg")));
        let mut bad = ok;
        bad["pid"] = json!("1");
        assert!(validate_runtime_record(&bad).is_err_and(|e| e.contains("pid")));
    }
}
