//! cgroup v2 OOM notifications: inotify on `memory.events`, an event per rise of `oom_kill`.
//!
//! The counter is read once when armed (baseline, after the watch exists so no rise is missed)
//! and again on every IN_MODIFY; a rise of N between two reads is one `OomEvent { count: N }`.
//! `cgroup.events` is watched too: `populated 0` means no process is left to be killed, and
//! ends the watch after a final read of `memory.events`. The watch also ends when
//! `memory.events` can no longer be read or its inode is deleted.
//!
//! The cgroup can vanish before that final read: under the systemd cgroup driver systemd
//! removes a container's emptied scope, `memory.events` with it, racing the shim (and the
//! kernel rate-limits `memory.events` notifications to one per 10 ms, so the one for the kill
//! may come after the scope is gone). The kernel still exposes the kill in the parent's
//! `memory.events`, whose counters are hierarchical: every read of ours also keeps the parent's
//! `oom_kill` as of the same moment (read before and after ours until they agree), and when ours
//! is gone unread, a rise of the parent's since is reported as this container's OOM kill(s): no
//! more than its own OOM episodes not yet matched by a kill (`oom` rises), and one when it had
//! none to show, since the parent also counts its siblings' kills.
//! Each such missed read leaves a note (`take_note`) for runtime.log.

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

/// `oom` and `oom_kill` of one read of `memory.events`.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    oom: u64,
    oom_kill: u64,
}

