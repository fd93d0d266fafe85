//! The two entry formats of Docker's file drivers, written by the one rotating writer
//! ([`super::JsonFileWriter`]): json-file lines and `local` records ([`crate::localfmt`]).
//!
//! Both drivers share everything else (one `write(2)` per batch, rotation on a thread of its
//! own, `max-file`, gzip, drop accounting, links refused); only these steps differ: how a
//! message is encoded, how many whole entries a short write left, and what a rotated file's
//! gzip header carries.

use std::fs::File;
use std::time::SystemTime;

use super::entry;
use crate::drivers::{Partial, PartialIds, Record};
use crate::localfmt::{self, EntryRef, PartialMeta, SIZE_LEN};
use crate::stream::Stream;

/// Which driver's files a writer writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Docker's json-file: one JSON object per line.
    Json,
    /// Docker's `local`: `[size][LogEntry][size]` records.
    Local,
}

/// One message to write: its bytes (with the trailing newline when it ends a line) and, for a
/// piece of a split line, where it sits (json-file stores no such metadata; `local` does).
pub trait Piece {
    /// The message's bytes.
    fn bytes(&self) -> &[u8];
    /// `Some` for a piece of a split line.
    fn partial(&self) -> Option<Partial>;
}

impl Piece for &[u8] {
    fn bytes(&self) -> &[u8] {
        self
    }
    fn partial(&self) -> Option<Partial> {
        None
    }
}

impl Piece for Record<'_> {
    fn bytes(&self) -> &[u8] {
        self.line
    }
    fn partial(&self) -> Option<Partial> {
        self.partial
    }
}

/// What every entry of one batch shares, computed once per batch.
pub(crate) struct BatchStamp {
    /// RFC 3339 time with nine digits (json-file).
    rfc3339: Vec<u8>,
    /// Unix nanoseconds (`local`).
    nanos: i64,
    /// Scratch for a split line's id as text.
    id: String,
}

impl BatchStamp {
    pub(crate) fn new(format: Format, time: SystemTime) -> BatchStamp {
        let mut rfc3339 = Vec::new();
        if format == Format::Json {
            crate::timefmt::write_rfc3339_nano(&mut rfc3339, time);
        }
        BatchStamp {
            rfc3339,
            nanos: unix_nanos(time),
            id: String::new(),
        }
    }
}

/// `time` as Unix nanoseconds (negative before 1970, saturating far out).
pub(crate) fn unix_nanos(time: SystemTime) -> i64 {
    match time.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    }
}

impl Format {
    /// Docker's name of the driver writing this format, for messages.
    pub fn driver(self) -> &'static str {
        match self {
            Format::Json => "json-file",
            Format::Local => "local",
        }
    }

    /// Appends the entry of `piece` to `out`. `ids` gives split-line ids to `local` messages
    /// that end no line and carry none (created on first use).
    pub(crate) fn encode(
        self,
        out: &mut Vec<u8>,
        piece: &impl Piece,
        stream: Stream,
        attrs: Option<&[u8]>,
        stamp: &mut BatchStamp,
        ids: &mut Option<PartialIds>,
    ) {
        match self {
            Format::Json => entry::encode_entry(out, piece.bytes(), stream, attrs, &stamp.rfc3339),
            Format::Local => {
                let bytes = piece.bytes();
                let line = bytes.strip_suffix(b"\n");
                // A message that ends no line and is no piece of a split one (output that ended
                // without a newline) is, as dockerd's copier stores it, the first piece of a line
                // that never ended: partial, ordinal 1, not last. Readers then print it without
                // the newline the container did not write.
                let partial = piece.partial().or_else(|| {
                    line.is_none().then(|| Partial {
                        id: ids.get_or_insert_with(PartialIds::new).next_id(),
                        ordinal: 1,
                        last: false,
                    })
                });
                let line = line.unwrap_or(bytes);
                if let Some(p) = &partial {
                    use std::fmt::Write;
                    stamp.id.clear();
                    let _ = write!(stamp.id, "{}", p.id);
                }
                let entry = EntryRef {
                    source: stream.as_str(),
                    time_nano: stamp.nanos,
                    line,
                    partial: partial.is_some(),
                    partial_meta: partial.map(|p| PartialMeta {
                        last: p.last,
                        id: &stamp.id,
                        ordinal: i32::try_from(p.ordinal).unwrap_or(i32::MAX),
                    }),
                };
                localfmt::encode_record(&entry, out);
            }
        }
    }

    /// The length of the whole entries at the start of `written` (the bytes a failed write
    /// got out) and how many there are. `lead_newline`: `written` starts with the newline that
    /// ends a torn json-file line, which is not an entry.
    pub(crate) fn whole_entries(self, written: &[u8], lead_newline: bool) -> (usize, usize) {
        match self {
            Format::Json => {
                // Every entry ends with the only raw newline it contains.
                let keep = written
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |p| p + 1);
                let newlines = written[..keep].iter().filter(|&&b| b == b'\n').count();
                let n = if lead_newline {
                    newlines.saturating_sub(1)
                } else {
                    newlines
                };
                (keep, n)
            }
            Format::Local => {
                let (mut at, mut n) = (0usize, 0usize);
                while let Some(size) = written
                    .get(at..at + SIZE_LEN)
                    .and_then(|b| <[u8; SIZE_LEN]>::try_from(b).ok())
                {
                    let end = at + 2 * SIZE_LEN + u32::from_be_bytes(size) as usize;
                    if end > written.len() {
                        break;
                    }
                    at = end;
                    n += 1;
                }
                (at, n)
            }
        }
    }

    /// Whether a torn json-file line is fixed by starting the next entry on a new line.
    pub(crate) fn line_based(self) -> bool {
        self == Format::Json
    }

    /// The gzip header's extra field of a rotated file, as dockerd writes it: the time of its
    /// last entry as JSON `{"lastTime":"<RFC 3339>"}`, which lets `docker logs --since` skip
    /// old files without decompressing them. `local` only (reading the last record back is
    /// cheap; json-file's would need a JSON parse). Moves `file`'s offset.
    pub(crate) fn gzip_extra(self, file: &File) -> Option<Vec<u8>> {
        match self {
            Format::Json => None,
            Format::Local => {
                let last = localfmt::BackwardReader::new(file)
                    .ok()
                    .and_then(|mut r| r.prev_entry().ok().flatten());
                last.map(|e| {
                    let t = if e.time_nano >= 0 {
                        SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(e.time_nano as u64)
                    } else {
                        SystemTime::UNIX_EPOCH
                    };
                    let mut out = b"{\"lastTime\":\"".to_vec();
                    crate::timefmt::write_rfc3339_nano(&mut out, t);
                    out.extend_from_slice(b"\"}");
                    out
                })
            }
        }
    }
}
