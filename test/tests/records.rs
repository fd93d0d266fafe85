//! Issue 4: `container.log` lifecycle records. Each line is checked with
//! `scribe_events::validate_container_record` (the typed schema check), and the records are
//! compared, in order, with the events containerd published for the same container.
//!
//! These are Scribe's own records: the tests always run the Scribe runtime.

use scribe_e2e::records::LogSetup;
use scribe_e2e::*;
use serde_json::Value;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

/// Validates every record (panics naming the line and the field), returns them.
#[track_caller]
fn valid_records(logs: &LogSetup, id: &str) -> Vec<Value> {
    let recs = logs.records(id);
    for (n, r) in recs.iter().enumerate() {
        if let Err(e) = scribe_events::validate_container_record(r) {
            panic!(
                "{} line {}: invalid record ({e}): {r}",
                logs.container_log(id).display(),
                n + 1
            );
        }
        assert_eq!(
            r["container_id"].as_str(),
            Some(id),
            "line {}: container_id: {r}",
            n + 1
        );
    }
    recs
}

fn dump(recs: &[Value]) -> String {
    recs.iter().map(|r| format!("{r}\n")).collect()
}

fn u64_field(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(|x| x.as_u64())
}

/// The container.log event name of a containerd task topic.
fn record_event_of(topic: &str) -> Option<&'static str> {
    Some(match topic {
        "/tasks/create" => "create",
        "/tasks/start" => "start",
        "/tasks/exec-added" => "exec_added",
        "/tasks/exec-started" => "exec_started",
        "/tasks/exit" => "exit",
        "/tasks/delete" => "delete",
        "/tasks/oom" => "oom",
        "/tasks/paused" => "pause",
        "/tasks/resumed" => "resume",
        _ => return None,
    })
}

#[test]
fn lifecycle_records_in_order_and_matching_events() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "rec", "");
    let ev = c.events();
    let id = "records";
    c.ctr_ok(&logs.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(
        c.wait_task_status(id, "RUNNING", T),
        "task not running: {:?}",
        c.tasks()
    );
    let o = c.ctr(&["task", "exec", "--exec-id", "ex1", id, "sh", "-c", "exit 3"]);
    assert_eq!(o.code, Some(3), "exec: {o}");
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    assert_eq!(ev.wait_exit(id, T), Some(137), "events:\n{}", ev.dump());
    c.ctr_ok(&["task", "rm", id]);
    let del = ev.wait_topic(id, "/tasks/delete", T);
    assert!(del.is_some(), "no /tasks/delete; events:\n{}", ev.dump());
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_clean();

    let recs = valid_records(&logs, id);
    let events: Vec<Event> = ev
        .for_container(id)
        .into_iter()
        .filter(|e| e.topic.starts_with("/tasks/"))
        .collect();
    let rec_names: Vec<&str> = recs.iter().map(|r| r["event"].as_str().unwrap()).collect();
    let want = [
        "create",
        "start",
        "exec_added",
        "exec_started",
        "exit",
        "exit",
        "delete",
    ];
    assert_eq!(rec_names, want, "container.log events:\n{}", dump(&recs));
    let ev_names: Vec<&str> = events
        .iter()
        .map(|e| record_event_of(&e.topic).unwrap_or(e.topic.as_str()))
        .collect();
    assert_eq!(
        ev_names,
        want,
        "containerd's events (ctr events) vs container.log:\n{}\n{}",
        ev.dump(),
        dump(&recs)
    );

    // record by record against the event containerd got
    let init_pid = events[0].pid().expect("create pid");
    for (n, (r, e)) in recs.iter().zip(&events).enumerate() {
        let at = || format!("record {} {r}\nevent {}", n + 1, e.raw);
        assert_ne!(r["status"], "failed", "{}", at());
        if let Some(p) = e.pid() {
            assert_eq!(u64_field(r, "pid"), Some(p), "pid: {}", at());
        }
        let ev_exec = e
            .payload
            .get("exec_id")
            .and_then(|x| x.as_str())
            .or_else(|| (e.topic == "/tasks/exit").then(|| e.exec_id()).flatten())
            .filter(|x| *x != id);
        assert_eq!(
            r.get("exec_id").and_then(|x| x.as_str()),
            ev_exec,
            "exec_id: {}",
            at()
        );
        if e.topic == "/tasks/exit" || e.topic == "/tasks/delete" {
            assert_eq!(
                u64_field(r, "exit_code"),
                e.exit_status(),
                "exit_code: {}",
                at()
            );
        }
    }
    // the exec's exit is 3 and comes before the init's 137
    assert_eq!(recs[4]["exec_id"], "ex1", "{}", dump(&recs));
    assert_eq!(u64_field(&recs[4], "exit_code"), Some(3), "{}", dump(&recs));
    assert_eq!(
        u64_field(&recs[5], "pid"),
        Some(init_pid),
        "{}",
        dump(&recs)
    );
    assert_eq!(
        u64_field(&recs[5], "exit_code"),
        Some(137),
        "{}",
        dump(&recs)
    );
    assert_ne!(
        u64_field(&recs[3], "pid"),
        Some(init_pid),
        "exec pid is the init's: {}",
        dump(&recs)
    );
    // start says what runs
    assert_eq!(
        recs[1]["command"],
        serde_json::json!(["sleep", "1000"]),
        "start command: {}",
        recs[1]
    );
    // canonical RFC3339Nano UTC timestamps (same length) sort as text: never going back
    let ts: Vec<&str> = recs
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go back:\n{}",
        dump(&recs)
    );
}

