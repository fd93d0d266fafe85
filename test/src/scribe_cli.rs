//! Runs the `scribe` reader command (crates/cli) the way a user on the node does, for the tests
//! that compare what it prints with what the shim wrote (tests/reader.rs, tests/dual_logging.rs).
//!
//! `SCRIBE_CLI_BIN` names the binary (default: next to the shim, where `make build` puts it).

use std::path::PathBuf;
use std::process::Command;

use crate::containerd::Containerd;
use crate::records::LogSetup;

/// The `scribe` binary; panics naming it when it is missing (the tests need it built).
pub fn scribe_bin() -> PathBuf {
    let bin = std::env::var_os("SCRIBE_CLI_BIN")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::shim_bin().with_file_name("scribe"));
    assert!(
        bin.is_file(),
        "{} is missing: run `make build` (or set SCRIBE_CLI_BIN)",
        bin.display()
    );
    bin
}

/// What one `scribe` run printed, and how it ended.
#[derive(Debug)]
pub struct ScribeOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// `scribe logs -n <namespace> --log-root <logs.root> <args...>`; stdout and stderr must be UTF-8.
pub fn scribe_logs(c: &Containerd, logs: &LogSetup, args: &[&str]) -> ScribeOutput {
    let root = logs.root.to_str().expect("utf-8 log root");
    let o = Command::new(scribe_bin())
        .args(["logs", "-n", c.namespace(), "--log-root", root])
        .args(args)
        .output()
        .expect("run scribe");
    ScribeOutput {
        code: o.status.code(),
        stdout: String::from_utf8(o.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(o.stderr).expect("utf-8 stderr"),
    }
}

/// `scribe plugin` serving one test on its own socket and log root: started and waited for
/// until its socket exists; stopped by pid (SIGTERM) on drop, its output printed when the test
/// failed, its socket removed, and its log root too unless `SCRIBE_E2E_KEEP` is set.
pub struct ScribePlugin {
    /// The unix socket it serves (dockerd's `/run/docker/plugins/<name>.sock` or a
    /// `PluginDirs` directory's).
    pub socket: std::path::PathBuf,
    /// Its `--log-root`.
    pub root: std::path::PathBuf,
    proc: Option<crate::cmd::Spawned>,
}

impl ScribePlugin {
    /// Starts `scribe plugin --socket socket --log-root root` (panics when the socket does not
    /// appear within 10 s).
    pub fn start(socket: std::path::PathBuf, root: std::path::PathBuf) -> ScribePlugin {
        let mut c = std::process::Command::new(scribe_bin());
        c.arg("plugin")
            .arg("--socket")
            .arg(&socket)
            .arg("--log-root")
            .arg(&root);
        let proc = crate::cmd::Spawned::spawn(c);
        assert!(
            crate::procs::wait_until(std::time::Duration::from_secs(10), || socket.exists()),
            "scribe plugin did not create {}",
            socket.display()
        );
        ScribePlugin {
            socket,
            root,
            proc: Some(proc),
        }
    }

    /// The directory of container `id` (docker's full id) under the plugin's log root.
    pub fn log_dir(&self, id: &str) -> std::path::PathBuf {
        self.root.join("docker").join(id)
    }

    /// SIGTERM and wait: the plugin finishes and exits; returns what it printed (panics if it
    /// was stopped already or does not exit within 30 s).
    pub fn stop(&mut self) -> crate::cmd::CmdOutput {
        let p = self.proc.take().expect("scribe plugin is running");
        p.signal(libc::SIGTERM);
        let o = p.wait_timeout(std::time::Duration::from_secs(30));
        assert!(!o.timed_out, "scribe plugin did not exit on SIGTERM: {o}");
        o
    }
}

impl Drop for ScribePlugin {
    fn drop(&mut self) {
        if let Some(p) = self.proc.take() {
            p.signal(libc::SIGTERM);
            let o = p.wait_timeout(std::time::Duration::from_secs(30));
            if std::thread::panicking() {
                eprintln!("scribe plugin output: {o}");
            }
        }
        let _ = std::fs::remove_file(&self.socket);
        if std::env::var_os("SCRIBE_E2E_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}
