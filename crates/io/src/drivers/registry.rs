//! The built-in drivers by name: which options each understands, and how to open one.
//!
//! A container's log options are one map shared by all its drivers (Docker has one driver per
//! container; Scribe takes a list). Each key must be understood by at least one chosen driver
//! (or be a common key: `mode`, `max-buffer-size`, the dual-logging cache's `cache-*`); each
//! driver is given only its own keys.
//!
//! Any other name is a Docker logging plugin ([`super::plugin`]): its name must be valid, and it
//! is given (as Docker gives a plugin the container's log-opts) every key no chosen built-in
//! driver understands, `mode` and `max-buffer-size` included, except the runtime's defaults for
//! built-in drivers this container did not choose and the cache's `cache-*`. With a plugin
//! chosen, keys no built-in driver knows are the plugin's, not errors.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::fluentd::{self, FluentdLog, FluentdOptions};
use super::json_file::JsonLog;
use super::local::{self, CacheOptions, LocalOptions, CACHE_KEYS};
use super::plugin::{PluginLog, PluginOptions};
use super::{LogDriver, Mode, OpenContext, MODE_KEYS};
use crate::framing::DEFAULT_MAX_LINE;
use crate::jsonfile::{self, JsonFileOptions, JsonFileWriter};
use crate::plugin::discovery::{validate_name, SearchPath};

/// The names of the built-in drivers (`none` turns logging off and cannot be combined).
pub const BUILT_IN: &[&str] = &["json-file", "local", "fluentd"];

/// Options whose value makes the shim reach a host resource (a socket, a network address): an
/// annotation may only give values the node's admin allowed.
pub const ADDRESS_KEYS: &[&str] = &["fluentd-address"];

/// The address a driver reaches when no option names one, by option key (an annotation that
/// chooses the driver must be allowed that address too).
pub fn default_addresses(name: &str) -> &'static [(&'static str, &'static str)] {
    match name {
        "fluentd" => &[("fluentd-address", fluentd::DEFAULT_ADDRESS)],
        _ => &[],
    }
}

/// One chosen driver with its own options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverConfig {
    /// Docker's `json-file`.
    JsonFile(JsonFileOptions),
    /// Docker's `local`.
    Local(LocalOptions),
    /// Docker's `fluentd`.
    Fluentd(FluentdOptions),
    /// A Docker logging plugin.
    Plugin(PluginOptions),
}

/// A chosen driver, its options and its mode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The driver and its options.
    pub config: DriverConfig,
    /// `mode` / `max-buffer-size`.
    pub mode: Mode,
}

/// The option keys of a built-in driver; `None` when `name` is not built in.
pub fn option_keys(name: &str) -> Option<&'static [&'static str]> {
    match name {
        "json-file" => Some(&jsonfile::OPTION_KEYS),
        "local" => Some(&local::OPTION_KEYS),
        "fluentd" => Some(&fluentd::OPTION_KEYS),
        _ => None,
    }
}

/// Parses a driver list (`json-file,fluentd`; `none` or empty: no driver) into its names, in
/// order, without repeats. Errors name the bad entry.
pub fn parse_list(list: &str) -> Result<Vec<String>, String> {
    let mut names: Vec<String> = Vec::new();
    for raw in list.split(',') {
        let name = raw.trim();
        if name.is_empty() && list.trim().is_empty() {
            continue;
        }
        if name.is_empty() {
            return Err(format!("log driver list {list:?} has an empty entry"));
        }
        if names.iter().any(|n| n == name) {
            return Err(format!("log driver {name:?} is listed twice in {list:?}"));
        }
        names.push(name.to_owned());
    }
    if names.iter().any(|n| n == "none") {
        if names.len() > 1 {
            return Err(format!(
                "log driver list {list:?}: none cannot be combined with other drivers"
            ));
        }
        names.clear();
    }
    Ok(names)
}

