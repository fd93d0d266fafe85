//! The OCI runtime-spec documents the shim reads, as `oci-spec`'s types (the ones youki and the
//! Rust runc shim use): the bundle's `config.json` and the `LinuxResources` of an Update.
//!
//! Failure policy: `load` is for reading what Scribe needs to route logs and group shims; a
//! config.json that is missing or is not JSON of the spec's shape yields `None` (logged), and
//! the runtime, which owns the spec's validation, reports it properly at Create.
//! `linux_resources` is the gate of Update: whatever it refuses never reaches the runtime.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::LinuxResources;
use serde::Deserialize;

/// The parts of config.json Scribe reads (annotations, `process.args`, `process.env`); the rest of the spec is
/// left to the runtime. Not `oci_spec::runtime::Spec`: its `Process` validates `execCPUAffinity`
/// with the `regex` crate, whose tables alone raised every idle shim's USS from 290 to 452 KiB
/// (relocated pointers; docs/dependencies.md has the measurement).
#[derive(Debug, Default, Deserialize)]
pub struct Spec {
    #[serde(default)]
    annotations: Option<HashMap<String, String>>,
    #[serde(default)]
    process: Option<ProcessArgs>,
}

/// `process.args` and `process.env`, the fields of `process` Scribe reads (env only for a
/// logging plugin whose options ask for it).
#[derive(Debug, Default, Deserialize)]
struct ProcessArgs {
    #[serde(default)]
    args: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
}

impl Spec {
    /// `annotations`.
    pub fn annotations(&self) -> Option<&HashMap<String, String>> {
        self.annotations.as_ref()
    }

    /// `process.args`.
    pub fn args(&self) -> Option<&Vec<String>> {
        self.process.as_ref().and_then(|p| p.args.as_ref())
    }

    /// `process.env`.
    pub fn env(&self) -> Option<&Vec<String>> {
        self.process.as_ref().and_then(|p| p.env.as_ref())
    }
}

/// The bundle's `config.json`, when it is there and parses as an OCI runtime spec.
pub fn load(bundle: &Path) -> Option<Spec> {
    let path = bundle.join("config.json");
    let data = match std::fs::read(&path) {
        Ok(d) => d,
        Err(e) => {
            log::debug!("reading {}: {e}", path.display());
            return None;
        }
    };
    parse(&data)
        .map_err(|e| log::warn!("{}: {e}", path.display()))
        .ok()
}

/// Parses the text of a config.json.
pub fn parse(data: &[u8]) -> Result<Spec, String> {
    serde_json::from_slice(data).map_err(|e| format!("not an OCI runtime spec: {e}"))
}

/// Decodes the `LinuxResources` JSON an Update carries. Only a JSON object is one (the typed
/// decoder would also take a JSON array of the fields in order, which no client sends).
pub fn linux_resources(data: &[u8]) -> Result<LinuxResources, String> {
    if data.trim_ascii_start().first() != Some(&b'{') {
        return Err("a JSON object is expected".into());
    }
    serde_json::from_slice(data).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_typed() {
        let r = linux_resources(br#"{"memory":{"limit":50331648},"cpu":{"shares":512}}"#)
            .expect("valid LinuxResources");
        assert_eq!(r.memory().as_ref().and_then(|m| m.limit()), Some(50331648));
        assert_eq!(r.cpu().as_ref().and_then(|c| c.shares()), Some(512));
        // Fields Scribe does not know are the runtime's business: accepted.
        assert!(linux_resources(br#"{"unified":{"memory.high":"1M"},"x-new":1}"#).is_ok());
    }

    #[test]
    fn bad_resources_are_refused_with_the_reason() {
        for bad in [
            &b"{not json"[..],
            b"[]",
            b"null",
            b"42",
            br#"{"memory":{"limit":"lots"}}"#,
            br#"{"pids":{"limit":1.5}}"#,
            br#"{"cpu":{"shares":-1}}"#,
        ] {
            let e = linux_resources(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(!e.is_empty());
        }
        let e = linux_resources(br#"{"memory":{"limit":"lots"}}"#).unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
    }

    #[test]
    fn a_config_json_parses_into_a_spec() {
        let spec = parse(
            br#"{"ociVersion":"1.1.0","process":{"args":["sh","-c","true"],"cwd":"/"},
                 "root":{"path":"rootfs"},"annotations":{"a":"b"},
                 "linux":{"cgroupsPath":"/default/x","namespaces":[{"type":"pid"}]}}"#,
        )
        .expect("valid spec");
        assert_eq!(
            spec.args().cloned(),
            Some(vec!["sh".into(), "-c".into(), "true".into()])
        );
        assert_eq!(
            spec.annotations().and_then(|a| a.get("a")).cloned(),
            Some("b".to_string())
        );
        assert!(parse(b"not json").is_err());
        assert!(parse(br#"{"process":{"args":"sh"}}"#).is_err());
    }

    #[test]
    fn load_reads_the_bundle_and_tolerates_its_absence() {
        let d = tempfile::tempdir().expect("tempdir");
        assert!(load(d.path()).is_none());
        std::fs::write(d.path().join("config.json"), br#"{"ociVersion":"1.0.2"}"#)
            .expect("write config.json");
        assert!(load(d.path()).is_some());
        std::fs::write(d.path().join("config.json"), b"{").expect("write config.json");
        assert!(load(d.path()).is_none());
    }
}
