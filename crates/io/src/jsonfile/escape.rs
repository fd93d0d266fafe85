//! JSON string escaping byte-for-byte compatible with Docker's json-file.
//!
//! Docker encodes the `log` field with `ffjsonWriteJSONBytesAsString`
//! (`daemon/logger/jsonfilelog/jsonlog/jsonlogbytes.go`): `\"`, `\\`, `\n`,
//! `\r` as short escapes; other control bytes and the HTML-sensitive `<`, `>`,
//! `&` as `\u00XX` (lower-case hex); U+2028/U+2029 as `\u2028`/`\u2029`; and
//! every byte that is not part of valid UTF-8 as `\ufffd`. Matching it keeps
//! files produced by Scribe identical to Docker's for the same output, so
//! `docker logs`-style readers and log shippers treat them the same.
//!
//! Invalid UTF-8: one U+FFFD per invalid byte (Go's `utf8.DecodeRune` consumes
//! one byte per error). The line itself is always written; only the
//! undecodable bytes are replaced, because a JSON string cannot hold raw bytes.

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` to `out` as a quoted JSON string, escaped the way Docker does.
pub(crate) fn write_json_string(out: &mut Vec<u8>, s: &[u8]) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    for chunk in s.utf8_chunks() {
        write_valid(out, chunk.valid());
        for _ in chunk.invalid() {
            out.extend_from_slice(b"\\ufffd");
        }
    }
    out.push(b'"');
}

fn write_valid(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            0x00..=0x1f | b'<' | b'>' | b'&' => None,
            // U+2028 / U+2029 are E2 80 A8 / E2 80 A9.
            0xe2 if bytes.get(i + 1) == Some(&0x80)
                && matches!(bytes.get(i + 2), Some(0xa8 | 0xa9)) =>
            {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u202");
                out.push(HEX[usize::from(bytes[i + 2] & 0x0f)]);
                i += 3;
                start = i;
                continue;
            }
            _ => {
                i += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[start..i]);
        match escape {
            Some(e) => out.extend_from_slice(e),
            None => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
        }
        i += 1;
        start = i;
    }
    out.extend_from_slice(&bytes[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &[u8]) -> String {
        let mut out = Vec::new();
        write_json_string(&mut out, s);
        String::from_utf8(out).expect("escaper output is UTF-8")
    }

    #[test]
    fn docker_escapes() {
        assert_eq!(esc(b"hello\n"), r#""hello\n""#);
        assert_eq!(esc(b"a\"b\\c\r\n"), r#""a\"b\\c\r\n""#);
        assert_eq!(
            esc(b"\t\x00\x1f\x08\x0c"),
            r#""\u0009\u0000\u001f\u0008\u000c""#
        );
        assert_eq!(esc(b"<a href=x&y>"), r#""\u003ca href=x\u0026y\u003e""#);
        assert_eq!(esc("x\u{2028}y\u{2029}".as_bytes()), r#""x\u2028y\u2029""#);
        assert_eq!(esc("中文 ✓ 😀".as_bytes()), "\"中文 ✓ 😀\"");
        assert_eq!(esc(b"\x7f"), "\"\x7f\"");
    }

    #[test]
    fn invalid_utf8_becomes_one_replacement_per_byte() {
        assert_eq!(esc(b"a\xffb"), r#""a\ufffdb""#);
        // Truncated 3-byte sequence: two bytes, two replacements, like Go.
        assert_eq!(esc(b"a\xe2\x82b"), r#""a\ufffd\ufffdb""#);
        // Surrogate encoding is invalid UTF-8 too.
        assert_eq!(esc(b"\xed\xa0\x80"), r#""\ufffd\ufffd\ufffd""#);
    }

    #[test]
    fn output_is_valid_json() {
        let input = b"x\x01\"\\<>&\xff\xe2\x80\xa8\n";
        let s = esc(input);
        let v: String = serde_json::from_str(&s).expect("valid JSON");
        assert_eq!(v, "x\u{1}\"\\<>&\u{fffd}\u{2028}\n");
    }
}
