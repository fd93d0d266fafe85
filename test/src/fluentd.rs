//! A fluentd forward-protocol (v1) receiver for the e2e tests: no fluentd server package is
//! installable here, so the tests get this one, built on a real msgpack decoder (`rmpv`).
//!
//! It listens on TCP or a unix socket and checks every frame against the spec: the mode
//! (Message `[tag, time, record, option?]`, Forward `[tag, [[time, record]...], option?]`,
//! PackedForward `[tag, bin|str of entries, option?]`, CompressedPackedForward: the same,
//! gzip'd, with `compressed: "gzip"`), the time (a non-negative integer, or EventTime: ext type 0
//! of exactly 8 bytes), string keys in records, the option map (`size`, `chunk`, `compressed`
//! only; `size` equal to the entry count). A frame that breaks the spec is recorded in
//! [`Receiver::errors`] (tests assert there are none) and its connection closed.
//! With `chunk`, it answers `{"ack": chunk}` unless acks are turned off.
//!
//! It can be stopped and restarted on the same address mid-stream, and can stall: accept
//! connections but never read them (the sender's socket buffers fill up).

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rmpv::Value;

/// Where a receiver listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listen {
    /// `tcp://addr`.
    Tcp(std::net::SocketAddr),
    /// `unix://path`.
    Unix(PathBuf),
}

/// A record's time as it was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FluentTime {
    /// Integer seconds.
    Seconds(u64),
    /// EventTime (ext type 0).
    Event { secs: u32, nanos: u32 },
}

/// The frame mode a record came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameMode {
    Message,
    Forward,
    PackedForward,
    CompressedPackedForward,
}

/// One received event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FluentRecord {
    pub tag: String,
    pub time: FluentTime,
    /// The record's fields; non-string values are shown as msgpack's text form.
    pub record: BTreeMap<String, String>,
    pub mode: FrameMode,
}

impl FluentRecord {
    /// A field of the record.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.record.get(k).map(String::as_str)
    }
}

#[derive(Default)]
struct Inner {
    records: Mutex<Vec<FluentRecord>>,
    arrived: Condvar,
    errors: Mutex<Vec<String>>,
    ack: AtomicBool,
    stall: AtomicBool,
    stop: AtomicBool,
    frames: AtomicU64,
    acks_sent: AtomicU64,
    accepted: AtomicU64,
    conns: Mutex<Vec<Conn>>,
}

enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A running (or stopped) receiver; stops when dropped.
pub struct Receiver {
    listen: Listen,
    inner: Arc<Inner>,
    threads: Vec<JoinHandle<()>>,
    running: bool,
}

