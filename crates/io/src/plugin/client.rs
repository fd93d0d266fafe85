//! The host's HTTP client for plugin calls: one `POST /<Method>` per connection, JSON in and
//! out, every call bounded by a timeout. Async, because the plugin driver runs on the shim's
//! tokio runtime and must never block its thread.
//!
//! Requests carry dockerd's headers ([`ACCEPT`], `Host: plugin.moby.localhost` on unix sockets,
//! `Content-Length`) and `Connection: close`. Replies are parsed with `httparse`; the body may
//! be sized by `Content-Length` (Go's net/http does so for small replies), chunked (what it
//! uses for streamed ones) or delimited by the close of the connection. A status other than
//! 200 is an error carrying the reply's `Err` field, else its body.

use std::fmt;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::discovery::PluginAddr;
use super::proto::{ErrResponse, ACCEPT, UNIX_HOST};

/// The default bound on one call (connect, request, whole reply).
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest reply body accepted (plugin replies are small JSON documents).
pub const MAX_BODY: usize = 4 << 20;

/// A failed call, with the method and the address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallError {
    /// `/Plugin.Activate`, ...
    pub method: String,
    /// The plugin's address.
    pub addr: String,
    /// What went wrong.
    pub kind: CallErrorKind,
}

/// What went wrong in a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallErrorKind {
    /// Could not connect (the plugin is not running there): worth retrying later.
    Connect(String),
    /// The connection failed or timed out mid-call, or the reply was not HTTP.
    Transport(String),
    /// The plugin answered with an error (non-200 status or a non-empty `Err`).
    Plugin(String),
}

impl CallError {
    /// Whether the plugin could not be reached at all.
    pub fn is_connect(&self) -> bool {
        matches!(self.kind, CallErrorKind::Connect(_))
    }
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, m) = match &self.kind {
            CallErrorKind::Connect(m) => ("connect", m),
            CallErrorKind::Transport(m) => ("call", m),
            CallErrorKind::Plugin(m) => ("plugin error", m),
        };
        write!(f, "log plugin {} {}: {what}: {m}", self.addr, self.method)
    }
}

impl std::error::Error for CallError {}

/// A parsed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The HTTP status.
    pub status: u16,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

/// Builds the request bytes of `POST path` with `body`.
pub fn request(addr: &PluginAddr, path: &str, body: &[u8]) -> Vec<u8> {
    let host = match addr {
        PluginAddr::Unix(_) => UNIX_HOST,
        PluginAddr::Tcp(h) => h.as_str(),
    };
    let mut out = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: scribe\r\nAccept: {ACCEPT}\r\nContent-Type: {ACCEPT}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A reply's status line and headers, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The HTTP status.
    pub status: u16,
    /// Bytes the status line and headers take.
    pub len: usize,
    /// `Content-Length`, if given.
    pub length: Option<usize>,
    /// `Transfer-Encoding: chunked`.
    pub chunked: bool,
}

/// Parses the head of a reply from `buf`: `Ok(None)` when more bytes are needed (`eof`: the
/// peer closed first, an error).
pub fn parse_head(buf: &[u8], eof: bool) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if eof => {
            return Err("connection closed before the reply's headers ended".into())
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("malformed HTTP reply: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let mut length: Option<usize> = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("bad Content-Length")?;
            length = Some(v);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = std::str::from_utf8(h.value)
                .is_ok_and(|v| v.to_ascii_lowercase().contains("chunked"));
        }
    }
    Ok(Some(Head {
        status,
        len: head_len,
        length,
        chunked,
    }))
}

