use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use flate2::read::GzDecoder;

use super::*;
use crate::drivers::{
    Batch, DriverFuture, DriverReport, DriverReporter, DriverStats, Partial, PartialIds, Record,
};
use crate::jsonfile::TagInfo;
use crate::localfmt::{Entry, ForwardReader};
use crate::stream::Stream;

fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn info() -> TagInfo {
    TagInfo {
        container_id: "c1".into(),
        container_name: "c1".into(),
        daemon_name: "scribe".into(),
        ..TagInfo::default()
    }
}

/// Collects reports with the driver name.
#[derive(Default)]
struct Collect(Mutex<Vec<(String, DriverReport)>>);

impl DriverReporter for Collect {
    fn report(&self, driver: &str, _target: &str, report: DriverReport) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((driver.to_string(), report));
    }
}

fn ctx<'a>(root: &'a Path, tag: &'a TagInfo, r: Option<Arc<Collect>>) -> OpenContext<'a> {
    OpenContext {
        root,
        subdirs: ["ns", "c1"],
        tag,
        reporter: r.map(|r| r as Arc<dyn DriverReporter>),
        container: None,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Hands `records` to `d` the relay's way: the rest after waiting for room.
fn log_all(
    rt: &tokio::runtime::Runtime,
    d: &dyn LogDriver,
    stream: Stream,
    records: &[Record<'_>],
    time: SystemTime,
) {
    let mut done = 0;
    while done < records.len() {
        let batch = Batch {
            stream,
            time,
            records: &records[done..],
        };
        let n = d.log(&batch);
        done += n;
        if done < records.len() {
            rt.block_on(d.room());
        }
    }
}

fn line(s: &str) -> Record<'_> {
    Record {
        line: s.as_bytes(),
        partial: None,
    }
}

/// Every entry of a `local` log, oldest file first (`.N.gz` ... `.1.gz`, live).
fn read_all(dir: &Path, base: &str) -> Vec<Entry> {
    let mut gens: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .expect("read dir")
        .filter_map(|e| {
            let e = e.ok()?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rest = name.strip_prefix(base)?;
            let n = if rest.is_empty() {
                0
            } else {
                rest.strip_prefix('.')?
                    .trim_end_matches(".gz")
                    .parse()
                    .ok()?
            };
            Some((n, e.path()))
        })
        .collect();
    gens.sort_by_key(|g| std::cmp::Reverse(g.0));
    let mut out = Vec::new();
    for (_, p) in gens {
        let f = File::open(&p).expect("open");
        let r: Box<dyn Read> = if p.extension().is_some_and(|e| e == "gz") {
            Box::new(GzDecoder::new(f))
        } else {
            Box::new(f)
        };
        for e in ForwardReader::new(r) {
            out.push(e.expect("decode"));
        }
    }
    out
}

#[test]
fn options_follow_docker() {
    assert_eq!(
        LocalOptions::from_opts(&opts(&[]), "").unwrap(),
        LocalOptions {
            max_size: 20 * 1024 * 1024,
            max_file: 5,
            compress: true
        }
    );
    let o = LocalOptions::from_opts(
        &opts(&[("max-size", "1k"), ("max-file", "2"), ("compress", "false")]),
        "",
    )
    .unwrap();
    assert_eq!((o.max_size, o.max_file, o.compress), (1000, 2, false));
    for (pairs, key) in [
        (&[("max-size", "-1")][..], "max-size"),
        (&[("max-size", "0")][..], "max-size"),
        (&[("max-file", "0")][..], "max-file"),
        (&[("max-file", "x")][..], "max-file"),
        (&[("compress", "yes")][..], "compress"),
        // dockerd: compression cannot be enabled when max-file is 1 (compress defaults true).
        (&[("max-file", "1")][..], "compress"),
        (&[("max-file", "1"), ("compress", "true")][..], "compress"),
    ] {
        let e = LocalOptions::from_opts(&opts(pairs), "").unwrap_err();
        assert!(e.contains(&format!("log option {key}=")), "{pairs:?}: {e}");
    }
    assert!(
        LocalOptions::from_opts(&opts(&[("max-file", "1"), ("compress", "false")]), "").is_ok()
    );

    let c = CacheOptions::from_opts(&opts(&[("max-file", "1"), ("cache-max-size", "2k")])).unwrap();
    assert!(!c.disabled);
    assert_eq!(
        c.file.max_size, 2000,
        "the cache takes its own options only"
    );
    assert_eq!(c.file.max_file, 5);
    assert_eq!(c.mode, Mode::Blocking);
    let c = CacheOptions::from_opts(&opts(&[
        ("cache-disabled", "true"),
        ("mode", "non-blocking"),
    ]))
    .unwrap();
    assert!(c.disabled);
    assert!(matches!(c.mode, Mode::NonBlocking { .. }));
    let e = CacheOptions::from_opts(&opts(&[("cache-disabled", "maybe")])).unwrap_err();
    assert!(e.contains("cache-disabled"), "{e}");
    let e = CacheOptions::from_opts(&opts(&[("cache-max-file", "0")])).unwrap_err();
    assert!(e.contains("cache-max-file"), "{e}");
}

#[test]
fn records_round_trip_with_split_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = info();
    let d = open(
        &LocalOptions::default(),
        Mode::Blocking,
        &ctx(dir.path(), &tag, None),
    )
    .expect("open");
    assert_eq!(d.name(), "local");
    assert!(d.reads_back());
    let rt = rt();
    let t0 = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 5);
    let mut ids = PartialIds::new();
    let id = ids.next_id();
    let pieces = [
        line("one\n"),
        line("\n"),
        Record {
            line: b"abc",
            partial: Some(Partial {
                id,
                ordinal: 1,
                last: false,
            }),
        },
        Record {
            line: b"def\n",
            partial: Some(Partial {
                id,
                ordinal: 2,
                last: true,
            }),
        },
        line("no newline at the end"),
    ];
    log_all(&rt, &*d, Stream::Stdout, &pieces, t0);
    log_all(
        &rt,
        &*d,
        Stream::Stderr,
        &[line("err\n")],
        t0 + Duration::from_secs(1),
    );
    rt.block_on(d.drain());
    assert_eq!(d.stats().delivered, 6);
    let got = read_all(&dir.path().join("ns/c1/local-logs"), "container.log");
    let summary: Vec<(String, String, bool)> = got
        .iter()
        .map(|e| {
            (
                e.source.clone(),
                String::from_utf8_lossy(&e.line).into_owned(),
                e.partial,
            )
        })
        .collect();
    let want = [
        ("stdout", "one", false),
        ("stdout", "", false),
        ("stdout", "abc", true),
        ("stdout", "def", true),
        // Output that ended without a newline: dockerd's copier stores it as a first piece.
        ("stdout", "no newline at the end", true),
        ("stderr", "err", false),
    ];
    let want: Vec<(String, String, bool)> = want
        .iter()
        .map(|(s, l, p)| (s.to_string(), l.to_string(), *p))
        .collect();
    assert_eq!(summary, want);
    assert_eq!(got[0].time_nano, 1_700_000_000_000_000_005);
    assert_eq!(got[5].time_nano, 1_700_000_001_000_000_005);
    let m2 = got[3].partial_meta.clone().expect("metadata");
    assert_eq!((m2.ordinal, m2.last, m2.id.len()), (2, true, 64));
    assert_eq!(got[2].partial_meta.clone().expect("metadata").id, m2.id);
    assert!(!got[2].partial_meta.clone().expect("metadata").last);
    let m4 = got[4].partial_meta.clone().expect("metadata");
    assert_eq!((m4.ordinal, m4.last), (1, false));
    assert_ne!(m4.id, m2.id);
}

