//! The protobuf wire encoding of `LogEntry` and `PartialLogEntryMetadata`, by hand.
//!
//! Only what the two messages need: varints (wire type 0) and length-delimited fields (wire
//! type 2). Decoding also steps over fixed-width fields (types 1 and 5) of unknown numbers.

use super::{EntryRef, FormatError, PartialMeta};

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

const fn key(field: u8, wire: u8) -> u8 {
    (field << 3) | wire
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes of a length-delimited field of `len` bytes (one-byte key).
fn delimited_len(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn meta_len(m: &PartialMeta<'_>) -> usize {
    let mut n = 0;
    if m.last {
        n += 2;
    }
    if !m.id.is_empty() {
        n += delimited_len(m.id.len());
    }
    if m.ordinal != 0 {
        // int32 is sign-extended to 64 bits on the wire (a negative one takes 10 bytes).
        n += 1 + varint_len(i64::from(m.ordinal) as u64);
    }
    n
}

pub(super) fn entry_len(e: &EntryRef<'_>) -> usize {
    let mut n = 0;
    if !e.source.is_empty() {
        n += delimited_len(e.source.len());
    }
    if e.time_nano != 0 {
        n += 1 + varint_len(e.time_nano as u64);
    }
    if !e.line.is_empty() {
        n += delimited_len(e.line.len());
    }
    if e.partial {
        n += 2;
    }
    if let Some(m) = &e.partial_meta {
        n += delimited_len(meta_len(m));
    }
    n
}

fn put_delimited(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(key(field, LEN));
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

pub(super) fn encode_entry(e: &EntryRef<'_>, out: &mut Vec<u8>) {
    if !e.source.is_empty() {
        put_delimited(out, 1, e.source.as_bytes());
    }
    if e.time_nano != 0 {
        out.push(key(2, VARINT));
        put_varint(out, e.time_nano as u64);
    }
    if !e.line.is_empty() {
        put_delimited(out, 3, e.line);
    }
    if e.partial {
        out.extend_from_slice(&[key(4, VARINT), 1]);
    }
    if let Some(m) = &e.partial_meta {
        out.push(key(5, LEN));
        put_varint(out, meta_len(m) as u64);
        if m.last {
            out.extend_from_slice(&[key(1, VARINT), 1]);
        }
        if !m.id.is_empty() {
            put_delimited(out, 2, m.id.as_bytes());
        }
        if m.ordinal != 0 {
            out.push(key(3, VARINT));
            put_varint(out, i64::from(m.ordinal) as u64);
        }
    }
}

/// A cursor over one message's bytes.
struct Fields<'a> {
    buf: &'a [u8],
    at: usize,
    /// Where `buf` starts in the entry (for error offsets of nested messages).
    base: usize,
}

enum Value<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

impl<'a> Fields<'a> {
    fn err(&self, what: &'static str) -> FormatError {
        FormatError::Protobuf(what, self.base + self.at)
    }

    fn varint(&mut self) -> Result<u64, FormatError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let b = *self
                .buf
                .get(self.at)
                .ok_or_else(|| self.err("varint runs past the end"))?;
            self.at += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("field runs past the end"))?;
        let s = &self.buf[self.at..end];
        self.at = end;
        Ok(s)
    }

    /// The next field's number and value; `None` at the end.
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>, usize)>, FormatError> {
        if self.at >= self.buf.len() {
            return Ok(None);
        }
        let start = self.at;
        let k = self.varint()?;
        let value = match (k & 7) as u8 {
            VARINT => Value::Varint(self.varint()?),
            LEN => {
                let n =
                    usize::try_from(self.varint()?).map_err(|_| self.err("length does not fit"))?;
                Value::Bytes(self.take(n)?)
            }
            FIXED64 => {
                self.take(8)?;
                Value::Fixed
            }
            FIXED32 => {
                self.take(4)?;
                Value::Fixed
            }
            _ => {
                return Err(FormatError::Protobuf(
                    "unsupported wire type",
                    self.base + start,
                ))
            }
        };
        if k >> 3 == 0 {
            return Err(FormatError::Protobuf("field number 0", self.base + start));
        }
        Ok(Some((k >> 3, value, self.base + start)))
    }
}

fn utf8(b: &[u8], at: usize) -> Result<&str, FormatError> {
    std::str::from_utf8(b).map_err(|_| FormatError::Protobuf("string is not UTF-8", at))
}

fn decode_meta(buf: &[u8], base: usize) -> Result<PartialMeta<'_>, FormatError> {
    let mut f = Fields { buf, at: 0, base };
    let mut m = PartialMeta::default();
    while let Some((num, value, at)) = f.next_field()? {
        match (num, value) {
            (1, Value::Varint(v)) => m.last = v != 0,
            (2, Value::Bytes(b)) => m.id = utf8(b, at)?,
            (3, Value::Varint(v)) => m.ordinal = v as i64 as i32,
            (1..=3, _) => return Err(FormatError::Protobuf("wrong wire type", at)),
            _ => {}
        }
    }
    Ok(m)
}

pub(super) fn decode_entry(buf: &[u8]) -> Result<EntryRef<'_>, FormatError> {
    let mut f = Fields {
        buf,
        at: 0,
        base: 0,
    };
    let mut e = EntryRef::default();
    while let Some((num, value, at)) = f.next_field()? {
        match (num, value) {
            (1, Value::Bytes(b)) => e.source = utf8(b, at)?,
            (2, Value::Varint(v)) => e.time_nano = v as i64,
            (3, Value::Bytes(b)) => e.line = b,
            (4, Value::Varint(v)) => e.partial = v != 0,
            (5, Value::Bytes(b)) => {
                let base = f.at - b.len();
                e.partial_meta = Some(decode_meta(b, base)?);
            }
            (1..=5, _) => return Err(FormatError::Protobuf("wrong wire type", at)),
            _ => {}
        }
    }
    Ok(e)
}
