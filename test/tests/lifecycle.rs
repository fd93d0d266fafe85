//! Issue 2: stdio, exit codes, signals, events, cleanup after removal.

use scribe_e2e::*;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn run_rm_keeps_stdout_and_stderr_apart_and_returns_exit_code() {
    let c = Containerd::start();
    let o = c.ctr(&c.run_args(&[
        "--rm",
        IMAGE,
        "stdio",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]));
    assert_eq!(o.code, Some(3), "exit code: {o}");
    assert_eq!(
        o.stdout, "out\n",
        "stdout must hold exactly the container's stdout: {o}"
    );
    let err_lines: Vec<&str> = o.stderr.lines().collect();
    assert!(
        err_lines.contains(&"err"),
        "stderr must hold the container's stderr: {o}"
    );
    assert!(
        !err_lines.contains(&"out"),
        "stdout leaked into stderr: {o}"
    );
    assert!(
        c.containers().is_empty(),
        "--rm left a container: {:?}",
        c.containers()
    );
    c.assert_no_shims_no_mounts();
}

#[test]
fn run_rm_exit_zero_and_large_output_complete() {
    let c = Containerd::start();
    // ~1.3 MB on stdout, ~290 KB on stderr, interleaved by the kernel scheduler.
    let o = c.ctr(&c.run_args(&[
        "--rm",
        IMAGE,
        "bulk",
        "sh",
        "-c",
        "seq 1 200000 & seq 1 50000 >&2; wait",
    ]));
    assert_eq!(o.code, Some(0), "{}", o.cmdline);
    let want_out: String = (1..=200000).map(|i| format!("{i}\n")).collect();
    let want_err: String = (1..=50000).map(|i| format!("{i}\n")).collect();
    assert!(
        o.stdout == want_out,
        "stdout differs: {} bytes vs {} expected",
        o.stdout.len(),
        want_out.len()
    );
    assert!(
        o.stderr.contains(&want_err),
        "stderr lacks the container's output: {} bytes",
        o.stderr.len()
    );
    c.assert_no_shims_no_mounts();
}