#[test]
fn rotates_keeps_max_file_and_gzips_with_the_last_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = info();
    let o = LocalOptions::from_opts(&opts(&[("max-size", "300"), ("max-file", "3")]), "").unwrap();
    let d = open(&o, Mode::Blocking, &ctx(dir.path(), &tag, None)).expect("open");
    let rt = rt();
    let lines: Vec<String> = (0..200).map(|i| format!("line {i:04}\n")).collect();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    for (i, l) in lines.iter().enumerate() {
        // One line per batch with its own time, so each file's last time is known.
        log_all(
            &rt,
            &*d,
            Stream::Stdout,
            &[line(l)],
            t0 + Duration::from_millis(i as u64),
        );
    }
    rt.block_on(d.drain());
    let logdir = dir.path().join("ns/c1/local-logs");
    let mut names: Vec<String> = std::fs::read_dir(&logdir)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["container.log", "container.log.1.gz", "container.log.2.gz"]
    );
    for n in &names {
        let len = std::fs::metadata(logdir.join(n)).expect("meta").len();
        assert!(n.ends_with(".gz") || len <= 300, "{n}: {len} bytes");
    }
    let got = read_all(&logdir, "container.log");
    // The newest lines, consecutive, ending with the last one written.
    let texts: Vec<String> = got
        .iter()
        .map(|e| String::from_utf8_lossy(&e.line).into_owned())
        .collect();
    let first: usize = texts[0]["line ".len()..].parse().expect("number");
    let want: Vec<String> = (first..200).map(|i| format!("line {i:04}")).collect();
    assert_eq!(texts, want);
    assert!(first > 0, "max-file 3 dropped the oldest lines");
    // The gzip header carries the last entry's time, as dockerd's does.
    let gz = GzDecoder::new(File::open(logdir.join("container.log.1.gz")).expect("open"));
    let extra = gz.header().and_then(|h| h.extra()).map(|e| e.to_vec());
    let mut entries: Vec<Entry> = ForwardReader::new(gz).map(|e| e.expect("decode")).collect();
    let last = entries.pop().expect("entries");
    let mut want = b"{\"lastTime\":\"".to_vec();
    crate::timefmt::write_rfc3339_nano(
        &mut want,
        SystemTime::UNIX_EPOCH + Duration::from_nanos(last.time_nano as u64),
    );
    want.extend_from_slice(b"\"}");
    assert_eq!(extra.as_deref(), Some(&want[..]));
}

