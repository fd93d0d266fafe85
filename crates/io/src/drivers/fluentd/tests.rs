//! The driver against a small forward-protocol peer on a real socket: fluentd down at start,
//! an unacknowledged batch resent, a full queue dropping and reporting.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use rmpv::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::drivers::{Batch, Record};
use crate::jsonfile::TagInfo;
use crate::stream::Stream;

#[derive(Default)]
struct Collect(Mutex<Vec<JsonFileReport>>);

impl DriverReporter for Collect {
    fn report(&self, driver: &str, _target: &str, report: JsonFileReport) {
        assert_eq!(driver, NAME);
        self.0.lock().unwrap().push(report);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn open(pairs: &[(&str, &str)], mode: Mode, reporter: Arc<Collect>) -> FluentdLog {
    let opts = FluentdOptions::from_pairs(pairs.iter().copied()).unwrap();
    let info = TagInfo {
        container_id: "0123456789abcdef0123".into(),
        container_name: "c1".into(),
        ..Default::default()
    };
    let ctx = OpenContext {
        root: Path::new("/nonexistent"),
        subdirs: ["ns", "c1"],
        tag: &info,
        reporter: Some(reporter),
        container: None,
    };
    FluentdLog::open(&opts, mode, &ctx).unwrap()
}

/// Logs `from..to` as one read's batch; returns how many the driver took.
fn try_log_lines(d: &FluentdLog, from: usize, to: usize) -> usize {
    let lines: Vec<String> = (from..to).map(|i| format!("line {i}\n")).collect();
    let records: Vec<Record<'_>> = lines
        .iter()
        .map(|l| Record {
            line: l.as_bytes(),
            partial: None,
        })
        .collect();
    d.log(&Batch {
        stream: Stream::Stdout,
        time: SystemTime::now(),
        records: &records,
    })
}

fn log_lines(d: &FluentdLog, from: usize, to: usize) {
    let lines: Vec<String> = (from..to).map(|i| format!("line {i}\n")).collect();
    let records: Vec<Record<'_>> = lines
        .iter()
        .map(|l| Record {
            line: l.as_bytes(),
            partial: None,
        })
        .collect();
    let n = d.log(&Batch {
        stream: Stream::Stdout,
        time: SystemTime::now(),
        records: &records,
    });
    assert_eq!(n, records.len());
}

/// Reads PackedForward frames from one connection; acks the first `ack` of them that ask.
/// Returns the `log` fields in order, and whether the peer closed.
async fn serve_one(l: &TcpListener, ack: usize, until: usize, got: &mut Vec<String>) {
    let (mut s, _) = l.accept().await.unwrap();
    let mut buf = Vec::new();
    let mut acked = 0;
    loop {
        let mut rest = &buf[..];
        match rmpv::decode::read_value(&mut rest) {
            Ok(frame) => {
                let used = buf.len() - rest.len();
                buf.drain(..used);
                let a = frame.as_array().unwrap();
                assert_eq!(a[0].as_str(), Some("0123456789ab"));
                let mut entries = a[1].as_slice().unwrap();
                let mut n = 0;
                while !entries.is_empty() {
                    let e = rmpv::decode::read_value(&mut entries).unwrap();
                    let m = e[1].as_map().unwrap();
                    let log = m.iter().find(|(k, _)| k.as_str() == Some("log")).unwrap();
                    let name = m
                        .iter()
                        .find(|(k, _)| k.as_str() == Some("container_name"))
                        .unwrap();
                    assert_eq!(name.1.as_str(), Some("/c1"));
                    got.push(log.1.as_str().unwrap().to_owned());
                    n += 1;
                }
                let opt = a[2].as_map().unwrap();
                let size = opt
                    .iter()
                    .find(|(k, _)| k.as_str() == Some("size"))
                    .unwrap();
                assert_eq!(size.1.as_u64(), Some(n));
                if let Some((_, chunk)) = opt.iter().find(|(k, _)| k.as_str() == Some("chunk")) {
                    if acked >= ack {
                        return; // drop the connection without acking
                    }
                    acked += 1;
                    let reply = Value::Map(vec![(Value::from("ack"), chunk.clone())]);
                    let mut out = Vec::new();
                    rmpv::encode::write_value(&mut out, &reply).unwrap();
                    s.write_all(&out).await.unwrap();
                }
                if got.len() >= until {
                    return;
                }
            }
            Err(_) => {
                let mut b = [0u8; 4096];
                let n = s.read(&mut b).await.unwrap();
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&b[..n]);
            }
        }
    }
}

/// A port of 127.0.0.1 nothing listens on (bound, then closed): fluentd is down there.
async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn expected(from: usize, to: usize) -> Vec<String> {
    (from..to).map(|i| format!("line {i}")).collect()
}

#[test]
fn fluentd_down_at_start_then_delivered() {
    rt().block_on(async {
        // Reserve a port, then close it: fluentd is down.
        let port = free_port().await;
        let addr = format!("tcp://127.0.0.1:{port}");
        let rep = Arc::new(Collect::default());
        let d = open(
            &[("fluentd-address", &addr), ("fluentd-retry-wait", "20ms")],
            Mode::Blocking,
            rep.clone(),
        );
        log_lines(&d, 0, 100);
        tokio::time::sleep(Duration::from_millis(100)).await;
        let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let mut got = Vec::new();
        let server = serve_one(&l, 0, 100, &mut got);
        tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(server, d.drain());
        })
        .await
        .unwrap();
        assert_eq!(got, expected(0, 100));
        assert_eq!(d.stats().delivered, 100);
        let reports = rep.0.lock().unwrap().clone();
        assert!(
            matches!(&reports[..], [JsonFileReport::Warning { error }] if error.contains(&addr)),
            "{reports:?}"
        );
    });
}

