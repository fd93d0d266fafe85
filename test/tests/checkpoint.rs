//! Issue 3: checkpoint and restore through the runtime and CRIU, driven with
//! `ctr containers checkpoint --task` and `ctr containers restore --live`.
//!
//! CRIU: bookworm's 3.17.1 cannot dump on this host's kernel ("vdso: Failed to fill self vdso
//! symtable"); `test/fetch-criu.sh` (run by `make e2e`) unpacks sid's CRIU 4 into
//! `.cache/criu/` and these tests put its wrapper first on containerd's PATH, where runc finds
//! it. Without it they fail, saying so.

use scribe_e2e::*;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

/// The directory with the `criu` wrapper, checked to run.
fn criu_dir() -> PathBuf {
    let dir = workspace_dir().join(".cache/criu/bin");
    let criu = dir.join("criu");
    let ok = std::process::Command::new(&criu)
        .arg("check")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "{} missing or `criu check` fails: run test/fetch-criu.sh (make e2e does)",
        criu.display()
    );
    dir
}

/// The counter the container last wrote to /count, read through an exec.
fn read_count(c: &Containerd, id: &str, exec_id: &str) -> Option<u64> {
    let out = c.ctr(&["task", "exec", "--exec-id", exec_id, id, "cat", "/count"]);
    if !out.success() {
        return None;
    }
    out.stdout.trim().parse().ok()
}

/// Waits until the container's counter reaches `at_least`; returns the value read.
fn wait_count(c: &Containerd, id: &str, at_least: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    let mut n = 0;
    let mut last = None;
    while Instant::now() < deadline {
        n += 1;
        last = read_count(c, id, &format!("r{n}"));
        if last.is_some_and(|v| v >= at_least) {
            return last.unwrap_or_default();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{id}: counter never reached {at_least} (last read {last:?})");
}

#[test]
fn checkpoint_then_restore_continues_the_process() {
    let criu = criu_dir();
    let c = Containerd::builder().path_first(criu).start();
    let events = c.events();
    let id = unique_id("ckpt");
    let reference = format!("scribe.test/checkpoint/{id}:1");
    // A shell that counts in its own memory: after a restore the count continues; a fresh start
    // would begin again at 1.
    let script = "i=0; while :; do i=$((i+1)); echo $i > /count; sleep 0.1; done";
    c.ctr_ok(&c.run_args(&["-d", IMAGE, &id, "sh", "-c", script]));
    let before = wait_count(&c, &id, 30, T);

    let out = c.ctr(&["containers", "checkpoint", "--task", &id, &reference]);
    assert!(
        out.success(),
        "checkpoint failed: {}\n{}",
        out.combined(),
        c.log_tail(30)
    );
    if testing_scribe() {
        // Scribe tells containerd (containerd's runc shim v2 publishes nothing here).
        let ev = events.wait_topic(&id, "/tasks/checkpointed", T);
        assert!(ev.is_some(), "no TaskCheckpointed:\n{}", events.dump());
    }
    // The task keeps running after a checkpoint (ctr pauses, dumps with --leave-running, resumes).
    let still = wait_count(&c, &id, before + 5, T);
    assert!(still > before);

    c.ctr_ok(&["task", "kill", "-s", "KILL", &id]);
    assert_eq!(events.wait_exit(&id, T), Some(137), "{}", events.dump());
    c.ctr_ok(&["task", "delete", &id]);
    c.ctr_ok(&["containers", "delete", &id]);

    let out = c.ctr(&["containers", "restore", "--live", &id, &reference]);
    assert!(
        out.success(),
        "restore failed: {}\n{}",
        out.combined(),
        c.log_tail(30)
    );
    assert!(
        c.wait_task_status(&id, "RUNNING", T),
        "restored task not running: {:?}",
        c.task(&id)
    );
    // The restored shell goes on from the checkpointed count.
    let after = wait_count(&c, &id, before, T);
    assert!(
        after >= before,
        "restored counter {after} is below the checkpointed {before}: the process started afresh"
    );

    // containerd heard: create (with the checkpoint, no pid yet), then start with the pid.
    let create = events
        .for_container(&id)
        .into_iter()
        .filter(|e| e.topic == "/tasks/create")
        .nth(1)
        .unwrap_or_else(|| panic!("no second TaskCreate:\n{}", events.dump()));
    assert!(
        create
            .payload
            .get("checkpoint")
            .and_then(|v| v.as_str())
            .is_some_and(|p| !p.is_empty()),
        "TaskCreate of the restore names no checkpoint: {}",
        create.raw
    );
    let starts: Vec<_> = events
        .for_container(&id)
        .into_iter()
        .filter(|e| e.topic == "/tasks/start")
        .collect();
    assert_eq!(starts.len(), 2, "{}", events.dump());
    let pid = starts[1].pid().unwrap_or_default();
    assert!(
        pid > 0,
        "TaskStart of the restore has no pid: {}",
        starts[1].raw
    );
    assert_eq!(c.task(&id).map(|t| t.pid), Some(pid as u32));

    c.ctr_ok(&["task", "kill", "-s", "KILL", &id]);
    let deadline = Instant::now() + T;
    let exit = loop {
        let exits: Vec<_> = events
            .for_container(&id)
            .into_iter()
            .filter(|e| e.topic == "/tasks/exit" && e.exec_id() == Some(id.as_str()))
            .collect();
        if exits.len() == 2 || Instant::now() > deadline {
            break exits.get(1).and_then(|e| e.exit_status());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(exit, Some(137), "restored task's exit:\n{}", events.dump());
    c.ctr_ok(&["task", "delete", &id]);
    c.ctr_ok(&["containers", "delete", &id]);
    let _ = c.ctr(&["images", "rm", &reference]);
    c.assert_no_shims_no_mounts();
}
