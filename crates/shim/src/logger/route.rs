//! Which `runtime.log` files a line of the shim's own log goes to.
//!
//! One shim can serve several containers (a pod). Each container with a runtime.log is attached
//! here for as long as the shim serves it. A line about one container goes to that container's
//! runtime.log only; a line about no container in particular goes to every attached one. A line
//! about a container that is not attached (not created yet, already deleted, or with runtime.log
//! off) goes to none: it still reaches containerd through the shim's stderr.

use std::sync::{Arc, Mutex, MutexGuard};

use scribe_events::{RuntimeLog, RuntimeRecord, SinkError};

/// Where a record is appended: a container's runtime.log (a stand-in in tests).
pub trait Append {
    /// Appends one record.
    fn append(&self, record: &RuntimeRecord) -> Result<(), SinkError>;
}

impl Append for RuntimeLog {
    fn append(&self, record: &RuntimeRecord) -> Result<(), SinkError> {
        RuntimeLog::append(self, record)
    }
}

/// A container's runtime.log while the shim serves it.
struct Route<S> {
    container: String,
    sink: Arc<S>,
    /// The last append failed: further failures are not reported again until one succeeds.
    failing: bool,
}

/// What happened to a runtime.log that the caller should report (on stderr: reporting through
/// the `log` facade would come back here).
#[derive(Debug)]
pub enum Trouble {
    /// Appending to this container's runtime.log failed (reported once until it works again).
    Failed {
        /// The container.
        container: String,
        /// Why.
        error: SinkError,
    },
    /// This container's runtime.log takes records again after failing.
    Recovered {
        /// The container.
        container: String,
    },
}

/// The containers whose runtime.log receives the shim's log lines.
pub struct Routes<S = RuntimeLog> {
    served: Mutex<Vec<Route<S>>>,
}

impl<S: Append> Routes<S> {
    /// No container attached.
    pub const fn new() -> Routes<S> {
        Routes {
            served: Mutex::new(Vec::new()),
        }
    }

    fn served(&self) -> MutexGuard<'_, Vec<Route<S>>> {
        self.served.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// From now on lines about `container`, and lines about no container, go to `sink`. A
    /// container attached again gets the new sink.
    pub fn attach(&self, container: &str, sink: Arc<S>) {
        let mut served = self.served();
        served.retain(|r| r.container != container);
        served.push(Route {
            container: container.to_string(),
            sink,
            failing: false,
        });
    }

    /// The shim no longer serves `container`: its runtime.log gets no more lines.
    pub fn detach(&self, container: &str) {
        self.served().retain(|r| r.container != container);
    }

    /// Appends `record` to the runtime.log of `container` when it is attached, or, for a line
    /// about no container, to every attached runtime.log; what went wrong is handed to `report`
    /// after the routes are released.
    pub fn write(
        &self,
        record: &RuntimeRecord,
        container: Option<&str>,
        mut report: impl FnMut(Trouble),
    ) {
        let mut troubles = Vec::new();
        {
            let mut served = self.served();
            for route in served
                .iter_mut()
                .filter(|r| container.is_none_or(|c| c == r.container))
            {
                match route.sink.append(record) {
                    Ok(()) if route.failing => {
                        route.failing = false;
                        troubles.push(Trouble::Recovered {
                            container: route.container.clone(),
                        });
                    }
                    Ok(()) => {}
                    Err(error) if !route.failing => {
                        route.failing = true;
                        troubles.push(Trouble::Failed {
                            container: route.container.clone(),
                            error,
                        });
                    }
                    Err(_) => {}
                }
            }
        }
        troubles.into_iter().for_each(&mut report);
    }

    /// The containers attached, in attach order.
    #[cfg(test)]
    fn containers(&self) -> Vec<String> {
        self.served().iter().map(|r| r.container.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scribe_events::{validate_runtime_record, Level};
    use std::path::Path;

    fn sink(root: &Path, id: &str) -> Arc<RuntimeLog> {
        Arc::new(RuntimeLog::open(root, "ns", id).expect("open runtime.log"))
    }

    /// The `msg` of every record in `<root>/ns/<id>/runtime.log`, each checked against the schema.
    fn messages(root: &Path, id: &str) -> Vec<String> {
        let path = root.join("ns").join(id).join("runtime.log");
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        text.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                assert_eq!(validate_runtime_record(&v), Ok(()), "{l}");
                v["msg"].as_str().expect("msg").to_string()
            })
            .collect()
    }

    fn line(msg: &str) -> RuntimeRecord {
        RuntimeRecord::new(Level::Info, "shim", msg).with_pid(1)
    }

    fn no_trouble(t: Trouble) {
        panic!("unexpected {t:?}");
    }

