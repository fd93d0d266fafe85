//! cgroups: where a container's cgroup is, its OOM kills (TaskOOM) and its figures (Stats).
//!
//! - `locate`: resolve a pid's cgroup directories (v1 per controller, or the v2 one).
//! - `mode`: is the host v1, hybrid or unified.
//! - `oom`: the OOM watcher (v1 eventfd, v2 inotify) and the `oom` record's memory figures.
//! - `stats`: `io.containerd.cgroups.v1/v2.Metrics` for Task Stats.
//!
//! Nothing here blocks or starts threads: files are small kernfs reads, notifications go
//! through the shim's tokio reactor.

mod files;
mod join;
mod locate;
mod mode;
mod oom;
mod stats;
#[cfg(test)]
mod testutil;

pub use join::join;
pub use locate::ContainerCgroup;
pub use oom::{memory_figures, OomWatcher};
