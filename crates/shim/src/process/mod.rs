//! One process the shim tracks: a container's init or an exec, from creation to its deletion.
//!
//! Its lifecycle is the table in [`state`]: every change goes through [`Process::apply`], which
//! refuses what the current state does not allow. The `op` lock serializes the operations that
//! publish events for a process, so its TaskStart/TaskExecStarted always goes out before its
//! TaskExit.

pub mod state;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use scribe_io::stdio::Relay;
use tokio::sync::watch;

pub use state::{Event, Refused, Role, State};

/// How and when a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// Exit code, or 128 + signal.
    pub code: u32,
    pub at: SystemTime,
}

impl Exit {
    /// When it ended, as the Task API's timestamps carry it.
    pub fn timestamp(&self) -> Timestamp {
        let d = self
            .at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp {
            seconds: d.as_secs() as i64,
            nanos: d.subsec_nanos() as i32,
            ..Default::default()
        }
    }
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
struct Inner {
    state: State,
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
    inner: Mutex<Inner>,
    exited: watch::Sender<Option<Exit>>,
    /// Serializes operations that publish events for this process.
    pub op: tokio::sync::Mutex<()>,
    /// The process's stdio copies.
    pub relay: tokio::sync::Mutex<Relay>,
}

impl Process {
    /// A container's init, created by the runtime (or, `from_checkpoint`, to be restored at
    /// Start); pid 0 until the runtime reports it.
    pub fn init(stdio: StdioPaths, from_checkpoint: bool) -> Process {
        let state = if from_checkpoint {
            State::CreatedFromCheckpoint
        } else {
            State::Created
        };
        Process::new(String::new(), stdio, None, state)
    }

    /// An exec process added to a container, not started yet.
    pub fn exec(exec_id: String, stdio: StdioPaths, spec_file: PathBuf) -> Process {
        Process::new(exec_id, stdio, Some(spec_file), State::Created)
    }

    fn new(
        exec_id: String,
        stdio: StdioPaths,
        spec_file: Option<PathBuf>,
        state: State,
    ) -> Process {
        Process {
            exec_id,
            stdio,
            spec_file,
            pid: AtomicU32::new(0),
            inner: Mutex::new(Inner { state, exit: None }),
            exited: watch::channel(None).0,
            op: tokio::sync::Mutex::new(()),
            relay: tokio::sync::Mutex::new(Relay::default()),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Init or exec.
    pub fn role(&self) -> Role {
        if self.exec_id.is_empty() {
            Role::Init
        } else {
            Role::Exec
        }
    }

    /// How log lines name the process: `init` or `exec <id>`.
    pub fn name(&self) -> String {
        match self.role() {
            Role::Init => "init".to_string(),
            Role::Exec => format!("exec {}", self.exec_id),
        }
    }

    /// The process id, 0 before the runtime created it.
    pub fn pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    /// Records the pid the runtime reported.
    pub fn set_pid(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.inner().state
    }

    /// The exit, once the process was reaped.
    pub fn exit(&self) -> Option<Exit> {
        self.inner().exit
    }

    /// Whether `event` is allowed now, without applying it (an operation checks before it asks
    /// the runtime, and applies once the runtime succeeded).
    pub fn check(&self, event: Event) -> Result<(), Refused> {
        state::next(self.role(), self.state(), event).map(drop)
    }

    /// Applies `event`: the new state, or why the current state does not allow it (nothing
    /// changes then).
    pub fn apply(&self, event: Event) -> Result<State, Refused> {
        let mut inner = self.inner();
        let to = state::next(self.role(), inner.state, event)?;
        inner.state = to;
        Ok(to)
    }

    /// Records the exit (the Exit transition) and wakes every waiter. An exit the state refuses
    /// (a second one, or one after Delete) leaves the state as it is; the first exit is still
    /// kept and handed to waiters, so that a Wait never outlives the process.
    pub fn exited(&self, exit: Exit) -> Result<(), Refused> {
        let applied = {
            let mut inner = self.inner();
            if inner.exit.is_some() {
                return state::next(self.role(), inner.state, Event::Exit).map(drop);
            }
            inner.exit = Some(exit);
            state::next(self.role(), inner.state, Event::Exit).map(|to| inner.state = to)
        };
        self.exited.send_replace(Some(exit));
        applied
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

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn lifecycle_and_waiters() {
        rt().block_on(async {
            let p = std::sync::Arc::new(Process::init(StdioPaths::default(), false));
            assert_eq!(p.state(), State::Created);
            assert_eq!(p.apply(Event::Start), Ok(State::Running));
            let waiter = tokio::spawn({
                let p = p.clone();
                async move { p.wait().await }
            });
            let exit = Exit {
                code: 137,
                at: SystemTime::now(),
            };
            p.exited(exit).unwrap();
            assert_eq!(waiter.await.unwrap(), exit);
            // A stopped process does not go back to running, nor exits twice.
            assert!(p.apply(Event::Start).is_err());
            let later = Exit {
                code: 1,
                at: SystemTime::now(),
            };
            assert!(p.exited(later).is_err());
            assert_eq!(p.state(), State::Stopped);
            assert_eq!(p.wait().await, exit);
            assert_eq!(p.apply(Event::Delete), Ok(State::Deleted));
        });
    }

    #[test]
    fn a_refused_event_changes_nothing() {
        let p = Process::exec("e1".into(), StdioPaths::default(), PathBuf::new());
        assert_eq!(p.role(), Role::Exec);
        assert_eq!(p.name(), "exec e1");
        let r = p.apply(Event::Pause).unwrap_err();
        assert_eq!(
            (r.role, r.state, r.event),
            (Role::Exec, State::Created, Event::Pause)
        );
        assert_eq!(p.state(), State::Created);
        assert!(p.check(Event::Start).is_ok());
        assert_eq!(p.state(), State::Created, "check applies nothing");
    }

    #[test]
    fn a_refused_exit_still_reaches_waiters() {
        rt().block_on(async {
            let p = Process::exec("e1".into(), StdioPaths::default(), PathBuf::new());
            p.apply(Event::Delete).unwrap();
            let exit = Exit {
                code: 3,
                at: SystemTime::now(),
            };
            assert!(p.exited(exit).is_err());
            assert_eq!(p.state(), State::Deleted);
            assert_eq!(p.wait().await, exit);
        });
    }

    #[test]
    fn an_init_from_a_checkpoint_starts_by_restore() {
        let p = Process::init(StdioPaths::default(), true);
        assert_eq!(p.state(), State::CreatedFromCheckpoint);
        assert_eq!(p.name(), "init");
        assert_eq!(p.apply(Event::Start), Ok(State::Running));
    }

    #[test]
    fn exit_timestamps_keep_nanoseconds() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::new(5, 7);
        let t = Exit { code: 0, at }.timestamp();
        assert_eq!((t.seconds, t.nanos), (5, 7));
    }
}
