//! The Task methods that only read: State, Wait, Pids, Stats, Connect.

use std::collections::HashMap;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::oci::ProcessDetails;

use super::table::Tasks;
use crate::error::{Error, Result};
use crate::process::{Role, State};

/// The `Any` type of the per-process details in a Pids reply.
const PROCESS_DETAILS_TYPE: &str = "containerd.runc.v1.ProcessDetails";

/// The Task API's status for a process state.
fn api_status(s: State) -> api::Status {
    match s {
        State::Created | State::CreatedFromCheckpoint => api::Status::CREATED,
        State::Running => api::Status::RUNNING,
        State::Paused => api::Status::PAUSED,
        State::Stopped | State::Deleted => api::Status::STOPPED,
    }
}

impl Tasks {
    /// State of the init or an exec.
    pub fn state(&self, req: &api::StateRequest) -> Result<api::StateResponse> {
        let (c, p) = self.process(&req.id, &req.exec_id)?;
        let exit = p.exit();
        Ok(api::StateResponse {
            id: match p.role() {
                Role::Init => c.id.clone(),
                Role::Exec => p.exec_id.clone(),
            },
            bundle: c.bundle.display().to_string(),
            pid: p.pid(),
            status: api_status(p.state()).into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: exit.map(|e| e.code).unwrap_or_default(),
            exited_at: exit.map(|e| e.timestamp()).into(),
            exec_id: p.exec_id.clone(),
            ..Default::default()
        })
    }

    /// Wait: blocks until the process's exit is published.
    pub async fn wait(&self, req: &api::WaitRequest) -> Result<api::WaitResponse> {
        let (_, p) = self.process(&req.id, &req.exec_id)?;
        let exit = p.wait().await;
        Ok(api::WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(exit.timestamp()),
            ..Default::default()
        })
    }

    /// Pids: the container's processes from the runtime, execs named by their exec id.
    pub async fn pids(&self, req: &api::PidsRequest) -> Result<api::PidsResponse> {
        let c = self.container(&req.id)?;
        let pids = c
            .runtime
            .ps(&c.id)
            .await
            .map_err(|e| Error::runtime(&c.id, e))?;
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
                let value = details
                    .write_to_bytes()
                    .map_err(|e| Error::internal(format!("encoding ProcessDetails: {e}")))?;
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

    /// Stats: the container's cgroup metrics.
    pub fn stats(&self, req: &api::StatsRequest) -> Result<api::StatsResponse> {
        let c = self.container(&req.id)?;
        let cg = c.cgroup().ok_or_else(|| {
            Error::not_found(format!("container {}: no cgroup known for it", c.id))
        })?;
        let any = cg.metrics_any().map_err(|e| {
            Error::internal(format!("container {}: reading cgroup metrics: {e}", c.id))
        })?;
        Ok(api::StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    /// Connect: the shim's pid and the init's.
    pub fn connect(&self, req: &api::ConnectRequest) -> api::ConnectResponse {
        api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid: self.init_pid(&req.id),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_task_status() {
        let got: Vec<_> = State::ALL.into_iter().map(api_status).collect();
        assert_eq!(
            got,
            [
                api::Status::CREATED,
                api::Status::CREATED,
                api::Status::RUNNING,
                api::Status::PAUSED,
                api::Status::STOPPED,
                api::Status::STOPPED
            ]
        );
    }
}