    #[test]
    fn a_line_about_a_container_goes_only_to_its_runtime_log() {
        let root = tempfile::tempdir().expect("tempdir");
        let routes = Routes::new();
        routes.attach("a", sink(root.path(), "a"));
        routes.attach("b", sink(root.path(), "b"));
        routes.write(&line("about a"), Some("a"), no_trouble);
        routes.write(&line("about b"), Some("b"), no_trouble);
        assert_eq!(messages(root.path(), "a"), ["about a"]);
        assert_eq!(messages(root.path(), "b"), ["about b"]);
    }

    #[test]
    fn a_line_about_no_container_goes_to_every_served_one() {
        let root = tempfile::tempdir().expect("tempdir");
        let routes = Routes::new();
        routes.write(&line("before any"), None, no_trouble);
        routes.attach("a", sink(root.path(), "a"));
        routes.attach("b", sink(root.path(), "b"));
        routes.write(&line("shim-wide"), None, no_trouble);
        assert_eq!(messages(root.path(), "a"), ["shim-wide"]);
        assert_eq!(messages(root.path(), "b"), ["shim-wide"]);
    }

    #[test]
    fn a_detached_container_gets_nothing_more() {
        let root = tempfile::tempdir().expect("tempdir");
        let routes = Routes::new();
        routes.attach("a", sink(root.path(), "a"));
        routes.attach("b", sink(root.path(), "b"));
        routes.write(&line("one"), None, no_trouble);
        routes.detach("a");
        routes.write(&line("two"), None, no_trouble);
        routes.write(&line("late news about a"), Some("a"), no_trouble);
        assert_eq!(messages(root.path(), "a"), ["one"]);
        assert_eq!(messages(root.path(), "b"), ["one", "two"]);
        assert_eq!(routes.containers(), ["b"]);
    }

    #[test]
    fn a_line_about_an_unknown_container_goes_nowhere() {
        let root = tempfile::tempdir().expect("tempdir");
        let routes = Routes::new();
        routes.attach("a", sink(root.path(), "a"));
        routes.write(&line("about c"), Some("c"), no_trouble);
        assert!(messages(root.path(), "a").is_empty());
        assert!(!root.path().join("ns/c").exists());
    }

    #[test]
    fn attaching_again_replaces_the_sink() {
        let one = tempfile::tempdir().expect("tempdir");
        let two = tempfile::tempdir().expect("tempdir");
        let routes = Routes::new();
        routes.attach("a", sink(one.path(), "a"));
        routes.attach("a", sink(two.path(), "a"));
        routes.write(&line("x"), Some("a"), no_trouble);
        assert_eq!(routes.containers(), ["a"]);
        assert!(messages(one.path(), "a").is_empty());
        assert_eq!(messages(two.path(), "a"), ["x"]);
    }

    /// A runtime.log on a disk that fills up and frees again.
    #[derive(Default)]
    struct Disk {
        full: std::sync::atomic::AtomicBool,
        lines: Mutex<Vec<String>>,
    }

    impl Disk {
        fn set_full(&self, full: bool) {
            self.full.store(full, std::sync::atomic::Ordering::SeqCst);
        }
    }

    impl Append for Disk {
        fn append(&self, record: &RuntimeRecord) -> Result<(), SinkError> {
            if self.full.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(SinkError::Io {
                    op: "append to",
                    path: "/full/ns/bad/runtime.log".into(),
                    source: std::io::Error::from_raw_os_error(libc::ENOSPC),
                });
            }
            if let Ok(mut lines) = self.lines.lock() {
                lines.push(record.msg.clone());
            }
            Ok(())
        }
    }

    #[test]
    fn a_failing_runtime_log_is_reported_once_until_it_recovers() {
        let routes: Routes<Disk> = Routes::new();
        let bad = Arc::new(Disk::default());
        let good = Arc::new(Disk::default());
        routes.attach("bad", bad.clone());
        routes.attach("good", good.clone());
        bad.set_full(true);
        let mut seen = Vec::new();
        routes.write(&line("1"), None, |t| seen.push(t));
        routes.write(&line("2"), Some("bad"), |t| seen.push(t));
        routes.write(&line("3"), None, |t| seen.push(t));
        assert_eq!(seen.len(), 1, "{seen:?}");
        match &seen[0] {
            Trouble::Failed { container, error } => {
                assert_eq!(container, "bad");
                let text = error.to_string();
                assert!(text.contains("/full/ns/bad/runtime.log"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        bad.set_full(false);
        routes.write(&line("4"), None, |t| seen.push(t));
        assert!(
            matches!(&seen[1..], [Trouble::Recovered { container }] if container == "bad"),
            "{seen:?}"
        );
        let got = |d: &Disk| d.lines.lock().map(|l| l.clone()).unwrap_or_default();
        assert_eq!(got(&good), ["1", "3", "4"]);
        assert_eq!(got(&bad), ["4"]);
    }
}
