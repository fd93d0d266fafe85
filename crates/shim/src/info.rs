//! The `-info` command: describe this runtime to containerd 2.x (`ctr plugins`, introspection).
//!
//! Prints a protobuf `RuntimeInfo`: name, version, the options read on stdin, and the OCI
//! runtime's own `features` JSON as an `Any`, as containerd's runc shim does.

use std::io::{Read, Write};
use std::process::{Command, Stdio};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::types::introspection::{RuntimeInfo, RuntimeVersion};
use scribe_io::childenv::{self, Child};

use crate::options::Settings;

/// The type URL containerd uses for runtime-spec `features.Features` (JSON-encoded).
const FEATURES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// Runs `-info`.
pub fn run() -> Result<(), String> {
    let mut stdin = Vec::new();
    std::io::stdin()
        .read_to_end(&mut stdin)
        .map_err(|e| format!("reading options from stdin: {e}"))?;
    let mut settings = Settings::defaults("default");
    let options = if stdin.is_empty() {
        None
    } else {
        let any = Any::parse_from_bytes(&stdin).map_err(|e| format!("decoding options: {e}"))?;
        settings.apply_any(&any)?;
        Some(any)
    };
    let out = Command::new(&settings.binary_name)
        .env_clear()
        .envs(childenv::from_process(Child::Runtime))
        .arg("features")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running {} features: {e}", settings.binary_name))?;
    if !out.status.success() {
        return Err(format!(
            "{} features: {}",
            settings.binary_name,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let info = RuntimeInfo {
        name: "io.containerd.scribe.v2".into(),
        version: MessageField::some(RuntimeVersion {
            version: env!("CARGO_PKG_VERSION").into(),
            revision: option_env!("SCRIBE_REVISION").unwrap_or("unknown").into(),
            ..Default::default()
        }),
        options: options.into(),
        features: MessageField::some(Any {
            type_url: FEATURES_TYPE.into(),
            value: out.stdout,
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = info
        .write_to_bytes()
        .map_err(|e| format!("encoding RuntimeInfo: {e}"))?;
    let mut stdout = std::io::stdout();
    stdout
        .write_all(&bytes)
        .and_then(|_| stdout.flush())
        .map_err(|e| format!("writing RuntimeInfo: {e}"))
}
