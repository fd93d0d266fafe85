//! The OCI runtime's own log (`runc --log <bundle>/log.json --log-format json`).
//!
//! runc, crun and youki write one logrus-style JSON object per line:
//! `{"level":"error","msg":"container does not exist","time":"2024-05-01T12:00:00Z"}`,
//! sometimes with extra fields (`file`, `func`, `error`, ...). Scribe turns
//! these lines into runtime-log records and quotes the last error when a
//! runtime command fails, as containerd's runc shim does.
//!
//! Parsing never drops a line: logrus *text* lines (`time="..." level=error
//! msg="..."`, what a runtime writes without `--log-format json`) are
//! understood too, and anything else becomes a record with the raw text as
//! `msg`, level **error** and `raw` set — a runtime that was asked for JSON and
//! wrote something else is misbehaving (a crash dump, a wrapper script), and
//! that should be visible, not filed under info.

mod follow;
mod logfmt;
mod tail;

use std::fmt;
use std::time::SystemTime;

use serde_json::{Map, Value};

pub use follow::RuntimeLogFollower;
pub use tail::{last_error, TAIL_WINDOW};

/// Error raised while reading a runtime log file: the path and the failed step.
#[derive(Debug)]
pub struct RuncLogError {
    /// What was being done (`open`, `read`, `seek`, `stat`).
    pub op: &'static str,
    /// The log file.
    pub path: std::path::PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

impl fmt::Display for RuncLogError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "runtime log {} {}: {}",
            self.op,
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for RuncLogError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Severity, in the runtime-log schema's five levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `debug` (logrus `trace` maps here too).
    Debug,
    /// `info`, and any level name Scribe does not know.
    Info,
    /// `warn` / `warning`.
    Warn,
    /// `error`.
    Error,
    /// `fatal` / `panic`.
    Fatal,
}

impl Level {
    /// Maps a runtime's level name: `warning`->warn, `panic`->fatal,
    /// `trace`->debug, unknown->info (case-insensitive).
    pub fn from_name(name: &str) -> Level {
        match name.trim().to_ascii_lowercase().as_str() {
            "trace" | "debug" => Level::Debug,
            "warn" | "warning" => Level::Warn,
            "error" | "err" => Level::Error,
            "fatal" | "panic" | "crit" | "critical" => Level::Fatal,
            _ => Level::Info,
        }
    }

    /// The schema's spelling (`debug`, `info`, `warn`, `error`, `fatal`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of a runtime log, parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeLogLine {
    /// Normalised level.
    pub level: Level,
    /// The message (`msg`), or the whole line for unparseable text.
    pub msg: String,
    /// The runtime's timestamp string, as written (RFC 3339 for runc).
    pub time: Option<String>,
    /// Every other field (`file`, `func`, `error`, ...), in the line's order
    /// for JSON input.
    pub fields: Map<String, Value>,
    /// True when the line was neither JSON nor logrus text.
    pub raw: bool,
}

impl RuntimeLogLine {
    /// Parses one line (with or without its `\n`); `None` for blank lines.
    pub fn parse(line: &[u8]) -> Option<RuntimeLogLine> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        if text.starts_with('{') {
            if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) {
                return Some(Self::from_fields(map));
            }
        }
        if let Some(map) = logfmt::parse(text) {
            return Some(Self::from_fields(map));
        }
        Some(RuntimeLogLine {
            level: Level::Error,
            msg: text.to_owned(),
            time: None,
            fields: Map::new(),
            raw: true,
        })
    }

    fn from_fields(mut map: Map<String, Value>) -> RuntimeLogLine {
        let level = map
            .remove("level")
            .map(|v| Level::from_name(&value_text(v)))
            .unwrap_or(Level::Info);
        let msg = map.remove("msg").map(value_text).unwrap_or_default();
        let time = map.remove("time").map(value_text);
        RuntimeLogLine {
            level,
            msg,
            time,
            fields: map,
            raw: false,
        }
    }

    /// The runtime's timestamp, when it is valid RFC 3339.
    pub fn timestamp(&self) -> Option<SystemTime> {
        let t = self.time.as_deref()?;
        let dt =
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()?;
        Some(dt.into())
    }

    /// True when the runtime's time is coarser than a microsecond (runc 1.1's logrus writes
    /// whole seconds), or missing or unreadable: such a time cannot order the line among the
    /// shim's own nanosecond-stamped lines, so the time the shim read the line should stamp it.
    pub fn time_is_coarse(&self) -> bool {
        let Some(t) = self.time.as_deref() else {
            return true;
        };
        if self.timestamp().is_none() {
            return true;
        }
        // RFC 3339: the fraction follows the seconds' '.' and ends at the zone ('Z', '+', '-').
        let digits = t
            .split_once('.')
            .map(|(_, rest)| rest.bytes().take_while(u8::is_ascii_digit).count())
            .unwrap_or(0);
        digits < 6
    }

    /// `msg`, plus the `error` field when there is one that `msg` does not
    /// already contain (logrus `WithError` puts the cause there): the text an
    /// error report should quote.
    pub fn message_with_error(&self) -> String {
        let msg = self.msg.trim();
        match self
            .fields
            .get("error")
            .and_then(Value::as_str)
            .map(str::trim)
        {
            Some(err) if !err.is_empty() && !msg.contains(err) => {
                if msg.is_empty() {
                    err.to_owned()
                } else {
                    format!("{msg}: {err}")
                }
            }
            _ => msg.to_owned(),
        }
    }
}

