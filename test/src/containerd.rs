//! A private containerd instance, or (`SCRIBE_E2E_CONTAINERD_SOCKET`) an already running one.
//!
//! Private (the default): own temp dir, root, state, sockets, config, log and namespace;
//! everything is torn down on drop. External (`SCRIBE_E2E_CONTAINERD_SOCKET=<grpc socket>`, e.g.
//! the system's containerd.service in the VM stage): the test gets a unique namespace and its own
//! temp dir on that containerd and, on drop, removes only what it made there (its tasks,
//! containers, images, namespace, shims and container processes); containerd keeps running. Tests
//! that need a private config or to stop containerd panic in that mode, saying so.

use crate::cmd::{self, CmdOutput, Spawned};
use crate::events::EventStream;
use crate::procs;
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Default timeout of one `ctr` invocation.
pub const CTR_TIMEOUT: Duration = Duration::from_secs(60);

/// Options for [`Containerd`]; `Containerd::builder()...start()`.
#[derive(Debug, Clone)]
pub struct ContainerdBuilder {
    cri: bool,
    log_level: String,
    import_image: bool,
    extra_config: String,
    bin_dir: Option<PathBuf>,
    start_timeout: Duration,
    path_first: Vec<PathBuf>,
    env: Vec<(String, String)>,
}

impl Default for ContainerdBuilder {
    fn default() -> Self {
        ContainerdBuilder {
            cri: false,
            log_level: "debug".into(),
            import_image: true,
            extra_config: String::new(),
            bin_dir: None,
            start_timeout: Duration::from_secs(30),
            path_first: Vec::new(),
            env: Vec::new(),
        }
    }
}

impl ContainerdBuilder {
    pub fn new() -> Self {
        Self::default()
    }
    /// Keep the CRI plugin enabled (disabled by default).
    pub fn cri(mut self, on: bool) -> Self {
        self.cri = on;
        self
    }
    /// containerd's log level (default `debug`, which also passes `-debug` to shims).
    pub fn log_level(mut self, l: &str) -> Self {
        self.log_level = l.into();
        self
    }
    /// Import the busybox image after start (default true).
    pub fn import_image(mut self, on: bool) -> Self {
        self.import_image = on;
        self
    }
    /// TOML appended to the generated (version = 2) config.
    pub fn extra_config(mut self, toml: &str) -> Self {
        self.extra_config.push_str(toml);
        self.extra_config.push('\n');
        self
    }
    /// Override `SCRIBE_CONTAINERD_DIR` for this instance.
    pub fn bin_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(d.into());
        self
    }
    /// Put `dir` first on the PATH containerd (and so the shim and the runtime) gets, e.g. a
    /// directory holding a newer `criu`.
    pub fn path_first(mut self, dir: impl Into<PathBuf>) -> Self {
        self.path_first.push(dir.into());
        self
    }
    /// Set `key=value` in containerd's environment (e.g. the `NOTIFY_SOCKET` systemd gives a
    /// Type=notify service).
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    pub fn start(self) -> Containerd {
        Containerd::start_with(self)
    }
}

/// One row of `ctr task ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskInfo {
    pub id: String,
    pub pid: u32,
    pub status: String,
}

/// A private containerd: own temp dir (root, state, sockets, config, log), own
/// namespace. Everything it leaves is cleaned up on drop.
pub struct Containerd {
    dir: PathBuf,
    ns: String,
    bin_dir: PathBuf,
    runtime: String,
    path_env: String,
    child: Option<Child>,
    opts: ContainerdBuilder,
    /// File name of the ttrpc socket in `dir` (changed by `start_again_holding_shim_events`).
    ttrpc_name: String,
    /// The ttrpc path shims still forward to while their events are held.
    held_ttrpc: Option<PathBuf>,
    /// `SCRIBE_E2E_CONTAINERD_SOCKET`: the running containerd this instance uses instead of its
    /// own.
    external: Option<PathBuf>,
    shim_sockets: Mutex<BTreeSet<String>>,
    seen_container_pids: Mutex<BTreeSet<i32>>,
    fifo_dirs: Mutex<BTreeSet<PathBuf>>,
    ids_seen: Mutex<BTreeSet<String>>,
    socket_names: Mutex<BTreeSet<String>>,
}

fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

impl Containerd {
    /// Start with default options (CRI off, debug log, image imported).
    pub fn start() -> Containerd {
        ContainerdBuilder::default().start()
    }

    pub fn builder() -> ContainerdBuilder {
        ContainerdBuilder::default()
    }

