//! A CRI v1 client (the `k8s-cri` crate's tonic client over containerd's grpc unix socket),
//! shared by tests/cri.rs and the VM stage's tests/cgroup2_systemd.rs.

use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{RemovePodSandboxRequest, StopPodSandboxRequest};
use std::path::Path;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint, Uri};

/// How long one CRI call may take.
pub const RPC_TIMEOUT: Duration = Duration::from_secs(30);

/// A CRI v1 client on its own current-thread tokio runtime. Dropping it removes the pods
/// it created that are still there (so a failing test leaves no pod for teardown).
pub struct Cri {
    rt: tokio::runtime::Runtime,
    rs: RuntimeServiceClient<Channel>,
    is: ImageServiceClient<Channel>,
    /// Pods to remove on drop (push what RunPodSandbox returns).
    pub pods: std::cell::RefCell<Vec<String>>,
}

impl Cri {
    /// Await one call, with a timeout.
    pub fn block<T>(
        &self,
        call: impl std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    ) -> Result<T, tonic::Status> {
        self.rt.block_on(async {
            match tokio::time::timeout(RPC_TIMEOUT, call).await {
                Ok(r) => r.map(|r| r.into_inner()),
                Err(_) => Err(tonic::Status::deadline_exceeded(format!(
                    "no answer within {RPC_TIMEOUT:?}"
                ))),
            }
        })
    }
    /// The RuntimeService client.
    pub fn rs(&self) -> RuntimeServiceClient<Channel> {
        self.rs.clone()
    }
    /// The ImageService client.
    pub fn is(&self) -> ImageServiceClient<Channel> {
        self.is.clone()
    }

    /// Connects to containerd's grpc socket `sock`.
    pub fn connect(sock: &Path) -> Cri {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let sock = sock.to_path_buf();
        let channel = rt
            .block_on(
                Endpoint::try_from("http://[::]:50051")
                    .unwrap()
                    .connect_timeout(Duration::from_secs(5))
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let sock = sock.clone();
                        async move {
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                                tokio::net::UnixStream::connect(sock).await?,
                            ))
                        }
                    })),
            )
            .expect("connect to containerd's grpc socket");
        Cri {
            rs: RuntimeServiceClient::new(channel.clone()),
            is: ImageServiceClient::new(channel),
            rt,
            pods: Default::default(),
        }
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        for id in self.pods.take() {
            let _ = self.block(self.rs().stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: id.clone(),
            }));
            let _ = self.block(
                self.rs()
                    .remove_pod_sandbox(RemovePodSandboxRequest { pod_sandbox_id: id }),
            );
        }
    }
}
