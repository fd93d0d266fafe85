//! `ctr events` capture and parsing.
//!
//! ctr prints one event a line: `<date> <time> <zone> [UTC] <namespace> <topic> <json>`
//! (1.6, 1.7 and 2.1 agree on that shape; fields inside the JSON differ, e.g.
//! `exited_at` is an RFC 3339 string before 2.0 and `{"seconds","nanos"}` in 2.x).

use crate::cmd::Spawned;
use serde_json::Value;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// One event as printed by `ctr events`.
#[derive(Debug, Clone)]
pub struct Event {
    /// The timestamp text ctr printed (as is).
    pub time: String,
    pub namespace: String,
    /// e.g. `/tasks/exit`.
    pub topic: String,
    /// The event body (Null when ctr printed something that is not JSON).
    pub payload: Value,
    pub raw: String,
}

impl Event {
    /// `container_id` of the payload (or `id` for container events).
    pub fn container_id(&self) -> Option<&str> {
        self.payload
            .get("container_id")
            .or_else(|| self.payload.get("id"))
            .and_then(|v| v.as_str())
    }

    pub fn pid(&self) -> Option<u64> {
        self.payload.get("pid").and_then(|v| v.as_u64())
    }

    /// `exit_status` (absent in the JSON when 0, as protobuf/JSON omits zero values).
    pub fn exit_status(&self) -> Option<u64> {
        match self.payload.get("exit_status") {
            Some(v) => v.as_u64(),
            None if self.topic == "/tasks/exit" || self.topic == "/tasks/delete" => Some(0),
            None => None,
        }
    }

    /// For /tasks/exit: the process id (`id`), which is the container id for the init.
    pub fn exec_id(&self) -> Option<&str> {
        self.payload.get("id").and_then(|v| v.as_str())
    }
}

/// Parse one line of `ctr events` output. Returns None for lines that are not events.
pub fn parse_event_line(line: &str) -> Option<Event> {
    let line = line.trim_end();
    // Find the topic: the first whitespace-separated token starting with '/'
    // that is followed by a JSON object (or the end of line).
    let mut idx = 0;
    let bytes = line.as_bytes();
    let mut tokens: Vec<(usize, usize)> = Vec::new();
    while idx < bytes.len() {
        while idx < bytes.len() && bytes[idx].is_ascii_whitespace() {
            idx += 1;
        }
        let start = idx;
        while idx < bytes.len() && !bytes[idx].is_ascii_whitespace() {
            idx += 1;
        }
        if start < idx {
            tokens.push((start, idx));
        }
    }
    for (i, &(s, e)) in tokens.iter().enumerate() {
        let tok = &line[s..e];
        if tok.starts_with('/')
            && tok.len() > 1
            && tok[1..]
                .chars()
                .next()
                .map(|c| c.is_ascii_alphabetic())
                .unwrap_or(false)
        {
            let rest = line[e..].trim();
            if !rest.is_empty() && !rest.starts_with('{') {
                continue;
            }
            let payload = if rest.is_empty() {
                Value::Null
            } else {
                serde_json::from_str(rest).unwrap_or(Value::Null)
            };
            let namespace = if i > 0 {
                line[tokens[i - 1].0..tokens[i - 1].1].to_string()
            } else {
                String::new()
            };
            let time = if i > 1 {
                line[..tokens[i - 2].1].to_string()
            } else {
                String::new()
            };
            return Some(Event {
                time,
                namespace,
                topic: tok.to_string(),
                payload,
                raw: line.to_string(),
            });
        }
    }
    None
}

struct Shared {
    events: Mutex<(Vec<Event>, Vec<String>, bool)>, // events, non-event lines, closed
    cv: Condvar,
}

/// A running `ctr events` whose output is parsed as it comes. Killed on drop.
pub struct EventStream {
    shared: Arc<Shared>,
    proc: Option<Spawned>,
    namespace: String,
}

