//! Docker's `local` driver and the dual-logging cache: `local` records ([`crate::localfmt`])
//! in rotated, gzipped files, written by the same writer and driver as json-file
//! ([`crate::jsonfile::JsonFileWriter`] in [`crate::jsonfile::Format::Local`], [`JsonLog`]), so drops, reports,
//! modes, rotation off the service thread and links refused are the same.
//!
//! Layout, as dockerd's below its container directory: the driver writes
//! `<root>/<ns>/<id>/local-logs/container.log` (`.1.gz`, `.2.gz`, ... when rotated), the cache
//! `<root>/<ns>/<id>/container-cached.log` (same rotation). `root` is the file drivers' root
//! (`JsonFileRoot`, else `LogRoot`), so a `local` log sits beside the json-file one, and the
//! `local-logs/` directory keeps it apart from Scribe's own `container.log` records.
//!
//! Options, Docker's (`daemon/logger/local/config.go`): `max-size` (go-units `FromHumanSize`,
//! SI multiples; default 20 MiB), `max-file` (default 5), `compress` (default true; needs
//! `max-file` >= 2). The cache takes the same options prefixed `cache-` plus `cache-disabled`;
//! dockerd ignores the prefixed sizes (moby#45668) and always caches 20 MiB x 5 compressed,
//! Scribe honours them.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::json_file::JsonLog;
use super::{LogDriver, Mode, OpenContext};
use crate::framing::DEFAULT_MAX_LINE;
use crate::jsonfile::{parse_size, JsonFileOptions, JsonFileWriter, MAX_FILE_LIMIT};

/// The driver's name, Docker's.
pub const NAME: &str = "local";

/// The name the dual-logging cache reports under in `runtime.log`.
pub const CACHE_NAME: &str = "local-cache";

/// The directory below the container's where the driver's files go (dockerd's name).
pub const DIR: &str = "local-logs";

/// The driver's live file (dockerd's name).
pub const FILE: &str = "container.log";

/// The cache's live file, in the container's directory (dockerd's name).
pub const CACHE_FILE: &str = "container-cached.log";

/// dockerd's default `max-size` of a `local` file: 20 MiB.
pub const DEFAULT_MAX_SIZE: u64 = 20 * 1024 * 1024;

/// dockerd's default `max-file` of `local`.
pub const DEFAULT_MAX_FILE: u32 = 5;

/// The option keys of the `local` driver.
pub const OPTION_KEYS: [&str; 3] = ["max-size", "max-file", "compress"];

/// The dual-logging options, accepted whatever the driver list (as dockerd does).
pub const CACHE_KEYS: [&str; 4] = [
    "cache-disabled",
    "cache-max-size",
    "cache-max-file",
    "cache-compress",
];

/// Validated `local` options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalOptions {
    /// Rotate before a write that would take the live file past this many bytes.
    pub max_size: u64,
    /// Files kept, the live one included (>= 1).
    pub max_file: u32,
    /// Gzip rotated files.
    pub compress: bool,
}

impl Default for LocalOptions {
    fn default() -> Self {
        LocalOptions {
            max_size: DEFAULT_MAX_SIZE,
            max_file: DEFAULT_MAX_FILE,
            compress: true,
        }
    }
}

impl LocalOptions {
    /// Reads `<prefix>max-size`, `<prefix>max-file` and `<prefix>compress` from `opts` (other
    /// keys are left alone); errors name the option and the value.
    pub fn from_opts(opts: &BTreeMap<String, String>, prefix: &str) -> Result<Self, String> {
        let mut o = LocalOptions::default();
        let get = |k: &str| {
            let key = format!("{prefix}{k}");
            opts.get(&key).map(|v| (key, v.as_str()))
        };
        let bad = |key: &str, v: &str, why: &str| format!("log option {key}={v:?}: {why}");
        if let Some((key, v)) = get("max-size") {
            o.max_size = parse_size(v).map_err(|e| bad(&key, v, &e))?;
        }
        if let Some((key, v)) = get("max-file") {
            let n: i64 = v
                .trim()
                .parse()
                .map_err(|_| bad(&key, v, "not an integer"))?;
            if n < 1 {
                return Err(bad(&key, v, "max-file cannot be less than 1"));
            }
            if n > i64::from(MAX_FILE_LIMIT) {
                return Err(bad(
                    &key,
                    v,
                    &format!("max-file cannot be more than {MAX_FILE_LIMIT}"),
                ));
            }
            o.max_file = n as u32;
        }
        let mut compress_given = None;
        if let Some((key, v)) = get("compress") {
            o.compress =
                parse_bool(v).ok_or_else(|| bad(&key, v, "not a boolean (true/false/1/0/t/f)"))?;
            compress_given = Some((key, v));
        }
        if o.compress && o.max_file < 2 {
            let (key, v) = compress_given.unwrap_or((format!("{prefix}compress"), "true"));
            return Err(bad(
                &key,
                v,
                &format!(
                    "compression cannot be enabled when max-file is 1 (set {prefix}compress=false, or {prefix}max-file of 2 or more)"
                ),
            ));
        }
        Ok(o)
    }

