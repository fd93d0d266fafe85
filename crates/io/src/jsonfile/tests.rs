//! Tests of the json-file writer against real files (rotation, compression,
//! tags, and full or unwritable disks).

use super::*;
use crate::testutil::TinyTmpfs;
use flate2::read::GzDecoder;
use std::fs;
use std::io::Read;
use std::time::Duration;

fn t0() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(1_711_015_200, 123_456_789)
}

fn opts(pairs: &[(&str, &str)]) -> JsonFileOptions {
    JsonFileOptions::from_pairs(pairs.iter().copied()).expect("valid options")
}

fn info() -> TagInfo {
    TagInfo {
        container_id: "0123456789abcdef0123".into(),
        container_name: "web".into(),
        image_name: "nginx".into(),
        image_id: "sha256:aaaabbbbccccdddd".into(),
        daemon_name: "scribe".into(),
    }
}

/// A writer whose rotations are finished when `write` returns, so the files can be checked.
fn open_inline(
    path: impl Into<PathBuf>,
    o: &JsonFileOptions,
    i: &TagInfo,
) -> Result<JsonFileWriter, JsonFileError> {
    JsonFileWriter::open(path, o, i).map(JsonFileWriter::with_inline_rotation)
}

/// `<path>.<n>`.
fn rotated(path: &Path, n: u32) -> PathBuf {
    let name = path.file_name().expect("file name");
    path.with_file_name(rotate::rotated_name(name, n, false))
}

/// The `log` values of every entry in a json-file, in order.
fn logs_of(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("each line is JSON");
            v["log"].as_str().unwrap_or("").to_owned()
        })
        .collect()
}

fn read_maybe_gz(path: &Path) -> Option<String> {
    if let Ok(s) = fs::read_to_string(path) {
        return Some(s);
    }
    let mut gz = PathBuf::from(path);
    gz.as_mut_os_string().push(".gz");
    let f = File::open(gz).ok()?;
    let mut s = String::new();
    GzDecoder::new(f).read_to_string(&mut s).ok()?;
    Some(s)
}

#[test]
fn writes_docker_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a/b/c-json.log");
    let mut w = open_inline(&path, &JsonFileOptions::default(), &info()).unwrap();
    w.write(Stream::Stdout, b"hello\n", t0()).unwrap();
    w.write(Stream::Stderr, b"bad \xff byte\n", t0()).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(
        text,
        "{\"log\":\"hello\\n\",\"stream\":\"stdout\",\"time\":\"2024-03-21T10:00:00.123456789Z\"}\n\
         {\"log\":\"bad \\ufffd byte\\n\",\"stream\":\"stderr\",\"time\":\"2024-03-21T10:00:00.123456789Z\"}\n"
    );
    let st = w.stats();
    assert_eq!(st.entries_written, 2);
    assert_eq!(st.bytes_written, text.len() as u64);
    assert_eq!(w.size(), text.len() as u64);
}

#[test]
fn file_and_directory_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/c-json.log");
    open_inline(&path, &JsonFileOptions::default(), &info()).unwrap();
    let umask = unsafe_umask();
    let fmode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    let dmode = fs::metadata(path.parent().unwrap())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(fmode, FILE_MODE & !umask);
    assert_eq!(dmode, DIR_MODE & !umask);
}

/// Reads the umask without changing it for long (set then restore).
fn unsafe_umask() -> u32 {
    let old = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    nix::sys::stat::umask(old);
    old.bits()
}

#[test]
fn tag_goes_into_attrs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let o = opts(&[("tag", "{{.Name}}/{{.ID}}")]);
    let mut w = open_inline(&path, &o, &info()).unwrap();
    w.write(Stream::Stdout, b"x\n", t0()).unwrap();
    let v: serde_json::Value =
        serde_json::from_str(fs::read_to_string(&path).unwrap().trim_end()).unwrap();
    assert_eq!(v["attrs"]["tag"], "web/0123456789ab");
    // An empty rendered tag adds no attrs, as in Docker.
    let o = opts(&[("tag", "{{.ImageName}}")]);
    let mut i = info();
    i.image_name.clear();
    let path2 = dir.path().join("d-json.log");
    let mut w = open_inline(&path2, &o, &i).unwrap();
    w.write(Stream::Stdout, b"x\n", t0()).unwrap();
    assert!(!fs::read_to_string(&path2).unwrap().contains("attrs"));
}

