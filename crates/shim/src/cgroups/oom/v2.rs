//! cgroup v2 OOM notifications: inotify on `memory.events`, an event per rise of `oom_kill`.
//!
//! The counter is read once when armed (baseline, after the watch exists so no rise is missed)
//! and again on every IN_MODIFY; a rise of N between two reads is one `OomEvent { count: N }`.
//! `cgroup.events` is watched too: `populated 0` means no process is left to be killed, and
//! ends the watch after a final read of `memory.events`. The watch also ends when
//! `memory.events` can no longer be read or its inode is deleted.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

use super::OomEvent;
use crate::cgroups::files;

/// The file whose `oom_kill` counter is followed.
pub const EVENTS: &str = "memory.events";
/// The file whose `populated` flag says the cgroup is empty.
const CGROUP_EVENTS: &str = "cgroup.events";

/// `Inotify` lacks `AsRawFd`, which `AsyncFd` needs.
struct InotifyFd(Inotify);

impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

fn nix_err(e: nix::Error, what: &str, path: &Path) -> io::Error {
    files::context(io::Error::from(e), what, path)
}

/// The v2 backend of `OomWatcher`.
pub struct Watcher {
    events_path: PathBuf,
    cgroup_events_path: PathBuf,
    inotify: AsyncFd<InotifyFd>,
    events_wd: WatchDescriptor,
    last_oom_kill: u64,
    gone: bool,
}

impl Watcher {
    /// Sets up the inotify watches and reads the baseline counter.
    pub fn arm(dir: &Path) -> io::Result<Watcher> {
        let events_path = dir.join(EVENTS);
        let cgroup_events_path = dir.join(CGROUP_EVENTS);
        let inotify = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
            .map_err(|e| nix_err(e, "inotify_init for", dir))?;
        let events_wd = inotify
            .add_watch(
                &events_path,
                AddWatchFlags::IN_MODIFY
                    | AddWatchFlags::IN_DELETE_SELF
                    | AddWatchFlags::IN_MOVE_SELF,
            )
            .map_err(|e| nix_err(e, "inotify_add_watch", &events_path))?;
        match inotify.add_watch(&cgroup_events_path, AddWatchFlags::IN_MODIFY) {
            Ok(_) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(nix_err(e, "inotify_add_watch", &cgroup_events_path)),
        }
        // SAFETY: the Inotify owns its descriptor; it stays open, and the same, until the AsyncFd
        // holding it is dropped.
        let registered =
            unsafe { AsyncFd::register_with_interest(InotifyFd(inotify), Interest::READABLE) };
        let inotify = registered.map_err(|e| {
            let e = e.into_parts().1;
            io::Error::new(
                e.kind(),
                format!("registering inotify of {} with tokio: {e}", dir.display()),
            )
        })?;
        let mut w = Watcher {
            events_path,
            cgroup_events_path,
            inotify,
            events_wd,
            last_oom_kill: 0,
            gone: false,
        };
        w.last_oom_kill = w.read_oom_kill()?.unwrap_or(0);
        Ok(w)
    }

    /// Waits for the next rise of `oom_kill`; None once the cgroup is gone or empty.
    pub async fn next(&mut self) -> Option<OomEvent> {
        while !self.gone {
            let mut guard = match self.inotify.readable().await {
                Ok(g) => g,
                Err(e) => {
                    log::warn!("inotify on {}: {e}", self.events_path.display());
                    self.gone = true;
                    break;
                }
            };
            // Read, then look at the files, with no await in between (cancel-safe).
            let events =
                match guard.try_io(|fd| fd.get_ref().0.read_events().map_err(io::Error::from)) {
                    Err(_would_block) => continue,
                    Ok(Ok(events)) => events,
                    Ok(Err(e)) => {
                        log::warn!("reading inotify on {}: {e}", self.events_path.display());
                        self.gone = true;
                        break;
                    }
                };
            let deleted = AddWatchFlags::IN_IGNORED
                | AddWatchFlags::IN_DELETE_SELF
                | AddWatchFlags::IN_MOVE_SELF;
            let file_gone = events
                .iter()
                .any(|e| e.wd == self.events_wd && e.mask.intersects(deleted));
            let ev = self.observe();
            if file_gone {
                self.gone = true;
            }
            if ev.is_some() {
                return ev;
            }
        }
        None
    }

    /// Reads the counter now; true (and consumed) when it rose since the last report.
    pub fn check_now(&mut self) -> bool {
        !self.gone && self.observe().is_some()
    }

