//! Giving `ctr` a terminal: `ctr run -t` / `ctr task exec -t` need their own stdio to be a tty,
//! so the tests run them inside a fresh pty made by `script(1)` (util-linux) and read what the
//! terminal showed.

use crate::cmd::Spawned;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// `script -qfec <inner> /dev/null`: runs the shell command line `inner` in a new pty, copying
/// what the terminal shows to script's stdout (and its exit code through `-e`).
fn script(inner: &str) -> Command {
    let mut cmd = Command::new("script");
    cmd.args(["-qfec", inner, "/dev/null"]);
    cmd
}

/// Runs `inner` (a shell command line) inside a fresh pty and returns what the terminal showed,
/// cleaned ([`clean`]).
pub fn in_pty(inner: &str) -> String {
    let out = script(inner)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running script(1) (util-linux bsdutils): {e}"));
    clean(&out.stdout)
}

/// Like [`in_pty`], typing `input` into the terminal after `delay`.
pub fn in_pty_typing(inner: &str, input: &str, delay: Duration) -> String {
    use std::io::Write;
    let mut child = script(inner)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running script(1) (util-linux bsdutils): {e}"));
    std::thread::sleep(delay);
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input.as_bytes())
        .unwrap_or_else(|e| panic!("typing into the terminal: {e}"));
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for script(1): {e}"));
    drop(stdin);
    clean(&out.stdout)
}

/// Terminal output with carriage returns and the NUL ctr writes first (echoed as `^@`) removed.
pub fn clean(raw: &[u8]) -> String {
    // ctr writes a NUL before the first output of a terminal session (with either shim).
    String::from_utf8_lossy(raw)
        .replace(['\r', '\0'], "")
        .replace("^@", "")
}

/// A command running in its own pty (through `script(1)`), whose pid is known, so that a test
/// can signal that very process (e.g. SIGSTOP an attached `ctr run -t`).
pub struct InPty {
    /// `script(1)`; its stdout is what the terminal showed (raw: `\r\n`, ctr's NUL).
    pub script: Spawned,
    /// The pid of the command itself (the shell that `exec`s it).
    pub pid: i32,
}

/// Spawns `command` (a shell command line, `exec`ed) in a fresh pty and waits up to 10 s for
/// its pid, written to `pidfile` by the shell just before the `exec`.
pub fn spawn_in_pty(command: &str, pidfile: &Path) -> InPty {
    let _ = std::fs::remove_file(pidfile);
    let inner = format!("echo $$ > {}; exec {command}", pidfile.display());
    let script = Spawned::spawn(script(&inner));
    let deadline = Instant::now() + Duration::from_secs(10);
    let pid = loop {
        let read = std::fs::read_to_string(pidfile).unwrap_or_default();
        if let Ok(pid) = read.trim().parse::<i32>() {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "`{command}` in a pty did not start (no pid in {})",
            pidfile.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    InPty { script, pid }
}

impl InPty {
    /// Sends `sig` to the command (by its pid). SIGCONT goes to `script(1)` too: when its child
    /// stops, script stops itself (as a shell's job control would), and until it is continued
    /// nobody reads the terminal, so the command would block on its first write.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) with a pid this test started and a signal number; no memory involved.
        unsafe {
            libc::kill(self.pid, sig);
        }
        if sig == libc::SIGCONT {
            self.script.signal(sig);
        }
    }
}
