//! A process's stdio wiring: the pipes (or the console socket) the runtime hands to the process,
//! the relay that copies them to containerd's FIFOs, files, logging binaries and the log
//! drivers, and the logging binary's stop at Delete.
//!
//! Failures here fail the Create, Start or Exec that asked (INTERNAL, naming the container and
//! the pipe or socket); the process never runs without its stdio.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use scribe_io::binary::DEFAULT_STOP_GRACE;
use scribe_io::console::ConsoleSocket;
use scribe_io::spool::SpoolConfig;
use scribe_io::stdio::{Drivers, Relay, StdioSpec};

use crate::error::{Error, Result};
use crate::process::{Process, StdioPaths};
use crate::reaper::Reaper;
use crate::runtime::ProcessStdio;

/// Opens the process's stdio and turns the container ends into what the runtime inherits.
/// `owner` (the runc options' io_uid/io_gid) is given to those ends, so that a process in a
/// user namespace can reopen its own stdio (`/dev/stdout`); the ends are always pipes the shim
/// made (its own, or a logging binary's), never containerd's FIFOs or a log file.
async fn open_pipes(
    id: &str,
    namespace: &str,
    stdio: &StdioPaths,
    drivers: Drivers,
    owner: (u32, u32),
    spool: Option<&SpoolConfig>,
) -> Result<(ProcessStdio, Relay)> {
    let spec = StdioSpec {
        stdin: &stdio.stdin,
        stdout: &stdio.stdout,
        stderr: &stdio.stderr,
        id,
        namespace,
        spool,
    };
    let (ends, relay) = Relay::start(&spec, drivers)
        .await
        .map_err(|e| Error::internal(format!("container {id}: setting up stdio: {e}")))?;
    if owner != (0, 0) {
        for (name, fd) in [
            ("stdin", &ends.stdin),
            ("stdout", &ends.stdout),
            ("stderr", &ends.stderr),
        ] {
            let Some(fd) = fd else { continue };
            let (uid, gid) = owner;
            nix::unistd::fchown(
                fd.as_raw_fd(),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| {
                Error::internal(format!(
                    "container {id}: fchown {uid}:{gid} of the {name} pipe: {e}"
                ))
            })?;
        }
    }
    let to_stdio =
        |fd: Option<OwnedFd>| fd.map(Into::into).unwrap_or_else(std::process::Stdio::null);
    Ok((
        ProcessStdio {
            stdin: to_stdio(ends.stdin),
            stdout: to_stdio(ends.stdout),
            stderr: to_stdio(ends.stderr),
        },
        relay,
    ))
}

/// A process's stdio while the runtime creates it: either pipes and their relay, or (with a
/// terminal) the console socket the runtime will send the pty master to.
pub enum PendingIo {
    Pipes(Relay),
    Console {
        socket: ConsoleSocket,
        drivers: Drivers,
        spool: Option<SpoolConfig>,
    },
}

impl PendingIo {
    /// Sets up what the runtime needs for this process's stdio; `spool`: how output a FIFO
    /// reader does not read is spooled (`None`: not at all).
    pub async fn open(
        id: &str,
        namespace: &str,
        stdio: &StdioPaths,
        drivers: Drivers,
        owner: (u32, u32),
        spool: Option<&SpoolConfig>,
    ) -> Result<(ProcessStdio, PendingIo)> {
        if stdio.terminal {
            let socket = ConsoleSocket::new()
                .map_err(|e| Error::internal(format!("container {id}: console socket: {e}")))?;
            let null = ProcessStdio {
                stdin: std::process::Stdio::null(),
                stdout: std::process::Stdio::null(),
                stderr: std::process::Stdio::null(),
            };
            return Ok((
                null,
                PendingIo::Console {
                    socket,
                    drivers,
                    spool: spool.cloned(),
                },
            ));
        }
        let (child, relay) = open_pipes(id, namespace, stdio, drivers, owner, spool).await?;
        Ok((child, PendingIo::Pipes(relay)))
    }

    /// The console socket the runtime must be told about, with a terminal.
    pub fn console_path(&self) -> Option<&Path> {
        match self {
            PendingIo::Console { socket, .. } => Some(socket.path()),
            PendingIo::Pipes(_) => None,
        }
    }

    /// After the runtime succeeded: the relay that serves the process.
    pub fn finish(self, id: &str, namespace: &str, stdio: &StdioPaths) -> Result<Relay> {
        match self {
            PendingIo::Pipes(relay) => Ok(relay),
            PendingIo::Console {
                socket,
                drivers,
                spool,
            } => {
                let spec = StdioSpec {
                    stdin: &stdio.stdin,
                    stdout: &stdio.stdout,
                    stderr: &stdio.stderr,
                    id,
                    namespace,
                    spool: spool.as_ref(),
                };
                socket
                    .receive_master()
                    .and_then(|master| Relay::start_console(master, &spec, drivers))
                    .map_err(|e| Error::internal(format!("container {id}: terminal: {e}")))
            }
        }
    }
}

/// Stops a process's logging binary in the background (SIGTERM, SIGKILL after 12 s), as
/// containerd's shim does when the process is deleted.
pub async fn stop_logger(p: &Process) {
    if let Some(logger) = p.relay.lock().await.take_logger() {
        let exited = Reaper::global().subscribe(logger.pid());
        tokio::spawn(async move {
            let pid = logger.pid();
            let outcome = logger.stop(exited, DEFAULT_STOP_GRACE).await;
            log::debug!("logging binary pid {pid} stopped: {outcome:?}");
        });
    }
}
