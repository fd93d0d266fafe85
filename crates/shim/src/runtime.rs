//! The OCI runtime driver: runc, crun or any CLI that speaks runc's command line.
//!
//! Every call passes `--root`, `--log <bundle>/log.json --log-format json`, so that when the
//! runtime fails the error containerd sees carries the runtime's own message from that log.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::sync::Arc;

use scribe_events::{Level as EventLevel, RuntimeLog, RuntimeRecord, Timestamp};
use scribe_io::childenv::{self, Child};
use scribe_io::runclog::{Level, RuntimeLogFollower, RuntimeLogLine};
use tokio::io::AsyncReadExt;

use crate::options::Settings;
use crate::reaper::{ExitCode, Reaper};

/// A failed runtime invocation, with the runtime's own words when it left any.
#[derive(Debug)]
pub struct RuntimeError {
    /// What the shim was doing, e.g. `runc create c1`.
    pub action: String,
    /// The runtime's message (from log.json or stderr) or the spawn error.
    pub message: String,
    /// True when the runtime says the container does not exist.
    pub not_found: bool,
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.action, self.message)
    }
}

impl std::error::Error for RuntimeError {}

/// What a checkpoint should do (containerd's runc `CheckpointOptions`).
#[derive(Debug, Default, Clone)]
pub struct CheckpointOpts {
    pub image_path: String,
    pub work_path: String,
    pub exit: bool,
    pub open_tcp: bool,
    pub external_unix_sockets: bool,
    pub terminal: bool,
    pub file_locks: bool,
    pub empty_namespaces: Vec<String>,
    pub cgroups_mode: String,
}

/// The CRIU options checkpoint and restore share.
fn criu_flags(opts: &CheckpointOpts) -> Vec<String> {
    let mut args = Vec::new();
    for (on, flag) in [
        (opts.open_tcp, "--tcp-established"),
        (opts.external_unix_sockets, "--ext-unix-sk"),
        (opts.terminal, "--shell-job"),
        (opts.file_locks, "--file-locks"),
    ] {
        if on {
            args.push(flag.to_string());
        }
    }
    for ns in &opts.empty_namespaces {
        args.extend(["--empty-ns".to_string(), ns.clone()]);
    }
    if !opts.cgroups_mode.is_empty() {
        args.extend([
            "--manage-cgroups-mode".to_string(),
            opts.cgroups_mode.clone(),
        ]);
    }
    args
}

/// The stdio a runtime command hands to the container process it creates.
pub struct ProcessStdio {
    pub stdin: Stdio,
    pub stdout: Stdio,
    pub stderr: Stdio,
}

/// One container's view of the runtime: which binary, which root, which log file.
#[derive(Clone)]
pub struct Runtime {
    settings: Settings,
    log: PathBuf,
    /// Where the runtime's own log lines are kept as runtime-log records.
    records: Option<Arc<RuntimeLog>>,
    /// The container those records are about (their `container_id`).
    container_id: String,
}

impl Runtime {
    /// A driver for the container in `bundle` with the given settings.
    pub fn new(settings: Settings, bundle: &Path) -> Runtime {
        Runtime {
            settings,
            log: bundle.join("log.json"),
            records: None,
            container_id: String::new(),
        }
    }

    /// The settings this driver runs the runtime with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Also turns every line the runtime writes to log.json into a runtime.log record about
    /// container `id`.
    pub fn with_records(mut self, id: &str, records: Option<Arc<RuntimeLog>>) -> Runtime {
        self.records = records;
        self.container_id = id.to_string();
        self
    }

    /// Appends what the runtime logged during one invocation to runtime.log.
    fn keep_records(&self, lines: &[RuntimeLogLine], pid: u32) {
        let Some(sink) = &self.records else {
            return;
        };
        let component = Path::new(&self.settings.binary_name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.settings.binary_name.clone());
        for line in lines {
            let rec = runtime_record(line, &component, pid, &self.container_id);
            if let Err(e) = sink.append(&rec) {
                log::error!("writing runtime.log record: {e}");
                return;
            }
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.settings.binary_name);
        cmd.env_clear()
            .envs(childenv::from_process(Child::Runtime))
            .arg("--root")
            .arg(&self.settings.root)
            .arg("--log")
            .arg(&self.log)
            .args(["--log-format", "json"]);
        if self.settings.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        if !self.settings.criu_path.is_empty() {
            cmd.arg("--criu").arg(&self.settings.criu_path);
        }
        cmd.args(args);
        cmd
    }