impl Receiver {
    /// A receiver on a free port of 127.0.0.1.
    pub fn tcp() -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("binding a TCP port for the receiver");
        let addr = l.local_addr().expect("receiver address");
        let mut r = Receiver::new(Listen::Tcp(addr));
        r.serve_tcp(l);
        r
    }

    /// A receiver on the unix socket `path` (created; removed when stopped).
    pub fn unix(path: PathBuf) -> Receiver {
        let mut r = Receiver::new(Listen::Unix(path));
        r.start();
        r
    }

    /// A receiver for `listen` that is not running yet ([`Receiver::start`]): "fluentd is down".
    pub fn new(listen: Listen) -> Receiver {
        let inner = Inner::default();
        inner.ack.store(true, Ordering::SeqCst);
        Receiver {
            listen,
            inner: Arc::new(inner),
            threads: Vec::new(),
            running: false,
        }
    }

    /// A free 127.0.0.1 address nothing listens on (bound and released).
    pub fn free_tcp_address() -> Listen {
        let l = TcpListener::bind("127.0.0.1:0").expect("binding a TCP port");
        Listen::Tcp(l.local_addr().expect("address"))
    }

    /// The address as `fluentd-address` takes it.
    pub fn address(&self) -> String {
        match &self.listen {
            Listen::Tcp(a) => format!("tcp://{a}"),
            Listen::Unix(p) => format!("unix://{}", p.display()),
        }
    }

    /// Whether to answer chunks with acks (default yes).
    pub fn set_ack(&self, on: bool) {
        self.inner.ack.store(on, Ordering::SeqCst);
    }

    /// Stall: keep connections open but stop reading them (until set back).
    pub fn set_stall(&self, on: bool) {
        self.inner.stall.store(on, Ordering::SeqCst);
    }

    /// (Re)starts listening on the same address.
    pub fn start(&mut self) {
        assert!(!self.running, "receiver already running");
        match self.listen.clone() {
            Listen::Tcp(a) => {
                // std sets SO_REUSEADDR: the port is free again at once after a stop.
                let l = retry_bind(|| TcpListener::bind(a));
                self.serve_tcp(l);
            }
            Listen::Unix(p) => {
                let _ = std::fs::remove_file(&p);
                let l = retry_bind(|| UnixListener::bind(&p));
                l.set_nonblocking(true).expect("nonblocking listener");
                self.serve(move || {
                    let (s, _) = l.accept()?;
                    s.set_nonblocking(false)?;
                    let c = s.try_clone()?;
                    Ok((Conn::Unix(c), Box::new(s) as Box<dyn ReadWrite>))
                });
            }
        }
    }

    fn serve_tcp(&mut self, l: TcpListener) {
        l.set_nonblocking(true).expect("nonblocking listener");
        self.serve(move || {
            let (s, _) = l.accept()?;
            s.set_nonblocking(false)?;
            let c = s.try_clone()?;
            Ok((Conn::Tcp(c), Box::new(s) as Box<dyn ReadWrite>))
        });
    }

    /// Runs the accept loop: `accept` gives a connection (its handle for stop, and the stream
    /// served on a thread of its own) or WouldBlock.
    fn serve(
        &mut self,
        mut accept: impl FnMut() -> io::Result<(Conn, Box<dyn ReadWrite>)> + Send + 'static,
    ) {
        self.inner.stop.store(false, Ordering::SeqCst);
        let inner = self.inner.clone();
        let t = std::thread::spawn(move || loop {
            if inner.stop.load(Ordering::SeqCst) {
                return;
            }
            match accept() {
                Ok((c, s)) => {
                    inner.conns.lock().unwrap().push(c);
                    inner.accepted.fetch_add(1, Ordering::SeqCst);
                    let inner = inner.clone();
                    std::thread::spawn(move || serve(inner, s));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        });
        self.threads.push(t);
        self.running = true;
    }

    /// Stops listening and closes every connection (frames not yet read are lost, chunks not
    /// yet acked stay unacked): fluentd going away mid-stream.
    pub fn stop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        for c in self.inner.conns.lock().unwrap().drain(..) {
            match c {
                Conn::Tcp(s) => {
                    let _ = s.shutdown(Shutdown::Both);
                }
                Conn::Unix(s) => {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Listen::Unix(p) = &self.listen {
            let _ = std::fs::remove_file(p);
        }
        self.running = false;
    }

    /// Everything received so far, in arrival order.
    pub fn records(&self) -> Vec<FluentRecord> {
        self.inner.records.lock().unwrap().clone()
    }

    /// How many records arrived.
    pub fn count(&self) -> usize {
        self.inner.records.lock().unwrap().len()
    }

    /// Frames received and acks sent.
    pub fn frames(&self) -> (u64, u64) {
        (
            self.inner.frames.load(Ordering::SeqCst),
            self.inner.acks_sent.load(Ordering::SeqCst),
        )
    }

    /// Connections accepted so far (over restarts).
    pub fn connections(&self) -> u64 {
        self.inner.accepted.load(Ordering::SeqCst)
    }

    /// Spec violations seen (each closed its connection).
    pub fn errors(&self) -> Vec<String> {
        self.inner.errors.lock().unwrap().clone()
    }

    /// Waits until `pred(records)` holds or `timeout` passes; returns whether it held.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&[FluentRecord]) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut g = self.inner.records.lock().unwrap();
        loop {
            if pred(&g) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .inner
                .arrived
                .wait_timeout(g, (deadline - now).min(Duration::from_millis(200)))
                .unwrap()
                .0;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn retry_bind<T>(mut f: impl FnMut() -> io::Result<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("rebinding the receiver: {e}"),
        }
    }
}

/// A connection: read, decode, check, ack.
/// A connection's stream, whatever its socket family.
trait ReadWrite: Read + Write + Send {}

impl<T: Read + Write + Send> ReadWrite for T {}

fn serve<S: Read + Write>(inner: Arc<Inner>, mut s: S) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while inner.stall.load(Ordering::SeqCst) && !inner.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        // A read already waiting when the stall began: hold what it got until the stall ends.
        while inner.stall.load(Ordering::SeqCst) && !inner.stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(20));
        }
        if inner.stop.load(Ordering::SeqCst) {
            return;
        }
        loop {
            match decode_one(&buf) {
                Ok(None) => break,
                Ok(Some((frame, used))) => {
                    buf.drain(..used);
                    inner.frames.fetch_add(1, Ordering::SeqCst);
                    match check_frame(&frame) {
                        Ok((records, ack)) => {
                            {
                                let mut g = inner.records.lock().unwrap();
                                g.extend(records);
                            }
                            inner.arrived.notify_all();
                            if let Some(c) = ack {
                                if inner.ack.load(Ordering::SeqCst) {
                                    let reply =
                                        Value::Map(vec![(Value::from("ack"), Value::from(c))]);
                                    let mut out = Vec::new();
                                    rmpv::encode::write_value(&mut out, &reply).expect("encode");
                                    if s.write_all(&out).is_err() {
                                        return;
                                    }
                                    inner.acks_sent.fetch_add(1, Ordering::SeqCst);
                                }
                            }
                        }
                        Err(e) => {
                            inner.errors.lock().unwrap().push(e);
                            return;
                        }
                    }
                }
                Err(e) => {
                    inner.errors.lock().unwrap().push(e);
                    return;
                }
            }
        }
    }
}

