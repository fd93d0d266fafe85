//! The little HTTP/1.1 that dockerd's plugin client speaks: `POST /<Method>` with a
//! `Content-Length` JSON body on a kept-alive connection; replies with a JSON body, or a
//! chunked stream for `ReadLogs`.

use std::io::{self, BufRead, Read, Write};

/// The longest request line or header line accepted.
const MAX_LINE: usize = 8 * 1024;
/// The most header lines accepted.
const MAX_HEADERS: usize = 100;
/// The largest request body accepted: dockerd's bodies are an `Info` (labels, env) of a few KiB.
pub const MAX_BODY: usize = 1 << 20;

/// One request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `POST`, ...
    pub method: String,
    /// `/LogDriver.StartLogging`, ...
    pub path: String,
    /// The body (empty when none was sent).
    pub body: Vec<u8>,
    /// The client asked to close after this request (`Connection: close` or HTTP/1.0).
    pub close: bool,
}

/// Why no request could be read.
#[derive(Debug)]
pub enum HttpError {
    /// The client closed the connection between requests.
    Closed,
    /// The request is malformed: answer 400 with this and close.
    Bad(u16, String),
    /// The connection failed.
    Io(io::Error),
}

impl From<io::Error> for HttpError {
    fn from(e: io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// Reads one line (without `\r\n`), at most [`MAX_LINE`] bytes; `None` at end of input.
fn read_line(r: &mut impl BufRead) -> Result<Option<String>, HttpError> {
    let mut line = Vec::new();
    let n = Read::take(&mut *r, MAX_LINE as u64 + 1).read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if !line.ends_with(b"\n") {
        if line.len() > MAX_LINE {
            return Err(HttpError::Bad(431, "header line too long".into()));
        }
        return Err(HttpError::Bad(
            400,
            "connection closed inside a header".into(),
        ));
    }
    line.pop();
    if line.ends_with(b"\r") {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| HttpError::Bad(400, "header is not UTF-8".into()))
}

/// Reads the next request from a connection.
pub fn read_request(r: &mut impl BufRead) -> Result<Request, HttpError> {
    let mut first = read_line(r)?.ok_or(HttpError::Closed)?;
    // Tolerate empty lines between requests (RFC 9112 2.2).
    while first.is_empty() {
        first = read_line(r)?.ok_or(HttpError::Closed)?;
    }
    let mut parts = first.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Bad(400, format!("bad request line {first:?}")));
    };
    let mut close = match version {
        "HTTP/1.1" => false,
        "HTTP/1.0" => true,
        v => return Err(HttpError::Bad(505, format!("unsupported version {v:?}"))),
    };
    let mut length: Option<usize> = None;
    let mut headers = 0;
    loop {
        let line = read_line(r)?
            .ok_or_else(|| HttpError::Bad(400, "connection closed inside the headers".into()))?;
        if line.is_empty() {
            break;
        }
        headers += 1;
        if headers > MAX_HEADERS {
            return Err(HttpError::Bad(431, "too many headers".into()));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::Bad(400, format!("bad header {line:?}")));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| HttpError::Bad(400, format!("bad Content-Length {value:?}")))?;
            if length.is_some_and(|l| l != n) {
                return Err(HttpError::Bad(400, "conflicting Content-Length".into()));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // dockerd's client always sends a length; a chunked body is not worth the code.
            return Err(HttpError::Bad(
                411,
                "chunked request bodies are not supported; send Content-Length".into(),
            ));
        } else if name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_BODY {
        return Err(HttpError::Bad(
            413,
            format!("request body of {length} bytes (at most {MAX_BODY})"),
        ));
    }
    let mut body = vec![0u8; length];
    r.read_exact(&mut body).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            HttpError::Bad(400, "body shorter than Content-Length".into())
        }
        _ => HttpError::Io(e),
    })?;
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        body,
        close,
    })
}

/// The reason phrase of the statuses this server sends.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        505 => "HTTP Version Not Supported",
        _ => "Error",
    }
}

/// Writes a whole response with a JSON body.
pub fn write_json(w: &mut impl Write, status: u16, body: &[u8], close: bool) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        reason(status),
        scribe_io::plugin::proto::ACCEPT,
        body.len()
    );
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

/// Writes the head of a 200 response whose body follows in chunks ([`Chunked`]).
pub fn write_stream_head(w: &mut impl Write) -> io::Result<()> {
    write!(
        w,
        "HTTP/1.1 200 OK\r\nContent-Type: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
        scribe_io::plugin::proto::ACCEPT
    )?;
    w.flush()
}

/// A chunked response body.
pub struct Chunked<W: Write> {
    inner: W,
}

impl<W: Write> Chunked<W> {
    /// Wraps a connection whose response head was written.
    pub fn new(inner: W) -> Self {
        Chunked { inner }
    }

    /// Sends `data` as one chunk (nothing for empty data: an empty chunk ends the body).
    pub fn chunk(&mut self, data: &[u8]) -> io::Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        write!(self.inner, "{:x}\r\n", data.len())?;
        self.inner.write_all(data)?;
        self.inner.write_all(b"\r\n")?;
        self.inner.flush()
    }

    /// Ends the body.
    pub fn finish(mut self) -> io::Result<W> {
        self.inner.write_all(b"0\r\n\r\n")?;
        self.inner.flush()?;
        Ok(self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &[u8]) -> Result<Request, HttpError> {
        read_request(&mut io::BufReader::new(raw))
    }

    #[test]
    fn dockerds_request_and_keep_alive() {
        let raw = b"POST /LogDriver.Capabilities HTTP/1.1\r\nHost: plugin.moby.localhost\r\nAccept: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: 4\r\n\r\nnullPOST /Plugin.Activate HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        let mut r = io::BufReader::new(&raw[..]);
        let a = read_request(&mut r).unwrap();
        assert_eq!(a.method, "POST");
        assert_eq!(a.path, "/LogDriver.Capabilities");
        assert_eq!(a.body, b"null");
        assert!(!a.close);
        let b = read_request(&mut r).unwrap();
        assert_eq!(b.path, "/Plugin.Activate");
        assert!(b.body.is_empty());
        assert!(b.close);
        assert!(matches!(read_request(&mut r), Err(HttpError::Closed)));
    }

    #[test]
    fn malformed_requests() {
        let bad = |raw: &[u8]| match parse(raw) {
            Err(HttpError::Bad(status, msg)) => (status, msg),
            other => panic!("{other:?}"),
        };
        assert_eq!(bad(b"GARBAGE\r\n\r\n").0, 400);
        assert_eq!(bad(b"POST / HTTP/2\r\n\r\n").0, 505);
        assert_eq!(bad(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n").0, 400);
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").0,
            413
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort").0,
            400
        );
        assert_eq!(
            bad(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").0,
            411
        );
        assert_eq!(bad(b"POST / HTTP/1.1\r\nno colon\r\n\r\n").0, 400);
        let long = format!("POST /{} HTTP/1.1\r\n\r\n", "a".repeat(MAX_LINE + 10));
        assert_eq!(bad(long.as_bytes()).0, 431);
    }

    #[test]
    fn chunked_body() {
        let mut out = Vec::new();
        let mut c = Chunked::new(&mut out);
        c.chunk(b"hello").unwrap();
        c.chunk(b"").unwrap();
        c.chunk(&[7u8; 20]).unwrap();
        c.finish().unwrap();
        let mut want = b"5\r\nhello\r\n14\r\n".to_vec();
        want.extend_from_slice(&[7u8; 20]);
        want.extend_from_slice(b"\r\n0\r\n\r\n");
        assert_eq!(out, want);
    }
}
