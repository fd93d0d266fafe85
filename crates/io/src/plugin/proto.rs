//! The JSON bodies of Docker's LogDriver plugin protocol, with dockerd's Go field names.
//!
//! Every request is `POST /<Method>` with header `Accept: application/vnd.docker.plugins.v1.2+json`
//! ([`ACCEPT`]); every reply may carry `Err` (non-empty: the call failed). Where the published
//! docs and the real peers disagree, these types follow the peers: Capabilities come wrapped
//! in `Cap`, Activate may answer `LoggingDriver` (Loki, Elastic) instead of `LogDriver`, and
//! ReadLogs' config carries `Until`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The `Accept` (and reply `Content-Type`) dockerd sends with every plugin call.
pub const ACCEPT: &str = "application/vnd.docker.plugins.v1.2+json";

/// The `Host` header dockerd sends on unix sockets.
pub const UNIX_HOST: &str = "plugin.moby.localhost";

/// `/Plugin.Activate`.
pub const ACTIVATE: &str = "/Plugin.Activate";
/// `/LogDriver.StartLogging`.
pub const START_LOGGING: &str = "/LogDriver.StartLogging";
/// `/LogDriver.StopLogging`.
pub const STOP_LOGGING: &str = "/LogDriver.StopLogging";
/// `/LogDriver.Capabilities`.
pub const CAPABILITIES: &str = "/LogDriver.Capabilities";
/// `/LogDriver.ReadLogs`.
pub const READ_LOGS: &str = "/LogDriver.ReadLogs";

/// The interface names a log plugin may announce in `Implements` (Docker's own is `LogDriver`;
/// several published plugins answer `LoggingDriver`, which dockerd also accepts).
pub const LOG_DRIVER_INTERFACES: &[&str] = &["LogDriver", "LoggingDriver"];

/// The zero `time.Time` as Go marshals it: "no bound" in [`ReadConfig`].
pub const GO_ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Go marshals a nil slice or map as `null` (dockerd sends `"ContainerArgs": null` for a
/// container without arguments): read as empty.
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What the host knows about the container (Docker's `logger.Info`). Only `ContainerID` is
/// required; plugins read `ContainerName`, `ContainerImageName`, `ContainerLabels` and
/// `Config` (the container's log options).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Info {
    /// The log options of the container (`--log-opt`).
    #[serde(deserialize_with = "null_is_default")]
    pub config: BTreeMap<String, String>,
    /// The full container id.
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    /// Docker sends the name with a leading `/`.
    pub container_name: String,
    /// The entrypoint (first word of the process args).
    pub container_entrypoint: String,
    /// The remaining process args.
    #[serde(deserialize_with = "null_is_default")]
    pub container_args: Vec<String>,
    /// The image id (`sha256:...`).
    #[serde(rename = "ContainerImageID")]
    pub container_image_id: String,
    /// The image reference.
    pub container_image_name: String,
    /// RFC 3339 with nanoseconds (Go's `time.Time`).
    pub container_created: String,
    /// `K=V` entries; sent only where an option asks for them.
    #[serde(deserialize_with = "null_is_default")]
    pub container_env: Vec<String>,
    /// The container's labels.
    #[serde(deserialize_with = "null_is_default")]
    pub container_labels: BTreeMap<String, String>,
    /// Empty for plugins.
    pub log_path: String,
    /// `docker` from dockerd; `scribe` from the shim.
    pub daemon_name: String,
}

/// `/LogDriver.StartLogging`'s body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StartLoggingRequest {
    /// The FIFO the host writes frames into.
    pub file: String,
    /// The container.
    pub info: Info,
}

/// `/LogDriver.StopLogging`'s body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct StopLoggingRequest {
    /// The FIFO given to StartLogging.
    pub file: String,
}

/// The reply of StartLogging and StopLogging (and the error body of any call).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ErrResponse {
    /// Empty (or absent) when the call succeeded.
    pub err: String,
}

