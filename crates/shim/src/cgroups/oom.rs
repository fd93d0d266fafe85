//! The OOM source behind TaskOOM: watches a container's memory cgroup and says when the kernel
//! OOM-killed in it.
//!
//! - v1: an eventfd registered through `cgroup.event_control` on `memory.oom_control`. The kernel
//!   signals it once per OOM episode (before it picks a victim) and once more when the cgroup is
//!   removed; see `v1.rs` for how the two are told apart.
//! - v2: inotify on `memory.events`; an event is a rise of `oom_kill` (not `oom`: `oom` also counts
//!   episodes where nothing was killed, and TaskOOM means "a process was OOM-killed", as in
//!   containerd). The watch ends when `memory.events` goes away or `cgroup.events` says
//!   `populated 0` (nothing left that could be killed). When the cgroup is removed before that
//!   final read (systemd removes an emptied scope), the parent's hierarchical `oom_kill` stands
//!   in, and the missed read is noted (`take_note`) for runtime.log.
//!
//! Bursts: one `OomEvent` per observed change, carrying how many increments it covers (v2: the
//! `oom_kill` delta, v1: the eventfd counter). The shim publishes one TaskOOM per `OomEvent`,
//! which is what containerd does (one TaskOOM per eventfd read / per observed `oom_kill` rise).
//!
//! Everything is non-blocking on the shim's single thread: the fds are driven by `AsyncFd`.
//! `arm` must run inside the tokio runtime.

mod v1;
mod v2;

use std::io;
use std::path::{Path, PathBuf};

use super::files::{self, Limit};

/// One observed OOM kill, or a burst of them seen in one read. Publish one TaskOOM per event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OomEvent {
    /// How many kernel notifications (v1) or `oom_kill` increments (v2) this event covers; >= 1.
    pub count: u64,
}

enum Backend {
    V1(v1::Watcher),
    V2(v2::Watcher),
}

/// Watches one memory cgroup for OOM kills, from Create until the cgroup goes away.
pub struct OomWatcher {
    dir: PathBuf,
    backend: Backend,
}

impl OomWatcher {
    /// Starts watching `cgroup_dir` (a v1 memory cgroup or a v2 cgroup, told apart by its files).
    /// Must be called inside the tokio runtime.
    pub fn arm(cgroup_dir: &Path) -> io::Result<OomWatcher> {
        let backend = if cgroup_dir.join(v1::CONTROL).exists() {
            Backend::V1(v1::Watcher::arm(cgroup_dir)?)
        } else if cgroup_dir.join(v2::EVENTS).exists() {
            Backend::V2(v2::Watcher::arm(cgroup_dir)?)
        } else {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "arming OOM watch on {}: neither {} nor {} is there",
                    cgroup_dir.display(),
                    v1::CONTROL,
                    v2::EVENTS
                ),
            ));
        };
        Ok(OomWatcher {
            dir: cgroup_dir.to_path_buf(),
            backend,
        })
    }

    /// The next OOM event; `None` once the cgroup is gone (then always `None`). Cancel-safe: it
    /// can sit in a `select!` beside other work.
    pub async fn next(&mut self) -> Option<OomEvent> {
        match &mut self.backend {
            Backend::V1(w) => w.next().await,
            Backend::V2(w) => w.next().await,
        }
    }

    /// A last synchronous look, for right before the init's TaskExit is published: true when an
    /// OOM happened that `next` has not returned yet. It is then consumed (`next` will not return
    /// it), so the caller publishes the TaskOOM itself.
    pub fn check_now(&mut self) -> bool {
        match &mut self.backend {
            Backend::V1(w) => w.check_now(),
            Backend::V2(w) => w.check_now(),
        }
    }

    /// What the watcher has to report about a read it missed (v2: the cgroup was removed before
    /// its final read, and what the parent's counters said instead), for the container's
    /// runtime.log; None when nothing was missed since the last call.
    pub fn take_note(&mut self) -> Option<String> {
        match &mut self.backend {
            Backend::V1(_) => None,
            Backend::V2(w) => w.take_note(),
        }
    }

    /// The directory being watched (for `memory_figures` and log messages).
    pub fn cgroup_dir(&self) -> &Path {
        &self.dir
    }
}

/// v1 writes "no limit" as LONG_MAX rounded down to a page; anything that high is unlimited
/// (rounded down to 1 MiB to cover every page size).
const V1_UNLIMITED: u64 = (i64::MAX as u64) & !0xF_FFFF;

/// The figures of the container-log `oom` record: (peak usage, limit) in bytes, each None when
/// unknown or (limit) unlimited. v1: `memory.max_usage_in_bytes` / `memory.limit_in_bytes`;
/// v2: `memory.peak` (kernel 5.19+) / `memory.max`.
pub fn memory_figures(cgroup_dir: &Path) -> (Option<u64>, Option<u64>) {
    let number = |name: &str| {
        files::read_u64_optional(&cgroup_dir.join(name))
            .map_err(|e| log::debug!("memory figures: {e}"))
            .ok()
            .flatten()
    };
    if cgroup_dir.join("memory.limit_in_bytes").exists() {
        let limit = number("memory.limit_in_bytes").filter(|v| *v < V1_UNLIMITED);
        return (number("memory.max_usage_in_bytes"), limit);
    }
    let limit = match files::read_limit_optional(&cgroup_dir.join("memory.max")) {
        Ok(Some(Limit::Value(v))) => Some(v),
        Ok(_) => None,
        Err(e) => {
            log::debug!("memory figures: {e}");
            None
        }
    };
    (number("memory.peak"), limit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::testutil::TempDir;

    #[test]
    fn figures_from_v2_files() {
        let d = TempDir::new("figures-v2");
        d.write("memory.peak", "123456\n");
        d.write("memory.max", "max\n");
        d.write("memory.events", "oom_kill 0\n");
        assert_eq!(memory_figures(d.path()), (Some(123456), None));
        d.write("memory.max", "8388608\n");
        assert_eq!(memory_figures(d.path()), (Some(123456), Some(8388608)));
        std::fs::remove_file(d.path().join("memory.peak")).expect("rm memory.peak");
        assert_eq!(memory_figures(d.path()), (None, Some(8388608)));
    }

    #[test]
    fn figures_from_v1_files() {
        let d = TempDir::new("figures-v1");
        d.write("memory.max_usage_in_bytes", "4096\n");
        d.write("memory.limit_in_bytes", "9223372036854771712\n");
        assert_eq!(memory_figures(d.path()), (Some(4096), None));
        d.write("memory.limit_in_bytes", "8388608\n");
        assert_eq!(memory_figures(d.path()), (Some(4096), Some(8388608)));
    }

    #[tokio::test]
    async fn arming_a_directory_without_memory_files_fails_with_its_name() {
        let d = TempDir::new("not-a-cgroup");
        let err = OomWatcher::arm(d.path()).err().expect("nothing to watch");
        assert!(
            err.to_string().contains(&d.path().display().to_string()),
            "{err}"
        );
    }
}
