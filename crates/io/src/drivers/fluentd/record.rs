//! Docker's fluentd records and the forward protocol's PackedForward frame, in msgpack.
//!
//! A record is what dockerd's fluentd driver sends for one message: a map of `container_id`
//! (the full id), `container_name` (with Docker's leading `/`), `source` (`stdout`/`stderr`),
//! `log` (the line without its newline, as a msgpack str holding the raw bytes, which is what
//! Go's `string([]byte)` gives) and, for the pieces of a line longer than 16 KiB (and for output
//! that ended without a newline: a first piece, as dockerd 20.10's copier sends it),
//! `partial_message` (`"true"`), `partial_id`, `partial_ordinal` and `partial_last` as strings.
//! Its time is integer seconds, or with `fluentd-sub-second-precision` an EventTime (msgpack ext
//! type 0, 8 bytes: big-endian seconds and nanoseconds).
//!
//! Entries (`[time, record]`) are encoded when they are queued, so a batch is sent as one
//! PackedForward frame: `[tag, bin(entries...), {"size": n[, "chunk": id]}]`.

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use rmp::encode;

use crate::drivers::Partial;
use crate::stream::Stream;

/// The per-container fields of every record, with the record's constant start pre-encoded per
/// stream (the map header and the `container_id`, `container_name` and `source` pairs), so a
/// record costs a copy of that prefix, its time and its line.
#[derive(Debug, Clone)]
pub struct RecordFields {
    /// Full container id.
    pub container_id: String,
    /// Container name with Docker's leading `/`.
    pub container_name: String,
    /// `[stdout, stderr]` prefixes of a whole line's record (map of 4).
    prefix: [Vec<u8>; 2],
}

impl RecordFields {
    /// The fields of one container.
    pub fn new(container_id: String, container_name: String) -> io::Result<RecordFields> {
        let mut prefix = [Vec::new(), Vec::new()];
        for (p, source) in prefix.iter_mut().zip(["stdout", "stderr"]) {
            encode::write_map_len(p, 4)?;
            pair(p, "container_id", &container_id)?;
            pair(p, "container_name", &container_name)?;
            pair(p, "source", source)?;
        }
        Ok(RecordFields {
            container_id,
            container_name,
            prefix,
        })
    }
}

fn source_of(stream: Stream) -> (usize, &'static str) {
    match stream {
        Stream::Stdout => (0, "stdout"),
        Stream::Stderr => (1, "stderr"),
    }
}

/// A record time, encoded once for all the messages of a read.
#[derive(Debug, Clone, Copy)]
pub struct EncodedTime {
    bytes: [u8; 10],
    len: usize,
}

impl EncodedTime {
    /// Integer seconds, or an EventTime when `sub_second`.
    pub fn new(time: SystemTime, sub_second: bool) -> io::Result<EncodedTime> {
        let mut v = Vec::with_capacity(10);
        encode_time(&mut v, time, sub_second)?;
        let mut bytes = [0u8; 10];
        bytes[..v.len()].copy_from_slice(&v);
        Ok(EncodedTime {
            bytes,
            len: v.len(),
        })
    }
}

/// Appends one `[time, record]` entry for `line` (its trailing `\n` is not sent).
pub fn encode_entry(
    buf: &mut Vec<u8>,
    fields: &RecordFields,
    time: &EncodedTime,
    stream: Stream,
    line: &[u8],
    partial: Option<Partial>,
) -> io::Result<()> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    encode::write_array_len(buf, 2)?;
    buf.extend_from_slice(&time.bytes[..time.len]);
    let (i, source) = source_of(stream);
    match partial {
        None => buf.extend_from_slice(&fields.prefix[i]),
        Some(_) => {
            encode::write_map_len(buf, 8)?;
            pair(buf, "container_id", &fields.container_id)?;
            pair(buf, "container_name", &fields.container_name)?;
            pair(buf, "source", source)?;
        }
    }
    encode::write_str(buf, "log")?;
    encode::write_str_len(buf, len32(line.len())?)?;
    buf.extend_from_slice(line);
    if let Some(p) = partial {
        pair(buf, "partial_message", "true")?;
        pair(buf, "partial_id", &p.id.to_string())?;
        pair(buf, "partial_ordinal", &p.ordinal.to_string())?;
        pair(buf, "partial_last", if p.last { "true" } else { "false" })?;
    }
    Ok(())
}