#[test]
fn unacknowledged_batches_are_resent() {
    rt().block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("tcp://{}", l.local_addr().unwrap());
        let rep = Arc::new(Collect::default());
        let d = open(
            &[
                ("fluentd-address", &addr),
                ("fluentd-retry-wait", "10ms"),
                ("fluentd-request-ack", "true"),
            ],
            Mode::Blocking,
            rep,
        );
        log_lines(&d, 0, 50);
        let mut first = Vec::new();
        // The first connection reads the batch and closes without an ack.
        serve_one(&l, 0, usize::MAX, &mut first).await;
        assert_eq!(first, expected(0, 50));
        log_lines(&d, 50, 60);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), async {
            let server = async {
                serve_one(&l, usize::MAX, 60, &mut got).await;
            };
            tokio::join!(server, d.drain());
        })
        .await
        .unwrap();
        // The unacknowledged batch came again, then the rest: nothing lost.
        assert_eq!(got, expected(0, 60));
        assert_eq!(d.stats().delivered, 60);
    });
}

#[test]
fn full_queue_drops_count_and_report() {
    rt().block_on(async {
        let port = free_port().await;
        let addr = format!("tcp://127.0.0.1:{port}");
        let rep = Arc::new(Collect::default());
        let d = open(
            &[
                ("fluentd-address", &addr),
                ("fluentd-retry-wait", "10ms"),
                ("fluentd-buffer-limit", "10"),
            ],
            Mode::NonBlocking {
                max_buffer: 1_000_000,
            },
            rep.clone(),
        );
        log_lines(&d, 0, 25);
        assert_eq!(d.stats().dropped, 15);
        let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        let mut got = Vec::new();
        let server = serve_one(&l, 0, 10, &mut got);
        tokio::time::timeout(Duration::from_secs(20), async {
            tokio::join!(server, d.drain());
        })
        .await
        .unwrap();
        assert_eq!(got, expected(0, 10));
        let shared = d.shared.clone();
        drop(d);
        tokio::time::timeout(Duration::from_secs(20), async {
            while !shared.lock().finished {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .unwrap();
        let reports = rep.0.lock().unwrap().clone();
        assert!(
            reports.iter().any(
                |r| matches!(r, JsonFileReport::Dropping { error } if error.contains("queue full"))
            ),
            "{reports:?}"
        );
        let closed = reports.iter().find_map(|r| match r {
            JsonFileReport::Closed { total, .. } => Some(*total),
            _ => None,
        });
        assert_eq!(closed.map(|t| t.entries), Some(15), "{reports:?}");
    });
}

#[test]
fn blocking_mode_waits_while_fluentd_takes_batches_and_drops_once_it_stalls() {
    rt().block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("tcp://{}", l.local_addr().unwrap());
        let rep = Arc::new(Collect::default());
        let d = open(
            &[("fluentd-address", &addr), ("fluentd-buffer-limit", "10")],
            Mode::Blocking,
            rep,
        );
        // Full after 10: the rest waits (nothing dropped) until the sender takes the queue.
        assert_eq!(try_log_lines(&d, 0, 25), 10);
        tokio::time::timeout(Duration::from_secs(5), d.room())
            .await
            .unwrap();
        assert_eq!(try_log_lines(&d, 10, 25), 10);
        assert_eq!(d.stats().dropped, 0);
        // Accepted, never read: once the socket buffers are full nothing moves. The wait on a
        // full queue ends within STALL, and then new messages are dropped and counted.
        let (_conn, _) = l.accept().await.unwrap();
        let big = "x".repeat(16 * 1024);
        let mut waited = false;
        for _ in 0..20_000 {
            let rec = [Record {
                line: big.as_bytes(),
                partial: None,
            }];
            let b = Batch {
                stream: Stream::Stdout,
                time: SystemTime::now(),
                records: &rec,
            };
            if d.log(&b) == 0 {
                waited = true;
                tokio::time::timeout(STALL * 5, d.room()).await.unwrap();
            }
            if d.stats().dropped > 0 {
                break;
            }
        }
        assert!(waited);
        assert!(d.stats().dropped > 0, "{:?}", d.stats());
    });
}
