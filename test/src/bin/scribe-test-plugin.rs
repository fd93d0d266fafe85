//! A Docker logging plugin for end-to-end tests, serving the LogDriver protocol (what dockerd
//! and Scribe's plugin driver call) over HTTP/1.1 on a unix socket, and recording everything it
//! is sent so a test can compare it with what the container wrote.
//!
//! Usage: `scribe-test-plugin --socket PATH --out DIR [--discard] [--stalled]
//! [--crash-after-frames N] [--crash-mid-frame N]`
//!
//! - `/Plugin.Activate` answers `{"Implements": ["LogDriver"]}`; `/LogDriver.Capabilities`
//!   answers `{"Cap": {"ReadLogs": false}}` (so a host keeps its own cache for reading back);
//!   `/LogDriver.ReadLogs` and any other path answer 404 with an `Err`.
//! - `/LogDriver.StartLogging` answers at once; a thread opens the FIFO O_RDONLY and decodes
//!   `[u32 BE size][LogEntry]` frames, appending each entry as one JSON line to
//!   `DIR/<container_id>.jsonl` (flushed before the next frame is read): `container_id`,
//!   `source`, `time_nano`, `line` (the text when it is UTF-8, else `line_b64`), `partial`,
//!   `partial_id`, `partial_ordinal`, `partial_last` (null when the entry has no metadata).
//! - `/LogDriver.StopLogging` answers only after the FIFO was read to EOF or to empty.
//! - Every call goes to `DIR/calls.jsonl`: `method`, `file`, `container_id`, `time_nano`, `pid`
//!   (the caller's, from SO_PEERCRED: which shim or dockerd sent it); a
//!   StartLogging adds `info` (the whole Info), a StopLogging the `frames` and `bytes` read from
//!   that FIFO and `error` when its stream was malformed or cut inside a frame.
//! - Commands: SIGUSR1 stalls (no FIFO is read), SIGUSR2 resumes, `--stalled` starts stalled;
//!   SIGTERM and SIGKILL end it at once (the default actions); `--crash-after-frames N` exits
//!   with status 3 right after writing the Nth frame (all FIFOs together);
//!   `--crash-mid-frame N` exits with status 3 after taking the size and half the body of
//!   frame N+1 out of its FIFO (so the host finds a cut frame).
//! - Frames are read one at a time (size, then body), so a crash loses at most the frame being
//!   read. `--discard`: frames are counted, not written, and read in large chunks (for
//!   benchmarks); `calls.jsonl` still is written.
//! - A stale socket file is removed at start, so a restart reuses the same path; the socket
//!   appears only once it accepts connections (bound under a temporary name, then renamed).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use scribe_io::localfmt::{EntryRef, SIZE_LEN};
use scribe_io::plugin::frame::decode_frame;
use scribe_io::plugin::proto;
use serde_json::{json, Value};

/// Set by SIGUSR1, cleared by SIGUSR2: FIFO readers stop reading.
static STALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stall(_: libc::c_int) {
    STALLED.store(true, Ordering::SeqCst);
}

extern "C" fn on_resume(_: libc::c_int) {
    STALLED.store(false, Ordering::SeqCst);
}

/// What the command line asked for.
struct Config {
    socket: PathBuf,
    out: PathBuf,
    discard: bool,
    crash_after: Option<u64>,
    crash_mid: Option<u64>,
}

