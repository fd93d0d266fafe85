//! cgroup v1 OOM notifications: an eventfd registered on `memory.oom_control`.
//!
//! The kernel signals the eventfd once per OOM episode in the cgroup (or an ancestor), before
//! the OOM killer picks its victim — so by the time a killed init is reaped, the signal is
//! already counted. It also signals once when the cgroup is removed, and never again after.
//! Telling them apart: after a read, if `memory.oom_control` still exists the cgroup is alive
//! and the signals were OOMs. If it is gone, one signal was (or will be) the removal; a counter
//! of 2 or more still means at least one OOM came first, so that is reported before the end.
//! A lone OOM coalesced with the removal is indistinguishable and lost, which cannot matter for
//! TaskOOM: the runtime only removes the cgroup at Delete, after `check_now` ran at the init's exit.
//!
//! The registration is written here rather than taken from cgroups-rs
//! (`MemController::register_oom_event`, `fs::events::notify_on_oom_v1`): the crate registers the
//! same eventfd but then spawns a blocking std thread per watched cgroup to read it and hands the
//! events over an mpsc channel, and it does not offer the registration alone. A thread per
//! container breaks the shim's one-thread design (and its idle goal of one thread per shim).

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::sys::eventfd::{EfdFlags, EventFd};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::OomEvent;
use crate::cgroups::files;

/// The file whose OOM notifications are subscribed to.
pub const CONTROL: &str = "memory.oom_control";

/// The v1 backend of `OomWatcher`.
pub struct Watcher {
    dir: PathBuf,
    efd: AsyncFd<EventFd>,
    gone: bool,
}