    /// `create`: the container's init is created, stopped before the user process runs.
    pub async fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: ProcessStdio,
        console_socket: Option<&Path>,
    ) -> Result<(), RuntimeError> {
        let bundle_s = bundle.display().to_string();
        let mut args = vec!["create", "--bundle", &bundle_s];
        if self.settings.no_pivot_root {
            args.push("--no-pivot");
        }
        if self.settings.no_new_keyring {
            args.push("--no-new-keyring");
        }
        self.run_process(&args, id, pid_file, console_socket, stdio)
            .await
    }

    /// Runs a command that makes a container process (`create`, `exec`, `restore`): `args` are
    /// the command and its own flags; the pid file, the console socket and the container id are
    /// added here, and the process inherits `stdio`.
    async fn run_process(
        &self,
        args: &[&str],
        id: &str,
        pid_file: &Path,
        console_socket: Option<&Path>,
        stdio: ProcessStdio,
    ) -> Result<(), RuntimeError> {
        let pid_s = pid_file.display().to_string();
        let console_s = console_socket.map(|p| p.display().to_string());
        let mut all = args.to_vec();
        all.extend(["--pid-file", &pid_s]);
        if let Some(c) = &console_s {
            all.extend(["--console-socket", c.as_str()]);
        }
        all.push(id);
        let mut cmd = self.command(&all);
        cmd.stdin(stdio.stdin)
            .stdout(stdio.stdout)
            .stderr(stdio.stderr);
        let action = format!("{} {id}", args.first().copied().unwrap_or_default());
        self.run(cmd, &action, false).await.map(drop)
    }

    /// `exec --detach`: starts an additional process in a running container.
    pub async fn exec(
        &self,
        id: &str,
        process_spec: &Path,
        pid_file: &Path,
        stdio: ProcessStdio,
        console_socket: Option<&Path>,
    ) -> Result<(), RuntimeError> {
        let spec_s = process_spec.display().to_string();
        let args = ["exec", "--detach", "--process", &spec_s];
        self.run_process(&args, id, pid_file, console_socket, stdio)
            .await
    }

    /// `start`: runs the user process of a created container.
    pub async fn start(&self, id: &str) -> Result<(), RuntimeError> {
        self.simple(&["start", id]).await
    }

    /// `pause <id>`: freezes every process of the container.
    pub async fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        self.simple(&["pause", id]).await
    }

    /// `resume <id>`: thaws a paused container.
    pub async fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        self.simple(&["resume", id]).await
    }

    /// `update --resources <file> <id>`: applies new LinuxResources (a JSON file).
    pub async fn update(&self, id: &str, resources: &Path) -> Result<(), RuntimeError> {
        let file = resources.display().to_string();
        self.simple(&["update", "--resources", &file, id]).await
    }

    /// `checkpoint`: dumps the container with CRIU into `image_path`.
    pub async fn checkpoint(&self, id: &str, opts: &CheckpointOpts) -> Result<(), RuntimeError> {
        let mut args: Vec<String> = vec![
            "checkpoint".into(),
            "--image-path".into(),
            opts.image_path.clone(),
        ];
        if !opts.work_path.is_empty() {
            args.extend(["--work-path".into(), opts.work_path.clone()]);
        }
        if !opts.exit {
            args.push("--leave-running".into());
        }
        args.extend(criu_flags(opts));
        args.push(id.into());
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.simple(&refs).await
    }

    /// `restore --detach`: recreates the container's processes from a checkpoint (CRIU). The
    /// shim is already the subreaper, so the runtime is told not to be one (`--no-subreaper`):
    /// the restored init is re-parented to the shim, which reaps it.
    pub async fn restore(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        stdio: ProcessStdio,
        console_socket: Option<&Path>,
        opts: &CheckpointOpts,
    ) -> Result<(), RuntimeError> {
        let mut args: Vec<String> = vec![
            "restore".into(),
            "--detach".into(),
            "--no-subreaper".into(),
            "--bundle".into(),
            bundle.display().to_string(),
            "--image-path".into(),
            opts.image_path.clone(),
        ];
        if !opts.work_path.is_empty() {
            args.extend(["--work-path".into(), opts.work_path.clone()]);
        }
        if self.settings.no_pivot_root {
            args.push("--no-pivot".into());
        }
        args.extend(criu_flags(opts));
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        self.run_process(&refs, id, pid_file, console_socket, stdio)
            .await
    }

    /// `kill [--all] <id> <signal>`.
    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<(), RuntimeError> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.simple(&args).await
    }

    /// `delete [--force] <id>`.
    pub async fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.simple(&args).await
    }

    /// `ps --format json <id>`: the pids in the container.
    pub async fn ps(&self, id: &str) -> Result<Vec<i32>, RuntimeError> {
        let out = self
            .run(
                self.command(&["ps", "--format", "json", id]),
                &format!("ps {id}"),
                true,
            )
            .await?;
        serde_json::from_slice::<Option<Vec<i32>>>(&out)
            .map(Option::unwrap_or_default)
            .map_err(|e| self.error(&format!("ps {id}"), format!("parsing output: {e}")))
    }

    async fn simple(&self, args: &[&str]) -> Result<(), RuntimeError> {
        let action = args.join(" ");
        self.run(self.command(args), &action, true).await.map(drop)
    }

    fn error(&self, action: &str, message: String) -> RuntimeError {
        // runc and crun both say "container ... does not exist" for an unknown id.
        let not_found = message.contains("does not exist");
        RuntimeError {
            action: format!("{} {action}", self.settings.binary_name),
            message,
            not_found,
        }
    }

    /// Spawns the command, waits for its exit through the reaper, and turns a failure into the
    /// runtime's own message. With `capture`, stdout is returned and stderr kept for errors.
    async fn run(
        &self,
        mut cmd: Command,
        action: &str,
        capture: bool,
    ) -> Result<Vec<u8>, RuntimeError> {
        // Only what this invocation appends to the shared log.json explains its failure.
        let mut log = RuntimeLogFollower::from_end(&self.log).ok();
        if capture {
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
        let mut child = cmd.spawn().map_err(|e| {
            let msg = if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "runtime binary {:?} not found: {e}",
                    self.settings.binary_name
                )
            } else {
                format!("spawning {:?}: {e}", self.settings.binary_name)
            };
            RuntimeError {
                not_found: false,
                ..self.error(action, msg)
            }
        })?;
        // Registered before any await: the reaper cannot take this exit from us.
        let exited = Reaper::global().subscribe(child.id() as i32);
        // The command's stdio ends that belong to the container must be closed here, or the
        // container's pipes never see EOF.
        drop(cmd);
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        if capture {
            // Both at once: a runtime that fills one pipe while we wait on the other would hang.
            let out = child.stdout.take().map(read_all);
            let err = child.stderr.take().map(read_all);
            (stdout, stderr) = tokio::join!(
                async {
                    match out {
                        Some(f) => f.await,
                        None => Vec::new(),
                    }
                },
                async {
                    match err {
                        Some(f) => f.await,
                        None => Vec::new(),
                    }
                }
            );
        }
        let pid = child.id();
        let code: ExitCode = wait_noting_slow(exited, action, pid, SLOW_RUNTIME_COMMAND)
            .await
            .map_err(|_| self.error(action, "lost the runtime's exit status".to_string()))?;
        let lines = log
            .as_mut()
            .and_then(|f| f.drain().ok())
            .unwrap_or_default();
        self.keep_records(&lines, pid);
        if code == 0 {
            return Ok(stdout);
        }
        let message = Some(lines)
            .and_then(|lines| {
                lines
                    .iter()
                    .rev()
                    .find(|l| matches!(l.level, Level::Error | Level::Fatal))
                    .map(|l| l.message_with_error())
            })
            .or_else(|| {
                let s = String::from_utf8_lossy(&stderr).trim().to_string();
                (!s.is_empty()).then_some(s)
            })
            .unwrap_or_else(|| format!("exited with status {code}"));
        Err(self.error(action, message))
    }
}