fn parse_args() -> Result<(Config, bool), String> {
    let mut socket = None;
    let mut out = None;
    let mut discard = false;
    let mut stalled = false;
    let mut crash_after = None;
    let mut crash_mid = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--socket" => socket = Some(PathBuf::from(value("--socket")?)),
            "--out" => out = Some(PathBuf::from(value("--out")?)),
            "--discard" => discard = true,
            "--stalled" => stalled = true,
            "--crash-after-frames" => {
                let v = value("--crash-after-frames")?;
                crash_after = Some(
                    v.parse()
                        .map_err(|e| format!("--crash-after-frames {v:?}: {e}"))?,
                );
            }
            "--crash-mid-frame" => {
                let v = value("--crash-mid-frame")?;
                crash_mid = Some(
                    v.parse()
                        .map_err(|e| format!("--crash-mid-frame {v:?}: {e}"))?,
                );
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((
        Config {
            socket: socket.ok_or("--socket is required")?,
            out: out.ok_or("--out is required")?,
            discard,
            crash_after,
            crash_mid,
        },
        stalled,
    ))
}

fn now_nano() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The state of one FIFO being read.
#[derive(Default)]
struct Stream {
    /// StopLogging came: finish at EOF or when nothing more is there.
    stop: bool,
    /// The reader finished; its counts and error, for StopLogging's record.
    done: Option<(u64, u64, Option<String>)>,
}

/// Shared by the connection and reader threads.
struct Plugin {
    cfg: Config,
    calls: Mutex<File>,
    streams: Mutex<HashMap<String, Stream>>,
    changed: Condvar,
    frames: AtomicU64,
}

impl Plugin {
    fn record_call(&self, peer: i32, mut v: Value) {
        v["time_nano"] = json!(now_nano());
        v["pid"] = json!(peer);
        let mut line = v.to_string();
        line.push('\n');
        let mut f = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = f.write_all(line.as_bytes()) {
            eprintln!("scribe-test-plugin: writing calls.jsonl: {e}");
        }
    }

    fn set_done(&self, file: &str, done: (u64, u64, Option<String>)) {
        let mut s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        s.entry(file.to_owned()).or_default().done = Some(done);
        self.changed.notify_all();
    }

    fn stop_requested(&self, file: &str) -> bool {
        let s = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        s.get(file).is_some_and(|s| s.stop)
    }
}

/// A parsed HTTP request: method, path, body, and whether the connection stays open.
struct Request {
    method: String,
    path: String,
    body: Vec<u8>,
    keep_alive: bool,
}

/// Reads one request; `Ok(None)` at a clean end of the connection.
fn read_request(r: &mut BufReader<UnixStream>) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let mut line = Vec::new();
        if r.read_until(b'\n', &mut line)? == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside a request head",
            ));
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_owned();
        if text.is_empty() {
            if head.is_empty() {
                continue; // stray CRLF between requests
            }
            break;
        }
        head.push(text);
        if head.len() > 200 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "header too long",
            ));
        }
    }
    let mut first = head[0].split_whitespace();
    let method = first.next().unwrap_or("").to_owned();
    let path = first.next().unwrap_or("").to_owned();
    let version = first.next().unwrap_or("HTTP/1.1").to_owned();
    let mut length = 0usize;
    let mut chunked = false;
    let mut keep_alive = version != "HTTP/1.0";
    for h in &head[1..] {
        let Some((k, v)) = h.split_once(':') else {
            continue;
        };
        let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
        match k.as_str() {
            "content-length" => {
                length = v.parse().map_err(|e| {
                    io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("Content-Length {v:?}: {e}"),
                    )
                })?
            }
            "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
            "connection" => keep_alive = !v.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let hex = size.trim().split(';').next().unwrap_or("");
            let n = usize::from_str_radix(hex, 16).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("chunk size {hex:?}: {e}"),
                )
            })?;
            let mut chunk = vec![0; n + 2]; // with its CRLF
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    } else {
        body.resize(length, 0);
        r.read_exact(&mut body)?;
    }
    Ok(Some(Request {
        method,
        path,
        body,
        keep_alive,
    }))
}

fn respond(w: &mut UnixStream, status: u16, body: &Value) -> io::Result<()> {
    let body = body.to_string();
    let reason = if status == 200 { "OK" } else { "Error" };
    let msg = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n\r\n{body}",
        proto::ACCEPT,
        body.len()
    );
    w.write_all(msg.as_bytes())
}

/// The pid of the process at the other end of `conn` (SO_PEERCRED), so calls can be told apart
/// per host process (one shim, one dockerd); 0 when unknown.
fn peer_pid(conn: &UnixStream) -> i32 {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for the call and sized for SO_PEERCRED.
    let rc = unsafe {
        libc::getsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        cred.pid
    } else {
        0
    }
}

fn serve_connection(p: Arc<Plugin>, conn: UnixStream) {
    let mut w = match conn.try_clone() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("scribe-test-plugin: dup connection: {e}");
            return;
        }
    };
    let peer = peer_pid(&conn);
    let mut r = BufReader::new(conn);
    loop {
        let req = match read_request(&mut r) {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(e) => {
                eprintln!("scribe-test-plugin: reading a request: {e}");
                return;
            }
        };
        let (status, body) = handle(&p, &req, peer);
        if let Err(e) = respond(&mut w, status, &body) {
            eprintln!("scribe-test-plugin: answering {}: {e}", req.path);
            return;
        }
        if !req.keep_alive {
            return;
        }
    }
}

