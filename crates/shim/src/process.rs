//! One process the shim tracks: a container's init or an exec, from creation to its exit.
//!
//! Lifecycle: created -> running (runtime started it) -> stopped (reaped, output drained, TaskExit
//! published). The `op` lock serializes the operations that publish events for a process, so
//! its TaskStart/TaskExecStarted always goes out before its TaskExit.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use scribe_io::stdio::Relay;
use tokio::sync::watch;

/// Where a process is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

/// How and when a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, or 128 + signal.
    pub code: u32,
    pub at: SystemTime,
}

/// The stdio paths containerd asked for, echoed back in State.
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Debug)]
struct State {
    status: Status,
    exit: Option<Exit>,
}

/// An init or exec process.
pub struct Process {
    /// Empty for the init, the exec id otherwise.
    pub exec_id: String,
    pub stdio: StdioPaths,
    /// For an exec: the OCI process spec file handed to the runtime.
    pub spec_file: Option<PathBuf>,
    pid: AtomicU32,
    state: Mutex<State>,
    exited: watch::Sender<Option<Exit>>,
    /// Serializes operations that publish events for this process.
    pub op: tokio::sync::Mutex<()>,
    /// The process's stdio copies.
    pub relay: tokio::sync::Mutex<Relay>,
}

impl Process {
    /// A process not started yet (pid 0 until the runtime reports it).
    pub fn new(exec_id: String, stdio: StdioPaths, spec_file: Option<PathBuf>) -> Process {
        Process {
            exec_id,
            stdio,
            spec_file,
            pid: AtomicU32::new(0),
            state: Mutex::new(State {
                status: Status::Created,
                exit: None,
            }),
            exited: watch::channel(None).0,
            op: tokio::sync::Mutex::new(()),
            relay: tokio::sync::Mutex::new(Relay::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process id, 0 before the runtime created it.
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    /// Records the pid the runtime reported.
    pub fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.state().status
    }

    /// The exit, once the process was reaped.
    pub fn exit(&self) -> Option<Exit> {
        self.state().exit
    }

    /// Marks the process as running (after a successful start), unless it already exited.
    pub fn set_running(&self) {
        let mut s = self.state();
        if s.status == Status::Created {
            s.status = Status::Running;
        }
    }

    /// Pause/resume of a running init: only between Running and Paused.
    pub fn set_paused(&self, paused: bool) {
        let mut s = self.state();
        s.status = match (s.status, paused) {
            (Status::Running, true) => Status::Paused,
            (Status::Paused, false) => Status::Running,
            (other, _) => other,
        };
    }

    /// Records the exit and wakes every waiter.
    pub fn set_exited(&self, exit: Exit) {
        {
            let mut s = self.state();
            s.status = Status::Stopped;
            s.exit = Some(exit);
        }
        self.exited.send_replace(Some(exit));
    }

    /// Waits for the exit.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exited.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            // The sender lives as long as self, so changed() only fails if self is gone.
            let _ = rx.changed().await;
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(f) = &self.spec_file {
            let _ = std::fs::remove_file(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_and_waiters() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let p = std::sync::Arc::new(Process::new(String::new(), StdioPaths::default(), None));
            assert_eq!(p.status(), Status::Created);
            p.set_running();
            assert_eq!(p.status(), Status::Running);
            let waiter = tokio::spawn({
                let p = p.clone();
                async move { p.wait().await }
            });
            let exit = Exit {
                code: 137,
                at: SystemTime::now(),
            };
            p.set_exited(exit);
            assert_eq!(waiter.await.unwrap(), exit);
            // A stopped process does not go back to running.
            p.set_running();
            assert_eq!(p.status(), Status::Stopped);
            assert_eq!(p.wait().await, exit);
        });
    }
}
