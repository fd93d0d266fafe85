//! The publisher's one sender task: takes events from the queue in order and
//! forwards each to containerd, reconnecting and backing off until it is
//! delivered, rejected, or too old.

use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::EventsClient;
use tokio::time::Instant;
use ttrpc::asynchronous::transport::Socket;
use ttrpc::Code;

use crate::envelope::socket_path;
use crate::queue::{Entry, Outcome, Queue};

/// Tuning of the publisher's retries and queue ([`crate::Publisher`]); the defaults suit a
/// shim. It lives with the sender, which is what it tunes.
#[derive(Debug, Clone)]
pub struct PublisherConfig {
    /// Most events held while containerd is unreachable; beyond it the oldest
    /// is dropped (and logged).
    pub capacity: usize,
    /// How long after publishing an event is still retried.
    pub max_age: Duration,
    /// First retry delay; it doubles on each failure.
    pub backoff_min: Duration,
    /// Longest retry delay: once containerd is back, an event waits at most this long (plus
    /// one call) to be delivered.
    pub backoff_max: Duration,
    /// Limit for connecting and for each `Forward` call.
    pub call_timeout: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            capacity: 10_000,
            max_age: Duration::from_secs(300),
            backoff_min: Duration::from_millis(20),
            // containerd's state (a task's exit seen by `ctr task wait`, CRI) lags a restart by
            // up to this much; retrying a unix-socket connect once a second while containerd is
            // away costs next to nothing.
            backoff_max: Duration::from_secs(1),
            call_timeout: Duration::from_secs(5),
        }
    }
}

/// A queued event: the request plus what the sender needs to report on it.
#[derive(Debug)]
pub(crate) struct Pending {
    pub topic: String,
    pub request: ForwardRequest,
    pub deadline: Instant,
}

/// Why one attempt failed.
enum Failure {
    /// containerd answered and refused the event; retrying cannot help.
    Rejected(String),
    /// containerd could not be reached or did not answer; worth retrying.
    Transient(String),
}

/// Runs until the queue is closed and drained.
pub(crate) async fn run(queue: Arc<Queue<Pending>>, address: String, cfg: PublisherConfig) {
    let mut conn: Option<EventsClient> = None;
    while let Some(Entry { seq, item }) = queue.next().await {
        let outcome = deliver(&mut conn, &address, &cfg, &item).await;
        queue.finish(seq, outcome);
    }
    log::debug!("event publisher stopped: all handles dropped and queue drained");
}

async fn deliver(
    conn: &mut Option<EventsClient>,
    address: &str,
    cfg: &PublisherConfig,
    ev: &Pending,
) -> Outcome {
    let mut backoff = cfg.backoff_min;
    let mut attempts: u32 = 0;
    loop {
        attempts = attempts.saturating_add(1);
        let reason = match attempt(conn, address, cfg, &ev.request).await {
            Ok(()) => {
                if attempts > 1 {
                    log::info!("event {} delivered after {attempts} attempts", ev.topic);
                }
                return Outcome::Delivered;
            }
            Err(Failure::Rejected(reason)) => {
                log::error!(
                    "event {} lost: containerd at {address} rejected it: {reason}",
                    ev.topic
                );
                return Outcome::Lost;
            }
            Err(Failure::Transient(reason)) => reason,
        };
        let now = Instant::now();
        if now >= ev.deadline {
            log::error!(
                "event {} lost: gave up after {attempts} attempts over {:?}: {reason}",
                ev.topic,
                cfg.max_age
            );
            return Outcome::Lost;
        }
        if attempts == 1 {
            log::warn!(
                "event {}: forwarding to {address} failed, will retry: {reason}",
                ev.topic
            );
        }
        tokio::time::sleep(backoff.min(ev.deadline - now)).await;
        backoff = backoff.saturating_mul(2).min(cfg.backoff_max);
    }
}

async fn attempt(
    conn: &mut Option<EventsClient>,
    address: &str,
    cfg: &PublisherConfig,
    req: &ForwardRequest,
) -> Result<(), Failure> {
    let client = match conn {
        Some(c) => c.clone(),
        None => {
            let c = connect(address, cfg.call_timeout).await?;
            *conn = Some(c.clone());
            c
        }
    };
    let ctx = ttrpc::context::with_duration(cfg.call_timeout);
    match client.forward(ctx, req).await {
        Ok(_) => Ok(()),
        Err(ttrpc::Error::RpcStatus(st)) if is_permanent(st.code()) => Err(Failure::Rejected(
            format!("{:?}: {}", st.code(), st.message()),
        )),
        Err(e) => {
            // Whatever went wrong, the next attempt starts on a fresh
            // connection: the old one may be dead (containerd restarted).
            *conn = None;
            Err(Failure::Transient(e.to_string()))
        }
    }
}

async fn connect(address: &str, limit: Duration) -> Result<EventsClient, Failure> {
    let path = socket_path(address);
    let stream = tokio::time::timeout(limit, tokio::net::UnixStream::connect(path))
        .await
        .map_err(|_| Failure::Transient(format!("connect {path}: timed out after {limit:?}")))?
        .map_err(|e| Failure::Transient(format!("connect {path}: {e}")))?;
    let client = ttrpc::asynchronous::Client::new(Socket::from(stream));
    Ok(EventsClient::new(client))
}

/// Status codes meaning containerd saw the event and will never take it.
fn is_permanent(code: Code) -> bool {
    matches!(
        code,
        Code::INVALID_ARGUMENT
            | Code::NOT_FOUND
            | Code::ALREADY_EXISTS
            | Code::PERMISSION_DENIED
            | Code::FAILED_PRECONDITION
            | Code::OUT_OF_RANGE
            | Code::UNIMPLEMENTED
            | Code::UNAUTHENTICATED
    )
}
