//! `fluentd-request-ack`: chunk ids and fluentd's `{"ack": <chunk>}` answers.
//!
//! A chunk id is the base64 of 16 random bytes (the spec asks for a unique 128-bit id); the
//! same id goes with every resend of a batch, so a server that got it twice can tell.

use std::io;

/// A new chunk id: base64 (standard alphabet, padded) of 16 random bytes.
pub fn new_chunk_id() -> String {
    let mut raw = [0u8; 16];
    // SAFETY: `raw` is valid for writes of its length.
    let n = unsafe { libc::getrandom(raw.as_mut_ptr().cast(), raw.len(), 0) };
    if n != raw.len() as isize {
        // No entropy: time and a counter still make the id unique within the shim.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let c = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        raw[..8].copy_from_slice(&now.to_le_bytes());
        raw[8..].copy_from_slice(&c.to_le_bytes());
    }
    base64(&raw)
}

fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let b = [c[0], *c.get(1).unwrap_or(&0), *c.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Reads one answer from the front of `buf`: `Ok(Some((chunk, used)))` once a whole value is
/// there, `Ok(None)` while it is incomplete, an error when it is not `{"ack": <str>}`.
pub fn parse_ack(buf: &[u8]) -> io::Result<Option<(String, usize)>> {
    let mut rest = buf;
    let value = match rmpv::decode::read_value(&mut rest) {
        Ok(v) => v,
        Err(e) if is_eof(&e) => return Ok(None),
        Err(e) => return Err(bad(format!("undecodable answer: {e}"))),
    };
    let used = buf.len() - rest.len();
    let chunk = value
        .as_map()
        .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("ack")))
        .and_then(|(_, v)| v.as_str())
        .ok_or_else(|| bad(format!("answer {value} is not {{\"ack\": <chunk>}}")))?;
    Ok(Some((chunk.to_owned(), used)))
}

fn is_eof(e: &rmpv::decode::Error) -> bool {
    match e {
        rmpv::decode::Error::InvalidMarkerRead(io) | rmpv::decode::Error::InvalidDataRead(io) => {
            io.kind() == io::ErrorKind::UnexpectedEof
        }
        _ => false,
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_known() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        let id = new_chunk_id();
        assert_eq!(id.len(), 24);
        assert_ne!(id, new_chunk_id());
    }

    #[test]
    fn acks() {
        let mut buf = Vec::new();
        rmp::encode::write_map_len(&mut buf, 1).unwrap();
        rmp::encode::write_str(&mut buf, "ack").unwrap();
        rmp::encode::write_str(&mut buf, "abc").unwrap();
        for cut in 0..buf.len() {
            assert_eq!(parse_ack(&buf[..cut]).unwrap(), None, "{cut}");
        }
        buf.push(0x90);
        assert_eq!(
            parse_ack(&buf).unwrap(),
            Some(("abc".to_string(), buf.len() - 1))
        );
        assert!(parse_ack(&[0x90]).is_err());
    }
}