fn handle(p: &Arc<Plugin>, req: &Request, peer: i32) -> (u16, Value) {
    let err = |status: u16, msg: String| (status, json!({ "Err": msg }));
    if req.method != "POST" {
        return err(405, format!("{} {}: only POST", req.method, req.path));
    }
    match req.path.as_str() {
        proto::ACTIVATE => {
            p.record_call(peer, json!({ "method": "Activate" }));
            (200, json!({ "Implements": ["LogDriver"] }))
        }
        proto::CAPABILITIES => {
            p.record_call(peer, json!({ "method": "Capabilities" }));
            (200, json!({ "Cap": { "ReadLogs": false }, "Err": "" }))
        }
        proto::START_LOGGING => {
            // Read as plain JSON, not as scribe_io's typed Info: dockerd sends `null` for
            // empty lists (ContainerArgs, ContainerEnv), and the plugin must take what the
            // real host sends.
            let raw: Value = match serde_json::from_slice(&req.body) {
                Ok(v) => v,
                Err(e) => return err(400, format!("StartLogging body: {e}")),
            };
            let file = raw["File"].as_str().unwrap_or("").to_owned();
            let id = raw["Info"]["ContainerID"].as_str().unwrap_or("").to_owned();
            p.record_call(
                peer,
                json!({
                    "method": "StartLogging",
                    "file": file,
                    "container_id": id,
                    "info": raw.get("Info").cloned().unwrap_or(Value::Null),
                }),
            );
            if file.is_empty() {
                return err(400, "StartLogging without File".into());
            }
            if id.is_empty() {
                return err(400, "StartLogging without ContainerID".into());
            }
            {
                let mut s = p.streams.lock().unwrap_or_else(|e| e.into_inner());
                s.insert(file.clone(), Stream::default());
            }
            let p2 = Arc::clone(p);
            std::thread::spawn(move || {
                let done = read_fifo(&p2, &file, &id);
                p2.set_done(&file, done);
            });
            (200, json!({ "Err": "" }))
        }
        proto::STOP_LOGGING => {
            let stop: proto::StopLoggingRequest = match serde_json::from_slice(&req.body) {
                Ok(s) => s,
                Err(e) => return err(400, format!("StopLogging body: {e}")),
            };
            let mut s = p.streams.lock().unwrap_or_else(|e| e.into_inner());
            let Some(st) = s.get_mut(&stop.file) else {
                drop(s);
                p.record_call(
                    peer,
                    json!({
                        "method": "StopLogging",
                        "file": stop.file,
                        "error": "no StartLogging for this file",
                    }),
                );
                return err(400, format!("StopLogging {}: not started", stop.file));
            };
            st.stop = true;
            let done = loop {
                if let Some(d) = s.get_mut(&stop.file).and_then(|st| st.done.take()) {
                    break d;
                }
                s = p.changed.wait(s).unwrap_or_else(|e| e.into_inner());
            };
            s.remove(&stop.file);
            drop(s);
            let (frames, bytes, error) = done;
            p.record_call(
                peer,
                json!({
                    "method": "StopLogging",
                    "file": stop.file,
                    "frames": frames,
                    "bytes": bytes,
                    "error": error,
                }),
            );
            (200, json!({ "Err": "" }))
        }
        proto::READ_LOGS => err(404, "this plugin cannot read logs back".into()),
        other => err(404, format!("{other}: not served")),
    }
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn entry_json(id: &str, e: &EntryRef<'_>) -> Value {
    let mut v = json!({
        "container_id": id,
        "source": e.source,
        "time_nano": e.time_nano,
        "partial": e.partial,
        "partial_id": e.partial_meta.as_ref().map(|m| m.id),
        "partial_ordinal": e.partial_meta.as_ref().map(|m| m.ordinal),
        "partial_last": e.partial_meta.as_ref().map(|m| m.last),
    });
    match std::str::from_utf8(e.line) {
        Ok(t) => v["line"] = json!(t),
        Err(_) => v["line_b64"] = json!(b64(e.line)),
    }
    v
}

/// Reads the FIFO `file` until EOF, or until it is empty after StopLogging; returns the frames
/// and bytes read and what went wrong, if anything.
fn read_fifo(p: &Plugin, file: &str, id: &str) -> (u64, u64, Option<String>) {
    let mut frames = 0u64;
    let mut bytes = 0u64;
    // Blocks until the host has the FIFO open for writing (it opens it before StartLogging).
    let mut fifo = match File::open(file) {
        Ok(f) => f,
        Err(e) => return (0, 0, Some(format!("open {file}: {e}"))),
    };
    let mut out = if p.cfg.discard {
        None
    } else {
        let path = p.cfg.out.join(format!("{id}.jsonl"));
        match OpenOptions::new().create(true).append(true).open(&path) {
            Ok(f) => Some(f),
            Err(e) => return (0, 0, Some(format!("open {}: {e}", path.display()))),
        }
    };
    let mut buf: Vec<u8> = Vec::with_capacity(256 * 1024);
    let mut chunk = vec![0u8; 128 * 1024];
    loop {
        if STALLED.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let mut pfd = libc::pollfd {
            fd: fifo.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return (frames, bytes, Some(format!("poll {file}: {e}")));
        }
        if n == 0 {
            if p.stop_requested(file) {
                let rest = (!buf.is_empty())
                    .then(|| format!("{} bytes of a cut frame at StopLogging", buf.len()));
                return (frames, bytes, rest);
            }
            continue;
        }
        // Recording: read one frame at a time (its size, then the rest), so a crash loses at
        // most the frame being read; counting only: read as much as is there.
        let want = if p.cfg.discard {
            chunk.len()
        } else if buf.len() < SIZE_LEN {
            SIZE_LEN - buf.len()
        } else {
            let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            (SIZE_LEN + size)
                .saturating_sub(buf.len())
                .clamp(1, chunk.len())
        };
        // `--crash-mid-frame N`: after N frames, take the next one's size and half its body
        // out of the FIFO, then die: the host sees a cut frame.
        let cut_here =
            p.cfg.crash_mid.is_some() && p.cfg.crash_mid == Some(p.frames.load(Ordering::SeqCst));
        let want = if cut_here && buf.len() >= SIZE_LEN {
            let size = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            (size / 2).max(1)
        } else {
            want
        };
        let got = match fifo.read(&mut chunk[..want]) {
            Ok(0) => {
                let rest =
                    (!buf.is_empty()).then(|| format!("{} bytes of a cut frame at EOF", buf.len()));
                return (frames, bytes, rest);
            }
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return (frames, bytes, Some(format!("read {file}: {e}"))),
        };
        bytes += got as u64;
        buf.extend_from_slice(&chunk[..got]);
        if cut_here && buf.len() > SIZE_LEN {
            eprintln!("scribe-test-plugin: crashing inside frame {}", frames + 1);
            // SAFETY: ends the process at once, as a crash would.
            unsafe { libc::_exit(3) };
        }
        let mut at = 0;
        loop {
            match decode_frame(&buf[at..]) {
                Ok(Some((entry, used))) => {
                    if let Some(f) = out.as_mut() {
                        let mut line = entry_json(id, &entry).to_string();
                        line.push('\n');
                        if let Err(e) = f.write_all(line.as_bytes()) {
                            return (frames, bytes, Some(format!("writing {id}.jsonl: {e}")));
                        }
                    }
                    at += used;
                    frames += 1;
                    let total = p.frames.fetch_add(1, Ordering::SeqCst) + 1;
                    if p.cfg.crash_after == Some(total) {
                        eprintln!("scribe-test-plugin: crashing after {total} frames");
                        // SAFETY: ends the process at once, as a crash would.
                        unsafe { libc::_exit(3) };
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    return (
                        frames,
                        bytes,
                        Some(format!("bad frame after {frames} frames: {e}")),
                    )
                }
            }
        }
        buf.drain(..at);
    }
}

fn listen(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("remove stale {}: {e}", path.display()),
            ))
        }
    }
    let tmp = path.with_file_name(format!(
        ".{}.{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("plugin"),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let l = UnixListener::bind(&tmp)
        .map_err(|e| io::Error::new(e.kind(), format!("bind {}: {e}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("rename {} to {}: {e}", tmp.display(), path.display()),
        )
    })?;
    Ok(l)
}

fn main() {
    let (cfg, stalled) = match parse_args() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("scribe-test-plugin: {e}");
            std::process::exit(2);
        }
    };
    STALLED.store(stalled, Ordering::SeqCst);
    // SAFETY: the handlers only store to an atomic.
    unsafe {
        libc::signal(libc::SIGUSR1, on_stall as *const () as libc::sighandler_t);
        libc::signal(libc::SIGUSR2, on_resume as *const () as libc::sighandler_t);
        // A host that goes away mid-answer must not kill the plugin.
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    if let Err(e) = std::fs::create_dir_all(&cfg.out) {
        eprintln!("scribe-test-plugin: mkdir {}: {e}", cfg.out.display());
        std::process::exit(1);
    }
    let calls = match OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.out.join("calls.jsonl"))
    {
        Ok(f) => f,
        Err(e) => {
            eprintln!("scribe-test-plugin: calls.jsonl: {e}");
            std::process::exit(1);
        }
    };
    let listener = match listen(&cfg.socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("scribe-test-plugin: {e}");
            std::process::exit(1);
        }
    };
    let p = Arc::new(Plugin {
        cfg,
        calls: Mutex::new(calls),
        streams: Mutex::new(HashMap::new()),
        changed: Condvar::new(),
        frames: AtomicU64::new(0),
    });
    for conn in listener.incoming() {
        match conn {
            Ok(c) => {
                let p = Arc::clone(&p);
                std::thread::spawn(move || serve_connection(p, c));
            }
            Err(e) => eprintln!("scribe-test-plugin: accept: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::b64;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(b64(b""), "");
        assert_eq!(b64(b"f"), "Zg==");
        assert_eq!(b64(b"fo"), "Zm8=");
        assert_eq!(b64(b"foo"), "Zm9v");
        assert_eq!(b64(b"foobar"), "Zm9vYmFy");
    }
}