/// A lower bound of the length of the frame at the front of `buf`, read from its first markers
/// (array, tag string, then a bin or str entries header): decoding is not tried before that
/// much arrived, so a frame of megabytes read in pieces is decoded once, not once per read.
fn frame_len_hint(buf: &[u8]) -> usize {
    fn str_or_bin(buf: &[u8], at: usize) -> Option<(usize, usize)> {
        let m = *buf.get(at)?;
        let be = |n: usize| -> Option<usize> {
            let b = buf.get(at + 1..at + 1 + n)?;
            Some(b.iter().fold(0usize, |a, x| (a << 8) | *x as usize))
        };
        Some(match m {
            0xa0..=0xbf => (1, (m & 0x1f) as usize),
            0xd9 | 0xc4 => (2, be(1)?),
            0xda | 0xc5 => (3, be(2)?),
            0xdb | 0xc6 => (5, be(4)?),
            _ => return None,
        })
    }
    let Some(&(0x92..=0x94)) = buf.first() else {
        return 0;
    };
    let Some((h1, tag)) = str_or_bin(buf, 1) else {
        return 0;
    };
    let at = 1 + h1 + tag;
    match str_or_bin(buf, at) {
        Some((h2, n)) => at + h2 + n,
        None => at,
    }
}

/// One msgpack value from the front of `buf`: `None` while incomplete.
pub fn decode_one(buf: &[u8]) -> Result<Option<(Value, usize)>, String> {
    if buf.len() < frame_len_hint(buf) {
        return Ok(None);
    }
    let mut rest = buf;
    match rmpv::decode::read_value(&mut rest) {
        Ok(v) => Ok(Some((v, buf.len() - rest.len()))),
        Err(
            rmpv::decode::Error::InvalidMarkerRead(e) | rmpv::decode::Error::InvalidDataRead(e),
        ) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(format!("undecodable msgpack: {e}")),
    }
}

