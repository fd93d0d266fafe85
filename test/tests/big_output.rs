//! Issue 4: a big output stream reaches its destination byte for byte: an attached reader
//! (`ctr run` without `-d`, its stdout read by the test) and a `file://` target both get exactly
//! the expected bytes (length, SHA-256, and the position of the first difference if any).
//!
//! The stream is [`NumberedBlocks`]: `block N` headers and `seq 1 1000000` repeated, at least
//! `SCRIBE_E2E_BIG_MIB` MiB (default 1024, the 1 GiB: about 3 s per test here, the
//! container's startup included; set it lower on a slow machine). The `file://` test needs that
//! much free space in /tmp for a moment. Runs with the runtime under test.

use scribe_e2e::bigstream::{NumberedBlocks, StreamCheck};
use scribe_e2e::records::env_usize;
use scribe_e2e::*;
use std::time::{Duration, Instant};

fn stream() -> NumberedBlocks {
    NumberedBlocks::at_least_mib(env_usize("SCRIBE_E2E_BIG_MIB", 1024) as u64)
}

/// Generous: 2 minutes plus a second per 4 MiB (the relay moves hundreds of MB/s).
fn timeout(s: &NumberedBlocks) -> Duration {
    Duration::from_secs(120 + s.len() / (4 << 20))
}

fn rate(bytes: u64, took: Duration) -> String {
    format!(
        "{bytes} bytes in {took:.2?} ({:.0} MB/s)",
        bytes as f64 / took.as_secs_f64() / 1e6
    )
}

#[test]
fn big_output_reaches_an_attached_ctr_byte_for_byte() {
    let s = stream();
    let sha = s.sha256();
    let c = Containerd::start();
    let script = s.script();
    let expected = s.clone();
    let started = Instant::now();
    let (o, check) = c.ctr_streaming(
        &c.run_args(&["--rm", IMAGE, "bigattached", "sh", "-c", &script]),
        timeout(&s),
        move |out| {
            let mut check = StreamCheck::new(&expected);
            check.consume(out).map(|()| check.finish())
        },
    );
    let took = started.elapsed();
    assert!(o.success(), "{o}\n{}", c.log_tail(30));
    let got = check
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|e| panic!("reading ctr's stdout: {e}"));
    got.assert_matches(&s, &sha, "ctr's stdout");
    eprintln!(
        "big output, attached ctr ({}): {} ({} blocks), sha256 {sha}",
        c.runtime(),
        rate(got.len, took),
        s.blocks()
    );
    c.assert_clean();
}

#[test]
fn big_output_reaches_a_file_uri_byte_for_byte() {
    let s = stream();
    let sha = s.sha256();
    let c = Containerd::start();
    let script = s.script();
    let file = c.dir().join("big-out").join("bigfile.log");
    let uri = format!("file://{}", file.display());
    let started = Instant::now();
    let o = c.ctr_timeout(
        &c.run_args(&[
            "--rm",
            "--log-uri",
            &uri,
            IMAGE,
            "bigfile",
            "sh",
            "-c",
            &script,
        ]),
        timeout(&s),
    );
    let took = started.elapsed();
    assert!(o.success(), "{o}\n{}", c.log_tail(30));
    let f = std::fs::File::open(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let mut check = StreamCheck::new(&s);
    check
        .consume(f)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    let got = check.finish();
    got.assert_matches(&s, &sha, &format!("file:// {}", file.display()));
    eprintln!(
        "big output, file:// ({}): {} ({} blocks), sha256 {sha}",
        c.runtime(),
        rate(got.len, took),
        s.blocks()
    );
    std::fs::remove_file(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    c.assert_clean();
}
