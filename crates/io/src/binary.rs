//! The shim side of containerd's `binary://` and `binary-v2://` logging driver contract.
//!
//! For a stdout URI `binary:///path/to/logger?k=v` the shim does not copy the container's output
//! itself: it starts the logging binary and hands it the read ends of the container's stdout and
//! stderr pipes. This module does what containerd's runc shim does (`NewBinaryIO` in
//! `cmd/containerd-shim-runc-v2/process/io.go`, `NewBinaryCmd` in `.../process/io_util.go`; the
//! logger side is `Run` in `runtime/v2/logging/logging_unix.go`):
//!
//! - argv: the binary's path, then [`BinaryUri::argv`] (each query key and its value as two
//!   arguments);
//! - environment: **only** `CONTAINER_ID` and `CONTAINER_NAMESPACE`, plus the URI's `env.` pairs,
//!   which can never override those two;
//! - fd 3 = read end of the stdout pipe, fd 4 = read end of the stderr pipe, fd 5 = write end of
//!   the "ready" pipe (`CONTAINER_STDOUT`, `CONTAINER_STDERR`, `CONTAINER_WAIT` in `logging.Run`);
//! - fds 0, 1 and 2 are `/dev/null`: containerd leaves `exec.Cmd`'s `Stdin`/`Stdout`/`Stderr`
//!   nil, which Go's `os/exec` connects to the null device. The logger therefore never writes
//!   into the shim's own stderr (which containerd may be reading as the shim's log);
//! - no other descriptor of the shim reaches the logger (everything here is `O_CLOEXEC`, and fds
//!   above 5 are marked close-on-exec in the child with `close_range(2)` where available), and the
//!   shim keeps neither of the read ends once the logger has started (containerd's
//!   `CloseAfterStart`), so a dead logger shows up as `EPIPE` for the writer instead of a
//!   container blocked forever on a full pipe;
//! - readiness: the shim reads one byte from the ready pipe. `logging.Run` writes one byte and
//!   closes fd 5 when the logger calls `ready()`. For `binary-v2` the byte is required (EOF
//!   without it is a failure: "logging binary did not call ready"); for `binary`, EOF alone also
//!   counts as ready, for loggers older than the byte.
//!
//! Scribe is stricter than containerd in three places, all to turn a silently broken log into a
//! clear error at create time: the wait is bounded (containerd waits forever); a logger that exits
//! before it is ready is an error with its exit status, also for `binary` (there, an EOF without
//! the byte is checked against the logger's exit for [`LEGACY_EXIT_SETTLE`]); and on any failure
//! the logger is killed, as containerd does.
//!
//! Shutdown ([`BinaryLogger::stop`]) is containerd's `binaryIO.cancel`: SIGTERM, then SIGKILL
//! after 12 s ([`DEFAULT_STOP_GRACE`]). The shim is a subreaper whose reaper collects every child
//! with `waitpid(-1)`, so this module never waits for (reaps) the logger. It watches the logger
//! through a pidfd (`pidfd_open(2)`, Linux 5.3), which becomes readable when the process exits
//! whether or not it has been reaped, and signals it with `pidfd_send_signal(2)`, which cannot
//! hit an unrelated process that reused the pid after the reaper collected the logger. Where
//! pidfds are unavailable (old kernel, seccomp), signals fall back to `kill(2)` and the exit is
//! known only from the future the caller passes to `stop` (the reaper's notification); a
//! `binary://` logger that dies before ready then looks ready (its EOF), as it does to containerd.
//!
//! Everything runs on the caller's tokio runtime (a current-thread one is fine): no thread is
//! started, the only blocking call is `fork`+`exec` inside [`std::process::Command::spawn`].

#![warn(missing_docs)]

use std::fmt;
use std::future::Future;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitid, Id, WaitPidFlag, WaitStatus};
use nix::unistd::pipe2;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, Interest};
use tokio::net::unix::pipe;

use crate::childenv::Child;
use crate::uri::BinaryUri;

/// The logger's descriptor for the container's stdout (`CONTAINER_STDOUT`).
pub const LOGGER_STDOUT_FD: RawFd = 3;
/// The logger's descriptor for the container's stderr (`CONTAINER_STDERR`).
pub const LOGGER_STDERR_FD: RawFd = 4;
/// The logger's end of the ready pipe (`CONTAINER_WAIT`).
pub const LOGGER_READY_FD: RawFd = 5;

