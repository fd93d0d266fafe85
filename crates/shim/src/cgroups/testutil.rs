//! Test fixtures: scratch directories of fake cgroup files, and real v1 cgroups on the host
//! (created under `/sys/fs/cgroup/<controller>/scribe-*-<pid>-<n>`, removed on drop).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static SEQ: AtomicUsize = AtomicUsize::new(0);

fn unique(tag: &str) -> String {
    format!(
        "scribe-{tag}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory standing in for a cgroup directory of plain files.
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates an empty scratch directory.
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&p).expect("create scratch dir");
        TempDir(p)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Rewrites a file in place (truncate + one write: what inotify sees as IN_MODIFY).
    pub fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join(name), text).expect("write fake cgroup file");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A real v1 cgroup, in one or more controller hierarchies, removed on drop.
pub struct TestCgroup {
    dirs: Vec<(String, PathBuf)>,
}

impl TestCgroup {
    /// Creates the cgroup in each of `controllers`; None (test skipped) when the host has no v1
    /// hierarchy for one of them or we may not create cgroups.
    pub fn create(tag: &str, controllers: &[&str]) -> Option<TestCgroup> {
        let name = unique(tag);
        let mut cg = TestCgroup { dirs: Vec::new() };
        for c in controllers {
            let root = Path::new("/sys/fs/cgroup").join(c);
            if !root.join("tasks").exists() {
                eprintln!("skipping: no v1 {c} hierarchy at {}", root.display());
                return None;
            }
            let dir = root.join(&name);
            if let Err(e) = std::fs::create_dir(&dir) {
                eprintln!("skipping: cannot create {}: {e}", dir.display());
                return None;
            }
            cg.dirs.push((c.to_string(), dir));
        }
        Some(cg)
    }

    /// The directory in `controller`'s hierarchy.
    pub fn dir(&self, controller: &str) -> PathBuf {
        self.dirs
            .iter()
            .find(|(c, _)| c == controller)
            .map(|(_, d)| d.clone())
            .expect("controller was created")
    }

    /// Writes a control file of `controller`.
    pub fn set(&self, controller: &str, file: &str, value: &str) {
        let p = self.dir(controller).join(file);
        std::fs::write(&p, value).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
    }

    /// Moves `pid` into the cgroup in every hierarchy.
    pub fn add(&self, pid: u32) {
        for (c, _) in &self.dirs {
            self.set(c, "cgroup.procs", &pid.to_string());
        }
    }

    /// Removes the cgroup now, first killing what is left in it (the hog's `head`/`tr`
    /// helpers outlive it for a moment); later drops do nothing.
    pub fn remove(&mut self) {
        for (_, d) in self.dirs.drain(..) {
            remove_dir(&d).unwrap_or_else(|e| panic!("rmdir {}: {e}", d.display()));
        }
    }
}

/// SIGKILLs the processes in a test cgroup (all started by the test) and retries rmdir until
/// they are gone, for up to 5 s.
fn remove_dir(dir: &Path) -> std::io::Result<()> {
    for _ in 0..100 {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        match std::fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            other => return other,
        }
    }
    std::fs::remove_dir(dir)
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        for (_, d) in &self.dirs {
            let _ = remove_dir(d);
        }
    }
}

/// A child process that is killed and reaped on drop (so its cgroup can be removed).
pub struct Kid(pub Child);

impl Kid {
    /// Starts `sh -c script` with a piped stdin: the script should `read` before doing its work,
    /// so the test can move it into a cgroup first and then `go`.
    pub fn sh(script: &str) -> Kid {
        let child = Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh");
        Kid(child)
    }

    /// Lets the script past its `read`.
    pub fn go(&mut self) {
        let mut stdin = self.0.stdin.take().expect("stdin piped");
        stdin.write_all(b"go\n").expect("write to child");
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
