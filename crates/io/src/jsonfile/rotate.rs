//! The file side of json-file rotation: naming, shifting, gzip.
//!
//! Docker's layout (`daemon/logger/loggerutils/logfile.go`): the live file is
//! `<name>`, older ones `<name>.1` (newest) ... `<name>.<max-file - 1>` (oldest),
//! each with `.gz` appended when compressed. Shifting renames both the plain and
//! the `.gz` name of every generation, so a file whose compression failed (left
//! plain) is kept and aged like the others instead of being overwritten.
//!
//! Cost: a shift lists the directory once and renames only the generations that exist, so it
//! costs in proportion to the files present (at most `max-file` of them), never to `max-file`
//! itself. Every step goes through the log directory's fd ([`SafeDir`]): names, never links,
//! are renamed and removed; files are opened `O_NOFOLLOW`, the gzip temp file `O_EXCL`.
//!
//! The writer moves the live file aside to [`PENDING_SUFFIX`] itself (one `renameat`) and
//! hands the rest, [`finish`], to a background thread (see [`super::JsonFileWriter`]).

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use std::io::{Seek, SeekFrom};

use flate2::{Compression, GzBuilder};
use scribe_safefs::{SafeDir, SafeFsError};

use super::format::Format;
use super::FILE_MODE;

/// A failed file-system step: what was attempted, on which path, and why.
#[derive(Debug)]
pub(crate) struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

impl From<SafeFsError> for FsError {
    fn from(e: SafeFsError) -> Self {
        FsError {
            op: e.op,
            path: e.path,
            source: e.source,
        }
    }
}

/// Suffix (before a sequence number) of a live file moved aside, until the rotation thread
/// gives it its generation: `<base>.rotating.<seq>`.
pub(crate) const PENDING_SUFFIX: &str = ".rotating.";

/// `<base>.rotating.<seq>`.
pub(crate) fn pending_name(base: &OsStr, seq: u64) -> OsString {
    suffixed(base, &format!("{PENDING_SUFFIX}{seq}"))
}

