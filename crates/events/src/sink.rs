//! Append-only JSON-lines files for Scribe's records:
//! `<log_root>/<namespace>/<container_id>/container.log` and `runtime.log`.
//!
//! Directories are created 0755 and files 0644 (both before umask), opened
//! `O_APPEND`. The log root is trusted; the namespace and container directories below it are
//! walked without following links and the file is opened through its directory's fd with
//! `O_NOFOLLOW` (`scribe_safefs`): a link planted anywhere below the root is refused with an
//! error naming it, never followed. Each record
//! goes out in one `write(2)`, so several writers appending to the same file
//! (the shim and a restarted shim, or two handles) never interleave lines.
//! Writes are synchronous: a record is a few hundred bytes to a local file,
//! cheaper than handing it to another thread.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use scribe_safefs::{SafeDir, SafeFsError};

use serde::Serialize;

use crate::container::ContainerRecord;
use crate::runtime::RuntimeRecord;

/// File name of the container-log inside a container's log directory.
pub const CONTAINER_LOG_FILE: &str = "container.log";
/// File name of the runtime-log inside a container's log directory.
pub const RUNTIME_LOG_FILE: &str = "runtime.log";

/// Why a sink could not be opened or written; always names the path.
#[derive(Debug)]
pub enum SinkError {
    /// A namespace or container id that would escape or break the log root.
    InvalidComponent {
        /// Which component (`namespace` or `container id`).
        what: &'static str,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An I/O operation on `path` failed.
    Io {
        /// What was being done (`create directory`, `open`, `append to`).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A record could not be encoded as JSON.
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// The encoder's error.
        source: serde_json::Error,
    },
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidComponent {
                what,
                value,
                reason,
            } => write!(f, "invalid {what} {value:?} for a log path: {reason}"),
            Self::Io { op, path, source } => write!(f, "{op} {}: {source}", path.display()),
            Self::Encode { path, source } => {
                write!(f, "encode record for {}: {source}", path.display())
            }
        }
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::InvalidComponent { .. } => None,
            Self::Io { source, .. } => Some(source),
            Self::Encode { source, .. } => Some(source),
        }
    }
}