/// Resolves `names` (from [`parse_list`]) with the container's options, plugins searched in
/// dockerd's directories. See [`resolve_with`].
pub fn resolve(
    names: &[String],
    opts: &BTreeMap<String, String>,
    strict: impl Fn(&str) -> bool,
) -> Result<Vec<Chosen>, String> {
    resolve_with(names, opts, strict, &SearchPath::default())
}

/// Resolves `names` (from [`parse_list`]) with the container's options; a name that is not built
/// in is a plugin, looked for in `plugins` (found when opened). Bad plugin names are errors
/// naming them; so are keys for which `strict(key)` holds (the container's own options) that no
/// chosen driver understands, and, when no plugin is chosen, keys no built-in driver understands
/// at all. Other keys (the runtime's defaults for drivers this container did not choose) are
/// ignored.
pub fn resolve_with(
    names: &[String],
    opts: &BTreeMap<String, String>,
    strict: impl Fn(&str) -> bool,
    plugins: &SearchPath,
) -> Result<Vec<Chosen>, String> {
    let mut keys_of: Vec<Option<&[&str]>> = Vec::with_capacity(names.len());
    for name in names {
        let keys = option_keys(name);
        if keys.is_none() {
            validate_name(name).map_err(|e| {
                format!(
                    "log driver {name:?} is not built in ({}) and not a valid plugin name: {e}",
                    BUILT_IN.join(", ")
                )
            })?;
        }
        keys_of.push(keys);
    }
    let has_plugin = keys_of.iter().any(Option::is_none);
    let known_anywhere = |k: &str| {
        BUILT_IN
            .iter()
            .any(|n| option_keys(n).is_some_and(|keys| keys.contains(&k)))
    };
    let chosen_builtin = |k: &str| keys_of.iter().flatten().any(|keys| keys.contains(&k));
    for (k, v) in opts {
        let common = MODE_KEYS.contains(&k.as_str()) || CACHE_KEYS.contains(&k.as_str());
        if common || has_plugin && strict(k) {
            continue;
        }
        if !known_anywhere(k) {
            if has_plugin {
                continue;
            }
            return Err(format!(
                "unknown log option {k:?}: no log driver ({}) has it",
                BUILT_IN.join(", ")
            ));
        }
        if !chosen_builtin(k) && strict(k) {
            return Err(if names.is_empty() {
                format!("log option {k}={v:?} given but no log driver is on")
            } else {
                format!(
                    "unknown log option {k:?} for log driver {}",
                    names.join(",")
                )
            });
        }
    }
    let mode = if names.is_empty() {
        Mode::Blocking
    } else {
        Mode::parse(
            opts.get("mode").map(String::as_str),
            opts.get("max-buffer-size").map(String::as_str),
        )
        .map_err(|e| e.to_string())?
    };
    // A plugin's options: what no chosen built-in driver takes (see the module doc).
    let plugin_config: BTreeMap<String, String> = opts
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            !CACHE_KEYS.contains(&k)
                && !chosen_builtin(k)
                && (strict(k) || !known_anywhere(k) || MODE_KEYS.contains(&k))
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    names
        .iter()
        .zip(keys_of)
        .map(|(name, keys)| {
            let Some(keys) = keys else {
                let p = PluginOptions::new(name, plugins.clone(), plugin_config.clone())?;
                return Ok(Chosen {
                    config: DriverConfig::Plugin(p),
                    mode,
                });
            };
            let own = opts
                .iter()
                .filter(|(k, _)| keys.contains(&k.as_str()))
                .map(|(k, v)| (k.as_str(), v.as_str()));
            let config = match name.as_str() {
                "json-file" => DriverConfig::JsonFile(
                    JsonFileOptions::from_pairs(own).map_err(|e| e.to_string())?,
                ),
                "local" => DriverConfig::Local(LocalOptions::from_opts(opts, "")?),
                "fluentd" => DriverConfig::Fluentd(
                    FluentdOptions::from_pairs(own).map_err(|e| e.to_string())?,
                ),
                other => return Err(format!("unknown log driver {other:?}")),
            };
            Ok(Chosen { config, mode })
        })
        .collect()
}

