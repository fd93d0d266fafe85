//! The drivers of this process whose background task has not finished (fluentd, plugins): the
//! shim gives them a bounded time to deliver before it exits, and counts what they still hold
//! as dropped when that time is up.

use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

/// A process-wide list of live drivers' shared states, held weakly (a closed, finished driver
/// goes away by itself).
pub struct LiveSet<T>(Mutex<Vec<Weak<T>>>);

impl<T> LiveSet<T> {
    /// An empty list, for a `static`.
    pub const fn new() -> Self {
        LiveSet(Mutex::new(Vec::new()))
    }

    /// Adds a driver's state (and forgets the ones gone since).
    pub fn add(&self, shared: &Arc<T>) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|w| w.strong_count() > 0);
        g.push(Arc::downgrade(shared));
    }

    /// The drivers still alive.
    pub fn live(&self) -> Vec<Arc<T>> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|w| w.strong_count() > 0);
        g.iter().filter_map(Weak::upgrade).collect()
    }
}

impl<T> Default for LiveSet<T> {
    fn default() -> Self {
        Self::new()
    }
}

/// Resolves once `done()` holds, checking it again each time `progress` is notified (the
/// notification is armed before the check, so none is missed).
pub async fn wait_until(progress: &Notify, done: impl Fn() -> bool) {
    loop {
        let notified = progress.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return;
        }
        notified.await;
    }
}

/// Resolves once a bounded driver may take more: `full_until()` answers `None` when it has room
/// (or counts as stalled, or has no progress to measure a stall from), and while it is full the
/// instant it will count as stalled; until then this waits for progress or that instant and
/// asks again.
pub async fn wait_room(progress: &Notify, full_until: impl Fn() -> Option<std::time::Instant>) {
    loop {
        let notified = progress.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Some(stalls_at) = full_until() else {
            return;
        };
        let _ = tokio::time::timeout_at(stalls_at.into(), notified).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn room_comes_with_progress_or_with_the_stall_instant() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            // No progress at all: it returns once the stall instant has passed.
            let progress = Notify::new();
            let stalls_at = std::time::Instant::now() + std::time::Duration::from_millis(20);
            wait_room(&progress, || {
                (std::time::Instant::now() < stalls_at).then_some(stalls_at)
            })
            .await;
            assert!(std::time::Instant::now() >= stalls_at);
            // Progress that makes room wakes it long before the stall instant.
            let shared = Arc::new((AtomicBool::new(false), Notify::new()));
            let s2 = shared.clone();
            let far = std::time::Instant::now() + std::time::Duration::from_secs(60);
            let waiter = tokio::spawn(async move {
                wait_room(&s2.1, || (!s2.0.load(Ordering::SeqCst)).then_some(far)).await;
            });
            tokio::task::yield_now().await;
            shared.0.store(true, Ordering::SeqCst);
            shared.1.notify_waiters();
            tokio::time::timeout(std::time::Duration::from_secs(5), waiter)
                .await
                .expect("woken by progress")
                .unwrap();
        });
    }

    #[test]
    fn holds_only_the_living_and_waits_for_done() {
        let set: LiveSet<(AtomicBool, Notify)> = LiveSet::new();
        let a = Arc::new((AtomicBool::new(false), Notify::new()));
        set.add(&a);
        {
            let b = Arc::new((AtomicBool::new(false), Notify::new()));
            set.add(&b);
        }
        assert_eq!(set.live().len(), 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let a2 = a.clone();
        rt.block_on(async move {
            let waiter = tokio::spawn(async move {
                for s in set.live() {
                    wait_until(&s.1, || s.0.load(Ordering::SeqCst)).await;
                }
            });
            tokio::task::yield_now().await;
            a2.0.store(true, Ordering::SeqCst);
            a2.1.notify_waiters();
            waiter.await.unwrap();
        });
    }
}
