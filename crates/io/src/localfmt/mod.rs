//! Docker's `local` log format: one record per message, readable forwards and backwards.
//!
//! A file is a run of records `[size][LogEntry][size]`: `size` is the length of the protobuf
//! `LogEntry` as a big-endian `u32`, written before the entry (to read forwards) and again after
//! it (to read backwards from the end of a file, which is how `docker logs --tail` works). The
//! entry is the plugin protocol's `LogEntry` (moby `api/types/plugins/logdriver/entry.proto`):
//!
//! | field | number | type |
//! |---|---|---|
//! | `source` | 1 | string, `stdout` / `stderr` |
//! | `time_nano` | 2 | int64, Unix nanoseconds |
//! | `line` | 3 | bytes, without the trailing newline |
//! | `partial` | 4 | bool, set on every piece of a split line |
//! | `partial_log_metadata` | 5 | message: `last` = 1 bool, `id` = 2 string, `ordinal` = 3 int32 |
//!
//! The encoder writes what dockerd's (gogo protobuf, proto3) writes: fields in number order,
//! fields holding their default value left out, so Scribe's files are byte-identical to
//! dockerd's for the same messages. The decoder skips fields it does not know (newer dockerds
//! add `attrs` = 6), as protobuf readers must.
//!
//! Hand-written rather than generated: five fields, no dependency and no build step, and the
//! encoder writes straight into the caller's buffer (one allocation-free pass per message).

mod backward;
mod wire;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io::{self, Read};

pub use backward::BackwardReader;

/// Bytes of each of the two length fields around an entry.
pub const SIZE_LEN: usize = 4;

/// The largest entry a reader accepts. Entries hold at most one framed message (16 KiB by
/// default) plus a few dozen bytes of fields; a larger size field means the file is not in this
/// format (or is corrupt), and reading on would allocate whatever the garbage says.
pub const MAX_ENTRY_LEN: usize = 16 * 1024 * 1024;

/// Where a split line's piece sits (field 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartialMeta<'a> {
    /// The piece that ends the line.
    pub last: bool,
    /// Shared by all pieces of one line.
    pub id: &'a str,
    /// 1-based position of the piece.
    pub ordinal: i32,
}

/// One entry, borrowing its strings from the caller (encoding) or from the decoded buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EntryRef<'a> {
    /// `stdout` or `stderr`.
    pub source: &'a str,
    /// When the message was read, Unix nanoseconds.
    pub time_nano: i64,
    /// The message without its trailing newline.
    pub line: &'a [u8],
    /// Set on every piece of a split line.
    pub partial: bool,
    /// Where the piece sits, for split lines.
    pub partial_meta: Option<PartialMeta<'a>>,
}

/// An owned [`PartialMeta`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartialMetaBuf {
    /// See [`PartialMeta::last`].
    pub last: bool,
    /// See [`PartialMeta::id`].
    pub id: String,
    /// See [`PartialMeta::ordinal`].
    pub ordinal: i32,
}

/// An owned [`EntryRef`], for readers that keep entries past the buffer they were read into.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Entry {
    /// See [`EntryRef::source`].
    pub source: String,
    /// See [`EntryRef::time_nano`].
    pub time_nano: i64,
    /// See [`EntryRef::line`].
    pub line: Vec<u8>,
    /// See [`EntryRef::partial`].
    pub partial: bool,
    /// See [`EntryRef::partial_meta`].
    pub partial_meta: Option<PartialMetaBuf>,
}

impl EntryRef<'_> {
    /// Copies the entry out of its buffer.
    pub fn to_owned_entry(&self) -> Entry {
        Entry {
            source: self.source.to_owned(),
            time_nano: self.time_nano,
            line: self.line.to_vec(),
            partial: self.partial,
            partial_meta: self.partial_meta.map(|m| PartialMetaBuf {
                last: m.last,
                id: m.id.to_owned(),
                ordinal: m.ordinal,
            }),
        }
    }
}

impl Entry {
    /// Borrows the entry (to encode it).
    pub fn as_ref(&self) -> EntryRef<'_> {
        EntryRef {
            source: &self.source,
            time_nano: self.time_nano,
            line: &self.line,
            partial: self.partial,
            partial_meta: self.partial_meta.as_ref().map(|m| PartialMeta {
                last: m.last,
                id: &m.id,
                ordinal: m.ordinal,
            }),
        }
    }
}

/// Why bytes are not a record of this format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormatError {
    /// The buffer ends inside a record (a file being written, or cut short).
    Truncated {
        /// Bytes the record needs.
        needed: usize,
        /// Bytes there are.
        have: usize,
    },
    /// A size field larger than [`MAX_ENTRY_LEN`].
    TooLarge(u64),
    /// The size before an entry and the one after it differ.
    SizeMismatch {
        /// The size before the entry.
        leading: u32,
        /// The size after it.
        trailing: u32,
    },
    /// The protobuf entry is malformed (what and at which byte of the entry).
    Protobuf(&'static str, usize),
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::Truncated { needed, have } => {
                write!(f, "local log record truncated: needs {needed} bytes, {have} left")
            }
            FormatError::TooLarge(n) => write!(
                f,
                "local log record of {n} bytes is larger than the {MAX_ENTRY_LEN}-byte limit (not a local log file?)"
            ),
            FormatError::SizeMismatch { leading, trailing } => write!(
                f,
                "local log record sizes differ: {leading} before the entry, {trailing} after"
            ),
            FormatError::Protobuf(what, at) => {
                write!(f, "local log entry malformed at byte {at}: {what}")
            }
        }
    }
}

impl std::error::Error for FormatError {}