/// Parses a reply from `buf`: `Ok(None)` when more bytes are needed (`eof` says the peer closed,
/// which completes a body without length). Errors say what is malformed.
pub fn parse_response(buf: &[u8], eof: bool) -> Result<Option<Response>, String> {
    let Some(Head {
        status,
        len: head_len,
        length,
        chunked,
    }) = parse_head(buf, eof)?
    else {
        return Ok(None);
    };
    let rest = &buf[head_len..];
    let body = if chunked {
        match dechunk(rest)? {
            Some(b) => b,
            None if eof => return Err("connection closed inside a chunked body".into()),
            None => return Ok(None),
        }
    } else if let Some(n) = length {
        if n > MAX_BODY {
            return Err(format!("reply body of {n} bytes is too large"));
        }
        if rest.len() < n {
            if eof {
                return Err(format!(
                    "connection closed after {} of {n} body bytes",
                    rest.len()
                ));
            }
            return Ok(None);
        }
        rest[..n].to_vec()
    } else if status == 204 || status == 304 || (100..200).contains(&status) {
        Vec::new()
    } else if eof {
        rest.to_vec()
    } else {
        return Ok(None);
    };
    Ok(Some(Response { status, body }))
}

/// Decodes a complete chunked body; `Ok(None)` when incomplete.
fn dechunk(mut buf: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
            return Ok(None);
        };
        let line = std::str::from_utf8(&buf[..eol]).map_err(|_| "bad chunk size line")?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
        buf = &buf[eol + 2..];
        if size == 0 {
            // Trailers (if any) end with an empty line.
            return Ok(if buf.windows(2).any(|w| w == b"\r\n") {
                Some(out)
            } else {
                None
            });
        }
        if out.len() + size > MAX_BODY {
            return Err("chunked reply body is too large".into());
        }
        if buf.len() < size + 2 {
            return Ok(None);
        }
        if &buf[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".into());
        }
        out.extend_from_slice(&buf[..size]);
        buf = &buf[size + 2..];
    }
}

/// The error a reply stands for: a non-200 status (its `Err` field, else its body), or a 200
/// whose `Err` is set.
pub fn reply_error(r: &Response) -> Option<String> {
    let err = serde_json::from_slice::<ErrResponse>(&r.body)
        .ok()
        .map(|e| e.err)
        .filter(|e| !e.is_empty());
    if r.status != 200 {
        let what = err.unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_owned());
        return Some(format!("HTTP {}: {what}", r.status));
    }
    err
}

/// Decodes a chunked body as it arrives (a streamed reply has no size limit).
#[derive(Debug, Default)]
pub struct Dechunker {
    /// Bytes not decoded yet.
    buf: Vec<u8>,
    /// Data bytes left in the current chunk (and then its CRLF).
    left: usize,
    /// Inside a chunk's data.
    in_chunk: bool,
    /// The last chunk was seen.
    pub done: bool,
}

impl Dechunker {
    /// Feeds wire bytes; calls `out` with each run of body bytes. Errors say what is malformed.
    pub fn feed(&mut self, data: &[u8], out: &mut dyn FnMut(&[u8])) -> Result<(), String> {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        while !self.done {
            let rest = &self.buf[pos..];
            if self.in_chunk {
                if self.left > 0 {
                    let n = rest.len().min(self.left);
                    if n == 0 {
                        break;
                    }
                    out(&rest[..n]);
                    self.left -= n;
                    pos += n;
                    continue;
                }
                if rest.len() < 2 {
                    break;
                }
                if &rest[..2] != b"\r\n" {
                    return Err("chunk not followed by CRLF".into());
                }
                pos += 2;
                self.in_chunk = false;
                continue;
            }
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                if rest.len() > 4096 {
                    return Err("chunk size line too long".into());
                }
                break;
            };
            let line = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size line")?;
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size {size_hex:?}"))?;
            pos += eol + 2;
            if size == 0 {
                self.done = true;
            } else {
                self.left = size;
                self.in_chunk = true;
            }
        }
        self.buf.drain(..pos);
        Ok(())
    }
}

/// One open connection to a plugin, unix or tcp.
pub enum Conn {
    /// A unix socket.
    Unix(UnixStream),
    /// A tcp connection.
    Tcp(TcpStream),
}

impl Conn {
    /// Connects to `addr`.
    pub async fn connect(addr: &PluginAddr) -> std::io::Result<Conn> {
        Ok(match addr {
            PluginAddr::Unix(p) => Conn::Unix(UnixStream::connect(p).await?),
            PluginAddr::Tcp(h) => Conn::Tcp(TcpStream::connect(h.as_str()).await?),
        })
    }

