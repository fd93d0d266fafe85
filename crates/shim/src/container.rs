//! A container served by this shim: its init process, its stdio relay, and its exit.
//!
//! Lifecycle: created (runtime `create` done) -> running (`start`) -> stopped (the init was
//! reaped, its output drained, TaskExit published) -> deleted (removed from the service).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use scribe_io::stdio::Relay;
use tokio::sync::watch;

use crate::records::Recorder;
use crate::runtime::Runtime;

/// Where a container's init is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
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

/// What the container's lifecycle records carry.
pub struct Lifecycle {
    pub recorder: Arc<Recorder>,
    pub image: Option<String>,
    pub command: Option<Vec<String>>,
}

/// What the runtime's `create` produced.
pub struct Created {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: Runtime,
    pub stdio: StdioPaths,
    pub pid: u32,
    pub rootfs_mounted: bool,
}

/// One container and its init process.
pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: Runtime,
    pub stdio: StdioPaths,
    pub pid: u32,
    /// Whether the shim mounted `<bundle>/rootfs` (and so must unmount it).
    pub rootfs_mounted: bool,
    state: Mutex<State>,
    /// Where lifecycle records go, and what they say about the container.
    pub life: Lifecycle,
    exited: watch::Sender<Option<Exit>>,
    /// Serializes operations that publish events, so TaskStart always precedes TaskExit.
    pub op: tokio::sync::Mutex<()>,
    /// The init's stdio copies.
    pub relay: tokio::sync::Mutex<Relay>,
}

impl Container {
    /// A container whose init the runtime just created.
    pub fn new(created: Created, relay: Relay, life: Lifecycle) -> Container {
        let Created {
            id,
            bundle,
            runtime,
            stdio,
            pid,
            rootfs_mounted,
        } = created;
        Container {
            id,
            bundle,
            runtime,
            stdio,
            pid,
            rootfs_mounted,
            state: Mutex::new(State {
                status: Status::Created,
                exit: None,
            }),
            life,
            exited: watch::channel(None).0,
            op: tokio::sync::Mutex::new(()),
            relay: tokio::sync::Mutex::new(relay),
        }
    }

    fn lifecycle(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.lifecycle().status
    }

    /// The exit, once the init was reaped.
    pub fn exit(&self) -> Option<Exit> {
        self.lifecycle().exit
    }

    /// Marks the init as running (after a successful `start`), unless it already exited.
    pub fn set_running(&self) {
        let mut l = self.lifecycle();
        if l.status == Status::Created {
            l.status = Status::Running;
        }
    }

    /// Records the init's exit and wakes every waiter.
    pub fn set_exited(&self, exit: Exit) {
        {
            let mut l = self.lifecycle();
            l.status = Status::Stopped;
            l.exit = Some(exit);
        }
        self.exited.send_replace(Some(exit));
    }

    /// Waits for the init's exit.
    pub async fn wait(&self) -> Exit {
        let mut rx = self.exited.subscribe();
        loop {
            if let Some(exit) = *rx.borrow_and_update() {
                return exit;
            }
            if rx.changed().await.is_err() {
                // The sender lives as long as self; this cannot happen while we borrow self.
                continue;
            }
        }
    }
}
