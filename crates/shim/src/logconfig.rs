//! Which records and logs a container gets, and where: runtime settings, overridden per
//! container by OCI annotations.
//!
//! Annotations: `io.scribe.log.driver` (a list: `json-file,fluentd`, or `none`), every Docker
//! log option as `io.scribe.log.<opt>` (`max-size`, `mode`, `fluentd-address`, ...),
//! `io.scribe.container-log` and `io.scribe.runtime-log` (`true`/`false`).
//!
//! Who may choose what: an annotation comes from whoever may create a pod, the options TOML from
//! the node's admin, and the shim runs as root. An annotation may choose sizes, tags and modes
//! freely, but a driver only among `AllowedLogDrivers` (or the TOML's own `LogDriver`), and an
//! address (anything that makes the shim reach a host resource) only among
//! `AllowedLogAddresses` (or the TOML's own value for that option).
//!
//! A driver name that is not built in is a Docker logging plugin: an annotation may choose it
//! only when it is in `AllowedLogDrivers` (the same rule), and where plugins are looked for
//! (`PluginDirs`) is only ever the options' setting.

use std::collections::BTreeMap;
use std::path::PathBuf;

use scribe_io::drivers::local::CacheOptions;
use scribe_io::drivers::registry::{self, Chosen};
use scribe_io::plugin::discovery::SearchPath;

use crate::options::Settings;

const DRIVER_ANNOTATION: &str = "io.scribe.log.driver";
const OPT_PREFIX: &str = "io.scribe.log.";
const CONTAINER_LOG_ANNOTATION: &str = "io.scribe.container-log";
const RUNTIME_LOG_ANNOTATION: &str = "io.scribe.runtime-log";
/// Annotations that carry the image reference (CRI, and containerd's own when set).
const IMAGE_ANNOTATIONS: [&str; 2] = ["io.kubernetes.cri.image-name", "io.containerd.image.name"];

/// CRI's annotations of a container's and its pod's names (containerd's CRI plugin sets them).
const CRI_CONTAINER_NAME: &str = "io.kubernetes.cri.container-name";
const CRI_POD_NAME: &str = "io.kubernetes.cri.sandbox-name";
const CRI_POD_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
/// nerdctl's annotation of the container's name (`--name`).
const NERDCTL_NAME: &str = "nerdctl/name";

/// What a container's config.json says that Scribe uses.
#[derive(Debug, Default, Clone)]
pub struct SpecInfo {
    pub annotations: BTreeMap<String, String>,
    pub args: Option<Vec<String>>,
    /// `process.env` (given to a logging plugin only when its options ask for it).
    pub env: Vec<String>,
}

impl SpecInfo {
    /// Reads what Scribe uses of `<bundle>/config.json`; a missing file or one that is not an
    /// OCI runtime spec yields nothing here (the runtime reports it properly).
    pub fn read(bundle: &std::path::Path) -> SpecInfo {
        crate::spec::load(bundle)
            .map(|s| SpecInfo::of(&s))
            .unwrap_or_default()
    }

    /// The parts of a parsed spec that Scribe uses.
    pub fn of(spec: &crate::spec::Spec) -> SpecInfo {
        SpecInfo {
            annotations: spec
                .annotations()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
            args: spec.args().cloned(),
            env: spec.env().cloned().unwrap_or_default(),
        }
    }

    /// The container's name as its creator gave it: nerdctl's `--name`, CRI's container name;
    /// `None` when no annotation carries one (the id is used then).
    pub fn name(&self) -> Option<String> {
        [NERDCTL_NAME, CRI_CONTAINER_NAME]
            .iter()
            .find_map(|k| self.annotations.get(*k).filter(|v| !v.is_empty()).cloned())
    }

