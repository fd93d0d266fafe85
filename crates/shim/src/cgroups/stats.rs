//! Task Stats: a container's cgroup figures as the `Any` containerd expects, an
//! `io.containerd.cgroups.v1.Metrics` on v1/hybrid hosts or `io.containerd.cgroups.v2.Metrics` on
//! unified ones (bare type names, as containerd's typeurl writes them).
//!
//! Files a host or kernel may lack (memsw without swap accounting, memory.peak before 5.19, a
//! controller not enabled) leave their fields at zero; a file that exists but cannot be read or
//! parsed is an error naming it.
//!
//! Hand-written, not cgroups-rs's controllers (`MemController::memory_stat`,
//! `CpuAcctController::cpuacct`, `PidController`): they return plain structs in which every file
//! that cannot be read or parsed becomes 0 (`unwrap_or(0)` / `unwrap_or_default()`), so a broken
//! file could not be told from an idle cgroup, which the policy above needs; and loading a
//! `Cgroup` through `hierarchies::auto()` re-reads `/proc/self/mountinfo` on every Stats call.

mod v1;
mod v2;

use std::io;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;

use super::locate::ContainerCgroup;

pub use v1::v1_metrics;
pub use v2::v2_metrics;

/// The `Any` type URL of cgroup v1 metrics.
pub const V1_METRICS_TYPE: &str = "io.containerd.cgroups.v1.Metrics";
/// The `Any` type URL of cgroup v2 metrics.
pub const V2_METRICS_TYPE: &str = "io.containerd.cgroups.v2.Metrics";

fn pack(type_url: &str, msg: &impl Message) -> io::Result<Any> {
    let value = msg
        .write_to_bytes()
        .map_err(|e| io::Error::other(format!("encoding {type_url}: {e}")))?;
    Ok(Any {
        type_url: type_url.to_owned(),
        value,
        ..Default::default()
    })
}

impl ContainerCgroup {
    /// This cgroup's metrics, packed for `StatsResponse.stats`.
    pub fn metrics_any(&self) -> io::Result<Any> {
        match self {
            ContainerCgroup::V1(dirs) => pack(V1_METRICS_TYPE, &v1_metrics(dirs)?),
            ContainerCgroup::V2(dir) => pack(V2_METRICS_TYPE, &v2_metrics(dir)?),
        }
    }
}
