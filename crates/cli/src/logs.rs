//! `scribe logs`: finds the container's log files under `<JsonFileRoot or LogRoot>/<ns>/<id>/`
//! as the shim writes them (json-file `<id>-json.log`, the `local` driver's
//! `local-logs/container.log`, the dual-logging cache `container-cached.log`; the first there,
//! or the one `--source` names) and reads them with [`scribe_io::reader`].

use std::path::{Path, PathBuf};

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
