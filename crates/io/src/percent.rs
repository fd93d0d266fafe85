//! Percent-decoding for stdio URIs.
//!
//! A dozen lines here instead of the `url` crate: `url` brings IDNA and its
//! Unicode tables (hundreds of KiB) into a binary that only ever needs to undo
//! `%XX` in a path and a query string. The rules follow Go's `net/url`, which is
//! what containerd uses to read these URIs.

use std::fmt;

/// A `%` that is not followed by two hex digits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadEscape {
    /// Byte offset of the offending `%` in the input.
    pub at: usize,
}

impl fmt::Display for BadEscape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid percent-escape at byte {}", self.at)
    }
}

/// Decodes `%XX` escapes; with `plus_is_space` (query strings, like Go's
/// `url.QueryUnescape`) a `+` becomes a space, otherwise it stays a `+` (paths).
pub(crate) fn decode(input: &str, plus_is_space: bool) -> Result<Vec<u8>, BadEscape> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = bytes.get(i + 1).and_then(|b| hex(*b));
                let lo = bytes.get(i + 2).and_then(|b| hex(*b));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(BadEscape { at: i }),
                }
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes() {
        assert_eq!(decode("a%20b%2Fc%2f", false).unwrap(), b"a b/c/");
        assert_eq!(decode("%e4%B8%AD", false).unwrap(), "中".as_bytes());
        assert_eq!(decode("", false).unwrap(), b"");
    }

    #[test]
    fn plus_only_in_queries() {
        assert_eq!(decode("a+b", false).unwrap(), b"a+b");
        assert_eq!(decode("a+b", true).unwrap(), b"a b");
        assert_eq!(decode("a%2Bb", true).unwrap(), b"a+b");
    }

    #[test]
    fn rejects_bad_escapes() {
        assert_eq!(decode("abc%", false), Err(BadEscape { at: 3 }));
        assert_eq!(decode("%4", false), Err(BadEscape { at: 0 }));
        assert_eq!(decode("x%zz", true), Err(BadEscape { at: 1 }));
    }
}
