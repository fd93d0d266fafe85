//! Lines of a file from its end backwards, read in blocks with `pread`: `--tail 10` of a large
//! file reads a block or two, never the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Block read at a time; grows when one line is longer.
const BLOCK: usize = 64 * 1024;

/// One line found backwards.
#[derive(Debug, PartialEq, Eq)]
pub struct BackLine {
    /// Offset of the line's first byte in the file.
    pub offset: u64,
    /// The line without its `\n`.
    pub bytes: Vec<u8>,
    /// False for the last bytes of a file that does not end in `\n` (a write cut short, or one
    /// still in progress).
    pub complete: bool,
}

/// Iterates over the lines of `file[..end]`, last first.
pub struct BackLines<'a> {
    file: &'a File,
    /// File offset of `buf[0]`.
    start: u64,
    /// The not yet returned bytes before the current end.
    buf: Vec<u8>,
    first: bool,
}

impl<'a> BackLines<'a> {
    /// Reads `file` backwards from `end` (its size, usually).
    pub fn new(file: &'a File, end: u64) -> Self {
        BackLines {
            file,
            start: end,
            buf: Vec::new(),
            first: true,
        }
    }

    /// Prepends the block before `start` to `buf`.
    fn read_more(&mut self) -> io::Result<()> {
        let want = BLOCK.max(self.buf.len()) as u64;
        let from = self.start.saturating_sub(want);
        let len = (self.start - from) as usize;
        let mut block = vec![0u8; len + self.buf.len()];
        self.file.read_exact_at(&mut block[..len], from)?;
        block[len..].copy_from_slice(&self.buf);
        self.buf = block;
        self.start = from;
        Ok(())
    }

    /// The previous line, or `None` at the start of the file.
    pub fn next_line(&mut self) -> io::Result<Option<BackLine>> {
        if self.first {
            self.first = false;
            if self.start > 0 {
                self.read_more()?;
            }
            if let Some(&last) = self.buf.last() {
                if last != b'\n' {
                    return self.take_line(false).map(Some);
                }
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        // Drop the `\n` ending this line.
        self.buf.pop();
        self.take_line(true).map(Some)
    }

    /// Splits off the bytes after the last `\n` in `buf` (reading more until there is one or
    /// the file starts).
    fn take_line(&mut self, complete: bool) -> io::Result<BackLine> {
        let mut searched = 0usize;
        loop {
            let limit = self.buf.len() - searched;
            if let Some(i) = memchr::memrchr(b'\n', &self.buf[..limit]) {
                let bytes = self.buf.split_off(i + 1);
                return Ok(BackLine {
                    offset: self.start + i as u64 + 1,
                    bytes,
                    complete,
                });
            }
            if self.start == 0 {
                let bytes = std::mem::take(&mut self.buf);
                return Ok(BackLine {
                    offset: 0,
                    bytes,
                    complete,
                });
            }
            // All of `buf` is known to hold no `\n`; the next block goes in front of it.
            searched = self.buf.len();
            self.read_more()?;
        }
    }
}

/// Records of a plain file from its end back, in either format: json-file lines through
/// [`BackLines`], `local` records by their trailing size (two `pread`s each).
pub enum Back<'a> {
    /// json-file.
    Lines(BackLines<'a>),
    /// `local`: the file and where the records not yet returned end.
    Local(&'a File, u64),
}

impl<'a> Back<'a> {
    /// Reads `file[..end]` backwards as `format`.
    pub fn new(format: super::format::Format, file: &'a File, end: u64) -> Self {
        match format {
            super::format::Format::JsonFile => Back::Lines(BackLines::new(file, end)),
            super::format::Format::Local => Back::Local(file, end),
        }
    }

    /// The previous record's body (a `local` record that does not add up is an error: nothing
    /// before it can be found).
    pub fn next_line(&mut self) -> io::Result<Option<BackLine>> {
        match self {
            Back::Lines(b) => b.next_line(),
            Back::Local(file, end) => {
                use crate::localfmt::{MAX_ENTRY_LEN, SIZE_LEN};
                if *end == 0 {
                    return Ok(None);
                }
                let bad = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
                if *end < SIZE_LEN as u64 {
                    return Err(bad(format!("{end} bytes before the first record")));
                }
                let mut size = [0u8; SIZE_LEN];
                file.read_exact_at(&mut size, *end - SIZE_LEN as u64)?;
                let len = u32::from_be_bytes(size) as usize;
                if len > MAX_ENTRY_LEN {
                    return Err(bad(format!(
                        "a local record of {len} bytes ends at offset {end}: not a record"
                    )));
                }
                let total = (len + 2 * SIZE_LEN) as u64;
                let start = end
                    .checked_sub(total)
                    .ok_or_else(|| bad(format!("a local record at offset {end} is cut short")))?;
                let mut rec = vec![0u8; total as usize];
                file.read_exact_at(&mut rec, start)?;
                if rec[..SIZE_LEN] != size {
                    return Err(bad(format!(
                        "the sizes around the local record at offset {start} differ"
                    )));
                }
                *end = start;
                Ok(Some(BackLine {
                    offset: start,
                    bytes: rec[SIZE_LEN..SIZE_LEN + len].to_vec(),
                    complete: true,
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn lines(content: &[u8]) -> Vec<(u64, String, bool)> {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        let mut b = BackLines::new(&f, content.len() as u64);
        let mut v = Vec::new();
        while let Some(l) = b.next_line().unwrap() {
            v.push((l.offset, String::from_utf8(l.bytes).unwrap(), l.complete));
        }
        v
    }

    #[test]
    fn small() {
        assert_eq!(lines(b""), vec![]);
        assert_eq!(
            lines(b"a\nbb\n"),
            vec![(2, "bb".into(), true), (0, "a".into(), true)]
        );
        assert_eq!(
            lines(b"a\n\nc"),
            vec![
                (3, "c".into(), false),
                (2, "".into(), true),
                (0, "a".into(), true)
            ]
        );
    }

    #[test]
    fn across_blocks_and_long_lines() {
        let mut content = Vec::new();
        let mut want = Vec::new();
        for i in 0..5000 {
            let len = if i % 997 == 0 { 200_000 } else { i % 50 };
            let line = format!("{i}:{}", "x".repeat(len));
            want.push((content.len() as u64, line.clone(), true));
            content.extend_from_slice(line.as_bytes());
            content.push(b'\n');
        }
        want.reverse();
        assert_eq!(lines(&content), want);
    }
}
