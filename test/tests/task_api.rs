//! Issue 3: terminals, pause/resume, metrics; issue 5: OOM events and records; issue 6: options
//! TOML errors. Each drives a real containerd with ctr.

use scribe_e2e::terminal::{in_pty, in_pty_typing};
use scribe_e2e::*;
use std::path::Path;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);

fn ctr_line(c: &Containerd) -> String {
    format!(
        "{} --address {} -n {}",
        c.bin_dir().join("ctr").display(),
        c.address().display(),
        c.namespace()
    )
}

#[test]
fn terminal_gets_the_size_and_follows_a_resize() {
    let c = Containerd::start();
    let ctr = ctr_line(&c);
    let rt = c.runtime().to_string();
    // The inner shell sets the outer terminal's size, starts ctr in the background, changes the
    // size and tells ctr (SIGWINCH), as a terminal emulator would. ctr sets the size right after
    // Start, so the container waits a moment before looking (with either shim).
    let inner = format!(
        "stty cols 100 rows 30; {ctr} run --rm -t --runtime {rt} {IMAGE} tty1 \
         sh -c 'sleep 1; stty size; tty; sleep 2; stty size' & sleep 2; \
         stty cols 120 rows 40; kill -WINCH $!; wait $!; echo exit=$?"
    );
    let shown = in_pty(&inner);
    let lines: Vec<&str> = shown.lines().map(str::trim).collect();
    assert!(
        lines.contains(&"30 100"),
        "initial size not seen: {shown:?}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("/dev/pts/")),
        "no tty inside: {shown:?}"
    );
    assert!(lines.contains(&"40 120"), "resize not followed: {shown:?}");
    assert!(lines.contains(&"exit=0"), "ctr run -t failed: {shown:?}");
    c.assert_no_shims_no_mounts();
}

#[test]
fn interactive_terminal_echoes_input() {
    let c = Containerd::start();
    let ctr = ctr_line(&c);
    let rt = c.runtime().to_string();
    // Input typed into the terminal reaches the shell in the container, which answers.
    let inner = format!("{ctr} run --rm -t --runtime {rt} {IMAGE} tty2 sh; echo exit=$?");
    let shown = in_pty_typing(
        &inner,
        "echo hello-$((6*7))\nexit 5\n",
        Duration::from_secs(2),
    );
    assert!(
        shown.contains("hello-42"),
        "shell did not answer: {shown:?}"
    );
    assert!(shown.contains("exit=5"), "exit code lost: {shown:?}");
    c.assert_no_shims_no_mounts();
}

