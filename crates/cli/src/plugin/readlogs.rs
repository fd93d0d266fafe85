//! `/LogDriver.ReadLogs`: the container's log read with the same reader as `scribe logs`, sent
//! as `[u32 BE size][LogEntry]` frames in a chunked response.

use std::io::{self, Write};
use std::path::Path;

use scribe_io::localfmt::EntryRef;
use scribe_io::plugin::frame::encode_frame;
use scribe_io::plugin::proto::{ReadConfig, GO_ZERO_TIME};
use scribe_io::reader::time::parse_rfc3339;
use scribe_io::reader::{Entry, FileLog, Format, Query, Sink};

use super::http::Chunked;
use super::opts::Driver;

/// The most line bytes one frame carries: dockerd's decoder refuses frames over 1e6 bytes, so a
/// longer (joined) line goes out in pieces, which `docker logs` prints back to back.
const MAX_PIECE: usize = 256 * 1024;

/// How much is buffered before a chunk is sent.
const FLUSH_AT: usize = 64 * 1024;

/// What to read and whether to follow, from dockerd's `ReadConfig`.
#[derive(Debug, Clone, Default)]
pub struct Translated {
    /// The reader's query.
    pub query: Query,
    /// Keep sending until the container's logging stops.
    pub follow: bool,
}

/// Translates dockerd's `ReadConfig`: the zero time is no bound, a negative tail is all.
pub fn translate(c: &ReadConfig) -> Result<Translated, String> {
    let time = |what: &str, s: &str| -> Result<_, String> {
        if s.is_empty() || s == GO_ZERO_TIME {
            return Ok(None);
        }
        parse_rfc3339(s)
            .map(Some)
            .ok_or_else(|| format!("ReadLogs: {what} {s:?} is not an RFC 3339 time"))
    };
    Ok(Translated {
        query: Query {
            since: time("Since", &c.since)?,
            until: time("Until", &c.until)?,
            tail: usize::try_from(c.tail).ok(),
            stream: None,
            // dockerd's json-file reader sends what is stored; `--tail` counts entries.
            pieces: true,
        },
        follow: c.follow,
    })
}

/// Finds the container's log: the server's driver first, then the other format.
pub fn find_log(root: &Path, ns: &str, id: &str, driver: Driver) -> Result<FileLog, String> {
    let json = || FileLog::open(root, &[ns, id], &format!("{id}-json.log"), Format::JsonFile);
    let local = || {
        FileLog::open(
            root,
            &[ns, id, scribe_io::drivers::local::DIR],
            scribe_io::drivers::local::FILE,
            Format::Local,
        )
    };
    let order: [&dyn Fn() -> Result<FileLog, String>; 2] = match driver {
        Driver::JsonFile => [&json, &local],
        Driver::Local => [&local, &json],
    };
    for open in order {
        if let Ok(log) = open() {
            if log.exists()? {
                return Ok(log);
            }
        }
    }
    Err(format!(
        "no logs for container {id:?} under {}",
        root.join(ns).join(id).display()
    ))
}

/// Encodes lines as frames into a chunked response.
pub struct FrameSink<W: Write> {
    out: Chunked<W>,
    buf: Vec<u8>,
    /// The connection failed (the client went away).
    pub failed: bool,
}

impl<W: Write> FrameSink<W> {
    /// A sink writing to `out`.
    pub fn new(out: Chunked<W>) -> Self {
        FrameSink {
            out,
            buf: Vec::with_capacity(FLUSH_AT * 2),
            failed: false,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let r = self.out.chunk(&self.buf);
        self.buf.clear();
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    /// Sends what is buffered and ends the body.
    pub fn finish(mut self) -> io::Result<W> {
        self.send()?;
        self.out.finish()
    }
}

/// Appends the frames of one line: the line with its `\n` as dockerd's json-file reader gives
/// it (dockerd passes the plugin's bytes through), cut in pieces of at most [`MAX_PIECE`].
pub fn encode_line(e: &Entry, out: &mut Vec<u8>) {
    let nanos = match e.time.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(d) => i64::try_from(d.duration().as_nanos()).map_or(i64::MIN, |n| -n),
    };
    let mut rest: &[u8] = &e.line;
    loop {
        let (piece, tail) = rest.split_at(rest.len().min(MAX_PIECE));
        let entry = EntryRef {
            source: e.stream.as_str(),
            time_nano: nanos,
            line: piece,
            partial: false,
            partial_meta: None,
        };
        encode_frame(&entry, out);
        rest = tail;
        if rest.is_empty() {
            break;
        }
    }
}

impl<W: Write> Sink for FrameSink<W> {
    fn line(&mut self, e: &Entry) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "client gone"));
        }
        encode_line(e, &mut self.buf);
        if self.buf.len() >= FLUSH_AT {
            self.send()?;
        }
        Ok(())
    }

    fn warn(&mut self, msg: &str) {
        eprintln!("scribe plugin: ReadLogs: {msg}");
    }

    fn flush(&mut self) {
        if !self.buf.is_empty() {
            let _ = self.send();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scribe_io::plugin::frame::decode_frame;
    use scribe_io::stream::Stream;
    use std::time::{Duration, SystemTime};

    #[test]
    fn config_translation() {
        let t = translate(&ReadConfig::default()).unwrap();
        assert!(t.query.since.is_none() && t.query.until.is_none());
        assert_eq!(t.query.tail, None);
        assert!(!t.follow);
        let t = translate(&ReadConfig {
            since: "2024-03-21T10:00:00.5Z".into(),
            until: "2024-03-21T11:00:00Z".into(),
            tail: 5,
            follow: true,
        })
        .unwrap();
        let base = SystemTime::UNIX_EPOCH + Duration::from_secs(1_711_015_200);
        assert_eq!(t.query.since, Some(base + Duration::from_millis(500)));
        assert_eq!(t.query.until, Some(base + Duration::from_secs(3600)));
        assert_eq!(t.query.tail, Some(5));
        assert!(t.follow);
        let t = translate(&ReadConfig {
            tail: 0,
            ..ReadConfig::default()
        })
        .unwrap();
        assert_eq!(t.query.tail, Some(0));
        let e = translate(&ReadConfig {
            since: "yesterday".into(),
            ..ReadConfig::default()
        })
        .unwrap_err();
        assert!(e.contains("Since"), "{e}");
    }

    #[test]
    fn long_lines_go_in_frames_dockerd_accepts() {
        let e = Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_nanos(1_700_000_000_123_456_789),
            stream: Stream::Stderr,
            line: {
                let mut l = vec![b'x'; 600 * 1024];
                l.push(b'\n');
                l
            },
        };
        let mut out = Vec::new();
        encode_line(&e, &mut out);
        let mut joined = Vec::new();
        let mut pos = 0;
        let mut frames = 0;
        while let Some((d, used)) = decode_frame(&out[pos..]).unwrap() {
            assert!(used < 1_000_000);
            assert_eq!(d.source, "stderr");
            assert_eq!(d.time_nano, 1_700_000_000_123_456_789);
            joined.extend_from_slice(d.line);
            pos += used;
            frames += 1;
        }
        assert_eq!(pos, out.len());
        assert_eq!(frames, 3);
        assert_eq!(joined, e.line);
    }
}