    fn start_with(opts: ContainerdBuilder) -> Containerd {
        crate::check_environment();
        let bin_dir = opts.bin_dir.clone().unwrap_or_else(crate::containerd_dir);
        let suffix = unique_suffix();
        let dir = PathBuf::from(format!("/tmp/scribe-e2e-{suffix}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create containerd temp dir");
        let ns = format!("scribe-e2e-{suffix}");
        let external = crate::external_containerd_socket();
        if let Some(sock) = &external {
            assert!(
                opts.extra_config.is_empty() && opts.path_first.is_empty() && opts.env.is_empty(),
                "this test needs a private containerd (its own config, PATH or environment), but \
                 SCRIBE_E2E_CONTAINERD_SOCKET={} says to use a running one",
                sock.display()
            );
        }

        // PATH: the shim's directory first (so containerd finds
        // containerd-shim-scribe-v2), then containerd's own directory (so 1.7/2.1
        // use the runc shim they ship), then the usual.
        let mut path = opts.path_first.clone();
        let shim = crate::shim_bin();
        if shim.is_file() {
            let shim = fs::canonicalize(&shim).unwrap_or(shim);
            path.push(shim.parent().unwrap().to_path_buf());
        }
        path.push(fs::canonicalize(&bin_dir).unwrap_or(bin_dir.clone()));
        let sys = std::env::var_os("PATH").unwrap_or_default();
        path.extend(std::env::split_paths(&sys));
        for p in [
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ] {
            if !path.iter().any(|x| x == Path::new(p)) {
                path.push(p.into());
            }
        }
        let path_env = std::env::join_paths(path)
            .unwrap()
            .to_string_lossy()
            .into_owned();

        let mut c = Containerd {
            dir,
            ns,
            bin_dir,
            runtime: crate::runtime(),
            path_env,
            child: None,
            opts,
            ttrpc_name: "containerd.sock.ttrpc".into(),
            held_ttrpc: None,
            external,
            shim_sockets: Mutex::new(BTreeSet::new()),
            seen_container_pids: Mutex::new(BTreeSet::new()),
            fifo_dirs: Mutex::new(BTreeSet::new()),
            ids_seen: Mutex::new(BTreeSet::new()),
            socket_names: Mutex::new(BTreeSet::new()),
        };
        if c.external.is_some() {
            c.wait_external();
        } else {
            c.write_config();
            c.spawn_daemon();
        }
        if c.opts.import_image {
            let tar = crate::image_tar();
            let o = c.ctr_timeout(
                &["images", "import", tar.to_str().unwrap()],
                Duration::from_secs(120),
            );
            assert!(o.success(), "image import failed: {o}\n{}", c.log_tail(40));
            let o = c.ctr(&["images", "ls", "-q"]);
            assert!(
                o.stdout_lines().iter().any(|l| l == crate::IMAGE),
                "image {} not listed after import: {o}",
                crate::IMAGE
            );
        }
        c
    }

    fn write_config(&self) {
        let d = self.dir.display();
        let ttrpc = self.ttrpc_address();
        let ttrpc = ttrpc.display();
        let mut disabled = vec!["io.containerd.nri.v1.nri"];
        if !self.opts.cri {
            // 2.x splits CRI into several plugins; unknown names are ignored by 1.6/1.7.
            disabled.extend([
                "io.containerd.grpc.v1.cri",
                "io.containerd.cri.v1.runtime",
                "io.containerd.cri.v1.images",
            ]);
        }
        let disabled = disabled
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let cfg = format!(
            r#"# generated by scribe-e2e
version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{disabled}]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{ttrpc}"

[debug]
  address = "{d}/debug.sock"
  level = "{level}"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{d}/opt"

{extra}"#,
            level = self.opts.log_level,
            extra = self.opts.extra_config
        );
        fs::write(self.config_path(), cfg).expect("write config.toml");
    }

