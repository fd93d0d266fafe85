//! The fluentd driver's options as Docker spells them, validated the way dockerd does (bad
//! values fail the Create naming the option), with Scribe's meaning where it differs.
//!
//! - `fluentd-address`: see [`Address`].
//! - `fluentd-async` / `fluentd-async-connect` (deprecated; not both): accepted Go booleans.
//!   Scribe always behaves as dockerd does with async on, and better: the container starts
//!   while fluentd is down and never waits for it (dockerd without async refuses to start it).
//! - `fluentd-buffer-limit`: go-units `RAMInBytes`, counted in *records* queued, which is what
//!   dockerd's async client counts (its channel length); default 1,048,576. The queue is also
//!   bounded in bytes: `max-buffer-size` with `mode=non-blocking`, else [`DEFAULT_QUEUE_BYTES`]
//!   (what a full queue does per mode: see the driver's module doc).
//! - `fluentd-retry-wait` (Go duration, default 1 s; each retry waits 1.5 times the last, at
//!   most [`MAX_RETRY_WAIT`]) and `fluentd-max-retries` (default `MaxInt32`, dockerd's):
//!   after that many failed attempts in a row the batch in hand is dropped and counted, and the
//!   driver goes on with the next one (dockerd's client gives up for good).
//! - `fluentd-request-ack`, `fluentd-sub-second-precision`: Go booleans.
//! - `fluentd-write-timeout`: Go duration; a write that makes no progress for that long (or an
//!   ack that takes longer) drops the connection and resends on a new one. Default none; with ack on, acks are awaited
//!   at most [`DEFAULT_ACK_TIMEOUT`].
//! - `fluentd-async-reconnect-interval`: validated as dockerd does (0 or 100 ms..10 s); unused
//!   (Scribe reconnects when a send fails, on the retry schedule).
//! - `tag`: the tag template, default `{{.ID}}`.

use std::fmt;
use std::time::Duration;

use super::address::Address;
use crate::drivers::mode::parse_ram_size;
use crate::jsonfile::TagTemplate;

/// The option keys of the fluentd driver.
pub const OPTION_KEYS: [&str; 11] = [
    "fluentd-address",
    "fluentd-async",
    "fluentd-async-connect",
    "fluentd-async-reconnect-interval",
    "fluentd-buffer-limit",
    "fluentd-max-retries",
    "fluentd-request-ack",
    "fluentd-retry-wait",
    "fluentd-sub-second-precision",
    "fluentd-write-timeout",
    "tag",
];

/// dockerd's default `fluentd-buffer-limit`, in records.
pub const DEFAULT_BUFFER_LIMIT: u64 = 1024 * 1024;
/// Bytes of encoded records the queue holds in blocking mode (non-blocking: `max-buffer-size`).
pub const DEFAULT_QUEUE_BYTES: u64 = 16 << 20;
/// dockerd's default `fluentd-retry-wait`.
pub const DEFAULT_RETRY_WAIT: Duration = Duration::from_secs(1);
/// dockerd's default `fluentd-max-retries` (Go's `math.MaxInt32`).
pub const DEFAULT_MAX_RETRIES: u64 = i32::MAX as u64;
/// The longest wait between retries (fluent-logger-golang's cap).
pub const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);
/// How long an ack is awaited when no `fluentd-write-timeout` is set.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Validated fluentd options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluentdOptions {
    /// Where to send.
    pub address: Address,
    /// Tag template (`None`: `{{.ID}}`).
    pub tag: Option<TagTemplate>,
    /// Records the queue holds.
    pub buffer_limit: u64,
    /// First wait before reconnecting.
    pub retry_wait: Duration,
    /// Failed attempts in a row before a batch is dropped.
    pub max_retries: u64,
    /// Ask fluentd to acknowledge every batch (`chunk` option), and resend until it does.
    pub request_ack: bool,
    /// EventTime (seconds and nanoseconds) rather than integer seconds.
    pub sub_second: bool,
    /// Bound on one write and one ack wait.
    pub write_timeout: Option<Duration>,
    /// `fluentd-async` (or the deprecated `fluentd-async-connect`) as given.
    pub async_: bool,
}

impl Default for FluentdOptions {
    fn default() -> Self {
        FluentdOptions {
            address: Address::Tcp {
                host: "127.0.0.1".into(),
                port: super::address::DEFAULT_PORT,
            },
            tag: None,
            buffer_limit: DEFAULT_BUFFER_LIMIT,
            retry_wait: DEFAULT_RETRY_WAIT,
            max_retries: DEFAULT_MAX_RETRIES,
            request_ack: false,
            sub_second: false,
            write_timeout: None,
            async_: false,
        }
    }
}

/// A refused fluentd option, naming it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluentdOptionError {
    /// The option key.
    pub key: String,
    /// The value given (at most 64 characters of it are shown).
    pub value: String,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for FluentdOptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.value.chars().take(64).collect();
        write!(
            f,
            "fluentd option {}={:?}: {}",
            self.key, shown, self.reason
        )
    }
}

impl std::error::Error for FluentdOptionError {}

