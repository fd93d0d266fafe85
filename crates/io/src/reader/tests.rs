//! The reader against files the json-file writer produced, and against damaged ones.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::*;
use crate::jsonfile::{JsonFileOptions, JsonFileWriter, TagInfo};
use crate::stream::Stream;

#[derive(Default)]
struct Vecs {
    lines: Vec<String>,
    warnings: Vec<String>,
}

impl Sink for Vecs {
    fn line(&mut self, e: &Entry) -> std::io::Result<()> {
        self.lines.push(
            String::from_utf8_lossy(&e.line)
                .trim_end_matches('\n')
                .to_string(),
        );
        Ok(())
    }
    fn warn(&mut self, msg: &str) {
        self.warnings.push(msg.to_string());
    }
}

fn t(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::new(1_700_000_000 + n, 0)
}

fn entry(n: u64, text: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Entry {
        time: t(n),
        stream: Stream::Stdout,
        line: text.as_bytes().to_vec(),
    }
    .write_json(&mut out);
    out
}

fn lines(from: u64, to: u64) -> Vec<u8> {
    (from..to)
        .flat_map(|n| entry(n, &format!("line {n}\n")))
        .collect()
}

fn names(from: u64, to: u64) -> Vec<String> {
    (from..to).map(|n| format!("line {n}")).collect()
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn open(dir: &Path) -> FileLog {
    FileLog::open(dir, &[], "c-json.log", Format::JsonFile).unwrap()
}

fn run(dir: &Path, q: Query) -> Vecs {
    let mut v = Vecs::default();
    read(&open(dir), &q, &mut v).unwrap();
    v
}

/// Three generations: `.2.gz` (0..100), `.1` (100..200), live (200..300).
fn three(dir: &Path) {
    std::fs::write(dir.join("c-json.log.2.gz"), gz(&lines(0, 100))).unwrap();
    std::fs::write(dir.join("c-json.log.1"), lines(100, 200)).unwrap();
    std::fs::write(dir.join("c-json.log"), lines(200, 300)).unwrap();
}

#[test]
fn all_tail_and_window_over_generations() {
    let d = tempfile::tempdir().unwrap();
    three(d.path());
    assert_eq!(run(d.path(), Query::default()).lines, names(0, 300));
    let tail = |n| {
        run(
            d.path(),
            Query {
                tail: Some(n),
                ..Query::default()
            },
        )
        .lines
    };
    assert_eq!(tail(10), names(290, 300));
    assert_eq!(tail(150), names(150, 300));
    assert_eq!(tail(250), names(50, 300));
    assert_eq!(tail(1000), names(0, 300));
    assert!(tail(0).is_empty());
    let window = |since, until, tail| {
        run(
            d.path(),
            Query {
                since: Some(t(since)),
                until: Some(t(until)),
                tail,
                ..Query::default()
            },
        )
        .lines
    };
    assert_eq!(window(50, 250, None), names(50, 251));
    assert_eq!(window(150, 160, None), names(150, 161));
    assert_eq!(window(50, 250, Some(5)), names(246, 251));
    assert_eq!(window(10, 20, Some(100)), names(10, 21));
}

#[test]
fn since_binary_search_in_a_big_plain_file() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("c-json.log"), lines(0, 20_000)).unwrap();
    let v = run(
        d.path(),
        Query {
            since: Some(t(19_990)),
            ..Query::default()
        },
    );
    assert_eq!(v.lines, names(19_990, 20_000));
}

#[test]
fn pieces_are_joined_and_streams_split() {
    let d = tempfile::tempdir().unwrap();
    let mut data = Vec::new();
    data.extend(entry(1, "ab"));
    let mut err = Vec::new();
    Entry {
        time: t(2),
        stream: Stream::Stderr,
        line: b"oops\n".to_vec(),
    }
    .write_json(&mut err);
    data.extend(&err);
    data.extend(entry(3, "cd\n"));
    data.extend(entry(4, "tail-no-newline"));
    std::fs::write(d.path().join("c-json.log"), &data).unwrap();
    assert_eq!(
        run(d.path(), Query::default()).lines,
        ["oops", "abcd", "tail-no-newline"]
    );
    let only_out = Query {
        stream: Some(Stream::Stdout),
        ..Query::default()
    };
    assert_eq!(run(d.path(), only_out).lines, ["abcd", "tail-no-newline"]);
    let last2 = Query {
        tail: Some(2),
        ..Query::default()
    };
    assert_eq!(run(d.path(), last2).lines, ["abcd", "tail-no-newline"]);
    // As stored, as dockerd reads json-file: pieces apart, the tail counting entries.
    let pieces = |tail| Query {
        tail,
        pieces: true,
        ..Query::default()
    };
    assert_eq!(
        run(d.path(), pieces(None)).lines,
        ["ab", "oops", "cd", "tail-no-newline"]
    );
    assert_eq!(
        run(d.path(), pieces(Some(2))).lines,
        ["cd", "tail-no-newline"]
    );
    assert_eq!(
        run(d.path(), pieces(Some(3))).lines,
        ["oops", "cd", "tail-no-newline"]
    );
}

