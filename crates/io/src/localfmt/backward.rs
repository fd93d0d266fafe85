//! Reading a `local` file from its end, newest record first (what `--tail N` needs).

use std::io::{self, Read, Seek, SeekFrom};

use super::{checked_len, decode_record, Entry, FormatError, SIZE_LEN};

/// Yields the records of a seekable file from the last one back, using each record's trailing
/// size to find where it starts. Owned entries; two reads per record.
pub struct BackwardReader<R> {
    inner: R,
    /// Offset where the next record to yield ends.
    end: u64,
    buf: Vec<u8>,
}

impl<R: Read + Seek> BackwardReader<R> {
    /// Reads from the file's current end back.
    pub fn new(mut inner: R) -> io::Result<Self> {
        let end = inner.seek(SeekFrom::End(0))?;
        Ok(Self::ending_at(inner, end))
    }

    /// Reads records ending at `end` back (a reader that saw the file at that size).
    pub fn ending_at(inner: R, end: u64) -> Self {
        BackwardReader {
            inner,
            end,
            buf: Vec::new(),
        }
    }

    /// Where the records not yet yielded end: the start of the last record yielded.
    pub fn position(&self) -> u64 {
        self.end
    }

    /// The record before [`BackwardReader::position`]; `None` at the start of the file.
    pub fn prev_entry(&mut self) -> io::Result<Option<Entry>> {
        if self.end == 0 {
            return Ok(None);
        }
        if self.end < SIZE_LEN as u64 {
            return Err(FormatError::Truncated {
                needed: SIZE_LEN,
                have: self.end as usize,
            }
            .into());
        }
        let mut size = [0u8; SIZE_LEN];
        self.inner
            .seek(SeekFrom::Start(self.end - SIZE_LEN as u64))?;
        self.inner.read_exact(&mut size)?;
        let total = (checked_len(u32::from_be_bytes(size))? + 2 * SIZE_LEN) as u64;
        let start = self.end.checked_sub(total).ok_or(FormatError::Truncated {
            needed: total as usize,
            have: self.end as usize,
        })?;
        self.buf.resize(total as usize, 0);
        self.inner.seek(SeekFrom::Start(start))?;
        self.inner.read_exact(&mut self.buf)?;
        let (entry, _) = decode_record(&self.buf)?;
        let entry = entry.to_owned_entry();
        self.end = start;
        Ok(Some(entry))
    }

    /// The file.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read + Seek> Iterator for BackwardReader<R> {
    type Item = io::Result<Entry>;

    fn next(&mut self) -> Option<Self::Item> {
        self.prev_entry().transpose()
    }
}
