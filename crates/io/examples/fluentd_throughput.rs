//! Pushes 100-byte lines through the driver pipeline (framing + the fluentd driver) into a
//! forward-protocol receiver on loopback TCP (another thread, decoding every frame with rmpv and
//! counting its `size`), to measure the driver's MB/s and CPU without a container:
//! `cargo run --release --example fluentd_throughput -p scribe-io -- [MiB]`.
//!
//! After each 32 KiB chunk the feed yields, as the relay does when it waits for the next pipe
//! read, so the sender task gets its turn on the same single thread, as in the shim.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use scribe_io::drivers::feed::DriverFeed;
use scribe_io::drivers::fluentd::{FluentdLog, FluentdOptions};
use scribe_io::drivers::{Drivers, LogDriver, Mode, OpenContext};
use scribe_io::jsonfile::TagInfo;
use scribe_io::Stream;

/// Reads frames until the sender closes; returns how many records arrived.
fn receive(l: TcpListener) -> u64 {
    let Ok((mut s, _)) = l.accept() else {
        return 0;
    };
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut chunk = vec![0u8; 1 << 20];
    let mut got = 0u64;
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        loop {
            let mut rest = &buf[used..];
            let before = rest.len();
            let Ok(frame) = rmpv::decode::read_value(&mut rest) else {
                break;
            };
            used += before - rest.len();
            let size = frame[2]
                .as_map()
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("size")))
                .and_then(|(_, v)| v.as_u64())
                .unwrap_or(0);
            got += size;
        }
        buf.drain(..used);
    }
    got
}

/// Prints the driver's reports (drops, outages) to stderr.
struct Print;

impl scribe_io::DriverReporter for Print {
    fn report(&self, driver: &str, target: &str, report: scribe_io::drivers::DriverReport) {
        eprintln!("{driver} {target}: {report:?}");
    }
}

fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(256);
    // Whole 32,000-byte chunks of 320 lines each, at least `mib` MiB.
    let chunks = (mib << 20).div_ceil(32_000);
    let total = chunks * 32_000;
    let lines = (chunks * 320) as u64;
    let l = TcpListener::bind("127.0.0.1:0")?;
    let addr = format!("tcp://{}", l.local_addr()?);
    let receiver = std::thread::spawn(move || receive(l));
    let info = TagInfo {
        container_id: "0123456789abcdef".into(),
        container_name: "bench".into(),
        ..Default::default()
    };
    let opts = FluentdOptions::from_pairs([("fluentd-address", addr.as_str())])?;
    let mut line = vec![b'x'; 99];
    line.push(b'\n');
    let chunk: Vec<u8> = line.iter().copied().cycle().take(32 * 1000).collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t = Instant::now();
    let cpu0 = thread_cpu();
    let stats = rt.block_on(async {
        let ctx = OpenContext {
            root: Path::new("/nonexistent"),
            subdirs: ["bench", "bench"],
            tag: &info,
            reporter: Some(Arc::new(Print)),
            container: None,
        };
        let log = Arc::new(FluentdLog::open(&opts, Mode::Blocking, &ctx)?);
        let drivers = Drivers::new(vec![log.clone() as Arc<dyn LogDriver>], 16 * 1024);
        let mut feed = DriverFeed::new(&drivers, Stream::Stdout).ok_or("no driver")?;
        let mut done = 0;
        while done < total {
            feed.push(&chunk).await;
            done += chunk.len();
            tokio::task::yield_now().await;
        }
        feed.finish().await;
        drivers.drain().await;
        let stats = log.stats();
        // Closing the driver ends its sender, which closes the connection.
        drop((feed, drivers, log));
        scribe_io::drivers::fluentd::all_finished().await;
        Ok::<_, Box<dyn std::error::Error>>(stats)
    })?;
    let cpu = thread_cpu() - cpu0;
    let got = receiver.join().map_err(|_| "receiver panicked")?;
    let secs = t.elapsed().as_secs_f64();
    let bytes = (lines * 100) as f64;
    println!(
        "fluentd: {mib} MiB of 100-byte lines in {secs:.2} s: {:.0} MB/s into the receiver, driver thread CPU {:.2} s/GiB; {got} of {lines} received, {} delivered, {} dropped",
        bytes / secs / 1e6,
        cpu / (bytes / (1u64 << 30) as f64),
        stats.delivered,
        stats.dropped
    );
    Ok(())
}