impl FluentdOptions {
    /// Parses the driver's own `key=value` options; unknown keys are errors.
    pub fn from_pairs<'a, I>(pairs: I) -> Result<Self, FluentdOptionError>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        let mut o = FluentdOptions::default();
        let mut async_keys = 0;
        for (key, value) in pairs {
            let err = |reason: String| FluentdOptionError {
                key: key.to_owned(),
                value: value.to_owned(),
                reason,
            };
            let boolean =
                || parse_bool(value).ok_or_else(|| err("not a boolean (true/false)".into()));
            match key {
                "fluentd-address" => o.address = Address::parse(value).map_err(err)?,
                "fluentd-async" | "fluentd-async-connect" => {
                    async_keys += 1;
                    if async_keys > 1 {
                        return Err(err(
                            "conflicting options: cannot give both fluentd-async and fluentd-async-connect".into(),
                        ));
                    }
                    o.async_ = boolean()?;
                }
                "fluentd-async-reconnect-interval" => {
                    let d = parse_duration(value).map_err(err)?;
                    if !d.is_zero()
                        && (d < Duration::from_millis(100) || d > Duration::from_secs(10))
                    {
                        return Err(err("must be 0 or between 100ms and 10s".into()));
                    }
                }
                "fluentd-buffer-limit" => o.buffer_limit = parse_ram_size(value).map_err(err)?,
                "fluentd-max-retries" => {
                    o.max_retries = value
                        .parse::<u64>()
                        .map_err(|_| err("not a non-negative integer".into()))?
                }
                "fluentd-request-ack" => o.request_ack = boolean()?,
                "fluentd-retry-wait" => {
                    let d = parse_duration(value).map_err(err)?;
                    if d.is_zero() {
                        return Err(err("must be positive".into()));
                    }
                    o.retry_wait = d;
                }
                "fluentd-sub-second-precision" => o.sub_second = boolean()?,
                "fluentd-write-timeout" => {
                    let d = parse_duration(value).map_err(err)?;
                    o.write_timeout = (!d.is_zero()).then_some(d);
                }
                "tag" => o.tag = Some(TagTemplate::parse(value).map_err(|e| err(e.to_string()))?),
                _ => {
                    return Err(err(format!(
                        "unknown option; the fluentd driver takes {}",
                        OPTION_KEYS.join(", ")
                    )))
                }
            }
        }
        Ok(o)
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Go's `time.ParseDuration` for non-negative values: `1s`, `1.5s`, `500ms`, `1m30s`, `0`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?}; expected e.g. 500ms, 1s or 1m30s");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.starts_with('-') {
        return Err("must not be negative".into());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    if rest.is_empty() {
        return Err(bad());
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let value: f64 = rest[..n].parse().map_err(|_| bad())?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos = match &rest[..u] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[u..];
        total += value * nanos;
    }
    if total > 1e18 {
        return Err(format!("duration {s:?} is too long"));
    }
    Ok(Duration::from_nanos(total as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<FluentdOptions, FluentdOptionError> {
        FluentdOptions::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn dockerd_defaults() {
        let o = parse(&[]).unwrap();
        assert_eq!(o.address.to_string(), "tcp://127.0.0.1:24224");
        assert_eq!(o.buffer_limit, 1 << 20);
        assert_eq!(o.retry_wait, Duration::from_secs(1));
        assert_eq!(o.max_retries, 2147483647);
        assert!(!o.request_ack && !o.sub_second && o.write_timeout.is_none());
    }

    #[test]
    fn values() {
        let o = parse(&[
            ("fluentd-address", "unix:///run/f.sock"),
            ("fluentd-buffer-limit", "4k"),
            ("fluentd-retry-wait", "250ms"),
            ("fluentd-max-retries", "3"),
            ("fluentd-request-ack", "true"),
            ("fluentd-sub-second-precision", "1"),
            ("fluentd-write-timeout", "1m30s"),
            ("fluentd-async", "true"),
            ("fluentd-async-reconnect-interval", "1s"),
            ("tag", "{{.Name}}"),
        ])
        .unwrap();
        assert_eq!(o.buffer_limit, 4096);
        assert_eq!(o.retry_wait, Duration::from_millis(250));
        assert_eq!(o.max_retries, 3);
        assert!(o.request_ack && o.sub_second && o.async_);
        assert_eq!(o.write_timeout, Some(Duration::from_secs(90)));
    }

    #[test]
    fn errors_name_the_option() {
        for (k, v) in [
            ("fluentd-address", "udp://x:1"),
            ("fluentd-address", "tcp://x:port"),
            ("fluentd-buffer-limit", "-1"),
            ("fluentd-buffer-limit", "lots"),
            ("fluentd-max-retries", "-1"),
            ("fluentd-retry-wait", "-1s"),
            ("fluentd-retry-wait", "1"),
            ("fluentd-request-ack", "yes"),
            ("fluentd-async-reconnect-interval", "1ms"),
            ("tag", "{{.Nope}}"),
            ("max-size", "1m"),
        ] {
            let e = parse(&[(k, v)]).unwrap_err();
            assert_eq!(e.key, k);
            assert!(e.to_string().contains(k), "{e}");
        }
        let e = parse(&[("fluentd-async", "true"), ("fluentd-async-connect", "true")]);
        assert!(e.is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert!(parse_duration("").is_err());
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("1x").is_err());
    }
}
