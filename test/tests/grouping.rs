//! Issue 2: containers with the same `io.containerd.runc.v2.group` share one shim.

use scribe_e2e::*;
use std::collections::BTreeSet;
use std::time::Duration;

const T: Duration = Duration::from_secs(30);

#[test]
fn same_group_annotation_shares_one_shim() {
    let c = Containerd::start();
    let ann = "io.containerd.runc.v2.group=grp1";
    for id in ["g-a", "g-b"] {
        c.ctr_ok(&c.run_args(&["-d", "--annotation", ann, IMAGE, id, "sleep", "1000"]));
        assert!(c.wait_task_status(id, "RUNNING", T), "{:?}", c.tasks());
    }
    c.ctr_ok(&c.run_args(&["-d", IMAGE, "solo", "sleep", "1000"]));
    assert!(c.wait_task_status("solo", "RUNNING", T));

    let a = c.shim_pid("g-a").expect("shim of g-a");
    let b = c.shim_pid("g-b").expect("shim of g-b");
    let s = c.shim_pid("solo").expect("shim of solo");
    assert_eq!(
        a, b,
        "g-a and g-b carry the same group annotation but have different shims"
    );
    assert_ne!(a, s, "an ungrouped container shares the group's shim");
    let distinct: BTreeSet<i32> = c.shim_pids().into_iter().collect();
    assert_eq!(
        distinct.len(),
        2,
        "expected 2 shim processes (group + solo), got {distinct:?}"
    );

    // removing one member leaves the shim serving the other
    c.kill_and_remove("g-a");
    assert!(pid_alive(a), "group shim exited while g-b still runs");
    assert_eq!(c.task("g-b").map(|t| t.status), Some("RUNNING".into()));
    c.kill_and_remove("g-b");
    assert!(
        wait_until(T, || !pid_alive(a)),
        "group shim {a} still running after its last container was removed"
    );

    c.kill_and_remove("solo");
    c.assert_no_shims_no_mounts();
}

#[test]
fn group_shim_removes_its_socket() {
    let c = Containerd::start();
    let ann = "io.containerd.runc.v2.group=grp2";
    for id in ["s-a", "s-b"] {
        c.ctr_ok(&c.run_args(&["-d", "--annotation", ann, IMAGE, id, "sleep", "1000"]));
        assert!(c.wait_task_status(id, "RUNNING", T), "{:?}", c.tasks());
    }
    let shim = c.shim_pid("s-a").expect("group shim");
    let sock = c.derived_shim_socket("grp2", false);
    for id in ["s-a", "s-b"] {
        c.kill_and_remove(id);
    }
    assert!(
        wait_until(T, || !pid_alive(shim)),
        "group shim still running"
    );
    assert!(
        wait_until(Duration::from_secs(5), || !sock.exists()),
        "group shim socket {} left behind",
        sock.display()
    );
    c.assert_clean();
}