/// Checks one frame against the spec; returns its records and the chunk to ack, if any.
pub fn check_frame(frame: &Value) -> Result<(Vec<FluentRecord>, Option<String>), String> {
    let a = frame
        .as_array()
        .ok_or_else(|| format!("a frame must be an array, got {frame}"))?;
    if a.len() < 2 || a.len() > 4 {
        return Err(format!("a frame has 2 to 4 elements, got {}", a.len()));
    }
    let tag = a[0]
        .as_str()
        .ok_or_else(|| format!("the tag must be a string, got {}", a[0]))?
        .to_owned();
    let mut entries: Vec<(FluentTime, BTreeMap<String, String>)> = Vec::new();
    let (mode, option) = match &a[1] {
        Value::Integer(_) | Value::Ext(..) => {
            if a.len() < 3 {
                return Err("Message mode is [tag, time, record, option?]".into());
            }
            entries.push((check_time(&a[1])?, check_record(&a[2])?));
            (FrameMode::Message, a.get(3))
        }
        Value::Array(list) => {
            if a.len() > 3 {
                return Err("Forward mode is [tag, entries, option?]".into());
            }
            for e in list {
                entries.push(check_entry(e)?);
            }
            (FrameMode::Forward, a.get(2))
        }
        Value::Binary(_) | Value::String(_) => {
            if a.len() > 3 {
                return Err("PackedForward mode is [tag, entries, option?]".into());
            }
            let raw: &[u8] = match &a[1] {
                Value::Binary(b) => b,
                Value::String(s) => s.as_bytes(),
                _ => unreachable!(),
            };
            let compressed = a
                .get(2)
                .and_then(Value::as_map)
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("compressed")))
                .map(|(_, v)| v.clone());
            let data = match compressed {
                None => raw.to_vec(),
                Some(v) if v.as_str() == Some("gzip") => {
                    let mut out = Vec::new();
                    flate2::read::MultiGzDecoder::new(raw)
                        .read_to_end(&mut out)
                        .map_err(|e| format!("compressed entries do not gunzip: {e}"))?;
                    out
                }
                Some(v) => return Err(format!("compressed must be \"gzip\", got {v}")),
            };
            let mut rest = &data[..];
            while !rest.is_empty() {
                let e = rmpv::decode::read_value(&mut rest)
                    .map_err(|e| format!("packed entries do not decode: {e}"))?;
                entries.push(check_entry(&e)?);
            }
            let mode = if a.get(2).is_some_and(|o| {
                o.as_map()
                    .is_some_and(|m| m.iter().any(|(k, _)| k.as_str() == Some("compressed")))
            }) {
                FrameMode::CompressedPackedForward
            } else {
                FrameMode::PackedForward
            };
            (mode, a.get(2))
        }
        other => return Err(format!("no mode has {other} as its second element")),
    };
    let mut chunk = None;
    if let Some(o) = option {
        let m = o
            .as_map()
            .ok_or_else(|| format!("the option must be a map, got {o}"))?;
        for (k, v) in m {
            match k.as_str() {
                Some("size") => {
                    let n = v
                        .as_u64()
                        .ok_or_else(|| format!("size must be an integer, got {v}"))?;
                    if mode != FrameMode::Message && n != entries.len() as u64 {
                        return Err(format!("size {n} but {} entries", entries.len()));
                    }
                }
                Some("chunk") => {
                    chunk = Some(
                        v.as_str()
                            .ok_or_else(|| format!("chunk must be a string, got {v}"))?
                            .to_owned(),
                    )
                }
                Some("compressed") => {}
                _ => return Err(format!("unknown option key {k}")),
            }
        }
    }
    let records = entries
        .into_iter()
        .map(|(time, record)| FluentRecord {
            tag: tag.clone(),
            time,
            record,
            mode,
        })
        .collect();
    Ok((records, chunk))
}

fn check_entry(e: &Value) -> Result<(FluentTime, BTreeMap<String, String>), String> {
    match e.as_array().map(Vec::as_slice) {
        Some([t, r]) => Ok((check_time(t)?, check_record(r)?)),
        _ => Err(format!("an entry is [time, record], got {e}")),
    }
}

fn check_time(t: &Value) -> Result<FluentTime, String> {
    match t {
        Value::Integer(i) => i
            .as_u64()
            .map(FluentTime::Seconds)
            .ok_or_else(|| format!("time must be non-negative, got {i}")),
        Value::Ext(0, b) if b.len() == 8 => Ok(FluentTime::Event {
            secs: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            nanos: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }),
        Value::Ext(0, b) => Err(format!("EventTime has 8 bytes, got {}", b.len())),
        other => Err(format!("time must be an integer or EventTime, got {other}")),
    }
}

fn check_record(r: &Value) -> Result<BTreeMap<String, String>, String> {
    let m = r
        .as_map()
        .ok_or_else(|| format!("a record must be a map, got {r}"))?;
    m.iter()
        .map(|(k, v)| {
            let k = k
                .as_str()
                .ok_or_else(|| format!("record keys must be strings, got {k}"))?;
            let v = match v {
                Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                other => other.to_string(),
            };
            Ok((k.to_owned(), v))
        })
        .collect()
}

