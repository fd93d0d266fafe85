//! The files of one log (json-file, or the `local` format's: same naming), oldest first: `<base>.<n>[.gz]` from the highest `n` down,
//! the live files moved aside (`<base>.rotating.<seq>`, see [`crate::jsonfile`]) and `<base>`.
//! Every file is opened through the log directory's fd without following links.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use flate2::read::MultiGzDecoder;
use scribe_safefs::SafeDir;

use super::format::Format;
use super::records::{PRead, Rec, Records};
use crate::jsonfile::rotate::{generation, pending_seq};

/// A log: its directory, the live file's name and the files' format.
pub struct FileLog {
    dir: SafeDir,
    base: OsString,
    format: Format,
}

/// One file of the log, open.
pub struct LogFile {
    /// Its name in the log directory.
    pub name: OsString,
    /// Gzipped (`.gz`).
    pub gz: bool,
    /// The open file.
    pub file: File,
}

impl LogFile {
    /// Its path, for messages.
    pub fn path(&self, log: &FileLog) -> PathBuf {
        log.dir.path().join(&self.name)
    }

    /// A reader of its records' bytes from the start (gunzipped for a `.gz`).
    pub fn reader(&self) -> io::Result<Box<dyn Read + '_>> {
        let plain = PRead {
            file: &self.file,
            offset: 0,
            end: None,
        };
        Ok(if self.gz {
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(
                256 * 1024,
                plain,
            )))
        } else {
            Box::new(plain)
        })
    }

    /// The body of the first record (a json-file line without `\n`), or `None` for an empty
    /// file or one that does not start with a whole record; for a `.gz` only the first block is
    /// decompressed.
    pub fn first_record(&self, format: Format) -> io::Result<Option<Vec<u8>>> {
        let mut r = Records::new(self.reader()?.take(17 << 20), format);
        Ok(match r.next_record()? {
            Some(Rec::Body(_)) => Some(r.body().to_vec()),
            _ => None,
        })
    }
}

/// Class (live, moved aside, rotated), rank in the class (higher is older), gzipped.
type Age = (u8, u64, bool);

/// Where a name stands in the age order.
fn age(base: &OsStr, name: &OsStr) -> Option<Age> {
    if name == base {
        return Some((0, 0, false));
    }
    if let Some(seq) = pending_seq(base, name) {
        // Newer sequence numbers are younger.
        return Some((1, u64::MAX - seq, false));
    }
    let (n, gz) = generation(base, name)?;
    Some((2, u64::from(n), gz))
}

impl FileLog {
    /// Opens the log whose live file is `<root>/<subdirs...>/<base>`; `root` is the trusted
    /// administrator's directory, the components below it are not followed if links.
    pub fn open(
        root: &Path,
        subdirs: &[&str],
        base: &str,
        format: Format,
    ) -> Result<FileLog, String> {
        let mut dir = SafeDir::open_root(root, false, 0o755).map_err(|e| e.to_string())?;
        for s in subdirs {
            dir = dir.open_dir(s).map_err(|e| e.to_string())?;
        }
        Ok(FileLog {
            dir,
            base: OsString::from(base),
            format,
        })
    }

    /// The files' format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The directory, for messages.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The live file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join(&self.base)
    }

    /// Whether any file of this log exists.
    pub fn exists(&self) -> Result<bool, String> {
        let names = self.dir.entries().map_err(|e| e.to_string())?;
        Ok(names.iter().any(|n| age(&self.base, n).is_some()))
    }

    /// Whether the file with inode `ino` is still a live file moved aside
    /// (`<base>.rotating.<seq>`): the writer may still finish a write into it; once the rotation
    /// thread named it (`.1`, gzipped, or removed) nothing more is written to it.
    pub fn is_pending(&self, ino: u64) -> bool {
        let Ok(names) = self.dir.entries() else {
            return false;
        };
        names
            .iter()
            .filter(|n| pending_seq(&self.base, n).is_some())
            .any(|n| {
                std::fs::symlink_metadata(self.dir.path().join(n)).is_ok_and(|m| m.ino() == ino)
            })
    }

    /// Opens the live file, if it is there.
    pub fn open_live(&self) -> io::Result<Option<File>> {
        match self.dir.open_read(&self.base) {
            Ok(f) => Ok(Some(f)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Lists and opens the log's files, oldest first, as one consistent snapshot: a rotation
    /// renames every file one generation older, so a name opened after a rename would give
    /// another file than the listing said. The listing is taken again after the opens and the
    /// whole is retried until both listings agree and every name still is the inode opened.
    /// A `.N` whose `.N.gz` also exists (compression in progress) is kept, the `.gz` skipped.
    pub fn files(&self) -> Result<Vec<LogFile>, String> {
        self.files_settled().map(|(v, _)| v)
    }

    /// [`FileLog::files`], and whether the snapshot held still (false: the files kept rotating
    /// through 100 attempts, and the last listing is returned as it was).
    pub fn files_settled(&self) -> Result<(Vec<LogFile>, bool), String> {
        let mut last = None;
        for _ in 0..100 {
            match self.try_files() {
                Ok((v, true)) => return Ok((v, true)),
                Ok((v, false)) => last = Some(Ok((v, false))),
                Err(e) => last = Some(Err(e)),
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        last.unwrap_or_else(|| Err("no listing".into()))
    }

    fn list(&self) -> Result<Vec<(Age, OsString)>, String> {
        let mut names: Vec<(Age, OsString)> = self
            .dir
            .entries()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter_map(|n| age(&self.base, &n).map(|a| (a, n)))
            .collect();
        // Oldest first; for one generation the plain file before its `.gz`.
        names.sort_by(|a, b| {
            b.0 .0
                .cmp(&a.0 .0)
                .then(b.0 .1.cmp(&a.0 .1))
                .then(a.0 .2.cmp(&b.0 .2))
        });
        Ok(names)
    }

    /// One attempt: the files and whether the snapshot held still.
    fn try_files(&self) -> Result<(Vec<LogFile>, bool), String> {
        let names = self.list()?;
        let mut out: Vec<LogFile> = Vec::with_capacity(names.len());
        let mut inodes = Vec::with_capacity(names.len());
        let mut missing = false;
        for ((class, n, gz), name) in &names {
            if *gz {
                if let Some(prev) = out.last() {
                    if !prev.gz && age(&self.base, &prev.name) == Some((*class, *n, false)) {
                        continue;
                    }
                }
            }
            match self.dir.open_read(name) {
                Ok(file) => {
                    let ino = file.metadata().map_err(|e| e.to_string())?.ino();
                    inodes.push(ino);
                    out.push(LogFile {
                        name: name.clone(),
                        gz: *gz,
                        file,
                    });
                }
                // Renamed or removed meanwhile: the check below fails.
                Err(e) if e.is_not_found() => missing = true,
                Err(e) => return Err(e.to_string()),
            }
        }
        let again = self.list()?;
        let same_names = again == names;
        let same_files = out.iter().zip(&inodes).all(|(f, ino)| {
            std::fs::symlink_metadata(self.dir.path().join(&f.name)).is_ok_and(|m| m.ino() == *ino)
        });
        Ok((out, same_names && same_files && !missing))
    }
}
