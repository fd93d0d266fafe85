//! What a container's exits wait on, so they reach containerd in order: the number of exec
//! processes whose TaskExit is not published yet (the init's TaskExit waits for zero), and the
//! OOM watcher's last check (the init's TaskExit waits until any TaskOOM is out).
//!
//! Held by the container; the sequence that uses it is `watch_exit` in `exit.rs`.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{oneshot, watch};

/// One container's exit-ordering state.
pub struct ExitOrder {
    /// Exec processes started and not yet reported exited.
    running_execs: watch::Sender<usize>,
    /// Asks the OOM watcher for its last check before the init's TaskExit; it answers on the
    /// enclosed sender once any OOM it found is published.
    oom_final: Mutex<Option<oneshot::Sender<oneshot::Sender<()>>>>,
}

impl Default for ExitOrder {
    fn default() -> Self {
        ExitOrder {
            running_execs: watch::channel(0).0,
            oom_final: Mutex::new(None),
        }
    }
}

impl ExitOrder {
    /// An exec was started: the init's exit will wait for its exit to be published.
    pub fn exec_started(&self) {
        self.running_execs.send_modify(|n| *n += 1);
    }

    /// An exec's exit was published.
    pub fn exec_exited(&self) {
        self.running_execs.send_modify(|n| *n = n.saturating_sub(1));
    }

    /// Waits until every started exec has had its exit published.
    pub async fn execs_done(&self) {
        let mut rx = self.running_execs.subscribe();
        let _ = rx.wait_for(|n| *n == 0).await;
    }

    /// Registers the OOM watcher's final-check channel.
    pub fn set_oom_final(&self, tx: oneshot::Sender<oneshot::Sender<()>>) {
        *self.oom_final.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    }

    /// Makes the OOM watcher publish any OOM kill not reported yet, and waits (bounded) until it
    /// has: TaskOOM must precede the init's TaskExit.
    pub async fn final_oom_check(&self, limit: Duration) {
        let tx = self
            .oom_final
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(tx) = tx {
            let (done_tx, done_rx) = oneshot::channel();
            if tx.send(done_tx).is_ok() {
                let _ = tokio::time::timeout(limit, done_rx).await;
            }
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
    fn the_init_waits_for_every_started_exec() {
        rt().block_on(async {
            let o = std::sync::Arc::new(ExitOrder::default());
            o.execs_done().await; // none started: no wait
            o.exec_started();
            o.exec_started();
            let waiter = tokio::spawn({
                let o = o.clone();
                async move { o.execs_done().await }
            });
            o.exec_exited();
            tokio::task::yield_now().await;
            assert!(!waiter.is_finished(), "one exec still running");
            o.exec_exited();
            tokio::time::timeout(Duration::from_secs(5), waiter)
                .await
                .expect("execs_done after the last exec")
                .unwrap();
        });
    }

    #[test]
    fn the_final_oom_check_is_answered_or_bounded() {
        rt().block_on(async {
            let o = ExitOrder::default();
            // No watcher armed: returns at once.
            o.final_oom_check(Duration::from_secs(60)).await;
            let (tx, rx) = oneshot::channel();
            o.set_oom_final(tx);
            let watcher = tokio::spawn(async move {
                let done = rx.await.unwrap();
                done.send(()).unwrap();
                true
            });
            o.final_oom_check(Duration::from_secs(60)).await;
            assert!(watcher.await.unwrap(), "the watcher was asked");
        });
    }
}