impl EventStream {
    pub(crate) fn new(mut cmd: std::process::Command, namespace: &str) -> EventStream {
        use std::io::BufRead;
        let shared = Arc::new(Shared {
            events: Mutex::new((vec![], vec![], false)),
            cv: Condvar::new(),
        });
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        // Spawned captures both pipes itself; here we need stdout line by line, so
        // spawn directly and hand stderr to a collector.
        let cmdline = crate::cmd::cmdline_of(&cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{cmdline}`: {e}"));
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let sh = shared.clone();
        std::thread::spawn(move || {
            let r = std::io::BufReader::new(stdout);
            for line in r.lines() {
                let Ok(line) = line else { break };
                let mut g = sh.events.lock().unwrap();
                match parse_event_line(&line) {
                    Some(ev) => g.0.push(ev),
                    None => g.1.push(line),
                }
                sh.cv.notify_all();
            }
            sh.events.lock().unwrap().2 = true;
            sh.cv.notify_all();
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            let r = std::io::BufReader::new(stderr);
            for line in r.lines() {
                let Ok(line) = line else { break };
                sh.events.lock().unwrap().1.push(format!("stderr: {line}"));
            }
        });
        EventStream {
            shared,
            proc: Some(Spawned::from_child(cmdline, child)),
            namespace: namespace.to_string(),
        }
    }

    /// All events seen so far (of every namespace).
    pub fn all(&self) -> Vec<Event> {
        self.shared.events.lock().unwrap().0.clone()
    }

    /// Events seen so far in this instance's namespace for container `id`
    /// (task events and container events), in arrival order.
    pub fn for_container(&self, id: &str) -> Vec<Event> {
        self.all()
            .into_iter()
            .filter(|e| {
                (e.namespace == self.namespace || e.namespace.is_empty())
                    && e.container_id() == Some(id)
            })
            .collect()
    }

    /// Topics of `for_container(id)` restricted to `/tasks/...`.
    pub fn task_topics(&self, id: &str) -> Vec<String> {
        self.for_container(id)
            .into_iter()
            .filter(|e| e.topic.starts_with("/tasks/"))
            .map(|e| e.topic)
            .collect()
    }

    /// Lines ctr printed that were not events (for diagnostics).
    pub fn other_lines(&self) -> Vec<String> {
        self.shared.events.lock().unwrap().1.clone()
    }

    /// Has `ctr events` exited (e.g. containerd stopped)?
    pub fn closed(&self) -> bool {
        self.shared.events.lock().unwrap().2
    }

    /// Wait for the first event (counting those already seen) matching `pred`.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        let mut g = self.shared.events.lock().unwrap();
        loop {
            if let Some(e) = g.0.iter().find(|e| pred(e)) {
                return Some(e.clone());
            }
            let now = Instant::now();
            if now >= deadline || g.2 {
                return None;
            }
            g = self.shared.cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Wait for `topic` of container `id` in this namespace.
    pub fn wait_topic(&self, id: &str, topic: &str, timeout: Duration) -> Option<Event> {
        let ns = self.namespace.clone();
        self.wait_for(timeout, |e| {
            e.topic == topic
                && e.container_id() == Some(id)
                && (e.namespace == ns || e.namespace.is_empty())
        })
    }

    /// Wait for the init's /tasks/exit of container `id` and return its exit status.
    pub fn wait_exit(&self, id: &str, timeout: Duration) -> Option<u64> {
        let ns = self.namespace.clone();
        self.wait_for(timeout, |e| {
            e.topic == "/tasks/exit"
                && e.container_id() == Some(id)
                && e.exec_id().map(|x| x == id).unwrap_or(true)
                && (e.namespace == ns || e.namespace.is_empty())
        })
        .and_then(|e| e.exit_status())
    }

    /// Human-readable dump of everything seen, for assertion messages.
    pub fn dump(&self) -> String {
        let g = self.shared.events.lock().unwrap();
        let mut s = String::new();
        for e in &g.0 {
            s.push_str(&e.raw);
            s.push('\n');
        }
        for l in &g.1 {
            s.push_str("(other) ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    /// Stop `ctr events`.
    pub fn stop(&mut self) {
        self.proc.take();
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_16_line() {
        let l = r#"2026-11-23 14:14:12.313063113 +0000 UTC t1 /tasks/exit {"container_id":"x3","id":"x3","pid":6593,"exit_status":143,"exited_at":"2026-11-23T14:14:12.313038416Z"}"#;
        let e = parse_event_line(l).unwrap();
        assert_eq!(e.topic, "/tasks/exit");
        assert_eq!(e.namespace, "t1");
        assert_eq!(e.container_id(), Some("x3"));
        assert_eq!(e.pid(), Some(6593));
        assert_eq!(e.exit_status(), Some(143));
        assert_eq!(e.time, "2026-11-23 14:14:12.313063113 +0000 UTC");
    }

    #[test]
    fn parses_21_line_and_zero_status() {
        let l = r#"2026-11-23 14:16:03.465773861 +0000 UTC t1 /tasks/exit {"container_id":"x1","id":"x1","pid":8379,"exited_at":{"seconds":1795443363,"nanos":465708674}}"#;
        let e = parse_event_line(l).unwrap();
        assert_eq!(e.exit_status(), Some(0));
        assert_eq!(e.pid(), Some(8379));
    }

    #[test]
    fn ignores_noise() {
        assert!(parse_event_line("time=\"x\" level=warning msg=\"a /b c\"").is_none());
        assert!(parse_event_line("").is_none());
    }
}
