//! Create: validate the request, resolve the options and log configuration, mount the rootfs,
//! open the stdio, and have the runtime create the init (or hold a checkpoint for Start to
//! restore). Announces TaskCreate with the `create` record.
//!
//! Everything Create set up is undone when it fails (mounts unmounted, a half-created container
//! deleted with `--force`); the failure is logged and recorded.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim_protos::api;
use scribe_events::{ContainerEvent, ContainerRecord, RuntimeLog};
use scribe_io::drivers::{registry, DriverReporter, Drivers, OpenContext};
use scribe_io::jsonfile::TagInfo;
use scribe_io::DEFAULT_MAX_LINE;

use super::table::Tasks;
use crate::container::{Container, Lifecycle, PendingRestore};
use crate::driverreport::RuntimeLogReporter;
use crate::error::{Code, Error, Result};
use crate::logconfig::{self, SpecInfo};
use crate::mount::{mount_all, unmount_all, MountSpec};
use crate::options::Settings;
use crate::process::{Process, StdioPaths};
use crate::records::Recorder;
use crate::runtime::{CheckpointOpts, Runtime};
use crate::stdio::PendingIo;

/// Longest container id accepted (NAME_MAX: it becomes a directory name).
const MAX_ID_LEN: usize = 255;

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

/// Reads the pid the runtime wrote to `path`.
pub(super) fn read_pid(path: &Path) -> std::result::Result<u32, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    text.trim()
        .parse()
        .map_err(|e| format!("parsing pid in {}: {e}", path.display()))
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

/// What a Create from a checkpoint restores: containerd unpacked the checkpoint's CRIU images
/// into `req.checkpoint`; CRIU's work directory comes from the runc options (`criu_work_path`),
/// else the runtime's default (the image directory).
fn restore_options(
    id: &str,
    req: &api::CreateTaskRequest,
    settings: &Settings,
) -> Result<CheckpointOpts> {
    let dir = Path::new(&req.checkpoint);
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Error::invalid(format!(
                "container {id}: checkpoint {} is not a directory",
                dir.display()
            )))
        }
        Err(e) => {
            return Err(Error::invalid(format!(
                "container {id}: checkpoint {}: {e}",
                dir.display()
            )))
        }
    }
    Ok(CheckpointOpts {
        image_path: req.checkpoint.clone(),
        work_path: settings.criu_work_path.clone(),
        terminal: req.terminal,
        ..Default::default()
    })
}

