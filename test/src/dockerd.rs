//! A private dockerd (Debian's `docker.io`, dockerd 20.10) as the reference for Docker's own
//! file formats: its own data root, exec root (and the containerd it starts there), socket,
//! pid file and config, no bridge, no iptables, the `vfs` storage driver (works on any backing
//! file system, overlay included) and the `cgroupfs` cgroup driver (no systemd needed).
//! Stopped by pid (SIGTERM, then SIGKILL to it and to what it started) when dropped.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::cmd::{self, CmdOutput};
use crate::procs;

/// The image [`Dockerd::import_busybox`] creates.
pub const DOCKER_IMAGE: &str = "scribe-busybox-docker:latest";

/// dockerd's binary.
pub const DOCKERD: &str = "/usr/sbin/dockerd";

/// The docker CLI of the same package (a newer CLI elsewhere on PATH may refuse API 1.41).
pub const DOCKER: &str = "/usr/bin/docker";

/// A running private dockerd.
pub struct Dockerd {
    dir: PathBuf,
    child: Option<Child>,
}

impl Dockerd {
    /// Starts one and waits until it answers `docker version`. Panics, with the reason and the
    /// tail of its log, when dockerd is missing or does not come up: the tests that need it
    /// must fail loudly, not skip.
    pub fn start() -> Dockerd {
        for bin in [DOCKERD, DOCKER] {
            assert!(
                Path::new(bin).is_file(),
                "{bin} not found: apt-get install docker.io (dockerd 20.10 is the reference for Docker's log formats)"
            );
        }
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(format!(
            "/tmp/scribe-dockerd-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("cli")).expect("create dockerd temp dir");
        fs::write(dir.join("daemon.json"), "{}\n").expect("write daemon.json");
        let log = fs::File::create(dir.join("dockerd.log")).expect("create dockerd.log");
        let log2 = log.try_clone().expect("dup dockerd.log");
        let mut c = Command::new(DOCKERD);
        c.arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("-H")
            .arg(format!("unix://{}", dir.join("docker.sock").display()))
            .args([
                "--bridge=none",
                "--iptables=false",
                "--ip-masq=false",
                "--ip6tables=false",
                "--userland-proxy=false",
                "--storage-driver=vfs",
                "--exec-opt",
                "native.cgroupdriver=cgroupfs",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = c
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {DOCKERD}: {e}"));
        let mut d = Dockerd {
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "dockerd exited at start ({st}); it cannot run here:\n{}",
                    d.log_tail(40)
                );
            }
            if d.dir.join("docker.sock").exists() && d.docker(&["version"]).success() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "dockerd did not answer within 60 s:\n{}",
                d.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        d
    }

    /// Runs the docker CLI against this dockerd (120 s timeout).
    pub fn docker(&self, args: &[&str]) -> CmdOutput {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_CONFIG", self.dir.join("cli"))
            .arg("-H")
            .arg(format!("unix://{}", self.dir.join("docker.sock").display()))
            .args(args);
        cmd::run(c, Duration::from_secs(120))
    }

    /// dockerd's `--data-root` (`containers/<id>/` holds each container's logs).
    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// A container's directory below the data root.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.data_root().join("containers").join(id)
    }

    /// Imports a busybox root file system (Debian's static busybox with every applet linked)
    /// as [`DOCKER_IMAGE`].
    pub fn import_busybox(&self) {
        let rootfs = self.dir.join("rootfs");
        let bin = rootfs.join("bin");
        fs::create_dir_all(&bin).expect("mkdir rootfs/bin");
        fs::create_dir_all(rootfs.join("tmp")).expect("mkdir rootfs/tmp");
        fs::copy("/usr/bin/busybox", bin.join("busybox"))
            .expect("copy /usr/bin/busybox (apt-get install busybox-static)");
        let list = Command::new("/usr/bin/busybox")
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
            if applet != "busybox" {
                let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
            }
        }
        let tar = self.dir.join("rootfs.tar");
        let mut c = Command::new("tar");
        c.arg("-C").arg(&rootfs).arg("-cf").arg(&tar).arg(".");
        cmd::run(c, Duration::from_secs(60)).assert_success();
        self.docker(&["import", tar.to_str().expect("utf-8"), DOCKER_IMAGE])
            .assert_success();
    }

    /// The last `n` lines of dockerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(self.dir.join("dockerd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        // What it started (its containerd and their shims), to stop by pid if it does not.
        let started = procs::descendants(pid);
        procs::kill(pid, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = child.try_wait() {
            procs::kill(pid, libc::SIGKILL);
        }
        let _ = child.wait();
        for p in started {
            if procs::pid_alive(p) {
                procs::kill(p, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "scribe-e2e: test failed; dockerd dir {}\n{}",
                self.dir.display(),
                self.log_tail(60)
            );
        }
        self.stop();
        procs::unmount_all_under(&self.dir);
        if std::env::var_os("SCRIBE_E2E_KEEP").is_none() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
