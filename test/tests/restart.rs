//! Issue 2: containerd restarts while a container runs.

use scribe_e2e::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

fn count_ticks(p: &std::path::Path) -> usize {
    std::fs::read_to_string(p)
        .map(|s| s.lines().filter(|l| l.starts_with("tick ")).count())
        .unwrap_or(0)
}

#[test]
fn containerd_restart_keeps_task_output_kill_and_exit() {
    let mut c = Containerd::start();
    let id = "survivor";
    let logdir = c.dir().join("logs");
    std::fs::create_dir_all(&logdir).unwrap();
    let log = logdir.join("survivor.log");
    let uri = format!("file://{}", log.display());
    c.ctr_ok(&c.run_args(&[
        "-d",
        "--log-uri",
        &uri,
        IMAGE,
        id,
        "sh",
        "-c",
        "i=0; while :; do echo tick $i; i=$((i+1)); sleep 0.1; done",
    ]));
    assert!(c.wait_task_status(id, "RUNNING", T), "{:?}", c.tasks());
    assert!(
        wait_until(T, || count_ticks(&log) >= 3),
        "no output in {}: {:?}",
        log.display(),
        std::fs::read_to_string(&log)
    );
    let task = c.task(id).unwrap();
    let shim = c.shim_pid(id).expect("shim pid");

    c.stop();
    assert!(pid_alive(shim), "shim died with containerd");
    assert!(pid_alive(task.pid as i32), "container died with containerd");
    let n = count_ticks(&log);
    assert!(
        wait_until(T, || count_ticks(&log) > n + 3),
        "output stopped while containerd was down"
    );

    c.restart();
    let t2 = c.task(id).unwrap_or_else(|| {
        panic!(
            "task not listed after restart: {:?}\n{}",
            c.tasks(),
            c.log_tail(40)
        )
    });
    assert_eq!(t2.status, "RUNNING");
    assert_eq!(t2.pid, task.pid, "pid changed across restart");
    let n = count_ticks(&log);
    assert!(
        wait_until(T, || count_ticks(&log) > n + 3),
        "output stopped after restart"
    );
    assert_eq!(
        c.shim_pid(id),
        Some(shim),
        "a different shim serves the task after restart"
    );

    let ev = c.events();
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    assert_eq!(
        ev.wait_exit(id, T),
        Some(137),
        "exit after restart; events:\n{}",
        ev.dump()
    );
    assert!(c.wait_task_status(id, "STOPPED", T), "{:?}", c.tasks());
    let state_dir = c.runtime_state_dir(id);
    c.ctr_ok(&["task", "rm", id]);
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_container_gone(id, Some(&state_dir), Some(shim));
    c.assert_no_shims_no_mounts();
    // the log holds consecutive ticks: nothing lost or duplicated across the restart
    let s = std::fs::read_to_string(&log).unwrap();
    for (i, l) in s.lines().enumerate() {
        assert_eq!(l, format!("tick {i}"), "log line {i}");
    }
}

#[test]
fn containerd_restart_then_task_exits_on_its_own() {
    let mut c = Containerd::start();
    let id = "selfexit";
    // the container exits 5 when the flag file appears in a host dir it sees
    std::fs::create_dir_all(c.dir().join("share")).unwrap();
    let mount = format!(
        "type=bind,src={},dst=/share,options=rbind:rw",
        c.dir().join("share").display()
    );
    c.ctr_ok(&c.run_args(&[
        "-d",
        "--mount",
        &mount,
        IMAGE,
        id,
        "sh",
        "-c",
        "while [ ! -e /share/go ]; do sleep 0.1; done; exit 5",
    ]));
    assert!(c.wait_task_status(id, "RUNNING", T));
    c.stop();
    std::fs::write(c.dir().join("share/go"), b"").unwrap();
    std::thread::sleep(Duration::from_millis(500));
    c.restart();
    // The exit happened while containerd was down. containerd 1.6 lists the task as
    // STOPPED after restart; 1.7+ asks the shim for its pids on load and, finding
    // none, deletes it as a "leaked shim" (containerd#6860), so the task is gone.
    // Either way the process is gone and the container can be removed.
    assert!(
        wait_until(T, || c
            .task(id)
            .map(|t| t.status == "STOPPED")
            .unwrap_or(true)),
        "{:?}\n{}",
        c.tasks(),
        c.log_tail(40)
    );
    assert!(
        c.container_pids().is_empty(),
        "container processes left: {:?}",
        c.container_pids()
    );
    if c.task(id).is_some() {
        c.ctr_ok(&["task", "rm", id]);
    }
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_no_shims_no_mounts();
}