    fn spawn_daemon(&mut self) {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open containerd log");
        let mut cmd = Command::new(self.bin_dir.join("containerd"));
        cmd.arg("--config")
            .arg(self.config_path())
            .env("PATH", &self.path_env)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .current_dir(&self.dir);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "cannot start {}: {e}",
                self.bin_dir.join("containerd").display()
            )
        });
        self.child = Some(child);
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                self.child = None;
                panic!(
                    "containerd exited during start ({st}):\n{}",
                    self.log_tail(60)
                );
            }
            if self.address().exists() {
                let o = self.ctr_timeout(&["version"], Duration::from_secs(5));
                if o.success() {
                    break;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "containerd did not answer `ctr version` within {:?}:\n{}",
                    self.opts.start_timeout,
                    self.log_tail(60)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (start timeout) until the running containerd answers `ctr version`.
    fn wait_external(&self) {
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            let o = self.ctr_timeout(&["version"], Duration::from_secs(5));
            if o.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the running containerd at {} does not answer `ctr version` within {:?}: {o}\n{}",
                self.address().display(),
                self.opts.start_timeout,
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// True when this instance uses a running containerd (`SCRIBE_E2E_CONTAINERD_SOCKET`).
    pub fn is_external(&self) -> bool {
        self.external.is_some()
    }

    #[track_caller]
    fn private_only(&self, what: &str) {
        if let Some(sock) = &self.external {
            panic!(
                "{what} needs a private containerd; SCRIBE_E2E_CONTAINERD_SOCKET={} is a running one",
                sock.display()
            );
        }
    }

    // ---- accessors ----

    /// The instance's temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// containerd's root (external: `SCRIBE_E2E_CONTAINERD_ROOT`, default `/var/lib/containerd`).
    pub fn root(&self) -> PathBuf {
        match &self.external {
            Some(_) => crate::env_path("SCRIBE_E2E_CONTAINERD_ROOT", "/var/lib/containerd"),
            None => self.dir.join("root"),
        }
    }
    /// containerd's state (external: `SCRIBE_E2E_CONTAINERD_STATE`, default `/run/containerd`).
    pub fn state(&self) -> PathBuf {
        match &self.external {
            Some(_) => crate::env_path("SCRIBE_E2E_CONTAINERD_STATE", "/run/containerd"),
            None => self.dir.join("state"),
        }
    }
    /// containerd's grpc socket.
    pub fn address(&self) -> PathBuf {
        match &self.external {
            Some(sock) => sock.clone(),
            None => self.dir.join("containerd.sock"),
        }
    }
    /// containerd's ttrpc socket (where shims forward events).
    pub fn ttrpc_address(&self) -> PathBuf {
        match &self.external {
            Some(sock) => PathBuf::from(format!("{}.ttrpc", sock.display())),
            None => self.dir.join(&self.ttrpc_name),
        }
    }
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.toml")
    }
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }
    /// The namespace this instance's ctr commands use.
    pub fn namespace(&self) -> &str {
        &self.ns
    }
    /// Runtime under test (`SCRIBE_E2E_RUNTIME`).
    pub fn runtime(&self) -> &str {
        &self.runtime
    }
    pub fn bin_dir(&self) -> &Path {
        &self.bin_dir
    }
    /// containerd's pid while it runs (external: the process serving its socket).
    pub fn pid(&self) -> Option<i32> {
        if let Some(sock) = &self.external {
            let inodes = procs::unix_socket_inodes(&sock.to_string_lossy());
            return procs::pids_holding_sockets(&inodes).into_iter().min();
        }
        self.child.as_ref().map(|c| c.id() as i32)
    }
    pub fn is_running(&mut self) -> bool {
        if self.external.is_some() {
            return self.pid().is_some();
        }
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
    /// `containerd --version` of the binary in use.
    pub fn version(&self) -> String {
        let mut c = Command::new(self.bin_dir.join("containerd"));
        c.arg("--version");
        cmd::run(c, Duration::from_secs(10))
            .stdout
            .trim()
            .to_string()
    }

    /// Last `n` lines of containerd's log (external: of `journalctl -u containerd`).
    pub fn log_tail(&self, n: usize) -> String {
        if self.external.is_some() {
            let mut c = Command::new("journalctl");
            c.args(["-u", "containerd", "--no-pager", "-o", "cat", "-n"])
                .arg(n.to_string());
            let o = cmd::run(c, Duration::from_secs(10));
            return format!(
                "--- journalctl -u containerd (last {n} lines) ---\n{}{}\n--- end of containerd log ---",
                o.stdout, o.stderr
            );
        }
        let s = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        let from = lines.len().saturating_sub(n);
        format!(
            "--- containerd log ({}; last {} lines) ---\n{}\n--- end of containerd log ---",
            self.log_path().display(),
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    // ---- ctr ----

    fn ctr_command(&self, args: &[&str]) -> Command {
        // Any argument may be a container id or group: remember it, so that teardown
        // can find shim sockets named after it (the hash includes our unique
        // grpc address, so this never matches another instance's socket).
        {
            let mut names = self.socket_names.lock().unwrap();
            for a in args {
                let a = a.rsplit('=').next().unwrap_or(a);
                if !a.is_empty() && a.len() < 100 && !a.contains(char::is_whitespace) {
                    names.insert(a.to_string());
                }
            }
        }
        let mut c = Command::new(self.bin_dir.join("ctr"));
        c.arg("--address")
            .arg(self.address())
            .arg("--namespace")
            .arg(&self.ns)
            .args(args)
            .env("PATH", &self.path_env);
        c
    }

    /// `ctr --address <sock> -n <ns> args...` with the default timeout (60 s).
    pub fn ctr(&self, args: &[&str]) -> CmdOutput {
        self.ctr_timeout(args, CTR_TIMEOUT)
    }

    pub fn ctr_timeout(&self, args: &[&str], timeout: Duration) -> CmdOutput {
        let o = cmd::run(self.ctr_command(args), timeout);
        self.note_bundles();
        o
    }

    /// `ctr args...` whose stdout goes to `consume` as it comes (see [`cmd::run_streaming`]).
    pub fn ctr_streaming<T: Send + 'static>(
        &self,
        args: &[&str],
        timeout: Duration,
        consume: impl FnOnce(std::process::ChildStdout) -> T + Send + 'static,
    ) -> (CmdOutput, Result<T, String>) {
        let r = cmd::run_streaming(self.ctr_command(args), timeout, consume);
        self.note_bundles();
        r
    }

    /// Like `ctr` but panics (with containerd's log tail) if it fails.
    #[track_caller]
    pub fn ctr_ok(&self, args: &[&str]) -> CmdOutput {
        let o = self.ctr(args);
        assert!(o.success(), "ctr failed: {o}\n{}", self.log_tail(40));
        o
    }

    /// Spawn `ctr` (e.g. a long attached `ctr run`); output is collected; killed on drop.
    pub fn ctr_spawn(&self, args: &[&str]) -> Spawned {
        Spawned::spawn(self.ctr_command(args))
    }

    /// A client of this containerd's Tasks API in this instance's namespace (panics, with the
    /// log tail, when it cannot connect).
    #[track_caller]
    pub fn tasks_api(&self) -> crate::TasksApi {
        crate::TasksApi::connect(&self.address(), &self.ns)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log_tail(30)))
    }

    /// Start `ctr events` and wait until it is subscribed (a probe event is seen).
    pub fn events(&self) -> EventStream {
        let ev = EventStream::new(self.ctr_command(&["events"]), &self.ns);
        // Probe: a namespace label update publishes /namespaces/update.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut n = 0;
        loop {
            n += 1;
            let label = format!("scribe-e2e-probe={n}");
            self.ctr(&["namespaces", "label", &self.ns, &label]);
            if ev
                .wait_for(Duration::from_millis(300), |e| {
                    e.topic.starts_with("/namespaces/")
                })
                .is_some()
            {
                break;
            }
            assert!(
                Instant::now() < deadline && !ev.closed(),
                "ctr events did not start: {}\n{}",
                ev.dump(),
                self.log_tail(30)
            );
        }
        ev
    }

    /// `ctr run` arguments for the runtime under test: `run --runtime <rt> <extra...>`.
    pub fn run_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["run", "--runtime", self.runtime.as_str()];
        v.extend_from_slice(extra);
        v
    }

    /// `ctr task ls`, parsed.
    pub fn tasks(&self) -> Vec<TaskInfo> {
        let o = self.ctr(&["task", "ls"]);
        assert!(o.success(), "ctr task ls failed: {o}");
        o.stdout
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                if f.len() >= 3 {
                    Some(TaskInfo {
                        id: f[0].into(),
                        pid: f[1].parse().unwrap_or(0),
                        status: f[2].into(),
                    })
                } else {
                    None
                }
            })
            .collect()
    }

    pub fn task(&self, id: &str) -> Option<TaskInfo> {
        self.tasks().into_iter().find(|t| t.id == id)
    }

    /// Poll `ctr task ls` until the task's status is `status`.
    pub fn wait_task_status(&self, id: &str, status: &str, timeout: Duration) -> bool {
        procs::wait_until(timeout, || {
            self.task(id).map(|t| t.status == status).unwrap_or(false)
        })
    }

    /// SIGKILLs the task, waits (30 s) until `ctr task ls` shows it STOPPED, then removes the
    /// task and the container; every step must succeed.
    #[track_caller]
    pub fn kill_and_remove(&self, id: &str) {
        self.ctr_ok(&["task", "kill", "-s", "SIGKILL", id]);
        assert!(
            self.wait_task_status(id, "STOPPED", Duration::from_secs(30)),
            "{id} not STOPPED after SIGKILL: {:?}",
            self.tasks()
        );
        self.ctr_ok(&["task", "rm", id]);
        self.ctr_ok(&["containers", "rm", id]);
    }

    /// `ctr containers ls -q`.
    pub fn containers(&self) -> Vec<String> {
        let o = self.ctr(&["containers", "ls", "-q"]);
        assert!(o.success(), "ctr c ls failed: {o}");
        o.stdout_lines()
    }

    // ---- lifecycle ----

    /// SIGTERM containerd (by pid) and wait for it (SIGKILL after 15 s). Shims keep running.
    pub fn stop(&mut self) {
        self.private_only("stopping containerd");
        if let Some(mut c) = self.child.take() {
            let pid = c.id() as i32;
            if let Ok(None) = c.try_wait() {
                procs::kill(pid, libc::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(15);
                loop {
                    if let Ok(Some(_)) = c.try_wait() {
                        break;
                    }
                    if Instant::now() >= deadline {
                        eprintln!("containerd {pid} ignored SIGTERM for 15s; SIGKILL");
                        procs::kill(pid, libc::SIGKILL);
                        let _ = c.wait();
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
            let _ = c.wait();
        }
    }

    /// Stop (if running) and start containerd again with the same root, state and config.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// SIGKILL containerd (by pid), as a crash would, and reap it. Shims keep running.
    pub fn kill(&mut self) {
        self.private_only("killing containerd");
        if let Some(mut c) = self.child.take() {
            procs::kill(c.id() as i32, libc::SIGKILL);
            let _ = c.wait();
        }
    }

    /// Start containerd again after [`stop`](Self::stop) or [`kill`](Self::kill), with the same
    /// root, state and config.
    pub fn start_again(&mut self) {
        self.private_only("starting containerd again");
        assert!(self.child.is_none(), "containerd is still running");
        let _ = fs::remove_file(self.address());
        self.spawn_daemon();
    }

    /// Like [`start_again`](Self::start_again), but containerd's ttrpc socket moves to a new
    /// path. Shims started before keep forwarding events to the old path (their
    /// `TTRPC_ADDRESS`), where nothing answers until [`release_shim_events`] links it to the
    /// new socket. So a test can subscribe to events (`events()`) before the events the shims
    /// queued while containerd was away arrive: containerd does not replay events to late
    /// subscribers. containerd's own reconnection to shims (grpc side: the bundle's `address`
    /// or `bootstrap.json`) is not affected.
    ///
    /// [`release_shim_events`]: Self::release_shim_events
    pub fn start_again_holding_shim_events(&mut self) {
        self.private_only("moving containerd's ttrpc socket");
        assert!(self.child.is_none(), "containerd is still running");
        self.held_ttrpc = Some(self.ttrpc_address());
        self.ttrpc_name = format!("{}.held", self.ttrpc_name);
        self.write_config();
        self.start_again();
    }

    /// Lets the shims' held events through: the old ttrpc path becomes a symlink to the socket
    /// the restarted containerd listens on.
    #[track_caller]
    pub fn release_shim_events(&mut self) {
        let old = self
            .held_ttrpc
            .take()
            .expect("release_shim_events without start_again_holding_shim_events");
        match fs::remove_file(&old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("removing the stale ttrpc socket {}: {e}", old.display()),
        }
        let new = self.ttrpc_address();
        std::os::unix::fs::symlink(&new, &old)
            .unwrap_or_else(|e| panic!("linking {} to {}: {e}", old.display(), new.display()));
    }

    // ---- shim and container introspection ----

    /// The bundle of container `id`: `<state>/io.containerd.runtime.v2.task/<ns>/<id>`.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.state()
            .join("io.containerd.runtime.v2.task")
            .join(&self.ns)
            .join(id)
    }

    /// The OCI runtime's state dir of container `id`: the first of `<root>/<ns>/<id>`,
    /// `<root>/<id>` (root: `root` of the bundle's `options.json`) and
    /// `/run/containerd/runc/<ns>/<id>` that holds a `state.json` (else the first).
    /// Read it while the container runs.
    pub fn runtime_state_dir(&self, id: &str) -> PathBuf {
        let root = fs::read_to_string(self.bundle_dir(id).join("options.json"))
            .ok()
            .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
            .and_then(|v| {
                v.get("root")
                    .or_else(|| v.get("Root"))
                    .and_then(|r| r.as_str())
                    .map(String::from)
            })
            .filter(|s| !s.is_empty());
        let mut candidates = Vec::new();
        if let Some(r) = &root {
            // runc.v2 keeps the root without the namespace; accept a root that has it
            candidates.push(Path::new(r).join(&self.ns).join(id));
            candidates.push(Path::new(r).join(id));
        }
        candidates.push(Path::new("/run/containerd/runc").join(&self.ns).join(id));
        candidates
            .iter()
            .find(|p| p.join("state.json").exists())
            .cloned()
            .unwrap_or_else(|| candidates[0].clone())
    }

    /// The shim socket path of container `id`, from the bundle's `address` (1.6/1.7)
    /// or `bootstrap.json` (2.x).
    pub fn shim_socket(&self, id: &str) -> Option<String> {
        let p = bundle_socket(&self.bundle_dir(id))?;
        self.shim_sockets.lock().unwrap().insert(p.clone());
        Some(p)
    }

    /// Pids of live shim processes of this instance (argv[0] is `containerd-shim*`
    /// and `-address` is this containerd's socket).
    pub fn shim_pids(&self) -> Vec<i32> {
        let addr = self.address();
        let addr = addr.to_string_lossy();
        procs::shim_processes()
            .into_iter()
            .filter(|(_, argv)| {
                let ours = procs::flag_value(argv, "-address") == Some(&*addr)
                    || argv
                        .iter()
                        .any(|a| a.contains(&*self.dir.to_string_lossy()));
                // A running containerd serves other namespaces too: only this one's shims.
                ours && (self.external.is_none()
                    || procs::flag_value(argv, "-namespace") == Some(self.ns.as_str()))
            })
            .map(|(p, _)| p)
            .collect()
    }

    /// The pid of the shim serving container `id`: the process listening on the
    /// socket named in the bundle; else a shim of this instance started with `-id <id>`.
    pub fn shim_pid(&self, id: &str) -> Option<i32> {
        let mine = self.shim_pids();
        if let Some(sock) = self.shim_socket(id) {
            let holders = procs::pids_holding_sockets(&procs::unix_socket_inodes(&sock));
            let me = std::process::id() as i32;
            let cd = self.pid().unwrap_or(-1);
            let mut h: Vec<i32> = holders
                .iter()
                .copied()
                .filter(|p| *p != me && *p != cd && mine.contains(p))
                .collect();
            if h.is_empty() {
                h = holders
                    .into_iter()
                    .filter(|p| *p != me && *p != cd)
                    .collect();
            }
            if let Some(p) = h.first() {
                return Some(*p);
            }
        }
        let addr = self.address();
        let addr = addr.to_string_lossy();
        procs::shim_processes()
            .into_iter()
            .find(|(_, argv)| {
                procs::flag_value(argv, "-id") == Some(id)
                    && procs::flag_value(argv, "-address") == Some(&*addr)
            })
            .map(|(p, _)| p)
    }

    /// Remember, for every bundle present now, the container id and the shim
    /// sockets it may use: the one named in the bundle and the ones containerd's Go
    /// shim derives (`sha256(<grpc address>/<ns>/<id or group>[/debug])`; 1.7+ Go shims
    /// leave the `debug` one behind). Teardown removes those left unbound.
    fn note_bundles(&self) {
        let Ok(rd) = fs::read_dir(
            self.state()
                .join("io.containerd.runtime.v2.task")
                .join(&self.ns),
        ) else {
            return;
        };
        for e in rd.flatten() {
            let Some(id) = e.file_name().to_str().map(String::from) else {
                continue;
            };
            if !self.ids_seen.lock().unwrap().insert(id.clone()) {
                continue;
            }
            let _ = self.shim_socket(&id);
            let mut groups = vec![id.clone()];
            if let Some(ann) = fs::read_to_string(e.path().join("config.json"))
                .ok()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
                .and_then(|v| v.get("annotations").cloned())
            {
                for k in [
                    "io.containerd.runc.v2.group",
                    "io.kubernetes.cri.sandbox-id",
                ] {
                    if let Some(g) = ann.get(k).and_then(|g| g.as_str()) {
                        groups.push(g.to_string());
                    }
                }
            }
            self.socket_names.lock().unwrap().extend(groups);
        }
    }

    /// The shim socket path containerd's Go shim (and Scribe) derive for a container
    /// id or group id: `/run/containerd/s/<sha256(<grpc address>/<ns>/<id>)>`
    /// (`debug`: the pprof socket Go shims 1.7+ open with `-debug`).
    pub fn derived_shim_socket(&self, id_or_group: &str, debug: bool) -> PathBuf {
        let key = format!(
            "{}/{}/{}{}",
            self.address().display(),
            self.ns,
            id_or_group,
            if debug { "/debug" } else { "" }
        );
        PathBuf::from(format!("/run/containerd/s/{}", sha256_hex(key.as_bytes())))
    }

    /// Shim socket files of this instance that exist but that no process has bound
    /// (left behind by an exited shim). Debug sockets are not counted.
    pub fn stale_shim_sockets(&self) -> Vec<PathBuf> {
        let mut paths: BTreeSet<PathBuf> = self
            .shim_sockets
            .lock()
            .unwrap()
            .iter()
            .map(PathBuf::from)
            .collect();
        for n in self.socket_names.lock().unwrap().iter() {
            paths.insert(self.derived_shim_socket(n, false));
        }
        paths
            .into_iter()
            .filter(|p| p.exists() && procs::unix_socket_inodes(&p.to_string_lossy()).is_empty())
            .collect()
    }

    /// Remember the ctr FIFO dirs (`/run/containerd/fifo/<n>`) that `pid` has open,
    /// so that teardown can remove them when nobody else does (e.g. after a shim was killed).
    fn note_fifo_dirs(&self, pid: i32) {
        let Ok(rd) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            return;
        };
        for e in rd.flatten() {
            if let Ok(t) = fs::read_link(e.path()) {
                if t.starts_with("/run/containerd/fifo/") {
                    if let Some(d) = t.parent() {
                        self.fifo_dirs.lock().unwrap().insert(d.to_path_buf());
                    }
                }
            }
        }
    }

    /// SIGKILL the shim of container `id` (by pid) and wait until it is gone; returns its pid.
    #[track_caller]
    pub fn kill_shim(&self, id: &str) -> i32 {
        let pid = self.shim_pid(id).unwrap_or_else(|| {
            panic!(
                "no shim process found for container {id}; shims: {:?}",
                self.shim_pids()
            )
        });
        self.note_fifo_dirs(pid);
        procs::kill(pid, libc::SIGKILL);
        assert!(
            procs::wait_pid_gone(pid, Duration::from_secs(10)),
            "shim {pid} survived SIGKILL"
        );
        pid
    }

    /// Live processes in this namespace's cgroups (ctr puts a container in
    /// `/<namespace>/<id>`), i.e. container processes. Remembered for cleanup.
    pub fn container_pids(&self) -> Vec<i32> {
        let v: Vec<i32> = procs::all_pids()
            .into_iter()
            .filter(|p| procs::in_cgroup_namespace(*p, &self.ns) && procs::pid_alive(*p))
            .collect();
        self.seen_container_pids
            .lock()
            .unwrap()
            .extend(v.iter().copied());
        v
    }

    /// Mount points under this instance's temp dir.
    pub fn mounts(&self) -> Vec<PathBuf> {
        procs::mounts_under(&self.dir)
    }

    /// Panic unless container `id` left nothing behind: no shim serving only it,
    /// no bundle, no runtime state dir (`runtime_state_dir`, pass what was read while
    /// it ran), no mount of its bundle/rootfs. Waits up to 10 s for things to go away.
    #[track_caller]
    pub fn assert_container_gone(
        &self,
        id: &str,
        runtime_state_dir: Option<&Path>,
        shim_pid: Option<i32>,
    ) {
        let bundle = self.bundle_dir(id);
        let bundle_s = bundle.to_string_lossy().into_owned();
        let ok = procs::wait_until(Duration::from_secs(10), || {
            shim_pid.map(|p| !procs::pid_alive(p)).unwrap_or(true)
                && !bundle.exists()
                && runtime_state_dir.map(|d| !d.exists()).unwrap_or(true)
                && procs::mountinfo_lines_containing(&bundle_s).is_empty()
        });
        assert!(
            ok,
            "container {id} left something behind:\n shim {:?} alive={}\n bundle {} exists={}\n runtime state {:?} exists={}\n mounts: {:?}\n{}",
            shim_pid,
            shim_pid.map(procs::pid_alive).unwrap_or(false),
            bundle.display(),
            bundle.exists(),
            runtime_state_dir,
            runtime_state_dir.map(|d| d.exists()).unwrap_or(false),
            procs::mountinfo_lines_containing(&bundle_s),
            self.log_tail(40)
        );
    }

    /// Panic unless no shim of this instance runs and nothing is mounted under its dir
    /// (waits up to 10 s).
    #[track_caller]
    pub fn assert_no_shims_no_mounts(&self) {
        self.assert_leftovers(false)
    }

    /// [`assert_no_shims_no_mounts`](Self::assert_no_shims_no_mounts), and no shim socket
    /// file of this instance is left unbound in `/run/containerd/s` (a shim that exits
    /// normally removes its socket; debug sockets are not counted).
    #[track_caller]
    pub fn assert_clean(&self) {
        self.assert_leftovers(true)
    }

    #[track_caller]
    fn assert_leftovers(&self, sockets: bool) {
        let ok = procs::wait_until(Duration::from_secs(10), || {
            self.shim_pids().is_empty()
                && self.mounts().is_empty()
                && (!sockets || self.stale_shim_sockets().is_empty())
        });
        assert!(
            ok,
            "leftovers: shims {:?} (argv {:?}), mounts {:?}, stale shim sockets {:?}\n{}",
            self.shim_pids(),
            self.shim_pids()
                .iter()
                .map(|p| procs::cmdline(*p))
                .collect::<Vec<_>>(),
            self.mounts(),
            self.stale_shim_sockets(),
            self.log_tail(40)
        );
    }

    // ---- teardown ----

    fn cleanup(&mut self) {
        // Remember the shims' sockets before bundles go away.
        self.note_bundles();
        let _ = self.container_pids();
        let shims_before = self.shim_pids();
        let mut doomed: BTreeSet<i32> = BTreeSet::new();
        for s in &shims_before {
            self.note_fifo_dirs(*s);
            doomed.extend(procs::descendants(*s));
        }

        if self.is_running() {
            let t = Duration::from_secs(10);
            let tasks = self.ctr_timeout(&["task", "ls", "-q"], t);
            for id in tasks.stdout_lines() {
                self.ctr_timeout(&["task", "kill", "-s", "SIGKILL", "--all", &id], t);
                self.ctr_timeout(&["task", "kill", "-s", "SIGKILL", &id], t);
            }
            for id in tasks.stdout_lines() {
                procs::wait_until(Duration::from_secs(5), || {
                    self.task(&id)
                        .map(|x| x.status == "STOPPED")
                        .unwrap_or(true)
                });
                self.ctr_timeout(&["task", "rm", "-f", &id], t);
            }
            for id in self
                .ctr_timeout(&["containers", "ls", "-q"], t)
                .stdout_lines()
            {
                self.ctr_timeout(&["containers", "rm", &id], t);
            }
            // shims exit on their own once their last container is gone
            procs::wait_until(Duration::from_secs(5), || self.shim_pids().is_empty());
            if self.external.is_some() {
                // The namespace goes once its images are gone (content is garbage-collected).
                for img in self.ctr_timeout(&["images", "ls", "-q"], t).stdout_lines() {
                    self.ctr_timeout(&["images", "rm", "--sync", &img], t);
                }
                let ns = self.ns.clone();
                self.ctr_timeout(&["namespaces", "rm", &ns], t);
            }
        }
        if self.external.is_none() {
            self.stop();
        }

        // Kill what is left: shims of this instance, container processes.
        let mut left: BTreeSet<i32> = self.shim_pids().into_iter().collect();
        left.extend(
            shims_before
                .iter()
                .copied()
                .filter(|p| procs::pid_alive(*p)),
        );
        left.extend(self.container_pids());
        left.extend(
            self.seen_container_pids
                .lock()
                .unwrap()
                .iter()
                .copied()
                .filter(|p| procs::in_cgroup_namespace(*p, &self.ns)),
        );
        left.extend(doomed.into_iter().filter(|p| procs::pid_alive(*p)));
        // and anything whose argv mentions our dir (e.g. a shim `delete` helper)
        let dir_s = self.dir.to_string_lossy().into_owned();
        let me = std::process::id() as i32;
        for p in procs::all_pids() {
            if p != me && procs::cmdline(p).iter().any(|a| a.contains(&dir_s)) {
                left.insert(p);
            }
        }
        left.retain(|p| procs::pid_alive(*p) && *p != me);
        if !left.is_empty() {
            eprintln!(
                "scribe-e2e: killing leftover processes {:?}",
                left.iter()
                    .map(|p| (p, procs::cmdline(*p)))
                    .collect::<Vec<_>>()
            );
            for p in &left {
                procs::kill(*p, libc::SIGKILL);
            }
            for p in &left {
                procs::wait_pid_gone(*p, Duration::from_secs(5));
            }
        }

        procs::unmount_all_under(&self.dir);

        // cgroups /<ns>/... left by killed containers (depth first): v2, then v1's hierarchies
        rmdir_tree(&Path::new("/sys/fs/cgroup").join(&self.ns));
        if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
            for ctl in rd.flatten() {
                let d = ctl.path().join(&self.ns);
                if d.is_dir() {
                    rmdir_tree(&d);
                }
            }
        }
        let _ = fs::remove_dir_all(Path::new("/run/containerd/runc").join(&self.ns));
        let mut socks: BTreeSet<String> = self.shim_sockets.lock().unwrap().clone();
        for n in self.socket_names.lock().unwrap().iter() {
            for debug in [false, true] {
                socks.insert(
                    self.derived_shim_socket(n, debug)
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        for s in socks.iter() {
            if std::env::var_os("SCRIBE_E2E_DEBUG").is_some() {
                eprintln!(
                    "scribe-e2e: shim socket {s} exists={} holders={:?}",
                    Path::new(s).exists(),
                    procs::pids_holding_sockets(&procs::unix_socket_inodes(s))
                );
            }
            if Path::new(s).exists()
                && procs::pids_holding_sockets(&procs::unix_socket_inodes(s)).is_empty()
            {
                let _ = fs::remove_file(s);
            }
        }
        // ctr's FIFO dirs of our containers that nobody holds open any more
        // (ctr leaks them when a task vanishes under it, e.g. after a shim was killed).
        let mut fifo_dirs = self.fifo_dirs.lock().unwrap().clone();
        if let Ok(rd) = fs::read_dir("/run/containerd/fifo") {
            let ids = self.ids_seen.lock().unwrap().clone();
            for d in rd.flatten() {
                let ours = fs::read_dir(d.path())
                    .map(|r| {
                        r.flatten().any(|f| {
                            let n = f.file_name().to_string_lossy().into_owned();
                            ["-stdin", "-stdout", "-stderr"].iter().any(|s| {
                                n.strip_suffix(s).map(|i| ids.contains(i)).unwrap_or(false)
                            })
                        })
                    })
                    .unwrap_or(false);
                if ours {
                    fifo_dirs.insert(d.path());
                }
            }
        }
        if !fifo_dirs.is_empty() {
            let open = procs::open_paths_under(Path::new("/run/containerd/fifo"));
            for d in fifo_dirs {
                if !open.iter().any(|p| p.starts_with(&d)) {
                    let _ = fs::remove_dir_all(&d);
                }
            }
        }
        if std::env::var_os("SCRIBE_E2E_KEEP").is_some() {
            eprintln!("scribe-e2e: keeping {}", self.dir.display());
        } else if procs::mounts_under(&self.dir).is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "scribe-e2e: mounts still under {}: {:?}",
                self.dir.display(),
                procs::mounts_under(&self.dir)
            );
        }
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

fn rmdir_tree(d: &Path) {
    if let Ok(rd) = fs::read_dir(d) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                rmdir_tree(&e.path());
            }
        }
    }
    let _ = fs::remove_dir(d);
}