/// A sensible bound for [`BinaryLogger::start`]'s wait for ready (containerd has none).
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// containerd's `binaryIOProcTermTimeout`: SIGTERM, then SIGKILL after this long.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(12);
/// For `binary://` only: after an EOF without the ready byte, how long to watch for the logger's
/// exit before taking the EOF as "ready" (a logger that crashed closes fd 5 a moment before it
/// becomes a zombie). Loggers built on containerd's `logging.Run` send the byte and never pay it.
pub const LEGACY_EXIT_SETTLE: Duration = Duration::from_millis(50);
/// How long [`BinaryLogger::stop`] watches for the exit after SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(2);

/// The write ends of the container's output pipes, for the runtime to install as the process's
/// fds 1 and 2. Both are `O_CLOEXEC` and blocking.
///
/// Drop them once the runtime has started the process: the logger sees EOF on its fd 3 / fd 4
/// only when every copy of a write end is closed. For a terminal, where only stdout is used, drop
/// `stderr` right away (the logger then sees an empty stderr, as with containerd).
#[derive(Debug)]
pub struct LoggerPipes {
    /// Write end of the pipe read by the logger's fd 3.
    pub stdout: OwnedFd,
    /// Write end of the pipe read by the logger's fd 4.
    pub stderr: OwnedFd,
}

/// How [`BinaryLogger::stop`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// The logger had already exited; no signal was sent.
    AlreadyExited,
    /// The logger exited within the grace period after SIGTERM.
    Terminated,
    /// SIGKILL was needed, and the exit was then seen.
    Killed,
    /// SIGKILL was sent (or failed) but no exit was seen within a short wait after it; without a
    /// pidfd this also means the caller's exit future did not resolve.
    KillUnconfirmed,
}

/// A running logging binary of one process's output.
///
/// Dropping it does nothing to the process: a logger normally exits on its own once both of its
/// input pipes reach EOF. Call [`BinaryLogger::stop`] when the process is deleted.
pub struct BinaryLogger {
    pid: i32,
    path: PathBuf,
    /// The container it logs for: its log lines carry it as the `container` key.
    container: String,
    /// Readable once the logger has exited. `None` where `pidfd_open` is unavailable.
    pidfd: Option<AsyncFd<OwnedFd>>,
}

impl fmt::Debug for BinaryLogger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BinaryLogger")
            .field("pid", &self.pid)
            .field("path", &self.path)
            .field("pidfd", &self.pidfd.as_ref().map(|fd| fd.as_raw_fd()))
            .finish()
    }
}

/// What the ready wait saw first.
enum ReadyEvent {
    Byte,
    Eof,
    ReadError(io::Error),
    Exited,
}

impl BinaryLogger {
    /// Starts the logging binary of `uri` for container (or exec) `container_id` in `namespace`
    /// and waits, at most `ready_timeout`, until it is ready.
    ///
    /// Must be called from within a tokio runtime (the ready pipe and the pidfd are registered
    /// with its reactor). On error the logger, if it was started, has been sent SIGKILL; it is
    /// left for the shim's reaper, like every other child.
    pub async fn start(
        uri: &BinaryUri,
        container_id: &str,
        namespace: &str,
        ready_timeout: Duration,
    ) -> io::Result<(BinaryLogger, LoggerPipes)> {
        Self::start_with(uri, container_id, namespace, ready_timeout, true).await
    }

