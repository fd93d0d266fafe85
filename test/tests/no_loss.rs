//! Issues 4 and 5 "no loss": short-lived containers that write 1000 numbered lines to stdout and
//! 1000 to stderr right before they exit. Every line must be in the `file://` output
//! (`--log-uri`), in the files of a `binary://` logging binary, and in the json-file log, in
//! order per stream.
//!
//! `SCRIBE_E2E_NOLOSS_N` (default 20) containers per test, 4 at a time; the issue asks for 100
//! (`SCRIBE_E2E_NOLOSS_N=100 cargo test -p scribe-e2e --test no_loss`).
//! The json-file log is Scribe's: those containers always run the Scribe runtime.

use scribe_e2e::binlogger::TestLogger;
use scribe_e2e::records::{env_usize, LogSetup};
use scribe_e2e::*;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

const LINES: usize = 1000;
const PARALLEL: usize = 4;
const SCRIPT: &str =
    "i=1; while [ $i -le 1000 ]; do echo \"out $i\"; echo \"err $i\" >&2; i=$((i+1)); done";

/// Lines of `text` starting with `prefix ` must be exactly `prefix 1` .. `prefix LINES`, in
/// order; describes the first difference.
fn check_numbered<'a>(lines: impl Iterator<Item = &'a str>, prefix: &str) -> Result<(), String> {
    let p = format!("{prefix} ");
    let got: Vec<&str> = lines.filter(|l| l.starts_with(&p)).collect();
    for (i, l) in got.iter().enumerate() {
        let want = format!("{prefix} {}", i + 1);
        if *l != want {
            return Err(format!(
                "{prefix}: line {} is {l:?}, want {want:?} ({} lines in all)",
                i + 1,
                got.len()
            ));
        }
    }
    if got.len() != LINES {
        return Err(format!("{prefix}: {} lines, want {LINES}", got.len()));
    }
    Ok(())
}

/// One stream's bytes must be exactly `prefix 1` .. `prefix 1000`, a line each.
fn check_stream(bytes: &[u8], prefix: &str) -> Result<(), String> {
    let text = String::from_utf8_lossy(bytes);
    let p = format!("{prefix} ");
    if let Some(l) = text.lines().find(|l| !l.starts_with(&p)) {
        return Err(format!("{prefix}: broken or foreign line {l:?}"));
    }
    if !text.ends_with('\n') {
        return Err(format!("{prefix}: does not end with a newline"));
    }
    check_numbered(text.lines(), prefix)
}

/// file://: stdout and stderr interleaved in one file, each stream complete and in order.
fn check_file(file: &std::path::Path) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let stray: Vec<&str> = text
        .lines()
        .filter(|l| !(l.starts_with("out ") || l.starts_with("err ")))
        .take(5)
        .collect();
    if !stray.is_empty() {
        return Err(format!("file:// output has broken lines, e.g. {stray:?}"));
    }
    check_numbered(text.lines(), "out").map_err(|e| format!("file:// {e}"))?;
    check_numbered(text.lines(), "err").map_err(|e| format!("file:// {e}"))?;
    if !text.ends_with('\n') {
        return Err("file:// output does not end with a newline".into());
    }
    Ok(())
}

/// json-file: one entry per line, the stream named, each stream complete and in order.
fn check_json(logs: &LogSetup, id: &str) -> Result<(), String> {
    let entries = logs.json_entries(id);
    for (stream, prefix) in [("stdout", "out"), ("stderr", "err")] {
        let mut bad = entries
            .iter()
            .filter(|e| e.stream == stream && !e.log.starts_with(prefix));
        if let Some(e) = bad.next() {
            return Err(format!("json-file: {stream} entry {e:?}"));
        }
        let lines: Vec<&str> = entries
            .iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.log.strip_suffix('\n').unwrap_or("<no newline>"))
            .collect();
        check_numbered(lines.into_iter(), prefix).map_err(|e| format!("json-file {e}"))?;
    }
    Ok(())
}

