//! The two file formats the reader knows, and how each cuts a byte stream into records:
//! json-file (one JSON object a line) and Docker's `local` (`[u32 BE size][LogEntry][size]`,
//! see [`crate::localfmt`]), used by the `local` driver and the dual-logging cache.

use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::entry::{self, Entry};
use crate::localfmt::{self, FormatError, SIZE_LEN};
use crate::stream::Stream;

/// A log file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Docker's json-file.
    JsonFile,
    /// Docker's `local`.
    Local,
}

/// What [`Format::split`] found at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Split {
    /// A whole record of `len` bytes whose body (what [`Format::decode`] takes) is `body`.
    Record {
        /// The body's bytes in the buffer.
        body: Range<usize>,
        /// Bytes the record takes.
        len: usize,
    },
    /// The record is not complete yet.
    More,
    /// Not a record; nothing after it in the file can be found again (local format only).
    Bad(String),
}

impl Format {
    /// Cuts the first record off `buf`.
    pub fn split(self, buf: &[u8]) -> Split {
        match self {
            Format::JsonFile => match memchr::memchr(b'\n', buf) {
                Some(nl) => Split::Record {
                    body: 0..nl,
                    len: nl + 1,
                },
                None => Split::More,
            },
            Format::Local => match localfmt::decode_record(buf) {
                Ok((_, len)) => Split::Record {
                    body: SIZE_LEN..len - SIZE_LEN,
                    len,
                },
                Err(FormatError::Truncated { .. }) => Split::More,
                Err(e) => Split::Bad(e.to_string()),
            },
        }
    }

    /// Decodes a record's body into an entry (a local entry gets back the `\n` it dropped
    /// unless it is a piece of a longer line).
    pub fn decode(self, body: &[u8]) -> Result<Entry, String> {
        match self {
            Format::JsonFile => entry::decode(body),
            Format::Local => {
                let e = localfmt::decode_entry(body).map_err(|e| e.to_string())?;
                let stream = match e.source {
                    "stdout" => Stream::Stdout,
                    "stderr" => Stream::Stderr,
                    other => return Err(format!("unknown source {other:?}")),
                };
                let mut line = Vec::with_capacity(e.line.len() + 1);
                line.extend_from_slice(e.line);
                if !e.partial {
                    line.push(b'\n');
                }
                Ok(Entry {
                    time: local_time(e.time_nano),
                    stream,
                    line,
                })
            }
        }
    }

    /// A record's time without decoding the rest where the format allows.
    pub fn time(self, body: &[u8]) -> Option<SystemTime> {
        match self {
            Format::JsonFile => entry::decode_time(body),
            Format::Local => localfmt::decode_entry(body)
                .ok()
                .map(|e| local_time(e.time_nano)),
        }
    }
}

fn local_time(nanos: i64) -> SystemTime {
    let n = u64::try_from(nanos).unwrap_or(0);
    UNIX_EPOCH + Duration::from_nanos(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_records_round_trip() {
        let mut buf = Vec::new();
        let e = localfmt::EntryRef {
            source: "stderr",
            time_nano: 1_711_015_200_123_456_789,
            line: b"hello",
            partial: false,
            partial_meta: None,
        };
        localfmt::encode_record(&e, &mut buf);
        let whole = buf.len();
        buf.extend_from_slice(&[0, 0]);
        let Split::Record { body, len } = Format::Local.split(&buf) else {
            panic!("no record");
        };
        assert_eq!(len, whole);
        let got = Format::Local.decode(&buf[body]).unwrap();
        assert_eq!(got.line, b"hello\n");
        assert_eq!(got.stream, Stream::Stderr);
        assert_eq!(
            got.time,
            UNIX_EPOCH + Duration::new(1_711_015_200, 123_456_789)
        );
        assert_eq!(Format::Local.split(&buf[..whole - 1]), Split::More);
        assert!(matches!(
            Format::Local.split(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]),
            Split::Bad(_)
        ));
    }
}
