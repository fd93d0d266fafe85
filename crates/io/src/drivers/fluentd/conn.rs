//! The fluentd driver's sender: one tokio task per driver on the shim's runtime (no thread of
//! its own; an idle connected driver is a task parked on a [`Notify`]).
//!
//! It takes everything queued as one batch, sends it as one PackedForward frame, and with
//! `fluentd-request-ack` waits for the ack. A failed connect, write or ack drops the
//! connection; the same frame (same chunk id) is sent again on a new one after
//! `fluentd-retry-wait`, growing 1.5 times a try up to a minute. After `fluentd-max-retries`
//! failed tries in a row the batch is dropped, counted and reported, and the next one is tried.
//! Once the driver is closed the task sends what is left and ends with the closing report.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

use super::ack::{new_chunk_id, parse_ack};
use super::address::Address;
use super::options::{FluentdOptions, DEFAULT_ACK_TIMEOUT, MAX_RETRY_WAIT};
use super::record::encode_frame;
use super::Shared;

/// A connected stream, TCP or unix.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// What the task needs of the options.
pub(super) struct SendConfig {
    pub address: Address,
    pub tag: String,
    pub request_ack: bool,
    pub retry_wait: Duration,
    pub max_retries: u64,
    pub write_timeout: Option<Duration>,
}

impl SendConfig {
    pub fn new(o: &FluentdOptions, tag: String) -> SendConfig {
        SendConfig {
            address: o.address.clone(),
            tag,
            request_ack: o.request_ack,
            retry_wait: o.retry_wait,
            max_retries: o.max_retries,
            write_timeout: o.write_timeout,
        }
    }
}

/// The task: runs until the driver is closed and its queue is sent (or dropped).
pub(super) async fn run(shared: Arc<Shared>, cfg: SendConfig) {
    let mut conn: Option<Box<dyn Io>> = None;
    let mut answers: Vec<u8> = Vec::new();
    while let Some((entries, count)) = shared.next_batch().await {
        let chunk = cfg.request_ack.then(new_chunk_id);
        let frame = match encode_frame(&cfg.tag, &entries, count, chunk.as_deref()) {
            Ok(f) => f,
            Err(e) => {
                shared.batch_failed(count, entries.len(), &format!("encoding a batch: {e}"));
                continue;
            }
        };
        drop(entries);
        let mut wait = cfg.retry_wait;
        let mut failures: u64 = 0;
        loop {
            let result = match conn.as_mut() {
                Some(c) => send(c, &frame, chunk.as_deref(), &mut answers, &cfg, &shared).await,
                None => match connect(&cfg.address).await {
                    Ok(c) => {
                        answers.clear();
                        shared.connected(failures > 0);
                        let c = conn.insert(c);
                        send(c, &frame, chunk.as_deref(), &mut answers, &cfg, &shared).await
                    }
                    Err(e) => Err(io::Error::new(e.kind(), format!("connecting: {e}"))),
                },
            };
            match result {
                Ok(()) => {
                    shared.delivered(count);
                    break;
                }
                Err(e) => {
                    conn = None;
                    failures += 1;
                    let error = format!("fluentd {}: {e}", cfg.address);
                    shared.send_failed(&error, failures == 1);
                    if failures > cfg.max_retries {
                        shared.batch_failed(
                            count,
                            frame.len(),
                            &format!("{error} (gave up after {failures} tries)"),
                        );
                        break;
                    }
                    tokio::time::sleep(wait).await;
                    wait = wait.mul_f64(1.5).min(MAX_RETRY_WAIT);
                }
            }
        }
    }
    shared.finished();
}

async fn connect(a: &Address) -> io::Result<Box<dyn Io>> {
    Ok(match a {
        Address::Tcp { host, port } => {
            let s = TcpStream::connect((host.as_str(), *port)).await?;
            let _ = s.set_nodelay(true);
            Box::new(s)
        }
        Address::Unix(path) => Box::new(UnixStream::connect(path).await?),
    })
}

/// Writes `frame` and, with a chunk, waits for its ack.
async fn send(
    c: &mut Box<dyn Io>,
    frame: &[u8],
    chunk: Option<&str>,
    answers: &mut Vec<u8>,
    cfg: &SendConfig,
    shared: &Shared,
) -> io::Result<()> {
    let mut rest = frame;
    while !rest.is_empty() {
        let n = bounded(cfg.write_timeout, "writing", c.write(rest)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        rest = &rest[n..];
        // fluentd is taking bytes: a container waiting on a full queue keeps waiting.
        shared.progressed();
    }
    let Some(chunk) = chunk else {
        return Ok(());
    };
    let limit = cfg.write_timeout.unwrap_or(DEFAULT_ACK_TIMEOUT);
    bounded(Some(limit), "waiting for the ack", async {
        loop {
            if let Some((got, used)) = parse_ack(answers)? {
                answers.drain(..used);
                if got == chunk {
                    return Ok(());
                }
                // An ack of an earlier try of another batch: skip it.
                continue;
            }
            let mut buf = [0u8; 256];
            let n = c.read(&mut buf).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed before the ack",
                ));
            }
            answers.extend_from_slice(&buf[..n]);
        }
    })
    .await
}

async fn bounded<T>(
    limit: Option<Duration>,
    what: &str,
    f: impl std::future::Future<Output = io::Result<T>>,
) -> io::Result<T> {
    match limit {
        None => f
            .await
            .map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}"))),
        Some(d) => match tokio::time::timeout(d, f).await {
            Ok(r) => r.map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}"))),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{what}: no progress in {d:?}"),
            )),
        },
    }
}