fn rotation_case(compress: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let mut pairs = vec![("max-size", "300"), ("max-file", "3")];
    if compress {
        pairs.push(("compress", "true"));
    }
    let o = opts(&pairs);
    let mut w = open_inline(&path, &o, &info()).unwrap();
    let lines: Vec<String> = (0..40).map(|i| format!("line number {i:03}\n")).collect();
    for l in &lines {
        let written = w.write(Stream::Stdout, l.as_bytes(), t0()).unwrap();
        assert!(written.warning.is_none(), "{:?}", written.warning);
        assert!(w.size() <= 300);
    }
    assert!(w.stats().rotations > 3);
    // Exactly max-file files: live, .1, .2 (compressed or not), nothing older.
    let mut names: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let expected: Vec<String> = if compress {
        vec!["c-json.log", "c-json.log.1.gz", "c-json.log.2.gz"]
    } else {
        vec!["c-json.log", "c-json.log.1", "c-json.log.2"]
    }
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(names, expected);
    // Oldest to newest, the files hold a contiguous tail of what was written.
    let mut kept = Vec::new();
    for n in [2, 1] {
        let text = read_maybe_gz(&rotated(&path, n)).expect("rotated file");
        assert!(text.len() <= 300);
        kept.extend(logs_of(&text));
    }
    kept.extend(logs_of(&fs::read_to_string(&path).unwrap()));
    assert!(kept.len() >= 3);
    assert_eq!(kept[..], lines[lines.len() - kept.len()..]);
}

#[test]
fn rotation_keeps_max_file_in_order() {
    rotation_case(false);
}

#[test]
fn rotation_with_compression() {
    rotation_case(true);
}

#[test]
fn one_file_rotation_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let mut w = open_inline(&path, &opts(&[("max-size", "200")]), &info()).unwrap();
    for i in 0..10 {
        w.write(Stream::Stdout, format!("entry {i}\n").as_bytes(), t0())
            .unwrap();
    }
    let logs = logs_of(&fs::read_to_string(&path).unwrap());
    assert_eq!(logs.last().map(String::as_str), Some("entry 9\n"));
    assert!(fs::read_dir(dir.path()).unwrap().count() == 1);
}

#[test]
fn oversized_entry_gets_a_file_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let o = opts(&[("max-size", "100"), ("max-file", "2")]);
    let mut w = open_inline(&path, &o, &info()).unwrap();
    w.write(Stream::Stdout, b"small\n", t0()).unwrap();
    let big = vec![b'B'; 500];
    w.write(Stream::Stdout, &big, t0()).unwrap();
    w.write(Stream::Stdout, &big, t0()).unwrap();
    assert_eq!(logs_of(&fs::read_to_string(&path).unwrap()).len(), 1);
    assert_eq!(
        logs_of(&fs::read_to_string(rotated(&path, 1)).unwrap()).len(),
        1
    );
}

#[test]
fn appends_to_an_existing_file_and_repairs_a_torn_last_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    fs::write(
        &path,
        "{\"log\":\"old\\n\",\"stream\":\"stdout\",\"time\":\"x\"}\n{\"log\":\"torn",
    )
    .unwrap();
    let before = fs::metadata(&path).unwrap().len();
    let mut w = open_inline(&path, &JsonFileOptions::default(), &info()).unwrap();
    assert_eq!(w.size(), before);
    w.write(Stream::Stdout, b"new\n", t0()).unwrap();
    let text = fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1], "{\"log\":\"torn");
    assert!(lines[2].starts_with("{\"log\":\"new\\n\""));
}

