//! Records of a byte stream in either [`Format`], read in 256 KiB chunks; and `pread`-based
//! readers so that several readers of one open file never move each other's offset.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use super::format::{Format, Split};

/// Reads an open file from `offset` with `pread` (up to `end` when set).
pub struct PRead<'a> {
    /// The file.
    pub file: &'a File,
    /// Where the next read starts.
    pub offset: u64,
    /// Where reading stops.
    pub end: Option<u64>,
}

impl Read for PRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = match self.end {
            Some(end) => buf.len().min(end.saturating_sub(self.offset) as usize),
            None => buf.len(),
        };
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

/// What [`Records::next_record`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Rec {
    /// A whole record: its body's position in [`Records::body`] and its length in the stream.
    Body(usize),
    /// The stream ends inside a record of which this many bytes are there.
    Truncated(usize),
    /// Not a record (local format): nothing after it can be read.
    Bad(String),
}

/// Cuts a stream into records.
pub struct Records<R> {
    r: R,
    fmt: Format,
    buf: Vec<u8>,
    start: usize,
    body: std::ops::Range<usize>,
    eof: bool,
}

const CHUNK: usize = 256 * 1024;

impl<R: Read> Records<R> {
    /// Reads `r` as `fmt`.
    pub fn new(r: R, fmt: Format) -> Self {
        Records {
            r,
            fmt,
            buf: Vec::with_capacity(CHUNK),
            start: 0,
            body: 0..0,
            eof: false,
        }
    }

    /// The body of the record [`Records::next_record`] returned last.
    pub fn body(&self) -> &[u8] {
        &self.buf[self.body.clone()]
    }

    /// The next record; `None` at the end of the stream; an error from the stream (a gzip file
    /// cut short) as it came.
    pub fn next_record(&mut self) -> io::Result<Option<Rec>> {
        loop {
            match self.fmt.split(&self.buf[self.start..]) {
                Split::Record { body, len } => {
                    self.body = self.start + body.start..self.start + body.end;
                    self.start += len;
                    return Ok(Some(Rec::Body(len)));
                }
                Split::Bad(m) => {
                    self.start = self.buf.len();
                    // Nothing after it can be found again: the stream counts as ended.
                    self.eof = true;
                    return Ok(Some(Rec::Bad(m)));
                }
                Split::More => {
                    let rest = self.buf.len() - self.start;
                    if self.eof {
                        if rest == 0 {
                            return Ok(None);
                        }
                        self.start = self.buf.len();
                        return Ok(Some(Rec::Truncated(rest)));
                    }
                    if self.start > 0 {
                        self.buf.drain(..self.start);
                        self.start = 0;
                    }
                    let old = self.buf.len();
                    self.buf.resize(old + CHUNK.max(old), 0);
                    let n = loop {
                        match self.r.read(&mut self.buf[old..]) {
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            other => break other,
                        }
                    };
                    let n = match n {
                        Ok(n) => n,
                        Err(e) => {
                            self.buf.truncate(old);
                            self.eof = true;
                            return Err(e);
                        }
                    };
                    self.buf.truncate(old + n);
                    if n == 0 {
                        self.eof = true;
                    }
                }
            }
        }
    }
}