#[test]
fn sigkill_reports_137() {
    let c = Containerd::start();
    let ev = c.events();
    let id = "killme";
    c.ctr_ok(&c.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(
        c.wait_task_status(id, "RUNNING", T),
        "task not running: {:?}",
        c.tasks()
    );
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    let st = ev.wait_exit(id, T);
    assert_eq!(
        st,
        Some(137),
        "exit status of a SIGKILLed init; events:\n{}",
        ev.dump()
    );
    assert!(
        c.wait_task_status(id, "STOPPED", T),
        "task not STOPPED: {:?}",
        c.tasks()
    );
    c.ctr_ok(&["task", "rm", id]);
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_no_shims_no_mounts();
}

#[test]
fn sigkill_attached_run_exits_137() {
    let c = Containerd::start();
    let id = "killattached";
    let run = c.ctr_spawn(&c.run_args(&["--rm", IMAGE, id, "sleep", "1000"]));
    assert!(
        c.wait_task_status(id, "RUNNING", T),
        "task not running: {:?}",
        c.tasks()
    );
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    let o = run.wait_timeout(T);
    assert_eq!(o.code, Some(137), "ctr run of a SIGKILLed container: {o}");
    c.assert_no_shims_no_mounts();
}

/// pid 1 of a pid namespace ignores signals it has no handler for (SIGKILL
/// aside), so the init traps TERM and exits 143 = 128 + SIGTERM, which is what
/// a user sees from an init that dies of SIGTERM.
#[test]
fn sigterm_reports_143() {
    let c = Containerd::start();
    let ev = c.events();
    let id = "termme";
    c.ctr_ok(&c.run_args(&[
        "-d",
        IMAGE,
        id,
        "sh",
        "-c",
        "trap 'exit 143' TERM; touch /tmp/trap-set; sleep 1000 & wait",
    ]));
    assert!(
        c.wait_task_status(id, "RUNNING", T),
        "task not running: {:?}",
        c.tasks()
    );
    // RUNNING comes before sh has set its trap; a SIGTERM before it would be ignored by pid 1.
    let marker = c.bundle_dir(id).join("rootfs/tmp/trap-set");
    let t0 = std::time::Instant::now();
    while !marker.exists() {
        assert!(t0.elapsed() < T, "sh never set its TERM trap ({marker:?})");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // `ctr task kill` sends SIGTERM by default
    c.ctr_ok(&["task", "kill", id]);
    assert_eq!(ev.wait_exit(id, T), Some(143), "events:\n{}", ev.dump());
    c.ctr_ok(&["task", "rm", id]);
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_no_shims_no_mounts();
}

/// An exec process (not pid 1) really dies of SIGTERM: its exit is 128 + 15.
#[test]
fn sigterm_kills_exec_process_143() {
    let c = Containerd::start();
    let ev = c.events();
    let id = "execterm";
    c.ctr_ok(&c.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(c.wait_task_status(id, "RUNNING", T));
    let exec = c.ctr_spawn(&["task", "exec", "--exec-id", "ex1", id, "sleep", "999"]);
    let started = ev.wait_for(T, |e| {
        e.topic == "/tasks/exec-started" && e.container_id() == Some(id)
    });
    assert!(
        started.is_some(),
        "no /tasks/exec-started; events:\n{}",
        ev.dump()
    );
    c.ctr_ok(&["task", "kill", "--exec-id", "ex1", "-s", "SIGTERM", id]);
    let exit = ev.wait_for(T, |e| {
        e.topic == "/tasks/exit" && e.exec_id() == Some("ex1")
    });
    let exit = exit.unwrap_or_else(|| panic!("no exit for exec ex1; events:\n{}", ev.dump()));
    assert_eq!(exit.exit_status(), Some(143), "{}", exit.raw);
    let o = exec.wait_timeout(T);
    assert_eq!(
        o.code,
        Some(143),
        "ctr task exec of a SIGTERMed process: {o}"
    );
    assert_eq!(
        c.task(id).map(|t| t.status),
        Some("RUNNING".into()),
        "the init must survive"
    );
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    assert_eq!(ev.wait_exit(id, T), Some(137));
    c.ctr_ok(&["task", "rm", id]);
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_no_shims_no_mounts();
}

#[test]
fn events_create_start_exit_delete_in_order() {
    let c = Containerd::start();
    let ev = c.events();
    let id = "evts";
    let o = c.ctr(&c.run_args(&["--rm", IMAGE, id, "sh", "-c", "exit 7"]));
    assert_eq!(o.code, Some(7), "{o}");
    assert!(
        ev.wait_topic(id, "/tasks/delete", T).is_some(),
        "no /tasks/delete; events:\n{}",
        ev.dump()
    );
    let evs: Vec<Event> = ev
        .for_container(id)
        .into_iter()
        .filter(|e| e.topic.starts_with("/tasks/"))
        .collect();
    let topics: Vec<&str> = evs.iter().map(|e| e.topic.as_str()).collect();
    assert_eq!(
        topics,
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "events:\n{}",
        ev.dump()
    );
    let pid = evs[0].pid().unwrap_or(0);
    assert!(pid > 1, "create pid: {}", evs[0].raw);
    assert_eq!(
        evs[1].pid(),
        Some(pid),
        "start pid != create pid:\n{}",
        ev.dump()
    );
    assert_eq!(
        evs[2].pid(),
        Some(pid),
        "exit pid != create pid:\n{}",
        ev.dump()
    );
    assert_eq!(
        evs[2].exec_id(),
        Some(id),
        "exit id must be the container id for the init: {}",
        evs[2].raw
    );
    assert_eq!(evs[2].exit_status(), Some(7), "{}", evs[2].raw);
    assert!(
        evs[2].payload.get("exited_at").is_some(),
        "exit without exited_at: {}",
        evs[2].raw
    );
    assert_eq!(
        evs[3].exit_status(),
        Some(7),
        "delete exit_status: {}",
        evs[3].raw
    );
    assert_eq!(evs[3].pid(), Some(pid), "delete pid: {}", evs[3].raw);
    let bundle = evs[0]
        .payload
        .get("bundle")
        .and_then(|b| b.as_str())
        .unwrap_or("");
    assert_eq!(
        bundle,
        c.bundle_dir(id).to_string_lossy(),
        "create bundle: {}",
        evs[0].raw
    );
    c.assert_no_shims_no_mounts();
}

#[test]
fn events_of_detached_task_match_task_ls_pid() {
    let c = Containerd::start();
    let ev = c.events();
    let id = "evdet";
    c.ctr_ok(&c.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    let start = ev
        .wait_topic(id, "/tasks/start", T)
        .unwrap_or_else(|| panic!("no start:\n{}", ev.dump()));
    let t = c.task(id).expect("task listed");
    assert_eq!(start.pid(), Some(t.pid as u64), "start pid vs ctr task ls");
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    let exit = ev
        .wait_topic(id, "/tasks/exit", T)
        .unwrap_or_else(|| panic!("no exit:\n{}", ev.dump()));
    assert_eq!(exit.pid(), Some(t.pid as u64));
    assert_eq!(exit.exit_status(), Some(137));
    c.ctr_ok(&["task", "rm", id]);
    assert!(
        ev.wait_topic(id, "/tasks/delete", T).is_some(),
        "no delete:\n{}",
        ev.dump()
    );
    assert_eq!(
        ev.task_topics(id),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ],
        "{}",
        ev.dump()
    );
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_no_shims_no_mounts();
}

#[test]
fn nothing_left_after_task_and_container_removal() {
    let c = Containerd::start();
    let id = "leftovers";
    c.ctr_ok(&c.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(
        c.wait_task_status(id, "RUNNING", T),
        "task not running: {:?}",
        c.tasks()
    );
    let task = c.task(id).unwrap();
    let shim = c
        .shim_pid(id)
        .unwrap_or_else(|| panic!("no shim found for {id}: {:?}", c.shim_pids()));
    let bundle = c.bundle_dir(id);
    let rootfs = bundle.join("rootfs");
    let state_dir = c.runtime_state_dir(id);
    assert!(
        bundle.is_dir(),
        "bundle {} missing while running",
        bundle.display()
    );
    assert!(
        state_dir.is_dir(),
        "runtime state dir {} missing while running",
        state_dir.display()
    );
    assert!(
        !mountinfo_lines_containing(&rootfs.to_string_lossy()).is_empty(),
        "rootfs {} not mounted while running",
        rootfs.display()
    );
    assert!(pid_alive(task.pid as i32));
    assert!(
        c.container_pids().contains(&(task.pid as i32)),
        "container pid not in the namespace's cgroup"
    );

    c.kill_and_remove(id);

    c.assert_container_gone(id, Some(&state_dir), Some(shim));
    assert!(
        !pid_alive(task.pid as i32),
        "container process {} still alive",
        task.pid
    );
    assert!(
        c.container_pids().is_empty(),
        "container processes left: {:?}",
        c.container_pids()
    );
    // the shim removes its socket when it exits
    let sock = c.derived_shim_socket(id, false);
    assert!(!sock.exists(), "shim socket {} left behind", sock.display());
    c.assert_clean();
}
