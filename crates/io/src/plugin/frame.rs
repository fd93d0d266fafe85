//! The FIFO stream between a host and a logging plugin: `[u32 BE size][LogEntry]` frames, with
//! no trailing size (unlike the `local` file format, which adds one to read backwards). The
//! same framing carries a `ReadLogs` response body.

use crate::localfmt::{self, EntryRef, FormatError, SIZE_LEN};

/// The largest frame a reader accepts: real plugins refuse more than 1e6 (Loki) or 2e6
/// (Elastic) bytes; an entry holds one framed message (16 KiB by default) plus its fields.
pub const MAX_FRAME_LEN: usize = 2_000_000;

/// Appends the frame of `entry` to `out`. Entries are far below `u32::MAX` (one framed
/// message); a larger one is a caller bug and panics rather than write a size that lies.
pub fn encode_frame(entry: &EntryRef<'_>, out: &mut Vec<u8>) {
    let len = localfmt::entry_len(entry);
    let size = u32::try_from(len).unwrap_or_else(|_| panic!("log entry of {len} bytes"));
    out.reserve(len + SIZE_LEN);
    out.extend_from_slice(&size.to_be_bytes());
    let start = out.len();
    localfmt::encode_entry(entry, out);
    debug_assert_eq!(out.len() - start, len);
}

/// Length of the frame of `entry` (size field and entry).
pub fn frame_len(entry: &EntryRef<'_>) -> usize {
    localfmt::entry_len(entry) + SIZE_LEN
}

/// Decodes the frame at the start of `buf`: `Ok(None)` when `buf` does not yet hold a whole
/// frame (read more), else the entry and the bytes it took. A size over [`MAX_FRAME_LEN`] is
/// an error (the stream is not in this format, or is out of step).
pub fn decode_frame(buf: &[u8]) -> Result<Option<(EntryRef<'_>, usize)>, FormatError> {
    if buf.len() < SIZE_LEN {
        return Ok(None);
    }
    let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if size > MAX_FRAME_LEN {
        return Err(FormatError::TooLarge(size as u64));
    }
    let total = SIZE_LEN + size;
    if buf.len() < total {
        return Ok(None);
    }
    let entry = localfmt::decode_entry(&buf[SIZE_LEN..total])?;
    Ok(Some((entry, total)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localfmt::PartialMeta;

    #[test]
    fn round_trip_and_short_input() {
        let e = EntryRef {
            source: "stderr",
            time_nano: 1_700_000_000_123_456_789,
            line: b"hello",
            partial: true,
            partial_meta: Some(PartialMeta {
                last: false,
                id: "abc",
                ordinal: 2,
            }),
        };
        let mut buf = Vec::new();
        encode_frame(&e, &mut buf);
        encode_frame(&e, &mut buf);
        assert_eq!(buf.len(), 2 * frame_len(&e));
        let (d, used) = decode_frame(&buf).unwrap().unwrap();
        assert_eq!(d, e);
        assert_eq!(used, frame_len(&e));
        assert!(decode_frame(&buf[..used - 1]).unwrap().is_none());
        assert!(decode_frame(&buf[..2]).unwrap().is_none());
        let huge = [0xff, 0xff, 0xff, 0xff, 0];
        assert!(decode_frame(&huge).is_err());
    }
}