/// One line of the runtime's log.json as a runtime-log record about container `id`, stamped
/// with the runtime's own time when it is precise; a coarser one (runc 1.1 writes whole seconds)
/// would sort the line out of order beside the shim's nanosecond-stamped lines, so the record
/// then carries the time it was read as `timestamp` and the runtime's as `runtime_time`.
fn runtime_record(line: &RuntimeLogLine, component: &str, pid: u32, id: &str) -> RuntimeRecord {
    let level = EventLevel::from_foreign(line.level.as_str()).unwrap_or(EventLevel::Info);
    let mut rec = RuntimeRecord::new(level, component, line.msg.clone()).with_pid(pid);
    let precise = line
        .timestamp()
        .filter(|_| !line.time_is_coarse())
        .and_then(|t| Timestamp::from_system_time(t).ok());
    match (precise, &line.time) {
        (Some(t), _) => rec.timestamp = t,
        (None, Some(raw)) => rec = rec.with_field("runtime_time", raw.clone()),
        (None, None) => {}
    }
    if let Some(err) = line.fields.get("error").and_then(|v| v.as_str()) {
        rec = rec.with_error(err);
    }
    if !id.is_empty() {
        rec = rec.with_field("container_id", id);
    }
    rec
}

/// A runtime command still running after this long is named in the shim's log (once a
/// period): a hung `runc exec` otherwise leaves only a Start that never answers.
const SLOW_RUNTIME_COMMAND: std::time::Duration = std::time::Duration::from_secs(10);

