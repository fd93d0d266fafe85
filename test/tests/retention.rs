//! Issue 14 item 5: log retention. A deleted container's log directory is removed at delete
//! with `LogRetention = "0"`, else kept and pruned by the next shim start: older than
//! `LogRetention`, or beyond `LogRetentionMaxSize` for the namespace (oldest deleted first). A
//! running container's directory is never removed.
//!
//! These are Scribe's own options: the tests always run the Scribe runtime.

use scribe_e2e::records::LogSetup;
use scribe_e2e::*;
use std::path::Path;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Bytes of the regular files under `dir` (recursively), 0 when it does not exist.
fn du(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return std::fs::metadata(dir).map(|m| m.len()).unwrap_or(0);
    };
    rd.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn listing(logs: &LogSetup) -> String {
    let ns = logs.container_dir("x");
    let ns = ns.parent().expect("namespace dir");
    std::fs::read_dir(ns)
        .map(|rd| {
            rd.flatten()
                .map(|e| {
                    format!(
                        "{} ({} bytes)\n",
                        e.file_name().to_string_lossy(),
                        du(&e.path())
                    )
                })
                .collect()
        })
        .unwrap_or_else(|e| format!("{}: {e}", ns.display()))
}

#[test]
fn retention_zero_leaves_nothing_after_run_rm() {
    let c = Containerd::start();
    let logs = LogSetup::new(
        &c,
        "ret0",
        "LogRetention = \"0\"\nLogDriver = \"json-file\"",
    );
    let id = "ret-zero";
    let o = c.ctr_ok(&logs.run_args(&["--rm", IMAGE, id, "sh", "-c", "echo hello"]));
    assert_eq!(o.stdout, "hello\n", "{o}");
    let dir = logs.container_dir(id);
    assert!(
        wait_until(Duration::from_secs(5), || !dir.exists()),
        "{} left after ctr run --rm with LogRetention = \"0\": {:?}",
        dir.display(),
        std::fs::read_dir(&dir).map(|r| r.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
    );
    c.assert_clean();
}

#[test]
fn size_cap_removes_oldest_deleted_first_never_a_running_one() {
    let c = Containerd::start();
    // Each container writes 2000 lines of 100 bytes: about 340 KB of json-file log. The cap
    // holds the running container and one deleted one, not two. Spooling is off: the detached
    // container's FIFO has no reader, and its spool (counted, as it lives in the container's
    // directory) would make the running container's size depend on the pipe's size.
    let cap = 800_000u64;
    let logs = LogSetup::new(
        &c,
        "retcap",
        &format!(
            "LogRetention = \"24h\"\nLogRetentionMaxSize = \"{cap}\"\nLogDriver = \"json-file\"\nSpoolMaxSize = 0"
        ),
    );
    let script = "i=0; while [ $i -lt 2000 ]; do printf '%099d\\n' $i; i=$((i+1)); done";
    // A running container first: the oldest directory of all, never removed.
    let running = "ret-running";
    let o = c.ctr_ok(&logs.run_args(&[
        "-d",
        IMAGE,
        running,
        "sh",
        "-c",
        &format!("{script}; exec sleep 1000"),
    ]));
    assert!(
        c.wait_task_status(running, "RUNNING", T),
        "{o} {:?}",
        c.tasks()
    );
    let deleted = ["ret-d1", "ret-d2", "ret-d3"];
    for id in deleted {
        c.ctr_ok(&logs.run_args(&["--rm", IMAGE, id, "sh", "-c", script]));
        assert!(
            logs.container_dir(id).exists(),
            "{} removed at delete although LogRetention = 24h",
            logs.container_dir(id).display()
        );
    }
    assert!(
        wait_until(Duration::from_secs(10), || du(&logs.container_dir(running))
            >= 300_000),
        "the running container's log is short:\n{}",
        listing(&logs)
    );
    // Each shim start pruned what was deleted before it started (d3's start took d1).
    let before = listing(&logs);
    // The next shim start prunes: oldest deleted first until the namespace fits the cap.
    c.ctr_ok(&logs.run_args(&["--rm", IMAGE, "ret-trigger", "true"]));
    let pruned = wait_until(Duration::from_secs(10), || {
        !logs.container_dir("ret-d1").exists() && !logs.container_dir("ret-d2").exists()
    });
    let after = listing(&logs);
    assert!(
        pruned,
        "the two oldest deleted directories are still there:\nbefore:\n{before}after:\n{after}"
    );
    assert!(
        logs.container_dir("ret-d3").exists(),
        "the newest deleted directory went although the namespace fit without it:\nbefore:\n{before}after:\n{after}"
    );
    assert!(
        logs.container_log(running).exists() && logs.json_log(running).exists(),
        "the running container's directory was touched:\nbefore:\n{before}after:\n{after}"
    );
    eprintln!("before pruning:\n{before}after:\n{after}");
    c.kill_and_remove(running);
    c.assert_clean();
}

/// A directory deleted longer ago than `LogRetention` goes at the next shim start.
#[test]
fn expired_directory_goes_at_next_start() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "retage", "LogRetention = \"1s\"");
    c.ctr_ok(&logs.run_args(&["--rm", IMAGE, "ret-old", "true"]));
    assert!(logs.container_dir("ret-old").exists(), "{}", listing(&logs));
    std::thread::sleep(Duration::from_millis(1500));
    c.ctr_ok(&logs.run_args(&["--rm", IMAGE, "ret-new", "true"]));
    assert!(
        wait_until(Duration::from_secs(10), || !logs
            .container_dir("ret-old")
            .exists()),
        "a directory deleted more than LogRetention ago survived the next start:\n{}",
        listing(&logs)
    );
    assert!(
        logs.container_dir("ret-new").exists(),
        "a directory deleted just now went:\n{}",
        listing(&logs)
    );
    c.assert_clean();
}