impl Tasks {
    /// Create: the init exists (or waits for a restore) and TaskCreate is out.
    pub async fn create(&self, req: &api::CreateTaskRequest) -> Result<api::CreateTaskResponse> {
        let prepared = match self.prepare(req) {
            Ok(p) => p,
            Err(e) => return Err(self.create_failed(&req.id, e)),
        };
        let c = match self.create_container(req, &prepared).await {
            Ok(c) => c,
            Err(e) => {
                prepared.recorder.record(ContainerRecord::failed(
                    ContainerEvent::Create,
                    &req.id,
                    e.message(),
                ));
                return Err(self.create_failed(&req.id, e));
            }
        };
        let pid = c.init.pid();
        let _op = c.init.op.lock().await;
        self.announce.created(&c, req);
        log::info!(container = c.id.as_str(); "created, init pid {pid}");
        Ok(api::CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn settings_for(&self, bundle: &Path, req: &api::CreateTaskRequest) -> Result<Settings> {
        let mut settings = Settings::load(bundle)
            .map_err(Error::invalid)?
            .unwrap_or_else(|| Settings::defaults(&self.namespace));
        if let Some(any) = req.options.as_ref() {
            settings
                .apply_any(any)
                .map_err(|e| Error::invalid(format!("container {}: {e}", req.id)))?;
            settings.save(bundle).map_err(Error::internal)?;
        }
        Ok(settings)
    }

    /// Everything Create needs before the runtime runs; failures here leave nothing behind.
    fn prepare(&self, req: &api::CreateTaskRequest) -> Result<Prepared> {
        let id = req.id.as_str();
        validate_id(id).map_err(Error::invalid)?;
        let bundle = PathBuf::from(&req.bundle);
        if !bundle.is_dir() {
            return Err(Error::invalid(format!(
                "container {id}: bundle {} is not a directory",
                bundle.display()
            )));
        }
        let settings = self.settings_for(&bundle, req)?;
        let spec = SpecInfo::read(&bundle);
        let logs = logconfig::resolve(&settings, &spec)
            .map_err(|e| Error::invalid(format!("container {id}: {e}")))?;
        // A directory a deleted container with the same id left is in use again.
        crate::retention::on_create(&settings, &self.namespace, id);
        // From here on the shim's own lines about this container also go to its runtime.log.
        let runtime_log = if logs.runtime_log {
            match RuntimeLog::open(&logs.root, &self.namespace, id) {
                Ok(l) => {
                    let l = Arc::new(l);
                    crate::logger::attach(id, l.clone());
                    Some(l)
                }
                // A refused runtime.log (a planted link, say) fails the Create, naming the file.
                Err(e) => {
                    return Err(Error::invalid(format!("container {id}: runtime.log: {e}")));
                }
            }
        } else {
            None
        };
        let recorder = Recorder::open(logs.container_log, &logs.root, &self.namespace, id)
            .map_err(|e| Error::invalid(format!("container {id}: container.log: {e}")))?;
        let recorder = Arc::new(recorder);
        Ok(Prepared {
            bundle,
            settings,
            spec,
            logs,
            recorder,
            runtime_log,
        })
    }

    /// Opens the container's log drivers (none: an empty set, and the relay splices).
    fn open_drivers(&self, id: &str, p: &Prepared) -> Result<Drivers> {
        if p.logs.drivers.is_empty() {
            return Ok(Drivers::default());
        }
        let fail = |e: String| Error::invalid(format!("container {id}: {e}"));
        // Checks both components; the drivers then walk them without following links.
        scribe_events::container_log_dir(&p.logs.json_root, &self.namespace, id)
            .map_err(|e| fail(e.to_string()))?;
        let info = TagInfo {
            container_id: id.to_string(),
            container_name: id.to_string(),
            image_name: p.spec.image().unwrap_or_default(),
            image_id: String::new(),
            daemon_name: "scribe".to_string(),
        };
        // Lost output is reported in runtime.log (and always in the shim's own log).
        let reporter = p.runtime_log.as_ref().map(|sink| {
            Arc::new(RuntimeLogReporter::new(id, sink.clone())) as Arc<dyn DriverReporter>
        });
        // What a logging plugin is told of the container (only plugins read it).
        let container = p.spec.plugin_info(
            id,
            scribe_io::timefmt::rfc3339_nano(std::time::SystemTime::now()),
        );
        let ctx = OpenContext {
            root: &p.logs.json_root,
            subdirs: [self.namespace.as_str(), id],
            tag: &info,
            reporter,
            container: Some(&container),
        };
        // Then the dual-logging cache, when none of the drivers reads back.
        let list = registry::open_all(&p.logs.drivers, &p.logs.cache, &ctx).map_err(fail)?;
        Ok(Drivers::new(list, DEFAULT_MAX_LINE))
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
        if self.contains(id) {
            return Err(Error::new(
                Code::AlreadyExists,
                format!("container {id} already exists in this shim"),
            ));
        }
        let bundle = p.bundle.clone();
        let runtime =
            Runtime::new(p.settings.clone(), &bundle).with_records(id, p.runtime_log.clone());
        let drivers = self.open_drivers(id, p)?;
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
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| Error::internal(format!("creating {}: {e}", rootfs.display())))?;
            mount_all(&mounts, &rootfs)
                .map_err(|e| Error::internal(format!("container {id}: {e}")))?;
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
        let (child_stdio, pending) = match PendingIo::open(
            id,
            &self.namespace,
            &stdio,
            drivers,
            p.settings.io_owner(),
        )
        .await
        {
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
        let init = Arc::new(Process::init(stdio, restore.is_some()));
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
                        .map_err(|e| Error::internal(format!("container {id}: {e}")))
                        .and_then(|pid| {
                            Ok((pid, pending.finish(id, &self.namespace, &init.stdio)?))
                        }),
                    Err(e) => Err(Error::runtime(id, e)),
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
        self.insert(container.clone());
        if pid != 0 {
            self.watch_init(&container, pid);
        }
        Ok(container)
    }

    /// Logs a failed Create and stops routing the shim's lines to the runtime.log of a container
    /// that did not come to be (a duplicate id keeps the existing container's route).
    fn create_failed(&self, id: &str, e: Error) -> Error {
        log::error!(container = id, error:% = e.message(); "create failed");
        if !self.contains(id) {
            crate::logger::detach(id);
        }
        e
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
