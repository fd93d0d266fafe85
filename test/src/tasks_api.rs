//! A minimal client of containerd's own Tasks API (`containerd.services.tasks.v1.Tasks`) over
//! its grpc unix socket, for what `ctr` cannot do: `Update` (ctr 1.6, 1.7 and 2.1 have no
//! `task update`) and `Get` (a task's exit status).
//!
//! The messages are hand-written prost structs carrying only the fields used here (field numbers
//! from containerd's `api/services/tasks/v1/tasks.proto` and `api/types/task/task.proto`);
//! unknown fields in replies are skipped by the decoder. Every call carries the
//! `containerd-namespace` header. The client is blocking: it owns a current-thread tokio runtime.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint, Uri};

/// The `Any` type URL containerd's client gives `LinuxResources` (a JSON payload).
pub const LINUX_RESOURCES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
/// The grpc header that selects the containerd namespace.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

const UPDATE: &str = "/containerd.services.tasks.v1.Tasks/Update";
const GET: &str = "/containerd.services.tasks.v1.Tasks/Get";
/// Limit of one call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `UpdateTaskRequest`: new resources (and annotations) for a running task.
#[derive(Clone, PartialEq, prost::Message)]
pub struct UpdateTaskRequest {
    /// The task (container) id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// `LinuxResources` as JSON in an `Any` (see [`linux_resources`]).
    #[prost(message, optional, tag = "2")]
    pub resources: Option<prost_types::Any>,
    /// Annotations passed to the shim.
    #[prost(map = "string, string", tag = "3")]
    pub annotations: HashMap<String, String>,
}

/// `GetRequest`: one process of a task (`exec_id` empty for the init).
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetRequest {
    /// The task (container) id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// The exec id, empty for the init process.
    #[prost(string, tag = "2")]
    pub exec_id: String,
}

/// `GetResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct GetResponse {
    /// The process asked for.
    #[prost(message, optional, tag = "1")]
    pub process: Option<Process>,
}

/// A process's state as containerd reports it (`containerd.v1.types.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum ProcessStatus {
    /// Not known.
    Unknown = 0,
    /// Created, not started.
    Created = 1,
    /// Running.
    Running = 2,
    /// Exited.
    Stopped = 3,
    /// Frozen.
    Paused = 4,
    /// Being frozen.
    Pausing = 5,
}

/// `containerd.v1.types.Process` (the fields the tests use).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Process {
    /// The task (container) id.
    #[prost(string, tag = "1")]
    pub container_id: String,
    /// The process id: the container id for the init, else the exec id.
    #[prost(string, tag = "2")]
    pub id: String,
    /// Its pid.
    #[prost(uint32, tag = "3")]
    pub pid: u32,
    /// Its state.
    #[prost(enumeration = "ProcessStatus", tag = "4")]
    pub status: i32,
    /// Its exit status, once stopped.
    #[prost(uint32, tag = "9")]
    pub exit_status: u32,
    /// When it exited.
    #[prost(message, optional, tag = "10")]
    pub exited_at: Option<prost_types::Timestamp>,
}

/// `resources` (a `LinuxResources` object, e.g. `{"memory":{"limit":33554432}}`) as the `Any`
/// containerd's client sends.
pub fn linux_resources(resources: &serde_json::Value) -> prost_types::Any {
    prost_types::Any {
        type_url: LINUX_RESOURCES_TYPE_URL.to_string(),
        value: resources.to_string().into_bytes(),
    }
}

/// A connection to one containerd's Tasks API in one namespace.
pub struct TasksApi {
    rt: tokio::runtime::Runtime,
    channel: Channel,
    namespace: String,
    socket: PathBuf,
}

