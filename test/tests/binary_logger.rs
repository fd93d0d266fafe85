//! Issue 4: `binary://` logging binaries end to end, with the suite's own logger
//! (`src/bin/scribe-test-logger.rs`), through `ctr run --log-uri binary:///...?dir=...`.
//!
//! What containerd documents for the contract (and its Go shim does): the logger's environment
//! holds only `CONTAINER_ID` and `CONTAINER_NAMESPACE`, the query comes as argument pairs, fd 3
//! and 4 are the container's stdout and stderr, fd 5 the ready pipe, fds 0-2 /dev/null; the
//! logger is sent SIGTERM when the process is deleted. Runs with the runtime under test
//! (`SCRIBE_E2E_RUNTIME=io.containerd.runc.v2` checks the test against the Go shim).

use scribe_e2e::binlogger::TestLogger;
use scribe_e2e::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const LOGGER: &str = env!("CARGO_BIN_EXE_scribe-test-logger");
const T: Duration = Duration::from_secs(30);

#[test]
fn logging_binary_gets_only_the_contract_and_is_terminated_when_the_container_is_deleted() {
    let c = Containerd::start();
    let ns = c.namespace().to_string();
    let logger = TestLogger::new(LOGGER, c.dir().join("binlog"));
    let ev = c.events();
    let id = "binlogenv";
    // linger: the logger stays after its streams end, so only the shim can make it exit
    let uri = logger.uri(&[("linger", "1")]);
    c.ctr_ok(&c.run_args(&[
        "-d",
        "--log-uri",
        &uri,
        IMAGE,
        id,
        "sh",
        "-c",
        "echo to-stdout; echo to-stderr >&2; exit 3",
    ]));
    assert_eq!(ev.wait_exit(id, T), Some(3), "{}", ev.dump());

    let info = logger.start_info(&ns, id, T);
    let env: BTreeMap<String, String> = info["env"]
        .as_object()
        .unwrap_or_else(|| panic!("no env in {info}"))
        .iter()
        .map(|(k, v)| {
            (
                k.clone(),
                v.as_str().unwrap_or("<not a string>").to_string(),
            )
        })
        .collect();
    let want_env: BTreeMap<String, String> = [
        ("CONTAINER_ID".to_string(), id.to_string()),
        ("CONTAINER_NAMESPACE".to_string(), ns.clone()),
    ]
    .into();
    assert_eq!(env, want_env, "the logger's whole environment");

    let args: Vec<&str> = info["args"]
        .as_array()
        .unwrap_or_else(|| panic!("no args in {info}"))
        .iter()
        .map(|a| a.as_str().unwrap_or("<not a string>"))
        .collect();
    // the query's pairs, in any order (Go ranges over a map)
    let mut pairs: Vec<(&str, &str)> = args
        .chunks(2)
        .map(|p| (p[0], p.get(1).copied().unwrap_or("")))
        .collect();
    pairs.sort();
    let dir = logger.dir().display().to_string();
    assert_eq!(
        pairs,
        [("dir", dir.as_str()), ("linger", "1")],
        "argv {args:?}"
    );

    let fds: BTreeMap<i32, String> = info["fds"]
        .as_object()
        .unwrap_or_else(|| panic!("no fds in {info}"))
        .iter()
        .map(|(k, v)| {
            (
                k.parse().unwrap_or(-1),
                v.as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    for fd in 0..=2 {
        assert_eq!(
            fds.get(&fd).map(String::as_str),
            Some("/dev/null"),
            "fd {fd}: {fds:?}"
        );
    }
    for fd in 3..=5 {
        assert!(
            fds.get(&fd).is_some_and(|t| t.starts_with("pipe:")),
            "fd {fd} is not a pipe: {fds:?}"
        );
    }
    // Scribe hands over nothing else, not even descriptors it inherited without CLOEXEC (the
    // Go shim passes those on: fds the shell running the tests left open show up there).
    if testing_scribe() {
        assert_eq!(
            fds.keys().copied().collect::<Vec<_>>(),
            [0, 1, 2, 3, 4, 5],
            "the logger's open descriptors: {fds:?}"
        );
    }

    // the logger got the output, and is still there (lingering)
    let pid = logger.pid(&ns, id, T);
    assert!(
        wait_until(T, || logger.stdout(&ns, id) == b"to-stdout\n"
            && logger.stderr(&ns, id) == b"to-stderr\n"),
        "logger files: stdout {:?} stderr {:?}",
        String::from_utf8_lossy(&logger.stdout(&ns, id)),
        String::from_utf8_lossy(&logger.stderr(&ns, id))
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        pid_alive(pid),
        "the lingering logger {pid} exited on its own"
    );
    assert!(
        logger.wait_exit(&ns, id, Duration::ZERO).is_none(),
        "the logger ended before the delete"
    );

    // deleting the task terminates the logger with SIGTERM (well before the 12 s SIGKILL)
    let deleted = Instant::now();
    c.ctr_ok(&["task", "rm", id]);
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(pid)),
        "the logger {pid} still runs {:?} after the task was deleted",
        deleted.elapsed()
    );
    let exit = logger.wait_exit(&ns, id, Duration::from_secs(5));
    assert_eq!(
        exit.as_deref(),
        Some("sigterm"),
        "how the logger ended, {:?} after the delete",
        deleted.elapsed()
    );
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_clean();
}

/// A running container's logger keeps running; deleting the container after a SIGKILL stops the
/// logger too, and what the container wrote before is all there.
#[test]
fn logging_binary_of_a_killed_container_has_its_output_and_is_stopped() {
    let c = Containerd::start();
    let ns = c.namespace().to_string();
    let logger = TestLogger::new(LOGGER, c.dir().join("binlog"));
    let ev = c.events();
    let id = "binlogkill";
    let uri = logger.uri(&[]);
    c.ctr_ok(&c.run_args(&[
        "-d",
        "--log-uri",
        &uri,
        IMAGE,
        id,
        "sh",
        "-c",
        "seq 1 5000; echo ready >&2; exec sleep 1000",
    ]));
    let pid = logger.pid(&ns, id, T);
    let want: String = (1..=5000).map(|i| format!("{i}\n")).collect();
    assert!(
        wait_until(T, || logger.stdout(&ns, id) == want.as_bytes()
            && logger.stderr(&ns, id) == b"ready\n"),
        "the logger did not get the output: {} stdout bytes, stderr {:?}",
        logger.stdout(&ns, id).len(),
        String::from_utf8_lossy(&logger.stderr(&ns, id))
    );
    assert!(pid_alive(pid), "the logger exited while its container runs");
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    assert_eq!(ev.wait_exit(id, T), Some(137), "{}", ev.dump());
    c.ctr_ok(&["task", "rm", id]);
    assert!(
        wait_until(Duration::from_secs(10), || !pid_alive(pid)),
        "the logger {pid} still runs after the task was deleted"
    );
    let exit = logger.wait_exit(&ns, id, Duration::from_secs(5));
    assert!(
        matches!(exit.as_deref(), Some("eof" | "sigterm")),
        "the logger ended with {exit:?}"
    );
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_clean();
}
