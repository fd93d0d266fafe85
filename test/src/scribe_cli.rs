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
