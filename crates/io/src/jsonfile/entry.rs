//! One json-file entry, encoded as Docker's `JSONLogs.MarshalJSONBuf` does.
//!
//! `{"log":"...","stream":"stdout","attrs":{"tag":"..."},"time":"..."}\n`,
//! fields in that order, `log` only when the line is not empty, `attrs` only
//! when there are attributes, and the time
//! in UTC with exactly nine fractional digits.

use super::escape::write_json_string;
use crate::stream::Stream;

/// Renders the `attrs` object once per writer: `{"tag":"<escaped>"}`.
pub(crate) fn tag_attrs(tag: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(tag.len() + 10);
    out.extend_from_slice(b"{\"tag\":");
    write_json_string(&mut out, tag.as_bytes());
    out.push(b'}');
    out
}

/// Appends one entry (with its trailing newline) to `out`.
pub(crate) fn encode_entry(
    out: &mut Vec<u8>,
    line: &[u8],
    stream: Stream,
    attrs: Option<&[u8]>,
    time: &[u8],
) {
    out.push(b'{');
    // Docker omits an empty `log` field.
    if !line.is_empty() {
        out.extend_from_slice(b"\"log\":");
        write_json_string(out, line);
        out.push(b',');
    }
    out.extend_from_slice(b"\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.push(b'"');
    if let Some(attrs) = attrs {
        out.extend_from_slice(b",\"attrs\":");
        out.extend_from_slice(attrs);
    }
    out.extend_from_slice(b",\"time\":\"");
    // Formatted once per batch by the caller: formatting per entry was a large share of the
    // cost of 100-byte lines.
    out.extend_from_slice(time);
    out.extend_from_slice(b"\"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn t() -> Vec<u8> {
        let mut out = Vec::new();
        crate::timefmt::write_rfc3339_nano(
            &mut out,
            SystemTime::UNIX_EPOCH + Duration::new(1_711_015_200, 123_456_789),
        );
        out
    }

    #[test]
    fn matches_docker_bytes() {
        let mut out = Vec::new();
        encode_entry(&mut out, b"hello world\n", Stream::Stdout, None, &t());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log\":\"hello world\\n\",\"stream\":\"stdout\",\"time\":\"2024-03-21T10:00:00.123456789Z\"}\n"
        );
    }

    #[test]
    fn empty_line_omits_log() {
        let mut out = Vec::new();
        encode_entry(&mut out, b"", Stream::Stdout, None, &t());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"stream\":\"stdout\",\"time\":\"2024-03-21T10:00:00.123456789Z\"}\n"
        );
    }

    #[test]
    fn with_tag_attrs() {
        let attrs = tag_attrs("web/<1>");
        let mut out = Vec::new();
        encode_entry(&mut out, b"x", Stream::Stderr, Some(&attrs), &t());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"log\":\"x\",\"stream\":\"stderr\",\"attrs\":{\"tag\":\"web/\\u003c1\\u003e\"},\"time\":\"2024-03-21T10:00:00.123456789Z\"}\n"
        );
    }
}