/// Checks that `value` is usable as one path component under the log root.
pub fn check_component(what: &'static str, value: &str) -> Result<(), SinkError> {
    let reason = if value.is_empty() {
        Some("empty")
    } else if value == "." || value == ".." {
        Some("refers to a directory itself")
    } else if value.contains('/') {
        Some("contains '/'")
    } else if value.contains('\0') {
        Some("contains NUL")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(SinkError::InvalidComponent {
            what,
            value: value.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

/// `<log_root>/<namespace>/<container_id>`, after checking both components.
pub fn container_log_dir(
    log_root: &Path,
    namespace: &str,
    container_id: &str,
) -> Result<PathBuf, SinkError> {
    check_component("namespace", namespace)?;
    check_component("container id", container_id)?;
    Ok(log_root.join(namespace).join(container_id))
}

/// An open JSON-lines file shared by both sinks.
#[derive(Debug)]
struct JsonLines {
    path: PathBuf,
    file: File,
}

impl JsonLines {
    fn open(
        log_root: &Path,
        namespace: &str,
        container_id: &str,
        name: &str,
    ) -> Result<Self, SinkError> {
        let path = container_log_dir(log_root, namespace, container_id)?.join(name);
        let io_err = |op: &'static str| {
            move |e: SafeFsError| SinkError::Io {
                op,
                path: e.path,
                source: e.source,
            }
        };
        let dir = SafeDir::open_root(log_root, true, 0o755)
            .and_then(|root| root.create_dir_all([namespace, container_id], 0o755))
            .map_err(io_err("create directory"))?;
        let file = dir
            .open_append(name, 0o644, false)
            .map_err(io_err("open"))?;
        Ok(Self { path, file })
    }

    fn append<T: Serialize>(&self, record: &T) -> Result<(), SinkError> {
        let mut line = serde_json::to_vec(record).map_err(|source| SinkError::Encode {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        write_line(&self.file, &line).map_err(|source| SinkError::Io {
            op: "append to",
            path: self.path.clone(),
            source,
        })
    }
}

/// Writes `line` with one `write(2)`; only if the kernel takes part of it
/// (a regular file does that only when the disk fills up) is the rest
/// written, to keep the file line-framed, and the short write reported.
fn write_line(mut file: &File, line: &[u8]) -> io::Result<()> {
    let written = loop {
        match file.write(line) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    };
    if written == line.len() {
        return Ok(());
    }
    let rest = line.get(written..).unwrap_or_default();
    file.write_all(rest)?;
    Err(io::Error::new(
        io::ErrorKind::WriteZero,
        format!(
            "short write: {written} of {} bytes, completed separately",
            line.len()
        ),
    ))
}

/// The per-container `container.log`: lifecycle records, one JSON a line.
#[derive(Debug)]
pub struct ContainerLog(JsonLines);

impl ContainerLog {
    /// Opens (creating directories and file as needed) the container-log of
    /// `namespace`/`container_id` under `log_root`.
    pub fn open(log_root: &Path, namespace: &str, container_id: &str) -> Result<Self, SinkError> {
        JsonLines::open(log_root, namespace, container_id, CONTAINER_LOG_FILE).map(Self)
    }

    /// Appends one record as a JSON line.
    pub fn append(&self, record: &ContainerRecord) -> Result<(), SinkError> {
        self.0.append(record)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.0.path
    }
}

/// The per-container `runtime.log`: shim and OCI-runtime records, one JSON a
/// line.
#[derive(Debug)]
pub struct RuntimeLog(JsonLines);

impl RuntimeLog {
    /// Opens (creating directories and file as needed) the runtime-log of
    /// `namespace`/`container_id` under `log_root`.
    pub fn open(log_root: &Path, namespace: &str, container_id: &str) -> Result<Self, SinkError> {
        JsonLines::open(log_root, namespace, container_id, RUNTIME_LOG_FILE).map(Self)
    }

    /// Appends one record as a JSON line.
    pub fn append(&self, record: &RuntimeRecord) -> Result<(), SinkError> {
        self.0.append(record)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.0.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerEvent;
    use crate::runtime::Level;
    use crate::validate::{validate_container_record, validate_runtime_record};
    use std::fs::OpenOptions;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    fn lines(p: &Path) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(p).expect("read log");
        assert!(text.ends_with('\n'), "{text:?}");
        text.lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[test]
    fn container_log_appends_json_lines() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = ContainerLog::open(root.path(), "default", "c1").expect("open");
        assert_eq!(log.path(), root.path().join("default/c1/container.log"));
        log.append(&ContainerRecord::create("c1", 10))
            .expect("append");
        log.append(&ContainerRecord::start(
            "c1",
            10,
            Some("busybox".into()),
            None,
        ))
        .expect("append");
        log.append(&ContainerRecord::failed(
            ContainerEvent::Pause,
            "c1",
            "frozen",
        ))
        .expect("append");
        let got = lines(log.path());
        assert_eq!(got.len(), 3);
        for v in &got {
            assert_eq!(validate_container_record(v), Ok(()), "{v}");
        }
        assert_eq!(got[1]["image"], "busybox");
    }

    #[test]
    fn permissions_are_0755_and_0644_under_umask_022() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = RuntimeLog::open(root.path(), "k8s.io", "c2").expect("open");
        // The test process umask is usually 022; allow stricter ones.
        assert_eq!(mode(log.path()) & !0o644, 0);
        assert_eq!(mode(&root.path().join("k8s.io/c2")) & !0o755, 0);
        assert_ne!(mode(log.path()) & 0o600, 0);
    }

    #[test]
    fn runtime_log_appends_json_lines() {
        let root = tempfile::tempdir().expect("tempdir");
        let log = RuntimeLog::open(root.path(), "default", "c1").expect("open");
        assert_eq!(log.path(), root.path().join("default/c1/runtime.log"));
        let rec = RuntimeRecord::new(Level::Info, "scribe", "hello").with_pid(1);
        log.append(&rec).expect("append");
        let got = lines(log.path());
        assert_eq!(got.len(), 1);
        assert_eq!(validate_runtime_record(&got[0]), Ok(()));
    }

    #[test]
    fn reopening_appends_instead_of_truncating() {
        let root = tempfile::tempdir().expect("tempdir");
        for _ in 0..2 {
            let log = ContainerLog::open(root.path(), "ns", "c").expect("open");
            log.append(&ContainerRecord::pause("c")).expect("append");
        }
        assert_eq!(lines(&root.path().join("ns/c/container.log")).len(), 2);
    }

    #[test]
    fn concurrent_writers_do_not_interleave() {
        let root = tempfile::tempdir().expect("tempdir");
        let path = root.path().to_path_buf();
        let workers: Vec<_> = (0..4)
            .map(|w| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let log = ContainerLog::open(&path, "ns", "c").expect("open");
                    for i in 0..200 {
                        let mut r = ContainerRecord::failed(
                            ContainerEvent::Update,
                            "c",
                            format!("{w}-{i}-{}", "x".repeat(512)),
                        );
                        r.command = Some(vec!["y".repeat(256); 4]);
                        log.append(&r).expect("append");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("writer thread");
        }
        let got = lines(&path.join("ns/c/container.log"));
        assert_eq!(got.len(), 800);
    }

    #[test]
    fn hostile_components_are_rejected() {
        let root = tempfile::tempdir().expect("tempdir");
        for (ns, id) in [
            ("default", ""),
            ("default", ".."),
            ("default", "."),
            ("default", "a/b"),
            ("default", "a\0b"),
            ("", "c"),
            ("..", "c"),
            ("x/../..", "c"),
        ] {
            let err = ContainerLog::open(root.path(), ns, id).expect_err("must reject");
            assert!(matches!(err, SinkError::InvalidComponent { .. }), "{err}");
            assert!(err.to_string().contains("invalid"), "{err}");
        }
        assert_eq!(
            std::fs::read_dir(root.path()).map(|d| d.count()).ok(),
            Some(0)
        );
    }

    #[test]
    fn symlinked_log_file_is_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("ns/c");
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::os::unix::fs::symlink("/etc/passwd", dir.join(CONTAINER_LOG_FILE)).expect("symlink");
        let err = ContainerLog::open(root.path(), "ns", "c").expect_err("must refuse");
        assert!(err.to_string().contains("container.log"), "{err}");
        assert!(err.to_string().contains("symbolic link"), "{err}");
    }

    /// A link at `<root>/<ns>` or `<root>/<ns>/<id>` was followed (the files landed wherever it
    /// pointed); now both are refused, naming the link, and nothing appears at the target.
    #[test]
    fn symlinked_directories_are_refused() {
        let root = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("ns")).expect("symlink");
        let err = RuntimeLog::open(root.path(), "ns", "c").expect_err("must refuse ns link");
        assert!(
            err.to_string()
                .contains(&*root.path().join("ns").to_string_lossy()),
            "{err}"
        );
        std::fs::create_dir(root.path().join("ns2")).expect("mkdir");
        std::os::unix::fs::symlink(elsewhere.path(), root.path().join("ns2/c")).expect("symlink");
        let err = ContainerLog::open(root.path(), "ns2", "c").expect_err("must refuse id link");
        assert!(err.to_string().contains("symbolic link"), "{err}");
        assert_eq!(
            std::fs::read_dir(elsewhere.path()).map(|d| d.count()).ok(),
            Some(0)
        );
    }

    #[test]
    fn write_failure_names_the_path() {
        // /dev/full fails every write with ENOSPC, like a full disk.
        let Ok(file) = OpenOptions::new().append(true).open("/dev/full") else {
            return;
        };
        let sink = ContainerLog(JsonLines {
            path: PathBuf::from("/dev/full"),
            file,
        });
        let err = sink
            .append(&ContainerRecord::resume("c"))
            .expect_err("disk full");
        let msg = err.to_string();
        assert!(msg.contains("/dev/full"), "{msg}");
        assert!(matches!(err, SinkError::Io { .. }));
    }

    #[test]
    fn unwritable_root_is_an_error_with_path() {
        let root = tempfile::tempdir().expect("tempdir");
        let blocker = root.path().join("file");
        std::fs::write(&blocker, b"").expect("write");
        let err = ContainerLog::open(&blocker, "ns", "c").expect_err("not a dir");
        assert!(err.to_string().contains("create directory"), "{err}");
        assert!(
            err.to_string().contains(&*blocker.to_string_lossy()),
            "{err}"
        );
    }
}
