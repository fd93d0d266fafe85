//! Running commands with a timeout, capturing stdout and stderr separately.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a finished (or timed-out) command produced.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    /// The command line, for messages.
    pub cmdline: String,
    /// Exit code, if it exited normally.
    pub code: Option<i32>,
    /// Signal that killed it, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// True when the harness killed it because it ran past its timeout.
    pub timed_out: bool,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0) && !self.timed_out
    }

    /// Panics (with both streams) unless the command exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics unless the command failed (non-zero exit, not a timeout).
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(
            !self.timed_out && self.code.is_some() && self.code != Some(0),
            "command was expected to fail: {self}"
        );
        self
    }

    /// stdout and stderr together.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// Non-empty lines of stdout, trimmed.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect()
    }
}

impl std::fmt::Display for CmdOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}`: code={:?} signal={:?} timed_out={}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.signal, self.timed_out, self.stdout, self.stderr
        )
    }
}

pub(crate) fn cmdline_of(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn reader<R: Read + Send + 'static>(r: Option<R>) -> Option<JoinHandle<String>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

/// A spawned command whose output is being collected. Killed (by its pid) on drop.
pub struct Spawned {
    pub cmdline: String,
    child: Option<Child>,
    out: Option<JoinHandle<String>>,
    err: Option<JoinHandle<String>>,
}

impl Spawned {
    /// Spawn `cmd` with stdin from /dev/null and stdout/stderr captured.
    pub fn spawn(mut cmd: Command) -> Spawned {
        let cmdline = cmdline_of(&cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{cmdline}`: {e}"));
        let out = reader(child.stdout.take());
        let err = reader(child.stderr.take());
        Spawned {
            cmdline,
            child: Some(child),
            out,
            err,
        }
    }

    /// Wrap an already spawned child whose pipes the caller consumes itself.
    pub(crate) fn from_child(cmdline: String, child: Child) -> Spawned {
        Spawned {
            cmdline,
            child: Some(child),
            out: None,
            err: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    /// Has it exited (without reaping the output yet)?
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Send a signal to it (by pid).
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Wait up to `timeout`; past it, SIGKILL it and mark the output timed out.
    pub fn wait_timeout(mut self, timeout: Duration) -> CmdOutput {
        let mut child = self.child.take().expect("already waited");
        let deadline = Instant::now() + timeout;
        let mut timed_out = false;
        let status = loop {
            match child.try_wait() {
                Ok(Some(st)) => break st,
                Ok(None) => {}
                Err(e) => panic!("wait for `{}`: {e}", self.cmdline),
            }
            if Instant::now() >= deadline {
                timed_out = true;
                unsafe {
                    libc::kill(child.id() as i32, libc::SIGKILL);
                }
                break child.wait().expect("wait after kill");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // A grandchild may hold the pipes open; do not hang on it forever.
        let stdout = join_bounded(self.out.take(), Duration::from_secs(5));
        let stderr = join_bounded(self.err.take(), Duration::from_secs(5));
        CmdOutput {
            cmdline: self.cmdline.clone(),
            code: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
            timed_out,
        }
    }
}

fn join_bounded(h: Option<JoinHandle<String>>, t: Duration) -> String {
    let Some(h) = h else { return String::new() };
    let deadline = Instant::now() + t;
    while !h.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    if h.is_finished() {
        h.join().unwrap_or_default()
    } else {
        "<output not closed: a child still holds the pipe>".into()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                unsafe {
                    libc::kill(c.id() as i32, libc::SIGKILL);
                }
            }
            let _ = c.wait();
        }
    }
}

/// Run `cmd` to completion, killing it after `timeout`.
pub fn run(cmd: Command, timeout: Duration) -> CmdOutput {
    Spawned::spawn(cmd).wait_timeout(timeout)
}

/// Run `cmd` to completion (killed after `timeout`), handing its stdout to `consume` on another
/// thread as it comes instead of keeping it: for outputs too big to hold. The returned
/// `CmdOutput` has an empty `stdout`; `consume`'s result comes back beside it (`Err` naming the
/// problem if it panicked or did not finish within 5 s of the command's exit).
pub fn run_streaming<T: Send + 'static>(
    mut cmd: Command,
    timeout: Duration,
    consume: impl FnOnce(std::process::ChildStdout) -> T + Send + 'static,
) -> (CmdOutput, Result<T, String>) {
    let cmdline = cmdline_of(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{cmdline}`: {e}"));
    let stdout = child
        .stdout
        .take()
        .unwrap_or_else(|| panic!("`{cmdline}`: no stdout pipe"));
    let consumer = std::thread::spawn(move || consume(stdout));
    let err = reader(child.stderr.take());
    let spawned = Spawned {
        cmdline: cmdline.clone(),
        child: Some(child),
        out: None,
        err,
    };
    let out = spawned.wait_timeout(timeout);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !consumer.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let result = if consumer.is_finished() {
        consumer
            .join()
            .map_err(|_| format!("`{cmdline}`: the stdout consumer panicked"))
    } else {
        Err(format!(
            "`{cmdline}`: stdout still open 5 s after the command ended"
        ))
    };
    (out, result)
}
