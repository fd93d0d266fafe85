//! The ttrpc Task service (`containerd.task.v2.Task`) that containerd drives: a thin layer that
//! decodes a request, calls one operation, and converts its [`Error`](crate::error::Error) to a
//! ttrpc status (in one place, `From<Error> for ttrpc::Error`).
//!
//! The operations, one file each: [`create`], [`start`], [`exec`], [`delete`], [`control`]
//! (kill, pause, resume, checkpoint, update, close_io, resize_pty), [`query`] (state, wait,
//! pids, stats, connect); the containers they act on are in [`table`]. Every method of the Task
//! API is served here (the generated defaults would answer NOT_FOUND, which containerd would
//! take for "no such task").

mod control;
mod create;
mod delete;
mod exec;
mod query;
mod start;
mod table;

use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::ttrpc::{self, r#async::TtrpcContext};
use scribe_events::Publisher;
use tokio::sync::Notify;

use crate::announce::Announcer;
pub use create::validate_id;
use table::Tasks;

type Result<T> = std::result::Result<T, ttrpc::Error>;

/// The shim's Task service: every container this shim serves.
pub struct Service {
    tasks: Tasks,
    shutdown: Arc<Notify>,
}

impl Service {
    /// A service publishing to containerd through `publisher`; `shutdown` is notified when the
    /// last container is gone and containerd asked the shim to exit.
    pub fn new(namespace: String, publisher: Publisher, shutdown: Arc<Notify>) -> Service {
        Service {
            tasks: Tasks::new(namespace, Announcer::new(publisher)),
            shutdown,
        }
    }
}

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse> {
        Ok(self.tasks.create(&req).await?)
    }

    async fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> Result<api::StartResponse> {
        Ok(self.tasks.start(&req).await?)
    }

    async fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> Result<Empty> {
        self.tasks.exec(&req).await?;
        Ok(Empty::new())
    }

    async fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> Result<api::StateResponse> {
        Ok(self.tasks.state(&req)?)
    }

    async fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> Result<Empty> {
        self.tasks.kill(&req).await?;
        Ok(Empty::new())
    }

    async fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> Result<api::WaitResponse> {
        Ok(self.tasks.wait(&req).await?)
    }

    async fn delete(
        &self,
        _: &TtrpcContext,
        req: api::DeleteRequest,
    ) -> Result<api::DeleteResponse> {
        Ok(self.tasks.delete(&req).await?)
    }

    async fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> Result<api::PidsResponse> {
        Ok(self.tasks.pids(&req).await?)
    }

    async fn connect(
        &self,
        _: &TtrpcContext,
        req: api::ConnectRequest,
    ) -> Result<api::ConnectResponse> {
        Ok(self.tasks.connect(&req))
    }

    async fn shutdown(&self, _: &TtrpcContext, _: api::ShutdownRequest) -> Result<Empty> {
        let served = self.tasks.len();
        if served == 0 {
            self.shutdown.notify_one();
        } else {
            log::info!("shutdown requested while serving {served} container(s): staying");
        }
        Ok(Empty::new())
    }

    async fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> Result<Empty> {
        self.tasks.close_io(&req).await?;
        Ok(Empty::new())
    }

    async fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> Result<Empty> {
        self.tasks.pause(&req).await?;
        Ok(Empty::new())
    }

    async fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> Result<Empty> {
        self.tasks.resume(&req).await?;
        Ok(Empty::new())
    }

    async fn checkpoint(&self, _: &TtrpcContext, req: api::CheckpointTaskRequest) -> Result<Empty> {
        self.tasks.checkpoint(&req).await?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: api::ResizePtyRequest) -> Result<Empty> {
        self.tasks.resize_pty(&req).await?;
        Ok(Empty::new())
    }

    async fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> Result<Empty> {
        self.tasks.update(&req).await?;
        Ok(Empty::new())
    }

    async fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> Result<api::StatsResponse> {
        Ok(self.tasks.stats(&req)?)
    }
}