    /// The pid of the peer (unix sockets only): tells a restarted plugin from the same one.
    pub fn peer_pid(&self) -> Option<i32> {
        match self {
            Conn::Unix(s) => s.peer_cred().ok().and_then(|c| c.pid()),
            Conn::Tcp(_) => None,
        }
    }

    async fn write_all(&mut self, b: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.write_all(b).await,
            Conn::Tcp(s) => s.write_all(b).await,
        }
    }

    /// Reads into `buf` (0: end of stream).
    pub async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => read_some(s, buf).await,
            Conn::Tcp(s) => read_some(s, buf).await,
        }
    }
}

async fn read_some<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    s.read(buf).await
}

/// `POST path` with `body`; the whole call bounded by `timeout`. Returns the reply body of a
/// successful call.
pub async fn call(
    addr: &PluginAddr,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, CallError> {
    let err = |kind| CallError {
        method: path.to_owned(),
        addr: addr.to_string(),
        kind,
    };
    let mut conn = match tokio::time::timeout(timeout, Conn::connect(addr)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(err(CallErrorKind::Connect(e.to_string()))),
        Err(_) => {
            return Err(err(CallErrorKind::Connect(format!(
                "timed out after {timeout:?}"
            ))))
        }
    };
    let req = request(addr, path, body);
    let exchange = async {
        conn.write_all(&req).await.map_err(|e| e.to_string())?;
        let mut buf = Vec::with_capacity(512);
        let mut chunk = [0u8; 8192];
        loop {
            let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
            buf.extend_from_slice(&chunk[..n]);
            if let Some(r) = parse_response(&buf, n == 0)? {
                return Ok::<Response, String>(r);
            }
            if buf.len() > MAX_BODY + 64 * 1024 {
                return Err("reply too large".into());
            }
        }
    };
    let resp = match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(err(CallErrorKind::Transport(e))),
        Err(_) => {
            return Err(err(CallErrorKind::Transport(format!(
                "no complete reply within {timeout:?}"
            ))))
        }
    };
    match reply_error(&resp) {
        Some(e) => Err(err(CallErrorKind::Plugin(e))),
        None => Ok(resp.body),
    }
}