impl TasksApi {
    /// Connects to the containerd grpc socket `socket`; calls act in `namespace`.
    pub fn connect(socket: &Path, namespace: &str) -> Result<TasksApi, String> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("building a tokio runtime for the Tasks API client: {e}"))?;
        let path = socket.to_path_buf();
        let endpoint = Endpoint::try_from("http://[::]:50051")
            .map_err(|e| format!("grpc endpoint: {e}"))?
            .connect_timeout(Duration::from_secs(5));
        let channel = rt
            .block_on(
                endpoint.connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                })),
            )
            .map_err(|e| format!("connecting to containerd at {}: {e}", socket.display()))?;
        Ok(TasksApi {
            rt,
            channel,
            namespace: namespace.to_string(),
            socket: socket.to_path_buf(),
        })
    }

    /// `Tasks/Update`: new resources for a running task, as containerd's client sends them.
    pub fn update(&self, req: UpdateTaskRequest) -> Result<(), tonic::Status> {
        self.unary::<_, ()>(UPDATE, req)
    }

    /// `Tasks/Update` with `resources` (a `LinuxResources` JSON object) and no annotations.
    pub fn update_resources(
        &self,
        container_id: &str,
        resources: &serde_json::Value,
    ) -> Result<(), tonic::Status> {
        self.update(UpdateTaskRequest {
            container_id: container_id.to_string(),
            resources: Some(linux_resources(resources)),
            annotations: HashMap::new(),
        })
    }

    /// `Tasks/Get`: the init process of task `container_id` (or exec `exec_id`).
    pub fn get(&self, container_id: &str, exec_id: &str) -> Result<Process, tonic::Status> {
        let reply: GetResponse = self.unary(
            GET,
            GetRequest {
                container_id: container_id.to_string(),
                exec_id: exec_id.to_string(),
            },
        )?;
        reply.process.ok_or_else(|| {
            tonic::Status::internal(format!("Get {container_id}: the reply has no process"))
        })
    }

    fn unary<Req, Resp>(&self, method: &'static str, message: Req) -> Result<Resp, tonic::Status>
    where
        Req: prost::Message + Send + Sync + 'static,
        Resp: prost::Message + Default + Send + Sync + 'static,
    {
        let mut request = tonic::Request::new(message);
        let namespace = MetadataValue::try_from(self.namespace.as_str()).map_err(|e| {
            tonic::Status::invalid_argument(format!("namespace {:?}: {e}", self.namespace))
        })?;
        request.metadata_mut().insert(NAMESPACE_HEADER, namespace);
        request.set_timeout(CALL_TIMEOUT);
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        self.rt.block_on(async move {
            grpc.ready().await.map_err(|e| {
                tonic::Status::unavailable(format!(
                    "containerd at {} is not ready: {e}",
                    self.socket.display()
                ))
            })?;
            let codec = tonic_prost::ProstCodec::<Req, Resp>::default();
            grpc.unary(request, PathAndQuery::from_static(method), codec)
                .await
                .map(tonic::Response::into_inner)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn update_request_wire_form() {
        let req = UpdateTaskRequest {
            container_id: "c".into(),
            resources: Some(linux_resources(&serde_json::json!({"pids": {"limit": 5}}))),
            annotations: HashMap::from([("k".to_string(), "v".to_string())]),
        };
        let bytes = req.encode_to_vec();
        // field 1, length-delimited, "c"
        assert_eq!(&bytes[..3], &[0x0a, 0x01, b'c']);
        let back = UpdateTaskRequest::decode(bytes.as_slice()).expect("decode");
        assert_eq!(back, req);
        let any = back.resources.expect("resources");
        assert_eq!(any.type_url, LINUX_RESOURCES_TYPE_URL);
        assert_eq!(any.value, br#"{"pids":{"limit":5}}"#);
    }

    #[test]
    fn process_skips_fields_it_does_not_know() {
        // exit_reason (11) is not modelled; decoding must still work.
        let mut bytes = Process {
            container_id: "c".into(),
            id: "c".into(),
            pid: 7,
            status: ProcessStatus::Stopped as i32,
            exit_status: 7,
            exited_at: None,
        }
        .encode_to_vec();
        bytes.extend_from_slice(&[0x58, 0x02]);
        let p = Process::decode(bytes.as_slice()).expect("decode");
        assert_eq!(p.exit_status, 7);
        assert_eq!(p.status(), ProcessStatus::Stopped);
    }
}
