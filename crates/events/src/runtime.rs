//! Runtime-log records (log-spec sections 2.1, 3.1, 3.2 and 5.1): the shim's
//! own log and the OCI runtime's `log.json`, both in one schema.
//!
//! JSON form: one object a line, known fields first, then any extra fields
//! (`version`, `container_id`, ...) in key order. `error` and `pid` are
//! omitted when absent (the spec marks `pid` required, but its own error
//! sample has none, so it is optional here).
//!
//! Text form (spec 3.1): `timestamp level [component] message`, followed by
//! ` error="..."` when there is an error and then ` key=value` for each extra
//! field (values JSON-encoded, strings quoted). Line breaks in the message are
//! escaped as `\n`/`\r` so a record is always one line.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::timestamp::Timestamp;

/// Severity of a runtime record (`level` field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Diagnostic detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected but handled (logrus' `warning` reads as this).
    #[serde(alias = "warning")]
    Warn,
    /// An operation failed.
    Error,
    /// The process cannot go on.
    Fatal,
}

impl Level {
    /// Every level, for schema checks and tests.
    pub const ALL: [Level; 5] = [
        Self::Debug,
        Self::Info,
        Self::Warn,
        Self::Error,
        Self::Fatal,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Fatal => "fatal",
        }
    }

    /// Maps a level name from other loggers (logrus as used by runc and
    /// crun's `log.json`, the `log` crate) onto the spec's five levels.
    pub fn from_foreign(name: &str) -> Option<Level> {
        match name.to_ascii_lowercase().as_str() {
            "trace" | "debug" => Some(Self::Debug),
            "info" => Some(Self::Info),
            "warn" | "warning" => Some(Self::Warn),
            "error" => Some(Self::Error),
            "fatal" | "panic" => Some(Self::Fatal),
            _ => None,
        }
    }
}

impl From<log::Level> for Level {
    fn from(l: log::Level) -> Self {
        match l {
            log::Level::Error => Self::Error,
            log::Level::Warn => Self::Warn,
            log::Level::Info => Self::Info,
            log::Level::Debug | log::Level::Trace => Self::Debug,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of `runtime.log`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeRecord {
    /// When it was logged (RFC3339Nano UTC).
    pub timestamp: Timestamp,
    /// Severity.
    pub level: Level,
    /// Who logged it (`scribe`, `runc`, ...).
    pub component: String,
    /// The message.
    pub msg: String,
    /// The error, when the record reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The logging process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// Any other fields (`version`, `revision`, `container_id`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl RuntimeRecord {
    /// A record stamped now, without error, pid or extras.
    pub fn new(level: Level, component: impl Into<String>, msg: impl Into<String>) -> Self {
        Self {
            timestamp: Timestamp::now(),
            level,
            component: component.into(),
            msg: msg.into(),
            error: None,
            pid: None,
            extra: Map::new(),
        }
    }

    /// Sets `error`.
    pub fn with_error(mut self, error: impl Into<String>) -> Self {
        self.error = Some(error.into());
        self
    }

    /// Sets `pid`.
    pub fn with_pid(mut self, pid: u32) -> Self {
        self.pid = Some(pid);
        self
    }

    /// Adds an extra field (e.g. `container_id`).
    pub fn with_field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.extra.insert(key.into(), value.into());
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

    /// The text form of spec 3.1 (see the module docs), without newline.
    pub fn to_text(&self) -> String {
        let mut out = format!(
            "{} {} [{}] {}",
            self.timestamp,
            self.level,
            self.component,
            escape_line_breaks(&self.msg)
        );
        if let Some(err) = &self.error {
            out.push_str(" error=");
            out.push_str(&Value::from(err.as_str()).to_string());
        }
        for (k, v) in &self.extra {
            out.push(' ');
            out.push_str(k);
            out.push('=');
            out.push_str(&v.to_string());
        }
        out
    }
}

fn escape_line_breaks(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\n', '\r']) {
        s.replace('\n', "\\n").replace('\r', "\\r").into()
    } else {
        s.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RuntimeRecord {
        let mut r = RuntimeRecord::new(Level::Error, "scribe", "container start failed")
            .with_error("no such image")
            .with_field("container_id", "abc123");
        r.timestamp = Timestamp::parse("2024-03-21T10:01:00.123456789Z").expect("valid");
        r
    }

    #[test]
    fn text_form_appends_error_and_extras() {
        assert_eq!(
            sample().to_text(),
            r#"2024-03-21T10:01:00.123456789Z error [scribe] container start failed error="no such image" container_id="abc123""#
        );
    }

    #[test]
    fn text_form_stays_on_one_line() {
        let mut r = sample();
        r.msg = "a\nb\r".into();
        r.error = Some("x\ny".into());
        let t = r.to_text();
        assert!(!t.contains('\n') && !t.contains('\r'), "{t}");
        assert!(t.contains(r"a\nb\r"), "{t}");
    }

    #[test]
    fn json_keeps_extras_and_omits_absent() {
        let line = sample().to_json().expect("serialize");
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!(v["container_id"], "abc123");
        assert!(v.get("pid").is_none());
        assert_eq!(RuntimeRecord::from_json(&line).ok(), Some(sample()));
    }

    #[test]
    fn foreign_levels_map() {
        assert_eq!(Level::from_foreign("warning"), Some(Level::Warn));
        assert_eq!(Level::from_foreign("PANIC"), Some(Level::Fatal));
        assert_eq!(Level::from_foreign("trace"), Some(Level::Debug));
        assert_eq!(Level::from_foreign("loud"), None);
        let r: Level = serde_json::from_str(r#""warning""#).expect("alias");
        assert_eq!(r, Level::Warn);
        assert_eq!(Level::from(log::Level::Trace), Level::Debug);
    }
}
