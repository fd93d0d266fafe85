//! Delete: of an exec (forget it, answer its exit), or of the container (the runtime deletes it,
//! its exit is awaited so TaskExit precedes TaskDelete, the rootfs is unmounted, the shim stops
//! serving it). Announces TaskDelete with the `delete` record.

use std::time::{Duration, SystemTime};

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::MessageField;

use super::table::{refused, Tasks};
use crate::error::{Code, Error, Result};
use crate::exit::OUTPUT_DRAIN_LIMIT;
use crate::mount::unmount_all;
use crate::process::{Event, Exit, Role};
use crate::stdio::stop_logger;

/// How long Delete waits for the init's exit after the runtime deleted the container.
const EXIT_AFTER_DELETE_LIMIT: Duration = Duration::from_secs(10);

impl Tasks {
    /// Delete of the init (the container) or of an exec.
    pub async fn delete(&self, req: &api::DeleteRequest) -> Result<api::DeleteResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        p.check(Event::Delete).map_err(refused(&c, &p))?;
        stop_logger(&p).await;
        if p.role() == Role::Exec {
            // A spool's replay to a reader that reads finishes (bounded); what no reader takes
            // is counted and reported as dropped.
            p.relay.lock().await.close(OUTPUT_DRAIN_LIMIT).await;
            c.remove_exec(&p.exec_id);
            if let Err(r) = p.apply(Event::Delete) {
                log::warn!(container = c.id.as_str(); "{} deleted: {r}", p.name());
            }
            let exit = p.exit();
            return Ok(api::DeleteResponse {
                pid: p.pid(),
                exit_status: exit.map(|e| e.code).unwrap_or_default(),
                exited_at: exit.map(|e| e.timestamp()).into(),
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
                .map_err(|e| Error::runtime(&c.id, e))?,
        }
        if p.pid() == 0 && p.exit().is_none() {
            // Created from a checkpoint and never (successfully) restored: no process ever ran.
            drop(c.take_restore());
            if let Err(r) = p.exited(Exit {
                code: 0,
                at: SystemTime::now(),
            }) {
                log::warn!(container = c.id.as_str(); "unrestored init: {r}");
            }
        }
        // A created-but-never-started init is killed by the runtime's delete: wait until its exit
        // is published, so that TaskExit precedes TaskDelete.
        let exit = match tokio::time::timeout(EXIT_AFTER_DELETE_LIMIT, p.wait()).await {
            Ok(exit) => exit,
            Err(_) => {
                return Err(Error::new(
                    Code::DeadlineExceeded,
                    format!(
                        "container {}: init pid {} did not exit after delete",
                        c.id,
                        p.pid()
                    ),
                ))
            }
        };
        // The output's end: a spool's replay to a reader that reads finishes (within the same
        // bound as the drain at exit); what no reader takes is counted and reported as dropped.
        p.relay.lock().await.close(OUTPUT_DRAIN_LIMIT).await;
        if c.rootfs_mounted {
            unmount_all(&c.bundle.join("rootfs"))
                .map_err(|e| Error::internal(format!("container {}: {e}", c.id)))?;
        }
        self.remove(&c.id);
        let _op = p.op.lock().await;
        if let Err(r) = p.apply(Event::Delete) {
            log::warn!(container = c.id.as_str(); "deleted: {r}");
        }
        self.announce.deleted(&c, exit);
        log::info!(container = c.id.as_str(); "deleted");
        crate::logger::detach(&c.id);
        crate::retention::on_delete(c.runtime.settings(), &self.namespace, &c.id);
        Ok(api::DeleteResponse {
            pid: p.pid(),
            exit_status: exit.code,
            exited_at: MessageField::some(exit.timestamp()),
            ..Default::default()
        })
    }
}
