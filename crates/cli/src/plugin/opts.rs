//! `scribe plugin`'s options, parsed by hand as the other subcommands' are
//! (`--opt value` and `--opt=value`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::args::DEFAULT_LOG_ROOT;

/// Where dockerd looks for a legacy plugin named `scribe`.
pub const DEFAULT_SOCKET: &str = "/run/docker/plugins/scribe.sock";

/// The namespace directory the plugin's containers go in: `scribe logs -n docker ID` reads them.
pub const DEFAULT_NAMESPACE: &str = "docker";

/// Which file format the plugin writes for every container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Driver {
    /// Docker's json-file (`<id>-json.log`).
    JsonFile,
    /// Docker's `local` (`local-logs/container.log`).
    Local,
}

/// What `scribe plugin` was asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginArgs {
    /// The unix socket to serve on.
    pub socket: PathBuf,
    /// The log root (the shim's `LogRoot`, read by `scribe logs`).
    pub log_root: PathBuf,
    /// The directory below the log root for every container.
    pub namespace: String,
    /// json-file or local.
    pub driver: Driver,
    /// `--log-opt k=v` defaults, overridden by a container's own `--log-opt`.
    pub log_opts: BTreeMap<String, String>,
}

/// Parses the options after `plugin`.
pub fn parse(argv: &[String]) -> Result<PluginArgs, String> {
    let mut a = PluginArgs {
        socket: PathBuf::from(DEFAULT_SOCKET),
        log_root: PathBuf::from(DEFAULT_LOG_ROOT),
        namespace: DEFAULT_NAMESPACE.into(),
        driver: Driver::JsonFile,
        log_opts: BTreeMap::new(),
    };
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        i += 1;
        let (name, inline) = match arg.strip_prefix("--") {
            Some(long) => match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            },
            None if arg == "-n" => ("namespace".to_string(), None),
            None => return Err(format!("unexpected argument {arg:?}")),
        };
        let value = match inline {
            Some(v) => v,
            None => {
                let v = argv
                    .get(i)
                    .cloned()
                    .ok_or_else(|| format!("--{name} needs a value"))?;
                i += 1;
                v
            }
        };
        match name.as_str() {
            "socket" => a.socket = PathBuf::from(value),
            "log-root" => a.log_root = PathBuf::from(value),
            "namespace" => a.namespace = value,
            "driver" => {
                a.driver = match value.as_str() {
                    "json-file" => Driver::JsonFile,
                    "local" => Driver::Local,
                    other => return Err(format!("--driver: {other:?} is not json-file or local")),
                }
            }
            "log-opt" => {
                let (k, v) = value
                    .split_once('=')
                    .ok_or_else(|| format!("--log-opt: {value:?} is not KEY=VALUE"))?;
                a.log_opts.insert(k.to_string(), v.to_string());
            }
            other => return Err(format!("unknown option --{other}")),
        }
    }
    if a.namespace.is_empty() || a.namespace.contains('/') || a.namespace.starts_with('.') {
        return Err(format!("bad namespace {:?}", a.namespace));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<PluginArgs, String> {
        let v: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        parse(&v)
    }

    #[test]
    fn defaults_and_forms() {
        let a = p("").unwrap();
        assert_eq!(a.socket, PathBuf::from(DEFAULT_SOCKET));
        assert_eq!(a.log_root, PathBuf::from(DEFAULT_LOG_ROOT));
        assert_eq!(a.namespace, "docker");
        assert_eq!(a.driver, Driver::JsonFile);
        let a = p("--socket=/tmp/s.sock --log-root /l --driver local -n moby --log-opt max-size=1m --log-opt max-file=3").unwrap();
        assert_eq!(a.socket, PathBuf::from("/tmp/s.sock"));
        assert_eq!(a.log_root, PathBuf::from("/l"));
        assert_eq!(a.driver, Driver::Local);
        assert_eq!(a.namespace, "moby");
        assert_eq!(a.log_opts["max-size"], "1m");
        assert_eq!(a.log_opts["max-file"], "3");
    }

    #[test]
    fn errors() {
        assert!(p("--driver syslog").unwrap_err().contains("--driver"));
        assert!(p("--log-opt nokey").unwrap_err().contains("KEY=VALUE"));
        assert!(p("--socket").unwrap_err().contains("needs a value"));
        assert!(p("--bogus 1").unwrap_err().contains("unknown option"));
        assert!(p("-n ../x").is_err());
        assert!(p("stray").is_err());
    }
}
