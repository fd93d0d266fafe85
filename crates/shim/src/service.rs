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
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::topics;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext};
use scribe_events::{ContainerEvent, ContainerRecord, Publisher};
use scribe_io::jsonfile::{JsonFileWriter, TagInfo};
use scribe_io::stdio::{JsonLog, Relay};
use scribe_io::DEFAULT_MAX_LINE;
use tokio::sync::Notify;

use crate::container::{Container, Created, Exit, Lifecycle, Status, StdioPaths};
use crate::logconfig::{self, SpecInfo};
use crate::mount::{mount_all, unmount_all, MountSpec};
use crate::options::Settings;
use crate::reaper::Reaper;
use crate::records::Recorder;
use crate::runtime::{ProcessStdio, Runtime, RuntimeError};

/// How long a process's output may keep flowing after it exited before TaskExit is published
/// anyway. Only a stray grandchild holding the stdio pipes open makes this wait; the copy goes on
/// after the deadline, so its bytes still arrive, just after the exit event.
const OUTPUT_DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// Longest container id accepted (NAME_MAX: it becomes a directory name).
const MAX_ID_LEN: usize = 255;

type Result<T> = std::result::Result<T, ttrpc::Error>;

fn status(code: ttrpc::Code, msg: impl Into<String>) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg.into()))
}

fn unimplemented(method: &str) -> ttrpc::Error {
    status(
        ttrpc::Code::UNIMPLEMENTED,
        format!("{method} is not implemented by the scribe shim yet"),
    )
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

    fn get(&self, id: &str, exec_id: &str) -> Result<Arc<Container>> {
        if !exec_id.is_empty() {
            return Err(status(
                ttrpc::Code::UNIMPLEMENTED,
                format!("exec processes ({exec_id:?} in {id}) are not implemented by the scribe shim yet"),
            ));
        }
        self.table()
            .get(id)
            .cloned()
            .ok_or_else(|| status(ttrpc::Code::NOT_FOUND, format!("container {id} not found")))
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
        let settings = self.settings_for(&bundle, req)?;
        let spec = SpecInfo::read(&bundle);
        let logs = logconfig::resolve(&settings, &spec).map_err(|e| {
            status(
                ttrpc::Code::INVALID_ARGUMENT,
                format!("container {id}: {e}"),
            )
        })?;
        let recorder = Arc::new(Recorder::open(
            logs.container_log,
            &logs.root,
            &self.namespace,
            id,
        ));
        Ok(Prepared {
            bundle,
            settings,
            spec,
            logs,
            recorder,
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
        let dir = scribe_events::container_log_dir(&p.logs.root, &self.namespace, id)
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
        Ok(Some(Arc::new(JsonLog::new(writer, DEFAULT_MAX_LINE))))
    }

    async fn create_container(
        &self,
        req: &api::CreateTaskRequest,
        p: &Prepared,
    ) -> Result<Arc<Container>> {
        let id = req.id.as_str();
        if req.terminal {
            return Err(status(
                ttrpc::Code::UNIMPLEMENTED,
                format!("container {id}: terminals are not implemented by the scribe shim yet"),
            ));
        }
        if !req.checkpoint.is_empty() {
            return Err(unimplemented("Create from a checkpoint"));
        }
        if self.table().contains_key(id) {
            return Err(status(
                ttrpc::Code::ALREADY_EXISTS,
                format!("container {id} already exists in this shim"),
            ));
        }
        let bundle = p.bundle.clone();
        let runtime = Runtime::new(p.settings.clone(), &bundle);
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
                    log::error!("container {id}: {e}");
                }
            }
        };
        let (ends, relay) = match Relay::start(&req.stdin, &req.stdout, &req.stderr, json) {
            Ok(v) => v,
            Err(e) => {
                undo_mount();
                return Err(status(
                    ttrpc::Code::INTERNAL,
                    format!("container {id}: setting up stdio: {e}"),
                ));
            }
        };
        let to_stdio = |fd: Option<std::os::fd::OwnedFd>| {
            fd.map(Into::into).unwrap_or_else(std::process::Stdio::null)
        };
        let stdio = ProcessStdio {
            stdin: to_stdio(ends.stdin),
            stdout: to_stdio(ends.stdout),
            stderr: to_stdio(ends.stderr),
        };
        let pid_file = bundle.join("init.pid");
        if let Err(e) = runtime.create(id, &bundle, &pid_file, stdio).await {
            // runc may have left a half-created container behind.
            let _ = runtime.delete(id, true).await;
            drop(relay);
            undo_mount();
            return Err(runtime_error(id, e));
        }
        let pid = match read_pid(&pid_file) {
            Ok(pid) => pid,
            Err(e) => {
                let _ = runtime.delete(id, true).await;
                undo_mount();
                return Err(status(
                    ttrpc::Code::INTERNAL,
                    format!("container {id}: {e}"),
                ));
            }
        };
        let exited = Reaper::global().subscribe(pid as i32);
        let container = Arc::new(Container::new(
            Created {
                id: id.to_string(),
                bundle,
                runtime,
                stdio: StdioPaths {
                    stdin: req.stdin.clone(),
                    stdout: req.stdout.clone(),
                    stderr: req.stderr.clone(),
                    terminal: req.terminal,
                },
                pid,
                rootfs_mounted: !mounts.is_empty(),
            },
            relay,
            Lifecycle {
                recorder: p.recorder.clone(),
                image: p.spec.image(),
                command: p.spec.args.clone(),
            },
        ));
        self.table().insert(id.to_string(), container.clone());
        tokio::spawn(watch_exit(
            container.clone(),
            exited,
            self.publisher.clone(),
        ));
        Ok(container)
    }
}