#[test]
fn corrupt_and_truncated_entries_are_skipped_with_a_warning() {
    let d = tempfile::tempdir().unwrap();
    let mut rotated = lines(0, 5);
    rotated.extend_from_slice(b"{\"log\":\"garbage\n");
    rotated.extend(lines(5, 10));
    rotated.extend_from_slice(b"{\"log\":\"cut sh");
    std::fs::write(d.path().join("c-json.log.1"), &rotated).unwrap();
    let mut live = lines(10, 15);
    live.extend_from_slice(b"\x00\x00\x00\n");
    live.extend(lines(15, 20));
    std::fs::write(d.path().join("c-json.log"), &live).unwrap();
    let v = run(d.path(), Query::default());
    assert_eq!(v.lines, names(0, 20));
    assert_eq!(v.warnings.len(), 3, "{:?}", v.warnings);
    assert!(v.warnings[0].contains("c-json.log.1: skipping a corrupt entry"));
    assert!(v.warnings[1].contains("cut short"));
    // Backwards: the same lines, the same complaints.
    let v = run(
        d.path(),
        Query {
            tail: Some(100),
            ..Query::default()
        },
    );
    assert_eq!(v.lines, names(0, 20));
    assert_eq!(v.warnings.len(), 3, "{:?}", v.warnings);
    let v = run(
        d.path(),
        Query {
            tail: Some(7),
            ..Query::default()
        },
    );
    assert_eq!(v.lines, names(13, 20));
}

#[test]
fn gz_cut_short_reads_up_to_the_cut() {
    let d = tempfile::tempdir().unwrap();
    let z = gz(&lines(0, 2000));
    std::fs::write(d.path().join("c-json.log.2.gz"), &z[..z.len() / 2]).unwrap();
    std::fs::write(d.path().join("c-json.log.1"), lines(2000, 2010)).unwrap();
    let v = run(d.path(), Query::default());
    assert!(
        v.warnings
            .iter()
            .any(|w| w.contains("c-json.log.2.gz: the gzip data is cut short")),
        "{:?}",
        v.warnings
    );
    let n = v.lines.len();
    assert!(n > 10 && n < 2010, "{n}");
    assert_eq!(v.lines[..n - 10], names(0, (n - 10) as u64)[..]);
    assert_eq!(v.lines[n - 10..], names(2000, 2010)[..]);
    let v = run(
        d.path(),
        Query {
            tail: Some(20),
            ..Query::default()
        },
    );
    assert_eq!(v.lines.len(), 20);
    assert!(v.warnings.iter().any(|w| w.contains("cut short")));
}

/// A writer rotating with compression every few hundred entries while a follower reads from
/// the start: every line once, in order, and the follower ends when told.
fn follow_across_gz_rotations(format: Format) {
    follow_across_gz_rotations_with(format, 16 * 1024, 500, 20_000);
}

/// The e2e case in-process: 1 MB files, 5 kept, 160000 lines (about six rotations).
#[test]
fn follow_local_one_megabyte_files() {
    follow_across_gz_rotations_with(Format::Local, 1_000_000, 5, 160_000);
}

