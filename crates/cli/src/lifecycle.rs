//! Whether a container was deleted, from its `container.log` records: the file is read as it
//! grows (through an fd kept open, so a retention that removes the directory at delete still
//! lets the last records be read); the last `create` or `delete` record decides.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use scribe_safefs::SafeDir;

/// Watches one container's lifecycle records.
pub struct Lifecycle {
    dir: PathBuf,
    file: Option<File>,
    offset: u64,
    carry: Vec<u8>,
    deleted: bool,
}

impl Lifecycle {
    /// Watches `<dir>/container.log` (opened when it appears, without following a link).
    pub fn new(dir: &Path) -> Lifecycle {
        Lifecycle {
            dir: dir.to_path_buf(),
            file: None,
            offset: 0,
            carry: Vec::new(),
            deleted: false,
        }
    }

    fn open(&mut self) {
        if self.file.is_some() {
            return;
        }
        if let Ok(d) = SafeDir::open_root(&self.dir, false, 0o755) {
            self.file = d.open_read("container.log").ok();
        }
    }

    /// Whether, as of now, the container was deleted (and not created again since), or its log
    /// directory is gone.
    pub fn deleted(&mut self) -> bool {
        self.open();
        let Some(f) = &self.file else {
            return std::fs::symlink_metadata(&self.dir).is_err();
        };
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = f.read_at(&mut buf, self.offset) {
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            self.carry.extend_from_slice(&buf[..n]);
        }
        let mut used = 0;
        while let Some(nl) = self.carry[used..].iter().position(|&b| b == b'\n') {
            let line = &self.carry[used..used + nl];
            used += nl + 1;
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
                continue;
            };
            let failed = v["status"] == "failed";
            match v["event"].as_str() {
                Some("delete") if !failed => self.deleted = true,
                Some("create") if !failed => self.deleted = false,
                _ => {}
            }
        }
        self.carry.drain(..used);
        self.deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(event: &str, status: &str) -> String {
        format!(
            "{{\"timestamp\":\"2024-03-21T10:00:00.000000000Z\",\"container_id\":\"c\",\"event\":\"{event}\",\"status\":\"{status}\"}}\n"
        )
    }

    #[test]
    fn the_last_create_or_delete_decides() {
        let d = tempfile::tempdir().expect("tempdir");
        let mut life = Lifecycle::new(d.path());
        assert!(!life.deleted(), "no records yet, the directory is there");
        let path = d.path().join("container.log");
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(record("create", "created").as_bytes())
            .expect("write");
        f.write_all(record("start", "running").as_bytes())
            .expect("write");
        assert!(!life.deleted());
        f.write_all(record("delete", "failed").as_bytes())
            .expect("write");
        assert!(!life.deleted(), "a failed delete deletes nothing");
        // A record written in two pieces counts once it is whole.
        let del = record("delete", "deleted");
        f.write_all(&del.as_bytes()[..20]).expect("write");
        assert!(!life.deleted());
        f.write_all(&del.as_bytes()[20..]).expect("write");
        assert!(life.deleted());
        f.write_all(record("create", "created").as_bytes())
            .expect("write");
        assert!(!life.deleted(), "created again under the same id");
        // The directory removed at delete (no retention): deleted, from the open file.
        f.write_all(del.as_bytes()).expect("write");
        drop(f);
        std::fs::remove_file(&path).expect("rm");
        assert!(life.deleted());
        let mut gone = Lifecycle::new(&d.path().join("nope"));
        assert!(gone.deleted(), "no directory: nothing to wait for");
    }
}
