//! Where `scribe logs` prints: stdout entries to stdout, stderr entries to stderr (as
//! `docker logs`), raw or as json-file objects, optionally after their time; warnings to
//! stderr prefixed `scribe:`.

use std::io::{self, BufWriter, Write};

use scribe_io::reader::{Entry, Sink};
use scribe_io::stream::Stream;

/// The terminal side of a read.
pub struct Out {
    out: BufWriter<io::Stdout>,
    err: BufWriter<io::Stderr>,
    timestamps: bool,
    json: bool,
    buf: Vec<u8>,
    /// Warnings said.
    pub warnings: usize,
}

impl Out {
    /// Prints as `-t` and `--format json` say.
    pub fn new(timestamps: bool, json: bool) -> Out {
        Out {
            out: BufWriter::with_capacity(256 * 1024, io::stdout()),
            err: BufWriter::with_capacity(64 * 1024, io::stderr()),
            timestamps,
            json,
            buf: Vec::with_capacity(512),
            warnings: 0,
        }
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.err.flush()
    }
}

impl Sink for Out {
    fn line(&mut self, e: &Entry) -> io::Result<()> {
        self.buf.clear();
        if self.json {
            e.write_json(&mut self.buf);
        } else {
            if self.timestamps {
                scribe_io::timefmt::write_rfc3339_nano(&mut self.buf, e.time);
                self.buf.push(b' ');
            }
            self.buf.extend_from_slice(&e.line);
        }
        let w: &mut dyn Write = match e.stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        w.write_all(&self.buf)
    }

    /// The follower caught up: what it printed goes out now, not when a buffer fills.
    fn flush(&mut self) {
        let _ = Out::flush(self);
    }

    fn warn(&mut self, msg: &str) {
        self.warnings += 1;
        let _ = self.out.flush();
        let _ = writeln!(self.err, "scribe: {msg}");
        let _ = self.err.flush();
    }
}