    /// What a logging plugin's StartLogging is told about the container (`Info`), from what
    /// the annotations and config.json say: the name (see [`SpecInfo::name`], else `id`), the
    /// image reference, the labels dockerd's Kubernetes integration set for a pod's container
    /// (`io.kubernetes.pod.name`, `io.kubernetes.pod.namespace`, `io.kubernetes.container.name`,
    /// from CRI's annotations), the entrypoint and args, the environment (the driver sends it
    /// only when an option asks for it) and `created` (RFC 3339).
    pub fn plugin_info(&self, id: &str, created: String) -> scribe_io::plugin::proto::Info {
        let mut labels = BTreeMap::new();
        for (label, annotation) in [
            ("io.kubernetes.pod.name", CRI_POD_NAME),
            ("io.kubernetes.pod.namespace", CRI_POD_NAMESPACE),
            ("io.kubernetes.container.name", CRI_CONTAINER_NAME),
        ] {
            if let Some(v) = self.annotations.get(annotation).filter(|v| !v.is_empty()) {
                labels.insert(label.to_string(), v.clone());
            }
        }
        let args = self.args.clone().unwrap_or_default();
        scribe_io::plugin::proto::Info {
            container_id: id.to_string(),
            container_name: format!("/{}", self.name().unwrap_or_else(|| id.to_string())),
            container_entrypoint: args.first().cloned().unwrap_or_default(),
            container_args: args.iter().skip(1).cloned().collect(),
            container_image_name: self.image().unwrap_or_default(),
            container_created: created,
            container_env: self.env.clone(),
            container_labels: labels,
            daemon_name: "scribe".to_string(),
            ..Default::default()
        }
    }

    /// The image reference, when an annotation carries it.
    pub fn image(&self) -> Option<String> {
        IMAGE_ANNOTATIONS
            .iter()
            .find_map(|k| self.annotations.get(*k).filter(|v| !v.is_empty()).cloned())
    }
}

/// The resolved log configuration of one container.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Records (`container.log`, `runtime.log`) go to `<root>/<namespace>/<id>/`.
    pub root: PathBuf,
    /// The json-file log goes to `<json_root>/<namespace>/<id>/` (`root` unless `JsonFileRoot`
    /// is set; never from an annotation, since it names a host path).
    pub json_root: PathBuf,
    pub container_log: bool,
    pub runtime_log: bool,
    /// The log drivers, in the order given (empty: none).
    pub drivers: Vec<Chosen>,
    /// The dual-logging cache, kept when no driver reads back (`cache-*` options).
    pub cache: CacheOptions,
}

