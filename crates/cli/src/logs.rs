//! `scribe logs`: finds the container's json-file log (`<JsonFileRoot or LogRoot>/<ns>/<id>/
//! <id>-json.log`, as the shim writes it) and reads it with [`scribe_io::reader`].

use std::path::{Path, PathBuf};

use scribe_io::reader::{self, JsonFileLog, Query};

use crate::args::Args;
use crate::lifecycle::Lifecycle;
use crate::output::Out;

/// Runs `scribe logs`; the error is the message for stderr (exit code 1).
pub fn run(a: &Args) -> Result<(), String> {
    let json_root = PathBuf::from(a.json_file_root.as_deref().unwrap_or(&a.log_root));
    let dir = json_root.join(&a.namespace).join(&a.container);
    let base = format!("{}-json.log", a.container);
    let log = JsonFileLog::open(&json_root, &[&a.namespace, &a.container], &base).map_err(|e| {
        format!(
            "no logs for container {:?} in namespace {:?}: looked in {} ({e})",
            a.container,
            a.namespace,
            dir.display()
        )
    })?;
    if !log.exists()? {
        return Err(format!(
            "container {:?} in namespace {:?} has no json-file log: looked for {} and its rotated files (another log driver?)",
            a.container,
            a.namespace,
            dir.join(&base).display()
        ));
    }
    let q = Query {
        since: a.since,
        until: a.until,
        tail: a.tail,
        stream: a.stream,
    };
    let mut out = Out::new(a.timestamps, a.json);
    let pos = reader::read(&log, &q, &mut out)?;
    out.flush().ok();
    if a.follow {
        out.eager = true;
        let records = Path::new(&a.log_root).join(&a.namespace).join(&a.container);
        let mut life = Lifecycle::new(&records);
        reader::follow(&log, pos, &q, &mut out, &mut || life.deleted())?;
    }
    out.flush().ok();
    Ok(())
}
