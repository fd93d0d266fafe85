//! Line framing of a container output stream, the way Docker's log copier does it.
//!
//! Log sinks that store one record per line (json-file, log-driver plugins) need
//! the byte stream cut into lines, with a cap on line length so one endless line
//! cannot grow memory without bound. Docker's copier
//! (`daemon/logger/copier.go`) cuts at `\n` and, when 16 KiB accumulate with no
//! newline, emits those bytes as a *partial* message; the piece that finally
//! carries the newline is the last partial. [`LineFramer`] reproduces that, with
//! one deliberate difference: a cut never falls inside a UTF-8 sequence if it
//! can be avoided. Docker cuts on bytes, and its JSON encoder then turns both
//! halves of the split character into U+FFFD, losing it; Scribe moves the cut
//! back (by at most 3 bytes) to the start of an incomplete trailing sequence,
//! so pieces may be up to 3 bytes shorter than `max_line`. Pure ASCII or binary
//! data is cut at exactly `max_line` bytes, as in Docker.
//!
//! Bytes are never altered: `\r` stays, empty lines are messages of their own,
//! and concatenating every message gives back the input exactly.

/// Docker's default maximum line length before a line is split (16 KiB).
pub const DEFAULT_MAX_LINE: usize = 16 * 1024;

/// Smallest accepted `max_line`: the UTF-8 back-off needs room for a 4-byte
/// character so every cut makes progress.
const MIN_MAX_LINE: usize = 4;

/// Above this, an idle framer gives its buffer back to the allocator, so a
/// burst of long lines does not pin 16 KiB per stream forever.
const KEEP_CAPACITY: usize = 4 * 1024;

/// Where a piece sits within a line that was split for being too long;
/// mirrors Docker's `PartialLogMetaData` (minus the ID, which the consumer assigns).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartialInfo {
    /// 1-based position of this piece within its line.
    pub ordinal: u32,
    /// True for the piece that ends the line (it ends in `\n`, or is the tail
    /// flushed by [`LineFramer::finish`]).
    pub last: bool,
}

/// One framed message; borrowed from the input chunk or the framer's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Message<'a> {
    /// The bytes, including the trailing `\n` when the message ends a line.
    pub bytes: &'a [u8],
    /// `Some` when the line was longer than `max_line` and this is one piece of it.
    pub partial: Option<PartialInfo>,
}

impl Message<'_> {
    /// True for any piece of a split line (Docker sets `PLogMetaData` on all of them).
    pub fn is_partial(&self) -> bool {
        self.partial.is_some()
    }
}

/// Cuts a byte stream into lines of at most `max_line` bytes (plus the `\n`).
///
/// Feed chunks with [`push`](LineFramer::push) as they are read; call
/// [`finish`](LineFramer::finish) at EOF. Memory: at most `max_line` bytes are
/// buffered, and only while a line is incomplete; complete lines inside a
/// chunk are handed out without copying.
#[derive(Debug)]
pub struct LineFramer {
    max_line: usize,
    pending: Vec<u8>,
    /// Pieces already emitted for the current line (0 = the line is not split).
    ordinal: u32,
}

impl Default for LineFramer {
    fn default() -> Self {
        LineFramer::new(DEFAULT_MAX_LINE)
    }
}

impl LineFramer {
    /// A framer that splits lines longer than `max_line` bytes (raised to 4 if smaller).
    pub fn new(max_line: usize) -> Self {
        LineFramer {
            max_line: max_line.max(MIN_MAX_LINE),
            pending: Vec::new(),
            ordinal: 0,
        }
    }

