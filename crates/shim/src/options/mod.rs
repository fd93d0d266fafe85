//! Runtime options: how they reach the shim, and the settings Scribe keeps from them.
//!
//! containerd writes options on the `start` command's stdin: up to 2.2 a protobuf `Any`
//! (`containerd.runc.v1.Options`, or `runtimeoptions.v1.Options` from CRI for non-runc runtime
//! types, or nothing), from 2.3 a `BootstrapParams` message whose extensions carry that `Any`.
//! The chosen settings are saved in the bundle as `options.json`, so that the daemon and the
//! `delete` command (which runs after the daemon died) use the same runtime binary and root.

use std::collections::BTreeMap;
use std::path::Path;

use containerd_shim_protos::bootstrap_api::BootstrapParams;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options as RuncOptions;

use crate::proto::runtimeoptions::Options as RuntimeOptions;
use serde::{Deserialize, Serialize};

/// The `Any` type URL containerd uses for runc shim options.
pub const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";
/// The `Any` type URL CRI uses for any non-runc runtime type.
pub const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";

/// The settings a container runs with, saved as `<bundle>/options.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// The OCI runtime binary (name on PATH, or absolute path).
    pub binary_name: String,
    /// The runtime's state root (`--root`).
    pub root: String,
    /// Use the runtime's `--systemd-cgroup`.
    #[serde(default)]
    pub systemd_cgroup: bool,
    /// Pass `--no-pivot` to `create`.
    #[serde(default)]
    pub no_pivot_root: bool,
    /// Pass `--no-new-keyring` to `create`.
    #[serde(default)]
    pub no_new_keyring: bool,
    /// cgroup the shim moves itself into.
    #[serde(default)]
    pub shim_cgroup: String,
    /// Where Scribe's records go: `<log_root>/<namespace>/<id>/`.
    #[serde(default = "default_log_root")]
    pub log_root: String,
    /// Where json-file logs go instead of `log_root` (`<json_file_root>/<namespace>/<id>/`);
    /// empty means `log_root`. On a file system of its own, a full json-file disk can still be
    /// reported in `runtime.log`.
    #[serde(default)]
    pub json_file_root: String,
    /// Write lifecycle records to `container.log`.
    #[serde(default = "default_true")]
    pub container_log: bool,
    /// Keep the OCI runtime's log lines as records in `runtime.log`.
    #[serde(default = "default_true")]
    pub runtime_log: bool,
    /// Built-in log driver for container output: empty/`none`, or `json-file`.
    #[serde(default)]
    pub log_driver: String,
    /// Options of the log drivers (Docker's names: max-size, max-file, compress, tag, mode,
    /// fluentd-address, ...). An address given here is usable by any container.
    #[serde(default)]
    pub log_opts: BTreeMap<String, String>,
    /// Drivers (and plugins) an annotation may choose (`AllowedLogDrivers`). Admin-only.
    #[serde(default = "default_allowed_log_drivers")]
    pub allowed_log_drivers: Vec<String>,
    /// Exact addresses (`fluentd-address`, ...) an annotation may give (`AllowedLogAddresses`).
    /// Admin-only; empty: none.
    #[serde(default)]
    pub allowed_log_addresses: Vec<String>,
    /// Where Docker logging plugins are looked for (`PluginDirs`): each directory is searched
    /// for `<name>.sock`, `<name>/<name>.sock`, `<name>.spec` and `<name>.json`, in place of
    /// dockerd's `/run/docker/plugins`, `/etc/docker/plugins` and `/usr/lib/docker/plugins`
    /// (empty: dockerd's). Admin-only: it names host paths the root shim connects to.
    #[serde(default)]
    pub plugin_dirs: Vec<String>,
    /// Owner given to the stdio pipes the container's processes get (user namespaces).
    #[serde(default)]
    pub io_uid: u32,
    /// Group given to the stdio pipes the container's processes get.
    #[serde(default)]
    pub io_gid: u32,
    /// The CRIU binary the runtime runs (`--criu`); empty: `criu` on PATH.
    #[serde(default)]
    pub criu_path: String,
    /// Default checkpoint image directory when a Checkpoint request names none.
    #[serde(default)]
    pub criu_image_path: String,
    /// CRIU's work directory (dump/restore logs) for checkpoint and restore.
    #[serde(default)]
    pub criu_work_path: String,
    /// How long a deleted container's log directories are kept, in seconds (`LogRetention`);
    /// 0 removes them at delete. Admin-only: no annotation sets it.
    #[serde(default = "default_log_retention")]
    pub log_retention_secs: u64,
    /// Bytes a namespace's log directories may take before the oldest deleted ones go
    /// (`LogRetentionMaxSize`); 0: no cap. Admin-only: no annotation sets it.
    #[serde(default = "default_log_retention_max_size")]
    pub log_retention_max_size: u64,
}

