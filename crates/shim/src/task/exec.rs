//! Exec: add a process to a container (its spec written for the runtime); Start runs it.
//! Announces TaskExecAdded with the `exec_added` record.

use std::sync::Arc;

use containerd_shim_protos::api;

use super::create::validate_id;
use super::table::{refused, Tasks};
use crate::error::{Code, Error, Result};
use crate::process::{Event, Process, StdioPaths};

impl Tasks {
    /// Exec: the exec process is known, not started.
    pub async fn exec(&self, req: &api::ExecProcessRequest) -> Result<()> {
        let c = self.container(&req.id)?;
        let id = c.id.as_str();
        validate_id(&req.exec_id)
            .map_err(|e| Error::invalid(format!("container {id}: exec id: {e}")))?;
        c.init.check(Event::AddExec).map_err(refused(&c, &c.init))?;
        let spec = req.spec.as_ref().ok_or_else(|| {
            Error::invalid(format!(
                "container {id}: exec {} has no process spec",
                req.exec_id
            ))
        })?;
        serde_json::from_slice::<serde_json::Value>(&spec.value).map_err(|e| {
            Error::invalid(format!(
                "container {id}: exec {} process spec is not JSON: {e}",
                req.exec_id
            ))
        })?;
        let spec_file = c.bundle.join(format!("exec-{}.json", req.exec_id));
        std::fs::write(&spec_file, &spec.value).map_err(|e| {
            Error::internal(format!(
                "container {id}: writing {}: {e}",
                spec_file.display()
            ))
        })?;
        let p = Arc::new(Process::exec(
            req.exec_id.clone(),
            StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            spec_file,
        ));
        if !c.add_exec(p) {
            return Err(Error::new(
                Code::AlreadyExists,
                format!("container {id}: exec {} already exists", req.exec_id),
            ));
        }
        self.announce.exec_added(&c, &req.exec_id);
        Ok(())
    }
}