/// A receiver for benchmarks: listens on a unix socket and counts records by each frame's
/// `size` option (a PackedForward sender's count) without keeping or checking them.
pub struct CountingReceiver {
    path: PathBuf,
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CountingReceiver {
    /// Listens on `path` (replaced if it exists).
    pub fn unix(path: PathBuf) -> io::Result<CountingReceiver> {
        let _ = std::fs::remove_file(&path);
        let l = UnixListener::bind(&path)?;
        l.set_nonblocking(true)?;
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st) = (count.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
                        let (c, st) = (c.clone(), st.clone());
                        std::thread::spawn(move || count_frames(s, &c, &st));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(CountingReceiver {
            path,
            count,
            stop,
            thread: Some(thread),
        })
    }

    /// `unix://<path>`.
    pub fn address(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Records received so far.
    pub fn records(&self) -> u64 {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for CountingReceiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

fn count_frames(mut s: UnixStream, count: &AtomicU64, stop: &AtomicBool) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 1 << 20];
    while !stop.load(Ordering::SeqCst) {
        let n = match s.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(_) => return,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        while let Ok(Some((frame, n))) = decode_one(&buf[used..]) {
            used += n;
            let size = frame
                .as_array()
                .and_then(|a| a.get(2))
                .and_then(Value::as_map)
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("size")))
                .and_then(|(_, v)| v.as_u64())
                .unwrap_or(1);
            count.fetch_add(size, Ordering::SeqCst);
        }
        buf.drain(..used);
    }
}

/// The runtime options TOML of a fluentd test: fluentd allowed to annotations (beside json-file
/// and local), its address set by the admin (`[LogOpts] fluentd-address`), then `extra_opts`
/// (more `[LogOpts]` lines).
pub fn log_setup(
    c: &crate::Containerd,
    name: &str,
    address: &str,
    extra_opts: &str,
) -> crate::records::LogSetup {
    crate::records::LogSetup::new(
        c,
        name,
        &format!(
            "AllowedLogDrivers = [\"json-file\", \"local\", \"fluentd\"]\n[LogOpts]\nfluentd-address = \"{address}\"\n{extra_opts}"
        ),
    )
}