/// Combines runtime settings and the container's annotations; bad values are errors naming them.
pub fn resolve(settings: &Settings, spec: &SpecInfo) -> Result<LogConfig, String> {
    let a = &spec.annotations;
    let from_annotation = a.get(DRIVER_ANNOTATION);
    let list = from_annotation.unwrap_or(&settings.log_driver);
    let names = registry::parse_list(list).map_err(|e| match from_annotation {
        Some(_) => format!("{DRIVER_ANNOTATION}: {e}"),
        None => format!("LogDriver: {e}"),
    })?;
    // A name that is not built in is a plugin: it must be a valid plugin name.
    for name in &names {
        if registry::option_keys(name).is_none() {
            scribe_io::plugin::discovery::validate_name(name).map_err(|e| {
                let source = match from_annotation {
                    Some(_) => format!("annotation {DRIVER_ANNOTATION}={list:?}"),
                    None => format!("LogDriver {list:?}"),
                };
                format!("{source}: log driver {name:?} is not built in ({}) and not a valid plugin name: {e}", registry::BUILT_IN.join(", "))
            })?;
        }
    }
    if from_annotation.is_some() {
        let admin = registry::parse_list(&settings.log_driver).unwrap_or_default();
        for name in &names {
            let allowed = settings.allowed_log_drivers.iter().any(|d| d == name)
                || admin.iter().any(|d| d == name);
            if !allowed {
                return Err(format!(
                    "annotation {DRIVER_ANNOTATION}={list:?}: log driver {name:?} is not in the runtime options' AllowedLogDrivers {:?} (the node's admin must add it there)",
                    settings.allowed_log_drivers
                ));
            }
        }
    }
    let mut opts: BTreeMap<String, String> = settings.log_opts.clone();
    for (k, v) in a {
        if let Some(name) = k.strip_prefix(OPT_PREFIX) {
            if name == "driver" {
                continue;
            }
            if registry::ADDRESS_KEYS.contains(&name) {
                check_address(settings, k, name, v)?;
            }
            opts.insert(name.to_string(), v.clone());
        }
    }
    if from_annotation.is_some() {
        // A driver chosen by annotation with no address anywhere would reach its default
        // address: that too must be one the admin listed.
        for name in &names {
            for (key, default) in registry::default_addresses(name) {
                if !opts.contains_key(*key) {
                    check_address(settings, DRIVER_ANNOTATION, key, default)?;
                }
            }
        }
    }
    let from_annotations = |k: &str| a.contains_key(&format!("{OPT_PREFIX}{k}"));
    let plugins = SearchPath::from_dirs(&settings.plugin_dirs);
    let drivers = registry::resolve_with(&names, &opts, from_annotations, &plugins)?;
    let cache = registry::resolve_cache(&opts)?;
    let flag = |key: &str, default: bool| match a.get(key).map(String::as_str) {
        None => Ok(default),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(v) => Err(format!("{key}={v:?}: expected true or false")),
    };
    let container_log = flag(CONTAINER_LOG_ANNOTATION, settings.container_log)?;
    let runtime_log = flag(RUNTIME_LOG_ANNOTATION, settings.runtime_log)?;
    let json_root = if settings.json_file_root.is_empty() {
        &settings.log_root
    } else {
        &settings.json_file_root
    };
    Ok(LogConfig {
        root: PathBuf::from(&settings.log_root),
        json_root: PathBuf::from(json_root),
        container_log,
        runtime_log,
        drivers,
        cache,
    })
}

