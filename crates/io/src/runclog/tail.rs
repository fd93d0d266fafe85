//! The last error a runtime logged: what a failed Create/Start/Exec reports.
//!
//! containerd's runc shim (go-runc) reads `log.json` after a failed command and
//! returns the last `error` entry's message. Scribe does the same, but reads
//! only the file's tail (the log grows with every runtime call of a container
//! and, with `--debug`, can be large), and also accepts `fatal`/`panic` lines.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use super::{Level, RuncLogError, RuntimeLogLine};

/// How many bytes from the end of the file [`last_error`] looks at.
pub const TAIL_WINDOW: u64 = 64 * 1024;

/// The message of the last error-or-worse line in the last [`TAIL_WINDOW`]
/// bytes of a runtime log (with its `error` field appended, see
/// [`RuntimeLogLine::message_with_error`]); `Ok(None)` if the file does not
/// exist or holds no such line.
pub fn last_error(path: impl AsRef<Path>) -> Result<Option<String>, RuncLogError> {
    let path = path.as_ref();
    let err = |op: &'static str| {
        move |source: io::Error| RuncLogError {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(err("open")(e)),
    };
    let len = file.metadata().map_err(err("stat"))?.len();
    let start = len.saturating_sub(TAIL_WINDOW);
    file.seek(SeekFrom::Start(start)).map_err(err("seek"))?;
    let mut buf = Vec::with_capacity((len - start) as usize);
    file.take(TAIL_WINDOW)
        .read_to_end(&mut buf)
        .map_err(err("read"))?;
    let mut text: &[u8] = &buf;
    if start > 0 {
        // The window starts mid-line: skip that fragment.
        match text.iter().position(|b| *b == b'\n') {
            Some(i) => text = &text[i + 1..],
            None => return Ok(None),
        }
    }
    Ok(text
        .split(|b| *b == b'\n')
        .rev()
        .filter_map(RuntimeLogLine::parse)
        .find(|l| l.level >= Level::Error)
        .map(|l| l.message_with_error()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn finds_the_last_error_in_genuine_runc_output() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        fs::write(&path, include_str!("../../testdata/runc-log.json")).unwrap();
        let e = last_error(&path).unwrap().expect("an error line");
        assert!(
            e.starts_with("runc run failed: unable to start container process"),
            "{e}"
        );
    }

    #[test]
    fn missing_file_or_no_errors_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(last_error(dir.path().join("nope")).unwrap(), None);
        let path = dir.path().join("log.json");
        fs::write(&path, "{\"level\":\"info\",\"msg\":\"ok\"}\n").unwrap();
        assert_eq!(last_error(&path).unwrap(), None);
        fs::write(&path, "").unwrap();
        assert_eq!(last_error(&path).unwrap(), None);
    }

    #[test]
    fn reads_only_the_tail_of_a_big_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.json");
        let mut content = String::from("{\"level\":\"error\",\"msg\":\"too old to see\"}\n");
        let debug = "{\"level\":\"debug\",\"msg\":\"noise noise noise noise\"}\n";
        while content.len() < 3 * TAIL_WINDOW as usize {
            content.push_str(debug);
        }
        fs::write(&path, &content).unwrap();
        assert_eq!(last_error(&path).unwrap(), None);
        content.push_str("{\"level\":\"fatal\",\"msg\":\"boom\",\"error\":\"EPERM\"}\n");
        content.push_str(debug);
        fs::write(&path, &content).unwrap();
        assert_eq!(last_error(&path).unwrap().as_deref(), Some("boom: EPERM"));
    }

    #[test]
    fn unreadable_path_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        // A directory opens but cannot be read.
        let e = last_error(dir.path()).unwrap_err();
        assert!(
            e.to_string().contains(&*dir.path().to_string_lossy()),
            "{e}"
        );
    }
}