/// The v2 backend of `OomWatcher`.
pub struct Watcher {
    events_path: PathBuf,
    cgroup_events_path: PathBuf,
    /// The parent cgroup's `memory.events` (None at the top of the hierarchy, which has none).
    parent_events_path: Option<PathBuf>,
    inotify: AsyncFd<InotifyFd>,
    events_wd: WatchDescriptor,
    last: Counts,
    /// The parent's `oom_kill` at our last successful read (None: unreadable).
    parent_oom_kill: Option<u64>,
    /// OOM episodes (`oom` rises) not matched by kills (`oom_kill` rises) so far: kills that may
    /// be on their way.
    pending_episodes: u64,
    /// The final read was done (`populated 0` with `memory.events` still readable).
    finished: bool,
    gone: bool,
    notes: Vec<String>,
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
        let parent_events_path = dir.parent().map(|p| p.join(EVENTS)).filter(|p| p.exists());
        let mut w = Watcher {
            events_path,
            cgroup_events_path,
            parent_events_path,
            inotify,
            events_wd,
            last: Counts::default(),
            parent_oom_kill: None,
            pending_episodes: 0,
            finished: false,
            gone: false,
            notes: Vec::new(),
        };
        w.last = w.read_counts()?.unwrap_or_default();
        w.parent_oom_kill = w.read_parent_oom_kill();
        Ok(w)
    }

    /// What the watcher has to say about a missed read since the last call (for runtime.log).
    pub fn take_note(&mut self) -> Option<String> {
        (!self.notes.is_empty()).then(|| self.notes.drain(..).collect::<Vec<_>>().join("; "))
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
        self.observe().is_some()
    }

    /// Compares the counters with the last ones seen; notes the end of the cgroup. When the
    /// cgroup is gone before its final read, falls back to the parent's counter.
    fn observe(&mut self) -> Option<OomEvent> {
        if self.gone {
            return None;
        }
        let ev = match self.read_consistent() {
            Ok(Some((now, parent))) => {
                self.parent_oom_kill = parent;
                let ev = (now.oom_kill > self.last.oom_kill).then(|| OomEvent {
                    count: now.oom_kill - self.last.oom_kill,
                });
                self.pending_episodes = (self.pending_episodes
                    + now.oom.saturating_sub(self.last.oom))
                .saturating_sub(now.oom_kill.saturating_sub(self.last.oom_kill));
                self.last.oom = self.last.oom.max(now.oom);
                self.last.oom_kill = self.last.oom_kill.max(now.oom_kill);
                if self.unpopulated() {
                    self.finished = true;
                    self.gone = true;
                }
                ev
            }
            // No key (a file caught mid-rewrite): nothing new.
            Ok(None) => None,
            Err(e) if files::is_gone(&e) => {
                self.gone = true;
                self.fallback()
            }
            Err(e) => {
                log::warn!("{e}");
                None
            }
        };
        ev
    }

    /// `memory.events` vanished before the final read: what the parent's hierarchical
    /// `oom_kill` says happened since our last read, reported as this cgroup's kills.
    fn fallback(&mut self) -> Option<OomEvent> {
        let file = self.events_path.display().to_string();
        let Some(parent) = &self.parent_events_path else {
            self.notes.push(format!(
                "{file} was removed before its final read and the cgroup has no parent \
                 memory.events: an OOM kill in its last moments would be unreported"
            ));
            return None;
        };
        let parent = parent.display().to_string();
        let (Some(before), Some(now)) = (self.parent_oom_kill, self.read_parent_oom_kill()) else {
            self.notes.push(format!(
                "{file} was removed before its final read and {parent} could not be read: \
                 an OOM kill in its last moments would be unreported"
            ));
            return None;
        };
        if now > before {
            // The parent also counts its other children's kills: claim no more than this
            // cgroup's own unmatched OOM episodes, and one when it had none to show.
            let rise = now - before;
            let count = rise.min(self.pending_episodes.max(1));
            let why = if self.pending_episodes > 0 {
                format!(
                    "its own oom counter showed {} episode(s) without a kill",
                    self.pending_episodes
                )
            } else {
                "nothing of its own to show: a sibling's kill in that moment would be taken for it"
                    .into()
            };
            self.notes.push(format!(
                "{file} was removed before its final read; oom_kill in {parent} rose by {rise} \
                 since the last read: reported as {count} OOM kill(s) of this container ({why})"
            ));
            self.pending_episodes = 0;
            return Some(OomEvent { count });
        }
        self.notes.push(format!(
            "{file} was removed before its final read; oom_kill in {parent} did not rise since \
             the last read{}",
            if self.pending_episodes > 0 {
                " (its oom counter had risen: an OOM episode without a kill)"
            } else {
                ": no OOM kill missed"
            }
        ));
        None
    }

    /// Our counters with the parent's `oom_kill` as of the same moment: the parent's is read
    /// before and after ours, again while a kill lands in between (which ours may or may not
    /// show). After three tries the earlier value stands: a kill then counts twice rather than
    /// never.
    fn read_consistent(&self) -> io::Result<Option<(Counts, Option<u64>)>> {
        let mut tries = 0;
        loop {
            let before = self.read_parent_oom_kill();
            let own = self.read_counts()?;
            let after = self.read_parent_oom_kill();
            tries += 1;
            if before == after || tries == 3 {
                return Ok(own.map(|c| (c, before)));
            }
        }
    }

    /// `oom` and `oom_kill` (None: a key is missing); errors keep the raw OS error so
    /// `files::is_gone` can judge them.
    fn read_counts(&self) -> io::Result<Option<Counts>> {
        let text = std::fs::read_to_string(&self.events_path)?;
        let pairs = files::parse_keyed(&text, &self.events_path)?;
        Ok(
            files::keyed_value(&pairs, "oom_kill").map(|oom_kill| Counts {
                oom: files::keyed_value(&pairs, "oom").unwrap_or(0),
                oom_kill,
            }),
        )
    }

    /// The parent's `oom_kill`, None when unreadable.
    fn read_parent_oom_kill(&self) -> Option<u64> {
        let path = self.parent_events_path.as_ref()?;
        let text = std::fs::read_to_string(path).ok()?;
        let pairs = files::parse_keyed(&text, path).ok()?;
        files::keyed_value(&pairs, "oom_kill")
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

    /// `next`, when it has nothing to say within 300 ms: None.
    async fn next_now(w: &mut OomWatcher) -> Option<OomEvent> {
        timeout(Duration::from_millis(300), w.next())
            .await
            .unwrap_or(None)
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

    /// Plain files standing in for a systemd scope inside its slice: the scope's files vanish
    /// (as when systemd removes the emptied scope) before the kill is read; the slice's
    /// hierarchical `oom_kill` rose, so the kill is still reported, and the missed read is noted.
    #[tokio::test]
    async fn v2_scope_removed_before_the_read_falls_back_to_the_parent() {
        let slice = TempDir::new("oom-v2-slice");
        slice.write("memory.events", &events(5, 3)); // earlier kills of other scopes
        let scope = slice.path().join("scribe-c1.scope");
        std::fs::create_dir(&scope).expect("mkdir scope");
        let write = |name: &str, text: &str| {
            std::fs::write(scope.join(name), text).expect("write scope file")
        };
        write("memory.events", &events(0, 0));
        write("cgroup.events", "populated 1\nfrozen 0\n");
        let mut w = OomWatcher::arm(&scope).expect("arm");
        assert_eq!(w.take_note(), None);

        // The episode starts (oom rises; the kill's notification is rate-limited), then the
        // kill lands in both counters and systemd removes the scope before the shim reads it.
        write("memory.events", &events(1, 0));
        assert_eq!(next_now(&mut w).await, None, "no kill yet");
        slice.write("memory.events", &events(6, 4));
        std::fs::remove_dir_all(&scope).expect("rm scope");
        assert_eq!(next(&mut w).await, Some(OomEvent { count: 1 }));
        let note = w.take_note().expect("the missed read is noted");
        assert!(note.contains("removed before its final read"), "{note}");
        assert!(note.contains("rose by 1"), "{note}");
        assert_eq!(next(&mut w).await, None);
        assert!(!w.check_now());
    }

    /// Kills of sibling scopes in the same moment raise the parent's counter too: the removed
    /// scope claims only its own unmatched episodes (one here), not the whole rise.
    #[tokio::test]
    async fn v2_fallback_claims_no_more_than_its_own_episodes() {
        let slice = TempDir::new("oom-v2-slice");
        slice.write("memory.events", &events(0, 0));
        let scope = slice.path().join("scribe-c4.scope");
        std::fs::create_dir(&scope).expect("mkdir scope");
        std::fs::write(scope.join("memory.events"), events(0, 0)).expect("write");
        let mut w = OomWatcher::arm(&scope).expect("arm");
        std::fs::write(scope.join("memory.events"), events(1, 0)).expect("write");
        assert_eq!(next_now(&mut w).await, None, "an episode, no kill yet");
        slice.write("memory.events", &events(3, 3)); // ours and two siblings'
        std::fs::remove_dir_all(&scope).expect("rm scope");
        assert_eq!(next(&mut w).await, Some(OomEvent { count: 1 }));
        let note = w.take_note().expect("noted");
        assert!(
            note.contains("rose by 3") && note.contains("reported as 1"),
            "{note}"
        );
    }

    /// The same removal with no kill anywhere: nothing reported, the missed read still noted.
    #[tokio::test]
    async fn v2_scope_removed_without_a_kill_reports_nothing_but_notes_it() {
        let slice = TempDir::new("oom-v2-slice");
        slice.write("memory.events", &events(5, 3));
        let scope = slice.path().join("scribe-c2.scope");
        std::fs::create_dir(&scope).expect("mkdir scope");
        std::fs::write(scope.join("memory.events"), events(0, 0)).expect("write");
        let mut w = OomWatcher::arm(&scope).expect("arm");
        std::fs::remove_dir_all(&scope).expect("rm scope");
        assert!(!w.check_now(), "no kill in the parent: nothing to report");
        let note = w.take_note().expect("noted");
        assert!(note.contains("no OOM kill missed"), "{note}");
        assert_eq!(next(&mut w).await, None);
    }

    /// A kill read from the scope itself is not counted again from the parent.
    #[tokio::test]
    async fn v2_kill_read_in_time_is_not_counted_twice() {
        let slice = TempDir::new("oom-v2-slice");
        slice.write("memory.events", &events(0, 0));
        let scope = slice.path().join("scribe-c3.scope");
        std::fs::create_dir(&scope).expect("mkdir scope");
        std::fs::write(scope.join("memory.events"), events(0, 0)).expect("write");
        let mut w = OomWatcher::arm(&scope).expect("arm");
        slice.write("memory.events", &events(1, 1));
        std::fs::write(scope.join("memory.events"), events(1, 1)).expect("write");
        assert_eq!(next(&mut w).await, Some(OomEvent { count: 1 }));
        std::fs::remove_dir_all(&scope).expect("rm scope");
        assert_eq!(next(&mut w).await, None);
        assert!(w.take_note().expect("noted").contains("no OOM kill missed"));
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