impl Watcher {
    /// Creates the eventfd and registers it with `<dir>/cgroup.event_control`.
    pub fn arm(dir: &Path) -> io::Result<Watcher> {
        let control_path = dir.join(CONTROL);
        // Only needed for the registration: the kernel keeps its own reference to the cgroup.
        let control =
            File::open(&control_path).map_err(|e| files::context(e, "opening", &control_path))?;
        let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)
            .map_err(|e| io::Error::new(io::Error::from(e).kind(), format!("eventfd: {e}")))?;
        let event_control = dir.join("cgroup.event_control");
        let line = format!("{} {}", efd.as_raw_fd(), control.as_raw_fd());
        std::fs::write(&event_control, line)
            .map_err(|e| files::context(e, "registering OOM eventfd in", &event_control))?;
        // SAFETY: the EventFd owns its descriptor; it stays open, and the same, until the AsyncFd
        // holding it is dropped.
        let efd =
            unsafe { AsyncFd::register_with_interest(efd, Interest::READABLE) }.map_err(|e| {
                let e = e.into_parts().1;
                io::Error::new(e.kind(), format!("registering OOM eventfd with tokio: {e}"))
            })?;
        Ok(Watcher {
            dir: dir.to_path_buf(),
            efd,
            gone: false,
        })
    }

    /// Waits for the next OOM; None once the cgroup is removed.
    pub async fn next(&mut self) -> Option<OomEvent> {
        while !self.gone {
            let mut guard = match self.efd.readable().await {
                Ok(g) => g,
                Err(e) => {
                    log::warn!("OOM eventfd of {}: {e}", self.dir.display());
                    self.gone = true;
                    break;
                }
            };
            // Read and classify with no await in between, so a cancelled `next` loses nothing.
            match guard.try_io(|fd| fd.get_ref().read().map_err(io::Error::from)) {
                Err(_would_block) => continue,
                Ok(Ok(signals)) => {
                    if let Some(ev) = self.classify(signals) {
                        return Some(ev);
                    }
                }
                Ok(Err(e)) => {
                    log::warn!("reading OOM eventfd of {}: {e}", self.dir.display());
                    self.gone = true;
                }
            }
        }
        None
    }

    /// Consumes a pending notification without waiting; true when it was an OOM.
    pub fn check_now(&mut self) -> bool {
        if self.gone {
            return false;
        }
        match self.efd.get_ref().read() {
            Ok(signals) => self.classify(signals).is_some(),
            Err(Errno::EAGAIN) => false,
            Err(e) => {
                log::warn!("reading OOM eventfd of {}: {e}", self.dir.display());
                false
            }
        }
    }

    /// Turns an eventfd count into an event, noting the cgroup's removal.
    fn classify(&mut self, signals: u64) -> Option<OomEvent> {
        // An error other than "not found" (EACCES...) counts as alive: better a TaskOOM than none.
        let alive = self.dir.join(CONTROL).try_exists().unwrap_or(true);
        if alive {
            return Some(OomEvent { count: signals });
        }
        self.gone = true;
        (signals >= 2).then(|| OomEvent { count: signals - 1 })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::time::Duration;

    use tokio::time::timeout;

    use crate::cgroups::oom::{memory_figures, OomWatcher};
    use crate::cgroups::testutil::{Kid, TestCgroup};

    const LIMIT: u64 = 8 << 20;
    /// Builds a 64 MiB string in the shell's memory once let go: far over an 8 MiB limit.
    const HOG: &str = r#"read go; x=$(head -c 64M /dev/zero | tr "\0" a); echo survived"#;

    /// Real v1 memory cgroup, real OOM kill: `next` reports it, then reports the rmdir as None.
    #[tokio::test]
    async fn reports_a_real_oom_kill_then_the_removal() {
        let Some(mut cg) = TestCgroup::create("oom-test", &["memory"]) else {
            return;
        };
        cg.set("memory", "memory.limit_in_bytes", &LIMIT.to_string());
        let dir = cg.dir("memory");
        let mut w = OomWatcher::arm(&dir).expect("arm on a real v1 memory cgroup");
        assert!(!w.check_now(), "no OOM yet");

        let mut kid = Kid::sh(HOG);
        cg.add(kid.0.id());
        kid.go();
        let ev = timeout(Duration::from_secs(30), w.next())
            .await
            .expect("an OOM within 30 s")
            .expect("an OOM, not the end of the cgroup");
        assert!(ev.count >= 1);
        let status = kid.0.wait().expect("wait for the hog");
        assert_eq!(
            status.signal(),
            Some(9),
            "the hog was OOM-killed: {status:?}"
        );

        let (peak, limit) = memory_figures(&dir);
        assert_eq!(limit, Some(LIMIT));
        assert!(peak.is_some_and(|p| p > LIMIT / 2), "peak {peak:?}");

        while w.check_now() {} // any later notifications of the same episode
        drop(kid);
        cg.remove();
        let end = timeout(Duration::from_secs(10), w.next())
            .await
            .expect("removal noticed within 10 s");
        assert_eq!(end, None);
        assert_eq!(w.next().await, None, "stays ended");
        assert!(!w.check_now());
    }

    /// The init's exit is reaped before `next` ran: `check_now` sees the OOM, and consumes it.
    #[tokio::test]
    async fn check_now_sees_an_oom_before_the_exit_is_published() {
        let Some(mut cg) = TestCgroup::create("oom-test", &["memory"]) else {
            return;
        };
        cg.set("memory", "memory.limit_in_bytes", &LIMIT.to_string());
        let mut w = OomWatcher::arm(&cg.dir("memory")).expect("arm");
        let mut kid = Kid::sh(HOG);
        cg.add(kid.0.id());
        kid.go();
        let status = kid.0.wait().expect("wait for the hog");
        assert_eq!(status.signal(), Some(9), "{status:?}");
        assert!(w.check_now(), "the OOM is pending when the exit is reaped");
        while w.check_now() {}
        drop(kid);
        cg.remove();
        let end = timeout(Duration::from_secs(10), w.next())
            .await
            .expect("removal noticed");
        assert_eq!(
            end, None,
            "the OOM was consumed by check_now, only the end remains"
        );
    }

    /// An empty cgroup removed without any OOM: `next` ends with None.
    #[tokio::test]
    async fn removal_without_oom_ends_the_watch() {
        let Some(mut cg) = TestCgroup::create("oom-test", &["memory"]) else {
            return;
        };
        let mut w = OomWatcher::arm(&cg.dir("memory")).expect("arm");
        cg.remove();
        let end = timeout(Duration::from_secs(10), w.next())
            .await
            .expect("removal noticed");
        assert_eq!(end, None);
    }

    /// An OOM signal still unread when the removal signal lands on top of it (counter 2, file
    /// gone) is reported before the end. The OOM signal is simulated by writing the eventfd;
    /// the removal signal is the kernel's own.
    #[tokio::test]
    async fn an_oom_coalesced_with_the_removal_is_still_reported() {
        let Some(mut cg) = TestCgroup::create("oom-test", &["memory"]) else {
            return;
        };
        let mut w = super::Watcher::arm(&cg.dir("memory")).expect("arm");
        w.efd.get_ref().write(1).expect("simulate an OOM signal");
        cg.remove();
        // The kernel signals removal from a workqueue right after rmdir; leave it ample time.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let ev = timeout(Duration::from_secs(10), w.next())
            .await
            .expect("answers");
        assert_eq!(ev, Some(crate::cgroups::oom::OomEvent { count: 1 }));
        assert_eq!(w.next().await, None);
    }
}