    fn as_file_options(self) -> JsonFileOptions {
        JsonFileOptions {
            max_size: Some(self.max_size),
            max_file: self.max_file,
            compress: self.compress,
            tag: None,
        }
    }
}

/// The dual-logging cache's configuration: whether to keep one when no driver reads back,
/// and its file options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheOptions {
    /// `cache-disabled=true`: no cache, whatever the drivers.
    pub disabled: bool,
    /// `cache-max-size`, `cache-max-file`, `cache-compress` (dockerd's defaults otherwise).
    pub file: LocalOptions,
    /// The container's `mode`, as for its drivers. (dockerd puts a ring buffer in front of the
    /// cache unless `mode=blocking` is given; here `non-blocking` never waits for a rotation but
    /// lets the live file grow past `cache-max-size` meanwhile, so the default, `blocking`, is
    /// what keeps the cache within `cache-max-size` x `cache-max-file`.)
    pub mode: Mode,
}

impl Default for CacheOptions {
    fn default() -> Self {
        CacheOptions {
            disabled: false,
            file: LocalOptions::default(),
            mode: Mode::Blocking,
        }
    }
}

impl CacheOptions {
    /// Reads the `cache-*` options (and `mode`) from a container's options.
    pub fn from_opts(opts: &BTreeMap<String, String>) -> Result<Self, String> {
        let disabled = match opts.get("cache-disabled") {
            None => false,
            Some(v) => parse_bool(v).ok_or_else(|| {
                format!("log option cache-disabled={v:?}: not a boolean (true/false/1/0/t/f)")
            })?,
        };
        let mode = Mode::parse(
            opts.get("mode").map(String::as_str),
            opts.get("max-buffer-size").map(String::as_str),
        )
        .map_err(|e| e.to_string())?;
        Ok(CacheOptions {
            disabled,
            file: LocalOptions::from_opts(opts, "cache-")?,
            mode,
        })
    }
}

/// Go's `strconv.ParseBool` spellings.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// Opens the `local` driver of one container: `<root>/<ns>/<id>/local-logs/container.log`.
pub fn open(
    opts: &LocalOptions,
    mode: Mode,
    ctx: &OpenContext<'_>,
) -> Result<Arc<dyn LogDriver>, String> {
    let [ns, id] = ctx.subdirs;
    let writer =
        JsonFileWriter::open_local_under(ctx.root, &[ns, id, DIR], FILE, &opts.as_file_options())
            .map_err(|e| format!("local log of {ns}/{id}: {e}"))?;
    Ok(finish(JsonLog::new(writer, DEFAULT_MAX_LINE), mode, ctx))
}

/// Opens the dual-logging cache of one container: `<root>/<ns>/<id>/container-cached.log`.
pub fn open_cache(
    opts: &CacheOptions,
    ctx: &OpenContext<'_>,
) -> Result<Arc<dyn LogDriver>, String> {
    let [ns, id] = ctx.subdirs;
    let writer = JsonFileWriter::open_local_under(
        ctx.root,
        &[ns, id],
        CACHE_FILE,
        &opts.file.as_file_options(),
    )
    .map_err(|e| format!("local log cache of {ns}/{id}: {e}"))?;
    let log = JsonLog::new(writer, DEFAULT_MAX_LINE).with_name(CACHE_NAME);
    Ok(finish(log, opts.mode, ctx))
}

fn finish(log: JsonLog, mode: Mode, ctx: &OpenContext<'_>) -> Arc<dyn LogDriver> {
    let mut log = log.with_mode(mode);
    if let Some(r) = &ctx.reporter {
        log = log.with_reporter(r.clone());
    }
    Arc::new(log)
}

/// Opens `drivers` and, when none of them reads back and the cache is not disabled, the
/// dual-logging cache after them (dockerd's rule: `none` alone gets no cache, any list of
/// drivers without a reader does).
pub fn with_cache(
    mut drivers: Vec<Arc<dyn LogDriver>>,
    cache: &CacheOptions,
    ctx: &OpenContext<'_>,
) -> Result<Vec<Arc<dyn LogDriver>>, String> {
    if !drivers.is_empty() && !cache.disabled && !drivers.iter().any(|d| d.reads_back()) {
        drivers.push(open_cache(cache, ctx)?);
    }
    Ok(drivers)
}

#[cfg(test)]
mod tests;