/// `POST path` with `body` whose successful reply is streamed: each run of body bytes goes to
/// `on_data` as it arrives (chunked, sized or up to the close), until the body ends or
/// `on_data` returns false. Only connecting is bounded (by `connect_timeout`): a followed
/// reply lasts as long as the plugin keeps it open. A non-200 reply is read whole (bounded)
/// and is an error with its `Err`.
pub async fn call_stream(
    addr: &PluginAddr,
    path: &str,
    body: &[u8],
    connect_timeout: Duration,
    on_data: &mut dyn FnMut(&[u8]) -> bool,
) -> Result<(), CallError> {
    let err = |kind| CallError {
        method: path.to_owned(),
        addr: addr.to_string(),
        kind,
    };
    let mut conn = match tokio::time::timeout(connect_timeout, Conn::connect(addr)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(err(CallErrorKind::Connect(e.to_string()))),
        Err(_) => {
            return Err(err(CallErrorKind::Connect(format!(
                "timed out after {connect_timeout:?}"
            ))))
        }
    };
    let transport = |e: std::io::Error| err(CallErrorKind::Transport(e.to_string()));
    conn.write_all(&request(addr, path, body))
        .await
        .map_err(transport)?;
    let mut buf = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 64 * 1024];
    let head = loop {
        let n = conn.read(&mut chunk).await.map_err(transport)?;
        buf.extend_from_slice(&chunk[..n]);
        match parse_head(&buf, n == 0).map_err(|e| err(CallErrorKind::Transport(e)))? {
            Some(h) => break h,
            None if buf.len() > 64 * 1024 => {
                return Err(err(CallErrorKind::Transport("reply head too large".into())))
            }
            None => {}
        }
    };
    if head.status != 200 {
        // The error reply is small: read it whole, bounded.
        let whole = async {
            loop {
                if let Some(r) = parse_response(&buf, false)? {
                    return Ok::<Response, String>(r);
                }
                let n = conn.read(&mut chunk).await.map_err(|e| e.to_string())?;
                buf.extend_from_slice(&chunk[..n]);
                if n == 0 {
                    return parse_response(&buf, true)?
                        .ok_or_else(|| "connection closed mid-reply".to_string());
                }
                if buf.len() > MAX_BODY + 64 * 1024 {
                    return Err("reply too large".into());
                }
            }
        };
        let resp = tokio::time::timeout(CALL_TIMEOUT, whole)
            .await
            .map_err(|_| err(CallErrorKind::Transport("error reply not complete".into())))?
            .map_err(|e| err(CallErrorKind::Transport(e)))?;
        let m = reply_error(&resp).unwrap_or_else(|| format!("HTTP {}", resp.status));
        return Err(err(CallErrorKind::Plugin(m)));
    }
    let mut open = true;
    let mut rest = buf.split_off(head.len);
    let mut dechunk = head.chunked.then(Dechunker::default);
    let mut left = head.length.filter(|_| !head.chunked);
    loop {
        if !rest.is_empty() {
            match (&mut dechunk, &mut left) {
                (Some(d), _) => d
                    .feed(&rest, &mut |b| {
                        if open {
                            open = on_data(b);
                        }
                    })
                    .map_err(|e| err(CallErrorKind::Transport(e)))?,
                (None, Some(l)) => {
                    let n = rest.len().min(*l);
                    *l -= n;
                    open = on_data(&rest[..n]);
                }
                (None, None) => open = on_data(&rest),
            }
            rest.clear();
        }
        let ended = dechunk.as_ref().is_some_and(|d| d.done) || left == Some(0);
        if !open || ended {
            return Ok(());
        }
        let n = conn.read(&mut chunk).await.map_err(transport)?;
        if n == 0 {
            if dechunk.is_some() || left.is_some() {
                return Err(err(CallErrorKind::Transport(
                    "connection closed before the reply's body ended".into(),
                )));
            }
            return Ok(());
        }
        rest.extend_from_slice(&chunk[..n]);
    }
}

