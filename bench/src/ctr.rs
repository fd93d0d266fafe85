//! Running `ctr` (and other commands) with precise wall-clock timing and a timeout.
//!
//! The harness's `Containerd::ctr` polls for the exit every 10 ms and rescans the bundles after
//! each call; fine for tests, too coarse for latency figures. Here the caller blocks in
//! `waitpid` and a watchdog thread kills the command (by its pid) past the timeout.

use anyhow::{bail, Context, Result};
use scribe_e2e::Containerd;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a finished command produced.
#[derive(Debug)]
pub struct Timed {
    pub elapsed: Duration,
    pub stdout: String,
    pub stderr: String,
}

/// How to run `ctr` against the private containerd.
#[derive(Debug, Clone)]
pub struct Ctr {
    bin: PathBuf,
    address: PathBuf,
    namespace: String,
}

impl Ctr {
    pub fn new(c: &Containerd) -> Ctr {
        Ctr {
            bin: c.bin_dir().join("ctr"),
            address: c.address(),
            namespace: c.namespace().to_string(),
        }
    }

    pub fn address(&self) -> String {
        self.address.to_string_lossy().into_owned()
    }

    /// `ctr --address <sock> --namespace <ns> args...`, stdin from /dev/null.
    pub fn command<S: AsRef<str>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--address")
            .arg(&self.address)
            .arg("--namespace")
            .arg(&self.namespace)
            .args(args.iter().map(|a| a.as_ref()))
            .stdin(Stdio::null());
        c
    }

    /// Runs ctr to completion; an error (with ctr's stderr) unless it exits 0.
    pub fn run<S: AsRef<str>>(&self, args: &[S], timeout: Duration) -> Result<Timed> {
        run_timed(self.command(args), timeout)
    }

    /// Kills and removes a container (task and container), ignoring "not found".
    pub fn remove(&self, id: &str) -> Result<()> {
        let t = Duration::from_secs(60);
        if let Err(e) = self.run(&["task", "rm", "-f", id], t) {
            if !format!("{e:#}").contains("not found") {
                return Err(e.context(format!("removing the task of {id}")));
            }
        }
        if let Err(e) = self.run(&["containers", "rm", id], t) {
            if !format!("{e:#}").contains("not found") {
                return Err(e.context(format!("removing container {id}")));
            }
        }
        Ok(())
    }

    /// Removes many containers, `parallel` at a time; returns the first error.
    pub fn remove_all(&self, ids: &[String], parallel: usize) -> Result<()> {
        let mut first_err = None;
        for chunk in ids.chunks(parallel.max(1)) {
            let handles: Vec<_> = chunk
                .iter()
                .map(|id| {
                    let ctr = self.clone();
                    let id = id.clone();
                    std::thread::spawn(move || ctr.remove(&id))
                })
                .collect();
            for h in handles {
                let r = h
                    .join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("removal thread panicked")));
                if let Err(e) = r {
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// The command line of `cmd`, for messages.
pub fn cmdline_of(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn collect<R: Read + Send + 'static>(r: Option<R>) -> Option<JoinHandle<String>> {
    r.map(|mut r| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    })
}

/// Kills `pid` with SIGKILL unless told (through the returned sender) that it finished first.
pub fn watchdog(pid: u32, timeout: Duration) -> mpsc::Sender<()> {
    let (tx, rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(timeout) {
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
        }
    });
    tx
}

/// Waits for `child`, killing it after `timeout`; returns its status and whether it timed out.
pub fn wait_child(child: &mut Child, timeout: Duration, what: &str) -> Result<(ExitStatus, bool)> {
    let start = Instant::now();
    let dog = watchdog(child.id(), timeout);
    let status = child
        .wait()
        .with_context(|| format!("waiting for `{what}`"))?;
    let _ = dog.send(());
    Ok((status, start.elapsed() >= timeout))
}

/// Runs `cmd` with stdout and stderr captured; times it from spawn to exit.
pub fn run_timed(mut cmd: Command, timeout: Duration) -> Result<Timed> {
    let line = cmdline_of(&cmd);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{line}`"))?;
    let out = collect(child.stdout.take());
    let err = collect(child.stderr.take());
    let (status, timed_out) = wait_child(&mut child, timeout, &line)?;
    let elapsed = start.elapsed();
    let join = |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    let stdout = join(out);
    let stderr = join(err);
    if timed_out {
        bail!("`{line}` did not finish within {timeout:?}; stderr: {stderr}");
    }
    if !status.success() {
        bail!(
            "`{line}` failed ({status}): {}{}",
            stderr.trim(),
            if stdout.trim().is_empty() {
                String::new()
            } else {
                format!(" / stdout: {}", stdout.trim())
            }
        );
    }
    Ok(Timed {
        elapsed,
        stdout,
        stderr,
    })
}