    async fn start_with(
        uri: &BinaryUri,
        container_id: &str,
        namespace: &str,
        ready_timeout: Duration,
        want_pidfd: bool,
    ) -> io::Result<(BinaryLogger, LoggerPipes)> {
        let path = uri.path.as_path();
        let scheme = if uri.v2 { "binary-v2" } else { "binary" };
        let ctx = |what: &str, e: io::Error| {
            io::Error::new(
                e.kind(),
                format!("logging binary {}: {what}: {e}", path.display()),
            )
        };

        let mut cmd = Command::new(path);
        cmd.args(uri.argv())
            .env_clear()
            .envs(crate::childenv::from_process(Child::Logger {
                container_id,
                namespace,
            }))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in &uri.env {
            if k == "CONTAINER_ID" || k == "CONTAINER_NAMESPACE" {
                continue;
            }
            if k.is_empty() || k.contains('=') {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "logging binary {}: env.{k} is not a valid environment variable name",
                        path.display()
                    ),
                ));
            }
            cmd.env(k, v);
        }

        let (out_r, out_w) = cloexec_pipe().map_err(|e| ctx("pipe for stdout", e))?;
        let (err_r, err_w) = cloexec_pipe().map_err(|e| ctx("pipe for stderr", e))?;
        let (ready_r, ready_w) = cloexec_pipe().map_err(|e| ctx("pipe for ready", e))?;
        // The child dup2()s these onto 3, 4, 5. Keeping every source above 5 means no dup2 can
        // clobber a source still to be placed, and every target is a fresh dup whose CLOEXEC is
        // clear (dup2(fd, fd) would leave CLOEXEC set).
        let out_r = above_logger_fds(out_r).map_err(|e| ctx("fcntl(F_DUPFD_CLOEXEC)", e))?;
        let err_r = above_logger_fds(err_r).map_err(|e| ctx("fcntl(F_DUPFD_CLOEXEC)", e))?;
        let ready_w = above_logger_fds(ready_w).map_err(|e| ctx("fcntl(F_DUPFD_CLOEXEC)", e))?;
        let moves = [
            (out_r.as_raw_fd(), LOGGER_STDOUT_FD),
            (err_r.as_raw_fd(), LOGGER_STDERR_FD),
            (ready_w.as_raw_fd(), LOGGER_READY_FD),
        ];
        // SAFETY: the closure runs in the forked child before exec and only makes raw syscalls
        // (dup2, close_range), which are async-signal-safe; it allocates nothing (the io::Error
        // is built from errno).
        unsafe {
            cmd.pre_exec(move || {
                for (src, dst) in moves {
                    if libc::dup2(src, dst) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                // Descriptors this process inherited without CLOEXEC must not reach the logger
                // either. Only *mark* them (std reports exec errors through a CLOEXEC pipe that
                // must stay open until exec). Best effort: close_range needs Linux 5.11.
                libc::syscall(
                    libc::SYS_close_range,
                    (LOGGER_READY_FD + 1) as libc::c_uint,
                    libc::c_uint::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                Ok(())
            });
        }

        let child = cmd.spawn().map_err(|e| ctx("start", e))?;
        let pid = child.id() as i32;
        // std's Child neither kills nor waits on drop; the shim's reaper collects the logger.
        drop(child);
        drop(cmd);
        // The logger has its own copies now. Holding the read ends would hide a dead logger
        // from the container's writes; holding the ready write end would hide the logger's EOF.
        drop(out_r);
        drop(err_r);
        drop(ready_w);

        let pidfd = if want_pidfd {
            match open_pidfd(pid) {
                Ok(fd) => Some(fd),
                Err(e) => {
                    log::debug!(
                        container = container_id;
                        "logging binary {} (pid {pid}): no pidfd ({e}); falling back to kill(2)",
                        path.display()
                    );
                    None
                }
            }
        } else {
            None
        };
        let logger = BinaryLogger {
            pid,
            path: path.to_path_buf(),
            container: container_id.to_string(),
            pidfd,
        };

        match logger.wait_ready(ready_r, uri.v2, ready_timeout).await {
            Ok(()) => Ok((
                logger,
                LoggerPipes {
                    stdout: out_w,
                    stderr: err_w,
                },
            )),
            Err(e) => {
                logger.kill_after_failure();
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "logging binary {} (pid {pid}, {scheme}://): {e}",
                        logger.path.display()
                    ),
                ))
            }
        }
    }

    async fn wait_ready(&self, ready_r: OwnedFd, v2: bool, timeout: Duration) -> io::Result<()> {
        let mut rx = pipe::Receiver::from_owned_fd(ready_r)
            .map_err(|e| io::Error::new(e.kind(), format!("registering the ready pipe: {e}")))?;
        let mut byte = [0u8; 1];
        let wait = async {
            tokio::select! {
                biased;
                r = rx.read(&mut byte) => match r {
                    Ok(0) => ReadyEvent::Eof,
                    Ok(_) => ReadyEvent::Byte,
                    Err(e) => ReadyEvent::ReadError(e),
                },
                () = self.wait_exit() => ReadyEvent::Exited,
            }
        };
        let event = match tokio::time::timeout(timeout, wait).await {
            Ok(ev) => ev,
            Err(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "not ready within {timeout:?}: no byte and no EOF on fd {LOGGER_READY_FD}"
                    ),
                ))
            }
        };
        match event {
            ReadyEvent::Byte => Ok(()),
            ReadyEvent::ReadError(e) => Err(io::Error::new(
                e.kind(),
                format!("reading the ready pipe: {e}"),
            )),
            ReadyEvent::Exited => Err(self.exited_before_ready()),
            ReadyEvent::Eof => {
                // Give a crashing logger the moment between closing its fds and becoming a
                // zombie, so that its exit (and status) is what gets reported.
                let exited = tokio::time::timeout(LEGACY_EXIT_SETTLE, self.wait_exit())
                    .await
                    .is_ok();
                if exited {
                    Err(self.exited_before_ready())
                } else if v2 {
                    Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "closed fd {LOGGER_READY_FD} without writing the ready byte \
                             (binary-v2 requires one byte, as containerd's logging.Run writes)"
                        ),
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    fn exited_before_ready(&self) -> io::Error {
        io::Error::other(format!(
            "{} before signalling ready on fd {LOGGER_READY_FD}",
            self.exit_description()
        ))
    }

    /// "exited with status 3", "was killed by signal SIGSEGV", ... without reaping.
    fn exit_description(&self) -> String {
        let Some(fd) = &self.pidfd else {
            return "exited (status unknown: no pidfd)".to_owned();
        };
        let flags = WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG;
        match waitid(Id::PIDFd(fd.get_ref().as_fd()), flags) {
            Ok(WaitStatus::Exited(_, code)) => format!("exited with status {code}"),
            Ok(WaitStatus::Signaled(_, sig, _)) => format!("was killed by signal {sig}"),
            Ok(WaitStatus::StillAlive) => "exited".to_owned(),
            Ok(other) => format!("exited ({other:?})"),
            Err(nix::errno::Errno::ECHILD) => {
                "exited (its status was already collected by the reaper)".to_owned()
            }
            Err(e) => format!("exited (status unavailable: waitid: {e})"),
        }
    }

    /// Resolves once the logger has exited (reaped or not). Never resolves without a pidfd.
    async fn wait_exit(&self) {
        match &self.pidfd {
            Some(fd) => {
                if fd.readable().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending::<()>().await,
        }
    }

    /// Whether the pidfd says the logger has exited, without blocking.
    fn exited_now(&self) -> bool {
        let Some(fd) = &self.pidfd else {
            return false;
        };
        let mut pfd = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        n > 0 && pfd.revents & libc::POLLIN != 0
    }

    fn kill_after_failure(&self) {
        if let Err(e) = self.signal(Signal::SIGKILL) {
            if e.raw_os_error() != Some(libc::ESRCH) {
                log::warn!(
                    container = self.container.as_str();
                    "logging binary {} (pid {}): SIGKILL after failed start: {e}",
                    self.path.display(),
                    self.pid
                );
            }
        }
    }

    /// Sends `sig` through the pidfd (never to a recycled pid), or with kill(2) without one.
    fn signal(&self, sig: Signal) -> io::Result<()> {
        match &self.pidfd {
            Some(fd) => {
                // SAFETY: pidfd_send_signal(pidfd, sig, NULL, 0) reads no memory.
                let r = unsafe {
                    libc::syscall(
                        libc::SYS_pidfd_send_signal,
                        fd.as_raw_fd(),
                        sig as libc::c_int,
                        std::ptr::null::<libc::siginfo_t>(),
                        0u32,
                    )
                };
                if r < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
            None => nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid), sig)
                .map_err(io::Error::from),
        }
    }

    /// The logger's process id (for the reaper and for logs).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The logging binary's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops the logger: SIGTERM now, SIGKILL after `grace` ([`DEFAULT_STOP_GRACE`] is
    /// containerd's 12 s) unless it exited first. Does not reap it.
    ///
    /// `exited` is the caller's notification of the logger's exit, typically the shim reaper's
    /// subscription to [`BinaryLogger::pid`]; its output is ignored. The pidfd already tells
    /// when the logger exits, so `std::future::pending::<()>()` is fine where pidfds work; without
    /// a pidfd, `exited` is the only way to know, and once it resolved no signal is sent (the pid
    /// could belong to another process by then).
    pub async fn stop<F: Future>(self, exited: F, grace: Duration) -> StopOutcome {
        let mut exited = std::pin::pin!(exited);
        let mut caller_done = false;
        // Resolves when the caller's future or the pidfd reports the exit.
        macro_rules! gone {
            () => {
                async {
                    tokio::select! {
                        _ = &mut exited, if !caller_done => { caller_done = true; }
                        () = self.wait_exit() => {}
                    }
                }
            };
        }

        let already = self.exited_now() || {
            tokio::select! {
                biased;
                _ = &mut exited => { caller_done = true; true }
                () = std::future::ready(()) => false,
            }
        };
        if already {
            return StopOutcome::AlreadyExited;
        }

        match self.signal(Signal::SIGTERM) {
            Ok(()) => {
                if tokio::time::timeout(grace, gone!()).await.is_ok() {
                    return StopOutcome::Terminated;
                }
                if self.exited_now() {
                    return StopOutcome::Terminated;
                }
                log::warn!(
                    container = self.container.as_str();
                    "logging binary {} (pid {}) did not exit within {grace:?} of SIGTERM; \
                     sending SIGKILL",
                    self.path.display(),
                    self.pid
                );
            }
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return StopOutcome::AlreadyExited,
            // As containerd does: a failed SIGTERM means SIGKILL right away.
            Err(e) => log::warn!(
                    container = self.container.as_str();
                "logging binary {} (pid {}): SIGTERM: {e}; sending SIGKILL",
                self.path.display(),
                self.pid
            ),
        }
        match self.signal(Signal::SIGKILL) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => return StopOutcome::Terminated,
            Err(e) => {
                log::warn!(
                    container = self.container.as_str();
                    "logging binary {} (pid {}): SIGKILL: {e}",
                    self.path.display(),
                    self.pid
                );
                return StopOutcome::KillUnconfirmed;
            }
        }
        if tokio::time::timeout(KILL_WAIT, gone!()).await.is_ok() {
            StopOutcome::Killed
        } else {
            StopOutcome::KillUnconfirmed
        }
    }
}