impl Containerd {
    /// Every process under each shim, with its state and kernel wait channel: after a hang it
    /// shows whether a runtime command (`runc exec`, ...) is still running and where it sleeps.
    fn shim_trees(&self) -> String {
        let mut out = String::from("--- processes under the shims (pid state wchan cmdline) ---\n");
        for shim in self.shim_pids() {
            for pid in std::iter::once(shim).chain(procs::descendants(shim)) {
                let state = procs::stat(pid).map(|(s, _)| s).unwrap_or('?');
                let wchan = fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
                out.push_str(&format!(
                    "{pid} {state} {} {}\n",
                    if wchan.is_empty() { "-" } else { wchan.trim() },
                    procs::cmdline(pid).join(" ")
                ));
            }
        }
        out.push_str("--- end of processes ---");
        out
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "scribe-e2e: test failed; containerd {} (runtime {}, namespace {}, dir {})\nshims: {:?}\n{}",
                self.bin_dir.display(),
                self.runtime,
                self.ns,
                self.dir.display(),
                self.shim_pids().iter().map(|p| (p, procs::cmdline(*p))).collect::<Vec<_>>(),
                self.log_tail(80)
            );
            eprintln!("{}", self.shim_trees());
        }
        self.cleanup();
    }
}

/// The shim socket a bundle names: `address` (containerd 1.6/1.7) or `bootstrap.json` (2.x).
pub fn bundle_socket(bundle: &Path) -> Option<String> {
    let text = fs::read_to_string(bundle.join("address"))
        .or_else(|_| fs::read_to_string(bundle.join("bootstrap.json")))
        .ok()?;
    let start = text.find("unix://")? + "unix://".len();
    let rest = &text[start..];
    let end = rest
        .find(|c: char| c == '"' || c.is_whitespace())
        .unwrap_or(rest.len());
    Some(rest[..end].to_string())
}
