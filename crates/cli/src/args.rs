//! Hand-written option parsing (a dozen options do not need a parser crate; see
//! docs/dependencies.md): `--opt value`, `--opt=value`, `-n value`, `-nvalue`, `-ft`.

use std::time::SystemTime;

use scribe_io::reader::time::parse_time_arg;
use scribe_io::stream::Stream;

/// The shim's default `LogRoot` (crates/shim/src/options: `DEFAULT_LOG_ROOT`).
pub const DEFAULT_LOG_ROOT: &str = "/var/log/scribe";

/// What `scribe logs` and `scribe records` were asked.
#[derive(Debug, Clone)]
pub struct Args {
    /// The container id.
    pub container: String,
    /// containerd namespace.
    pub namespace: String,
    /// The shim's `LogRoot`.
    pub log_root: String,
    /// The shim's `JsonFileRoot` (`None`: `log_root`).
    pub json_file_root: Option<String>,
    /// `--since`.
    pub since: Option<SystemTime>,
    /// `--until`.
    pub until: Option<SystemTime>,
    /// `--tail N` (`None`: all).
    pub tail: Option<usize>,
    /// `-f`.
    pub follow: bool,
    /// `-t`.
    pub timestamps: bool,
    /// `--stream`.
    pub stream: Option<Stream>,
    /// `--format json`.
    pub json: bool,
    /// `logs --source`: json-file, local, cache or plugin (default: the first there).
    pub source: Option<String>,
    /// `records --runtime`.
    pub runtime: bool,
    /// `records --event` (repeatable, or comma-separated).
    pub events: Vec<String>,
}

/// Which subcommand the options are for (they differ a little).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `scribe logs`.
    Logs,
    /// `scribe records`.
    Records,
}