fn follow_across_gz_rotations_with(format: Format, max_size: u64, max_file: u32, n: u64) {
    let d = tempfile::tempdir().unwrap();
    let base = "c-json.log";
    let opts = JsonFileOptions {
        max_size: Some(max_size),
        max_file,
        compress: true,
        tag: None,
    };
    let info = TagInfo {
        container_id: "c".into(),
        container_name: "c".into(),
        image_name: String::new(),
        image_id: String::new(),
        daemon_name: "scribe".into(),
    };
    let mut w = match format {
        Format::JsonFile => JsonFileWriter::open(d.path().join(base), &opts, &info).unwrap(),
        Format::Local => {
            JsonFileWriter::open_local_under(d.path(), &[] as &[&str], base, &opts).unwrap()
        }
    };
    let log = FileLog::open(d.path(), &[], base, format).unwrap();
    let pos = read(&log, &Query::default(), &mut Vecs::default()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let big = n;
    let writer = {
        let done = done.clone();
        std::thread::spawn(move || {
            for n in 0..big {
                let line = format!("line {n}\n");
                w.write(Stream::Stdout, line.as_bytes(), SystemTime::now())
                    .unwrap();
                // About a rotation every 2 ms: far faster than a real log rotates.
                if n % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            w.wait_rotation();
            done.store(true, Ordering::SeqCst);
        })
    };
    let mut v = Vecs::default();
    let ended = follow(&log, pos, &Query::default(), &mut v, &mut || {
        done.load(Ordering::SeqCst)
    })
    .unwrap();
    writer.join().unwrap();
    assert_eq!(ended, Ended::Stopped);
    assert!(v.warnings.is_empty(), "{:?}", v.warnings);
    let n_total = big;
    let want = names(0, n_total);
    let first_diff = v.lines.iter().zip(&want).position(|(a, b)| a != b);
    assert!(
        v.lines == want,
        "{} lines of {n_total}; first difference at {first_diff:?}: {:?}",
        v.lines.len(),
        first_diff.map(|i| &v.lines[i.saturating_sub(2)..(i + 2).min(v.lines.len())])
    );
    let gzs = std::fs::read_dir(d.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".gz")
        })
        .count();
    assert!(gzs >= 3, "{gzs} gz files");
    // Read back whole and by tail, as written.
    let mut all = Vecs::default();
    read(&log, &Query::default(), &mut all).unwrap();
    // What is still on disk: the newest lines (with 5 files kept, the oldest were removed).
    let k = all.lines.len() as u64;
    assert!(all.lines == names(n_total - k, n_total) && all.warnings.is_empty());
    assert!(max_file < 100 || k == n_total);
    let mut tail = Vecs::default();
    let q = Query {
        tail: Some(300),
        ..Query::default()
    };
    read(&log, &q, &mut tail).unwrap();
    assert!(
        tail.lines == names(n_total - 300, n_total),
        "{:?}",
        tail.warnings
    );
}

#[test]
fn follow_json_file_across_gz_rotations() {
    follow_across_gz_rotations(Format::JsonFile);
}

#[test]
fn follow_local_across_gz_rotations() {
    follow_across_gz_rotations(Format::Local);
}

/// `local` files: a record whose sizes do not add up ends what can be read of that file, with
/// a warning; the other files are read; the tail stops at it too.
#[test]
fn local_corrupt_record_ends_the_file() {
    let d = tempfile::tempdir().unwrap();
    let rec = |n: u64| {
        let mut out = Vec::new();
        let line = format!("line {n}");
        crate::localfmt::encode_record(
            &crate::localfmt::EntryRef {
                source: "stdout",
                time_nano: (1_700_000_000 + n as i64) * 1_000_000_000,
                line: line.as_bytes(),
                partial: false,
                partial_meta: None,
            },
            &mut out,
        );
        out
    };
    let mut old: Vec<u8> = (0..5).flat_map(rec).collect();
    old.extend_from_slice(&[0, 0, 0, 9, 1, 2]);
    old.extend((5..8).flat_map(rec));
    std::fs::write(d.path().join("container.log.1"), &old).unwrap();
    let live: Vec<u8> = (8..12).flat_map(rec).collect();
    std::fs::write(d.path().join("container.log"), &live).unwrap();
    let log = FileLog::open(d.path(), &[], "container.log", Format::Local).unwrap();
    let mut v = Vecs::default();
    read(&log, &Query::default(), &mut v).unwrap();
    assert_eq!(v.lines, [names(0, 5), names(8, 12)].concat());
    assert_eq!(v.warnings.len(), 1, "{:?}", v.warnings);
    let mut t = Vecs::default();
    let q = Query {
        tail: Some(6),
        ..Query::default()
    };
    read(&log, &q, &mut t).unwrap();
    assert_eq!(t.lines, names(6, 12));
    // Backwards, the three records after the bad one are found, then the bad one stops it.
    let mut t = Vecs::default();
    let q = Query {
        tail: Some(10),
        ..Query::default()
    };
    read(&log, &q, &mut t).unwrap();
    assert_eq!(t.lines, names(5, 12));
    assert_eq!(t.warnings.len(), 1, "{:?}", t.warnings);
}