/// An address given by annotation `annotation` for option `key` must be the admin's own value
/// of that option or listed in `AllowedLogAddresses`.
fn check_address(
    settings: &Settings,
    annotation: &str,
    key: &str,
    value: &str,
) -> Result<(), String> {
    if settings.log_opts.get(key).is_some_and(|v| v == value)
        || settings.allowed_log_addresses.iter().any(|a| a == value)
    {
        return Ok(());
    }
    Err(format!(
        "annotation {annotation}: log option {key}={value:?} is not allowed: an annotation may only use an address listed in the runtime options' AllowedLogAddresses {:?} or set in their LogOpts",
        settings.allowed_log_addresses
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(pairs: &[(&str, &str)]) -> SpecInfo {
        SpecInfo {
            annotations: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            args: None,
            env: Vec::new(),
        }
    }

    #[test]
    fn defaults_record_lifecycle_without_json_file() {
        let c = resolve(&Settings::defaults("ns"), &SpecInfo::default()).unwrap();
        assert!(c.container_log);
        assert!(c.drivers.is_empty());
        assert_eq!(c.root, PathBuf::from(crate::options::DEFAULT_LOG_ROOT));
        assert_eq!(c.json_root, c.root);
    }

    #[test]
    fn json_file_root_moves_only_the_json_file_log() {
        let mut s = Settings::defaults("ns");
        s.log_root = "/records".into();
        s.json_file_root = "/bulk".into();
        let c = resolve(&s, &SpecInfo::default()).unwrap();
        assert_eq!(c.root, PathBuf::from("/records"));
        assert_eq!(c.json_root, PathBuf::from("/bulk"));
    }

    #[test]
    fn annotations_override_settings() {
        let mut s = Settings::defaults("ns");
        s.log_driver = "json-file".into();
        s.log_opts.insert("max-file".into(), "3".into());
        s.log_opts.insert("max-size".into(), "1m".into());
        let c = resolve(&s, &spec(&[("io.scribe.log.max-size", "2k")])).unwrap();
        let registry::DriverConfig::JsonFile(j) = &c.drivers[0].config else {
            panic!("{:?}", c.drivers);
        };
        assert_eq!(j.max_size, Some(2000));
        assert_eq!(j.max_file, 3);
        let c = resolve(
            &s,
            &spec(&[
                ("io.scribe.log.driver", "none"),
                ("io.scribe.container-log", "false"),
            ]),
        )
        .unwrap();
        assert!(c.drivers.is_empty());
        assert!(!c.container_log);
    }

    #[test]
    fn bad_values_name_the_problem() {
        let s = Settings::defaults("ns");
        let e = resolve(&s, &spec(&[("io.scribe.log.driver", "syslog")])).unwrap_err();
        assert!(e.contains("syslog"), "{e}");
        let e = resolve(
            &s,
            &spec(&[
                ("io.scribe.log.driver", "json-file"),
                ("io.scribe.log.max-size", "lots"),
            ]),
        )
        .unwrap_err();
        assert!(e.contains("max-size"), "{e}");
        let e = resolve(&s, &spec(&[("io.scribe.container-log", "yes")])).unwrap_err();
        assert!(e.contains("io.scribe.container-log"), "{e}");
    }

    #[test]
    fn fluentd_addresses_only_as_the_admin_allows() {
        let mut s = Settings::defaults("ns");
        s.allowed_log_drivers.push("fluentd".into());
        let choose = ("io.scribe.log.driver", "json-file,fluentd");
        // Not listed: refused, naming the annotation and the option that would allow it.
        let e = resolve(
            &s,
            &spec(&[
                choose,
                (
                    "io.scribe.log.fluentd-address",
                    "unix:///run/containerd/containerd.sock",
                ),
            ]),
        )
        .unwrap_err();
        assert!(e.contains("io.scribe.log.fluentd-address"), "{e}");
        assert!(e.contains("AllowedLogAddresses"), "{e}");
        // The default address is an address too: an annotation choosing fluentd without one
        // reaches 127.0.0.1:24224 only if the admin listed it.
        let e = resolve(&s, &spec(&[choose])).unwrap_err();
        assert!(e.contains("tcp://127.0.0.1:24224"), "{e}");
        s.allowed_log_addresses.push("tcp://127.0.0.1:24224".into());
        let c = resolve(&s, &spec(&[choose])).unwrap();
        assert_eq!(c.drivers[1].name(), "fluentd");
        // The admin's own LogOpts address is always usable.
        let mut s = Settings::defaults("ns");
        s.log_driver = "fluentd".into();
        s.log_opts
            .insert("fluentd-address".into(), "unix:///run/f.sock".into());
        let c = resolve(&s, &SpecInfo::default()).unwrap();
        let registry::DriverConfig::Fluentd(f) = &c.drivers[0].config else {
            panic!("{:?}", c.drivers);
        };
        assert_eq!(f.address.to_string(), "unix:///run/f.sock");
        assert!(resolve(
            &s,
            &spec(&[("io.scribe.log.fluentd-address", "unix:///run/f.sock")])
        )
        .is_ok());
        // Bad values name the option.
        let e = resolve(&s, &spec(&[("io.scribe.log.fluentd-buffer-limit", "-1")])).unwrap_err();
        assert!(e.contains("fluentd-buffer-limit"), "{e}");
        s.log_opts
            .insert("fluentd-address".into(), "tcp://host:port".into());
        let e = resolve(&s, &SpecInfo::default()).unwrap_err();
        assert!(e.contains("fluentd-address"), "{e}");
    }

    #[test]
    fn spec_info_from_a_config_json() {
        let spec = crate::spec::parse(
            br#"{"ociVersion":"1.1.0","process":{"args":["sleep","9"],"cwd":"/"},
                 "annotations":{"io.scribe.log.driver":"json-file"}}"#,
        )
        .expect("spec");
        let info = SpecInfo::of(&spec);
        assert_eq!(info.args, Some(vec!["sleep".to_string(), "9".to_string()]));
        assert_eq!(
            info.annotations.get(DRIVER_ANNOTATION).map(String::as_str),
            Some("json-file")
        );
        let bare = SpecInfo::of(&crate::spec::parse(b"{}").expect("empty spec"));
        assert!(bare.annotations.is_empty() && bare.args.is_none());
    }

    #[test]
    fn image_from_cri_annotation() {
        let s = spec(&[("io.kubernetes.cri.image-name", "busybox:1")]);
        assert_eq!(s.image().as_deref(), Some("busybox:1"));
        assert_eq!(SpecInfo::default().image(), None);
    }

    #[test]
    fn plugins_by_annotation_only_when_allowed_and_dirs_only_from_options() {
        let mut s = Settings::defaults("ns");
        let choose = ("io.scribe.log.driver", "json-file,loki");
        let e = resolve(&s, &spec(&[choose])).unwrap_err();
        assert!(e.contains("loki") && e.contains("AllowedLogDrivers"), "{e}");
        s.allowed_log_drivers.push("loki".into());
        s.plugin_dirs = vec!["/srv/plugins".into()];
        let c = resolve(
            &s,
            &spec(&[
                choose,
                ("io.scribe.log.loki-url", "http://l:3100"),
                ("io.scribe.log.plugin-dirs", "/tmp"),
            ]),
        )
        .unwrap();
        let registry::DriverConfig::Plugin(p) = &c.drivers[1].config else {
            panic!("{:?}", c.drivers);
        };
        assert_eq!(p.name, "loki");
        // The search path is the options' only; an annotation's "plugin-dirs" is just an
        // option handed to the plugin.
        assert_eq!(p.search.socket_dirs, [PathBuf::from("/srv/plugins")]);
        assert_eq!(
            p.config.get("loki-url").map(String::as_str),
            Some("http://l:3100")
        );
        assert_eq!(
            p.config.get("plugin-dirs").map(String::as_str),
            Some("/tmp")
        );
        // A bad plugin name is an error naming it, even from the admin.
        s.log_driver = "a/b".into();
        let e = resolve(&s, &SpecInfo::default()).unwrap_err();
        assert!(e.contains("a/b"), "{e}");
    }

    #[test]
    fn plugin_info_from_cri_and_nerdctl_annotations() {
        let mut cri = spec(&[
            ("io.kubernetes.cri.container-name", "app"),
            ("io.kubernetes.cri.sandbox-name", "web-1"),
            ("io.kubernetes.cri.sandbox-namespace", "prod"),
            ("io.kubernetes.cri.image-name", "docker.io/library/nginx:1"),
        ]);
        cri.args = Some(vec!["nginx".into(), "-g".into(), "daemon off;".into()]);
        cri.env = vec!["A=1".into()];
        let i = cri.plugin_info("c1", "2026-12-02T00:00:00Z".into());
        assert_eq!(i.container_id, "c1");
        assert_eq!(i.container_name, "/app");
        assert_eq!(i.container_image_name, "docker.io/library/nginx:1");
        assert_eq!(i.container_entrypoint, "nginx");
        assert_eq!(i.container_args, ["-g", "daemon off;"]);
        assert_eq!(i.container_env, ["A=1"]);
        assert_eq!(i.container_labels["io.kubernetes.pod.name"], "web-1");
        assert_eq!(i.container_labels["io.kubernetes.pod.namespace"], "prod");
        assert_eq!(i.container_created, "2026-12-02T00:00:00Z");
        assert_eq!(i.daemon_name, "scribe");
        let n = spec(&[("nerdctl/name", "db")]);
        assert_eq!(n.plugin_info("c2", String::new()).container_name, "/db");
        assert_eq!(
            SpecInfo::default()
                .plugin_info("c3", String::new())
                .container_name,
            "/c3"
        );
    }
}