    /// The effective maximum piece length.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Bytes of an incomplete line held back, waiting for more input.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Frames `chunk`, calling `emit` for every message it completes, in order.
    pub fn push(&mut self, chunk: &[u8], mut emit: impl FnMut(Message<'_>)) {
        let mut rest = chunk;
        while !rest.is_empty() {
            // Invariant: pending.len() < max_line, so room >= 1.
            let room = self.max_line - self.pending.len();
            let window = &rest[..rest.len().min(room)];
            if let Some(nl) = memchr::memchr(b'\n', window) {
                let (line, after) = rest.split_at(nl + 1);
                let partial = self.end_of_line();
                if self.pending.is_empty() {
                    emit(Message {
                        bytes: line,
                        partial,
                    });
                } else {
                    self.pending.extend_from_slice(line);
                    emit(Message {
                        bytes: &self.pending,
                        partial,
                    });
                    self.pending.clear();
                }
                rest = after;
            } else if window.len() == room {
                // max_line bytes without a newline: emit a partial piece.
                let (full, after) = rest.split_at(room);
                self.ordinal = self.ordinal.saturating_add(1);
                let partial = Some(PartialInfo {
                    ordinal: self.ordinal,
                    last: false,
                });
                if self.pending.is_empty() {
                    let cut = utf8_cut(full);
                    emit(Message {
                        bytes: &full[..cut],
                        partial,
                    });
                    self.pending.extend_from_slice(&full[cut..]);
                } else {
                    self.pending.extend_from_slice(full);
                    let cut = utf8_cut(&self.pending);
                    emit(Message {
                        bytes: &self.pending[..cut],
                        partial,
                    });
                    self.pending.drain(..cut);
                }
                rest = after;
            } else {
                self.pending.extend_from_slice(rest);
                rest = &[];
            }
        }
        self.release_idle_buffer();
    }

    /// Flushes an unterminated last line at EOF (bytes as they are, no `\n`
    /// added). It carries no partial info unless the line was already split, in
    /// which case it is the last piece. The framer is reset and can be reused.
    pub fn finish(&mut self, mut emit: impl FnMut(Message<'_>)) {
        if !self.pending.is_empty() {
            let partial = self.end_of_line();
            emit(Message {
                bytes: &self.pending,
                partial,
            });
            self.pending.clear();
        }
        self.ordinal = 0;
        self.release_idle_buffer();
    }

    /// Partial info for the piece that ends the current line; resets the count.
    fn end_of_line(&mut self) -> Option<PartialInfo> {
        if self.ordinal == 0 {
            return None;
        }
        let info = PartialInfo {
            ordinal: self.ordinal.saturating_add(1),
            last: true,
        };
        self.ordinal = 0;
        Some(info)
    }

    fn release_idle_buffer(&mut self) {
        if self.pending.capacity() > KEEP_CAPACITY && self.pending.len() < 16 {
            self.pending.shrink_to(16);
        }
    }
}

/// Where to cut a full piece: before an incomplete UTF-8 sequence at its end,
/// if there is one and cutting there leaves a non-empty piece; else at the end.
fn utf8_cut(piece: &[u8]) -> usize {
    let len = piece.len();
    // Look back at most 3 bytes for the lead byte of the last sequence.
    for back in 1..=3.min(len) {
        let b = piece[len - back];
        if b & 0xC0 == 0x80 {
            continue; // continuation byte: keep looking for the lead
        }
        let need = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => return len, // ASCII or not a valid lead: nothing to protect
        };
        if need > back && len - back > 0 {
            return len - back;
        }
        return len;
    }
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (bytes, partial) of every message, feeding `input` cut at `splits`.
    fn frame(max: usize, input: &[u8], splits: &[usize]) -> Vec<(Vec<u8>, Option<PartialInfo>)> {
        let mut f = LineFramer::new(max);
        let mut out = Vec::new();
        let mut start = 0;
        for &s in splits.iter().chain(std::iter::once(&input.len())) {
            f.push(&input[start..s], |m| {
                out.push((m.bytes.to_vec(), m.partial))
            });
            start = s;
        }
        f.finish(|m| out.push((m.bytes.to_vec(), m.partial)));
        out
    }

    fn concat(msgs: &[(Vec<u8>, Option<PartialInfo>)]) -> Vec<u8> {
        msgs.iter().flat_map(|(b, _)| b.clone()).collect()
    }

    #[test]
    fn simple_lines_empty_lines_and_crlf() {
        let out = frame(16, b"a\n\nb\r\n", &[]);
        let bytes: Vec<_> = out.iter().map(|(b, p)| (b.as_slice(), *p)).collect();
        assert_eq!(
            bytes,
            vec![
                (&b"a\n"[..], None),
                (&b"\n"[..], None),
                (&b"b\r\n"[..], None)
            ]
        );
    }

    #[test]
    fn hundred_kib_line_gives_seven_pieces() {
        let mut input: Vec<u8> = (0..100 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        input.push(b'\n');
        let out = frame(DEFAULT_MAX_LINE, &input, &[]);
        assert_eq!(out.len(), 7);
        for (i, (bytes, partial)) in out.iter().enumerate() {
            let p = partial.expect("every piece is partial");
            assert_eq!(p.ordinal as usize, i + 1);
            if i < 6 {
                assert_eq!(bytes.len(), DEFAULT_MAX_LINE);
                assert!(!bytes.contains(&b'\n'));
                assert!(!p.last);
            } else {
                assert_eq!(bytes.len(), 4 * 1024 + 1);
                assert_eq!(bytes.last(), Some(&b'\n'));
                assert!(p.last);
            }
        }
        assert_eq!(concat(&out), input);
    }

    #[test]
    fn exactly_max_then_newline_is_split_like_docker() {
        let mut input = vec![b'x'; 8];
        input.push(b'\n');
        input.extend_from_slice(b"next\n");
        let out = frame(8, &input, &[]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].0, vec![b'x'; 8]);
        assert_eq!(
            out[0].1,
            Some(PartialInfo {
                ordinal: 1,
                last: false
            })
        );
        assert_eq!(out[1].0, b"\n");
        assert_eq!(
            out[1].1,
            Some(PartialInfo {
                ordinal: 2,
                last: true
            })
        );
        assert_eq!(out[2], (b"next\n".to_vec(), None));
    }

    #[test]
    fn finish_flushes_unterminated_line() {
        let out = frame(16, b"one\ntwo", &[]);
        assert_eq!(out[1], (b"two".to_vec(), None));
        // A split line that ends without newline: the tail is the last piece.
        let out = frame(4, b"abcdefg", &[]);
        assert_eq!(
            out[0],
            (
                b"abcd".to_vec(),
                Some(PartialInfo {
                    ordinal: 1,
                    last: false
                })
            )
        );
        assert_eq!(
            out[1],
            (
                b"efg".to_vec(),
                Some(PartialInfo {
                    ordinal: 2,
                    last: true
                })
            )
        );
        // Nothing pending: nothing emitted.
        assert!(frame(4, b"", &[]).is_empty());
    }

    #[test]
    fn never_splits_inside_utf8_when_avoidable() {
        // "aé" = 61 c3 a9; with max 2 the cut would fall inside é.
        let out = frame(4, "abcé€😀\n".as_bytes(), &[]);
        for (bytes, _) in &out {
            assert!(
                std::str::from_utf8(bytes).is_ok(),
                "piece {bytes:?} splits a char"
            );
            assert!(bytes.len() <= 4);
        }
        assert_eq!(concat(&out), "abcé€😀\n".as_bytes());
        // Invalid UTF-8 is cut on bytes.
        let raw = [0xffu8; 10];
        let out = frame(4, &raw, &[]);
        assert_eq!(out[0].0.len(), 4);
        assert_eq!(concat(&out), raw);
    }

    #[test]
    fn chunk_boundaries_do_not_matter() {
        let mut input = Vec::new();
        input.extend_from_slice(b"short\n\nx\r\n");
        input.extend_from_slice(&[b'L'; 37]);
        input.push(b'\n');
        input.extend_from_slice("héllo wörld ✓ 😀😀😀\n".as_bytes());
        input.extend_from_slice(&[b'M'; 24]);
        input.extend_from_slice(b"\ntail-no-newline");
        let reference = frame(12, &input, &[]);
        assert_eq!(concat(&reference), input);
        for a in 0..=input.len() {
            // one split point anywhere
            assert_eq!(frame(12, &input, &[a]), reference, "split at {a}");
            // and a second one, on a stride to keep the test quick
            for b in (a..=input.len()).step_by(7) {
                assert_eq!(frame(12, &input, &[a, b]), reference, "splits {a},{b}");
            }
        }
        // Byte by byte.
        let all: Vec<usize> = (1..input.len()).collect();
        assert_eq!(frame(12, &input, &all), reference);
    }

    #[test]
    fn complete_lines_are_not_copied() {
        let mut f = LineFramer::new(64);
        let input = b"a\nb\n";
        let mut ptrs = Vec::new();
        f.push(input, |m| ptrs.push(m.bytes.as_ptr()));
        assert_eq!(ptrs, vec![input.as_ptr(), input[2..].as_ptr()]);
        assert_eq!(f.pending_len(), 0);
    }

    #[test]
    fn buffer_is_released_after_a_long_line() {
        let mut f = LineFramer::new(DEFAULT_MAX_LINE);
        for _ in 0..DEFAULT_MAX_LINE / 100 {
            f.push(&[b'z'; 99], |_| {});
        }
        f.push(b"\n", |_| {});
        assert_eq!(f.pending_len(), 0);
        assert!(f.pending.capacity() <= KEEP_CAPACITY);
    }

    #[test]
    fn tiny_max_line_is_raised() {
        assert_eq!(LineFramer::new(0).max_line(), 4);
        assert_eq!(LineFramer::default().max_line(), DEFAULT_MAX_LINE);
    }

    #[test]
    fn utf8_cut_points() {
        assert_eq!(utf8_cut(b"abcd"), 4);
        assert_eq!(utf8_cut(&[b'a', 0xc3]), 1);
        assert_eq!(utf8_cut(&[b'a', 0xc3, 0xa9]), 3);
        assert_eq!(utf8_cut(&[b'a', 0xe2, 0x82]), 1);
        assert_eq!(utf8_cut(&[b'a', 0xf0, 0x9f, 0x98]), 1);
        assert_eq!(utf8_cut(&[0xf0, 0x9f, 0x98]), 3); // would leave nothing: cut on bytes
        assert_eq!(utf8_cut(&[b'a', 0x80, 0x80, 0x80]), 4);
    }
}