#[test]
fn dev_full_drops_and_counts_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let mut w = open_inline(&path, &JsonFileOptions::default(), &info()).unwrap();
    // Log files must be regular files: swap in /dev/full behind the writer's back.
    w.file = Some(
        fs::OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .expect("/dev/full must be openable for this test"),
    );
    let e = w.write(Stream::Stdout, b"lost\n", t0()).unwrap_err();
    assert_eq!(e.op(), Op::Write);
    assert_eq!(e.io_error().raw_os_error(), Some(libc::ENOSPC));
    assert!(!e.is_repeat());
    assert!(e.to_string().contains(&*path.to_string_lossy()), "{e}");
    // The failed write closed the file; the next one re-opens the real file: swap again.
    w.file = Some(
        fs::OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .expect("/dev/full must be openable for this test"),
    );
    let e = w.write(Stream::Stdout, b"lost too\n", t0()).unwrap_err();
    assert!(e.is_repeat());
    let st = w.stats();
    assert_eq!(st.entries_dropped, 2);
    assert_eq!(st.bytes_dropped, 5 + 9);
    assert_eq!(st.entries_written, 0);
}

#[test]
fn unopenable_path_recovers_when_fixed() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("logs");
    let path = blocker.join("c-json.log");
    // A directory is needed where a file sits: opening fails.
    fs::create_dir(&blocker).unwrap();
    let mut w = open_inline(&path, &JsonFileOptions::default(), &info()).unwrap();
    w.write(Stream::Stdout, b"one\n", t0()).unwrap();
    fs::remove_file(&path).unwrap();
    fs::remove_dir(&blocker).unwrap();
    fs::write(&blocker, "not a dir").unwrap();
    // The open handle still works for the unlinked file; force a re-open path
    // by simulating a failed write first.
    w.file = None;
    let e = w.write(Stream::Stdout, b"two\n", t0()).unwrap_err();
    assert_eq!(e.op(), Op::CreateDir);
    let e = w.write(Stream::Stdout, b"three\n", t0()).unwrap_err();
    assert!(e.is_repeat());
    fs::remove_file(&blocker).unwrap();
    let ok = w.write(Stream::Stdout, b"four\n", t0()).unwrap();
    assert_eq!(
        ok.resumed_after,
        Some(DropCounts {
            entries: 2,
            bytes: 10
        })
    );
    assert_eq!(logs_of(&fs::read_to_string(&path).unwrap()), vec!["four\n"]);
    let ok = w.write(Stream::Stdout, b"five\n", t0()).unwrap();
    assert_eq!(ok.resumed_after, None);
}

#[test]
fn open_reports_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    fs::write(&file, "").unwrap();
    let e = open_inline(
        file.join("x/c-json.log"),
        &JsonFileOptions::default(),
        &info(),
    )
    .unwrap_err();
    assert_eq!(e.op(), Op::CreateDir);
    assert!(e.to_string().contains(&*file.to_string_lossy()), "{e}");
}

#[test]
fn full_tmpfs_drops_whole_entries_then_resumes() {
    let Some(fs_) = TinyTmpfs::mount("64k") else {
        return;
    };
    let path = fs_.path().join("c-json.log");
    let filler = fs_.path().join("filler");
    // Use up most of the space with another file.
    fs::write(&filler, vec![0u8; 40 * 1024]).unwrap();
    let mut w = open_inline(&path, &JsonFileOptions::default(), &info()).unwrap();
    let line = format!("{}\n", "x".repeat(700));
    let mut failures = 0;
    let mut first_failure = None;
    for i in 0..100 {
        match w.write(Stream::Stdout, line.as_bytes(), t0()) {
            Ok(_) => assert!(failures == 0, "write {i} succeeded after failures"),
            Err(e) => {
                failures += 1;
                assert_eq!(e.io_error().raw_os_error(), Some(libc::ENOSPC), "{e}");
                first_failure.get_or_insert(i);
            }
        }
    }
    assert!(failures > 0, "the tmpfs never filled up");
    let st = w.stats();
    assert_eq!(st.entries_dropped, failures);
    assert_eq!(st.bytes_dropped, failures * line.len() as u64);
    // No torn entry: every line is complete JSON, and the size matches.
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(logs_of(&text).len() as u64, st.entries_written);
    assert_eq!(text.len() as u64, st.bytes_written);
    // Space comes back: the writer resumes and says what was lost.
    fs::remove_file(&filler).unwrap();
    let ok = w.write(Stream::Stderr, b"back\n", t0()).unwrap();
    assert_eq!(
        ok.resumed_after,
        Some(DropCounts {
            entries: failures,
            bytes: failures * line.len() as u64
        })
    );
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(logs_of(&text).last().map(String::as_str), Some("back\n"));
}