#[test]
fn failed_create_is_recorded_with_the_runtime_error() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "fail", "");
    let id = "recfail";
    let o = c.ctr(&logs.run_args(&["--rm", IMAGE, id, "/no/such/executable"]));
    o.assert_failure();
    assert!(
        o.stderr.contains("/no/such/executable"),
        "ctr's error names the executable: {o}"
    );
    let recs = valid_records(&logs, id);
    assert!(!recs.is_empty(), "no records for a failed create");
    let r = &recs[0];
    assert_eq!(r["event"], "create", "first record: {}", dump(&recs));
    assert_eq!(r["status"], "failed", "first record: {}", dump(&recs));
    let err = r["error"].as_str().unwrap_or("");
    // runc's own words
    assert!(
        err.contains("/no/such/executable") && err.contains("no such file or directory"),
        "the record's error must carry runc's message: {err:?}\nctr said: {}",
        o.stderr
    );
    assert!(
        !recs.iter().any(|r| r["event"] == "start"),
        "a start record after a failed create:\n{}",
        dump(&recs)
    );
    assert!(
        c.containers().is_empty(),
        "--rm left a container: {:?}",
        c.containers()
    );
    c.assert_clean();
}

#[test]
fn failed_exec_start_is_recorded_with_the_runtime_error() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "execfail", "");
    let ev = c.events();
    let id = "recexecfail";
    c.ctr_ok(&logs.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(c.wait_task_status(id, "RUNNING", T), "{:?}", c.tasks());
    let o = c.ctr(&["task", "exec", "--exec-id", "nox", id, "/no/such/exe"]);
    o.assert_failure();
    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    assert_eq!(ev.wait_exit(id, T), Some(137), "events:\n{}", ev.dump());
    c.ctr_ok(&["task", "rm", id]);
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_clean();

    let recs = valid_records(&logs, id);
    let names: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| (r["event"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("create", "created"),
            ("start", "running"),
            ("exec_added", "created"),
            ("exec_started", "failed"),
            ("exit", "stopped"),
            ("delete", "deleted"),
        ],
        "container.log:\n{}",
        dump(&recs)
    );
    let failed = &recs[3];
    assert_eq!(failed["exec_id"], "nox", "{failed}");
    let err = failed["error"].as_str().unwrap_or("");
    assert!(
        err.contains("/no/such/exe") && err.contains("no such file or directory"),
        "the record's error must carry runc's message: {err:?}\nctr said: {}",
        o.stderr
    );
    assert!(
        recs[4].get("exec_id").is_none(),
        "the only exit is the init's: {}",
        recs[4]
    );
}

/// containerd's tasks service publishes no event for Update; every other record has its event.
fn has_event(record: &Value) -> bool {
    record["event"] != "update"
}