/// Integer seconds, or an EventTime when `sub_second`.
fn encode_time(buf: &mut Vec<u8>, time: SystemTime, sub_second: bool) -> io::Result<()> {
    let d = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    if sub_second {
        encode::write_ext_meta(buf, 8, 0)?;
        // EventTime holds 32-bit seconds (good until 2106).
        buf.extend_from_slice(&(d.as_secs() as u32).to_be_bytes());
        buf.extend_from_slice(&d.subsec_nanos().to_be_bytes());
    } else {
        encode::write_uint(buf, d.as_secs())?;
    }
    Ok(())
}

fn pair(buf: &mut Vec<u8>, k: &str, v: &str) -> io::Result<()> {
    encode::write_str(buf, k)?;
    encode::write_str(buf, v)?;
    Ok(())
}

fn len32(n: usize) -> io::Result<u32> {
    u32::try_from(n).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "entry over 4 GiB"))
}

/// One PackedForward frame: `[tag, bin(entries), {"size": count[, "chunk": chunk]}]`.
pub fn encode_frame(
    tag: &str,
    entries: &[u8],
    count: u64,
    chunk: Option<&str>,
) -> io::Result<Vec<u8>> {
    let mut f = Vec::with_capacity(entries.len() + tag.len() + 64);
    encode::write_array_len(&mut f, 3)?;
    encode::write_str(&mut f, tag)?;
    encode::write_bin_len(&mut f, len32(entries.len())?)?;
    f.extend_from_slice(entries);
    encode::write_map_len(&mut f, if chunk.is_some() { 2 } else { 1 })?;
    encode::write_str(&mut f, "size")?;
    encode::write_uint(&mut f, count)?;
    if let Some(c) = chunk {
        pair(&mut f, "chunk", c)?;
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drivers::PartialIds;
    use rmpv::Value;
    use std::time::Duration;

    fn decode(mut b: &[u8]) -> Value {
        let v = rmpv::decode::read_value(&mut b).unwrap();
        assert!(b.is_empty(), "trailing bytes");
        v
    }

    fn get<'a>(m: &'a Value, k: &str) -> Option<&'a Value> {
        m.as_map()?
            .iter()
            .find(|(kk, _)| kk.as_str() == Some(k))
            .map(|(_, v)| v)
    }

    #[test]
    fn docker_record_and_frame() {
        let f = RecordFields::new("0123456789abcdef".into(), "/web".into()).unwrap();
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let mut buf = Vec::new();
        let et = EncodedTime::new(t, true).unwrap();
        encode_entry(&mut buf, &f, &et, Stream::Stderr, b"hi\n", None).unwrap();
        let id = PartialIds::new().next_id();
        let p = Partial {
            id,
            ordinal: 2,
            last: true,
        };
        let secs = EncodedTime::new(t, false).unwrap();
        encode_entry(&mut buf, &f, &secs, Stream::Stdout, b"tail", Some(p)).unwrap();
        let frame = encode_frame("0123456789ab", &buf, 2, Some("Y2h1bms=")).unwrap();
        let v = decode(&frame);
        let a = v.as_array().unwrap();
        assert_eq!(a[0].as_str(), Some("0123456789ab"));
        assert_eq!(get(&a[2], "size").and_then(Value::as_u64), Some(2));
        assert_eq!(
            get(&a[2], "chunk").and_then(Value::as_str),
            Some("Y2h1bms=")
        );
        let mut entries = a[1].as_slice().unwrap();
        let e1 = rmpv::decode::read_value(&mut entries).unwrap();
        let e2 = rmpv::decode::read_value(&mut entries).unwrap();
        assert!(entries.is_empty());
        let Value::Ext(0, ref et) = e1[0] else {
            panic!("{e1}")
        };
        assert_eq!(et[..4], 1_700_000_000u32.to_be_bytes());
        assert_eq!(et[4..], 123_456_789u32.to_be_bytes());
        assert_eq!(get(&e1[1], "log").and_then(Value::as_str), Some("hi"));
        assert_eq!(
            get(&e1[1], "source").and_then(Value::as_str),
            Some("stderr")
        );
        assert_eq!(
            get(&e1[1], "container_name").and_then(Value::as_str),
            Some("/web")
        );
        assert_eq!(e2[0].as_u64(), Some(1_700_000_000));
        let r = &e2[1];
        assert_eq!(get(r, "log").and_then(Value::as_str), Some("tail"));
        assert_eq!(
            get(r, "partial_message").and_then(Value::as_str),
            Some("true")
        );
        assert_eq!(get(r, "partial_ordinal").and_then(Value::as_str), Some("2"));
        assert_eq!(get(r, "partial_last").and_then(Value::as_str), Some("true"));
        assert_eq!(
            get(r, "partial_id").and_then(Value::as_str),
            Some(id.to_string().as_str())
        );
    }
}