fn cloexec_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Returns `fd`, moved above [`LOGGER_READY_FD`] if it is not already (still `O_CLOEXEC`).
fn above_logger_fds(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > LOGGER_READY_FD {
        return Ok(fd);
    }
    // SAFETY: fcntl on a descriptor we own; the result, if valid, is a new descriptor we own.
    let new = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, LOGGER_READY_FD + 1) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `new` was just returned by fcntl and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn open_pidfd(pid: i32) -> io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: pidfd_open(pid, 0) takes no pointers; it returns a new descriptor or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `r` is a new descriptor (pidfds are always close-on-exec) that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(r as RawFd) };
    // SAFETY: an OwnedFd stays open and keeps returning the same descriptor until the AsyncFd
    // (its only owner) is dropped.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.map_err(|e| e.into_parts().1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    use std::rc::Rc;
    use std::time::Instant;

    use nix::unistd::Pid;

    /// Writes an executable `#!/bin/sh` logger into `dir`.
    fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    fn binary_uri(path: &Path, v2: bool) -> BinaryUri {
        BinaryUri {
            path: path.to_path_buf(),
            args: Vec::new(),
            env: Vec::new(),
            v2,
        }
    }

    /// `start`, retrying ETXTBSY: another test thread may fork while a script is still open for
    /// writing, and exec of a file open for writing fails until that child has exec'd.
    async fn start(uri: &BinaryUri, timeout: Duration) -> io::Result<(BinaryLogger, LoggerPipes)> {
        start_with(uri, timeout, true).await
    }

    async fn start_with(
        uri: &BinaryUri,
        timeout: Duration,
        pidfd: bool,
    ) -> io::Result<(BinaryLogger, LoggerPipes)> {
        for _ in 0..50 {
            match BinaryLogger::start_with(uri, "c1", "ns1", timeout, pidfd).await {
                Err(e) if e.to_string().contains("Text file busy") => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
        panic!("{} stayed busy", uri.path.display());
    }

    /// Waits (reaps) for `pid`, which must exit within `limit`.
    async fn reap(pid: i32, limit: Duration) -> WaitStatus {
        let deadline = Instant::now() + limit;
        loop {
            match nix::sys::wait::waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status) => return status,
                Err(e) => panic!("waitpid({pid}): {e}"),
            }
            assert!(Instant::now() < deadline, "pid {pid} still running");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The pid a script wrote with `echo $$ > pid`.
    async fn pid_from(file: &Path) -> i32 {
        for _ in 0..500 {
            if let Ok(s) = fs::read_to_string(file) {
                if let Ok(pid) = s.trim().parse() {
                    return pid;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("no pid in {}", file.display());
    }

    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 11) as u8)
            .collect()
    }

    fn pipe_inode(fd: &OwnedFd) -> u64 {
        fs::metadata(format!("/proc/self/fd/{}", fd.as_raw_fd()))
            .unwrap()
            .ino()
    }

    #[tokio::test]
    async fn contract_env_args_fds_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // Legacy logger: closes fd 5 without a byte (binary:// takes EOF as ready). The cats must
        // not inherit fd 5, or the EOF would wait for them.
        let path = script(
            dir.path(),
            "logger",
            &format!("exec 5>&-\ncat <&3 > {d}/out &\ncat <&4 > {d}/err &\nwait"),
        );
        let mut uri = binary_uri(&path, false);
        uri.args = vec![
            ("--log-driver".into(), "json file".into()),
            ("flag".into(), "".into()),
            ("b".into(), "x=y".into()),
        ];
        uri.env = vec![
            ("LEVEL".into(), "debug".into()),
            ("CONTAINER_ID".into(), "evil".into()),
            ("CONTAINER_NAMESPACE".into(), "evil".into()),
        ];
        let (logger, pipes) = start(&uri, DEFAULT_READY_TIMEOUT).await.unwrap();
        let pid = logger.pid();
        assert_eq!(logger.path(), path.as_path());

        // Environment: exactly the two variables plus the env. pair, never overridden.
        let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
        let env: BTreeSet<&[u8]> = environ
            .split(|b| *b == 0)
            .filter(|s| !s.is_empty())
            .collect();
        let want: BTreeSet<&[u8]> = [
            &b"CONTAINER_ID=c1"[..],
            b"CONTAINER_NAMESPACE=ns1",
            b"LEVEL=debug",
        ]
        .into_iter()
        .collect();
        assert_eq!(env, want);

        // argv: the kernel runs the interpreter with the script path, then our argv.
        let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap();
        let args: Vec<String> = cmdline
            .strip_suffix(b"\0")
            .unwrap()
            .split(|b| *b == 0)
            .map(|s| String::from_utf8(s.to_vec()).unwrap())
            .collect();
        let path_s = path.display().to_string();
        assert_eq!(
            args,
            [
                "/bin/sh",
                &path_s,
                "--log-driver",
                "json file",
                "flag",
                "",
                "b",
                "x=y"
            ]
        );

        // fds: 0-2 /dev/null, 3/4 our pipes, 5 closed by the logger, nothing else of ours.
        for fd in 0..3 {
            let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
            assert_eq!(target, Path::new("/dev/null"), "fd {fd}");
        }
        let ino = |fd: i32| fs::metadata(format!("/proc/{pid}/fd/{fd}")).unwrap().ino();
        assert_eq!(ino(LOGGER_STDOUT_FD), pipe_inode(&pipes.stdout));
        assert_eq!(ino(LOGGER_STDERR_FD), pipe_inode(&pipes.stderr));
        for entry in fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
            let entry = entry.unwrap();
            let fd: i32 = entry.file_name().to_str().unwrap().parse().unwrap();
            if fd > LOGGER_STDERR_FD {
                // dash keeps the script and /dev/null open on fds >= 10; a pipe or socket there
                // (or any fd 5) would have leaked from this process.
                let target = fs::read_link(entry.path()).unwrap();
                assert!(
                    fd >= 10 && (target == path || target == Path::new("/dev/null")),
                    "fd {fd} -> {}",
                    target.display()
                );
            }
        }

        // 1 MiB each way, intact; EOF reaches the logger once the write ends are dropped.
        let out_data = pattern(1 << 20, 1);
        let err_data = pattern(1 << 20, 7);
        let mut out = fs::File::from(pipes.stdout);
        let mut err = fs::File::from(pipes.stderr);
        out.write_all(&out_data).unwrap();
        err.write_all(&err_data).unwrap();
        drop(out);
        drop(err);
        let status = reap(pid, Duration::from_secs(10)).await;
        assert_eq!(status, WaitStatus::Exited(Pid::from_raw(pid), 0));
        assert!(fs::read(dir.path().join("out")).unwrap() == out_data);
        assert!(fs::read(dir.path().join("err")).unwrap() == err_data);
    }

    #[tokio::test]
    async fn v2_is_ready_on_one_byte() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        // Like logging.Run: one byte, then close, then log. The logger keeps running, so only
        // the byte can have made start() return.
        let path = script(
            dir.path(),
            "logger",
            &format!("printf x >&5\nexec 5>&-\nexec cat <&3 > {d}/out"),
        );
        let (logger, pipes) = start(&binary_uri(&path, true), DEFAULT_READY_TIMEOUT)
            .await
            .unwrap();
        let mut out = fs::File::from(pipes.stdout);
        out.write_all(b"hello\n").unwrap();
        drop(out);
        drop(pipes.stderr);
        let pid = logger.pid();
        assert_eq!(
            reap(pid, Duration::from_secs(10)).await,
            WaitStatus::Exited(Pid::from_raw(pid), 0)
        );
        assert_eq!(fs::read(dir.path().join("out")).unwrap(), b"hello\n");
    }

    #[tokio::test]
    async fn v2_byte_while_fd5_stays_open_is_ready() {
        let dir = tempfile::tempdir().unwrap();
        // The byte alone is enough; containerd reads one byte and does not wait for EOF.
        let path = script(dir.path(), "logger", "printf x >&5\nread x <&3");
        let started = Instant::now();
        let (logger, pipes) = start(&binary_uri(&path, true), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(4));
        drop(pipes);
        let pid = logger.pid();
        reap(pid, Duration::from_secs(10)).await;
    }

    #[tokio::test]
    async fn binary_also_accepts_the_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "logger", "printf x >&5\nexec 5>&-\nread x <&3");
        let (logger, pipes) = start(&binary_uri(&path, false), DEFAULT_READY_TIMEOUT)
            .await
            .unwrap();
        drop(pipes);
        reap(logger.pid(), Duration::from_secs(10)).await;
    }

    #[tokio::test]
    async fn v2_eof_without_byte_fails_and_kills() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let path = script(
            dir.path(),
            "logger",
            &format!("echo $$ > {d}/pid\nexec 5>&-\nread x <&3"),
        );
        let err = start(&binary_uri(&path, true), DEFAULT_READY_TIMEOUT)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof, "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("binary-v2://"), "{msg}");
        assert!(msg.contains("without writing the ready byte"), "{msg}");
        let pid = pid_from(&dir.path().join("pid")).await;
        assert_eq!(
            reap(pid, Duration::from_secs(10)).await,
            WaitStatus::Signaled(Pid::from_raw(pid), Signal::SIGKILL, false)
        );
    }

    async fn exits_early(v2: bool) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let path = script(
            dir.path(),
            "logger",
            &format!("echo $$ > {d}/pid\necho 'bad option' >&2\nexit 3"),
        );
        let err = start(&binary_uri(&path, v2), DEFAULT_READY_TIMEOUT)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("exited with status 3 before signalling ready"),
            "{msg}"
        );
        let pid = pid_from(&dir.path().join("pid")).await;
        assert!(msg.contains(&format!("pid {pid}")), "{msg}");
        // WNOWAIT left it for the reaper.
        assert_eq!(
            reap(pid, Duration::from_secs(10)).await,
            WaitStatus::Exited(Pid::from_raw(pid), 3)
        );
    }

    #[tokio::test]
    async fn v2_exit_before_ready_reports_status() {
        exits_early(true).await;
    }

    #[tokio::test]
    async fn binary_exit_before_ready_reports_status() {
        exits_early(false).await;
    }

    #[tokio::test]
    async fn killed_before_ready_reports_signal() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "logger", "kill -SEGV $$");
        let err = start(&binary_uri(&path, true), DEFAULT_READY_TIMEOUT)
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("was killed by signal SIGSEGV"), "{msg}");
    }

    #[tokio::test]
    async fn never_ready_times_out_and_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let path = script(
            dir.path(),
            "logger",
            &format!("echo $$ > {d}/pid\nexec sleep 30"),
        );
        let started = Instant::now();
        let err = start(&binary_uri(&path, false), Duration::from_millis(300))
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{msg}");
        assert!(msg.contains("not ready within 300ms"), "{msg}");
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        let pid = pid_from(&dir.path().join("pid")).await;
        assert_eq!(
            reap(pid, Duration::from_secs(10)).await,
            WaitStatus::Signaled(Pid::from_raw(pid), Signal::SIGKILL, false)
        );
    }

    #[tokio::test]
    async fn missing_binary_is_a_clear_error() {
        let uri = binary_uri(Path::new("/nonexistent/scribe-logger"), false);
        let err = start(&uri, DEFAULT_READY_TIMEOUT).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let msg = err.to_string();
        assert!(
            msg.starts_with("logging binary /nonexistent/scribe-logger: start: "),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn bad_env_name_is_refused_before_spawning() {
        let mut uri = binary_uri(Path::new("/nonexistent/scribe-logger"), false);
        uri.env = vec![("A=B".into(), "c".into())];
        let err = start(&uri, DEFAULT_READY_TIMEOUT).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("env.A=B"), "{err}");
    }

    #[tokio::test]
    async fn stop_sends_sigterm() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "logger", "printf x >&5\nexec 5>&-\nread x <&3");
        let (logger, pipes) = start(&binary_uri(&path, true), DEFAULT_READY_TIMEOUT)
            .await
            .unwrap();
        let pid = logger.pid();
        let outcome = logger
            .stop(std::future::pending::<()>(), Duration::from_secs(10))
            .await;
        assert_eq!(outcome, StopOutcome::Terminated);
        assert_eq!(
            reap(pid, Duration::from_secs(10)).await,
            WaitStatus::Signaled(Pid::from_raw(pid), Signal::SIGTERM, false)
        );
        drop(pipes);
    }

    #[tokio::test]
    async fn stop_escalates_to_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(
            dir.path(),
            "logger",
            "trap '' TERM\nprintf x >&5\nexec 5>&-\nread x <&3",
        );
        let (logger, pipes) = start(&binary_uri(&path, true), DEFAULT_READY_TIMEOUT)
            .await
            .unwrap();
        let pid = logger.pid();
        let started = Instant::now();
        let outcome = logger
            .stop(std::future::pending::<()>(), Duration::from_millis(300))
            .await;
        assert_eq!(outcome, StopOutcome::Killed);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert_eq!(
            reap(pid, Duration::from_secs(10)).await,
            WaitStatus::Signaled(Pid::from_raw(pid), Signal::SIGKILL, false)
        );
        drop(pipes);
    }

    #[tokio::test]
    async fn stop_after_exit_and_reap_sends_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "logger", "printf x >&5\nexec 5>&-\nread x <&3");
        let (logger, pipes) = start(&binary_uri(&path, true), DEFAULT_READY_TIMEOUT)
            .await
            .unwrap();
        drop(pipes);
        let pid = logger.pid();
        // The reaper got there first; the pidfd still says "exited".
        reap(pid, Duration::from_secs(10)).await;
        let outcome = logger
            .stop(std::future::pending::<()>(), Duration::from_secs(10))
            .await;
        assert_eq!(outcome, StopOutcome::AlreadyExited);
    }

    /// Without a pidfd, the caller's exit future (here a stand-in for the shim's reaper) is what
    /// ends the grace period.
    #[tokio::test]
    async fn stop_without_pidfd_uses_the_callers_exit_future() {
        let dir = tempfile::tempdir().unwrap();
        let path = script(dir.path(), "logger", "printf x >&5\nexec 5>&-\nread x <&3");
        let (logger, pipes) = start_with(&binary_uri(&path, true), DEFAULT_READY_TIMEOUT, false)
            .await
            .unwrap();
        assert!(logger.pidfd.is_none());
        let pid = logger.pid();
        let seen = Rc::new(std::cell::Cell::new(None));
        let seen2 = seen.clone();
        let reaper = async move {
            seen2.set(Some(reap(pid, Duration::from_secs(10)).await));
        };
        let outcome = logger.stop(reaper, Duration::from_secs(10)).await;
        assert_eq!(outcome, StopOutcome::Terminated);
        assert_eq!(
            seen.get(),
            Some(WaitStatus::Signaled(
                Pid::from_raw(pid),
                Signal::SIGTERM,
                false
            ))
        );
        drop(pipes);
    }

    #[tokio::test]
    async fn without_pidfd_v2_early_exit_is_still_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().display();
        let path = script(dir.path(), "logger", &format!("echo $$ > {d}/pid\nexit 3"));
        let err = start_with(&binary_uri(&path, true), DEFAULT_READY_TIMEOUT, false)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("without writing the ready byte"),
            "{err}"
        );
        let pid = pid_from(&dir.path().join("pid")).await;
        reap(pid, Duration::from_secs(10)).await;
    }

    #[test]
    fn low_fds_are_moved_above_the_logger_fds() {
        let (r, w) = cloexec_pipe().unwrap();
        let r = above_logger_fds(r).unwrap();
        assert!(r.as_raw_fd() > LOGGER_READY_FD);
        let flags = unsafe { libc::fcntl(r.as_raw_fd(), libc::F_GETFD) };
        assert_eq!(flags & libc::FD_CLOEXEC, libc::FD_CLOEXEC);
        drop(w);
    }
}
