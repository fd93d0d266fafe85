//! Helpers for Scribe's own outputs: the runtime options TOML that points a run at a log root,
//! `container.log` records, and Docker json-file logs (live and rotated, plain or gzip).
//!
//! Everything here reads what a user would read: files on disk, `gzip -dc` for rotated logs.

use crate::containerd::Containerd;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `usize` from environment variable `name`, else `default` (panics on a malformed value).
pub fn env_usize(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(s) if !s.trim().is_empty() => s
            .trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}={s:?} is not a number: {e}")),
        _ => default,
    }
}

/// A runtime options TOML (`ctr run --runtime-config-path`) and the log root it names.
#[derive(Debug, Clone)]
pub struct LogSetup {
    /// `LogRoot` of the TOML: records go to `<root>/<namespace>/<id>/`.
    pub root: PathBuf,
    /// The TOML file.
    pub options: PathBuf,
    namespace: String,
}

impl LogSetup {
    /// Writes `<c.dir()>/<name>.toml` with `LogRoot = "<c.dir()>/logs-<name>"` followed by
    /// `extra_toml` (e.g. `LogDriver = "json-file"`).
    pub fn new(c: &Containerd, name: &str, extra_toml: &str) -> LogSetup {
        let root = c.dir().join(format!("logs-{name}"));
        let options = c.dir().join(format!("{name}.toml"));
        let toml = format!("LogRoot = \"{}\"\n{extra_toml}\n", root.display());
        std::fs::write(&options, toml)
            .unwrap_or_else(|e| panic!("writing {}: {e}", options.display()));
        LogSetup {
            root,
            options,
            namespace: c.namespace().to_string(),
        }
    }

    /// The options file as a `&str`, for ctr arguments.
    pub fn options_str(&self) -> &str {
        self.options.to_str().expect("utf-8 path")
    }

    /// `run --runtime io.containerd.scribe.v2 --runtime-config-path <options> <extra...>`:
    /// these records are Scribe's own, so the Scribe runtime is used whatever
    /// `SCRIBE_E2E_RUNTIME` says.
    pub fn run_args<'a>(&'a self, extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![
            "run",
            "--runtime",
            crate::SCRIBE_RUNTIME,
            "--runtime-config-path",
            self.options_str(),
        ];
        v.extend_from_slice(extra);
        v
    }

    /// `<root>/<namespace>/<id>`.
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.root.join(&self.namespace).join(id)
    }

    /// `<root>/<namespace>/<id>/container.log`.
    pub fn container_log(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("container.log")
    }

    /// `<root>/<namespace>/<id>/runtime.log`.
    pub fn runtime_log(&self, id: &str) -> PathBuf {
        self.container_dir(id).join("runtime.log")
    }

    /// The container's `runtime.log`, one parsed JSON value a line (tests check each with
    /// `scribe_events::validate_runtime_record`).
    #[track_caller]
    pub fn runtime_records(&self, id: &str) -> Vec<Value> {
        read_json_lines(&self.runtime_log(id))
    }

    /// `<root>/<namespace>/<id>/<id>-json.log`.
    pub fn json_log(&self, id: &str) -> PathBuf {
        self.container_dir(id).join(format!("{id}-json.log"))
    }

    /// The container's `container.log`, one parsed JSON value a line (panics, naming the
    /// line, on anything that is not a JSON object per line).
    #[track_caller]
    pub fn records(&self, id: &str) -> Vec<Value> {
        read_json_lines(&self.container_log(id))
    }

    /// Every json-file entry of the container, oldest first, across rotated files.
    #[track_caller]
    pub fn json_entries(&self, id: &str) -> Vec<JsonEntry> {
        json_log_files(&self.container_dir(id), id)
            .iter()
            .flat_map(|f| parse_json_log(&read_log_file(f), &f.display().to_string()))
            .collect()
    }
}

/// One JSON value a line; panics naming the file and line on a malformed line or a missing file.
#[track_caller]
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} does not end with a newline:\n{text}",
        path.display()
    );
    text.lines()
        .enumerate()
        .map(|(n, l)| {
            serde_json::from_str::<Value>(l).unwrap_or_else(|e| {
                panic!("{} line {}: not JSON ({e}): {l:?}", path.display(), n + 1)
            })
        })
        .collect()
}

/// One Docker json-file entry.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonEntry {
    pub log: String,
    pub stream: String,
    pub time: String,
    /// `attrs` when present (e.g. `{"tag": ...}`).
    pub attrs: Option<Value>,
}