/// A batch bigger than the space left keeps the entries that fit, whole and in order, and
/// drops (counts) only the rest.
#[test]
fn full_tmpfs_keeps_the_whole_entries_of_a_batch_that_fit() {
    let fs_ = TinyTmpfs::must_mount("64k");
    let path = fs_.path().join("c-json.log");
    fs::write(fs_.path().join("filler"), vec![0u8; 40 * 1024]).unwrap();
    let mut w = open_inline(&path, &JsonFileOptions::default(), &info()).unwrap();
    let lines: Vec<String> = (0..100)
        .map(|i| format!("{i:03} {}\n", "z".repeat(700)))
        .collect();
    let batch: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    let e = w
        .write_many(Stream::Stdout, &batch, t0())
        .expect_err("70 kB into 24 kB must drop some");
    assert_eq!(e.io_error().raw_os_error(), Some(libc::ENOSPC), "{e}");
    let st = w.stats();
    assert!(
        st.entries_written > 0,
        "nothing of the batch was kept: {st:?}"
    );
    assert_eq!(st.entries_written + st.entries_dropped, 100, "{st:?}");
    assert_eq!(st.bytes_dropped, st.entries_dropped * lines[0].len() as u64);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.len() as u64, st.bytes_written, "no fragment left");
    let kept = logs_of(&text);
    assert_eq!(kept.len() as u64, st.entries_written);
    assert_eq!(
        kept,
        lines[..kept.len()],
        "the first entries of the batch, in order"
    );
}

#[test]
fn full_tmpfs_compression_failure_is_a_warning_and_keeps_data() {
    let Some(fs_) = TinyTmpfs::mount("64k") else {
        return;
    };
    let path = fs_.path().join("c-json.log");
    let o = opts(&[("max-size", "8k"), ("max-file", "3"), ("compress", "true")]);
    let mut w = open_inline(&path, &o, &info()).unwrap();
    // Fill the live file to just under max-size.
    let line = format!("{}\n", "y".repeat(900));
    while w.size() + 1100 <= 8000 {
        w.write(Stream::Stdout, line.as_bytes(), t0()).unwrap();
    }
    // Leave no room for the .gz of the rotated file, but enough for one entry.
    let filler = fs_.path().join("filler");
    let free = {
        let st = nix::sys::statvfs::statvfs(fs_.path()).unwrap();
        st.blocks_available() as usize * st.fragment_size() as usize
    };
    fs::write(&filler, vec![0u8; free.saturating_sub(4096)]).unwrap();
    let written = w.write(Stream::Stdout, line.as_bytes(), t0()).unwrap();
    let warning = written.warning.expect("compression should fail");
    assert_eq!(warning.op(), Op::Compress);
    // The rotated file is still there, uncompressed, and the tmp file is gone.
    assert!(rotated(&path, 1).exists());
    assert!(!fs_.path().join("c-json.log.1.gz.tmp").exists());
    assert_eq!(w.stats().entries_dropped, 0);
}

#[test]
fn live_file_deleted_behind_our_back_is_recreated_at_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let o = opts(&[("max-size", "120"), ("max-file", "2")]);
    let mut w = open_inline(&path, &o, &info()).unwrap();
    w.write(Stream::Stdout, b"first\n", t0()).unwrap();
    fs::remove_file(&path).unwrap();
    // The next entry overflows max-size: rotation finds no live file to move
    // and starts a new one instead of writing into the unlinked inode.
    let ok = w.write(Stream::Stdout, b"second\n", t0()).unwrap();
    assert!(ok.warning.is_none(), "{:?}", ok.warning);
    assert_eq!(
        logs_of(&fs::read_to_string(&path).unwrap()),
        vec!["second\n"]
    );
}