/// Parses the options after the subcommand; `now` anchors durations.
pub fn parse(cmd: Command, argv: &[String], now: SystemTime) -> Result<Args, String> {
    let mut a = Args {
        container: String::new(),
        namespace: "default".into(),
        log_root: DEFAULT_LOG_ROOT.into(),
        json_file_root: None,
        since: None,
        until: None,
        tail: None,
        follow: false,
        timestamps: false,
        stream: None,
        json: false,
        source: None,
        runtime: false,
        events: Vec::new(),
    };
    let mut positional = Vec::new();
    let mut i = 0;
    while i < argv.len() {
        let arg = &argv[i];
        i += 1;
        if arg == "--" {
            positional.extend(argv[i..].iter().cloned());
            break;
        }
        let (name, inline): (String, Option<String>) = if let Some(long) = arg.strip_prefix("--") {
            match long.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (long.to_string(), None),
            }
        } else if let Some(short) = arg.strip_prefix('-').filter(|s| !s.is_empty()) {
            // Flags may be grouped (`-ft`); `-n` takes the rest or the next argument.
            let mut chars = short.chars();
            let mut name = None;
            let mut inline = None;
            while let Some(c) = chars.next() {
                match c {
                    'f' => a.follow = true,
                    't' => a.timestamps = true,
                    'n' => {
                        name = Some("namespace".to_string());
                        let rest: String = chars.collect();
                        inline = (!rest.is_empty()).then_some(rest);
                        break;
                    }
                    other => return Err(format!("unknown option -{other}")),
                }
            }
            match name {
                Some(n) => (n, inline),
                None => continue,
            }
        } else {
            positional.push(arg.clone());
            continue;
        };
        let mut value = |what: &str| -> Result<String, String> {
            if let Some(v) = &inline {
                return Ok(v.clone());
            }
            let v = argv
                .get(i)
                .cloned()
                .ok_or_else(|| format!("--{what} needs a value"))?;
            i += 1;
            Ok(v)
        };
        let time = |v: String| parse_time_arg(&v, now);
        match name.as_str() {
            "namespace" => a.namespace = value("namespace")?,
            "log-root" => a.log_root = value("log-root")?,
            "json-file-root" => a.json_file_root = Some(value("json-file-root")?),
            "since" => a.since = Some(time(value("since")?).map_err(|e| format!("--since: {e}"))?),
            "until" => a.until = Some(time(value("until")?).map_err(|e| format!("--until: {e}"))?),
            "tail" => {
                let v = value("tail")?;
                a.tail = match v.as_str() {
                    "all" => None,
                    n => Some(n.parse().map_err(|_| {
                        format!("--tail: {n:?} is neither a number of lines nor \"all\"")
                    })?),
                };
            }
            "follow" => a.follow = true,
            "timestamps" if cmd == Command::Logs => a.timestamps = true,
            "stream" if cmd == Command::Logs => {
                a.stream = Some(match value("stream")?.as_str() {
                    "stdout" => Stream::Stdout,
                    "stderr" => Stream::Stderr,
                    other => return Err(format!("--stream: {other:?} is not stdout or stderr")),
                })
            }
            "format" if cmd == Command::Logs => {
                a.json = match value("format")?.as_str() {
                    "raw" => false,
                    "json" => true,
                    other => return Err(format!("--format: {other:?} is not raw or json")),
                }
            }
            "source" if cmd == Command::Logs => {
                let v = value("source")?;
                if !["json-file", "local", "cache", "plugin"].contains(&v.as_str()) {
                    return Err(format!(
                        "--source: {v:?} is not json-file, local, cache or plugin"
                    ));
                }
                a.source = Some(v);
            }
            "runtime" if cmd == Command::Records => a.runtime = true,
            "event" if cmd == Command::Records => a
                .events
                .extend(value("event")?.split(',').map(str::to_string)),
            other => return Err(format!("unknown option --{other}")),
        }
    }
    match positional.as_slice() {
        [c] => a.container = c.clone(),
        [] => return Err("which container? (CONTAINER is missing)".into()),
        more => return Err(format!("one container only, got {}", more.join(" "))),
    }
    if a.namespace.is_empty() || a.namespace.contains('/') || a.namespace.starts_with('.') {
        return Err(format!("bad namespace {:?}", a.namespace));
    }
    if a.container.contains('/') || a.container.starts_with('.') {
        return Err(format!("bad container id {:?}", a.container));
    }
    Ok(a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(cmd: Command, s: &str) -> Result<Args, String> {
        let v: Vec<String> = s.split_whitespace().map(str::to_string).collect();
        parse(
            cmd,
            &v,
            SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(10_000),
        )
    }

    #[test]
    fn forms() {
        let a = p(
            Command::Logs,
            "-n k8s.io --tail=10 -ft --stream stderr --format json c1",
        )
        .unwrap();
        assert_eq!(a.namespace, "k8s.io");
        assert_eq!(a.tail, Some(10));
        assert!(a.follow && a.timestamps && a.json);
        assert_eq!(a.stream, Some(Stream::Stderr));
        assert_eq!(a.container, "c1");
        let a = p(Command::Logs, "-nfoo --since 10s --tail all c2").unwrap();
        assert_eq!(a.namespace, "foo");
        assert_eq!(a.tail, None);
        assert_eq!(
            a.since,
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(9_990))
        );
        let a = p(
            Command::Records,
            "--runtime --event exit,delete --event oom c",
        )
        .unwrap();
        assert!(a.runtime);
        assert_eq!(a.events, ["exit", "delete", "oom"]);
    }

    #[test]
    fn errors() {
        assert!(p(Command::Logs, "").unwrap_err().contains("CONTAINER"));
        assert!(p(Command::Logs, "--tail x c")
            .unwrap_err()
            .contains("--tail"));
        assert!(p(Command::Logs, "--since yesterday c")
            .unwrap_err()
            .contains("--since"));
        assert!(p(Command::Logs, "--runtime c")
            .unwrap_err()
            .contains("unknown option"));
        assert!(p(Command::Logs, "-x c").unwrap_err().contains("-x"));
        assert!(p(Command::Logs, "a b")
            .unwrap_err()
            .contains("one container"));
        assert!(p(Command::Logs, "../x").is_err());
        assert!(p(Command::Logs, "--tail")
            .unwrap_err()
            .contains("needs a value"));
    }
}