/// Parses a json-file log's text: every line must be an object with a string `log` (absent
/// when empty, as in Docker), `stream` (stdout|stderr) and `time` (RFC 3339, UTC), and nothing
/// but those and `attrs`.
#[track_caller]
pub fn parse_json_log(text: &str, what: &str) -> Vec<JsonEntry> {
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{what}: json-file log does not end with a newline"
    );
    text.lines()
        .enumerate()
        .map(|(n, l)| {
            let at = || format!("{what} line {}: {l:?}", n + 1);
            let v: Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{}: not JSON: {e}", at()));
            let obj = v
                .as_object()
                .unwrap_or_else(|| panic!("{}: not an object", at()));
            for k in obj.keys() {
                assert!(
                    ["log", "stream", "time", "attrs"].contains(&k.as_str()),
                    "{}: unexpected field {k:?}",
                    at()
                );
            }
            let s = |k: &str| {
                obj.get(k)
                    .and_then(|x| x.as_str())
                    .unwrap_or_else(|| panic!("{}: {k} missing or not a string", at()))
                    .to_string()
            };
            // Docker omits an empty `log` (omitempty)
            let log = match obj.get("log") {
                None => String::new(),
                Some(_) => s("log"),
            };
            let e = JsonEntry {
                log,
                stream: s("stream"),
                time: s("time"),
                attrs: obj.get("attrs").cloned(),
            };
            assert!(
                e.stream == "stdout" || e.stream == "stderr",
                "{}: stream {:?}",
                at(),
                e.stream
            );
            assert!(
                is_rfc3339_utc(&e.time),
                "{}: time {:?} is not RFC 3339 UTC",
                at(),
                e.time
            );
            e
        })
        .collect()
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
pub fn is_rfc3339_utc(t: &str) -> bool {
    let b = t.as_bytes();
    if b.len() < 20 || !t.ends_with('Z') {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| r.into_iter().all(|i| b[i].is_ascii_digit());
    let base = digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && b[10] == b'T'
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && b[16] == b':'
        && digits(17..19);
    let frac = &t[19..t.len() - 1];
    base && (frac.is_empty()
        || (frac.len() >= 2
            && frac.starts_with('.')
            && frac[1..].bytes().all(|c| c.is_ascii_digit())))
}

/// The json-file log files of container `id` in `dir`, oldest first:
/// `<id>-json.log.<N>[.gz]` from the highest N down, then `<id>-json.log`.
/// Panics on any other file starting with `<id>-json.log` (e.g. a left-over temp file).
#[track_caller]
pub fn json_log_files(dir: &Path, id: &str) -> Vec<PathBuf> {
    let base = format!("{id}-json.log");
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    let mut live = None;
    let rd = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display()));
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(&base) else {
            continue;
        };
        if rest.is_empty() {
            live = Some(e.path());
            continue;
        }
        let n = rest
            .strip_prefix('.')
            .map(|r| r.strip_suffix(".gz").unwrap_or(r))
            .and_then(|r| r.parse::<u32>().ok())
            .unwrap_or_else(|| panic!("unexpected file {} in {}", name, dir.display()));
        rotated.push((n, e.path()));
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut v: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    v.extend(live);
    v
}

/// A log file's text: `.gz` files through `gzip -dc` (what a user runs), others as they are.
/// Invalid UTF-8 panics (json-file logs are JSON, hence UTF-8).
#[track_caller]
pub fn read_log_file(path: &Path) -> String {
    let bytes = if path.extension().map(|e| e == "gz").unwrap_or(false) {
        gunzip_bytes(path)
    } else {
        std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
    };
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("{} is not UTF-8: {e}", path.display()))
}

fn gunzip_bytes(path: &Path) -> Vec<u8> {
    let o = Command::new("gzip")
        .arg("-dc")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("gzip -dc {}: {e}", path.display()));
    assert!(
        o.status.success(),
        "gzip -dc {}: {}",
        path.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Is the file gzip data (magic bytes 1f 8b)?
pub fn is_gzip(path: &Path) -> bool {
    std::fs::read(path)
        .map(|b| b.len() >= 2 && b[0] == 0x1f && b[1] == 0x8b)
        .unwrap_or(false)
}

/// The concatenated `log` fields of `stream`'s entries.
pub fn stream_text(entries: &[JsonEntry], stream: &str) -> String {
    entries
        .iter()
        .filter(|e| e.stream == stream)
        .map(|e| e.log.as_str())
        .collect()
}