/// The sequence number of `name` if it is `<base>.rotating.<seq>`.
fn pending_seq(base: &OsStr, name: &OsStr) -> Option<u64> {
    let rest = name.as_bytes().strip_prefix(base.as_bytes())?;
    let digits = rest.strip_prefix(PENDING_SUFFIX.as_bytes())?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The moved-aside files of `base` with their sequence numbers, oldest first.
pub(crate) fn pending_files(dir: &SafeDir, base: &OsStr) -> Result<Vec<(u64, OsString)>, FsError> {
    let mut v: Vec<(u64, OsString)> = dir
        .entries()?
        .into_iter()
        .filter_map(|n| pending_seq(base, &n).map(|s| (s, n)))
        .collect();
    v.sort_unstable();
    Ok(v)
}

/// `<base>.<n>` or `<base>.<n>.gz`.
pub(crate) fn rotated_name(base: &OsStr, n: u32, gz: bool) -> OsString {
    let mut name = base.to_os_string();
    name.push(format!(".{n}"));
    if gz {
        name.push(".gz");
    }
    name
}

/// `<base>` + `suffix`.
pub(crate) fn suffixed(base: &OsStr, suffix: &str) -> OsString {
    let mut name = base.to_os_string();
    name.push(suffix);
    name
}

/// The generation of `name` if it is `<base>.<n>` or `<base>.<n>.gz` (n >= 1, no leading 0).
fn generation(base: &OsStr, name: &OsStr) -> Option<(u32, bool)> {
    let rest = name.as_bytes().strip_prefix(base.as_bytes())?;
    let rest = rest.strip_prefix(b".")?;
    let (digits, gz) = match rest.strip_suffix(b".gz") {
        Some(d) => (d, true),
        None => (rest, false),
    };
    if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u32 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some((n, gz))
}

/// Removes `name`; a missing file is fine.
pub(crate) fn remove_if_exists(dir: &SafeDir, name: &OsStr) -> Result<(), FsError> {
    match dir.remove(name) {
        Err(e) if !e.is_not_found() => Err(e.into()),
        _ => Ok(()),
    }
}

/// Ages every rotated generation that exists by `by` and drops those that would pass
/// `max_file - 1`. Lists the directory once: cost in proportion to the files present.
pub(crate) fn shift(dir: &SafeDir, base: &OsStr, max_file: u32, by: u32) -> Result<(), FsError> {
    let mut gens: Vec<(u32, bool)> = dir
        .entries()?
        .iter()
        .filter_map(|n| generation(base, n))
        .collect();
    // Oldest first, so each rename's target has already moved on.
    gens.sort_unstable_by(|a, b| b.cmp(a));
    for (n, gz) in gens {
        match n.checked_add(by).filter(|&to| to < max_file) {
            None => remove_if_exists(dir, &rotated_name(base, n, gz))?,
            Some(to) => match dir.rename(rotated_name(base, n, gz), rotated_name(base, to, gz)) {
                Err(e) if !e.is_not_found() => return Err(e.into()),
                _ => {}
            },
        }
    }
    Ok(())
}

/// What [`finish_pending`] failed at: rotation proper or compression only.
#[derive(Debug)]
pub(crate) enum FinishError {
    /// Shifting or naming the new generations failed.
    Rotate(FsError),
    /// The new generations are in place but one could not be gzipped (it stays plain).
    Compress(FsError),
}

/// The slow part of rotation, for every live file moved aside with a sequence number up to
/// `upto` (all of them at once, however many piled up): ages the older generations by their
/// number, names the newest `.1`, the one before `.2`, and so on (dropping what passes
/// `max_file - 1`), and gzips the new generations when `compress` names their format. Costs one directory listing
/// plus one rename per file present.
pub(crate) fn finish_pending(
    dir: &SafeDir,
    base: &OsStr,
    max_file: u32,
    compress: Option<Format>,
    upto: u64,
) -> Result<(), FinishError> {
    let pending: Vec<OsString> = pending_files(dir, base)
        .map_err(FinishError::Rotate)?
        .into_iter()
        .filter(|(seq, _)| *seq <= upto)
        .map(|(_, n)| n)
        .collect();
    let Ok(k) = u32::try_from(pending.len()) else {
        return Ok(());
    };
    if k == 0 {
        return Ok(());
    }
    shift(dir, base, max_file, k).map_err(FinishError::Rotate)?;
    let mut fresh = Vec::new();
    for (i, name) in pending.iter().rev().enumerate() {
        let n = i as u32 + 1;
        if n >= max_file {
            remove_if_exists(dir, name).map_err(FinishError::Rotate)?;
            continue;
        }
        let to = rotated_name(base, n, false);
        dir.rename(name, &to)
            .map_err(|e| FinishError::Rotate(e.into()))?;
        fresh.push(to);
    }
    if let Some(format) = compress {
        let mut first = None;
        for name in fresh {
            if let Err(e) = self::compress(dir, &name, format) {
                first.get_or_insert(e);
            }
        }
        if let Some(e) = first {
            return Err(FinishError::Compress(e));
        }
    }
    Ok(())
}

/// Gzips `src` into `<src>.gz` (through a `.tmp` file created `O_EXCL`, renamed into place)
/// and removes `src`. On failure `src` is left as it was and the temp file removed. A name
/// already taken by the temp file (a planted link, say) is refused, never followed. The gzip
/// header carries what dockerd puts there for `format` ([`Format::gzip_extra`]).
pub(crate) fn compress(dir: &SafeDir, src: &OsStr, format: Format) -> Result<OsString, FsError> {
    let dst = suffixed(src, ".gz");
    let tmp = suffixed(&dst, ".tmp");
    let mut created = false;
    let result = (|| {
        let mut input = dir.open_read(src)?;
        let extra = format.gzip_extra(&input);
        input.seek(SeekFrom::Start(0)).map_err(|e| FsError {
            op: "seek",
            path: dir.path().join(src),
            source: e,
        })?;
        let out = dir.create_excl(&tmp, FILE_MODE)?;
        created = true;
        let mut gz = GzBuilder::new();
        if let Some(extra) = extra {
            gz = gz.extra(extra);
        }
        let mut enc = gz.write(out, Compression::fast());
        let err = |e| FsError {
            op: "compress into",
            path: dir.path().join(&tmp),
            source: e,
        };
        io::copy(&mut input, &mut enc).map_err(err)?;
        enc.finish().map_err(err)?;
        dir.rename(&tmp, &dst)?;
        Ok::<(), FsError>(())
    })();
    if let Err(e) = result {
        if created {
            let _ = dir.remove(&tmp);
        }
        return Err(e);
    }
    remove_if_exists(dir, src)?;
    Ok(dst)
}

/// Removes what a rotation interrupted by a crash left: `<base>.<n>.gz.tmp` names (removing a
/// name never touches what a link there points at).
pub(crate) fn remove_stale_temps(dir: &SafeDir, base: &OsStr) -> Result<(), FsError> {
    for name in dir.entries()? {
        if let Some(stem) = name.as_bytes().strip_suffix(b".gz.tmp") {
            if generation(base, OsStr::from_bytes(stem)).is_some() {
                remove_if_exists(dir, &name)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::fs::{self, File};
    use std::io::Read;
    use std::path::Path;

    fn setup() -> (tempfile::TempDir, SafeDir, OsString) {
        let t = tempfile::tempdir().unwrap();
        let d = SafeDir::open_root(t.path(), false, 0o755).unwrap();
        (t, d, OsString::from("c-json.log"))
    }

    fn p(t: &tempfile::TempDir, name: &OsStr) -> PathBuf {
        t.path().join(name)
    }

    #[test]
    fn names() {
        let b = OsStr::new("c-json.log");
        assert_eq!(rotated_name(b, 1, false), "c-json.log.1");
        assert_eq!(rotated_name(b, 3, true), "c-json.log.3.gz");
        assert_eq!(
            generation(b, OsStr::new("c-json.log.12")),
            Some((12, false))
        );
        assert_eq!(
            generation(b, OsStr::new("c-json.log.2.gz")),
            Some((2, true))
        );
        for other in [
            "c-json.log",
            "c-json.log.0",
            "c-json.log.01",
            "c-json.log.x",
            "c-json.log.1.gz.tmp",
            "d-json.log.1",
        ] {
            assert_eq!(generation(b, OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn finish_keeps_max_files_and_ages_both_variants() {
        let (t, d, b) = setup();
        fs::write(p(&t, &pending_name(&b, 7)), "live").unwrap();
        fs::write(p(&t, &rotated_name(&b, 1, true)), "one-gz").unwrap();
        fs::write(p(&t, &rotated_name(&b, 2, false)), "two-plain").unwrap();
        finish_pending(&d, &b, 3, None, 7).unwrap();
        assert_eq!(
            fs::read_to_string(p(&t, &rotated_name(&b, 1, false))).unwrap(),
            "live"
        );
        assert_eq!(
            fs::read_to_string(p(&t, &rotated_name(&b, 2, true))).unwrap(),
            "one-gz"
        );
        // .2 was the oldest allowed (max_file 3 keeps .1 and .2): dropped.
        assert!(!p(&t, &rotated_name(&b, 3, false)).exists());
        assert!(!p(&t, &rotated_name(&b, 2, false)).exists());
    }

    #[test]
    fn finish_tolerates_nothing_moved_aside() {
        let (_t, d, b) = setup();
        finish_pending(&d, &b, 3, Some(Format::Json), u64::MAX).unwrap();
    }

    /// Counts the rename/unlink attempts of a shift by the names it could touch: with a huge
    /// `max_file` and 3 files present, the shift must not depend on `max_file`.
    #[test]
    fn shift_costs_what_exists_not_max_file() {
        let (t, d, b) = setup();
        for n in 1..=3 {
            fs::write(p(&t, &rotated_name(&b, n, false)), format!("{n}")).unwrap();
        }
        fs::write(p(&t, OsStr::new("unrelated")), "x").unwrap();
        let start = std::time::Instant::now();
        for _ in 0..1000 {
            shift(&d, &b, u32::MAX, 1).unwrap();
        }
        // 1000 shifts of 3 files: the files moved 1000 generations, no more, no less.
        for n in 1001..=1003 {
            assert_eq!(
                fs::read_to_string(p(&t, &rotated_name(&b, n, false))).unwrap(),
                format!("{}", n - 1000)
            );
        }
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 4);
        eprintln!(
            "1000 shifts of 3 files with max-file {}: {:?}",
            u32::MAX,
            start.elapsed()
        );
    }

    /// Files that piled up while a rotation ran are named in one pass: newest `.1`, in order,
    /// the older generations aged by their number, nothing past max-file; later ones wait.
    #[test]
    fn finish_pending_names_a_pile_in_order() {
        let (t, d, b) = setup();
        fs::write(p(&t, &rotated_name(&b, 1, false)), "old1").unwrap();
        fs::write(p(&t, &rotated_name(&b, 2, false)), "old2").unwrap();
        for seq in [3, 4, 5, 9] {
            fs::write(p(&t, &pending_name(&b, seq)), format!("p{seq}")).unwrap();
        }
        finish_pending(&d, &b, 5, None, 5).unwrap();
        let read = |n| fs::read_to_string(p(&t, &rotated_name(&b, n, false))).ok();
        assert_eq!(read(1).as_deref(), Some("p5"));
        assert_eq!(read(2).as_deref(), Some("p4"));
        assert_eq!(read(3).as_deref(), Some("p3"));
        assert_eq!(read(4).as_deref(), Some("old1"));
        assert_eq!(read(5), None, "max-file 5 keeps .1 to .4");
        assert!(
            p(&t, &pending_name(&b, 9)).exists(),
            "a later file waits for its turn"
        );
        finish_pending(&d, &b, 5, None, 9).unwrap();
        assert_eq!(read(1).as_deref(), Some("p9"));
        assert_eq!(read(4).as_deref(), Some("p3"));
        // More piled up than max-file keeps: the oldest go.
        for seq in 10..20 {
            fs::write(p(&t, &pending_name(&b, seq)), format!("p{seq}")).unwrap();
        }
        finish_pending(&d, &b, 5, None, 19).unwrap();
        assert_eq!(read(1).as_deref(), Some("p19"));
        assert_eq!(read(4).as_deref(), Some("p16"));
        assert_eq!(fs::read_dir(t.path()).unwrap().count(), 4);
    }

    #[test]
    fn shift_drops_everything_past_the_limit() {
        let (t, d, b) = setup();
        for n in [1, 5, 9, 40] {
            fs::write(p(&t, &rotated_name(&b, n, n % 2 == 0)), "x").unwrap();
        }
        shift(&d, &b, 6, 1).unwrap();
        let mut names: Vec<String> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["c-json.log.2"]);
    }

    #[test]
    fn compress_round_trip() {
        let (t, d, _) = setup();
        let src = OsString::from("c-json.log.1");
        let content = "line\n".repeat(10_000);
        fs::write(p(&t, &src), &content).unwrap();
        let dst = compress(&d, &src, Format::Json).unwrap();
        assert_eq!(dst, "c-json.log.1.gz");
        assert!(!p(&t, &src).exists());
        let mut out = String::new();
        GzDecoder::new(File::open(p(&t, &dst)).unwrap())
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, content);
    }

    #[test]
    fn compress_failure_keeps_source() {
        let (t, d, _) = setup();
        let e = compress(&d, OsStr::new("nope.1"), Format::Json).unwrap_err();
        assert_eq!(e.op, "open");
        assert_eq!(e.path, t.path().join("nope.1"));
    }

    /// The attack: a link at `.1.gz.tmp` was opened with create+truncate (the target got
    /// the gzip data) and renamed into place.
    #[test]
    fn compress_refuses_a_planted_temp_link() {
        let (t, d, _) = setup();
        let victim = t.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        fs::write(p(&t, OsStr::new("c-json.log.1")), "data\n").unwrap();
        std::os::unix::fs::symlink(&victim, t.path().join("c-json.log.1.gz.tmp")).unwrap();
        let e = compress(&d, OsStr::new("c-json.log.1"), Format::Json).unwrap_err();
        assert_eq!(e.path, t.path().join("c-json.log.1.gz.tmp"));
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        // The link is still a link (it was not the one we created, so not removed), .1 kept.
        assert!(fs::symlink_metadata(t.path().join("c-json.log.1.gz.tmp"))
            .unwrap()
            .file_type()
            .is_symlink());
        assert!(t.path().join("c-json.log.1").exists());
        assert!(!Path::new(&t.path().join("c-json.log.1.gz")).exists());
        remove_stale_temps(&d, OsStr::new("c-json.log")).unwrap();
        assert!(!t.path().join("c-json.log.1.gz.tmp").exists());
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
    }
}