#[test]
fn every_lifecycle_step_is_recorded_in_order() {
    let c = Containerd::start();
    let logs = LogSetup::new(&c, "steps", "");
    let ev = c.events();
    let api = c.tasks_api();
    let id = "steps";
    c.ctr_ok(&logs.run_args(&["-d", IMAGE, id, "sleep", "1000"]));
    assert!(c.wait_task_status(id, "RUNNING", T), "{:?}", c.tasks());
    let init_pid = c.task(id).map(|t| t.pid as i32).expect("init pid");

    let o = c.ctr(&["task", "exec", "--exec-id", "ex1", id, "sh", "-c", "exit 3"]);
    assert_eq!(o.code, Some(3), "exec: {o}");
    c.ctr_ok(&["task", "pause", id]);
    assert_eq!(c.task(id).map(|t| t.status), Some("PAUSED".into()));
    c.ctr_ok(&["task", "resume", id]);
    assert_eq!(c.task(id).map(|t| t.status), Some("RUNNING".into()));

    // Update through containerd's Tasks API (ctr has no `task update`): the new limit reaches
    // the container's cgroup.
    let limit: u64 = 48 * 1024 * 1024;
    let before = procs::memory_limit(init_pid).unwrap_or_else(|e| panic!("{e}"));
    assert_ne!(before, Some(limit), "the limit is already {limit}");
    api.update_resources(id, &serde_json::json!({ "memory": { "limit": limit } }))
        .unwrap_or_else(|s| panic!("Update: {s:?}\n{}", c.log_tail(30)));
    let file = procs::memory_limit_file(init_pid).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        procs::memory_limit(init_pid).unwrap_or_else(|e| panic!("{e}")),
        Some(limit),
        "{} after Update",
        file.display()
    );
    // A payload that is not LinuxResources JSON is refused as an invalid argument, and the limit
    // stays.
    let bad = api
        .update(tasks_api::UpdateTaskRequest {
            container_id: id.to_string(),
            resources: Some(prost_types::Any {
                type_url: tasks_api::LINUX_RESOURCES_TYPE_URL.to_string(),
                value: b"{not json".to_vec(),
            }),
            annotations: Default::default(),
        })
        .expect_err("a malformed Update was accepted");
    assert_eq!(bad.code(), tonic::Code::InvalidArgument, "{bad:?}");
    assert_eq!(
        procs::memory_limit(init_pid).unwrap_or_else(|e| panic!("{e}")),
        Some(limit),
        "a refused Update changed {}",
        file.display()
    );

    c.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
    assert_eq!(ev.wait_exit(id, T), Some(137), "events:\n{}", ev.dump());
    c.ctr_ok(&["task", "rm", id]);
    assert!(
        ev.wait_topic(id, "/tasks/delete", T).is_some(),
        "no /tasks/delete; events:\n{}",
        ev.dump()
    );
    c.ctr_ok(&["containers", "rm", id]);
    c.assert_clean();

    let recs = valid_records(&logs, id);
    let steps: Vec<(&str, &str)> = recs
        .iter()
        .map(|r| (r["event"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        steps,
        [
            ("create", "created"),
            ("start", "running"),
            ("exec_added", "created"),
            ("exec_started", "running"),
            ("exit", "stopped"),
            ("pause", "paused"),
            ("resume", "running"),
            ("update", "running"),
            ("update", "failed"),
            ("exit", "stopped"),
            ("delete", "deleted"),
        ],
        "container.log:\n{}",
        dump(&recs)
    );
    let at = |n: usize| &recs[n];
    assert_eq!(at(2)["exec_id"], "ex1", "{}", at(2));
    assert_eq!(at(3)["exec_id"], "ex1", "{}", at(3));
    assert_eq!(at(4)["exec_id"], "ex1", "{}", at(4));
    assert_eq!(u64_field(at(4), "exit_code"), Some(3), "{}", at(4));
    let refused = at(8)["error"].as_str().unwrap_or("");
    assert!(
        refused.contains("not LinuxResources JSON"),
        "the failed update says why: {}",
        at(8)
    );
    assert!(at(9).get("exec_id").is_none(), "{}", at(9));
    assert_eq!(u64_field(at(9), "pid"), Some(init_pid as u64), "{}", at(9));
    assert_eq!(u64_field(at(9), "exit_code"), Some(137), "{}", at(9));
    assert_eq!(u64_field(at(10), "exit_code"), Some(137), "{}", at(10));

    // the same steps, in the same order, as containerd's events
    let from_events: Vec<&str> = ev
        .for_container(id)
        .iter()
        .filter_map(|e| record_event_of(&e.topic))
        .collect();
    let from_records: Vec<&str> = recs
        .iter()
        .filter(|r| has_event(r))
        .map(|r| r["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        from_records,
        from_events,
        "container.log vs ctr events:\n{}\n{}",
        dump(&recs),
        ev.dump()
    );
    let ts: Vec<&str> = recs
        .iter()
        .map(|r| r["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go back:\n{}",
        dump(&recs)
    );
}