#[test]
fn compress_false_leaves_plain_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = info();
    let o = LocalOptions::from_opts(
        &opts(&[
            ("max-size", "100"),
            ("max-file", "2"),
            ("compress", "false"),
        ]),
        "",
    )
    .unwrap();
    let d = open(
        &o,
        Mode::NonBlocking { max_buffer: 1 },
        &ctx(dir.path(), &tag, None),
    )
    .expect("open");
    let rt = rt();
    for i in 0..20 {
        let l = format!("{i}\n");
        log_all(&rt, &*d, Stream::Stderr, &[line(&l)], SystemTime::now());
    }
    rt.block_on(d.drain());
    let logdir = dir.path().join("ns/c1/local-logs");
    assert!(logdir.join("container.log.1").exists());
    assert!(!logdir.join("container.log.1.gz").exists());
    assert!(!logdir.join("container.log.2").exists());
    let got = read_all(&logdir, "container.log");
    assert_eq!(got.last().map(|e| e.line.clone()), Some(b"19".to_vec()));
}

#[test]
fn a_link_planted_in_the_log_dir_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = info();
    let victim = dir.path().join("victim");
    std::fs::write(&victim, "precious").expect("victim");
    let logdir = dir.path().join("ns/c1/local-logs");
    std::fs::create_dir_all(&logdir).expect("mkdir");
    std::os::unix::fs::symlink(&victim, logdir.join("container.log")).expect("plant");
    let e = open(
        &LocalOptions::default(),
        Mode::Blocking,
        &ctx(dir.path(), &tag, None),
    )
    .unwrap_err();
    assert!(
        e.contains("container.log") && e.contains("local open"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("victim"),
        "precious"
    );

    // The directory itself replaced by a link.
    let other = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(other.path().join("ns/c1")).expect("mkdir");
    std::os::unix::fs::symlink(dir.path(), other.path().join("ns/c1/local-logs")).expect("plant");
    let e = open(
        &LocalOptions::default(),
        Mode::Blocking,
        &ctx(other.path(), &tag, None),
    )
    .unwrap_err();
    assert!(e.contains("local-logs"), "{e}");
}

