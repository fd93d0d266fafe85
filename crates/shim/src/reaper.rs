//! Child reaping: the shim is a subreaper, so every exit in its subtree lands here.
//!
//! Exits are collected with `waitpid(-1, WNOHANG)` on SIGCHLD and handed to whoever subscribed to
//! that pid: runtime commands the shim spawned, and container processes (which reparent to the
//! shim when the runtime exits). A container's init can exit before the shim has read its pid
//! file, so an exit nobody asked for is kept for a while and handed to a later subscriber.
//! Everything runs on the shim's single runtime thread; `spawn_and_subscribe` registers the pid
//! before any other task can run, so no exit is lost to a race.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How many unclaimed exits are remembered (a container init that exits before its pid is known).
const MAX_UNCLAIMED: usize = 1024;

/// An exit as containerd reports it: the exit code, or 128 + signal number.
pub type ExitCode = u32;

#[derive(Default)]
struct Inner {
    waiters: HashMap<i32, oneshot::Sender<ExitCode>>,
    unclaimed: HashMap<i32, ExitCode>,
    unclaimed_order: VecDeque<i32>,
}

/// The process-wide reaper.
pub struct Reaper {
    inner: Mutex<Inner>,
}

/// Converts a wait status into containerd's exit status convention.
pub fn exit_code(status: WaitStatus) -> Option<(i32, ExitCode)> {
    match status {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code as ExitCode)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as ExitCode)),
        _ => None,
    }
}

impl Reaper {
    /// The single reaper of this process.
    pub fn global() -> &'static Reaper {
        static REAPER: OnceLock<Reaper> = OnceLock::new();
        REAPER.get_or_init(|| Reaper {
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A poisoned lock only means a panic elsewhere; the maps stay consistent.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribes to the exit of `pid`; an exit already reaped is delivered at once.
    pub fn subscribe(&self, pid: i32) -> oneshot::Receiver<ExitCode> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        if let Some(code) = inner.unclaimed.remove(&pid) {
            inner.unclaimed_order.retain(|p| *p != pid);
            let _ = tx.send(code);
        } else {
            inner.waiters.insert(pid, tx);
        }
        rx
    }

    /// Reaps every child that has exited and dispatches the exits.
    pub fn reap(&self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(status) => {
                    if let Some((pid, code)) = exit_code(status) {
                        self.dispatch(pid, code);
                    }
                }
            }
        }
    }

    fn dispatch(&self, pid: i32, code: ExitCode) {
        let mut inner = self.lock();
        if let Some(tx) = inner.waiters.remove(&pid) {
            let _ = tx.send(code);
            return;
        }
        if inner.unclaimed_order.len() >= MAX_UNCLAIMED {
            if let Some(old) = inner.unclaimed_order.pop_front() {
                inner.unclaimed.remove(&old);
            }
        }
        inner.unclaimed.insert(pid, code);
        inner.unclaimed_order.push_back(pid);
    }

    /// Reaps on every SIGCHLD, forever. Spawn once on the daemon's runtime.
    pub async fn run(&'static self) -> std::io::Result<()> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut sigchld = signal(SignalKind::child())?;
        loop {
            self.reap();
            if sigchld.recv().await.is_none() {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::signal::Signal;

    #[test]
    fn exit_status_convention() {
        let p = Pid::from_raw(10);
        assert_eq!(exit_code(WaitStatus::Exited(p, 3)), Some((10, 3)));
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGKILL, false)),
            Some((10, 137))
        );
        assert_eq!(
            exit_code(WaitStatus::Signaled(p, Signal::SIGTERM, true)),
            Some((10, 143))
        );
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }

    #[test]
    fn early_exit_is_kept_for_a_late_subscriber() {
        let r = Reaper {
            inner: Mutex::new(Inner::default()),
        };
        r.dispatch(42, 7);
        let mut rx = r.subscribe(42);
        assert_eq!(rx.try_recv().unwrap(), 7);
        let mut rx = r.subscribe(43);
        assert!(rx.try_recv().is_err());
        r.dispatch(43, 0);
        assert_eq!(rx.try_recv().unwrap(), 0);
    }

    #[test]
    fn unclaimed_exits_are_bounded() {
        let r = Reaper {
            inner: Mutex::new(Inner::default()),
        };
        for pid in 0..(MAX_UNCLAIMED as i32 + 10) {
            r.dispatch(pid, 1);
        }
        let inner = r.lock();
        assert_eq!(inner.unclaimed.len(), MAX_UNCLAIMED);
        assert!(!inner.unclaimed.contains_key(&0));
    }
}