/// Waits for the runtime command's exit; while it takes longer than `period`, logs a warning
/// naming the command and its pid each period. It never gives up: killing the runtime
/// mid-operation could leave the container half made.
async fn wait_noting_slow(
    mut exited: tokio::sync::oneshot::Receiver<ExitCode>,
    action: &str,
    pid: u32,
    period: std::time::Duration,
) -> Result<ExitCode, tokio::sync::oneshot::error::RecvError> {
    let started = tokio::time::Instant::now();
    loop {
        match tokio::time::timeout(period, &mut exited).await {
            Ok(r) => return r,
            Err(_) => log::warn!(
                "runtime command {action} (pid {pid}) still running after {:?}",
                started.elapsed()
            ),
        }
    }
}

async fn read_all<T: Into<std::os::fd::OwnedFd>>(pipe: T) -> Vec<u8> {
    let mut buf = Vec::new();
    if let Ok(mut rx) = tokio::net::unix::pipe::Receiver::from_owned_fd(pipe.into()) {
        let _ = rx.read_to_end(&mut buf).await;
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> RuntimeLogLine {
        RuntimeLogLine::parse(text.as_bytes()).expect("a line")
    }

    #[test]
    fn a_slow_runtime_command_is_waited_for_past_its_warnings() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (tx, rx) = tokio::sync::oneshot::channel();
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(60)).await;
                let _ = tx.send(3);
            });
            let period = std::time::Duration::from_millis(10);
            assert_eq!(wait_noting_slow(rx, "exec c1", 9, period).await, Ok(3));
            let (tx, rx) = tokio::sync::oneshot::channel::<ExitCode>();
            drop(tx);
            assert!(wait_noting_slow(rx, "exec c1", 9, period).await.is_err());
        });
    }

    #[test]
    fn runc_lines_name_the_container_and_keep_a_coarse_time_apart() {
        let before = std::time::SystemTime::now();
        let l = line(r#"{"level":"error","msg":"exec failed","time":"2024-05-01T12:00:00Z"}"#);
        let rec = runtime_record(&l, "runc", 7, "c1");
        assert_eq!(rec.extra.get("container_id"), Some(&"c1".into()));
        assert_eq!(
            rec.extra.get("runtime_time"),
            Some(&"2024-05-01T12:00:00Z".into())
        );
        assert!(rec.timestamp.to_system_time() >= before, "{rec:?}");
        assert_eq!(rec.pid, Some(7));

        let l = line(
            r#"{"level":"warning","msg":"m","time":"2024-05-01T12:00:00.123456789Z","error":"e"}"#,
        );
        let rec = runtime_record(&l, "crun", 7, "c1");
        assert_eq!(rec.timestamp.to_string(), "2024-05-01T12:00:00.123456789Z");
        assert!(rec.extra.get("runtime_time").is_none(), "{rec:?}");
        assert_eq!(rec.error.as_deref(), Some("e"));
    }
}