/// What Create found out before asking the runtime.
struct Prepared {
    bundle: PathBuf,
    settings: Settings,
    spec: SpecInfo,
    logs: logconfig::LogConfig,
    recorder: Arc<Recorder>,
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

/// Waits for the init's exit, lets its output drain, then publishes TaskExit and wakes waiters.
async fn watch_exit(
    c: Arc<Container>,
    exited: tokio::sync::oneshot::Receiver<u32>,
    publisher: Publisher,
) {
    // If the sender was dropped the exit status is unknowable; report it as killed rather than
    // success (containerd's convention for a lost exit is 255).
    let code = exited.await.unwrap_or(255);
    let at = SystemTime::now();
    if !c.relay.lock().await.drain(OUTPUT_DRAIN_LIMIT).await {
        log::warn!(
            "container {}: output still open {:?} after exit (a process outside the container holds it); publishing the exit",
            c.id,
            OUTPUT_DRAIN_LIMIT
        );
    }
    let _op = c.op.lock().await;
    publisher.publish(
        topics::TASK_EXIT_EVENT_TOPIC,
        &ev::TaskExit {
            container_id: c.id.clone(),
            id: c.id.clone(),
            pid: c.pid,
            exit_status: code,
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        },
    );
    c.life
        .recorder
        .record(ContainerRecord::exit(&c.id, None, c.pid, code as i32, at));
    c.set_exited(Exit { code, at });
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse> {
        let prepared = self.prepare(&req)?;
        let c = match self.create_container(&req, &prepared).await {
            Ok(c) => c,
            Err(e) => {
                prepared.recorder.record(ContainerRecord::failed(
                    ContainerEvent::Create,
                    &req.id,
                    error_text(&e),
                ));
                return Err(e);
            }
        };
        c.life
            .recorder
            .record(ContainerRecord::create(&c.id, c.pid));
        let _op = c.op.lock().await;
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
                pid: c.pid,
                ..Default::default()
            },
        );
        log::info!("container {}: created, init pid {}", c.id, c.pid);
        Ok(api::CreateTaskResponse {
            pid: c.pid,
            ..Default::default()
        })
    }

    async fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> Result<api::StartResponse> {
        let c = self.get(&req.id, &req.exec_id)?;
        let _op = c.op.lock().await;
        if c.status() != Status::Created {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                format!(
                    "container {} cannot be started: it is {:?}",
                    c.id,
                    c.status()
                ),
            ));
        }
        if let Err(e) = c.runtime.start(&c.id).await {
            let e = runtime_error(&c.id, e);
            c.life.recorder.record(ContainerRecord::failed(
                ContainerEvent::Start,
                &c.id,
                error_text(&e),
            ));
            return Err(e);
        }
        c.set_running();
        c.life.recorder.record(ContainerRecord::start(
            &c.id,
            c.pid,
            c.life.image.clone(),
            c.life.command.clone(),
        ));
        self.publisher.publish(
            topics::TASK_START_EVENT_TOPIC,
            &ev::TaskStart {
                container_id: c.id.clone(),
                pid: c.pid,
                ..Default::default()
            },
        );
        Ok(api::StartResponse {
            pid: c.pid,
            ..Default::default()
        })
    }

    async fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> Result<api::StateResponse> {
        let c = self.get(&req.id, &req.exec_id)?;
        let exit = c.exit();
        let st = match c.status() {
            Status::Created => api::Status::CREATED,
            Status::Running => api::Status::RUNNING,
            Status::Stopped => api::Status::STOPPED,
        };
        Ok(api::StateResponse {
            id: c.id.clone(),
            bundle: c.bundle.display().to_string(),
            pid: c.pid,
            status: st.into(),
            stdin: c.stdio.stdin.clone(),
            stdout: c.stdio.stdout.clone(),
            stderr: c.stdio.stderr.clone(),
            terminal: c.stdio.terminal,
            exit_status: exit.map(|e| e.code).unwrap_or_default(),
            exited_at: exit.map(|e| timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    async fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> Result<Empty> {
        let c = self.get(&req.id, &req.exec_id)?;
        if c.status() == Status::Stopped {
            return Err(status(
                ttrpc::Code::NOT_FOUND,
                format!("container {}: process already finished", c.id),
            ));
        }
        match c.runtime.kill(&c.id, req.signal, req.all).await {
            Ok(()) => Ok(Empty::new()),
            Err(_) if c.status() == Status::Stopped => Err(status(
                ttrpc::Code::NOT_FOUND,
                format!("container {}: process already finished", c.id),
            )),
            Err(e) => Err(runtime_error(&c.id, e)),
        }
    }

    async fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> Result<api::WaitResponse> {
        let c = self.get(&req.id, &req.exec_id)?;
        let exit = c.wait().await;
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
        let c = self.get(&req.id, &req.exec_id)?;
        if c.status() == Status::Running {
            return Err(status(
                ttrpc::Code::FAILED_PRECONDITION,
                format!("container {}: cannot delete a running task", c.id),
            ));
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
        // A created-but-never-started init is killed by the runtime's delete: wait until its exit
        // is published, so that TaskExit precedes TaskDelete.
        let exit = match tokio::time::timeout(Duration::from_secs(10), c.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                return Err(status(
                    ttrpc::Code::DEADLINE_EXCEEDED,
                    format!(
                        "container {}: init pid {} did not exit after delete",
                        c.id, c.pid
                    ),
                ))
            }
        };
        c.relay.lock().await.close_stdin();
        if c.rootfs_mounted {
            unmount_all(&c.bundle.join("rootfs"))
                .map_err(|e| status(ttrpc::Code::INTERNAL, format!("container {}: {e}", c.id)))?;
        }
        self.table().remove(&c.id);
        let _op = c.op.lock().await;
        self.publisher.publish(
            topics::TASK_DELETE_EVENT_TOPIC,
            &ev::TaskDelete {
                container_id: c.id.clone(),
                pid: c.pid,
                exit_status: exit.code,
                exited_at: MessageField::some(timestamp(exit.at)),
                id: String::new(),
                ..Default::default()
            },
        );
        c.life.recorder.record(ContainerRecord::delete(
            &c.id,
            Some(c.pid),
            Some(exit.code as i32),
        ));
        log::info!("container {}: deleted", c.id);
        Ok(api::DeleteResponse {
            pid: c.pid,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        })
    }

    async fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> Result<api::PidsResponse> {
        let c = self.get(&req.id, "")?;
        let pids = c
            .runtime
            .ps(&c.id)
            .await
            .map_err(|e| runtime_error(&c.id, e))?;
        Ok(api::PidsResponse {
            processes: pids
                .into_iter()
                .map(|pid| api::ProcessInfo {
                    pid: pid as u32,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        })
    }

    async fn connect(
        &self,
        _: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> Result<api::ConnectResponse> {
        let task_pid = self.table().get(&req.id).map(|c| c.pid).unwrap_or_default();
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    async fn shutdown(&self, _: &TtrpcContext, _: api::ShutdownRequest) -> Result<Empty> {
        if self.table().is_empty() {
            self.shutdown.notify_one();
        }
        Ok(Empty::new())
    }

    async fn pause(&self, _: &TtrpcContext, _: api::PauseRequest) -> Result<Empty> {
        Err(unimplemented("Pause"))
    }

    async fn resume(&self, _: &TtrpcContext, _: api::ResumeRequest) -> Result<Empty> {
        Err(unimplemented("Resume"))
    }

    async fn checkpoint(&self, _: &TtrpcContext, _: api::CheckpointTaskRequest) -> Result<Empty> {
        Err(unimplemented("Checkpoint"))
    }

    async fn exec(&self, _: &TtrpcContext, _: api::ExecProcessRequest) -> Result<Empty> {
        Err(unimplemented("Exec"))
    }

    async fn resize_pty(&self, _: &TtrpcContext, _: api::ResizePtyRequest) -> Result<Empty> {
        Err(unimplemented("ResizePty"))
    }

    async fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> Result<Empty> {
        let c = self.get(&req.id, &req.exec_id)?;
        if req.stdin {
            c.relay.lock().await.close_stdin();
        }
        Ok(Empty::new())
    }

    async fn update(&self, _: &TtrpcContext, _: api::UpdateTaskRequest) -> Result<Empty> {
        Err(unimplemented("Update"))
    }

    async fn stats(&self, _: &TtrpcContext, _: api::StatsRequest) -> Result<api::StatsResponse> {
        Err(unimplemented("Stats"))
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