#[test]
fn exec_with_terminal() {
    let c = Containerd::start();
    let id = "ttyexec";
    c.ctr_ok(&c.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    let inner = format!(
        "stty cols 90 rows 20; {} task exec -t --exec-id te1 {id} sh -c 'sleep 1; stty size; exit 4'; echo exit=$?",
        ctr_line(&c)
    );
    let shown = in_pty(&inner);
    assert!(shown.contains("20 90"), "exec terminal size: {shown:?}");
    assert!(shown.contains("exit=4"), "exec exit code: {shown:?}");
    c.kill_and_remove(id);
    c.assert_clean();
}

#[test]
fn pause_resume_state_and_events() {
    let c = Containerd::start();
    let ev = c.events();
    let id = "pauser";
    c.ctr_ok(&c.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(c.wait_task_status(id, "RUNNING", T));
    c.ctr_ok(&["task", "pause", id]);
    assert_eq!(c.task(id).map(|t| t.status), Some("PAUSED".into()));
    assert!(
        ev.wait_topic(id, "/tasks/paused", T).is_some(),
        "no /tasks/paused:\n{}",
        ev.dump()
    );
    // Pausing twice is refused, the state stays.
    let again = c.ctr(&["task", "pause", id]);
    assert!(!again.success(), "second pause accepted: {again}");
    c.ctr_ok(&["task", "resume", id]);
    assert_eq!(c.task(id).map(|t| t.status), Some("RUNNING".into()));
    assert!(
        ev.wait_topic(id, "/tasks/resumed", T).is_some(),
        "no /tasks/resumed:\n{}",
        ev.dump()
    );
    let topics = ev.task_topics(id);
    let pos = |t: &str| topics.iter().position(|x| x == t);
    assert!(pos("/tasks/start") < pos("/tasks/paused"), "{topics:?}");
    assert!(pos("/tasks/paused") < pos("/tasks/resumed"), "{topics:?}");
    c.kill_and_remove(id);
    c.assert_clean();
}

/// `memory.usage_in_bytes` (v1) or `memory.usage` (ctr's v2 name) from `ctr task metrics`.
fn memory_usage(c: &Containerd, id: &str) -> u64 {
    let o = c.ctr_ok(&["task", "metrics", id]);
    o.stdout
        .lines()
        .find_map(|l| {
            let mut it = l.split_whitespace();
            match (it.next(), it.next()) {
                (Some("memory.usage_in_bytes" | "memory.usage"), Some(v)) => v.parse().ok(),
                _ => None,
            }
        })
        .unwrap_or_else(|| panic!("no memory usage in ctr task metrics: {o}"))
}

#[test]
fn metrics_show_memory_growing_when_the_container_allocates() {
    let c = Containerd::start();
    let id = "metrics";
    // Fills ~40 MB of the container's /dev/shm (tmpfs, charged to its memory cgroup) once a
    // signal file appears.
    let script = "while [ ! -e /tmp/go ]; do sleep 0.1; done; \
                  head -c 40000000 /dev/zero > /dev/shm/fill; touch /tmp/done; sleep 1000";
    c.ctr_ok(&c.run_args(&["-d", IMAGE, id, "sh", "-c", script]));
    assert!(c.wait_task_status(id, "RUNNING", T));
    let before = memory_usage(&c, id);
    c.ctr_ok(&["task", "exec", "--exec-id", "go", id, "touch", "/tmp/go"]);
    let deadline = Instant::now() + T;
    loop {
        let o = c.ctr(&[
            "task",
            "exec",
            "--exec-id",
            "chk",
            id,
            "test",
            "-e",
            "/tmp/done",
        ]);
        if o.code == Some(0) {
            break;
        }
        assert!(Instant::now() < deadline, "allocation never finished");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = memory_usage(&c, id);
    assert!(
        after > before + 30_000_000,
        "memory usage did not grow by the ~40 MB allocated: before {before}, after {after}"
    );
    c.kill_and_remove(id);
    c.assert_clean();
}

fn write_options(c: &Containerd, name: &str, toml: &str) -> String {
    let path = c.dir().join(name);
    std::fs::write(&path, toml).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path.display().to_string()
}

#[test]
fn oom_kill_yields_task_oom_before_exit_137_and_records() {
    let c = Containerd::start();
    let runs: usize = std::env::var("SCRIBE_E2E_OOM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let logs = c.dir().join("logs");
    let opts = write_options(
        &c,
        "oom.toml",
        &format!("LogRoot = \"{}\"\n", logs.display()),
    );
    let ev = c.events();
    for i in 0..runs {
        let id = format!("oom{i}");
        let o = c.ctr(&c.run_args(&[
            "--rm",
            "--runtime-config-path",
            &opts,
            "--memory-limit",
            "16777216",
            IMAGE,
            &id,
            "sh",
            "-c",
            "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
        ]));
        assert_eq!(o.code, Some(137), "run {i}: {o}");
        assert!(ev.wait_topic(&id, "/tasks/delete", T).is_some(), "run {i}");
        let topics = ev.task_topics(&id);
        let oom = topics.iter().position(|t| t == "/tasks/oom");
        let exit = topics.iter().position(|t| t == "/tasks/exit");
        assert!(
            oom.is_some() && oom < exit,
            "run {i}: TaskOOM must come before TaskExit: {topics:?}"
        );
        assert_eq!(ev.wait_exit(&id, T), Some(137), "run {i}");
        if !testing_scribe() {
            continue;
        }
        let log = logs.join(c.namespace()).join(&id).join("container.log");
        let text = std::fs::read_to_string(&log)
            .unwrap_or_else(|e| panic!("reading {}: {e}", log.display()));
        let recs: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        let pos = |event: &str| recs.iter().position(|r| r["event"] == event);
        let oom_at = pos("oom").unwrap_or_else(|| panic!("no oom record: {text}"));
        assert!(Some(oom_at) < pos("exit"), "oom record after exit: {text}");
        let oom_rec = &recs[oom_at];
        assert_eq!(oom_rec["status"], "killed", "{oom_rec}");
        assert_eq!(oom_rec["memory_limit_bytes"], 16777216, "{oom_rec}");
        assert!(
            oom_rec["memory_max_usage_bytes"].as_u64().unwrap_or(0) > 0,
            "{oom_rec}"
        );
    }
    c.assert_clean();
}

#[test]
fn bad_options_toml_fails_naming_the_problem_and_leaves_nothing() {
    let c = Containerd::start();
    let cases = [
        (
            "malformed.toml",
            "BinaryName = ",
            "invalid runtime options TOML",
        ),
        ("unknown.toml", "Bogus = 1\n", "Bogus"),
        (
            "nobinary.toml",
            "BinaryName = \"/nonexistent/runc\"\n",
            "/nonexistent/runc",
        ),
    ];
    for (i, (file, toml, needle)) in cases.iter().enumerate() {
        let opts = write_options(&c, file, toml);
        let id = format!("badopt{i}");
        let o = c.ctr(&c.run_args(&["--rm", "--runtime-config-path", &opts, IMAGE, &id, "true"]));
        assert!(!o.success(), "{file} accepted: {o}");
        if testing_scribe() {
            assert!(
                o.stderr.contains(needle),
                "{file}: error must name {needle:?}: {o}"
            );
        }
        let _ = c.ctr(&["containers", "rm", &id]);
    }
    c.assert_clean();
}

#[test]
fn runtime_root_from_options_is_used() {
    if !testing_scribe() {
        return;
    }
    let c = Containerd::start();
    let root = c.dir().join("runc-root");
    let opts = write_options(&c, "root.toml", &format!("Root = \"{}\"\n", root.display()));
    let id = "rooted";
    c.ctr_ok(&c.run_args(&[
        "-d",
        "--runtime-config-path",
        &opts,
        IMAGE,
        id,
        "sleep",
        "100",
    ]));
    assert!(
        Path::new(&root).join(id).join("state.json").exists(),
        "runc state not under the configured root {}",
        root.display()
    );
    c.kill_and_remove(id);
    assert!(
        !root.join(id).exists(),
        "runtime state left in {}",
        root.display()
    );
    c.assert_clean();
}

#[test]
fn runtime_failure_becomes_a_runtime_log_record() {
    if !testing_scribe() {
        return;
    }
    let c = Containerd::start();
    let logs = c.dir().join("logs");
    let opts = write_options(
        &c,
        "rl.toml",
        &format!("LogRoot = \"{}\"\n", logs.display()),
    );
    let id = "rtfail";
    let o = c.ctr(&c.run_args(&[
        "--rm",
        "--runtime-config-path",
        &opts,
        IMAGE,
        id,
        "/no/such/exe",
    ]));
    assert!(!o.success(), "{o}");
    let _ = c.ctr(&["containers", "rm", id]);
    let path = logs.join(c.namespace()).join(id).join("runtime.log");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rec = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|r| r["level"] == "error" && r["msg"].as_str().unwrap_or("").contains("/no/such/exe"))
        .unwrap_or_else(|| panic!("no error record naming the executable: {text}"));
    assert_eq!(rec["component"], "runc", "{rec}");
    assert!(rec["pid"].as_u64().is_some(), "{rec}");
    scribe_events::validate_runtime_record(&rec).unwrap_or_else(|e| panic!("{e}: {rec}"));
    c.assert_clean();
}

/// `IoUid`/`IoGid` (the runc options' io_uid/io_gid): the shim gives the pipes a container's
/// processes get as stdio to that user and group, so that runc's init inside a user namespace may
/// take them over. runc then re-owns each pipe to the container's user (its fixStdioPermissions
/// changes the uid and keeps the group), so what a process sees is its own uid (0 here) and the
/// configured group: without IoGid the group would be 0. Checked for the init and for an exec,
/// through the pipe each holds.
#[test]
fn io_owner_from_options_owns_the_stdio_pipes() {
    if !testing_scribe() {
        // ctr sends runc options only to io.containerd.runc.*; the TOML keys are Scribe's.
        return;
    }
    let c = Containerd::start();
    let opts = write_options(&c, "io.toml", "IoUid = 4242\nIoGid = 4343\n");
    let show =
        "busybox stat -L -c %u:%g /proc/self/fd/1; busybox stat -L -c %u:%g /proc/self/fd/2 >&2";
    let o = c.ctr_ok(&c.run_args(&[
        "--rm",
        "--runtime-config-path",
        &opts,
        IMAGE,
        "ioowner",
        "sh",
        "-c",
        show,
    ]));
    assert_eq!(
        (o.stdout.trim(), o.stderr.trim()),
        ("0:4343", "0:4343"),
        "owner of the init's stdout and stderr pipes: {o}"
    );

    c.ctr_ok(&c.run_args(&[
        "-d",
        "--runtime-config-path",
        &opts,
        IMAGE,
        "ioowner2",
        "sleep",
        "100",
    ]));
    let o = c.ctr_ok(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "ioowner2",
        "sh",
        "-c",
        show,
    ]);
    assert_eq!(
        (o.stdout.trim(), o.stderr.trim()),
        ("0:4343", "0:4343"),
        "owner of an exec's stdout and stderr pipes: {o}"
    );
    c.kill_and_remove("ioowner2");
    c.assert_clean();
}
