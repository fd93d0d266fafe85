//! Docker's delivery modes of a log driver: `mode=blocking|non-blocking` and `max-buffer-size`.
//!
//! Docker's meaning: `blocking` (the default) hands every message to the driver and waits for
//! it; `non-blocking` puts a buffer of `max-buffer-size` bytes (default 1e6, go-units
//! `RAMInBytes`: binary multiples) in front of it and drops the *new* message when the buffer
//! is full. `max-buffer-size` without `mode=non-blocking` is an error, as in Docker.

use std::fmt;

/// Docker's default `max-buffer-size` (1e6 bytes).
pub const DEFAULT_MAX_BUFFER_SIZE: u64 = 1_000_000;

/// The option keys a mode is read from; every driver accepts them.
pub const MODE_KEYS: [&str; 2] = ["mode", "max-buffer-size"];

/// How a driver takes messages it cannot deliver at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Wait for the driver (back-pressure on this container only; see each driver's doc for
    /// how long it may wait before it drops).
    #[default]
    Blocking,
    /// Queue up to `max_buffer` bytes; drop (and count) new messages while it is full.
    NonBlocking {
        /// `max-buffer-size` in bytes.
        max_buffer: u64,
    },
}

/// A refused `mode` or `max-buffer-size`, naming the option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeError {
    /// `mode` or `max-buffer-size`.
    pub key: &'static str,
    /// The value given.
    pub value: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for ModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "log option {}={:?}: {}",
            self.key, self.value, self.reason
        )
    }
}

impl std::error::Error for ModeError {}

impl Mode {
    /// Reads `mode` and `max-buffer-size` (either may be absent).
    pub fn parse(mode: Option<&str>, max_buffer_size: Option<&str>) -> Result<Mode, ModeError> {
        let non_blocking = match mode {
            None | Some("") | Some("blocking") => false,
            Some("non-blocking") => true,
            Some(v) => {
                return Err(ModeError {
                    key: "mode",
                    value: v.into(),
                    reason: "expected blocking or non-blocking".into(),
                })
            }
        };
        match (non_blocking, max_buffer_size) {
            (false, None) => Ok(Mode::Blocking),
            (false, Some(v)) => Err(ModeError {
                key: "max-buffer-size",
                value: v.into(),
                reason: "max-buffer-size is only supported with mode=non-blocking".into(),
            }),
            (true, None) => Ok(Mode::NonBlocking {
                max_buffer: DEFAULT_MAX_BUFFER_SIZE,
            }),
            (true, Some(v)) => parse_ram_size(v)
                .map(|max_buffer| Mode::NonBlocking { max_buffer })
                .map_err(|reason| ModeError {
                    key: "max-buffer-size",
                    value: v.into(),
                    reason,
                }),
        }
    }

    /// The buffer bound in non-blocking mode.
    pub fn max_buffer(&self) -> Option<u64> {
        match self {
            Mode::Blocking => None,
            Mode::NonBlocking { max_buffer } => Some(*max_buffer),
        }
    }
}

/// go-units `RAMInBytes`: binary multiples (`1m` = 1 MiB), optional `b`/`ib`; must be > 0.
pub fn parse_ram_size(s: &str) -> Result<u64, String> {
    let invalid = || format!("invalid size {s:?}; expected e.g. 512k, 4m or a byte count");
    let t = s.trim();
    let num_end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, sfx) = t.split_at(num_end);
    let sfx = sfx.trim_start().to_ascii_lowercase();
    if num.is_empty() || num.matches('.').count() > 1 {
        return Err(invalid());
    }
    let value: f64 = num.parse().map_err(|_| invalid())?;
    let unit: f64 = match sfx.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024f64.powi(4),
        _ => return Err(invalid()),
    };
    let bytes = value * unit;
    if bytes < 1.0 {
        return Err("must be a positive size".into());
    }
    if bytes >= u64::MAX as f64 {
        return Err(format!("size {s:?} is too large"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_defaults_and_errors() {
        assert_eq!(Mode::parse(None, None), Ok(Mode::Blocking));
        assert_eq!(Mode::parse(Some("blocking"), None), Ok(Mode::Blocking));
        assert_eq!(
            Mode::parse(Some("non-blocking"), None),
            Ok(Mode::NonBlocking {
                max_buffer: 1_000_000
            })
        );
        assert_eq!(
            Mode::parse(Some("non-blocking"), Some("4m")),
            Ok(Mode::NonBlocking {
                max_buffer: 4 << 20
            })
        );
        let e = Mode::parse(None, Some("4m")).unwrap_err();
        assert_eq!(e.key, "max-buffer-size");
        assert!(e.to_string().contains("non-blocking"), "{e}");
        assert_eq!(Mode::parse(Some("fast"), None).unwrap_err().key, "mode");
        for bad in ["-1", "0", "lots", "1x", ""] {
            assert!(
                Mode::parse(Some("non-blocking"), Some(bad)).is_err(),
                "{bad}"
            );
        }
    }
}