impl Chosen {
    /// The driver's name (a plugin's own).
    pub fn name(&self) -> &str {
        match &self.config {
            DriverConfig::JsonFile(_) => super::json_file::NAME,
            DriverConfig::Local(_) => local::NAME,
            DriverConfig::Fluentd(_) => fluentd::NAME,
            DriverConfig::Plugin(p) => &p.name,
        }
    }

    /// Opens the driver for one container. Errors name the file or address.
    pub fn open(&self, ctx: &OpenContext<'_>) -> Result<Arc<dyn LogDriver>, String> {
        match &self.config {
            DriverConfig::JsonFile(opts) => {
                let [ns, id] = ctx.subdirs;
                let writer = JsonFileWriter::open_under(
                    ctx.root,
                    &ctx.subdirs,
                    &format!("{id}-json.log"),
                    opts,
                    ctx.tag,
                )
                .map_err(|e| format!("json-file log of {ns}/{id}: {e}"))?;
                let mut log = JsonLog::new(writer, DEFAULT_MAX_LINE).with_mode(self.mode);
                if let Some(r) = &ctx.reporter {
                    log = log.with_reporter(r.clone());
                }
                Ok(Arc::new(log))
            }
            DriverConfig::Local(opts) => local::open(opts, self.mode, ctx),
            DriverConfig::Fluentd(opts) => {
                let [ns, id] = ctx.subdirs;
                let log = FluentdLog::open(opts, self.mode, ctx)
                    .map_err(|e| format!("fluentd driver of {ns}/{id}: {e}"))?;
                Ok(Arc::new(log))
            }
            DriverConfig::Plugin(opts) => {
                let [ns, id] = ctx.subdirs;
                let log = PluginLog::open(opts, self.mode, ctx)
                    .map_err(|e| format!("log plugin {} of {ns}/{id}: {e}", opts.name))?;
                Ok(Arc::new(log))
            }
        }
    }
}

/// The dual-logging cache's options of a container (see [`local::CacheOptions`]); errors name
/// the option.
pub fn resolve_cache(opts: &BTreeMap<String, String>) -> Result<CacheOptions, String> {
    CacheOptions::from_opts(opts)
}

