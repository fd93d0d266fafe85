//! A large, deterministic, non-repeating output stream for byte-exactness tests, and a checker
//! that compares what arrived with it on the fly (position of the first difference, length,
//! SHA-256) without keeping the stream in memory.
//!
//! The stream is `block 1\n`, then the output of `seq 1 1000000`, then `block 2\n`, the same
//! numbers again, and so on: numbered lines inside a block catch loss, duplication and
//! reordering within it, the headers catch them across blocks. A container makes it with busybox
//! (`seq` once into a file, then `echo` + `cat` per block, so `seq`'s speed does not bound the
//! test); the test computes the same bytes.

use sha2::{Digest, Sha256};
use std::io::{self, Read, Write};
use std::sync::Arc;

/// Lines of one block: `seq 1 BLOCK_LINES`.
pub const BLOCK_LINES: u32 = 1_000_000;

/// The expected stream: `blocks` blocks of [`BLOCK_LINES`] numbered lines, each after a header.
#[derive(Debug, Clone)]
pub struct NumberedBlocks {
    blocks: u64,
    block: Arc<Vec<u8>>,
}

impl NumberedBlocks {
    /// The smallest stream of whole blocks that holds at least `mib` MiB.
    pub fn at_least_mib(mib: u64) -> NumberedBlocks {
        let block: Vec<u8> = (1..=BLOCK_LINES)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let want = mib * 1024 * 1024;
        let mut s = NumberedBlocks {
            blocks: 1,
            block: Arc::new(block),
        };
        while s.len() < want {
            s.blocks += 1;
        }
        s
    }

    /// Number of blocks.
    pub fn blocks(&self) -> u64 {
        self.blocks
    }

    /// Total bytes.
    pub fn len(&self) -> u64 {
        (1..=self.blocks)
            .map(|i| header(i).len() as u64 + self.block.len() as u64)
            .sum()
    }

    /// Never empty (at least one block).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The busybox `sh -c` script writing exactly this stream to stdout (needs a writable /tmp).
    pub fn script(&self) -> String {
        format!(
            "seq 1 {BLOCK_LINES} > /tmp/block && i=1 && while [ $i -le {n} ]; do echo \"block $i\"; cat /tmp/block; i=$((i+1)); done",
            n = self.blocks
        )
    }

    /// The stream's bytes, in order.
    pub fn reader(&self) -> BlocksReader {
        BlocksReader {
            spec: self.clone(),
            index: 1,
            header: header(1),
            pos: 0,
        }
    }

    /// SHA-256 of the stream, hex.
    pub fn sha256(&self) -> String {
        let mut h = Sha256::new();
        for i in 1..=self.blocks {
            h.update(header(i).as_bytes());
            h.update(self.block.as_slice());
        }
        hex(&h.finalize())
    }
}

fn header(i: u64) -> String {
    format!("block {i}\n")
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Reads a [`NumberedBlocks`] stream.
#[derive(Debug)]
pub struct BlocksReader {
    spec: NumberedBlocks,
    /// Current block, from 1; past `blocks` at the end.
    index: u64,
    header: String,
    /// Position inside header + block.
    pos: usize,
}

impl Read for BlocksReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.index <= self.spec.blocks {
            let h = self.header.as_bytes();
            let (src, at) = if self.pos < h.len() {
                (h, self.pos)
            } else {
                (self.spec.block.as_slice(), self.pos - h.len())
            };
            let take = (src.len() - at).min(buf.len() - n);
            buf[n..n + take].copy_from_slice(&src[at..at + take]);
            n += take;
            self.pos += take;
            if self.pos == h.len() + self.spec.block.len() {
                self.index += 1;
                self.header = header(self.index);
                self.pos = 0;
            }
        }
        Ok(n)
    }
}

/// Compares bytes written to it with an expected stream as they come, and hashes them.
#[derive(Debug)]
pub struct StreamCheck {
    expected: BlocksReader,
    scratch: Vec<u8>,
    len: u64,
    first_difference: Option<u64>,
    hash: Sha256,
}

/// What a [`StreamCheck`] saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckResult {
    /// Bytes received.
    pub len: u64,
    /// SHA-256 of what was received, hex.
    pub sha256: String,
    /// Offset of the first byte that differs from the expected stream (or where it ran past
    /// the expected end), if any.
    pub first_difference: Option<u64>,
}

impl StreamCheck {
    /// A checker against `expected`.
    pub fn new(expected: &NumberedBlocks) -> StreamCheck {
        StreamCheck {
            expected: expected.reader(),
            scratch: Vec::new(),
            len: 0,
            first_difference: None,
            hash: Sha256::new(),
        }
    }

    /// The result so far (normally after the last write).
    pub fn finish(self) -> CheckResult {
        CheckResult {
            len: self.len,
            sha256: hex(&self.hash.finalize()),
            first_difference: self.first_difference,
        }
    }

    /// Feeds all of `r` through the checker.
    pub fn consume(&mut self, mut r: impl Read) -> io::Result<()> {
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => self.write_all(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Write for StreamCheck {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hash.update(buf);
        if self.first_difference.is_none() {
            self.scratch.resize(buf.len(), 0);
            let mut got = 0;
            while got < buf.len() {
                match self.expected.read(&mut self.scratch[got..])? {
                    0 => break,
                    k => got += k,
                }
            }
            let same = got == buf.len() && buf == &self.scratch[..got];
            if !same {
                let i = (0..buf.len())
                    .find(|&i| i >= got || buf[i] != self.scratch[i])
                    .unwrap_or(buf.len());
                self.first_difference = Some(self.len + i as u64);
            }
        }
        self.len += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl CheckResult {
    /// Panics unless this is exactly `expected` (length, SHA-256, every byte), saying where it
    /// went wrong; `what` names the destination.
    #[track_caller]
    pub fn assert_matches(&self, expected: &NumberedBlocks, expected_sha256: &str, what: &str) {
        assert!(
            self.len == expected.len()
                && self.sha256 == expected_sha256
                && self.first_difference.is_none(),
            "{what}: got {} bytes (sha256 {}), want {} bytes (sha256 {expected_sha256}); first difference at byte {:?}",
            self.len,
            self.sha256,
            expected.len(),
            self.first_difference
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_yields_headers_and_blocks_and_the_check_finds_a_changed_byte() {
        let s = NumberedBlocks {
            blocks: 3,
            block: Arc::new(b"1\n2\n".to_vec()),
        };
        let mut all = Vec::new();
        s.reader().read_to_end(&mut all).expect("read");
        assert_eq!(all, b"block 1\n1\n2\nblock 2\n1\n2\nblock 3\n1\n2\n");
        assert_eq!(s.len(), all.len() as u64);

        let mut ok = StreamCheck::new(&s);
        for chunk in all.chunks(5) {
            ok.write_all(chunk).expect("write");
        }
        let r = ok.finish();
        assert_eq!(r.first_difference, None);
        assert_eq!(r.sha256, s.sha256());

        let mut bad = all.clone();
        bad[13] = b'9';
        let mut c = StreamCheck::new(&s);
        c.write_all(&bad).expect("write");
        assert_eq!(c.finish().first_difference, Some(13));

        let mut c = StreamCheck::new(&s);
        c.write_all(&all).expect("write");
        c.write_all(b"extra").expect("write");
        assert_eq!(c.finish().first_difference, Some(all.len() as u64));
    }
}
