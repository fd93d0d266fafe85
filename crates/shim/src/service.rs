//! The ttrpc Task service (`containerd.task.v2.Task`) that containerd drives.
//!
//! Methods that have not landed yet answer UNIMPLEMENTED: the generated defaults answer
//! NOT_FOUND, which containerd would take for "no such task".

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::oci::{CheckpointOptions, ProcessDetails};
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext};
use scribe_events::{ContainerEvent, ContainerRecord, ContainerStatus, Publisher, RuntimeLog};
use scribe_io::binary::DEFAULT_STOP_GRACE;
use scribe_io::console::ConsoleSocket;
use scribe_io::jsonfile::{JsonFileWriter, TagInfo};
use scribe_io::stdio::{JsonLog, Relay, StdioSpec};
use scribe_io::DEFAULT_MAX_LINE;
use tokio::sync::Notify;

use crate::cgroups::{memory_figures, ContainerCgroup, OomWatcher};
use crate::container::{Container, Lifecycle, PendingRestore};
use crate::jsonreport::RuntimeLogReporter;
use crate::logconfig::{self, SpecInfo};
use crate::mount::{mount_all, unmount_all, MountSpec};
use crate::options::Settings;
use crate::process::{Exit, Process, Status, StdioPaths};
use crate::reaper::Reaper;
use crate::records::Recorder;
use crate::runtime::{CheckpointOpts, ProcessStdio, Runtime, RuntimeError};

/// How long a process's output may keep flowing after it exited before TaskExit is published
/// anyway. Only a stray grandchild holding the stdio pipes open makes this wait; the copy goes on
/// after the deadline, so its bytes still arrive, just after the exit event.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How long the init's TaskExit waits for exec processes to report their exits; after that they
/// are killed (they outlive the init only when the pid namespace is shared with the host).
const EXEC_EXIT_LIMIT: Duration = Duration::from_secs(5);
/// The `Any` type of the per-process details in a Pids reply.
const PROCESS_DETAILS_TYPE: &str = "containerd.runc.v1.ProcessDetails";
/// Longest container id accepted (NAME_MAX: it becomes a directory name).
const MAX_ID_LEN: usize = 255;

type Result<T> = std::result::Result<T, ttrpc::Error>;

fn status(code: ttrpc::Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn runtime_error(id: &str, e: RuntimeError) -> ttrpc::Error {
    let code = if e.not_found {
        ttrpc::Code::NOT_FOUND
    } else {
        ttrpc::Code::UNKNOWN
    };
    status(code, format!("container {id}: {e}"))
}

fn timestamp(t: SystemTime) -> Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// Rejects ids that could escape a directory or are not a single path component.
pub fn validate_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty() {
        return Err("container id is empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("container id is longer than {MAX_ID_LEN} bytes"));
    }
    if id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(format!("container id {id:?} is not a valid path component"));
    }
    Ok(())
}

/// The shim's Task service: every container this shim serves.
pub struct Service {
    namespace: String,
    publisher: Publisher,
    containers: Mutex<HashMap<String, Arc<Container>>>,
    shutdown: Arc<Notify>,
}

/// What Create found out before asking the runtime.
struct Prepared {
    bundle: PathBuf,
    settings: Settings,
    spec: SpecInfo,
    logs: logconfig::LogConfig,
    recorder: Arc<Recorder>,
    runtime_log: Option<Arc<RuntimeLog>>,
}

/// The message of a ttrpc error, for records.
fn error_text(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => s.message.clone(),
        other => other.to_string(),
    }
}

fn read_pid(path: &Path) -> std::result::Result<u32, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|e| format!("parsing pid in {}: {e}", path.display()))
}

/// Opens the process's stdio and turns the container ends into what the runtime inherits.
/// `owner` (the runc options' io_uid/io_gid) is given to those ends, so that a process in a
/// user namespace can reopen its own stdio (`/dev/stdout`); the ends are always pipes the shim
/// made (its own, or a logging binary's), never containerd's FIFOs or a log file.
async fn open_stdio(
    id: &str,
    namespace: &str,
    stdio: &StdioPaths,
    json: Option<Arc<JsonLog>>,
    owner: (u32, u32),
) -> Result<(ProcessStdio, Relay)> {
    let spec = StdioSpec {
        stdin: &stdio.stdin,
        stdout: &stdio.stdout,
        stderr: &stdio.stderr,
        id,
        namespace,
    };
    let (ends, relay) = Relay::start(&spec, json).await.map_err(|e| {
        status(
            ttrpc::Code::INTERNAL,
            format!("container {id}: setting up stdio: {e}"),
        )
    })?;
    if owner != (0, 0) {
        for (name, fd) in [
            ("stdin", &ends.stdin),
            ("stdout", &ends.stdout),
            ("stderr", &ends.stderr),
        ] {
            let Some(fd) = fd else { continue };
            let (uid, gid) = owner;
            nix::unistd::fchown(
                std::os::fd::AsRawFd::as_raw_fd(fd),
                Some(nix::unistd::Uid::from_raw(uid)),
                Some(nix::unistd::Gid::from_raw(gid)),
            )
            .map_err(|e| {
                status(
                    ttrpc::Code::INTERNAL,
                    format!("container {id}: fchown {uid}:{gid} of the {name} pipe: {e}"),
                )
            })?;
        }
    }
    let to_stdio = |fd: Option<std::os::fd::OwnedFd>| {
        fd.map(Into::into).unwrap_or_else(std::process::Stdio::null)
    };
    Ok((
        ProcessStdio {
            stdin: to_stdio(ends.stdin),
            stdout: to_stdio(ends.stdout),
            stderr: to_stdio(ends.stderr),
        },
        relay,
    ))
}