impl From<FormatError> for io::Error {
    fn from(e: FormatError) -> io::Error {
        let kind = match e {
            FormatError::Truncated { .. } => io::ErrorKind::UnexpectedEof,
            _ => io::ErrorKind::InvalidData,
        };
        io::Error::new(kind, e)
    }
}

/// Length of `entry` as protobuf (the value of the size fields).
pub fn entry_len(entry: &EntryRef<'_>) -> usize {
    wire::entry_len(entry)
}

/// Length of the whole record of `entry`: both size fields and the entry.
pub fn record_len(entry: &EntryRef<'_>) -> usize {
    entry_len(entry) + 2 * SIZE_LEN
}

/// Appends the record of `entry` (`[size][entry][size]`) to `out`. Entries are at most a
/// framed message plus their fields, far below `u32::MAX`; a larger one is a caller bug and
/// panics rather than write a size that lies.
pub fn encode_record(entry: &EntryRef<'_>, out: &mut Vec<u8>) {
    let len = entry_len(entry);
    let size = u32::try_from(len).unwrap_or_else(|_| panic!("local log entry of {len} bytes"));
    out.reserve(len + 2 * SIZE_LEN);
    out.extend_from_slice(&size.to_be_bytes());
    let start = out.len();
    wire::encode_entry(entry, out);
    debug_assert_eq!(out.len() - start, len);
    out.extend_from_slice(&size.to_be_bytes());
}

/// Appends the protobuf `LogEntry` of `entry` alone (no size fields) to `out`: the plugin
/// protocol's frames put only a leading size around it.
pub fn encode_entry(entry: &EntryRef<'_>, out: &mut Vec<u8>) {
    wire::encode_entry(entry, out);
}

/// Decodes one protobuf `LogEntry` (no size fields), borrowing from `buf`.
pub fn decode_entry(buf: &[u8]) -> Result<EntryRef<'_>, FormatError> {
    wire::decode_entry(buf)
}

/// Decodes the record at the start of `buf`; returns it and the bytes it took.
pub fn decode_record(buf: &[u8]) -> Result<(EntryRef<'_>, usize), FormatError> {
    let leading = read_size(buf, 0)?;
    let len = checked_len(leading)?;
    let total = len + 2 * SIZE_LEN;
    if buf.len() < total {
        return Err(FormatError::Truncated {
            needed: total,
            have: buf.len(),
        });
    }
    let trailing = read_size(buf, SIZE_LEN + len)?;
    if trailing != leading {
        return Err(FormatError::SizeMismatch { leading, trailing });
    }
    let entry = decode_entry(&buf[SIZE_LEN..SIZE_LEN + len])?;
    Ok((entry, total))
}

/// Decodes the record that ends where `buf` ends, using its trailing size; returns it and the
/// offset in `buf` where it starts.
pub fn decode_last_record(buf: &[u8]) -> Result<(EntryRef<'_>, usize), FormatError> {
    if buf.len() < SIZE_LEN {
        return Err(FormatError::Truncated {
            needed: SIZE_LEN,
            have: buf.len(),
        });
    }
    let trailing = read_size(buf, buf.len() - SIZE_LEN)?;
    let total = checked_len(trailing)? + 2 * SIZE_LEN;
    let start = buf.len().checked_sub(total).ok_or(FormatError::Truncated {
        needed: total,
        have: buf.len(),
    })?;
    let (entry, _) = decode_record(&buf[start..])?;
    Ok((entry, start))
}

/// Reads records from the start of a stream (a live file, or a rotated one through a gzip
/// decoder). Yields owned entries; a stream ending inside a record yields an `UnexpectedEof`
/// error (a file being written ends that way; callers following it retry later).
pub struct ForwardReader<R> {
    inner: R,
    buf: Vec<u8>,
}

impl<R: Read> ForwardReader<R> {
    /// Reads records from `inner`, which is at the start of a record.
    pub fn new(inner: R) -> Self {
        ForwardReader {
            inner,
            buf: Vec::new(),
        }
    }

    /// The next record, `None` at a clean end of the stream.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        let mut size = [0u8; SIZE_LEN];
        let got = read_full(&mut self.inner, &mut size)?;
        if got == 0 {
            return Ok(None);
        }
        if got < SIZE_LEN {
            return Err(FormatError::Truncated {
                needed: SIZE_LEN,
                have: got,
            }
            .into());
        }
        let leading = u32::from_be_bytes(size);
        let len = checked_len(leading)?;
        self.buf.resize(len + SIZE_LEN, 0);
        let got = read_full(&mut self.inner, &mut self.buf)?;
        if got < self.buf.len() {
            return Err(FormatError::Truncated {
                needed: len + 2 * SIZE_LEN,
                have: got + SIZE_LEN,
            }
            .into());
        }
        let trailing = u32::from_be_bytes(
            self.buf[len..]
                .try_into()
                .map_err(|_| FormatError::Protobuf("size field", len))?,
        );
        if trailing != leading {
            return Err(FormatError::SizeMismatch { leading, trailing }.into());
        }
        Ok(Some(decode_entry(&self.buf[..len])?.to_owned_entry()))
    }

    /// The stream.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Iterator for ForwardReader<R> {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_entry().transpose()
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

fn read_size(buf: &[u8], at: usize) -> Result<u32, FormatError> {
    buf.get(at..at + SIZE_LEN)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(FormatError::Truncated {
            needed: at + SIZE_LEN,
            have: buf.len(),
        })
}

fn checked_len(size: u32) -> Result<usize, FormatError> {
    let len = size as usize;
    if len > MAX_ENTRY_LEN {
        return Err(FormatError::TooLarge(u64::from(size)));
    }
    Ok(len)
}
