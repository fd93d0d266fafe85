//! The ordered event publisher: the shim's one channel of task events to
//! containerd (`containerd.services.events.ttrpc.v1.Events/Forward` at
//! `TTRPC_ADDRESS`).
//!
//! One queue and one sender task keep events strictly in enqueue order, so
//! e.g. `TaskStart` always reaches containerd before that process's
//! `TaskExit`. Each event is retried with exponential backoff, over fresh
//! connections, until delivered or `max_age` after it was published, which
//! rides out a containerd restart. Delivery is at least once: an answer lost
//! to a timeout means the event is sent again. Nothing is lost silently:
//! an event rejected, given up, or dropped because the queue was full is
//! logged with `log::error!` naming its topic and the reason.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use crate::envelope::{forward_request, to_any, TaskEvent};
use crate::queue::Queue;
pub use crate::sender::PublisherConfig;
use crate::sender::{self, Pending};

/// Closes the queue when the last `Publisher` clone goes away, so the sender
/// task drains what is left and ends.
struct Handle {
    queue: Arc<Queue<Pending>>,
    namespace: String,
    max_age: Duration,
    capacity: usize,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.queue.close();
    }
}

/// A cheap, clonable handle for publishing task events to containerd.
#[derive(Clone)]
pub struct Publisher {
    inner: Arc<Handle>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("namespace", &self.inner.namespace)
            .field("pending", &self.pending())
            .finish()
    }
}

impl Publisher {
    /// Spawns the single sender task on the current tokio runtime (the
    /// shim's current_thread runtime) with default tuning. `ttrpc_address` is
    /// a socket path or `unix://` URL; nothing is connected until the first
    /// event. Must be called within a tokio runtime.
    pub fn spawn(ttrpc_address: &str, namespace: &str) -> Publisher {
        Self::spawn_with(ttrpc_address, namespace, PublisherConfig::default())
    }

    /// [`Self::spawn`] with explicit tuning.
    pub fn spawn_with(ttrpc_address: &str, namespace: &str, config: PublisherConfig) -> Publisher {
        let queue = Arc::new(Queue::new(config.capacity));
        let handle = Handle {
            queue: queue.clone(),
            namespace: namespace.to_owned(),
            max_age: config.max_age,
            capacity: config.capacity,
        };
        tokio::spawn(sender::run(queue, ttrpc_address.to_owned(), config));
        Publisher {
            inner: Arc::new(handle),
        }
    }

    /// Enqueues `event` under `topic` (e.g. `/tasks/exit`), stamped now.
    /// Never blocks; events leave strictly in the order they were enqueued.
    pub fn publish<M: TaskEvent>(&self, topic: &str, event: &M) {
        let any = match to_any(event) {
            Ok(any) => any,
            Err(e) => {
                log::error!("event {topic} lost: cannot encode {}: {e}", M::NAME);
                return;
            }
        };
        let request = forward_request(&self.inner.namespace, topic, any, SystemTime::now());
        let pending = Pending {
            topic: topic.to_owned(),
            request,
            deadline: Instant::now() + self.inner.max_age,
        };
        if let Some(dropped) = self.inner.queue.push(pending) {
            log::error!(
                "event {} lost: queue full ({} events waiting for containerd), dropped the oldest",
                dropped.item.topic,
                self.inner.capacity
            );
        }
    }