/// [`call`] with a JSON request and reply.
pub async fn call_json<Req: Serialize, Resp: DeserializeOwned>(
    addr: &PluginAddr,
    path: &str,
    req: &Req,
    timeout: Duration,
) -> Result<Resp, CallError> {
    let body = serde_json::to_vec(req).map_err(|e| CallError {
        method: path.to_owned(),
        addr: addr.to_string(),
        kind: CallErrorKind::Transport(format!("encoding the request: {e}")),
    })?;
    let reply = call(addr, path, &body, timeout).await?;
    let reply: &[u8] = if reply.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &reply
    };
    serde_json::from_slice(reply).map_err(|e| CallError {
        method: path.to_owned(),
        addr: addr.to_string(),
        kind: CallErrorKind::Transport(format!("reply is not the expected JSON: {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_dockerds_headers() {
        let r = request(
            &PluginAddr::Unix("/run/p.sock".into()),
            "/Plugin.Activate",
            b"",
        );
        let s = String::from_utf8(r).unwrap();
        assert!(s.starts_with("POST /Plugin.Activate HTTP/1.1\r\n"), "{s}");
        assert!(s.contains("\r\nHost: plugin.moby.localhost\r\n"), "{s}");
        assert!(
            s.contains("\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\n"),
            "{s}"
        );
        assert!(s.contains("\r\nContent-Length: 0\r\n"), "{s}");
        let r = request(&PluginAddr::Tcp("h:1".into()), "/X", b"{}");
        let s = String::from_utf8(r).unwrap();
        assert!(
            s.contains("\r\nHost: h:1\r\n") && s.ends_with("\r\n\r\n{}"),
            "{s}"
        );
    }

    #[test]
    fn content_length_bodies() {
        let full = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{\"Err\":\"\"}";
        // Content-Length 9 of a 10-byte body: the extra byte is not part of it.
        let r = parse_response(full, false).unwrap().unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"{\"Err\":\"\""[..]));
        assert!(parse_response(&full[..20], false).unwrap().is_none());
        assert!(parse_response(&full[..70], false).unwrap().is_none());
        assert!(parse_response(&full[..70], true).is_err());
    }

    #[test]
    fn chunked_bodies() {
        let mut b = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        b.extend_from_slice(b"4\r\n{\"Ca\r\n");
        assert!(parse_response(&b, false).unwrap().is_none());
        b.extend_from_slice(b"B;ext=1\r\np\":null}  \n\r\n0\r\n");
        assert!(parse_response(&b, false).unwrap().is_none());
        b.extend_from_slice(b"\r\n");
        let r = parse_response(&b, false).unwrap().unwrap();
        assert_eq!(r.body, b"{\"Cap\":null}  \n");
        let bad = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(parse_response(bad, false).is_err());
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab";
        assert!(parse_response(cut, true).is_err());
    }

    #[test]
    fn streamed_chunks_decode_cut_anywhere() {
        let wire = b"4\r\nabcd\r\nA;x=1\r\n0123456789\r\n0\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let mut d = Dechunker::default();
            let mut out = Vec::new();
            for piece in wire.chunks(step) {
                d.feed(piece, &mut |b| out.extend_from_slice(b)).unwrap();
            }
            assert!(d.done);
            assert_eq!(out, b"abcd0123456789", "step {step}");
        }
        let mut d = Dechunker::default();
        assert!(d.feed(b"2\r\nabX\r\n", &mut |_| {}).is_err());
        assert!(Dechunker::default().feed(b"zz\r\n", &mut |_| {}).is_err());
    }

    #[test]
    fn close_delimited_bodies() {
        let b = b"HTTP/1.0 200 OK\r\n\r\n{\"Implements\":[\"LogDriver\"]}";
        assert!(parse_response(b, false).unwrap().is_none());
        let r = parse_response(b, true).unwrap().unwrap();
        assert_eq!(r.body, &b[19..]);
        assert!(parse_response(b"HTTP/1.1 20", true).is_err());
        assert!(parse_response(b"garbage\r\n\r\n", false).is_err());
    }

    #[test]
    fn errors_carry_the_err_field_else_the_body() {
        let r = parse_response(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 25\r\n\r\n{\"Err\":\"no such file xy\"}",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(reply_error(&r).unwrap(), "HTTP 500: no such file xy");
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 19\r\n\r\n404 page not found\n",
            false,
        )
        .unwrap()
        .unwrap();
        assert_eq!(reply_error(&r).unwrap(), "HTTP 404: 404 page not found");
        let ok_with_err = Response {
            status: 200,
            body: br#"{"Err":"bad option"}"#.to_vec(),
        };
        assert_eq!(reply_error(&ok_with_err).unwrap(), "bad option");
        let ok = Response {
            status: 200,
            body: br#"{"Err":""}"#.to_vec(),
        };
        assert!(reply_error(&ok).is_none());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn calls_a_unix_plugin_and_times_out() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("p.sock");
        let l = tokio::net::UnixListener::bind(&path).unwrap();
        let server = tokio::spawn(async move {
            // First call: answered chunked. Second: never answered.
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = vec![0u8; 4096];
            let n = s.read(&mut req).await.unwrap();
            let req = String::from_utf8_lossy(&req[..n]).to_string();
            s.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1c\r\n{\"Implements\":[\"LogDriver\"]}\r\n0\r\n\r\n")
                .await
                .unwrap();
            drop(s);
            let (s2, _) = l.accept().await.unwrap();
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(s2);
            req
        });
        let addr = PluginAddr::Unix(path.clone());
        let a: super::super::proto::ActivateResponse =
            call_json(&addr, "/Plugin.Activate", &(), Duration::from_secs(5))
                .await
                .unwrap();
        assert!(a.is_log_driver());
        let e = call(
            &addr,
            "/LogDriver.Capabilities",
            b"null",
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
        assert!(matches!(e.kind, CallErrorKind::Transport(_)), "{e}");
        assert!(e.to_string().contains("/LogDriver.Capabilities"), "{e}");
        server.abort();
        let missing = PluginAddr::Unix(d.path().join("none.sock"));
        let e = call(&missing, "/Plugin.Activate", b"", Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(e.is_connect(), "{e}");
    }
}
