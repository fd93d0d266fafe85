//! The plugin driver against a fake plugin (threads in the test process serving the protocol on
//! a unix socket and reading the FIFO as a plugin does): every line in order, partial metadata,
//! Activate once, StartLogging/StopLogging once, nothing left after close; a missing plugin
//! found later; a plugin that dies mid-frame, counted exactly.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::drivers::{Partial, PartialIds, Record};
use crate::jsonfile::TagInfo;
use crate::plugin::discovery::SearchPath;
use crate::plugin::frame::decode_frame;
use crate::stream::Stream;

/// The FIFO readers of the fake plugin: file, stop flag, thread.
type Readers = Arc<Mutex<Vec<(String, Arc<AtomicBool>, std::thread::JoinHandle<()>)>>>;

#[derive(Default)]
struct Seen {
    calls: Vec<String>,
    /// (source, line, partial ordinal or 0)
    lines: Vec<(String, Vec<u8>, i32)>,
    infos: Vec<serde_json::Value>,
    /// Capabilities answer ReadLogs.
    read_logs: bool,
}

struct Fake {
    dead: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<UnixStream>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Fake {
    /// Serves at `sock`; the FIFO reader dies after reading `die_after` bytes.
    fn start(sock: &Path, seen: Arc<Mutex<Seen>>, die_after: Option<usize>) -> Fake {
        Fake::start_with(sock, seen, die_after, false)
    }

    /// [`Fake::start`]; with `close_idle`, connections that send nothing for 50 ms are closed
    /// (as a server with a short read timeout does).
    fn start_with(
        sock: &Path,
        seen: Arc<Mutex<Seen>>,
        die_after: Option<usize>,
        close_idle: bool,
    ) -> Fake {
        let l = UnixListener::bind(sock).unwrap();
        l.set_nonblocking(true).unwrap();
        let dead = Arc::new(AtomicBool::new(false));
        let conns: Arc<Mutex<Vec<UnixStream>>> = Arc::default();
        let (d, c, s, path) = (
            dead.clone(),
            conns.clone(),
            seen.clone(),
            sock.to_path_buf(),
        );
        let thread = std::thread::spawn(move || {
            let readers: Readers = Arc::default();
            while !d.load(Ordering::SeqCst) {
                match l.accept() {
                    Ok((conn, _)) => {
                        conn.set_nonblocking(false).unwrap();
                        if close_idle {
                            conn.set_read_timeout(Some(Duration::from_millis(50)))
                                .unwrap();
                        }
                        c.lock().unwrap().push(conn.try_clone().unwrap());
                        let (s, d, r) = (s.clone(), d.clone(), readers.clone());
                        std::thread::spawn(move || serve(conn, s, d, r, die_after));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            let _ = std::fs::remove_file(&path);
        });
        Fake {
            dead,
            conns,
            thread: Some(thread),
        }
    }

    fn kill(mut self) {
        self.dead.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

fn serve(
    mut conn: UnixStream,
    seen: Arc<Mutex<Seen>>,
    dead: Arc<AtomicBool>,
    readers: Readers,
    die_after: Option<usize>,
) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head, len) = loop {
        let Ok(n) = conn.read(&mut chunk) else {
            // An idle connection timed out (close_idle): closed for the peer too.
            let _ = conn.shutdown(std::net::Shutdown::Both);
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            buf.drain(..p + 4);
            break (head, len);
        }
    };
    while buf.len() < len {
        let Ok(n) = conn.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let method = head.split(' ').nth(1).unwrap_or("").to_string();
    assert!(head.contains("Host: plugin.moby.localhost"), "{head}");
    let body: serde_json::Value = serde_json::from_slice(&buf[..len]).unwrap_or_default();
    seen.lock().unwrap().calls.push(method.clone());
    let reply = match method.as_str() {
        "/Plugin.Activate" => r#"{"Implements":["LoggingDriver"]}"#.to_string(),
        "/LogDriver.Capabilities" => {
            format!(
                r#"{{"Cap":{{"ReadLogs":{}}}}}"#,
                seen.lock().unwrap().read_logs
            )
        }
        "/LogDriver.StartLogging" => {
            let file = body["File"].as_str().unwrap().to_string();
            seen.lock().unwrap().infos.push(body["Info"].clone());
            let stop = Arc::new(AtomicBool::new(false));
            let (st, s, d, f) = (stop.clone(), seen.clone(), dead.clone(), file.clone());
            let t = std::thread::spawn(move || read_fifo(&f, s, st, d, die_after));
            readers.lock().unwrap().push((file, stop, t));
            r#"{"Err":""}"#.to_string()
        }
        "/LogDriver.StopLogging" => {
            let file = body["File"].as_str().unwrap().to_string();
            let mut rs = readers.lock().unwrap();
            if let Some(i) = rs.iter().position(|(f, _, _)| *f == file) {
                let (_, stop, t) = rs.remove(i);
                stop.store(true, Ordering::SeqCst);
                t.join().unwrap();
            }
            r#"{"Err":""}"#.to_string()
        }
        _ => {
            let r = "HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found";
            let _ = conn.write_all(r.as_bytes());
            return;
        }
    };
    let r = format!(
        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
        reply.len()
    );
    let _ = conn.write_all(r.as_bytes());
}

fn read_fifo(
    file: &str,
    seen: Arc<Mutex<Seen>>,
    stop: Arc<AtomicBool>,
    dead: Arc<AtomicBool>,
    die_after: Option<usize>,
) {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
        .unwrap();
    let mut buf = Vec::new();
    let mut total = 0usize;
    let mut chunk = vec![0u8; 65536];
    loop {
        let want = match die_after {
            Some(limit) if total >= limit => {
                // Dies: stops reading for good (the socket goes with kill()).
                dead.store(true, Ordering::SeqCst);
                return;
            }
            Some(limit) => (limit - total).min(chunk.len()),
            None => chunk.len(),
        };
        match f.read(&mut chunk[..want]) {
            Ok(n) if n > 0 => {
                total += n;
                buf.extend_from_slice(&chunk[..n]);
                let mut used_all = 0;
                while let Ok(Some((e, used))) = decode_frame(&buf[used_all..]) {
                    let ord = e
                        .partial_meta
                        .map_or(0, |m| if m.last { -m.ordinal } else { m.ordinal });
                    seen.lock()
                        .unwrap()
                        .lines
                        .push((e.source.to_string(), e.line.to_vec(), ord));
                    used_all += used;
                }
                buf.drain(..used_all);
            }
            _ => {
                if stop.load(Ordering::SeqCst) || dead.load(Ordering::SeqCst) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

#[derive(Default)]
struct Reports(Mutex<Vec<(String, String, JsonFileReport)>>);

impl DriverReporter for Reports {
    fn report(&self, driver: &str, target: &str, report: JsonFileReport) {
        self.0
            .lock()
            .unwrap()
            .push((driver.into(), target.into(), report));
    }
}

struct Setup {
    _dirs: tempfile::TempDir,
    plugins: PathBuf,
    fifo_root: PathBuf,
    reports: Arc<Reports>,
}

fn setup() -> Setup {
    let d = tempfile::tempdir().unwrap();
    let plugins = d.path().join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    Setup {
        plugins,
        fifo_root: d.path().join("fifos"),
        _dirs: d,
        reports: Arc::default(),
    }
}

fn open(s: &Setup, name: &str, id: &str, mode: Mode) -> PluginLog {
    open_in(s, name, id, mode, Path::new("/nonexistent"))
}

/// [`open`] with the container's log directory under `root`.
fn open_in(s: &Setup, name: &str, id: &str, mode: Mode, root: &Path) -> PluginLog {
    let mut opts = PluginOptions::new(
        name,
        SearchPath::from_dirs(&[s.plugins.display().to_string()]),
        BTreeMap::from([("loki-url".to_string(), "http://l".to_string())]),
    )
    .unwrap();
    opts.fifo_root = s.fifo_root.clone();
    let tag = TagInfo {
        container_id: id.into(),
        container_name: "web".into(),
        image_name: "docker.io/library/busybox:latest".into(),
        image_id: String::new(),
        daemon_name: "scribe".into(),
    };
    let ctx = OpenContext {
        root,
        subdirs: ["ns", id],
        tag: &tag,
        reporter: Some(s.reports.clone()),
        container: None,
    };
    PluginLog::open(&opts, mode, &ctx).unwrap()
}

/// Logs `n` numbered lines as the relay does, waiting on room() when told to.
async fn log_lines(d: &PluginLog, from: usize, n: usize) {
    let lines: Vec<String> = (from..from + n).map(|i| format!("line {i}\n")).collect();
    for chunk in lines.chunks(50) {
        let recs: Vec<Record<'_>> = chunk
            .iter()
            .map(|l| Record {
                line: l.as_bytes(),
                partial: None,
            })
            .collect();
        let mut done = 0;
        while done < recs.len() {
            let b = Batch {
                stream: Stream::Stdout,
                time: SystemTime::now(),
                records: &recs[done..],
            };
            let took = d.log(&b);
            done += took;
            if done < recs.len() {
                d.room().await;
            }
        }
    }
}

/// Drops the driver and waits for its task to end (not [`all_finished`]: other tests' drivers
/// are live in this process too).
async fn close(d: PluginLog) {
    let shared = d.shared.clone();
    drop(d);
    wait_for("the task to end", || shared.lock().finished).await;
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "current_thread")]
async fn lines_partials_and_the_call_sequence() {
    let s = setup();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let fake = Fake::start(&s.plugins.join("p1.sock"), seen.clone(), None);
    let before = activate::activate_calls();
    let d = open(&s, "p1", "c1", Mode::Blocking);
    log_lines(&d, 0, 3000).await;
    // A split line: three pieces with one id.
    let mut ids = PartialIds::new();
    let id = ids.next_id();
    let pieces = [b"aaaa".as_slice(), b"bbbb", b"cc\n"];
    let recs: Vec<Record<'_>> = pieces
        .iter()
        .enumerate()
        .map(|(i, p)| Record {
            line: p,
            partial: Some(Partial {
                id,
                ordinal: i as u32 + 1,
                last: i == 2,
            }),
        })
        .collect();
    let b = Batch {
        stream: Stream::Stderr,
        time: SystemTime::now(),
        records: &recs,
    };
    assert_eq!(d.log(&b), 3);
    d.drain().await;
    let d2 = open(&s, "p1", "c2", Mode::Blocking);
    close(d).await;
    close(d2).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.lines.len(), 3003);
    for (i, (src, line, ord)) in seen.lines[..3000].iter().enumerate() {
        assert_eq!(
            (src.as_str(), line.as_slice(), *ord),
            ("stdout", format!("line {i}").as_bytes(), 0)
        );
    }
    let tail: Vec<_> = seen.lines[3000..]
        .iter()
        .map(|(s, l, o)| (s.as_str(), l.as_slice(), *o))
        .collect();
    assert_eq!(
        tail,
        [
            ("stderr", &b"aaaa"[..], 1),
            ("stderr", b"bbbb", 2),
            ("stderr", b"cc", -3)
        ]
    );
    // Activate once for the two containers (this shim), Start/Stop once each, in order.
    assert_eq!(activate::activate_calls() - before, 1);
    let calls: Vec<&str> = seen
        .calls
        .iter()
        .map(String::as_str)
        .filter(|c| c.starts_with('/'))
        .collect();
    assert_eq!(
        calls
            .iter()
            .filter(|c| **c == "/LogDriver.StartLogging")
            .count(),
        2
    );
    assert_eq!(
        calls
            .iter()
            .filter(|c| **c == "/LogDriver.StopLogging")
            .count(),
        2
    );
    assert_eq!(calls[0], "/Plugin.Activate");
    let info = &seen.infos[0];
    assert_eq!(info["ContainerID"], "c1");
    assert_eq!(info["ContainerName"], "/web");
    assert_eq!(
        info["ContainerImageName"],
        "docker.io/library/busybox:latest"
    );
    assert_eq!(info["DaemonName"], "scribe");
    assert_eq!(info["Config"]["loki-url"], "http://l");
    assert_eq!(info["ContainerEnv"], serde_json::json!([]));
    // Nothing left: no FIFO, no directory.
    assert!(!s.fifo_root.join("ns/c1").exists());
    assert!(!s.fifo_root.join("ns/c2").exists());
    assert!(!s.fifo_root.join("ns").exists());
    assert!(s.reports.0.lock().unwrap().is_empty());
    drop(seen);
    fake.kill();
}

#[tokio::test(flavor = "current_thread")]
async fn a_missing_plugin_is_found_later() {
    let s = setup();
    let d = open(&s, "late", "c1", Mode::Blocking);
    log_lines(&d, 0, 100).await;
    {
        let r = s.reports.0.lock().unwrap();
        assert_eq!(r.len(), 1, "{r:?}");
        let JsonFileReport::Warning { error } = &r[0].2 else {
            panic!("{r:?}");
        };
        assert!(
            error.contains("not found") && error.contains("late"),
            "{error}"
        );
        assert_eq!(r[0].0, "late");
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let fake = Fake::start(&s.plugins.join("late.sock"), seen.clone(), None);
    log_lines(&d, 100, 100).await;
    close(d).await;
    let lines: Vec<Vec<u8>> = seen
        .lock()
        .unwrap()
        .lines
        .iter()
        .map(|l| l.1.clone())
        .collect();
    let want: Vec<Vec<u8>> = (0..200).map(|i| format!("line {i}").into_bytes()).collect();
    assert_eq!(lines, want);
    fake.kill();
}

#[tokio::test(flavor = "current_thread")]
async fn a_plugin_dying_mid_frame_loses_exactly_that_frame() {
    dying_mid_frame(false).await;
}

/// The same with a plugin that closes idle connections: no watch, the probe notices.
#[tokio::test(flavor = "current_thread")]
async fn a_plugin_closing_idle_connections_is_probed() {
    dying_mid_frame(true).await;
}

async fn dying_mid_frame(close_idle: bool) {
    let s = setup();
    let sock = s.plugins.join("crashy.sock");
    let seen = Arc::new(Mutex::new(Seen::default()));
    // Frames of "line N" are the same length for N < 10: die 2.5 frames in.
    let mut one = Vec::new();
    crate::plugin::frame::encode_frame(
        &crate::localfmt::EntryRef {
            source: "stdout",
            time_nano: nanos(SystemTime::now()),
            line: b"line 0",
            ..Default::default()
        },
        &mut one,
    );
    let fake = Fake::start_with(&sock, seen.clone(), Some(one.len() * 5 / 2), close_idle);
    let d = open(&s, "crashy", "c1", Mode::Blocking);
    if close_idle {
        // The plugin closes the watch connection at once: the driver stops watching.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let t0 = Instant::now();
    log_lines(&d, 0, 10).await;
    wait_for("the plugin to die", || fake.dead.load(Ordering::SeqCst)).await;
    fake.kill();
    // (In this test the "restarted" plugin has the shim's own pid: start it once the driver
    // saw the old one go, as a real restart with a new pid would be seen.)
    let shared = d.shared.clone();
    wait_for("the driver to see the plugin go", || shared.lock().outage).await;
    if close_idle {
        // Seen by a probe, not by a watch connection.
        assert!(t0.elapsed() >= task::PROBE_EVERY, "{:?}", t0.elapsed());
    }
    // Restarted: the unread frames go into a new FIFO.
    let seen2 = Arc::new(Mutex::new(Seen::default()));
    let fake2 = Fake::start_with(&sock, seen2.clone(), None, close_idle);
    wait_for("lines after the restart", || {
        seen2.lock().unwrap().lines.len() == 7
    })
    .await;
    log_lines(&d, 10, 5).await;
    let stats = d.stats();
    close(d).await;
    let first: Vec<Vec<u8>> = seen
        .lock()
        .unwrap()
        .lines
        .iter()
        .map(|l| l.1.clone())
        .collect();
    let second: Vec<Vec<u8>> = seen2
        .lock()
        .unwrap()
        .lines
        .iter()
        .map(|l| l.1.clone())
        .collect();
    assert_eq!(first, [b"line 0".to_vec(), b"line 1".to_vec()]);
    let want: Vec<Vec<u8>> = (3..15).map(|i| format!("line {i}").into_bytes()).collect();
    assert_eq!(second, want);
    // Line 2 is the one lost, and it is counted: in the stats and in the reports.
    assert_eq!(stats.dropped, 1);
    let r = s.reports.0.lock().unwrap();
    let closed = r.iter().find_map(|(_, _, r)| match r {
        JsonFileReport::Closed { total, .. } => Some(*total),
        _ => None,
    });
    assert_eq!(closed.map(|t| t.entries), Some(1), "{r:?}");
    assert!(
        r.iter().any(|(_, _, r)| matches!(r, JsonFileReport::Warning { error } if error.contains("stopped or restarted"))),
        "{r:?}"
    );
    assert!(!s.fifo_root.join("ns/c1").exists());
    fake2.kill();
}

#[test]
fn info_sends_the_environment_only_when_an_option_asks() {
    let tag = TagInfo {
        container_id: "c9".into(),
        container_name: "c9".into(),
        image_name: String::new(),
        image_id: String::new(),
        daemon_name: "scribe".into(),
    };
    let given = Info {
        container_name: "/web".into(),
        container_env: vec!["SECRET=1".into(), "A=2".into()],
        container_image_name: "img".into(),
        log_path: "/should/not/pass".into(),
        ..Info::default()
    };
    let ctx = OpenContext {
        root: Path::new("/nonexistent"),
        subdirs: ["ns", "c9"],
        tag: &tag,
        reporter: None,
        container: Some(&given),
    };
    let mut opts = PluginOptions::new("p", SearchPath::default(), BTreeMap::new()).unwrap();
    let i = container_info(&opts, &ctx);
    assert!(i.container_env.is_empty());
    assert_eq!(
        (i.container_id.as_str(), i.container_name.as_str()),
        ("c9", "/web")
    );
    assert_eq!(i.container_image_name, "img");
    assert_eq!(i.log_path, "");
    assert_eq!(i.daemon_name, "scribe");
    for key in ["env", "env-regex"] {
        opts.config = BTreeMap::from([(key.to_string(), "A".to_string())]);
        let i = container_info(&opts, &ctx);
        assert_eq!(i.container_env, ["SECRET=1", "A=2"], "{key}");
        assert_eq!(i.config, opts.config);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_readlogs_plugin_reads_back_and_leaves_its_descriptor() {
    use crate::plugin::readback::{Descriptor, FILE};
    let s = setup();
    let root = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Seen {
        read_logs: true,
        ..Seen::default()
    }));
    let fake = Fake::start(&s.plugins.join("rl.sock"), seen.clone(), None);
    let d = open_in(&s, "rl", "c1", Mode::Blocking, root.path());
    assert!(d.reads_back());
    let raw = std::fs::read(root.path().join("ns/c1").join(FILE)).unwrap();
    let (desc, addr) = Descriptor::parse(&raw).unwrap();
    assert_eq!(desc.plugin, "rl");
    assert_eq!(addr, PluginAddr::Unix(s.plugins.join("rl.sock")));
    assert_eq!(desc.info.container_id, "c1");
    assert_eq!(desc.info.container_name, "/web");
    log_lines(&d, 0, 10).await;
    close(d).await;
    // The logs are the plugin's: the descriptor stays for readers after the container.
    assert!(root.path().join("ns/c1").join(FILE).exists());
    let calls = seen.lock().unwrap().calls.clone();
    assert_eq!(
        calls.iter().filter(|c| *c == "/Plugin.Activate").count(),
        1,
        "{calls:?}"
    );
    fake.kill();

    // Without ReadLogs: the cache is kept, no descriptor.
    let seen = Arc::new(Mutex::new(Seen::default()));
    let fake = Fake::start(&s.plugins.join("nr.sock"), seen, None);
    let d = open_in(&s, "nr", "c2", Mode::Blocking, root.path());
    assert!(!d.reads_back());
    assert!(!root.path().join("ns/c2").join(FILE).exists());
    close(d).await;
    fake.kill();
}
