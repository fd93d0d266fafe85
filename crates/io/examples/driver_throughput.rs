//! Pushes 100-byte lines through the driver pipeline (framing + json-file, or `local`) into a
//! file, to profile the per-line cost without a container: `cargo run --release --example
//! driver_throughput -p scribe-io -- <dir> [MiB] [json-file|local]`.

use std::sync::Arc;
use std::time::Instant;

use scribe_io::drivers::feed::DriverFeed;
use scribe_io::drivers::{Drivers, LogDriver};
use scribe_io::jsonfile::{JsonFileOptions, JsonFileWriter, TagInfo};
use scribe_io::{JsonLog, Stream};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = std::path::PathBuf::from(args.next().ok_or("usage: driver_throughput DIR [MiB]")?);
    let mib: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(256);
    let driver = args.next().unwrap_or_else(|| "json-file".into());
    let info = TagInfo {
        container_id: "bench".into(),
        container_name: "bench".into(),
        image_name: String::new(),
        image_id: String::new(),
        daemon_name: "scribe".into(),
    };
    let path = dir.join("bench-json.log");
    let _ = std::fs::remove_file(&path);
    let writer = match driver.as_str() {
        "json-file" => JsonFileWriter::open(&path, &JsonFileOptions::default(), &info)?,
        // One file, no rotation: the same work per line as json-file's default.
        "local" => JsonFileWriter::open_local_under(
            &dir,
            &[] as &[&str],
            "bench-json.log",
            &JsonFileOptions::default(),
        )?,
        other => return Err(format!("unknown driver {other:?}: json-file or local").into()),
    };
    let log: Arc<dyn LogDriver> = Arc::new(JsonLog::new(writer, 16 * 1024));
    let drivers = Drivers::new(vec![log], 16 * 1024);
    let mut line = vec![b'x'; 99];
    line.push(b'\n');
    let chunk: Vec<u8> = line.iter().copied().cycle().take(32 * 1024).collect();
    let total = mib << 20;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let t = Instant::now();
    rt.block_on(async {
        let mut feed = DriverFeed::new(&drivers, Stream::Stdout).expect("a driver");
        let mut done = 0;
        while done < total {
            feed.push(&chunk).await;
            done += chunk.len();
        }
        feed.finish().await;
    });
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{driver}: {mib} MiB in {secs:.2} s: {:.0} MB/s, {:.0} ns per line",
        total as f64 / secs / 1e6,
        secs * 1e9 / (total / 100) as f64
    );
    let _ = std::fs::remove_file(&path);
    Ok(())
}
