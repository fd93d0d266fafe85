//! `scribe logs`: finds the container's log files under `<JsonFileRoot or LogRoot>/<ns>/<id>/`
//! as the shim writes them (json-file `<id>-json.log`, the `local` driver's
//! `local-logs/container.log`, the dual-logging cache `container-cached.log`; the first there,
//! or the one `--source` names) and reads them with [`scribe_io::reader`]. A container logged
//! through a plugin that serves ReadLogs has no file of its own but the plugin's descriptor
//! ([`scribe_io::plugin::readback`]): its logs are asked of the plugin.

use std::path::{Path, PathBuf};

use scribe_io::plugin::discovery::PluginAddr;
use scribe_io::plugin::readback::{self, Descriptor};
use scribe_io::reader::{self, FileLog, Format, Query};

use crate::args::Args;
use crate::lifecycle::Lifecycle;
use crate::output::Out;

/// The sources, in the order they are looked for: name, subdirectory, file, format.
const SOURCES: [(&str, Option<&str>, &str, Format); 3] = [
    ("json-file", None, "", Format::JsonFile),
    ("local", Some("local-logs"), "container.log", Format::Local),
    ("cache", None, "container-cached.log", Format::Local),
];

/// Runs `scribe logs`; the error is the message for stderr (exit code 1).
pub fn run(a: &Args) -> Result<(), String> {
    let json_root = PathBuf::from(a.json_file_root.as_deref().unwrap_or(&a.log_root));
    let dir = json_root.join(&a.namespace).join(&a.container);
    let json_name = format!("{}-json.log", a.container);
    let mut looked = Vec::new();
    let mut found = None;
    for (name, sub, file, format) in SOURCES {
        if a.source.as_deref().is_some_and(|s| s != name) {
            continue;
        }
        let file = if file.is_empty() {
            json_name.as_str()
        } else {
            file
        };
        let mut subdirs = vec![a.namespace.as_str(), a.container.as_str()];
        subdirs.extend(sub);
        let mut path = dir.clone();
        path.extend(sub);
        looked.push(path.join(file).display().to_string());
        let Ok(log) = FileLog::open(&json_root, &subdirs, file, format) else {
            continue;
        };
        if log.exists()? {
            found = Some(log);
            break;
        }
    }
    if found.is_none() && a.source.as_deref().is_none_or(|s| s == "plugin") {
        looked.push(dir.join(readback::FILE).display().to_string());
        if let Some(d) = descriptor(&json_root, a)? {
            return from_plugin(a, d);
        }
    }
    let Some(log) = found else {
        if std::fs::symlink_metadata(&dir).is_err() {
            return Err(format!(
                "no logs for container {:?} in namespace {:?}: looked in {} (no such directory)",
                a.container,
                a.namespace,
                dir.display()
            ));
        }
        return Err(format!(
            "container {:?} in namespace {:?} has no log that can be read back: looked for {} and their rotated files",
            a.container,
            a.namespace,
            looked.join(", ")
        ));
    };
    let q = Query {
        since: a.since,
        until: a.until,
        tail: a.tail,
        stream: a.stream,
        pieces: false,
    };
    let mut out = Out::new(a.timestamps, a.json);
    let pos = reader::read(&log, &q, &mut out)?;
    Out::flush(&mut out).ok();
    if a.follow {
        let records = Path::new(&a.log_root).join(&a.namespace).join(&a.container);
        let mut life = Lifecycle::new(&records);
        reader::follow(&log, pos, &q, &mut out, &mut || life.deleted())?;
    }
    Out::flush(&mut out).ok();
    Ok(())
}

/// The container's plugin descriptor, if it has one (read without following links below the
/// root; its content is checked, as the container's owner may have written it).
fn descriptor(root: &Path, a: &Args) -> Result<Option<(Descriptor, PluginAddr)>, String> {
    use std::io::Read;
    let Ok(dir) = scribe_safefs::SafeDir::open_root(root, false, 0o755)
        .and_then(|r| r.open_dir(&a.namespace))
        .and_then(|d| d.open_dir(&a.container))
    else {
        return Ok(None);
    };
    let path = dir.path().join(readback::FILE);
    let f = match dir.open_read(readback::FILE) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    let mut raw = Vec::new();
    f.take(readback::MAX_FILE as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Descriptor::parse(&raw)
        .map(Some)
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Reads the container's logs through its plugin's ReadLogs; `--follow` ends when the plugin
/// ends the reply (when the container's logging stops) or on Ctrl-C.
fn from_plugin(a: &Args, (d, addr): (Descriptor, PluginAddr)) -> Result<(), String> {
    let config = readback::read_config(a.since, a.until, a.tail, a.follow);
    let mut out = Out::new(a.timestamps, a.json);
    let r = readback::read_logs(&d, &addr, config, a.stream, &mut out);
    Out::flush(&mut out).ok();
    r
}
