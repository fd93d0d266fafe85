//! End-to-end harness for the Scribe shim.
//!
//! Each test starts its own private containerd ([`Containerd::start`]) with its
//! own root, state, sockets and namespace, imports the offline busybox image
//! ([`IMAGE`], built by `test/images/build-image.sh`) and drives it with `ctr`.
//!
//! Environment:
//! - `SCRIBE_E2E_RUNTIME`: runtime under test (default `io.containerd.scribe.v2`);
//!   `io.containerd.runc.v2` validates the tests against containerd's Go shim.
//! - `SCRIBE_SHIM_BIN`: the shim binary (default
//!   `<workspace>/target/release/containerd-shim-scribe-v2`); its directory goes
//!   first on containerd's PATH. Required when the runtime is the Scribe one.
//! - `SCRIBE_CONTAINERD_DIR`: directory with `containerd` and `ctr` (default `/usr/bin`),
//!   e.g. `.cache/containerd/2.1/usr/bin` after `test/fetch-containerd.sh`.
//! - `SCRIBE_E2E_IMAGE_TAR`: use this image tarball instead of building one.
//! - `SCRIBE_E2E_KEEP=1`: keep the temp dir of each instance (for debugging).
//! - `SCRIBE_E2E_CONTAINERD_SOCKET`: use the containerd already serving this grpc socket (e.g.
//!   `/run/containerd/containerd.sock` of containerd.service) instead of starting a private one;
//!   each test works in its own namespace there and removes only what it made. Its root and
//!   state: `SCRIBE_E2E_CONTAINERD_ROOT` / `_STATE` (default `/var/lib/containerd`,
//!   `/run/containerd`). Used by the VM stage (test/vm).
//! - `SCRIBE_E2E_PAUSE_TAR`: use this pod-sandbox image tarball instead of building one.

pub mod bigstream;
pub mod binlogger;
pub mod cmd;
pub mod containerd;
pub mod cri;
pub mod cri_client;
pub mod dockerd;
pub mod events;
pub mod fluentd;
pub mod localfiles;
pub mod plugin;
pub mod procs;
pub mod records;
pub mod scribe_cli;
pub mod tasks_api;
pub mod terminal;
pub mod tmpfs;

pub use cmd::{CmdOutput, Spawned};
pub use containerd::{Containerd, ContainerdBuilder, TaskInfo};
pub use events::{parse_event_line, Event, EventStream};
pub use procs::{mountinfo_lines_containing, mounts_under, pid_alive, wait_until};
pub use tasks_api::TasksApi;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

/// The test image, as `ctr images import` names it.
pub const IMAGE: &str = "docker.io/library/scribe-busybox:latest";
/// The Scribe runtime name.
pub const SCRIBE_RUNTIME: &str = "io.containerd.scribe.v2";
/// containerd's own Go shim.
pub const RUNC_RUNTIME: &str = "io.containerd.runc.v2";
/// Binary containerd runs for the Scribe runtime.
pub const SCRIBE_SHIM_NAME: &str = "containerd-shim-scribe-v2";

/// The workspace root (parent of `test/`).
pub fn workspace_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

/// Runtime under test: `SCRIBE_E2E_RUNTIME`, default `io.containerd.scribe.v2`.
pub fn runtime() -> String {
    std::env::var("SCRIBE_E2E_RUNTIME")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| SCRIBE_RUNTIME.into())
}

/// Is the runtime under test the Scribe shim?
pub fn testing_scribe() -> bool {
    runtime() == SCRIBE_RUNTIME
}

/// Directory holding `containerd` and `ctr`: `SCRIBE_CONTAINERD_DIR`, default `/usr/bin`.
pub fn containerd_dir() -> PathBuf {
    std::env::var_os("SCRIBE_CONTAINERD_DIR")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| "/usr/bin".into())
}

/// The Scribe shim binary: `SCRIBE_SHIM_BIN`, default `<workspace>/target/release/containerd-shim-scribe-v2`.
pub fn shim_bin() -> PathBuf {
    std::env::var_os("SCRIBE_SHIM_BIN")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_dir()
                .join("target/release")
                .join(SCRIBE_SHIM_NAME)
        })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|f| f.is_file())
    })
}

/// Panic with a clear message if something this suite needs is missing.
/// Never skips: a missing environment is a failure.
pub fn check_environment() {
    let mut problems = Vec::new();
    if unsafe { libc::geteuid() } != 0 {
        problems.push(
            "the e2e tests must run as root (they start containerd and containers)".to_string(),
        );
    }
    let dir = containerd_dir();
    for b in ["containerd", "ctr"] {
        if !dir.join(b).is_file() {
            problems.push(format!(
                "{} not found (SCRIBE_CONTAINERD_DIR={}; apt-get install containerd, or run test/fetch-containerd.sh)",
                dir.join(b).display(),
                dir.display()
            ));
        }
    }
    if which("runc").is_none() && !Path::new("/usr/sbin/runc").is_file() {
        problems.push("runc not found on PATH (apt-get install runc)".into());
    }
    let shim = shim_bin();
    if testing_scribe() && !shim.is_file() {
        problems.push(format!(
            "Scribe shim binary {} does not exist: build it (cargo build --release -p containerd-shim-scribe-v2) \
             or set SCRIBE_SHIM_BIN, or set SCRIBE_E2E_RUNTIME=io.containerd.runc.v2 to validate the tests against the Go shim",
            shim.display()
        ));
    }
    if std::env::var_os("SCRIBE_E2E_IMAGE_TAR").is_none()
        && !Path::new("/usr/bin/busybox").is_file()
    {
        problems.push("/usr/bin/busybox not found: apt-get install busybox-static (needed to build the test image)".into());
    }
    assert!(
        problems.is_empty(),
        "e2e environment is not usable:\n  - {}",
        problems.join("\n  - ")
    );
}

/// Build (once per test process) the busybox image tarball and return its path:
/// `<workspace>/.cache/scribe-busybox.tar`, or `SCRIBE_E2E_IMAGE_TAR` if set.
/// A lock file serialises concurrent test processes; the builder writes atomically.
pub fn image_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        if let Some(p) = std::env::var_os("SCRIBE_E2E_IMAGE_TAR").filter(|s| !s.is_empty()) {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "SCRIBE_E2E_IMAGE_TAR={} does not exist",
                p.display()
            );
            return p;
        }
        let cache = workspace_dir().join(".cache");
        std::fs::create_dir_all(&cache).expect("create .cache");
        let out = cache.join("scribe-busybox.tar");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cache.join("scribe-busybox.lock"))
            .expect("open image lock");
        use std::os::fd::AsRawFd;
        unsafe {
            libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
        }
        let script = workspace_dir().join("test/images/build-image.sh");
        let mut c = std::process::Command::new("bash");
        c.arg(&script).arg(&out);
        let o = cmd::run(c, Duration::from_secs(120));
        unsafe {
            libc::flock(lock.as_raw_fd(), libc::LOCK_UN);
        }
        assert!(o.success(), "building the test image failed: {o}");
        out
    })
    .clone()
}

/// The running containerd to use instead of a private one: `SCRIBE_E2E_CONTAINERD_SOCKET`.
pub fn external_containerd_socket() -> Option<PathBuf> {
    std::env::var_os("SCRIBE_E2E_CONTAINERD_SOCKET")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}

/// The path in environment variable `var`, else `default`.
pub fn env_path(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| default.into())
}

/// A unique, valid container id with `prefix`.
pub fn unique_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