/// `/Plugin.Activate`'s reply.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ActivateResponse {
    /// The plugin interfaces it serves.
    pub implements: Vec<String>,
}

impl ActivateResponse {
    /// Whether the plugin announces a log driver (either spelling).
    pub fn is_log_driver(&self) -> bool {
        self.implements
            .iter()
            .any(|i| LOG_DRIVER_INTERFACES.contains(&i.as_str()))
    }
}

/// The capabilities a log plugin declares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct Capabilities {
    /// The plugin serves `/LogDriver.ReadLogs`.
    pub read_logs: bool,
}

/// `/LogDriver.Capabilities`' reply, as real plugins send it (`{"Cap": {...}, "Err": ""}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct CapabilitiesResponse {
    /// The capabilities.
    pub cap: Capabilities,
    /// Empty when the call succeeded.
    pub err: String,
}

/// What `/LogDriver.ReadLogs` should send (Docker's `logger.ReadConfig`). Times are RFC 3339
/// with nanoseconds; [`GO_ZERO_TIME`] means "no bound". `Tail` < 0 means all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReadConfig {
    /// The oldest entry to send.
    pub since: String,
    /// The newest entry to send.
    pub until: String,
    /// How many of the newest entries; negative: all.
    pub tail: i64,
    /// Keep the response open and send new entries as they come.
    pub follow: bool,
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            since: GO_ZERO_TIME.to_owned(),
            until: GO_ZERO_TIME.to_owned(),
            tail: -1,
            follow: false,
        }
    }
}

/// `/LogDriver.ReadLogs`' body; the reply is a stream of frames ([`super::frame`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ReadLogsRequest {
    /// The container, as given to StartLogging.
    pub info: Info,
    /// What to send.
    pub config: ReadConfig,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_dockerds() {
        let r = StartLoggingRequest {
            file: "/run/x".into(),
            info: Info {
                container_id: "c1".into(),
                container_image_id: "sha256:1".into(),
                ..Info::default()
            },
        };
        let v: serde_json::Value = serde_json::to_value(&r).unwrap();
        assert_eq!(v["File"], "/run/x");
        assert_eq!(v["Info"]["ContainerID"], "c1");
        assert_eq!(v["Info"]["ContainerImageID"], "sha256:1");
        assert!(v["Info"].get("ContainerLabels").is_some());
    }

    #[test]
    fn accepts_what_real_plugins_answer() {
        let a: ActivateResponse =
            serde_json::from_str(r#"{"Implements":["LoggingDriver"]}"#).unwrap();
        assert!(a.is_log_driver());
        let a: ActivateResponse =
            serde_json::from_str(r#"{"Implements":["VolumeDriver"]}"#).unwrap();
        assert!(!a.is_log_driver());
        let c: CapabilitiesResponse =
            serde_json::from_str(r#"{"Cap":{"ReadLogs":true},"Err":""}"#).unwrap();
        assert!(c.cap.read_logs);
        let e: ErrResponse = serde_json::from_str("{}").unwrap();
        assert!(e.err.is_empty());
        let r: ReadLogsRequest = serde_json::from_str(
            r#"{"Info":{"ContainerID":"x"},"Config":{"Since":"0001-01-01T00:00:00Z","Until":"0001-01-01T00:00:00Z","Tail":5,"Follow":true}}"#,
        )
        .unwrap();
        assert_eq!(r.config.tail, 5);
        assert!(r.config.follow);
        // dockerd sends `null` for Capabilities; an absent Config means "everything".
        let r: ReadLogsRequest = serde_json::from_str(r#"{"Info":{"ContainerID":"x"}}"#).unwrap();
        assert_eq!(r.config.tail, -1);
        // Go's nil slices and maps.
        let s: StartLoggingRequest = serde_json::from_str(
            r#"{"File":"/f","Info":{"ContainerID":"x","Config":null,"ContainerArgs":null,"ContainerEnv":null,"ContainerLabels":null}}"#,
        )
        .unwrap();
        assert!(s.info.container_args.is_empty() && s.info.config.is_empty());
    }
}