/// What a Create from a checkpoint restores: containerd unpacked the checkpoint's CRIU images
/// into `req.checkpoint`; CRIU's work directory comes from the runc options (`criu_work_path`),
/// else the runtime's default (the image directory).
fn restore_options(
    id: &str,
    req: &api::CreateTaskRequest,
    settings: &crate::options::Settings,
) -> Result<CheckpointOpts> {
    let dir = Path::new(&req.checkpoint);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!(
                    "container {id}: checkpoint {} is not a directory",
                    dir.display()
                ),
            ))
        }
        Err(e) => {
            return Err(status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("container {id}: checkpoint {}: {e}", dir.display()),
            ))
        }
    }
    Ok(CheckpointOpts {
        image_path: req.checkpoint.clone(),
        work_path: settings.criu_work_path.clone(),
        terminal: req.terminal,
        ..Default::default()
    })
}

/// A process's stdio while the runtime creates it: either pipes and their relay, or (with a
/// terminal) the console socket the runtime will send the pty master to.
pub(crate) enum PendingIo {
    Pipes(Relay),
    Console {
        socket: ConsoleSocket,
        json: Option<Arc<JsonLog>>,
    },
}

impl PendingIo {
    /// Sets up what the runtime needs for this process's stdio.
    async fn open(
        id: &str,
        namespace: &str,
        stdio: &StdioPaths,
        json: Option<Arc<JsonLog>>,
        owner: (u32, u32),
    ) -> Result<(ProcessStdio, PendingIo)> {
        if stdio.terminal {
            let socket = ConsoleSocket::new().map_err(|e| {
                status(
                    ttrpc::Code::INTERNAL,
                    format!("container {id}: console socket: {e}"),
                )
            })?;
            let null = ProcessStdio {
                stdin: std::process::Stdio::null(),
                stdout: std::process::Stdio::null(),
                stderr: std::process::Stdio::null(),
            };
            return Ok((null, PendingIo::Console { socket, json }));
        }
        let (child, relay) = open_stdio(id, namespace, stdio, json, owner).await?;
        Ok((child, PendingIo::Pipes(relay)))
    }

    fn console_path(&self) -> Option<&Path> {
        match self {
            PendingIo::Console { socket, .. } => Some(socket.path()),
            PendingIo::Pipes(_) => None,
        }
    }

    /// After the runtime succeeded: the relay that serves the process.
    fn finish(self, id: &str, namespace: &str, stdio: &StdioPaths) -> Result<Relay> {
        match self {
            PendingIo::Pipes(relay) => Ok(relay),
            PendingIo::Console { socket, json } => {
                let spec = StdioSpec {
                    stdin: &stdio.stdin,
                    stdout: &stdio.stdout,
                    stderr: &stdio.stderr,
                    id,
                    namespace,
                };
                socket
                    .receive_master()
                    .and_then(|master| Relay::start_console(master, &spec, json))
                    .map_err(|e| {
                        status(
                            ttrpc::Code::INTERNAL,
                            format!("container {id}: terminal: {e}"),
                        )
                    })
            }
        }
    }
}

impl Service {
    /// A service publishing to containerd through `publisher`; `shutdown` is notified when the
    /// last container is gone and containerd asked the shim to exit.
    pub fn new(namespace: String, publisher: Publisher, shutdown: Arc<Notify>) -> Service {
        Service {
            namespace,
            publisher,
            containers: Mutex::new(HashMap::new()),
            shutdown,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Container>>> {
        self.containers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn container(&self, id: &str) -> Result<Arc<Container>> {
        self.table()
            .get(id)
            .cloned()
            .ok_or_else(|| status(ttrpc::Code::NOT_FOUND, format!("container {id} not found")))
    }

    fn process(&self, id: &str, exec_id: &str) -> Result<(Arc<Container>, Arc<Process>)> {
        let c = self.container(id)?;
        let p = c.process(exec_id).ok_or_else(|| {
            status(
                ttrpc::Code::NOT_FOUND,
                format!("container {id}: exec {exec_id} not found"),
            )
        })?;
        Ok((c, p))
    }

    fn settings_for(&self, bundle: &Path, req: &api::CreateTaskRequest) -> Result<Settings> {
        let mut settings = Settings::load(bundle)
            .map_err(|e| status(ttrpc::Code::INVALID_ARGUMENT, e))?
            .unwrap_or_else(|| Settings::defaults(&self.namespace));
        if let Some(any) = req.options.as_ref() {
            settings.apply_any(any).map_err(|e| {
                status(
                    ttrpc::Code::INVALID_ARGUMENT,
                    format!("container {}: {e}", req.id),
                )
            })?;
            settings
                .save(bundle)
                .map_err(|e| status(ttrpc::Code::INTERNAL, e))?;
        }
        Ok(settings)
    }

    /// Everything Create needs before the runtime runs; failures here leave nothing behind.
    fn prepare(&self, req: &api::CreateTaskRequest) -> Result<Prepared> {
        let id = req.id.as_str();
        validate_id(id).map_err(|e| status(ttrpc::Code::INVALID_ARGUMENT, e))?;
        let bundle = PathBuf::from(&req.bundle);
        if !bundle.is_dir() {
            return Err(status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!(
                    "container {id}: bundle {} is not a directory",
                    bundle.display()
                ),
            ));
        }
        let mut settings = self.settings_for(&bundle, req)?;
        let spec = SpecInfo::read(&bundle);
        let logs = logconfig::resolve(&settings, &spec).map_err(|e| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("container {id}: {e}"),
            )
        })?;
        // From here on the shim's own lines about this container also go to its runtime.log.
        let runtime_log = if logs.runtime_log {
            match RuntimeLog::open(&logs.root, &self.namespace, id) {
                Ok(l) => {
                    let l = Arc::new(l);
                    crate::logger::attach(id, l.clone());
                    Some(l)
                }
                Err(e) => {
                    log::error!(container = id, error:% = e; "runtime.log disabled");
                    None
                }
            }
        } else {
            None
        };
        let recorder = Arc::new(Recorder::open(
            logs.container_log,
            &logs.root,
            &self.namespace,
            id,
        ));
        if spec.wants_systemd_cgroup() && !settings.systemd_cgroup {
            log::info!(container = id; "systemd cgroups path: using --systemd-cgroup");
            settings.systemd_cgroup = true;
            // `delete` after a shim crash must call the runtime the same way.
            settings
                .save(&bundle)
                .map_err(|e| status(ttrpc::Code::INTERNAL, e))?;
        }
        Ok(Prepared {
            bundle,
            settings,
            spec,
            logs,
            recorder,
            runtime_log,
        })
    }