/// Opens every chosen driver for one container, then the dual-logging cache when none of them
/// reads back ([`local::with_cache`]). Errors name the driver and the file or address.
pub fn open_all(
    chosen: &[Chosen],
    cache: &CacheOptions,
    ctx: &OpenContext<'_>,
) -> Result<Vec<Arc<dyn LogDriver>>, String> {
    let list = chosen
        .iter()
        .map(|c| c.open(ctx))
        .collect::<Result<Vec<_>, _>>()?;
    local::with_cache(list, cache, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn lists() {
        assert_eq!(parse_list("").unwrap(), Vec::<String>::new());
        assert_eq!(parse_list("none").unwrap(), Vec::<String>::new());
        assert_eq!(parse_list(" json-file ").unwrap(), ["json-file"]);
        assert!(parse_list("json-file,,x").is_err());
        assert!(parse_list("json-file,json-file").is_err());
        assert!(parse_list("none,json-file").is_err());
    }

    #[test]
    fn keys_must_belong_to_a_chosen_driver() {
        let names = parse_list("json-file").unwrap();
        let all = |_: &str| true;
        let c = resolve(
            &names,
            &opts(&[("max-size", "1m"), ("mode", "non-blocking")]),
            all,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].mode.max_buffer(), Some(1_000_000));
        let e = resolve(&names, &opts(&[("no-such-opt", "x")]), all).unwrap_err();
        assert!(e.contains("no-such-opt"), "{e}");
        let e = resolve(&[], &opts(&[("max-size", "1m")]), all).unwrap_err();
        assert!(e.contains("no log driver"), "{e}");
        // The runtime's default for a driver this container did not choose is ignored.
        assert!(resolve(&[], &opts(&[("max-size", "1m")]), |_| false).is_ok());
        let e = resolve(&parse_list("sys/log").unwrap(), &opts(&[]), all).unwrap_err();
        assert!(e.contains("sys/log"), "{e}");
        let e = resolve(&names, &opts(&[("max-buffer-size", "1m")]), all).unwrap_err();
        assert!(e.contains("max-buffer-size"), "{e}");
    }

    #[test]
    fn local_and_the_cache_options() {
        let all = |_: &str| true;
        let c = resolve(&parse_list("local").unwrap(), &opts(&[]), all).unwrap();
        assert_eq!(c[0].name(), "local");
        assert_eq!(c[0].config, DriverConfig::Local(LocalOptions::default()));
        let c = resolve(
            &parse_list("json-file,local").unwrap(),
            &opts(&[("max-size", "1m"), ("max-file", "3")]),
            all,
        )
        .unwrap();
        assert_eq!(c.len(), 2);
        let DriverConfig::Local(l) = c[1].config else {
            panic!("{c:?}");
        };
        assert_eq!((l.max_size, l.max_file, l.compress), (1_000_000, 3, true));
        let e = resolve(
            &parse_list("local").unwrap(),
            &opts(&[("max-file", "0")]),
            all,
        )
        .unwrap_err();
        assert!(e.contains("max-file"), "{e}");
        // json-file's tag is not a local option.
        let e = resolve(&parse_list("local").unwrap(), &opts(&[("tag", "x")]), all).unwrap_err();
        assert!(e.contains("tag"), "{e}");
        // The cache's options go with any list, none included.
        let cache = opts(&[("cache-disabled", "true"), ("cache-max-size", "1m")]);
        assert!(resolve(&parse_list("json-file").unwrap(), &cache, all).is_ok());
        assert!(resolve(&[], &cache, all).is_ok());
        let c = resolve_cache(&cache).unwrap();
        assert!(c.disabled);
        assert_eq!(c.file.max_size, 1_000_000);
        let e = resolve_cache(&opts(&[("cache-compress", "nope")])).unwrap_err();
        assert!(e.contains("cache-compress"), "{e}");
    }

    #[test]
    fn plugins_take_the_keys_no_chosen_driver_takes() {
        let all = |_: &str| true;
        let c = resolve(
            &parse_list("json-file,loki").unwrap(),
            &opts(&[
                ("max-size", "1m"),
                ("loki-url", "http://l:3100"),
                ("mode", "non-blocking"),
                ("cache-disabled", "true"),
            ]),
            all,
        )
        .unwrap();
        assert_eq!(c[1].name(), "loki");
        let DriverConfig::Plugin(p) = &c[1].config else {
            panic!("{c:?}");
        };
        assert_eq!(
            p.config,
            opts(&[("loki-url", "http://l:3100"), ("mode", "non-blocking")])
        );
        assert_eq!(p.search, SearchPath::default());
        // A runtime default for a built-in driver not chosen is not the plugin's.
        let c = resolve(
            &parse_list("loki").unwrap(),
            &opts(&[("max-file", "3"), ("tag", "x")]),
            |k| k == "tag",
        )
        .unwrap();
        let DriverConfig::Plugin(p) = &c[0].config else {
            panic!("{c:?}");
        };
        assert_eq!(p.config, opts(&[("tag", "x")]));
        // Bad plugin names and bad common options are errors naming them.
        for bad in ["../x", "a b", ".p"] {
            let e = resolve(&[bad.to_string()], &opts(&[]), all).unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
        let e = resolve(
            &parse_list("loki").unwrap(),
            &opts(&[("mode", "fast")]),
            all,
        )
        .unwrap_err();
        assert!(e.contains("mode"), "{e}");
        // Without a plugin, unknown keys are still errors.
        let e = resolve(
            &parse_list("local").unwrap(),
            &opts(&[("loki-url", "x")]),
            all,
        )
        .unwrap_err();
        assert!(e.contains("loki-url"), "{e}");
    }
}
