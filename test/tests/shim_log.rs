//! Issue 5: the shim's own log lines land in `runtime.log`, in the runtime-log schema. A line
//! about one container goes to that container's runtime.log only; a line about no container goes
//! to every container the shim serves at the time. Debug lines only when the shim runs with
//! `-debug` (containerd passes it when its own level is debug).
//!
//! These are Scribe's own records: the tests always run the Scribe runtime.

use scribe_e2e::records::LogSetup;
use scribe_e2e::*;
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Every record of the container's runtime.log, each validated against the schema (panics
/// naming the line), restricted to the shim's own (`component` `shim`).
#[track_caller]
fn shim_records(logs: &LogSetup, id: &str) -> Vec<Value> {
    let path = logs.runtime_log(id);
    logs.runtime_records(id)
        .into_iter()
        .enumerate()
        .inspect(|(n, r)| {
            if let Err(e) = scribe_events::validate_runtime_record(r) {
                panic!(
                    "{} line {}: invalid record ({e}): {r}",
                    path.display(),
                    n + 1
                );
            }
        })
        .map(|(_, r)| r)
        .filter(|r| r["component"] == "shim")
        .collect()
}

fn dump(recs: &[Value]) -> String {
    recs.iter().map(|r| format!("{r}\n")).collect()
}

fn msg(r: &Value) -> &str {
    r["msg"].as_str().unwrap_or("")
}

/// The first record whose message contains `needle`, or a panic listing them all.
#[track_caller]
fn find<'a>(recs: &'a [Value], needle: &str, what: &str) -> &'a Value {
    recs.iter()
        .find(|r| msg(r).contains(needle))
        .unwrap_or_else(|| panic!("{what}: no shim record with {needle:?}:\n{}", dump(recs)))
}

#[test]
fn shim_lines_go_to_the_runtime_log_of_their_container() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "shimlog", "");
    let ann = "io.containerd.runc.v2.group=shimlog-pod";
    let (a, b) = ("sl-a", "sl-b");
    for id in [a, b] {
        c.ctr_ok(&logs.run_args(&["-d", "--annotation", ann, IMAGE, id, "sleep", "1000"]));
        assert!(c.wait_task_status(id, "RUNNING", T), "{:?}", c.tasks());
    }
    let shim = c.shim_pid(a).expect("shim of the pod");
    assert_eq!(c.shim_pid(b), Some(shim), "one shim serves the pod");
    let ev = c.events();
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", a]);
    assert_eq!(ev.wait_exit(a, T), Some(137), "{}", ev.dump());
    // A kill of an exited process fails; the shim says so in a's runtime.log.
    let failed = c.ctr(&["task", "kill", a]);
    failed.assert_failure();
    // Deleting a makes containerd ask the shim to shut down; it stays for b and says so, about no
    // container in particular: that line goes to b's runtime.log only (a is no longer served).
    c.ctr_ok(&["task", "rm", a]);
    c.ctr_ok(&["containers", "rm", a]);
    assert!(pid_alive(shim), "the pod's shim left while b runs");
    // An exec of a missing binary: the runtime logs why in its log.json, which the shim keeps
    // in b's runtime.log.
    c.ctr(&["task", "exec", "--exec-id", "nobin", b, "/no/such/binary"])
        .assert_failure();
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", b]);
    assert_eq!(ev.wait_exit(b, T), Some(137), "{}", ev.dump());
    c.ctr_ok(&["task", "rm", b]);
    c.ctr_ok(&["containers", "rm", b]);
    c.assert_clean();

    let ra = shim_records(&logs, a);
    let rb = shim_records(&logs, b);
    for (id, recs) in [(a, &ra), (b, &rb)] {
        let created = find(recs, "created, init pid", id);
        assert_eq!(created["level"], "info", "{created}");
        assert_eq!(created["container_id"], id, "{created}");
        assert_eq!(
            created["pid"], shim,
            "the record's pid is the shim's: {created}"
        );
        let started = find(recs, "init started, pid", id);
        assert_eq!(started["container_id"], id, "{started}");
        find(recs, "deleted", id);
        // nothing about the other container
        let other = if id == a { b } else { a };
        assert!(
            !recs.iter().any(|r| r["container_id"] == other),
            "{id}'s runtime.log holds lines about {other}:\n{}",
            dump(recs)
        );
    }
    // Killing a process that already exited is the normal race of stopping a dying container:
    // a debug line, not a warning.
    let refused = find(&ra, "signal 15 not delivered", a);
    assert_eq!(refused["level"], "debug", "{refused}");
    assert_eq!(refused["container_id"], a, "{refused}");
    let err = refused["error"].as_str().unwrap_or("");
    assert!(
        err.contains("process already finished"),
        "the record carries the shim's error: {refused}\nctr said: {failed}"
    );
    let stay = find(&rb, "shutdown requested while serving 1 container", b);
    assert!(
        stay.get("container_id").is_none(),
        "a shim-wide line: {stay}"
    );
    assert!(
        !ra.iter().any(|r| msg(r).contains("shutdown requested")),
        "a shim-wide line reached a container the shim no longer serves:\n{}",
        dump(&ra)
    );
    // The runtime's own lines name the container and sort by the time the shim received them;
    // runc 1.1 stamps whole seconds, kept as `runtime_time`.
    let runc: Vec<Value> = logs
        .runtime_records(b)
        .into_iter()
        .filter(|r| r["component"] == "runc")
        .collect();
    let failed_exec = runc
        .iter()
        .find(|r| r["level"] == "error")
        .unwrap_or_else(|| panic!("no runc error line in {b}'s runtime.log:\n{}", dump(&runc)));
    for r in &runc {
        assert_eq!(
            r["container_id"], b,
            "a runc line without its container: {r}"
        );
        if let Some(rt) = r.get("runtime_time") {
            let rt = rt
                .as_str()
                .unwrap_or_else(|| panic!("runtime_time is a string: {r}"));
            let (ts, rts) = (
                scribe_events::parse_rfc3339(r["timestamp"].as_str().unwrap_or("")),
                scribe_events::parse_rfc3339(rt),
            );
            let (ts, rts) = (
                ts.unwrap_or_else(|e| panic!("timestamp: {e}: {r}")),
                rts.unwrap_or_else(|e| panic!("runtime_time: {e}: {r}")),
            );
            assert!(
                ts >= rts,
                "the receive time is not before the runtime's own: {r}"
            );
        }
    }
    assert!(
        failed_exec.get("runtime_time").is_some(),
        "runc 1.1 writes whole seconds: its time belongs in runtime_time: {failed_exec}"
    );
    // containerd runs at debug level here, so the shim has -debug: its debug lines are kept
    let sent = find(&ra, "init: sent signal 9", a);
    assert_eq!(sent["level"], "debug", "{sent}");
}

#[test]
fn without_debug_the_runtime_log_has_no_debug_lines() {
    let c = Containerd::builder().log_level("info").start();
    let logs = LogSetup::new(&c, "quiet", "");
    let id = "sl-quiet";
    c.ctr_ok(&logs.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(c.wait_task_status(id, "RUNNING", T), "{:?}", c.tasks());
    c.kill_and_remove(id);
    c.assert_clean();
    let recs = shim_records(&logs, id);
    find(&recs, "created, init pid", id);
    assert!(
        !recs.iter().any(|r| r["level"] == "debug"),
        "debug lines from a shim started without -debug:\n{}",
        dump(&recs)
    );
}