/// Default root of Scribe's records and logs.
pub const DEFAULT_LOG_ROOT: &str = "/var/log/scribe";

fn default_log_root() -> String {
    DEFAULT_LOG_ROOT.to_string()
}

fn default_true() -> bool {
    true
}

/// Default `AllowedLogDrivers`: the drivers that only write under the container's own log
/// directory.
pub fn default_allowed_log_drivers() -> Vec<String> {
    ["json-file", "local", "none"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Default `LogRetention`: a day (see the README: records outlive `ctr run --rm` long enough to
/// look at a failure, and go without anyone cleaning up).
pub const DEFAULT_LOG_RETENTION_SECS: u64 = 24 * 3600;
/// Default `LogRetentionMaxSize`: 1 GiB per namespace.
pub const DEFAULT_LOG_RETENTION_MAX_SIZE: u64 = 1 << 30;

fn default_log_retention() -> u64 {
    DEFAULT_LOG_RETENTION_SECS
}

fn default_log_retention_max_size() -> u64 {
    DEFAULT_LOG_RETENTION_MAX_SIZE
}

impl Settings {
    /// The defaults of containerd's runc shim for a namespace.
    pub fn defaults(namespace: &str) -> Settings {
        Settings {
            binary_name: "runc".into(),
            root: format!("/run/containerd/runc/{namespace}"),
            systemd_cgroup: false,
            no_pivot_root: false,
            no_new_keyring: false,
            shim_cgroup: String::new(),
            log_root: default_log_root(),
            json_file_root: String::new(),
            container_log: true,
            runtime_log: true,
            log_driver: String::new(),
            log_opts: BTreeMap::new(),
            allowed_log_drivers: default_allowed_log_drivers(),
            allowed_log_addresses: Vec::new(),
            plugin_dirs: Vec::new(),
            io_uid: 0,
            io_gid: 0,
            criu_path: String::new(),
            criu_image_path: String::new(),
            criu_work_path: String::new(),
            log_retention_secs: DEFAULT_LOG_RETENTION_SECS,
            log_retention_max_size: DEFAULT_LOG_RETENTION_MAX_SIZE,
        }
    }

    /// Applies a runtime options `Any` on top of these settings.
    pub fn apply_any(&mut self, any: &Any) -> Result<(), String> {
        if any.type_url.is_empty() && any.value.is_empty() {
            return Ok(());
        }
        let kind = any.type_url.rsplit('/').next().unwrap_or_default();
        match kind {
            RUNC_OPTIONS_TYPE => {
                let o = RuncOptions::parse_from_bytes(&any.value)
                    .map_err(|e| format!("decoding {RUNC_OPTIONS_TYPE}: {e}"))?;
                if !o.binary_name.is_empty() {
                    self.binary_name = o.binary_name;
                }
                if !o.root.is_empty() {
                    self.root = o.root;
                }
                self.systemd_cgroup = o.systemd_cgroup;
                self.no_pivot_root = o.no_pivot_root;
                self.no_new_keyring = o.no_new_keyring;
                self.shim_cgroup = o.shim_cgroup;
                self.io_uid = o.io_uid;
                self.io_gid = o.io_gid;
                self.criu_image_path = o.criu_image_path;
                self.criu_work_path = o.criu_work_path;
                Ok(())
            }
            // CRI sends this for every non-runc runtime type (the TOML of the runtime's
            // `options` table in config_body); ctr sends it with `--runtime-config-path`.
            RUNTIME_OPTIONS_TYPE => {
                let o = RuntimeOptions::parse_from_bytes(&any.value)
                    .map_err(|e| format!("decoding {RUNTIME_OPTIONS_TYPE}: {e}"))?;
                let (path, body) = (o.config_path, o.config_body);
                let toml_text = if !body.is_empty() {
                    body
                } else if !path.is_empty() {
                    std::fs::read_to_string(&path)
                        .map_err(|e| format!("reading runtime options {path}: {e}"))?
                } else {
                    return Ok(());
                };
                self.apply_toml(&toml_text).map_err(|e| {
                    if path.is_empty() {
                        e
                    } else {
                        format!("{path}: {e}")
                    }
                })
            }
            other => Err(format!("unknown runtime options type {other:?}")),
        }
    }

    /// The owner (uid, gid) of the stdio pipes the container's processes get; (0, 0) = root.
    pub fn io_owner(&self) -> (u32, u32) {
        (self.io_uid, self.io_gid)
    }

    /// Writes the settings as `<bundle>/options.json`.
    pub fn save(&self, bundle: &Path) -> Result<(), String> {
        let path = bundle.join("options.json");
        let data = serde_json::to_vec(self).map_err(|e| format!("encoding options: {e}"))?;
        std::fs::write(&path, data).map_err(|e| format!("writing {}: {e}", path.display()))
    }

    /// Reads `<bundle>/options.json`, or `None` when it does not exist.
    pub fn load(bundle: &Path) -> Result<Option<Settings>, String> {
        let path = bundle.join("options.json");
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data)
                .map(Some)
                .map_err(|e| format!("parsing {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("reading {}: {e}", path.display())),
        }
    }
}

/// Scribe's options TOML: the keys of containerd's runc options, as CRI writes them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlOptions {
    #[serde(rename = "BinaryName")]
    binary_name: Option<String>,
    #[serde(rename = "Root")]
    root: Option<String>,
    #[serde(rename = "SystemdCgroup")]
    systemd_cgroup: Option<bool>,
    #[serde(rename = "NoPivotRoot")]
    no_pivot_root: Option<bool>,
    #[serde(rename = "NoNewKeyring")]
    no_new_keyring: Option<bool>,
    #[serde(rename = "ShimCgroup")]
    shim_cgroup: Option<String>,
    #[serde(rename = "LogRoot")]
    log_root: Option<String>,
    #[serde(rename = "JsonFileRoot")]
    json_file_root: Option<String>,
    #[serde(rename = "ContainerLog")]
    container_log: Option<bool>,
    #[serde(rename = "RuntimeLog")]
    runtime_log: Option<bool>,
    #[serde(rename = "LogDriver")]
    log_driver: Option<String>,
    #[serde(rename = "LogOpts")]
    log_opts: Option<BTreeMap<String, String>>,
    #[serde(rename = "AllowedLogDrivers")]
    allowed_log_drivers: Option<Vec<String>>,
    #[serde(rename = "AllowedLogAddresses")]
    allowed_log_addresses: Option<Vec<String>>,
    #[serde(rename = "PluginDirs")]
    plugin_dirs: Option<Vec<String>>,
    #[serde(rename = "IoUid")]
    io_uid: Option<u32>,
    #[serde(rename = "IoGid")]
    io_gid: Option<u32>,
    #[serde(rename = "CriuPath")]
    criu_path: Option<String>,
    #[serde(rename = "CriuImagePath")]
    criu_image_path: Option<String>,
    #[serde(rename = "CriuWorkPath")]
    criu_work_path: Option<String>,
    #[serde(rename = "LogRetention")]
    log_retention: Option<String>,
    #[serde(rename = "LogRetentionMaxSize")]
    log_retention_max_size: Option<String>,
}

impl Settings {
    /// Applies an options TOML; unknown keys and wrong types are errors naming the key.
    pub fn apply_toml(&mut self, text: &str) -> Result<(), String> {
        let o: TomlOptions =
            toml::from_str(text).map_err(|e| format!("invalid runtime options TOML: {e}"))?;
        if let Some(v) = o.binary_name.filter(|v| !v.is_empty()) {
            self.binary_name = v;
        }
        if let Some(v) = o.root.filter(|v| !v.is_empty()) {
            self.root = v;
        }
        if let Some(v) = o.systemd_cgroup {
            self.systemd_cgroup = v;
        }
        if let Some(v) = o.no_pivot_root {
            self.no_pivot_root = v;
        }
        if let Some(v) = o.no_new_keyring {
            self.no_new_keyring = v;
        }
        if let Some(v) = o.shim_cgroup {
            self.shim_cgroup = v;
        }
        if let Some(v) = o.log_root.filter(|v| !v.is_empty()) {
            if !v.starts_with('/') {
                return Err(format!("LogRoot must be an absolute path, got {v:?}"));
            }
            self.log_root = v;
        }
        if let Some(v) = o.json_file_root.filter(|v| !v.is_empty()) {
            if !v.starts_with('/') {
                return Err(format!("JsonFileRoot must be an absolute path, got {v:?}"));
            }
            self.json_file_root = v;
        }
        if let Some(v) = o.container_log {
            self.container_log = v;
        }
        if let Some(v) = o.runtime_log {
            self.runtime_log = v;
        }
        if let Some(v) = o.log_driver {
            self.log_driver = v;
        }
        if let Some(v) = o.log_opts {
            self.log_opts = v;
        }
        if let Some(v) = o.allowed_log_drivers {
            self.allowed_log_drivers = v;
        }
        if let Some(v) = o.allowed_log_addresses {
            self.allowed_log_addresses = v;
        }
        if let Some(v) = o.plugin_dirs {
            if let Some(bad) = v.iter().find(|d| !d.starts_with('/')) {
                return Err(format!(
                    "PluginDirs entries must be absolute paths, got {bad:?}"
                ));
            }
            self.plugin_dirs = v;
        }
        if let Some(v) = o.io_uid {
            self.io_uid = v;
        }
        if let Some(v) = o.io_gid {
            self.io_gid = v;
        }
        if let Some(v) = o.log_retention {
            self.log_retention_secs = crate::retention::parse_duration(&v)
                .map_err(|e| format!("LogRetention = {v:?}: {e}"))?;
        }
        if let Some(v) = o.log_retention_max_size {
            self.log_retention_max_size = crate::retention::parse_size(&v)
                .map_err(|e| format!("LogRetentionMaxSize = {v:?}: {e}"))?;
        }
        for (key, value, slot) in [
            ("CriuPath", o.criu_path, &mut self.criu_path),
            (
                "CriuImagePath",
                o.criu_image_path,
                &mut self.criu_image_path,
            ),
            ("CriuWorkPath", o.criu_work_path, &mut self.criu_work_path),
        ] {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                if !v.starts_with('/') {
                    return Err(format!("{key} must be an absolute path, got {v:?}"));
                }
                *slot = v;
            }
        }
        Ok(())
    }
}

/// What the `start` command found on its stdin.
#[derive(Debug, Default)]
pub struct StartInput {
    /// The runtime options, if any were sent.
    pub options: Option<Any>,
    /// containerd 2.3+ bootstrap parameters, when that is what was sent.
    pub bootstrap: Option<BootstrapParams>,
}

/// Tells a containerd 2.3+ `BootstrapParams` from a legacy options `Any`.
///
/// A bootstrap message is accepted only when its instance id and namespace match the command
/// line: a legacy `Any` can decode as a `BootstrapParams` by accident (both start with strings in
/// fields 1 and 2), and the identity check is what rules that out.
pub fn decode_start_input(data: &[u8], id: &str, namespace: &str) -> Result<StartInput, String> {
    if data.is_empty() {
        return Ok(StartInput::default());
    }
    if let Ok(params) = BootstrapParams::parse_from_bytes(data) {
        if params.instance_id == id && params.namespace == namespace {
            let options = params
                .extensions
                .iter()
                .filter_map(|e| e.value.as_ref())
                .find(|any| {
                    let kind = any.type_url.rsplit('/').next().unwrap_or_default();
                    kind == RUNC_OPTIONS_TYPE || kind == RUNTIME_OPTIONS_TYPE
                })
                .cloned();
            return Ok(StartInput {
                options,
                bootstrap: Some(params),
            });
        }
    }
    let any = Any::parse_from_bytes(data).map_err(|e| format!("decoding runtime options: {e}"))?;
    Ok(StartInput {
        options: Some(any),
        bootstrap: None,
    })
}

#[cfg(test)]
mod tests;
