//! Driving `scribe-test-logger` (`src/bin/scribe-test-logger.rs`), the suite's own logging
//! binary for `binary://` URIs, and reading what it wrote.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The test logger binary and the directory its files go to.
#[derive(Debug, Clone)]
pub struct TestLogger {
    bin: PathBuf,
    dir: PathBuf,
}

impl TestLogger {
    /// `bin` is the built logger: pass `env!("CARGO_BIN_EXE_scribe-test-logger")` from a test
    /// of this crate (cargo builds it for them). Its files go to `dir` (created).
    #[track_caller]
    pub fn new(bin: &str, dir: impl Into<PathBuf>) -> TestLogger {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "the test logging binary {} does not exist (cargo builds it with the scribe-e2e tests)",
            bin.display()
        );
        let dir = dir.into();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        TestLogger { bin, dir }
    }

    /// `binary://<bin>?dir=<dir>` plus `extra` query pairs (values must need no escaping).
    pub fn uri(&self, extra: &[(&str, &str)]) -> String {
        let mut u = format!("binary://{}?dir={}", self.bin.display(), self.dir.display());
        for (k, v) in extra {
            u.push_str(&format!("&{k}={v}"));
        }
        u
    }

    /// Where the logger's files go.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<dir>/<ns>_<id>.<ext>`.
    pub fn file(&self, ns: &str, id: &str, ext: &str) -> PathBuf {
        self.dir.join(format!("{ns}_{id}.{ext}"))
    }

    /// Everything the logger read from the container's stdout (fd 3).
    #[track_caller]
    pub fn stdout(&self, ns: &str, id: &str) -> Vec<u8> {
        read(&self.file(ns, id, "stdout"))
    }

    /// Everything the logger read from the container's stderr (fd 4).
    #[track_caller]
    pub fn stderr(&self, ns: &str, id: &str) -> Vec<u8> {
        read(&self.file(ns, id, "stderr"))
    }

    /// What the logger saw when it started (`pid`, `args`, `env`, `fds`), once it has written
    /// it (waits up to `timeout`).
    #[track_caller]
    pub fn start_info(&self, ns: &str, id: &str, timeout: Duration) -> Value {
        let path = self.file(ns, id, "start.json");
        assert!(
            crate::wait_until(timeout, || path.exists()),
            "the logger for {id} did not start within {timeout:?}: no {}",
            path.display()
        );
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display()))
    }

    /// The logger's pid, from its start info.
    #[track_caller]
    pub fn pid(&self, ns: &str, id: &str, timeout: Duration) -> i32 {
        let info = self.start_info(ns, id, timeout);
        info["pid"]
            .as_i64()
            .and_then(|p| i32::try_from(p).ok())
            .unwrap_or_else(|| panic!("no pid in the logger's start info: {info}"))
    }

    /// How the logger ended (`eof`, `sigterm`, `error: ...`), or `None` if it has not within
    /// `timeout`.
    pub fn wait_exit(&self, ns: &str, id: &str, timeout: Duration) -> Option<String> {
        let path = self.file(ns, id, "exit");
        crate::wait_until(timeout, || path.exists());
        std::fs::read_to_string(&path).ok()
    }
}

#[track_caller]
fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}
