//! Issue 17: containerd run by systemd as a Type=notify service has `NOTIFY_SOCKET` in its
//! environment, and so does every shim it starts. A runtime that sees it (`runc create`/`start`)
//! hands the socket to the container and waits for the container's READY=1, which a normal
//! container never sends: `ctr run -d` hung in Start forever. Here a private containerd gets a
//! `NOTIFY_SOCKET` pointing at a datagram socket this test owns, as systemd would give it.

use scribe_e2e::*;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Removes the test's socket directory on drop.
struct Dir(PathBuf);
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Reads datagrams from `sock` until one contains `want` or `timeout` passes.
fn wait_for_datagram(sock: &UnixDatagram, want: &str, timeout: Duration) -> Vec<String> {
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match sock.recv(&mut buf) {
            Ok(n) => {
                let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
                let done = msg.contains(want);
                got.push(msg);
                if done {
                    break;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading the notify socket: {e}"),
        }
    }
    got
}

#[test]
fn detached_run_returns_promptly_when_containerd_has_a_notify_socket() {
    let dir = Dir(PathBuf::from(format!(
        "/tmp/scribe-notify-{}",
        unique_id("t")
    )));
    std::fs::create_dir_all(&dir.0).expect("create the socket dir");
    let path = dir.0.join("notify.sock");
    let sock = UnixDatagram::bind(&path).expect("bind the notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("set a read timeout");

    let c = Containerd::builder()
        .env("NOTIFY_SOCKET", path.display().to_string())
        .start();
    // containerd announces itself on the socket, as under systemd: the variable reached it.
    let got = wait_for_datagram(&sock, "READY=1", Duration::from_secs(10));
    assert!(
        got.iter().any(|m| m.contains("READY=1")),
        "containerd sent no READY=1 to NOTIFY_SOCKET {}: {got:?}",
        path.display()
    );

    let id = unique_id("notify");
    let started = Instant::now();
    let o = c.ctr_timeout(
        &c.run_args(&["-d", IMAGE, &id, "sleep", "1000"]),
        Duration::from_secs(20),
    );
    let took = started.elapsed();
    eprintln!("ctr run -d with NOTIFY_SOCKET in containerd's environment returned after {took:?}");
    assert!(
        o.success(),
        "ctr run -d failed or hung in Start (a runtime that sees NOTIFY_SOCKET waits for the \
         container's READY=1) after {took:?}: {o}\n{}",
        c.log_tail(30)
    );
    assert!(took < Duration::from_secs(10), "ctr run -d took {took:?}");
    assert!(
        c.wait_task_status(&id, "RUNNING", Duration::from_secs(10)),
        "{id} not RUNNING: {:?}",
        c.tasks()
    );
    // The container did not get the socket either (runc would have set it for the process).
    let o = c.ctr_ok(&["task", "exec", "--exec-id", "env", &id, "env"]);
    assert!(
        !o.stdout.contains("NOTIFY_SOCKET"),
        "the container's environment has NOTIFY_SOCKET: {o}"
    );
    // Nothing but containerd itself wrote to the socket.
    let later = wait_for_datagram(&sock, "\u{0}never", Duration::from_millis(500));
    assert!(
        later.iter().all(|m| !m.contains("READY=1")),
        "a second READY=1 arrived (from the container?): {later:?}"
    );
    c.kill_and_remove(&id);
    c.assert_clean();
}
