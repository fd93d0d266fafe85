//! Which records and logs a container gets, and where: runtime settings, overridden per
//! container by OCI annotations.
//!
//! Annotations: `io.scribe.log.driver` (`json-file` or `none`), `io.scribe.log.max-size`,
//! `io.scribe.log.max-file`, `io.scribe.log.compress`, `io.scribe.log.tag` (Docker's json-file
//! options), `io.scribe.container-log` and `io.scribe.runtime-log` (`true`/`false`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use scribe_io::jsonfile::JsonFileOptions;

use crate::options::Settings;

const DRIVER_ANNOTATION: &str = "io.scribe.log.driver";
const OPT_PREFIX: &str = "io.scribe.log.";
const CONTAINER_LOG_ANNOTATION: &str = "io.scribe.container-log";
const RUNTIME_LOG_ANNOTATION: &str = "io.scribe.runtime-log";
/// Annotations that carry the image reference (CRI, and containerd's own when set).
const IMAGE_ANNOTATIONS: [&str; 2] = ["io.kubernetes.cri.image-name", "io.containerd.image.name"];

/// What a container's config.json says that Scribe uses.
#[derive(Debug, Default, Clone)]
pub struct SpecInfo {
    pub annotations: BTreeMap<String, String>,
    pub args: Option<Vec<String>>,
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
    /// `Some` when the json-file driver is on.
    pub json_file: Option<JsonFileOptions>,
}

/// Combines runtime settings and the container's annotations; bad values are errors naming them.
pub fn resolve(settings: &Settings, spec: &SpecInfo) -> Result<LogConfig, String> {
    let a = &spec.annotations;
    let driver = a
        .get(DRIVER_ANNOTATION)
        .cloned()
        .unwrap_or_else(|| settings.log_driver.clone());
    let mut opts: BTreeMap<String, String> = settings.log_opts.clone();
    for (k, v) in a {
        if let Some(name) = k.strip_prefix(OPT_PREFIX) {
            if name != "driver" {
                opts.insert(name.to_string(), v.clone());
            }
        }
    }
    let json_file = match driver.as_str() {
        "" | "none" => None,
        "json-file" => Some(
            JsonFileOptions::from_pairs(opts.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .map_err(|e| format!("json-file log options: {e}"))?,
        ),
        other => {
            return Err(format!(
                "unknown log driver {other:?} (from {DRIVER_ANNOTATION} or LogDriver): expected json-file or none"
            ))
        }
    };
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
        json_file,
    })
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
        }
    }

    #[test]
    fn defaults_record_lifecycle_without_json_file() {
        let c = resolve(&Settings::defaults("ns"), &SpecInfo::default()).unwrap();
        assert!(c.container_log);
        assert!(c.json_file.is_none());
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
        let j = c.json_file.unwrap();
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
        assert!(c.json_file.is_none());
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
}