#[test]
fn batches_split_at_rotation_and_keep_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let o = opts(&[("max-size", "1k"), ("max-file", "20")]);
    let mut w = open_inline(&path, &o, &info()).unwrap();
    let lines: Vec<String> = (0..100).map(|i| format!("line {i:03}\n")).collect();
    let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
    w.write_many(Stream::Stdout, &refs[..60], t0()).unwrap();
    w.write_many(Stream::Stdout, &refs[60..], t0()).unwrap();
    let stats = w.stats();
    assert_eq!(stats.entries_written, 100);
    assert!(stats.rotations >= 5, "{stats:?}");
    // Oldest rotated file first, then the live one: every line once, in order, no file over 1k.
    let mut all = Vec::new();
    for n in (1..20).rev() {
        let rotated_path = rotated(&path, n);
        if let Ok(text) = fs::read_to_string(&rotated_path) {
            assert!(
                text.len() <= 1000,
                "{} is {} bytes",
                rotated_path.display(),
                text.len()
            );
            all.extend(logs_of(&text));
        }
    }
    all.extend(logs_of(&fs::read_to_string(&path).unwrap()));
    assert_eq!(all, lines);
}

/// A file outside the log directory that planted links point at; must stay as it was.
struct Victim {
    path: PathBuf,
    mtime: SystemTime,
}

impl Victim {
    fn new(dir: &Path) -> Victim {
        let path = dir.join("victim");
        fs::write(&path, "precious\n").unwrap();
        let mtime = fs::metadata(&path).unwrap().modified().unwrap();
        Victim { path, mtime }
    }

    fn assert_untouched(&self) {
        assert_eq!(fs::read_to_string(&self.path).unwrap(), "precious\n");
        assert_eq!(
            fs::metadata(&self.path).unwrap().modified().unwrap(),
            self.mtime
        );
    }
}

/// The first attack: a link at `<id>-json.log` got the container's entries appended to
/// its target. Now the open is refused, naming the link.
#[test]
fn a_symlinked_live_file_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let v = Victim::new(dir.path());
    let path = dir.path().join("c-json.log");
    std::os::unix::fs::symlink(&v.path, &path).unwrap();
    let e = JsonFileWriter::open(&path, &JsonFileOptions::default(), &info()).unwrap_err();
    assert_eq!(e.op(), Op::Open);
    assert_eq!(e.path(), path);
    assert!(e.to_string().contains("symbolic link"), "{e}");
    v.assert_untouched();
}

/// Symlinked `<root>/<ns>` and `<root>/<ns>/<id>` directories were followed.
#[test]
fn symlinked_log_directories_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let o = JsonFileOptions::default();
    std::os::unix::fs::symlink(elsewhere.path(), root.path().join("ns")).unwrap();
    let e = JsonFileWriter::open_under(root.path(), &["ns", "c"], "c-json.log", &o, &info())
        .unwrap_err();
    assert_eq!(e.op(), Op::CreateDir);
    assert_eq!(e.path(), root.path().join("ns"));
    fs::create_dir(root.path().join("ns2")).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), root.path().join("ns2/c")).unwrap();
    let e = JsonFileWriter::open_under(root.path(), &["ns2", "c"], "c-json.log", &o, &info())
        .unwrap_err();
    assert_eq!(e.path(), root.path().join("ns2/c"));
    assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 0);
    // Real directories work.
    let mut w =
        JsonFileWriter::open_under(root.path(), &["ns3", "c"], "c-json.log", &o, &info()).unwrap();
    w.write(Stream::Stdout, b"x\n", t0()).unwrap();
    assert!(root.path().join("ns3/c/c-json.log").is_file());
}