#[test]
fn a_full_disk_counts_and_reports_drops() {
    let fs = crate::testutil::TinyTmpfs::must_mount("64k");
    let tag = info();
    let sink = Arc::new(Collect::default());
    let d = open(
        &LocalOptions::default(),
        Mode::Blocking,
        &ctx(fs.path(), &tag, Some(sink.clone())),
    )
    .expect("open");
    let _ = std::fs::write(fs.path().join("filler"), vec![0u8; 128 * 1024]);
    let rt = rt();
    log_all(
        &rt,
        &*d,
        Stream::Stdout,
        &[line("one\n"), line("two\n")],
        SystemTime::now(),
    );
    log_all(
        &rt,
        &*d,
        Stream::Stderr,
        &[line("three\n")],
        SystemTime::now(),
    );
    assert_eq!(
        d.stats(),
        DriverStats {
            delivered: 0,
            dropped: 3,
            dropped_bytes: 14
        }
    );
    drop(d);
    let reports = sink.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert_eq!(reports.len(), 2, "{reports:?}");
    assert!(
        reports.iter().all(|(name, _)| name == "local"),
        "{reports:?}"
    );
    let DriverReport::Dropping { error } = &reports[0].1 else {
        panic!("{reports:?}");
    };
    assert!(error.contains("No space left on device"), "{error}");
    assert!(
        error.starts_with("local write "),
        "names the driver: {error}"
    );
    assert!(
        matches!(reports[1].1, DriverReport::Closed { .. }),
        "{reports:?}"
    );
}

/// A driver that cannot read back (as fluentd): stands in for one in the cache tests.
#[derive(Debug)]
struct Shipper;

impl LogDriver for Shipper {
    fn name(&self) -> &str {
        "shipper"
    }
    fn log(&self, batch: &Batch<'_>) -> usize {
        batch.records.len()
    }
    fn room(&self) -> DriverFuture<'_> {
        Box::pin(async {})
    }
    fn drain(&self) -> DriverFuture<'_> {
        Box::pin(async {})
    }
    fn reads_back(&self) -> bool {
        false
    }
    fn stats(&self) -> DriverStats {
        DriverStats::default()
    }
}

#[test]
fn a_cache_is_kept_only_when_no_driver_reads_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tag = info();
    let c = ctx(dir.path(), &tag, None);
    let cached = dir.path().join("ns/c1").join(CACHE_FILE);

    // No driver (`none`): no cache.
    assert!(with_cache(Vec::new(), &CacheOptions::default(), &c)
        .unwrap()
        .is_empty());
    // A driver that reads back: no cache.
    let local = open(&LocalOptions::default(), Mode::Blocking, &c).expect("open");
    let list = with_cache(vec![local], &CacheOptions::default(), &c).unwrap();
    assert_eq!(list.len(), 1);
    assert!(!cached.exists());
    // Disabled.
    let disabled = CacheOptions::from_opts(&opts(&[("cache-disabled", "true")])).unwrap();
    let list = with_cache(vec![Arc::new(Shipper)], &disabled, &c).unwrap();
    assert_eq!(list.len(), 1);
    assert!(!cached.exists());

    // Only a shipper: the cache follows it, in the local format, bounded by its options.
    let o = CacheOptions::from_opts(&opts(&[
        ("cache-max-size", "200"),
        ("cache-max-file", "2"),
        ("cache-compress", "false"),
    ]))
    .unwrap();
    let list = with_cache(vec![Arc::new(Shipper)], &o, &c).unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[1].name(), CACHE_NAME);
    assert!(list[1].reads_back());
    let drivers = crate::drivers::Drivers::new(list, crate::framing::DEFAULT_MAX_LINE);
    assert!(drivers.reads_back());
    let rt = rt();
    for i in 0..100 {
        let l = format!("cached {i}\n");
        for d in drivers.iter() {
            log_all(&rt, &**d, Stream::Stdout, &[line(&l)], SystemTime::now());
        }
    }
    rt.block_on(drivers.drain());
    assert!(cached.exists());
    let names: Vec<String> = std::fs::read_dir(dir.path().join("ns/c1"))
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(CACHE_FILE))
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["container-cached.log", "container-cached.log.1"]);
    let got = read_all(&dir.path().join("ns/c1"), CACHE_FILE);
    assert_eq!(
        got.last().map(|e| e.line.clone()),
        Some(b"cached 99".to_vec())
    );
    let total: u64 = names
        .iter()
        .map(|n| {
            std::fs::metadata(dir.path().join("ns/c1").join(n))
                .expect("meta")
                .len()
        })
        .sum();
    assert!(
        total <= 400,
        "cache-max-size x cache-max-file bound it: {total} bytes"
    );
}
