//! Watching a container's memory cgroup for OOM kills and announcing each as TaskOOM with an
//! `oom` record; the cgroup mechanics (v1 eventfd, v2 `memory.events`) are in `cgroups/`.
//!
//! A watcher that cannot be armed is logged and the container runs without OOM events. The
//! watcher's last check before the init's TaskExit is what keeps TaskOOM first (`exit.rs`).

use std::path::Path;
use std::sync::Arc;

use tokio::sync::oneshot;

use crate::announce::Announcer;
use crate::cgroups::{memory_figures, OomWatcher};
use crate::container::Container;

/// Starts watching the container's memory cgroup for OOM kills (once its cgroups are known).
pub fn arm(c: &Arc<Container>, announce: &Announcer) {
    let Some(dir) = c.cgroup().and_then(|cg| cg.memory_dir()) else {
        return;
    };
    match OomWatcher::arm(dir) {
        Ok(watcher) => {
            let (tx, rx) = oneshot::channel();
            c.exits.set_oom_final(tx);
            tokio::spawn(watch_oom(c.clone(), watcher, rx, announce.clone()));
        }
        Err(e) => log::warn!(container = c.id.as_str(), error:% = e; "OOM events unavailable"),
    }
}

/// Announces one OOM kill with the cgroup's memory figures.
fn announce_oom(c: &Container, dir: &Path, announce: &Announcer) {
    let (peak, limit) = memory_figures(dir);
    log::warn!(container = c.id.as_str(); "OOM kill in {}", dir.display());
    announce.oom(c, peak, limit);
}

/// Publishes one TaskOOM per OOM kill the watcher sees, and a last check when the init exits.
async fn watch_oom(
    c: Arc<Container>,
    mut watcher: OomWatcher,
    mut final_check: oneshot::Receiver<oneshot::Sender<()>>,
    announce: Announcer,
) {
    let dir = watcher.cgroup_dir().to_path_buf();
    // A read the watcher missed (the cgroup removed first) goes to the container's runtime.log.
    let note = |watcher: &mut OomWatcher| {
        if let Some(n) = watcher.take_note() {
            log::info!(container = c.id.as_str(); "OOM watch: {n}");
        }
    };
    loop {
        tokio::select! {
            event = watcher.next() => match event {
                Some(_) => {
                    note(&mut watcher);
                    announce_oom(&c, &dir, &announce);
                }
                None => {
                    note(&mut watcher);
                    // The cgroup is gone; still answer the final check so the exit is not held up.
                    if let Ok(done) = final_check.await {
                        let _ = done.send(());
                    }
                    return;
                }
            },
            done = &mut final_check => {
                let oom = watcher.check_now();
                note(&mut watcher);
                if oom {
                    announce_oom(&c, &dir, &announce);
                }
                if let Ok(done) = done {
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}