/// The second attack: a link at `.1.gz.tmp`, planted while the container runs, had the
/// gzip data written through it and was renamed into place. Now compression refuses the name
/// (a warning the caller reports), `.1` stays plain, and the target is untouched.
#[test]
fn a_planted_gzip_temp_link_is_refused_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let v = Victim::new(dir.path());
    let path = dir.path().join("c-json.log");
    let o = opts(&[("max-size", "200"), ("max-file", "3"), ("compress", "true")]);
    let mut w = open_inline(&path, &o, &info()).unwrap();
    w.write(Stream::Stdout, b"first\n", t0()).unwrap();
    std::os::unix::fs::symlink(&v.path, dir.path().join("c-json.log.1.gz.tmp")).unwrap();
    let mut warning = None;
    for i in 0..10 {
        let line = format!("entry {i} {}\n", "z".repeat(60));
        let written = w.write(Stream::Stdout, line.as_bytes(), t0()).unwrap();
        if written.warning.is_some() {
            warning = written.warning;
            break;
        }
    }
    let warning = warning.expect("compression must report the planted link");
    assert_eq!(warning.op(), Op::Compress);
    assert_eq!(warning.path(), dir.path().join("c-json.log.1.gz.tmp"));
    assert!(
        warning.to_string().contains("c-json.log.1.gz.tmp"),
        "{warning}"
    );
    assert!(rotated(&path, 1).is_file());
    v.assert_untouched();
}

/// Background rotation (the shim's mode): writing never waits for a rotation; once the
/// rotations are done every entry is in the files exactly once and in order.
#[test]
fn background_rotation_loses_nothing_and_keeps_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let o = opts(&[
        ("max-size", "1k"),
        ("max-file", "1000"),
        ("compress", "true"),
    ]);
    let mut w = JsonFileWriter::open(&path, &o, &info()).unwrap();
    let lines: Vec<String> = (0..2000).map(|i| format!("line {i:05}\n")).collect();
    for (i, chunk) in lines.chunks(7).enumerate() {
        let refs: Vec<&[u8]> = chunk.iter().map(|l| l.as_bytes()).collect();
        let written = w.write_many(Stream::Stdout, &refs, t0()).unwrap();
        assert!(written.warning.is_none(), "{:?}", written.warning);
        // Now and then a rotation gets the time to finish, as it would between reads.
        if i % 20 == 19 {
            assert!(w.wait_rotation().is_none());
        }
    }
    assert!(w.wait_rotation().is_none());
    assert!(w.stats().rotations > 10, "{:?}", w.stats());
    let mut all = Vec::new();
    for n in (1..1000).rev() {
        if let Some(text) = read_maybe_gz(&rotated(&path, n)) {
            all.extend(logs_of(&text));
        }
    }
    all.extend(logs_of(&fs::read_to_string(&path).unwrap()));
    assert_eq!(all, lines);
    // Nothing is left half-done: no pending file, no temp file.
    for e in fs::read_dir(dir.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.contains(".rotating.") && !name.ends_with(".tmp"),
            "{name}"
        );
    }
}

/// The relay's way (`write_some`, waiting for room when it stops): the rotation thread never
/// lets the live file pass max-size, every rotated file keeps to it, nothing is lost.
#[test]
fn write_some_stops_instead_of_overflowing_while_rotation_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c-json.log");
    let o = opts(&[
        ("max-size", "1k"),
        ("max-file", "1000"),
        ("compress", "true"),
    ]);
    let mut w = JsonFileWriter::open(&path, &o, &info()).unwrap();
    let lines: Vec<String> = (0..3000).map(|i| format!("line {i:05}\n")).collect();
    let mut stops = 0;
    for chunk in lines.chunks(400) {
        let refs: Vec<&[u8]> = chunk.iter().map(|l| l.as_bytes()).collect();
        let mut done = 0;
        while done < refs.len() {
            let (n, result) = w.write_some(Stream::Stdout, &refs[done..], t0());
            assert!(result.is_ok(), "{result:?}");
            done += n;
            if done < refs.len() {
                stops += 1;
                // What the relay's `rotation_room` awaits.
                while w.rotation_backlogged() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        assert!(w.size() <= 1000, "live file {} bytes", w.size());
    }
    assert!(w.wait_rotation().is_none());
    assert!(
        stops > 0,
        "the writer never had to stop: the test tested nothing"
    );
    let mut all = Vec::new();
    for n in (1..1000).rev() {
        if let Some(text) = read_maybe_gz(&rotated(&path, n)) {
            assert!(text.len() <= 1000, ".{n} is {} bytes", text.len());
            all.extend(logs_of(&text));
        }
    }
    all.extend(logs_of(&fs::read_to_string(&path).unwrap()));
    assert_eq!(all, lines);
}
