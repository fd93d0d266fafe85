//! The publisher's single ordered queue: bounded, drop-oldest, with flush
//! waiters that learn when everything before them has been settled.
//!
//! Every event gets a sequence number. At most one event is "in flight" (held
//! by the sender task); the rest wait in order. An event is settled when it
//! was delivered or lost (given up or dropped). Since the sender settles in
//! order and an overflow drops the oldest waiting event, the settled events
//! always include every sequence number below the lowest pending one.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify};

/// One queued event. `T` is the payload (the Forward request and metadata).
#[derive(Debug)]
pub(crate) struct Entry<T> {
    /// Position in enqueue order.
    pub seq: u64,
    /// The event.
    pub item: T,
}

/// How an event left the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// containerd accepted it.
    Delivered,
    /// Given up or rejected; already logged.
    Lost,
}

struct Waiter {
    from: u64,
    to: u64,
    lost: bool,
    tx: oneshot::Sender<bool>,
}

struct State<T> {
    waiting: VecDeque<Entry<T>>,
    in_flight: Option<u64>,
    next_seq: u64,
    waiters: Vec<Waiter>,
    closed: bool,
}

impl<T> State<T> {
    fn lowest_pending(&self) -> u64 {
        self.in_flight
            .or_else(|| self.waiting.front().map(|e| e.seq))
            .unwrap_or(self.next_seq)
    }

    fn mark_lost(&mut self, seq: u64) {
        for w in &mut self.waiters {
            if (w.from..=w.to).contains(&seq) {
                w.lost = true;
            }
        }
    }

    /// Completes the waiters whose range is fully settled.
    fn settle(&mut self) {
        let low = self.lowest_pending();
        let mut i = 0;
        while i < self.waiters.len() {
            if self.waiters[i].to < low {
                let w = self.waiters.swap_remove(i);
                // The flusher may have timed out and gone; nothing to tell then.
                let _ = w.tx.send(!w.lost);
            } else {
                i += 1;
            }
        }
    }
}

/// The shared queue between `Publisher` handles and the sender task.
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    wake: Notify,
    capacity: usize,
}

impl<T> Queue<T> {
    /// A queue holding at most `capacity` waiting events (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            state: Mutex::new(State {
                waiting: VecDeque::new(),
                in_flight: None,
                next_seq: 0,
                waiters: Vec::new(),
                closed: false,
            }),
            wake: Notify::new(),
            capacity: capacity.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state torn (every
        // critical section is a few field updates), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an event; returns the oldest waiting event if the queue was
    /// full and it had to make room (the caller logs it).
    pub fn push(&self, item: T) -> Option<Entry<T>> {
        let dropped = {
            let mut st = self.lock();
            let seq = st.next_seq;
            st.next_seq += 1;
            st.waiting.push_back(Entry { seq, item });
            let dropped = if st.waiting.len() > self.capacity {
                st.waiting.pop_front()
            } else {
                None
            };
            if let Some(d) = &dropped {
                st.mark_lost(d.seq);
                st.settle();
            }
            dropped
        };
        self.wake.notify_one();
        dropped
    }

    /// Takes the next event for delivery, waiting for one; `None` once the
    /// queue is closed and empty.
    pub async fn next(&self) -> Option<Entry<T>> {
        loop {
            {
                let mut st = self.lock();
                if let Some(e) = st.waiting.pop_front() {
                    st.in_flight = Some(e.seq);
                    return Some(e);
                }
                if st.closed {
                    return None;
                }
            }
            self.wake.notified().await;
        }
    }

    /// Records how the in-flight event `seq` ended.
    pub fn finish(&self, seq: u64, outcome: Outcome) {
        let mut st = self.lock();
        if st.in_flight == Some(seq) {
            st.in_flight = None;
        }
        if outcome == Outcome::Lost {
            st.mark_lost(seq);
        }
        st.settle();
    }

    /// Registers interest in every event enqueued so far. `None` means all of
    /// them are already settled; otherwise the receiver yields whether all
    /// events still pending now end up delivered.
    pub fn watch(&self) -> Option<oneshot::Receiver<bool>> {
        let mut st = self.lock();
        let from = st.lowest_pending();
        if from >= st.next_seq {
            return None;
        }
        let to = st.next_seq - 1;
        st.waiters.retain(|w| !w.tx.is_closed());
        let (tx, rx) = oneshot::channel();
        st.waiters.push(Waiter {
            from,
            to,
            lost: false,
            tx,
        });
        Some(rx)
    }

    /// How many events are waiting or in flight.
    pub fn pending(&self) -> usize {
        let st = self.lock();
        st.waiting.len() + usize::from(st.in_flight.is_some())
    }

    /// No more events will be pushed: the sender stops once it has drained.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(f)
    }

    #[test]
    fn delivers_in_order_and_settles_watchers() {
        let q = Queue::new(10);
        assert!(q.watch().is_none());
        q.push("a");
        q.push("b");
        let mut rx = q.watch().expect("pending");
        block_on(async {
            let a = q.next().await.expect("a");
            assert_eq!(a.item, "a");
            q.finish(a.seq, Outcome::Delivered);
            assert!(rx.try_recv().is_err());
            q.push("c"); // after the watch: not waited for
            let b = q.next().await.expect("b");
            assert_eq!(b.item, "b");
            q.finish(b.seq, Outcome::Delivered);
        });
        assert_eq!(rx.try_recv(), Ok(true));
        assert_eq!(q.pending(), 1);
    }

    #[test]
    fn loss_is_reported_to_overlapping_watchers_only() {
        let q = Queue::new(10);
        q.push(1);
        let mut first = q.watch().expect("pending");
        q.push(2);
        let mut second = q.watch().expect("pending");
        block_on(async {
            let e = q.next().await.expect("1");
            q.finish(e.seq, Outcome::Lost);
            let e = q.next().await.expect("2");
            q.finish(e.seq, Outcome::Delivered);
        });
        assert_eq!(first.try_recv(), Ok(false));
        assert_eq!(second.try_recv(), Ok(false));
        q.push(3);
        let mut third = q.watch().expect("pending");
        block_on(async {
            let e = q.next().await.expect("3");
            q.finish(e.seq, Outcome::Delivered);
        });
        assert_eq!(third.try_recv(), Ok(true));
    }

    #[test]
    fn overflow_drops_the_oldest_waiting() {
        let q = Queue::new(2);
        assert!(q.push("a").is_none());
        assert!(q.push("b").is_none());
        let mut rx = q.watch().expect("pending");
        let dropped = q.push("c").expect("full");
        assert_eq!(dropped.item, "a");
        block_on(async {
            for want in ["b", "c"] {
                let e = q.next().await.expect("entry");
                assert_eq!(e.item, want);
                q.finish(e.seq, Outcome::Delivered);
            }
        });
        assert_eq!(rx.try_recv(), Ok(false));
    }

    #[test]
    fn close_ends_the_stream_after_draining() {
        let q = Queue::new(4);
        q.push(1);
        q.close();
        block_on(async {
            let e = q.next().await.expect("drains first");
            q.finish(e.seq, Outcome::Delivered);
            assert!(q.next().await.is_none());
        });
    }
}