    fn open_json_log(&self, id: &str, p: &Prepared) -> Result<Option<Arc<JsonLog>>> {
        let Some(opts) = &p.logs.json_file else {
            return Ok(None);
        };
        let fail = |e: String| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("container {id}: {e}"),
            )
        };
        let dir = scribe_events::container_log_dir(&p.logs.json_root, &self.namespace, id)
            .map_err(|e| fail(e.to_string()))?;
        let info = TagInfo {
            container_id: id.to_string(),
            container_name: id.to_string(),
            image_name: p.spec.image().unwrap_or_default(),
            image_id: String::new(),
            daemon_name: "scribe".to_string(),
        };
        let writer = JsonFileWriter::open(dir.join(format!("{id}-json.log")), opts, &info)
            .map_err(|e| fail(e.to_string()))?;
        let mut log = JsonLog::new(writer, DEFAULT_MAX_LINE);
        // Lost output is reported in runtime.log (and always in the shim's own log).
        if let Some(sink) = &p.runtime_log {
            log = log.with_reporter(Arc::new(RuntimeLogReporter::new(id, sink.clone())));
        }
        Ok(Some(Arc::new(log)))
    }

    async fn create_container(
        &self,
        req: &api::CreateTaskRequest,
        p: &Prepared,
    ) -> Result<Arc<Container>> {
        let id = req.id.as_str();
        let restore = if req.checkpoint.is_empty() {
            None
        } else {
            Some(restore_options(id, req, &p.settings)?)
        };
        if self.table().contains_key(id) {
            return Err(status(
                ttrpc::Code::ALREADY_EXISTS,
                format!("container {id} already exists in this shim"),
            ));
        }
        let bundle = p.bundle.clone();
        let runtime = Runtime::new(p.settings.clone(), &bundle).with_records(p.runtime_log.clone());
        let json = self.open_json_log(id, p)?;
        let rootfs = bundle.join("rootfs");
        let mounts: Vec<MountSpec> = req
            .rootfs
            .iter()
            .map(|m| MountSpec {
                kind: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        if !mounts.is_empty() {
            std::fs::create_dir_all(&rootfs).map_err(|e| {
                status(
                    ttrpc::Code::INTERNAL,
                    format!("creating {}: {e}", rootfs.display()),
                )
            })?;
            mount_all(&mounts, &rootfs)
                .map_err(|e| status(ttrpc::Code::INTERNAL, format!("container {id}: {e}")))?;
        }
        let undo_mount = || {
            if !mounts.is_empty() {
                if let Err(e) = unmount_all(&rootfs) {
                    log::error!(container = id, error:% = e; "unmounting the rootfs");
                }
            }
        };
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let (child_stdio, pending) =
            match PendingIo::open(id, &self.namespace, &stdio, json, p.settings.io_owner()).await {
                Ok(v) => v,
                Err(e) => {
                    undo_mount();
                    return Err(e);
                }
            };
        let life = Lifecycle {
            recorder: p.recorder.clone(),
            image: p.spec.image(),
            command: p.spec.args.clone(),
        };
        let init = Arc::new(Process::new(String::new(), stdio, None));
        let (pid, restore) = match restore {
            // From a checkpoint: the runtime restores the init at Start; until then there is
            // no process (pid 0, as containerd's runc shim reports).
            Some(opts) => (
                0,
                Some(PendingRestore {
                    opts,
                    stdio: child_stdio,
                    io: pending,
                }),
            ),
            None => {
                let pid_file = bundle.join("init.pid");
                let console = pending.console_path().map(Path::to_path_buf);
                let created = match runtime
                    .create(id, &bundle, &pid_file, child_stdio, console.as_deref())
                    .await
                {
                    Ok(()) => read_pid(&pid_file)
                        .map_err(|e| status(ttrpc::Code::INTERNAL, format!("container {id}: {e}")))
                        .and_then(|pid| {
                            Ok((pid, pending.finish(id, &self.namespace, &init.stdio)?))
                        }),
                    Err(e) => Err(runtime_error(id, e)),
                };
                let (pid, relay) = match created {
                    Ok(v) => v,
                    Err(e) => {
                        // The runtime may have left a half-created container behind.
                        let _ = runtime.delete(id, true).await;
                        undo_mount();
                        return Err(e);
                    }
                };
                init.set_pid(pid);
                *init.relay.lock().await = relay;
                (pid, None)
            }
        };
        let container = Arc::new(Container::new(
            id.to_string(),
            bundle,
            runtime,
            !mounts.is_empty(),
            init,
            life,
            restore,
        ));
        self.table().insert(id.to_string(), container.clone());
        if pid != 0 {
            self.watch_init(&container, pid);
        }
        Ok(container)
    }

    /// Once the runtime made the init (created or restored): watch for its exit, find its
    /// cgroups, and arm the OOM watcher.
    fn watch_init(&self, c: &Arc<Container>, pid: u32) {
        let exited = Reaper::global().subscribe(pid as i32);
        match ContainerCgroup::of_pid(pid as i32) {
            Ok(cg) => c.set_cgroup(cg),
            Err(e) => log::warn!(
                container = c.id.as_str(), error:% = e;
                "no cgroup found for init pid {pid}: no OOM events or stats"
            ),
        }
        self.arm_oom_watch(c);
        tokio::spawn(watch_exit(
            c.clone(),
            c.init.clone(),
            exited,
            self.publisher.clone(),
        ));
    }

    /// Start of a container created from a checkpoint: the runtime restores the init (CRIU)
    /// with the stdio prepared at Create; returns its pid.
    async fn restore_init(&self, c: &Arc<Container>, r: PendingRestore) -> Result<u32> {
        let id = c.id.as_str();
        let pid_file = c.bundle.join("init.pid");
        let console = r.io.console_path().map(Path::to_path_buf);
        c.runtime
            .restore(
                id,
                &c.bundle,
                &pid_file,
                r.stdio,
                console.as_deref(),
                &r.opts,
            )
            .await
            .map_err(|e| runtime_error(id, e))?;
        let pid = read_pid(&pid_file)
            .map_err(|e| status(ttrpc::Code::INTERNAL, format!("container {id}: {e}")))?;
        c.init.set_pid(pid);
        match r.io.finish(id, &self.namespace, &c.init.stdio) {
            // The relay is in place before the exit watcher starts, so the exit drains it.
            Ok(relay) => *c.init.relay.lock().await = relay,
            Err(e) => {
                // Running without its stdio: stop it, and still report its exit.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                self.watch_init(c, pid);
                return Err(e);
            }
        }
        self.watch_init(c, pid);
        log::info!(
            container = id;
            "restored from {}, init pid {pid}",
            r.opts.image_path
        );
        Ok(pid)
    }

    /// Logs a failed Create and stops routing the shim's lines to the runtime.log of a container
    /// that did not come to be (a duplicate id keeps the existing container's route).
    fn create_failed(&self, id: &str, e: ttrpc::Error) -> ttrpc::Error {
        log::error!(container = id, error:% = error_text(&e); "create failed");
        if !self.table().contains_key(id) {
            crate::logger::detach(id);
        }
        e
    }

    async fn pause_or_resume(&self, c: &Arc<Container>, pause: bool) -> Result<()> {
        let init = &c.init;
        let _op = init.op.lock().await;
        let (want, event) = if pause {
            (Status::Running, ContainerEvent::Pause)
        } else {
            (Status::Paused, ContainerEvent::Resume)
        };
        if init.status() != want {
            let e = status(
                ttrpc::Code::FAILED_PRECONDITION,
                format!(
                    "container {}: cannot {} a {:?} container",
                    c.id,
                    event.as_str(),
                    init.status()
                ),
            );
            c.life
                .recorder
                .record(ContainerRecord::failed(event, &c.id, error_text(&e)));
            return Err(e);
        }
        let done = if pause {
            c.runtime.pause(&c.id).await
        } else {
            c.runtime.resume(&c.id).await
        };
        if let Err(e) = done {
            let e = runtime_error(&c.id, e);
            c.life
                .recorder
                .record(ContainerRecord::failed(event, &c.id, error_text(&e)));
            return Err(e);
        }
        init.set_paused(pause);
        if pause {
            c.life.recorder.record(ContainerRecord::pause(&c.id));
            self.publisher.publish(
                topics::TASK_PAUSED_EVENT_TOPIC,
                &ev::TaskPaused {
                    container_id: c.id.clone(),
                    ..Default::default()
                },
            );
        } else {
            c.life.recorder.record(ContainerRecord::resume(&c.id));
            self.publisher.publish(
                topics::TASK_RESUMED_EVENT_TOPIC,
                &ev::TaskResumed {
                    container_id: c.id.clone(),
                    ..Default::default()
                },
            );
        }
        Ok(())
    }

    /// Checkpoints the container through the runtime (CRIU) and publishes TaskCheckpointed.
    async fn checkpoint_container(
        &self,
        c: &Arc<Container>,
        req: &api::CheckpointTaskRequest,
    ) -> Result<()> {
        let id = &c.id;
        let settings = c.runtime.settings();
        let mut opts = CheckpointOpts {
            image_path: if req.path.is_empty() {
                settings.criu_image_path.clone()
            } else {
                req.path.clone()
            },
            work_path: settings.criu_work_path.clone(),
            ..Default::default()
        };
        if let Some(any) = req.options.as_ref().filter(|a| !a.value.is_empty()) {
            let o = CheckpointOptions::parse_from_bytes(&any.value).map_err(|e| {
                status(
                    ttrpc::Code::INVALID_ARGUMENT,
                    format!("container {id}: checkpoint options ({}): {e}", any.type_url),
                )
            })?;
            if !o.image_path.is_empty() {
                opts.image_path = o.image_path;
            }
            if !o.work_path.is_empty() {
                opts.work_path = o.work_path;
            }
            opts.exit = o.exit;
            opts.open_tcp = o.open_tcp;
            opts.external_unix_sockets = o.external_unix_sockets;
            opts.terminal = o.terminal;
            opts.file_locks = o.file_locks;
            opts.empty_namespaces = o.empty_namespaces;
            opts.cgroups_mode = o.cgroups_mode;
        }
        if opts.image_path.is_empty() {
            return Err(status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("container {id}: checkpoint needs an image path"),
            ));
        }
        if c.init.status() != Status::Running && c.init.status() != Status::Paused {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                format!(
                    "container {id}: cannot checkpoint a {:?} container",
                    c.init.status()
                ),
            ));
        }
        c.runtime
            .checkpoint(id, &opts)
            .await
            .map_err(|e| runtime_error(id, e))?;
        self.publisher.publish(
            topics::TASK_CHECKPOINTED_EVENT_TOPIC,
            &ev::TaskCheckpointed {
                container_id: id.clone(),
                checkpoint: opts.image_path.clone(),
                ..Default::default()
            },
        );
        Ok(())
    }

    /// Applies the LinuxResources JSON carried by an Update through the runtime.
    async fn update_resources(
        &self,
        c: &Arc<Container>,
        req: &api::UpdateTaskRequest,
    ) -> Result<()> {
        let id = &c.id;
        let any = req.resources.as_ref().ok_or_else(|| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("container {id}: update carries no resources"),
            )
        })?;
        let resources: serde_json::Value = serde_json::from_slice(&any.value).map_err(|e| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!(
                    "container {id}: update resources ({}) are not LinuxResources JSON: {e}",
                    any.type_url
                ),
            )
        })?;
        if !resources.is_object() {
            return Err(status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("container {id}: update resources must be a JSON object"),
            ));
        }
        if c.init.status() == Status::Stopped {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                format!("container {id}: cannot update a stopped container"),
            ));
        }
        let file = c.bundle.join("update-resources.json");
        std::fs::write(&file, &any.value).map_err(|e| {
            status(
                ttrpc::Code::INTERNAL,
                format!("container {id}: writing {}: {e}", file.display()),
            )
        })?;
        let result = c.runtime.update(id, &file).await;
        let _ = std::fs::remove_file(&file);
        result.map_err(|e| runtime_error(id, e))
    }

    /// Starts watching the container's memory cgroup for OOM kills.
    fn arm_oom_watch(&self, c: &Arc<Container>) {
        let Some(dir) = c.cgroup().and_then(|cg| cg.memory_dir()) else {
            return;
        };
        match OomWatcher::arm(dir) {
            Ok(watcher) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                c.set_oom_final(tx);
                tokio::spawn(watch_oom(c.clone(), watcher, rx, self.publisher.clone()));
            }
            Err(e) => log::warn!(container = c.id.as_str(), error:% = e; "OOM events unavailable"),
        }
    }

    async fn start_init(&self, c: &Arc<Container>) -> Result<u32> {
        let init = &c.init;
        let _op = init.op.lock().await;
        if init.status() != Status::Created {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                format!(
                    "container {} cannot be started: it is {:?}",
                    c.id,
                    init.status()
                ),
            ));
        }
        let started = match c.take_restore() {
            Some(r) => self.restore_init(c, r).await.map(drop),
            None => c
                .runtime
                .start(&c.id)
                .await
                .map_err(|e| runtime_error(&c.id, e)),
        };
        if let Err(e) = started {
            c.life.recorder.record(ContainerRecord::failed(
                ContainerEvent::Start,
                &c.id,
                error_text(&e),
            ));
            return Err(e);
        }
        init.set_running();
        c.life.recorder.record(ContainerRecord::start(
            &c.id,
            init.pid(),
            c.life.image.clone(),
            c.life.command.clone(),
        ));
        self.publisher.publish(
            topics::TASK_START_EVENT_TOPIC,
            &ev::TaskStart {
                container_id: c.id.clone(),
                pid: init.pid(),
                ..Default::default()
            },
        );
        Ok(init.pid())
    }

    async fn start_exec(&self, c: &Arc<Container>, p: &Arc<Process>) -> Result<u32> {
        let _op = p.op.lock().await;
        if p.status() != Status::Created {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                format!(
                    "container {}: exec {} cannot be started: it is {:?}",
                    c.id,
                    p.exec_id,
                    p.status()
                ),
            ));
        }
        if c.init.status() != Status::Running {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                format!(
                    "container {}: cannot start exec {}: the container's init is {:?}",
                    c.id,
                    p.exec_id,
                    c.init.status()
                ),
            ));
        }
        let fail = |e: ttrpc::Error| {
            c.life.recorder.record(
                ContainerRecord::failed(ContainerEvent::ExecStarted, &c.id, error_text(&e))
                    .with_exec_id(p.exec_id.clone()),
            );
            e
        };
        let (child_stdio, pending) = PendingIo::open(
            &c.id,
            &self.namespace,
            &p.stdio,
            None,
            c.runtime.settings().io_owner(),
        )
        .await
        .map_err(fail)?;
        let spec_file = p.spec_file.clone().unwrap_or_default();
        let pid_file = c.bundle.join(format!("{}.pid", p.exec_id));
        let console = pending.console_path().map(Path::to_path_buf);
        let started = match c
            .runtime
            .exec(
                &c.id,
                &spec_file,
                &pid_file,
                child_stdio,
                console.as_deref(),
            )
            .await
        {
            Ok(()) => read_pid(&pid_file)
                .map_err(|e| status(ttrpc::Code::INTERNAL, format!("container {}: {e}", c.id)))
                .and_then(|pid| Ok((pid, pending.finish(&c.id, &self.namespace, &p.stdio)?))),
            Err(e) => Err(runtime_error(&c.id, e)),
        };
        let _ = std::fs::remove_file(&pid_file);
        let (pid, relay) = started.map_err(fail)?;
        let exited = Reaper::global().subscribe(pid as i32);
        p.set_pid(pid);
        *p.relay.lock().await = relay;
        p.set_running();
        c.exec_started();
        c.life
            .recorder
            .record(ContainerRecord::exec_started(&c.id, p.exec_id.clone(), pid));
        self.publisher.publish(
            topics::TASK_EXEC_STARTED_EVENT_TOPIC,
            &ev::TaskExecStarted {
                container_id: c.id.clone(),
                exec_id: p.exec_id.clone(),
                pid,
                ..Default::default()
            },
        );
        tokio::spawn(watch_exit(
            c.clone(),
            p.clone(),
            exited,
            self.publisher.clone(),
        ));
        Ok(pid)
    }

    /// Delivers a Kill request's signal: to the init through the runtime, to an exec by pid.
    async fn signal(&self, c: &Container, p: &Process, req: &api::KillRequest) -> Result<()> {
        let finished = || {
            status(
                ttrpc::Code::NOT_FOUND,
                format!("container {}: process already finished", c.id),
            )
        };
        if p.status() == Status::Stopped {
            return Err(finished());
        }
        if !p.exec_id.is_empty() {
            // The runtime's kill only targets the init; an exec is signalled by pid.
            if p.status() == Status::Created {
                return Err(status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    format!("container {}: exec {} is not started", c.id, p.exec_id),
                ));
            }
            let sig = nix::sys::signal::Signal::try_from(req.signal as i32).map_err(|e| {
                status(
                    ttrpc::Code::INVALID_ARGUMENT,
                    format!("signal {}: {e}", req.signal),
                )
            })?;
            return match nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid() as i32), sig) {
                Ok(()) => Ok(()),
                Err(nix::Error::ESRCH) => Err(finished()),
                Err(e) => Err(status(
                    ttrpc::Code::UNKNOWN,
                    format!("container {}: kill exec {}: {e}", c.id, p.exec_id),
                )),
            };
        }
        match c.runtime.kill(&c.id, req.signal, req.all).await {
            Ok(()) => Ok(()),
            Err(_) if p.status() == Status::Stopped => Err(finished()),
            Err(e) => Err(runtime_error(&c.id, e)),
        }
    }
}

