//! The operations that act on a running container: Kill, Pause, Resume, Checkpoint, Update,
//! CloseIO and ResizePty. Each checks the process's state first ([`crate::process::state`]),
//! then asks the runtime (or the relay), then applies and announces.

use std::sync::Arc;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::CheckpointOptions;
use scribe_events::{ContainerEvent, ContainerRecord};

use super::table::{record_failure, refused, Tasks};
use crate::announce::record_status;
use crate::container::Container;
use crate::error::{Code, Error, Result};
use crate::process::{Event, Process, Role, State};
use crate::runtime::CheckpointOpts;

impl Tasks {
    /// Kill: delivers the signal and logs the outcome.
    pub async fn kill(&self, req: &api::KillRequest) -> Result<()> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        match self.signal(&c, &p, req).await {
            Ok(()) => {
                log::debug!(
                    container = c.id.as_str();
                    "{}: sent signal {}{}", p.name(), req.signal,
                    if req.all { " to every process" } else { "" }
                );
                Ok(())
            }
            Err(e) => {
                // A process that already finished is the normal race of killing a dying one.
                let level = if e.code == Code::NotFound {
                    log::Level::Debug
                } else {
                    log::Level::Warn
                };
                log::log!(
                    level, container = c.id.as_str(), error:% = e.message();
                    "{}: signal {} not delivered", p.name(), req.signal
                );
                Err(e)
            }
        }
    }

    /// Delivers a Kill request's signal: to the init through the runtime, to an exec by pid.
    async fn signal(&self, c: &Container, p: &Process, req: &api::KillRequest) -> Result<()> {
        p.check(Event::Kill).map_err(refused(c, p))?;
        if p.role() == Role::Exec {
            // The runtime's kill only targets the init; an exec is signalled by pid.
            let sig = nix::sys::signal::Signal::try_from(req.signal as i32)
                .map_err(|e| Error::invalid(format!("signal {}: {e}", req.signal)))?;
            return match nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid() as i32), sig) {
                Ok(()) => Ok(()),
                Err(nix::Error::ESRCH) => Err(Error::finished(&c.id)),
                Err(e) => Err(Error::new(
                    Code::Unknown,
                    format!("container {}: kill exec {}: {e}", c.id, p.exec_id),
                )),
            };
        }
        match c.runtime.kill(&c.id, req.signal, req.all).await {
            Ok(()) => Ok(()),
            Err(_) if p.state() == State::Stopped => Err(Error::finished(&c.id)),
            Err(e) => Err(Error::runtime(&c.id, e)),
        }
    }

    /// Pause: freezes the container.
    pub async fn pause(&self, req: &api::PauseRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        self.pause_or_resume(&c, true).await
    }

    /// Resume: thaws the container.
    pub async fn resume(&self, req: &api::ResumeRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        self.pause_or_resume(&c, false).await
    }

    async fn pause_or_resume(&self, c: &Arc<Container>, pause: bool) -> Result<()> {
        let init = &c.init;
        let _op = init.op.lock().await;
        let (event, record) = if pause {
            (Event::Pause, ContainerEvent::Pause)
        } else {
            (Event::Resume, ContainerEvent::Resume)
        };
        let fail = |e: Error| {
            record_failure(c, record, "", &e);
            e
        };
        init.check(event).map_err(refused(c, init)).map_err(fail)?;
        let done = if pause {
            c.runtime.pause(&c.id).await
        } else {
            c.runtime.resume(&c.id).await
        };
        done.map_err(|e| fail(Error::runtime(&c.id, e)))?;
        if let Err(r) = init.apply(event) {
            log::warn!(container = c.id.as_str(); "{}: {r}", record.as_str());
        }
        if pause {
            self.announce.paused(c);
        } else {
            self.announce.resumed(c);
        }
        Ok(())
    }

    /// Checkpoint: dumps the container; a failure is recorded.
    pub async fn checkpoint(&self, req: &api::CheckpointTaskRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        let result = self.checkpoint_container(&c, req).await;
        if let Err(e) = &result {
            record_failure(&c, ContainerEvent::Checkpoint, "", e);
        }
        result
    }

    /// Checkpoints the container through the runtime (CRIU) and announces TaskCheckpointed.
    async fn checkpoint_container(
        &self,
        c: &Arc<Container>,
        req: &api::CheckpointTaskRequest,
    ) -> Result<()> {
        let id = &c.id;
        let opts = checkpoint_options(id, c.runtime.settings(), req)?;
        c.init
            .check(Event::Checkpoint)
            .map_err(refused(c, &c.init))?;
        c.runtime
            .checkpoint(id, &opts)
            .await
            .map_err(|e| Error::runtime(id, e))?;
        self.announce.checkpointed(c, &opts.image_path);
        Ok(())
    }

    /// Update: applies new resources; the outcome is recorded.
    pub async fn update(&self, req: &api::UpdateTaskRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        let result = self.update_resources(&c, req).await;
        c.life.recorder.record(match &result {
            Ok(()) => ContainerRecord::update(&c.id, record_status(&c.init)),
            Err(e) => ContainerRecord::failed(ContainerEvent::Update, &c.id, e.message()),
        });
        result
    }

    /// Applies the LinuxResources JSON carried by an Update through the runtime.
    async fn update_resources(
        &self,
        c: &Arc<Container>,
        req: &api::UpdateTaskRequest,
    ) -> Result<()> {
        let id = &c.id;
        let any = req.resources.as_ref().ok_or_else(|| {
            Error::invalid(format!("container {id}: update carries no resources"))
        })?;
        crate::spec::linux_resources(&any.value).map_err(|e| {
            Error::invalid(format!(
                "container {id}: update resources ({}) are not LinuxResources JSON: {e}",
                any.type_url
            ))
        })?;
        c.init.check(Event::Update).map_err(refused(c, &c.init))?;
        let file = c.bundle.join("update-resources.json");
        std::fs::write(&file, &any.value).map_err(|e| {
            Error::internal(format!("container {id}: writing {}: {e}", file.display()))
        })?;
        let result = c.runtime.update(id, &file).await;
        let _ = std::fs::remove_file(&file);
        result.map_err(|e| Error::runtime(id, e))
    }

    /// CloseIO: closes the process's stdin when asked.
    pub async fn close_io(&self, req: &api::CloseIORequest) -> Result<()> {
        let (_, p) = self.process(&req.id, &req.exec_id)?;
        if req.stdin {
            p.relay.lock().await.close_stdin();
        }
        Ok(())
    }

    /// ResizePty: resizes the process's terminal.
    pub async fn resize_pty(&self, req: &api::ResizePtyRequest) -> Result<()> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let resized = p.relay.lock().await.resize(req.width, req.height);
        resized.map_err(|e| {
            Error::new(
                Code::FailedPrecondition,
                format!("container {} {}: resize: {e}", c.id, p.exec_id),
            )
        })
    }
}

/// What a Checkpoint request asks of the runtime: the runc options' image and work paths, overridden
/// by the request's path and `CheckpointOptions`.
fn checkpoint_options(
    id: &str,
    settings: &crate::options::Settings,
    req: &api::CheckpointTaskRequest,
) -> Result<CheckpointOpts> {
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
            Error::invalid(format!(
                "container {id}: checkpoint options ({}): {e}",
                any.type_url
            ))
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
        return Err(Error::invalid(format!(
            "container {id}: checkpoint needs an image path"
        )));
    }
    Ok(opts)
}