/// Runs `n` containers, `PARALLEL` at a time; `run(i)` runs and checks container `i`.
/// Panics listing every container that failed.
fn run_all(c: &Containerd, n: usize, run: impl Fn(usize) -> Result<(), String> + Sync) {
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::<String>::new());
    std::thread::scope(|s| {
        for _ in 0..PARALLEL {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= n {
                    break;
                }
                if let Err(e) = run(i) {
                    failures
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(format!("container {i}: {e}"));
                }
            });
        }
    });
    let failures = failures.into_inner().unwrap_or_else(|p| p.into_inner());
    assert!(
        failures.is_empty(),
        "{} of {n} containers lost or broke output:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        c.log_tail(30)
    );
}

#[test]
fn short_lived_containers_lose_no_line_in_file_uri_and_json_file() {
    let n = env_usize("SCRIBE_E2E_NOLOSS_N", 20);
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "noloss", "");
    let out_dir = c.dir().join("noloss-out");
    run_all(&c, n, |i| {
        let id = format!("noloss{i}");
        let file = out_dir.join(format!("{id}.log"));
        let uri = format!("file://{}", file.display());
        let o = c.ctr_timeout(
            &logs.run_args(&[
                "--rm",
                "--log-uri",
                &uri,
                "--annotation",
                "io.scribe.log.driver=json-file",
                IMAGE,
                &id,
                "sh",
                "-c",
                SCRIPT,
            ]),
            Duration::from_secs(120),
        );
        if o.code != Some(0) {
            return Err(format!("ctr run failed: {o}"));
        }
        check_file(&file)?;
        check_json(&logs, &id)
    });
    assert!(c.containers().is_empty(), "left: {:?}", c.containers());
    c.assert_clean();
}

/// `binary://`: the container's output goes to a logging binary (the suite's own,
/// `scribe-test-logger`), which writes each stream to a file. Every other container also has a
/// json-file log (Scribe only), so the output is relayed by the shim into the logger's pipes;
/// the others write into those pipes directly, as with containerd's Go shim.
#[test]
fn short_lived_containers_lose_no_line_through_a_logging_binary() {
    let n = env_usize("SCRIBE_E2E_NOLOSS_N", 20);
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "nolossbin", "");
    let logger = TestLogger::new(
        env!("CARGO_BIN_EXE_scribe-test-logger"),
        c.dir().join("nolossbin-out"),
    );
    let uri = logger.uri(&[]);
    let ns = c.namespace().to_string();
    run_all(&c, n, |i| {
        let id = format!("nolossbin{i}");
        let json = testing_scribe() && i % 2 == 0;
        let mut args = vec!["--rm", "--log-uri", &uri];
        if json {
            args.extend(["--annotation", "io.scribe.log.driver=json-file"]);
        }
        args.extend([IMAGE, &id, "sh", "-c", SCRIPT]);
        let args = if json {
            logs.run_args(&args)
        } else {
            c.run_args(&args)
        };
        let o = c.ctr_timeout(&args, Duration::from_secs(120));
        if o.code != Some(0) {
            return Err(format!("ctr run failed: {o}"));
        }
        // the logger finishes on its own (EOF) or at the delete (SIGTERM, after draining)
        match logger
            .wait_exit(&ns, &id, Duration::from_secs(30))
            .as_deref()
        {
            Some("eof" | "sigterm") => {}
            other => return Err(format!("the logger ended with {other:?}")),
        }
        check_stream(&logger.stdout(&ns, &id), "out").map_err(|e| format!("logger stdout {e}"))?;
        check_stream(&logger.stderr(&ns, &id), "err").map_err(|e| format!("logger stderr {e}"))?;
        if json {
            check_json(&logs, &id)?;
        }
        Ok(())
    });
    assert!(c.containers().is_empty(), "left: {:?}", c.containers());
    c.assert_clean();
}
