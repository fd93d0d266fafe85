//! Issue 2: the shim is SIGKILLed; containerd cleans up through the shim's `delete`.

use scribe_e2e::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn killed_shim_is_cleaned_up() {
    let c = Containerd::start();
    let id = "orphan";
    c.ctr_ok(&c.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(c.wait_task_status(id, "RUNNING", T), "{:?}", c.tasks());
    let task = c.task(id).unwrap();
    let state_dir = c.runtime_state_dir(id);
    let ev = c.events();

    let shim = c.kill_shim(id);

    // containerd notices, runs `<shim> delete` (runtime delete --force kills the container)
    // and publishes the exit.
    let exit = ev.wait_topic(id, "/tasks/exit", T);
    let exit = exit.unwrap_or_else(|| {
        panic!(
            "no /tasks/exit after the shim died; events:\n{}\n{}",
            ev.dump(),
            c.log_tail(40)
        )
    });
    assert_eq!(exit.exit_status(), Some(137), "{}", exit.raw);
    assert!(
        wait_until(T, || !pid_alive(task.pid as i32)),
        "container process {} still running after its shim was killed\n{}",
        task.pid,
        c.log_tail(40)
    );
    assert!(
        wait_until(T, || c
            .task(id)
            .map(|t| t.status == "STOPPED")
            .unwrap_or(true)),
        "task still listed as running: {:?}",
        c.tasks()
    );
    // The task may already be gone; removing it again must not be needed to remove the container.
    let _ = c.ctr(&["task", "rm", "-f", id]);
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_container_gone(id, Some(&state_dir), Some(shim));
    assert!(
        c.container_pids().is_empty(),
        "container processes left: {:?}",
        c.container_pids()
    );
    c.assert_no_shims_no_mounts();
    // A SIGKILLed shim cannot remove its socket, and containerd's Go shim `delete`
    // does not either; report it without failing.
    let stale = c.stale_shim_sockets();
    if !stale.is_empty() {
        eprintln!("note: stale shim socket(s) after the shim was killed: {stale:?}");
    }
}

/// Issue 14 item 4: after a shim crash, the `delete` command containerd runs writes what the
/// dead shim could not: the `exit` record (137, with an error saying the shim was gone) and the
/// `delete` record in container.log, and a line in runtime.log.
#[test]
fn killed_shim_leaves_exit_and_delete_records() {
    let c = Containerd::start();
    let logs = scribe_e2e::records::LogSetup::new(&c, "crash", "");
    let id = "crashed";
    c.ctr_ok(&logs.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(c.wait_task_status(id, "RUNNING", T), "{:?}", c.tasks());
    let ev = c.events();
    let shim = c.kill_shim(id);
    let exit = ev.wait_topic(id, "/tasks/exit", T);
    assert!(
        exit.is_some(),
        "no /tasks/exit after the shim died:\n{}",
        ev.dump()
    );
    let deleted = wait_until(T, || {
        logs.records(id)
            .last()
            .is_some_and(|r| r["event"] == "delete")
    });
    let recs = logs.records(id);
    let dump: String = recs.iter().map(|r| format!("{r}\n")).collect();
    assert!(
        deleted,
        "container.log does not end with a delete record after shim {shim} was killed:\n{dump}{}",
        c.log_tail(40)
    );
    for (n, r) in recs.iter().enumerate() {
        if let Err(e) = scribe_events::validate_container_record(r) {
            panic!("container.log line {}: {e}: {r}", n + 1);
        }
    }
    let n = recs.len();
    assert!(n >= 4, "create, start, exit, delete expected:\n{dump}");
    let (exit, delete) = (&recs[n - 2], &recs[n - 1]);
    assert_eq!(exit["event"], "exit", "{dump}");
    assert_eq!(exit["exit_code"], 137, "{exit}");
    assert!(exit.get("exec_id").is_none(), "the init's exit: {exit}");
    let err = exit["error"].as_str().unwrap_or("");
    assert!(
        err.contains("shim"),
        "the exit record says the shim was gone: {exit}"
    );
    assert_eq!(delete["exit_code"], 137, "{delete}");
    assert_eq!(delete["status"], "deleted", "{delete}");
    assert_eq!(
        recs.iter().filter(|r| r["event"] == "delete").count(),
        1,
        "one delete record:\n{dump}"
    );
    let rt = logs.runtime_records(id);
    let line = rt
        .iter()
        .find(|r| {
            r["component"] == "shim"
                && r["msg"]
                    .as_str()
                    .is_some_and(|m| m.contains("delete command"))
        })
        .unwrap_or_else(|| {
            panic!(
                "no runtime.log line from the delete command:\n{}",
                rt.iter().map(|r| format!("{r}\n")).collect::<String>()
            )
        });
    assert_eq!(line["container_id"], id, "{line}");
    assert_eq!(line["level"], "warn", "{line}");
    if let Err(e) = scribe_events::validate_runtime_record(line) {
        panic!("runtime.log line: {e}: {line}");
    }
    let _ = c.ctr(&["task", "rm", "-f", id]);
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_no_shims_no_mounts();
}

/// With `ContainerLog = false` the `delete` command writes no container.log either.
#[test]
fn killed_shim_without_container_log_writes_none() {
    let c = Containerd::start();
    let logs = scribe_e2e::records::LogSetup::new(&c, "crash-off", "ContainerLog = false");
    let id = "crashed-off";
    c.ctr_ok(&logs.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(c.wait_task_status(id, "RUNNING", T), "{:?}", c.tasks());
    let ev = c.events();
    c.kill_shim(id);
    assert!(
        ev.wait_topic(id, "/tasks/exit", T).is_some(),
        "{}",
        ev.dump()
    );
    let found = wait_until(T, || {
        logs.runtime_records(id).iter().any(|r| {
            r["msg"]
                .as_str()
                .is_some_and(|m| m.contains("delete command"))
        })
    });
    assert!(
        found,
        "runtime.log has the delete command's line\n{}",
        c.log_tail(40)
    );
    assert!(
        !logs.container_log(id).exists(),
        "{} written although ContainerLog = false",
        logs.container_log(id).display()
    );
    let _ = c.ctr(&["task", "rm", "-f", id]);
    c.ctr_ok(&["containers", "rm", id]);
}