/// Stops a process's logging binary in the background (SIGTERM, SIGKILL after 12 s), as
/// containerd's shim does when the process is deleted.
async fn stop_logger(p: &Process) {
    if let Some(logger) = p.relay.lock().await.take_logger() {
        let exited = Reaper::global().subscribe(logger.pid());
        tokio::spawn(async move {
            let pid = logger.pid();
            let outcome = logger.stop(exited, DEFAULT_STOP_GRACE).await;
            log::debug!("logging binary pid {pid} stopped: {outcome:?}");
        });
    }
}

/// Hands freed heap pages back to the kernel. A shim sits idle for the life of its container;
/// what Create and Start allocated transiently (runtime output, spec parsing, protobuf
/// descriptors) would otherwise stay resident in glibc's heap. Measured here: the idle heap
/// went from 580 kB to 520 kB private.
fn release_free_memory() {
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// How log lines name a process: `init` or `exec <id>`.
fn process_name(p: &Process) -> String {
    if p.exec_id.is_empty() {
        "init".to_string()
    } else {
        format!("exec {}", p.exec_id)
    }
}

/// The container-log status word for a process's state.
fn record_status(p: &Process) -> ContainerStatus {
    match p.status() {
        Status::Created => ContainerStatus::Created,
        Status::Running => ContainerStatus::Running,
        Status::Paused => ContainerStatus::Paused,
        Status::Stopped => ContainerStatus::Stopped,
    }
}

/// Publishes TaskOOM and writes the `oom` record.
fn publish_oom(c: &Container, dir: &Path, publisher: &Publisher) {
    let (peak, limit) = memory_figures(dir);
    log::warn!(container = c.id.as_str(); "OOM kill in {}", dir.display());
    publisher.publish(
        topics::TASK_OOM_EVENT_TOPIC,
        &ev::TaskOOM {
            container_id: c.id.clone(),
            ..Default::default()
        },
    );
    c.life
        .recorder
        .record(ContainerRecord::oom(&c.id, Some(c.init.pid()), peak, limit));
}

/// Publishes one TaskOOM per OOM kill the watcher sees, and a last check when the init exits.
async fn watch_oom(
    c: Arc<Container>,
    mut watcher: OomWatcher,
    mut final_check: tokio::sync::oneshot::Receiver<tokio::sync::oneshot::Sender<()>>,
    publisher: Publisher,
) {
    let dir = watcher.cgroup_dir().to_path_buf();
    // A read the watcher missed (the cgroup removed first) goes to the container's runtime.log.
    let note = |watcher: &mut OomWatcher| {
        if let Some(n) = watcher.take_note() {
            log::info!(container = c.id.as_str(); "OOM watch: {n}");
        }
    };
    loop {
        tokio::select! {
            event = watcher.next() => match event {
                Some(_) => {
                    note(&mut watcher);
                    publish_oom(&c, &dir, &publisher);
                }
                None => {
                    note(&mut watcher);
                    // The cgroup is gone; still answer the final check so the exit is not held up.
                    if let Ok(done) = final_check.await {
                        let _ = done.send(());
                    }
                    return;
                }
            },
            done = &mut final_check => {
                let oom = watcher.check_now();
                note(&mut watcher);
                if oom {
                    publish_oom(&c, &dir, &publisher);
                }
                if let Ok(done) = done {
                    let _ = done.send(());
                }
                return;
            }
        }
    }
}

/// Waits for a process's exit, lets its output drain, then publishes TaskExit and wakes waiters.
/// For the init, every exec's TaskExit is published first.
async fn watch_exit(
    c: Arc<Container>,
    p: Arc<Process>,
    exited: tokio::sync::oneshot::Receiver<u32>,
    publisher: Publisher,
) {
    // If the sender was dropped the exit status is unknowable; report it as a failure rather than
    // success (containerd's convention for a lost exit is 255).
    let code = exited.await.unwrap_or(255);
    let at = SystemTime::now();
    if !p.relay.lock().await.drain(OUTPUT_DRAIN_LIMIT).await {
        log::warn!(
            container = c.id.as_str();
            "{}: output still open {:?} after exit (a process outside the container holds it); publishing the exit",
            process_name(&p),
            OUTPUT_DRAIN_LIMIT
        );
    }
    let is_init = p.exec_id.is_empty();
    if is_init
        && tokio::time::timeout(EXEC_EXIT_LIMIT, c.execs_done())
            .await
            .is_err()
    {
        // Execs outlive the init only in a shared pid namespace: kill them so their exits are
        // reported before the init's.
        for e in c.exec_list() {
            if e.status() == Status::Running && e.pid() != 0 {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(e.pid() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        if tokio::time::timeout(EXEC_EXIT_LIMIT, c.execs_done())
            .await
            .is_err()
        {
            log::error!(
                container = c.id.as_str();
                "exec processes did not exit after the init; publishing the init's exit"
            );
        }
    }
    if is_init {
        // TaskOOM, if the init was OOM-killed, must precede its TaskExit.
        c.final_oom_check(Duration::from_secs(1)).await;
    }
    let _op = p.op.lock().await;
    publisher.publish(
        topics::TASK_EXIT_EVENT_TOPIC,
        &ev::TaskExit {
            container_id: c.id.clone(),
            id: if is_init {
                c.id.clone()
            } else {
                p.exec_id.clone()
            },
            pid: p.pid(),
            exit_status: code,
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        },
    );
    c.life.recorder.record(ContainerRecord::exit(
        &c.id,
        (!is_init).then(|| p.exec_id.clone()),
        p.pid(),
        code as i32,
        at,
    ));
    p.set_exited(Exit { code, at });
    if !is_init {
        c.exec_exited();
    }
}

fn state_of(p: &Process) -> api::Status {
    match p.status() {
        Status::Created => api::Status::CREATED,
        Status::Running => api::Status::RUNNING,
        Status::Paused => api::Status::PAUSED,
        Status::Stopped => api::Status::STOPPED,
    }
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse> {
        let prepared = match self.prepare(&req) {
            Ok(p) => p,
            Err(e) => return Err(self.create_failed(&req.id, e)),
        };
        let c = match self.create_container(&req, &prepared).await {
            Ok(c) => c,
            Err(e) => {
                prepared.recorder.record(ContainerRecord::failed(
                    ContainerEvent::Create,
                    &req.id,
                    error_text(&e),
                ));
                return Err(self.create_failed(&req.id, e));
            }
        };
        let pid = c.init.pid();
        c.life.recorder.record(ContainerRecord::create(&c.id, pid));
        let _op = c.init.op.lock().await;
        self.publisher.publish(
            topics::TASK_CREATE_EVENT_TOPIC,
            &ev::TaskCreate {
                container_id: c.id.clone(),
                bundle: req.bundle.clone(),
                rootfs: req.rootfs.clone(),
                io: MessageField::some(ev::TaskIO {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                    ..Default::default()
                }),
                checkpoint: req.checkpoint.clone(),
                pid,
                ..Default::default()
            },
        );
        log::info!(container = c.id.as_str(); "created, init pid {pid}");
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    async fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> Result<api::StartResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let started = if req.exec_id.is_empty() {
            self.start_init(&c).await
        } else {
            self.start_exec(&c, &p).await
        };
        let pid = started.inspect_err(|e| {
            log::error!(
                container = c.id.as_str(), error:% = error_text(e);
                "{} failed to start", process_name(&p)
            );
        })?;
        log::info!(container = c.id.as_str(); "{} started, pid {pid}", process_name(&p));
        release_free_memory();
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    async fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> Result<Empty> {
        let c = self.container(&req.id)?;
        let id = c.id.as_str();
        validate_id(&req.exec_id).map_err(|e| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("container {id}: exec id: {e}"),
            )
        })?;
        if c.init.status() == Status::Stopped {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                format!("container {id}: cannot exec in a stopped container"),
            ));
        }
        let spec = req.spec.as_ref().ok_or_else(|| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("container {id}: exec {} has no process spec", req.exec_id),
            )
        })?;
        serde_json::from_slice::<serde_json::Value>(&spec.value).map_err(|e| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!(
                    "container {id}: exec {} process spec is not JSON: {e}",
                    req.exec_id
                ),
            )
        })?;
        let spec_file = c.bundle.join(format!("exec-{}.json", req.exec_id));
        std::fs::write(&spec_file, &spec.value).map_err(|e| {
            status(
                ttrpc::Code::INTERNAL,
                format!("container {id}: writing {}: {e}", spec_file.display()),
            )
        })?;
        let p = Arc::new(Process::new(
            req.exec_id.clone(),
            StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            Some(spec_file),
        ));
        if !c.add_exec(p) {
            return Err(status(
                ttrpc::Code::ALREADY_EXISTS,
                format!("container {id}: exec {} already exists", req.exec_id),
            ));
        }
        c.life
            .recorder
            .record(ContainerRecord::exec_added(id, req.exec_id.clone()));
        self.publisher.publish(
            topics::TASK_EXEC_ADDED_EVENT_TOPIC,
            &ev::TaskExecAdded {
                container_id: c.id.clone(),
                exec_id: req.exec_id.clone(),
                ..Default::default()
            },
        );
        Ok(Empty::new())
    }

    async fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> Result<api::StateResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let exit = p.exit();
        Ok(api::StateResponse {
            id: if p.exec_id.is_empty() {
                c.id.clone()
            } else {
                p.exec_id.clone()
            },
            bundle: c.bundle.display().to_string(),
            pid: p.pid(),
            status: state_of(&p).into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: exit.map(|e| e.code).unwrap_or_default(),
            exited_at: exit.map(|e| timestamp(e.at)).into(),
            exec_id: p.exec_id.clone(),
            ..Default::default()
        })
    }

    async fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> Result<Empty> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        match self.signal(&c, &p, &req).await {
            Ok(()) => {
                log::debug!(
                    container = c.id.as_str();
                    "{}: sent signal {}{}", process_name(&p), req.signal,
                    if req.all { " to every process" } else { "" }
                );
                Ok(Empty::new())
            }
            Err(e) => {
                log::warn!(
                    container = c.id.as_str(), error:% = error_text(&e);
                    "{}: signal {} not delivered", process_name(&p), req.signal
                );
                Err(e)
            }
        }
    }

    async fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> Result<api::WaitResponse> {
        let (_, p) = self.process(&req.id, &req.exec_id)?;
        let exit = p.wait().await;
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn delete(
        &self,
        _: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> Result<api::DeleteResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        if p.status() == Status::Running {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                format!("container {}: cannot delete a running process", c.id),
            ));
        }
        stop_logger(&p).await;
        if !p.exec_id.is_empty() {
            c.remove_exec(&p.exec_id);
            let exit = p.exit();
            return Ok(api::DeleteResponse {
                pid: p.pid(),
                exit_status: exit.map(|e| e.code).unwrap_or_default(),
                exited_at: exit.map(|e| timestamp(e.at)).into(),
                ..Default::default()
            });
        }
        match c.runtime.delete(&c.id, false).await {
            Ok(()) => {}
            Err(e) if e.not_found => {}
            Err(_) => c
                .runtime
                .delete(&c.id, true)
                .await
                .or_else(|e| if e.not_found { Ok(()) } else { Err(e) })
                .map_err(|e| runtime_error(&c.id, e))?,
        }
        if p.pid() == 0 && p.exit().is_none() {
            // Created from a checkpoint and never (successfully) restored: no process ever ran.
            drop(c.take_restore());
            p.set_exited(Exit {
                code: 0,
                at: SystemTime::now(),
            });
        }
        // A created-but-never-started init is killed by the runtime's delete: wait until its exit
        // is published, so that TaskExit precedes TaskDelete.
        let exit = match tokio::time::timeout(Duration::from_secs(10), p.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                return Err(status(
                    ttrpc::Code::DEADLINE_EXCEEDED,
                    format!(
                        "container {}: init pid {} did not exit after delete",
                        c.id,
                        p.pid()
                    ),
                ))
            }
        };
        p.relay.lock().await.close_stdin();
        if c.rootfs_mounted {
            unmount_all(&c.bundle.join("rootfs"))
                .map_err(|e| status(ttrpc::Code::INTERNAL, format!("container {}: {e}", c.id)))?;
        }
        self.table().remove(&c.id);
        let _op = p.op.lock().await;
        self.publisher.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            &ev::TaskDelete {
                container_id: c.id.clone(),
                pid: p.pid(),
                exit_status: exit.code,
                exited_at: MessageField::some(timestamp(exit.at)),
                ..Default::default()
            },
        );
        c.life.recorder.record(ContainerRecord::delete(
            &c.id,
            Some(p.pid()),
            Some(exit.code as i32),
        ));
        log::info!(container = c.id.as_str(); "deleted");
        crate::logger::detach(&c.id);
        Ok(api::DeleteResponse {
            pid: p.pid(),
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let c = self.container(&req.id)?;
        let pids = c
            .runtime
            .ps(&c.id)
            .await
            .map_err(|e| runtime_error(&c.id, e))?;
        let execs: HashMap<u32, String> = c
            .exec_list()
            .into_iter()
            .filter(|e| e.pid() != 0)
            .map(|e| (e.pid(), e.exec_id.clone()))
            .collect();
        let mut processes = Vec::with_capacity(pids.len());
        for pid in pids {
            let pid = pid as u32;
            let mut info = api::ProcessInfo {
                pid,
                ..Default::default()
            };
            if let Some(exec_id) = execs.get(&pid) {
                let details = ProcessDetails {
                    exec_id: exec_id.clone(),
                    ..Default::default()
                };
                let value = details.write_to_bytes().map_err(|e| {
                    status(
                        ttrpc::Code::INTERNAL,
                        format!("encoding ProcessDetails: {e}"),
                    )
                })?;
                info.info = MessageField::some(Any {
                    type_url: PROCESS_DETAILS_TYPE.into(),
                    value,
                    ..Default::default()
                });
            }
            processes.push(info);
        }
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> Result<api::ConnectResponse> {
        let task_pid = self
            .table()
            .get(&req.id)
            .map(|c| c.init.pid())
            .unwrap_or_default();
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, _: api::ShutdownRequest) -> Result<Empty> {
        let served = self.table().len();
        if served == 0 {
            self.shutdown.notify_one();
        } else {
            log::info!("shutdown requested while serving {served} container(s): staying");
        }
        Ok(Empty::new())
    }

    async fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> Result<Empty> {
        let (_, p) = self.process(&req.id, &req.exec_id)?;
        if req.stdin {
            p.relay.lock().await.close_stdin();
        }
        Ok(Empty::new())
    }

    async fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> Result<Empty> {
        let c = self.container(&req.id)?;
        self.pause_or_resume(&c, true).await?;
        Ok(Empty::new())
    }

    async fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> Result<Empty> {
        let c = self.container(&req.id)?;
        self.pause_or_resume(&c, false).await?;
        Ok(Empty::new())
    }

    async fn checkpoint(&self, _: &TtrpcContext, req: api::CheckpointTaskRequest) -> Result<Empty> {
        let c = self.container(&req.id)?;
        let result = self.checkpoint_container(&c, &req).await;
        c.life.recorder.record(match &result {
            Ok(()) => ContainerRecord::checkpoint(&c.id, record_status(&c.init)),
            Err(e) => ContainerRecord::failed(ContainerEvent::Checkpoint, &c.id, error_text(e)),
        });
        result.map(|()| Empty::new())
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: api::ResizePtyRequest) -> Result<Empty> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        p.relay
            .lock()
            .await
            .resize(req.width, req.height)
            .map_err(|e| {
                status(
                    ttrpc::Code::FAILED_PRECONDITION,
                    format!("container {} {}: resize: {e}", c.id, p.exec_id),
                )
            })?;
        Ok(Empty::new())
    }

    async fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> Result<Empty> {
        let c = self.container(&req.id)?;
        let result = self.update_resources(&c, &req).await;
        c.life.recorder.record(match &result {
            Ok(()) => ContainerRecord::update(&c.id, record_status(&c.init)),
            Err(e) => ContainerRecord::failed(ContainerEvent::Update, &c.id, error_text(e)),
        });
        result.map(|()| Empty::new())
    }

    async fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> Result<api::StatsResponse> {
        let c = self.container(&req.id)?;
        let cg = c.cgroup().ok_or_else(|| {
            status(
                ttrpc::Code::NOT_FOUND,
                format!("container {}: no cgroup known for it", c.id),
            )
        })?;
        let any = cg.metrics_any().map_err(|e| {
            status(
                ttrpc::Code::INTERNAL,
                format!("container {}: reading cgroup metrics: {e}", c.id),
            )
        })?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_ids_are_refused() {
        assert!(validate_id("abc-1.2_3").is_ok());
        for bad in ["", ".", "..", "../x", "a/b", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_id(&"x".repeat(MAX_ID_LEN)).is_ok());
        assert!(validate_id(&"x".repeat(MAX_ID_LEN + 1)).is_err());
    }
}
