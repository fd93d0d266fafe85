//! One json-file entry read back: its time, stream and the bytes of `log`, and the Docker
//! json-file object written for `--format json`.

use std::borrow::Cow;
use std::time::SystemTime;

use serde::Deserialize;

use super::time::{parse_fixed_utc, parse_rfc3339};
use crate::stream::Stream;

/// An entry (or, after [`super::partial::Joiner`], a whole line) of a container's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// When the driver received it.
    pub time: SystemTime,
    /// Which output stream it came from.
    pub stream: Stream,
    /// The text, with its trailing `\n` when the container ended the line here.
    pub line: Vec<u8>,
}

impl Entry {
    /// A piece of a longer line: json-file writes the end of a line with its `\n`, the pieces
    /// before it (16 KiB each, or what a process left without newline) without.
    pub fn is_partial(&self) -> bool {
        !self.line.ends_with(b"\n")
    }

    /// Appends the entry as a Docker json-file object line (`{"log":..,"stream":..,"time":..}`).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let mut t = Vec::with_capacity(30);
        crate::timefmt::write_rfc3339_nano(&mut t, self.time);
        crate::jsonfile::entry::encode_entry(out, &self.line, self.stream, None, &t);
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(default, borrow)]
    log: Cow<'a, str>,
    #[serde(borrow)]
    stream: Cow<'a, str>,
    #[serde(borrow)]
    time: Cow<'a, str>,
}

/// Decodes one json-file line (without its `\n`); the error says what is wrong with it.
pub fn decode(raw: &[u8]) -> Result<Entry, String> {
    let r: Raw = serde_json::from_slice(raw).map_err(|e| format!("not a json-file entry: {e}"))?;
    let stream = match &*r.stream {
        "stdout" => Stream::Stdout,
        "stderr" => Stream::Stderr,
        other => return Err(format!("unknown stream {other:?}")),
    };
    let time = parse_fixed_utc(r.time.as_bytes())
        .or_else(|| parse_rfc3339(&r.time))
        .ok_or_else(|| format!("bad time {:?}", r.time))?;
    Ok(Entry {
        time,
        stream,
        line: r.log.into_owned().into_bytes(),
    })
}

/// The `time` of a json-file line without decoding the rest (file pruning and binary search
/// only need the time).
pub fn decode_time(raw: &[u8]) -> Option<SystemTime> {
    let key = b"\"time\":\"";
    let at = memchr::memmem::rfind(raw, key)? + key.len();
    let len = memchr::memchr(b'"', &raw[at..])?;
    let t = &raw[at..at + len];
    parse_fixed_utc(t).or_else(|| parse_rfc3339(std::str::from_utf8(t).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn round_trip() {
        let raw = br#"{"log":"a \u003c\"b\"\n","stream":"stderr","attrs":{"tag":"x"},"time":"2024-03-21T10:00:00.123456789Z"}"#;
        let e = decode(raw).unwrap();
        assert_eq!(e.line, b"a <\"b\"\n");
        assert_eq!(e.stream, Stream::Stderr);
        assert_eq!(
            e.time,
            UNIX_EPOCH + Duration::new(1_711_015_200, 123_456_789)
        );
        assert!(!e.is_partial());
        assert_eq!(decode_time(raw), Some(e.time));
        let mut out = Vec::new();
        e.write_json(&mut out);
        assert_eq!(
            out,
            b"{\"log\":\"a \\u003c\\\"b\\\"\\n\",\"stream\":\"stderr\",\"time\":\"2024-03-21T10:00:00.123456789Z\"}\n"
        );
    }

    #[test]
    fn bad_lines() {
        assert!(decode(b"{\"log\":\"x\",\"stream\":\"stdout\"").is_err());
        assert!(
            decode(b"{\"log\":\"x\",\"stream\":\"nope\",\"time\":\"2024-03-21T10:00:00Z\"}")
                .is_err()
        );
        assert!(decode(b"{\"log\":\"x\",\"stream\":\"stdout\",\"time\":\"yesterday\"}").is_err());
        let e = decode(b"{\"stream\":\"stdout\",\"time\":\"2024-03-21T10:00:00Z\"}").unwrap();
        assert!(e.line.is_empty() && e.is_partial());
    }
}
