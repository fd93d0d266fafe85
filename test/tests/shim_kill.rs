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