    /// Waits until every event enqueued before this call has been delivered
    /// or given up, for at most `timeout`. Returns true only if all events
    /// still pending at the call were delivered within the time; events lost
    /// before the call were already reported by their `log::error!` and do
    /// not count (so one old loss does not make every later flush fail).
    pub async fn flush(&self, timeout: Duration) -> bool {
        let Some(rx) = self.inner.queue.watch() else {
            return true;
        };
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(true)))
    }

    /// How many events wait for delivery (including the one being sent).
    pub fn pending(&self) -> usize {
        self.inner.queue.pending()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::socket_path;
    use async_trait::async_trait;
    use containerd_shim_protos::events::task::{TaskExit, TaskStart};
    use containerd_shim_protos::shim::events::ForwardRequest;
    use containerd_shim_protos::shim_async::{create_events, Events};
    use containerd_shim_protos::topics::{TASK_EXIT_EVENT_TOPIC, TASK_START_EVENT_TOPIC};
    use protobuf::well_known_types::empty::Empty;
    use protobuf::Message;
    use std::path::Path;
    use std::sync::Mutex;
    use ttrpc::asynchronous::{Server, TtrpcContext};

    /// What the fake containerd saw, in arrival order.
    #[derive(Default)]
    struct Seen(Mutex<Vec<ForwardRequest>>);

    impl Seen {
        fn pids(&self) -> Vec<u32> {
            self.0
                .lock()
                .map(|v| {
                    v.iter()
                        .map(|r| {
                            TaskStart::parse_from_bytes(&r.envelope.event.value)
                                .map(|s| s.pid)
                                .unwrap_or(u32::MAX)
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
    }

    /// A fake containerd Events service; rejects topics named "/bad".
    struct FakeContainerd(Arc<Seen>);

    #[async_trait]
    impl Events for FakeContainerd {
        async fn forward(&self, _: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
            if req.envelope.topic == "/bad" {
                return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                    ttrpc::Code::INVALID_ARGUMENT,
                    "bad topic",
                )));
            }
            if let Ok(mut v) = self.0 .0.lock() {
                v.push(req);
            }
            Ok(Empty::new())
        }
    }

    async fn serve(path: &Path, seen: &Arc<Seen>) -> Server {
        let _ = std::fs::remove_file(path);
        let mut server = Server::new()
            .bind(&format!("unix://{}", path.display()))
            .expect("bind")
            .register_service(create_events(Arc::new(FakeContainerd(seen.clone()))));
        server.start().await.expect("start server");
        server
    }

    fn fast() -> PublisherConfig {
        PublisherConfig {
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(50),
            call_timeout: Duration::from_secs(2),
            ..Default::default()
        }
    }

    fn start(pid: u32) -> TaskStart {
        TaskStart {
            container_id: "c1".into(),
            pid,
            ..Default::default()
        }
    }

    const LONG: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn delivers_in_order_with_containerd_envelope() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("ttrpc.sock");
        let seen = Arc::new(Seen::default());
        let _server = serve(&sock, &seen).await;

        let p = Publisher::spawn_with(&format!("unix://{}", sock.display()), "k8s.io", fast());
        let before = SystemTime::now();
        for pid in 1..=50 {
            p.publish(TASK_START_EVENT_TOPIC, &start(pid));
        }
        let exit = TaskExit {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 51,
            exit_status: 137,
            ..Default::default()
        };
        p.publish(TASK_EXIT_EVENT_TOPIC, &exit);
        assert!(p.flush(LONG).await);
        assert_eq!(p.pending(), 0);

        let got = seen.0.lock().expect("lock").clone();
        assert_eq!(got.len(), 51);
        assert_eq!(seen.pids()[..50], (1..=50).collect::<Vec<_>>()[..]);
        let last = &got[50].envelope;
        assert_eq!(last.namespace, "k8s.io");
        assert_eq!(last.topic, "/tasks/exit");
        assert_eq!(last.event.type_url, "containerd.events.TaskExit");
        assert_eq!(
            TaskExit::parse_from_bytes(&last.event.value).expect("decode"),
            exit
        );
        assert_eq!(
            got[0].envelope.event.type_url,
            "containerd.events.TaskStart"
        );
        let since = before
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let stamp = u64::try_from(last.timestamp.seconds).expect("positive");
        assert!(stamp >= since && stamp <= since + 10, "{stamp} vs {since}");
    }

    #[tokio::test]
    async fn queued_events_arrive_in_order_once_containerd_comes_up() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("ttrpc.sock");
        let seen = Arc::new(Seen::default());
        // Plain path form of TTRPC_ADDRESS; nothing listens yet.
        let p = Publisher::spawn_with(&sock.display().to_string(), "default", fast());
        for pid in 1..=5 {
            p.publish(TASK_START_EVENT_TOPIC, &start(pid));
        }
        assert!(!p.flush(Duration::from_millis(150)).await, "nobody listens");
        assert_eq!(p.pending(), 5);

        let _server = serve(&sock, &seen).await;
        p.publish(TASK_START_EVENT_TOPIC, &start(6));
        assert!(p.flush(LONG).await);
        assert_eq!(seen.pids(), vec![1, 2, 3, 4, 5, 6]);
    }

    #[tokio::test]
    async fn survives_a_containerd_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("ttrpc.sock");
        let seen = Arc::new(Seen::default());
        let mut server = serve(&sock, &seen).await;
        let p = Publisher::spawn_with(&format!("unix://{}", sock.display()), "default", fast());
        p.publish(TASK_START_EVENT_TOPIC, &start(1));
        assert!(p.flush(LONG).await);

        server.shutdown().await.expect("shutdown");
        drop(server);
        let _ = std::fs::remove_file(&sock);
        for pid in 2..=4 {
            p.publish(TASK_START_EVENT_TOPIC, &start(pid));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(p.pending() > 0, "must still hold events while down");

        let _server = serve(&sock, &seen).await;
        assert!(p.flush(LONG).await);
        assert_eq!(seen.pids(), vec![1, 2, 3, 4]);
    }

    #[tokio::test]
    async fn rejected_event_is_lost_but_the_rest_flow() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("ttrpc.sock");
        let seen = Arc::new(Seen::default());
        let _server = serve(&sock, &seen).await;
        let p = Publisher::spawn_with(socket_path(&sock.display().to_string()), "ns", fast());
        p.publish(TASK_START_EVENT_TOPIC, &start(1));
        p.publish("/bad", &start(2));
        p.publish(TASK_START_EVENT_TOPIC, &start(3));
        assert!(!p.flush(LONG).await, "one event was rejected");
        assert_eq!(seen.pids(), vec![1, 3]);
        p.publish(TASK_START_EVENT_TOPIC, &start(4));
        assert!(p.flush(LONG).await, "later flushes are not poisoned");
    }

    #[tokio::test]
    async fn gives_up_after_max_age() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("nobody.sock");
        let cfg = PublisherConfig {
            max_age: Duration::from_millis(100),
            ..fast()
        };
        let p = Publisher::spawn_with(&sock.display().to_string(), "ns", cfg);
        p.publish(TASK_START_EVENT_TOPIC, &start(1));
        let began = std::time::Instant::now();
        assert!(!p.flush(LONG).await);
        assert!(began.elapsed() < Duration::from_secs(5));
        assert_eq!(p.pending(), 0);
    }

    #[tokio::test]
    async fn full_queue_drops_the_oldest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("ttrpc.sock");
        let seen = Arc::new(Seen::default());
        let cfg = PublisherConfig {
            capacity: 2,
            ..fast()
        };
        let p = Publisher::spawn_with(&sock.display().to_string(), "ns", cfg);
        // No await in between: the sender has not taken anything yet.
        for pid in 1..=5 {
            p.publish(TASK_START_EVENT_TOPIC, &start(pid));
        }
        assert_eq!(p.pending(), 2);
        let _server = serve(&sock, &seen).await;
        // The drops happened before this flush (and were logged); it reports
        // on the two events still pending.
        assert!(p.flush(LONG).await);
        assert_eq!(seen.pids(), vec![4, 5]);
    }

    /// Captures log lines so tests can see that losses are reported.
    struct Capture(Mutex<Vec<String>>);

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &log::Record) {
            if let Ok(mut v) = self.0.lock() {
                v.push(format!("{} {}", record.level(), record.args()));
            }
        }
        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

    fn logged_errors_about(topic: &str) -> Vec<String> {
        CAPTURE
            .0
            .lock()
            .map(|v| {
                v.iter()
                    .filter(|l| l.starts_with("ERROR") && l.contains(topic))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn every_loss_is_logged_with_its_topic() {
        let _ = log::set_logger(&CAPTURE);
        log::set_max_level(log::LevelFilter::Trace);
        let dir = tempfile::tempdir().expect("tempdir");
        let sock = dir.path().join("nobody.sock");
        let cfg = PublisherConfig {
            capacity: 1,
            max_age: Duration::from_millis(50),
            ..fast()
        };
        let p = Publisher::spawn_with(&sock.display().to_string(), "ns", cfg);
        p.publish("/probe/dropped", &start(1));
        p.publish("/probe/expired", &start(2));
        assert!(!p.flush(LONG).await);
        let dropped = logged_errors_about("/probe/dropped");
        assert!(
            dropped.len() == 1 && dropped[0].contains("queue full"),
            "{dropped:?}"
        );
        let expired = logged_errors_about("/probe/expired");
        assert!(
            expired.len() == 1 && expired[0].contains("gave up"),
            "{expired:?}"
        );
    }

    #[tokio::test]
    async fn flush_with_nothing_pending_is_immediate() {
        let p = Publisher::spawn("/nonexistent/ttrpc.sock", "ns");
        assert!(p.flush(Duration::from_millis(1)).await);
    }

    #[test]
    fn runs_on_a_current_thread_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("tempdir");
            let sock = dir.path().join("ttrpc.sock");
            let seen = Arc::new(Seen::default());
            let _server = serve(&sock, &seen).await;
            let p = Publisher::spawn(&sock.display().to_string(), "ns");
            p.publish(TASK_START_EVENT_TOPIC, &start(9));
            assert!(p.flush(LONG).await);
            assert_eq!(seen.pids(), vec![9]);
        });
    }
}