/// A JSON value as text: strings unquoted, anything else in JSON form.
fn value_text(v: Value) -> String {
    match v {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn coarse_times_are_those_below_microseconds() {
        let coarse = |t: &str| {
            super::RuntimeLogLine::parse(
                format!("{{\"level\":\"error\",\"msg\":\"m\",\"time\":\"{t}\"}}").as_bytes(),
            )
            .map(|l| l.time_is_coarse())
        };
        assert_eq!(coarse("2024-05-01T12:00:00Z"), Some(true));
        assert_eq!(coarse("2024-05-01T12:00:00+02:00"), Some(true));
        assert_eq!(coarse("2024-05-01T12:00:00.123Z"), Some(true));
        assert_eq!(coarse("2024-05-01T12:00:00.123456Z"), Some(false));
        assert_eq!(coarse("2024-05-01T12:00:00.123456789-01:00"), Some(false));
        assert_eq!(coarse("yesterday"), Some(true));
        let none = super::RuntimeLogLine::parse(b"{\"msg\":\"m\"}").map(|l| l.time_is_coarse());
        assert_eq!(none, Some(true));
    }

    use super::*;

    const FIXTURE: &str = include_str!("../../testdata/runc-log.json");

    #[test]
    fn levels_map_to_the_schema() {
        assert_eq!(Level::from_name("warning"), Level::Warn);
        assert_eq!(Level::from_name("WARN"), Level::Warn);
        assert_eq!(Level::from_name("panic"), Level::Fatal);
        assert_eq!(Level::from_name("fatal"), Level::Fatal);
        assert_eq!(Level::from_name("trace"), Level::Debug);
        assert_eq!(Level::from_name("notice"), Level::Info);
        assert_eq!(Level::Error.to_string(), "error");
        assert!(Level::Fatal > Level::Error && Level::Error > Level::Warn);
    }

    #[test]
    fn parses_genuine_runc_output() {
        // Captured from runc 1.1.5 (`state`/`delete`/`kill` of a missing
        // container, and a `run --debug` whose process binary is missing).
        let lines: Vec<RuntimeLogLine> = FIXTURE
            .lines()
            .filter_map(|l| RuntimeLogLine::parse(l.as_bytes()))
            .collect();
        assert_eq!(lines.len(), FIXTURE.lines().count());
        assert!(lines
            .iter()
            .all(|l| !l.raw && l.time.is_some() && l.timestamp().is_some()));
        assert_eq!(lines[0].level, Level::Error);
        assert_eq!(lines[0].msg, "container does not exist");
        assert!(lines[0].fields.is_empty());
        assert_eq!(lines[1].fields["func"], "main.fatalWithCode");
        let debug = lines.iter().filter(|l| l.level == Level::Debug).count();
        assert!(debug > 20);
        // JSON escapes such as \u003e are decoded.
        assert!(lines
            .iter()
            .any(|l| l.msg.contains("=> nsexec container setup")));
        let last = lines.last().unwrap();
        assert_eq!(last.level, Level::Error);
        assert!(last.msg.contains("/bin/nonexistent-binary"));
    }

    #[test]
    fn tolerates_extra_fields_and_odd_types() {
        let l = RuntimeLogLine::parse(
            br#"{"level":"warning","msg":42,"time":"2024-01-02T03:04:05.5+01:00","pid":7}"#,
        )
        .unwrap();
        assert_eq!(l.level, Level::Warn);
        assert_eq!(l.msg, "42");
        assert_eq!(l.fields["pid"], 7);
        let t = l.timestamp().unwrap();
        assert_eq!(
            crate::timefmt::rfc3339_nano(t),
            "2024-01-02T02:04:05.500000000Z"
        );
        let l = RuntimeLogLine::parse(br#"{"msg":"no level"}"#).unwrap();
        assert_eq!(l.level, Level::Info);
        assert_eq!(l.time, None);
    }

    #[test]
    fn garbage_is_kept_as_a_raw_error() {
        let l = RuntimeLogLine::parse(b"panic: runtime error: index out of range\n").unwrap();
        assert!(l.raw);
        assert_eq!(l.level, Level::Error);
        assert_eq!(l.msg, "panic: runtime error: index out of range");
        let l = RuntimeLogLine::parse(b"{\"level\":\"error\",\"msg\":\"trunc").unwrap();
        assert!(l.raw);
        let l = RuntimeLogLine::parse(b"[1,2]").unwrap();
        assert!(l.raw);
        let l = RuntimeLogLine::parse(b"bad \xff utf8").unwrap();
        assert_eq!(l.msg, "bad \u{fffd} utf8");
        assert_eq!(RuntimeLogLine::parse(b"  \r\n"), None);
    }

    #[test]
    fn logrus_text_lines() {
        let l = RuntimeLogLine::parse(
            br#"time="2024-05-01T12:00:00Z" level=error msg="exec failed: \"x\" missing" error=boom"#,
        )
        .unwrap();
        assert!(!l.raw);
        assert_eq!(l.level, Level::Error);
        assert_eq!(l.msg, "exec failed: \"x\" missing");
        assert_eq!(l.time.as_deref(), Some("2024-05-01T12:00:00Z"));
        assert_eq!(l.message_with_error(), "exec failed: \"x\" missing: boom");
    }

    #[test]
    fn message_with_error_avoids_repeats() {
        let l =
            RuntimeLogLine::parse(br#"{"level":"error","msg":"open x: denied","error":"denied"}"#)
                .unwrap();
        assert_eq!(l.message_with_error(), "open x: denied");
        let l = RuntimeLogLine::parse(br#"{"level":"error","msg":"","error":"denied"}"#).unwrap();
        assert_eq!(l.message_with_error(), "denied");
    }
}
