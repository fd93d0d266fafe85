//! Unit tests of `options`.
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
    let o = RuntimeOptions {
        type_url: RUNTIME_OPTIONS_TYPE.into(),
        config_path: path.into(),
        config_body: body.into(),
        ..Default::default()
    };
    Any {
        type_url: RUNTIME_OPTIONS_TYPE.into(),
        value: o.write_to_bytes().unwrap(),
        ..Default::default()
    }
}

#[test]
fn runtime_options_wire_format_is_containerds() {
    // What containerd's Go encoder writes for Options{TypeUrl, ConfigPath, ConfigBody}:
    // field 1, 2, 3 as length-delimited strings.
    let mut wire = vec![0x0a, 1, b't', 0x12, 2, b'/', b'p', 0x1a, 3];
    wire.extend_from_slice(b"A=1");
    let o = RuntimeOptions::parse_from_bytes(&wire).unwrap();
    assert_eq!((o.type_url.as_str(), o.config_path.as_str()), ("t", "/p"));
    assert_eq!(o.config_body, "A=1");
    // A field this version does not know (a varint in field 9) is skipped, not misread.
    let mut wire2 = vec![0x48, 0x01];
    wire2.extend_from_slice(&wire);
    let o2 = RuntimeOptions::parse_from_bytes(&wire2).unwrap();
    assert_eq!(
        (o2.config_path, o2.config_body),
        (o.config_path, o.config_body)
    );
    // Truncated input is an error naming the message type.
    let any = Any {
        type_url: RUNTIME_OPTIONS_TYPE.into(),
        value: wire[..wire.len() - 1].to_vec(),
        ..Default::default()
    };
    let e = Settings::defaults("x").apply_any(&any).unwrap_err();
    assert!(e.contains(RUNTIME_OPTIONS_TYPE), "{e}");
}

#[test]
fn runc_options_io_owner_and_criu_paths_are_kept() {
    let o = RuncOptions {
        io_uid: 1000,
        io_gid: 1001,
        criu_image_path: "/ckpt".into(),
        criu_work_path: "/work".into(),
        ..Default::default()
    };
    let any = Any {
        type_url: RUNC_OPTIONS_TYPE.into(),
        value: o.write_to_bytes().unwrap(),
        ..Default::default()
    };
    let mut s = Settings::defaults("x");
    s.apply_any(&any).unwrap();
    assert_eq!((s.io_uid, s.io_gid), (1000, 1001));
    assert_eq!(
        (s.criu_image_path.as_str(), s.criu_work_path.as_str()),
        ("/ckpt", "/work")
    );

    let mut s = Settings::defaults("x");
    s.apply_toml("IoUid = 7\nIoGid = 8\nCriuPath = \"/opt/criu\"\n")
        .unwrap();
    assert_eq!(
        (s.io_uid, s.io_gid, s.criu_path.as_str()),
        (7, 8, "/opt/criu")
    );
    let e = s.apply_toml("CriuPath = \"criu\"").unwrap_err();
    assert!(e.contains("CriuPath must be an absolute path"), "{e}");
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

#[test]
fn log_retention_keys() {
    let mut s = Settings::defaults("ns");
    assert_eq!(s.log_retention_secs, 86_400);
    assert_eq!(s.log_retention_max_size, 1 << 30);
    s.apply_toml("LogRetention = \"0\"\nLogRetentionMaxSize = \"512MiB\"\n")
        .unwrap();
    assert_eq!(s.log_retention_secs, 0);
    assert_eq!(s.log_retention_max_size, 512 << 20);
    let e = Settings::defaults("ns")
        .apply_toml("LogRetention = \"soon\"\n")
        .unwrap_err();
    assert!(e.contains("LogRetention") && e.contains("soon"), "{e}");
    let e = Settings::defaults("ns")
        .apply_toml("LogRetentionMaxSize = \"big\"\n")
        .unwrap_err();
    assert!(e.contains("LogRetentionMaxSize"), "{e}");
    // options.json written before these settings existed: the defaults.
    let old: Settings = serde_json::from_str(r#"{"binary_name":"runc","root":"/r"}"#).unwrap();
    assert_eq!(old.log_retention_secs, DEFAULT_LOG_RETENTION_SECS);
}

#[test]
fn the_example_options_file_is_valid() {
    let mut s = Settings::defaults("ns");
    s.apply_toml(include_str!("../../../../examples/scribe.toml"))
        .unwrap();
    assert_eq!(s.log_retention_secs, 86_400);
    assert_eq!(s.log_retention_max_size, 1 << 30);
}

#[test]
fn plugin_dirs_from_the_toml_only_absolute() {
    let mut s = Settings::defaults("ns");
    s.apply_toml("PluginDirs = [\"/srv/plugins\", \"/run/p\"]")
        .unwrap();
    assert_eq!(s.plugin_dirs, ["/srv/plugins", "/run/p"]);
    let e = s.apply_toml("PluginDirs = [\"rel\"]").unwrap_err();
    assert!(e.contains("PluginDirs") && e.contains("rel"), "{e}");
}