    /// Compares the counter with the last one seen; notes the end of the cgroup.
    fn observe(&mut self) -> Option<OomEvent> {
        let ev = match self.read_oom_kill() {
            Ok(Some(v)) if v > self.last_oom_kill => {
                let count = v - self.last_oom_kill;
                self.last_oom_kill = v;
                Some(OomEvent { count })
            }
            // No key (a file caught mid-rewrite) or no rise: nothing new.
            Ok(_) => None,
            Err(e) => {
                if files::is_gone(&e) {
                    self.gone = true;
                } else {
                    log::warn!("{e}");
                }
                None
            }
        };
        if self.unpopulated() {
            self.gone = true;
        }
        ev
    }

    /// The `oom_kill` counter; errors keep the raw OS error so `files::is_gone` can judge them.
    fn read_oom_kill(&self) -> io::Result<Option<u64>> {
        let text = std::fs::read_to_string(&self.events_path)?;
        let pairs = files::parse_keyed(&text, &self.events_path)?;
        Ok(files::keyed_value(&pairs, "oom_kill"))
    }

    /// True when `cgroup.events` says no process is left (false when unknown).
    fn unpopulated(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(&self.cgroup_events_path) else {
            return false;
        };
        files::parse_keyed(&text, &self.cgroup_events_path)
            .ok()
            .and_then(|pairs| files::keyed_value(&pairs, "populated"))
            == Some(0)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::time::timeout;

    use crate::cgroups::oom::{OomEvent, OomWatcher};
    use crate::cgroups::testutil::TempDir;

    fn events(oom: u64, oom_kill: u64) -> String {
        format!("low 0\nhigh 0\nmax {oom}\noom {oom}\noom_kill {oom_kill}\noom_group_kill 0\n")
    }

    async fn next(w: &mut OomWatcher) -> Option<OomEvent> {
        timeout(Duration::from_secs(5), w.next())
            .await
            .expect("the watcher answers within 5 s")
    }

    /// This host is cgroup v1 hybrid (its cgroup2 mount has no memory controller), so the v2
    /// path runs on a real inotify over plain files named like the kernel's, rewritten in place.
    #[tokio::test]
    async fn v2_counts_oom_kill_rises_and_bursts() {
        let d = TempDir::new("oom-v2");
        d.write("memory.events", &events(2, 1)); // kills before arming are not reported
        d.write("cgroup.events", "populated 1\nfrozen 0\n");
        let mut w = OomWatcher::arm(d.path()).expect("arm on fake v2 files");
        assert!(!w.check_now());

        d.write("memory.events", &events(3, 2));
        assert_eq!(next(&mut w).await, Some(OomEvent { count: 1 }));

        // `oom` alone rising (nothing killed) is not an event; the next kill burst is one event.
        d.write("memory.events", &events(4, 2));
        d.write("memory.events", &events(9, 6));
        assert_eq!(next(&mut w).await, Some(OomEvent { count: 4 }));

        // A rise caught by check_now is consumed: the queued inotify event yields nothing more,
        // and the cgroup emptying ends the watch.
        d.write("memory.events", &events(10, 7));
        assert!(w.check_now());
        assert!(!w.check_now());
        d.write("cgroup.events", "populated 0\nfrozen 0\n");
        assert_eq!(next(&mut w).await, None);
        assert_eq!(next(&mut w).await, None, "stays ended");
    }

    /// Plain files again (this host has no v2 memory controller): a kill together with the
    /// cgroup emptying is reported first, then the end.
    #[tokio::test]
    async fn v2_kill_and_emptying_in_one_read() {
        let d = TempDir::new("oom-v2");
        d.write("memory.events", &events(0, 0));
        d.write("cgroup.events", "populated 1\nfrozen 0\n");
        let mut w = OomWatcher::arm(d.path()).expect("arm");
        d.write("memory.events", &events(1, 1));
        d.write("cgroup.events", "populated 0\nfrozen 0\n");
        assert_eq!(next(&mut w).await, Some(OomEvent { count: 1 }));
        assert_eq!(next(&mut w).await, None);
        assert!(!w.check_now());
    }

    /// Plain files (no v2 memory controller here): deleting `memory.events` ends the watch.
    #[tokio::test]
    async fn v2_file_removal_ends_the_watch() {
        let d = TempDir::new("oom-v2");
        d.write("memory.events", &events(0, 0)); // no cgroup.events: populated is unknown
        let mut w = OomWatcher::arm(d.path()).expect("arm");
        std::fs::remove_file(d.path().join("memory.events")).expect("rm memory.events");
        assert_eq!(next(&mut w).await, None);
    }
}
