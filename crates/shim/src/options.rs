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
    /// Options of the log driver (Docker's names: max-size, max-file, compress, tag).
    #[serde(default)]
    pub log_opts: BTreeMap<String, String>,
}

/// Default root of Scribe's records and logs.
pub const DEFAULT_LOG_ROOT: &str = "/var/log/scribe";

fn default_log_root() -> String {
    DEFAULT_LOG_ROOT.to_string()
}

fn default_true() -> bool {
    true
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
                Ok(())
            }
            // CRI sends this for every non-runc runtime type (the TOML of the runtime's
            // `options` table in config_body); ctr sends it with `--runtime-config-path`.
            RUNTIME_OPTIONS_TYPE => {
                let (path, body) = runtime_options_config(&any.value)?;
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

/// Returns the config path and body fields of a `runtimeoptions.v1.Options` (fields 2 and 3).
fn runtime_options_config(value: &[u8]) -> Result<(String, String), String> {
    // runtimeoptions.v1.Options { string type_url = 1; string config_path = 2; string config_body = 3; }
    // Three string fields: reading the wire format directly is simpler than generating code.
    let mut input = containerd_shim_protos::protobuf::CodedInputStream::from_bytes(value);
    let (mut path, mut body) = (String::new(), String::new());
    while let Some(tag) = input
        .read_raw_tag_or_eof()
        .map_err(|e| format!("decoding {RUNTIME_OPTIONS_TYPE}: {e}"))?
    {
        let field = tag >> 3;
        let s = input
            .read_string()
            .map_err(|e| format!("decoding {RUNTIME_OPTIONS_TYPE} field {field}: {e}"))?;
        match field {
            2 => path = s,
            3 => body = s,
            _ => {}
        }
    }
    Ok((path, body))
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
mod tests {
    use super::*;
    use containerd_shim_protos::bootstrap_api::Extension;

    fn runc_any(binary: &str, root: &str) -> Any {
        let o = RuncOptions {
            binary_name: binary.into(),
            root: root.into(),
            systemd_cgroup: true,
            ..Default::default()
        };
        Any {
            type_url: RUNC_OPTIONS_TYPE.into(),
            value: o.write_to_bytes().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn legacy_any_is_decoded() {
        let bytes = runc_any("crun", "/r").write_to_bytes().unwrap();
        let input = decode_start_input(&bytes, "c1", "default").unwrap();
        assert!(input.bootstrap.is_none());
        let mut s = Settings::defaults("default");
        s.apply_any(&input.options.unwrap()).unwrap();
        assert_eq!(s.binary_name, "crun");
        assert_eq!(s.root, "/r");
        assert!(s.systemd_cgroup);
    }

    #[test]
    fn bootstrap_is_decoded_when_identity_matches() {
        let mut ext = Extension::new();
        ext.value = Some(runc_any("runc", "/other")).into();
        let params = BootstrapParams {
            instance_id: "c1".into(),
            namespace: "k8s.io".into(),
            containerd_ttrpc_address: "/run/containerd/containerd.sock.ttrpc".into(),
            extensions: vec![ext],
            ..Default::default()
        };
        let bytes = params.write_to_bytes().unwrap();
        let input = decode_start_input(&bytes, "c1", "k8s.io").unwrap();
        assert!(input.bootstrap.is_some());
        let mut s = Settings::defaults("k8s.io");
        s.apply_any(&input.options.unwrap()).unwrap();
        assert_eq!(s.root, "/other");

        // Same bytes, other identity: treated as a legacy Any (and then it is not a valid one
        // with a known type).
        let other = decode_start_input(&bytes, "c2", "k8s.io").unwrap();
        assert!(other.bootstrap.is_none());
    }

    #[test]
    fn empty_stdin_means_defaults() {
        let input = decode_start_input(&[], "c1", "default").unwrap();
        assert!(input.options.is_none() && input.bootstrap.is_none());
    }

    #[test]
    fn unknown_option_types_are_refused() {
        let any = Any {
            type_url: "example.Unknown".into(),
            value: vec![],
            ..Default::default()
        };
        assert!(Settings::defaults("x").apply_any(&any).is_err());
    }

    fn runtime_options_any(path: &str, body: &str) -> Any {
        let mut value = Vec::new();
        {
            let mut out = containerd_shim_protos::protobuf::CodedOutputStream::vec(&mut value);
            out.write_string(1, RUNTIME_OPTIONS_TYPE).unwrap();
            out.write_string(2, path).unwrap();
            out.write_string(3, body).unwrap();
            out.flush().unwrap();
        }
        Any {
            type_url: RUNTIME_OPTIONS_TYPE.into(),
            value,
            ..Default::default()
        }
    }

    #[test]
    fn runtime_options_toml_body_and_path() {
        let mut s = Settings::defaults("k8s.io");
        s.apply_any(&runtime_options_any(
            "",
            "BinaryName = \"crun\"\nSystemdCgroup = true\n",
        ))
        .unwrap();
        assert_eq!(s.binary_name, "crun");
        assert!(s.systemd_cgroup);

        let dir = std::env::temp_dir().join(format!("scribe-toml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("scribe.toml");
        std::fs::write(&file, "Root = \"/run/other\"\n").unwrap();
        let mut s = Settings::defaults("k8s.io");
        s.apply_any(&runtime_options_any(file.to_str().unwrap(), ""))
            .unwrap();
        assert_eq!(s.root, "/run/other");
        std::fs::remove_dir_all(&dir).unwrap();

        // Nothing configured: defaults stay.
        let mut s = Settings::defaults("k8s.io");
        s.apply_any(&runtime_options_any("", "")).unwrap();
        assert_eq!(s, Settings::defaults("k8s.io"));
    }

    #[test]
    fn bad_toml_is_refused_with_the_reason() {
        let mut s = Settings::defaults("x");
        let e = s.apply_toml("BinaryName = ").unwrap_err();
        assert!(e.contains("invalid runtime options TOML"), "{e}");
        let e = s.apply_toml("Bogus = 1").unwrap_err();
        assert!(e.contains("Bogus"), "{e}");
        let e = s.apply_toml("SystemdCgroup = \"yes\"").unwrap_err();
        assert!(e.contains("SystemdCgroup") || e.contains("bool"), "{e}");
        let e = s
            .apply_any(&runtime_options_any("/nonexistent/scribe.toml", ""))
            .unwrap_err();
        assert!(e.contains("/nonexistent/scribe.toml"), "{e}");
    }

    #[test]
    fn json_file_root_is_absolute_and_separate_from_log_root() {
        let mut s = Settings::defaults("x");
        assert_eq!(s.json_file_root, "", "defaults to LogRoot");
        s.apply_toml("LogRoot = \"/var/log/scribe\"\nJsonFileRoot = \"/srv/logs\"\n")
            .unwrap();
        assert_eq!(s.log_root, "/var/log/scribe");
        assert_eq!(s.json_file_root, "/srv/logs");
        let e = s.apply_toml("JsonFileRoot = \"logs\"").unwrap_err();
        assert!(e.contains("JsonFileRoot") && e.contains("absolute"), "{e}");
        // options.json written by an older shim has no such field
        let old = r#"{"binary_name":"runc","root":"/r","log_root":"/l"}"#;
        let s: Settings = serde_json::from_str(old).unwrap();
        assert_eq!(s.json_file_root, "");
    }

    #[test]
    fn settings_round_trip_through_bundle() {
        let dir = std::env::temp_dir().join(format!("scribe-opt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(Settings::load(&dir).unwrap(), None);
        let s = Settings::defaults("ns");
        s.save(&dir).unwrap();
        assert_eq!(Settings::load(&dir).unwrap(), Some(s));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
