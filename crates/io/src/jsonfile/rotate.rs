//! The file side of json-file rotation: naming, shifting, gzip.
//!
//! Docker's layout (`daemon/logger/loggerutils/logfile.go`): the live file is
//! `<path>`, older ones `<path>.1` (newest) ... `<path>.<max-file - 1>` (oldest),
//! each with `.gz` appended when compressed. Shifting renames both the plain and
//! the `.gz` name of every generation, so a file whose compression failed (left
//! plain) is kept and aged like the others instead of being overwritten.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::FILE_MODE;

/// A failed file-system step: what was attempted, on which path, and why.
#[derive(Debug)]
pub(crate) struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

fn fs_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FsError + 'a {
    move |source| FsError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// `<base>.<n>` or `<base>.<n>.gz`.
pub(crate) fn rotated_name(base: &Path, n: u32, gz: bool) -> PathBuf {
    let mut name = OsString::from(base.as_os_str());
    name.push(format!(".{n}"));
    if gz {
        name.push(".gz");
    }
    PathBuf::from(name)
}

fn remove_if_exists(path: &Path) -> Result<(), FsError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(fs_err("remove", path)(e)),
        _ => Ok(()),
    }
}

fn rename_if_exists(from: &Path, to: &Path) -> Result<(), FsError> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(fs_err("rename", from)(e)),
        _ => Ok(()),
    }
}

/// Ages every rotated generation by one, drops the oldest, and moves the live
/// file out of the way (to `.1`, or removes it when only one file is kept).
pub(crate) fn shift(base: &Path, max_file: u32) -> Result<(), FsError> {
    if max_file < 2 {
        return remove_if_exists(base);
    }
    for gz in [false, true] {
        remove_if_exists(&rotated_name(base, max_file - 1, gz))?;
    }
    for n in (2..max_file).rev() {
        for gz in [false, true] {
            rename_if_exists(&rotated_name(base, n - 1, gz), &rotated_name(base, n, gz))?;
        }
    }
    // A live file deleted behind our back is simply not moved; the writer
    // then re-creates it instead of appending to the unlinked inode.
    rename_if_exists(base, &rotated_name(base, 1, false))
}

/// Gzips `src` into `<src>.gz` (through a `.tmp` file renamed into place) and
/// removes `src`. On failure `src` is left as it was and the temp file removed.
///
/// Runs synchronously with a small stack buffer and the fastest level: it
/// blocks the caller for roughly max-size / (tens of MB/s).
pub(crate) fn compress(src: &Path) -> Result<PathBuf, FsError> {
    let mut dst = OsString::from(src.as_os_str());
    dst.push(".gz");
    let dst = PathBuf::from(dst);
    let mut tmp = OsString::from(dst.as_os_str());
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);

    let result = (|| {
        let mut input = File::open(src).map_err(fs_err("open", src))?;
        let out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(fs_err("create", &tmp))?;
        let mut enc = GzEncoder::new(out, Compression::fast());
        io::copy(&mut input, &mut enc).map_err(fs_err("compress into", &tmp))?;
        enc.finish().map_err(fs_err("compress into", &tmp))?;
        fs::rename(&tmp, &dst).map_err(fs_err("rename", &tmp))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    remove_if_exists(src)?;
    Ok(dst)
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;

    #[test]
    fn names() {
        let b = Path::new("/x/c-json.log");
        assert_eq!(rotated_name(b, 1, false), PathBuf::from("/x/c-json.log.1"));
        assert_eq!(
            rotated_name(b, 3, true),
            PathBuf::from("/x/c-json.log.3.gz")
        );
    }

    #[test]
    fn shift_keeps_max_files_and_ages_both_variants() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c-json.log");
        fs::write(&base, "live").unwrap();
        fs::write(rotated_name(&base, 1, true), "one-gz").unwrap();
        fs::write(rotated_name(&base, 2, false), "two-plain").unwrap();
        shift(&base, 3).unwrap();
        assert!(!base.exists());
        assert_eq!(
            fs::read_to_string(rotated_name(&base, 1, false)).unwrap(),
            "live"
        );
        assert_eq!(
            fs::read_to_string(rotated_name(&base, 2, true)).unwrap(),
            "one-gz"
        );
        // .2 was the oldest allowed (max_file 3 keeps .1 and .2): dropped.
        assert!(!rotated_name(&base, 3, false).exists());
        assert!(!rotated_name(&base, 2, false).exists());
    }

    #[test]
    fn shift_tolerates_a_missing_live_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c-json.log");
        shift(&base, 3).unwrap();
        shift(&base, 1).unwrap();
    }

    #[test]
    fn shift_with_one_file_removes_the_live_file() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("c-json.log");
        fs::write(&base, "live").unwrap();
        shift(&base, 1).unwrap();
        assert!(!base.exists());
        assert!(!rotated_name(&base, 1, false).exists());
    }

    #[test]
    fn compress_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("c-json.log.1");
        let content = "line\n".repeat(10_000);
        fs::write(&src, &content).unwrap();
        let dst = compress(&src).unwrap();
        assert_eq!(dst, dir.path().join("c-json.log.1.gz"));
        assert!(!src.exists());
        let mut out = String::new();
        GzDecoder::new(File::open(&dst).unwrap())
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, content);
    }

    #[test]
    fn compress_failure_keeps_source() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.1");
        let e = compress(&missing).unwrap_err();
        assert_eq!(e.op, "open");
        assert_eq!(e.path, missing);
    }
}
