//! Driving `scribe-test-plugin` (`src/bin/scribe-test-plugin.rs`), the suite's own Docker
//! logging plugin, and reading what it recorded: the calls it was sent and every entry of every
//! container's FIFO. It can be stalled, killed (SIGKILL: a real crash) and restarted on the same
//! socket, which is what the host-side tests of Scribe's plugin driver need.

use serde_json::Value;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs;

/// One entry the plugin read from a FIFO.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEntry {
    /// `stdout` or `stderr`.
    pub source: String,
    /// The entry's time, Unix nanoseconds.
    pub time_nano: i64,
    /// The text (for non-UTF-8 lines: their base64, as the plugin wrote it).
    pub line: String,
    /// Docker's `Partial` flag.
    pub partial: bool,
    /// The partial metadata (id, ordinal, last), when the entry has one.
    pub partial_meta: Option<(String, i64, bool)>,
}

/// A running (or stopped, restartable) test plugin.
pub struct TestPlugin {
    bin: PathBuf,
    socket: PathBuf,
    out: PathBuf,
    child: Option<Child>,
}

impl TestPlugin {
    /// Starts `bin` (pass `env!("CARGO_BIN_EXE_scribe-test-plugin")`) serving `socket`,
    /// recording into `out` (created), with `args` (`--stalled`, `--discard`,
    /// `--crash-after-frames N`); returns once the socket accepts connections.
    #[track_caller]
    pub fn start(
        bin: &str,
        socket: impl Into<PathBuf>,
        out: impl Into<PathBuf>,
        args: &[&str],
    ) -> TestPlugin {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "the test plugin {} does not exist (cargo builds it with the scribe-e2e tests)",
            bin.display()
        );
        let mut p = TestPlugin {
            bin,
            socket: socket.into(),
            out: out.into(),
            child: None,
        };
        p.restart(args);
        p
    }

    /// Starts it again on the same socket and directory (after [`TestPlugin::kill`], or
    /// killing the running one first).
    #[track_caller]
    pub fn restart(&mut self, args: &[&str]) {
        self.kill();
        if let Some(dir) = self.socket.parent() {
            std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        }
        std::fs::create_dir_all(&self.out)
            .unwrap_or_else(|e| panic!("mkdir {}: {e}", self.out.display()));
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.out.join("plugin.log"))
            .unwrap_or_else(|e| panic!("plugin.log in {}: {e}", self.out.display()));
        let log2 = log.try_clone().expect("dup plugin.log");
        // A socket left by the one before must not count as "up".
        let _ = std::fs::remove_file(&self.socket);
        let child = Command::new(&self.bin)
            .arg("--socket")
            .arg(&self.socket)
            .arg("--out")
            .arg(&self.out)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", self.bin.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.socket.exists() {
            if let Some(st) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!("the test plugin exited at start ({st}): {}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the test plugin did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Its pid (-1 when not running).
    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(-1)
    }

    /// The socket it serves.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Where it records.
    pub fn out_dir(&self) -> &Path {
        &self.out
    }

    /// Stops reading FIFOs (SIGUSR1).
    pub fn stall(&self) {
        procs::kill(self.pid(), libc::SIGUSR1);
    }

    /// Reads FIFOs again (SIGUSR2).
    pub fn resume(&self) {
        procs::kill(self.pid(), libc::SIGUSR2);
    }

    /// Whether it has exited (e.g. after `--crash-after-frames`).
    pub fn exited(&mut self) -> bool {
        self.child
            .as_mut()
            .is_none_or(|c| c.try_wait().ok().flatten().is_some())
    }

    /// SIGKILL (a crash: nothing is cleaned up, the socket file stays) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            procs::kill(c.id() as i32, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Its own log (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.out.join("plugin.log")).unwrap_or_default()
    }

    /// Every call it was sent, oldest first (`method`, `file`, `container_id`, `time_nano`, ...).
    pub fn calls(&self) -> Vec<Value> {
        json_lines(&self.out.join("calls.jsonl"))
    }

    /// The calls of `method` for container `id` (StopLogging records carry only the file: they
    /// are matched through the StartLogging of the same file).
    pub fn calls_for(&self, id: &str) -> Vec<Value> {
        let calls = self.calls();
        let files: Vec<String> = calls
            .iter()
            .filter(|c| c["method"] == "StartLogging" && c["container_id"] == id)
            .filter_map(|c| c["file"].as_str().map(str::to_owned))
            .collect();
        calls
            .into_iter()
            .filter(|c| {
                c["container_id"] == id
                    || c["file"]
                        .as_str()
                        .is_some_and(|f| files.iter().any(|x| x == f))
            })
            .collect()
    }

    /// How many calls of `method` it recorded.
    pub fn count(&self, method: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c["method"] == method)
            .count()
    }

    /// Every entry it read for container `id`, in the order read.
    #[track_caller]
    pub fn entries(&self, id: &str) -> Vec<PluginEntry> {
        json_lines(&self.out.join(format!("{id}.jsonl")))
            .iter()
            .map(|v| PluginEntry {
                source: v["source"].as_str().unwrap_or("").to_owned(),
                time_nano: v["time_nano"].as_i64().unwrap_or(0),
                line: v["line"]
                    .as_str()
                    .or_else(|| v["line_b64"].as_str())
                    .unwrap_or("")
                    .to_owned(),
                partial: v["partial"].as_bool().unwrap_or(false),
                partial_meta: v["partial_id"].as_str().map(|id| {
                    (
                        id.to_owned(),
                        v["partial_ordinal"].as_i64().unwrap_or(0),
                        v["partial_last"].as_bool().unwrap_or(false),
                    )
                }),
            })
            .collect()
    }

    /// The lines of container `id` from `source`, partial pieces joined into whole lines.
    pub fn lines(&self, id: &str, source: &str) -> Vec<String> {
        join_partials(self.entries(id).iter().filter(|e| e.source == source))
    }

    /// Waits up to `timeout` for `f` over the entries of `id`.
    pub fn wait_entries(
        &self,
        id: &str,
        timeout: Duration,
        mut f: impl FnMut(&[PluginEntry]) -> bool,
    ) -> bool {
        procs::wait_until(timeout, || f(&self.entries(id)))
    }
}

/// Whole lines from entries: a partial piece continues until the one marked last (or, without
/// metadata, until an entry that is not partial).
pub fn join_partials<'a>(entries: impl Iterator<Item = &'a PluginEntry>) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for e in entries {
        cur.push_str(&e.line);
        let ends = match &e.partial_meta {
            Some((_, _, last)) => *last,
            None => !e.partial,
        };
        if ends {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// One JSON value a line; a missing file is no lines; a line cut at the end (being written)
/// is left out.
fn json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    complete
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("{}: bad line {l:?}: {e}", path.display()))
        })
        .collect()
}

impl Drop for TestPlugin {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "scribe-e2e: test failed; test plugin {} log:\n{}",
                self.out.display(),
                self.log()
            );
        }
        self.kill();
        let _ = std::fs::remove_file(&self.socket);
    }
}