/// The `log` fields of container `id`'s records from `source`, in arrival order.
pub fn lines_of<'a>(records: &'a [FluentRecord], id: &str, source: &str) -> Vec<&'a str> {
    records
        .iter()
        .filter(|r| r.get("container_id") == Some(id) && r.get("source") == Some(source))
        .map(|r| r.get("log").unwrap_or(""))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        rmpv::encode::write_value(&mut out, v).unwrap();
        out
    }

    fn rec(log: &str) -> Value {
        Value::Map(vec![(Value::from("log"), Value::from(log))])
    }

    fn event_time(s: u32, n: u32) -> Value {
        let mut b = s.to_be_bytes().to_vec();
        b.extend_from_slice(&n.to_be_bytes());
        Value::Ext(0, b)
    }

    fn opt(pairs: Vec<(&str, Value)>) -> Value {
        Value::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Value::from(k), v))
                .collect(),
        )
    }

    #[test]
    fn modes() {
        let m = Value::Array(vec!["t".into(), 5.into(), rec("a")]);
        let (r, c) = check_frame(&m).unwrap();
        assert_eq!(r[0].mode, FrameMode::Message);
        assert_eq!(r[0].time, FluentTime::Seconds(5));
        assert_eq!(r[0].get("log"), Some("a"));
        assert_eq!(c, None);

        let entry = |t: Value, l: &str| Value::Array(vec![t, rec(l)]);
        let f = Value::Array(vec![
            "t".into(),
            Value::Array(vec![entry(1.into(), "a"), entry(event_time(2, 3), "b")]),
            opt(vec![("size", 2.into()), ("chunk", "q".into())]),
        ]);
        let (r, c) = check_frame(&f).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[1].time, FluentTime::Event { secs: 2, nanos: 3 });
        assert_eq!(c.as_deref(), Some("q"));

        let mut packed = enc(&entry(1.into(), "a"));
        packed.extend(enc(&entry(event_time(9, 9), "b")));
        let p = Value::Array(vec![
            "t".into(),
            Value::Binary(packed.clone()),
            opt(vec![("size", 2.into())]),
        ]);
        let (r, _) = check_frame(&p).unwrap();
        assert_eq!(r[1].get("log"), Some("b"));
        assert_eq!(r[0].mode, FrameMode::PackedForward);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&packed).unwrap();
        let cp = Value::Array(vec![
            "t".into(),
            Value::Binary(gz.finish().unwrap()),
            opt(vec![("size", 2.into()), ("compressed", "gzip".into())]),
        ]);
        let (r, _) = check_frame(&cp).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].mode, FrameMode::CompressedPackedForward);
    }

    #[test]
    fn spec_violations() {
        let entry = Value::Array(vec![1.into(), rec("a")]);
        let bad = [
            Value::from("t"),
            Value::Array(vec![1.into(), 1.into(), rec("a")]),
            Value::Array(vec!["t".into(), Value::Ext(0, vec![0; 4]), rec("a")]),
            Value::Array(vec!["t".into(), Value::Ext(1, vec![0; 8]), rec("a")]),
            Value::Array(vec!["t".into(), Value::from(-1), rec("a")]),
            Value::Array(vec!["t".into(), 1.into(), Value::from("x")]),
            Value::Array(vec![
                "t".into(),
                Value::Array(vec![entry.clone()]),
                opt(vec![("size", 2.into())]),
            ]),
            Value::Array(vec![
                "t".into(),
                Value::Array(vec![entry.clone()]),
                opt(vec![("nope", 2.into())]),
            ]),
            Value::Array(vec!["t".into(), Value::Binary(vec![0x92, 0x01])]),
        ];
        for f in bad {
            assert!(check_frame(&f).is_err(), "{f}");
        }
    }

    #[test]
    fn incomplete_and_garbage() {
        let full = enc(&Value::Array(vec!["t".into(), 1.into(), rec("abc")]));
        for cut in 0..full.len() {
            assert_eq!(decode_one(&full[..cut]).unwrap(), None);
        }
        assert_eq!(decode_one(&full).unwrap().unwrap().1, full.len());
        let packed = enc(&Value::Array(vec![
            "tag".into(),
            Value::Binary(vec![0; 70000]),
            opt(vec![("size", 0.into())]),
        ]));
        assert_eq!(frame_len_hint(&packed[..10]), 1 + 4 + 5 + 70000);
        assert_eq!(decode_one(&packed[..70009]).unwrap(), None);
        assert_eq!(decode_one(&packed).unwrap().unwrap().1, packed.len());
        // The reserved marker decodes to no frame the spec knows.
        let odd = decode_one(&[0xc1]);
        assert!(odd.map_or(true, |v| v.is_some_and(|(v, _)| check_frame(&v).is_err())));
    }

    #[test]
    fn acks_restarts_and_stalls_over_a_socket() {
        let mut r = Receiver::tcp();
        let Listen::Tcp(addr) = r.listen.clone() else {
            unreachable!()
        };
        let frame = |c: &str| {
            enc(&Value::Array(vec![
                "t".into(),
                Value::Array(vec![Value::Array(vec![1.into(), rec(c)])]),
                opt(vec![("chunk", c.into())]),
            ]))
        };
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&frame("one")).unwrap();
        let mut ack = vec![0u8; 64];
        let n = s.read(&mut ack).unwrap();
        let (v, _) = decode_one(&ack[..n]).unwrap().unwrap();
        assert_eq!(v, Value::Map(vec![("ack".into(), "one".into())]));
        r.stop();
        assert!(TcpStream::connect(addr).is_err());
        r.start();
        r.set_ack(false);
        let mut s = TcpStream::connect(addr).unwrap();
        s.write_all(&frame("two")).unwrap();
        assert!(r.wait_for(Duration::from_secs(5), |v| v.len() == 2));
        assert_eq!(r.frames(), (2, 1));
        r.set_stall(true);
        s.write_all(&frame("three")).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(r.count(), 2);
        r.set_stall(false);
        assert!(r.wait_for(Duration::from_secs(5), |v| v.len() == 3));
        assert!(r.errors().is_empty(), "{:?}", r.errors());
    }
}
