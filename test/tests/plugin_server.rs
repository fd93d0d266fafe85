//! Issue 12, the plugin side: a real dockerd 20.10 logs through `scribe plugin` (a legacy
//! plugin: a socket in /run/docker/plugins), and what `docker logs` prints through ReadLogs is
//! what dockerd's own json-file driver gives for the same program.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use scribe_e2e::cmd::Spawned;
use scribe_e2e::dockerd::{Dockerd, DOCKER, DOCKER_IMAGE};
use scribe_e2e::procs;
use scribe_e2e::scribe_cli::{scribe_bin, ScribePlugin};

/// `scribe plugin` as a legacy plugin of dockerd: its socket in /run/docker/plugins under a
/// unique name.
struct Plugin {
    name: String,
    served: ScribePlugin,
}

impl Plugin {
    fn start() -> Plugin {
        let name = scribe_e2e::unique_id("scribe-e2e");
        let socket = PathBuf::from(format!("/run/docker/plugins/{name}.sock"));
        let root = PathBuf::from(format!("/tmp/{name}-logs"));
        let _ = std::fs::remove_dir_all(&root);
        Plugin {
            name,
            served: ScribePlugin::start(socket, root),
        }
    }

    /// The container's directory under the plugin's log root.
    fn dir(&self, id: &str) -> PathBuf {
        self.served.log_dir(id)
    }
}

/// The docker CLI against `d`, spawned (for `docker logs -f`).
fn spawn_docker(d: &Dockerd, args: &[&str]) -> Spawned {
    let dir = d.data_root().parent().expect("dockerd dir").to_path_buf();
    let mut c = Command::new(DOCKER);
    c.env("DOCKER_CONFIG", dir.join("cli"))
        .arg("-H")
        .arg(format!("unix://{}", dir.join("docker.sock").display()))
        .args(args);
    Spawned::spawn(c)
}

fn id_of(d: &Dockerd, name: &str) -> String {
    let o = d.docker(&["inspect", "-f", "{{.Id}}", name]);
    o.assert_success();
    o.stdout.trim().to_string()
}

/// The program: numbered lines on both streams, a pause, a marker, more lines, a 100 KiB line
/// and output that ends without a newline. The pauses around the marker keep every other line's
/// time clear of its (dockerd stamps each read of each stream: a stream read at once may carry
/// an earlier time than a line of the other written before it).
const PROGRAM: &str = "for i in $(seq 1 30); do echo \"out $i\"; echo \"err $i\" >&2; done; \
     sleep 2; echo MARK; sleep 1; for i in $(seq 31 60); do echo \"out $i\"; echo \"err $i\" >&2; done; \
     head -c 102400 /dev/zero | tr '\\0' x; echo; printf 'no newline' >&2";

fn expected() -> (String, String) {
    let mut out: String = (1..=30).map(|i| format!("out {i}\n")).collect();
    let mut err: String = (1..=30).map(|i| format!("err {i}\n")).collect();
    out.push_str("MARK\n");
    out.extend((31..=60).map(|i| format!("out {i}\n")));
    err.extend((31..=60).map(|i| format!("err {i}\n")));
    out.push_str(&"x".repeat(102400));
    out.push('\n');
    err.push_str("no newline");
    (out, err)
}

#[track_caller]
fn same(got: &str, want: &str, what: &str) {
    if got != want {
        let at = got
            .bytes()
            .zip(want.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        let show = |s: &str| {
            let lo = at.saturating_sub(60);
            let hi = (at + 60).min(s.len());
            s.get(lo..hi).unwrap_or("<not utf-8 here>").to_string()
        };
        panic!(
            "{what}: differs at byte {at} (got {} bytes, want {}):\n got: {:?}\nwant: {:?}",
            got.len(),
            want.len(),
            show(got),
            show(want)
        );
    }
}

/// The time `docker logs -t` shows for the line `MARK`.
fn marker_time(d: &Dockerd, name: &str) -> String {
    let o = d.docker(&["logs", "-t", name]);
    o.assert_success();
    o.stdout
        .lines()
        .find_map(|l| l.strip_suffix(" MARK"))
        .unwrap_or_else(|| panic!("no MARK in docker logs -t {name}: {o}"))
        .to_string()
}

/// (stream, log) of every entry of a json-file, in file order.
fn json_pieces(path: &Path) -> Vec<(String, String)> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}"));
            (
                v["stream"].as_str().expect("stream").to_string(),
                v["log"].as_str().expect("log").to_string(),
            )
        })
        .collect()
}

fn records(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("container.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("record is JSON"))
        .collect()
}

#[test]
fn plugin_server_docker_logs_match_dockerds_json_file() {
    let d = Dockerd::start();
    d.import_busybox();
    let mut plugin = Plugin::start();
    let (want_out, want_err) = expected();

    // The same program through dockerd's json-file ("ref") and through Scribe ("scr").
    for (name, driver) in [("ref", "json-file"), ("scr", plugin.name.as_str())] {
        let o = d.docker(&[
            "run",
            "--name",
            name,
            "--network",
            "none",
            "--log-driver",
            driver,
            DOCKER_IMAGE,
            "sh",
            "-c",
            PROGRAM,
        ]);
        assert_eq!(o.code, Some(0), "docker run --log-driver {driver}: {o}");
        same(
            &o.stdout,
            &want_out,
            &format!("docker run --log-driver {driver} stdout"),
        );
        same(
            &o.stderr,
            &want_err,
            &format!("docker run --log-driver {driver} stderr"),
        );
    }
    let ref_id = id_of(&d, "ref");
    let scr_id = id_of(&d, "scr");

    // docker logs: all, --tail 5, --since the marker.
    let logs = |args: &[&str]| {
        let o = d.docker(args);
        o.assert_success();
        o
    };
    let r = logs(&["logs", "ref"]);
    let s = logs(&["logs", "scr"]);
    same(&r.stdout, &want_out, "docker logs (json-file) stdout");
    same(&r.stderr, &want_err, "docker logs (json-file) stderr");
    same(&s.stdout, &r.stdout, "docker logs (scribe plugin) stdout");
    same(&s.stderr, &r.stderr, "docker logs (scribe plugin) stderr");
    // --tail 5: the last five entries of each container's own json-file. The two runs need
    // not end alike: how the last stderr lines interleave with the 100 KiB line's pieces
    // depends on when dockerd read each pipe (seen in CI: one stderr entry more or less among
    // the last five).
    let ref_file = d.container_dir(&ref_id).join(format!("{ref_id}-json.log"));
    let scr_file = plugin.dir(&scr_id).join(format!("{scr_id}-json.log"));
    let tail5 = |path: &Path| {
        let all = json_pieces(path);
        let last = &all[all.len().saturating_sub(5)..];
        let of = |stream: &str| -> String {
            last.iter()
                .filter(|(s, _)| s == stream)
                .map(|(_, l)| l.as_str())
                .collect()
        };
        (of("stdout"), of("stderr"))
    };
    for (name, file) in [("ref", &ref_file), ("scr", &scr_file)] {
        let o = logs(&["logs", "--tail", "5", name]);
        let (out, err) = tail5(file);
        assert!(!out.is_empty() || !err.is_empty(), "{o}");
        same(
            &o.stdout,
            &out,
            &format!("docker logs --tail 5 {name} stdout"),
        );
        same(
            &o.stderr,
            &err,
            &format!("docker logs --tail 5 {name} stderr"),
        );
    }
    let (rm, sm) = (marker_time(&d, "ref"), marker_time(&d, "scr"));
    let r = logs(&["logs", "--since", &rm, "ref"]);
    let s = logs(&["logs", "--since", &sm, "scr"]);
    assert!(r.stdout.starts_with("MARK\nout 31\n"), "{r}");
    same(&s.stdout, &r.stdout, "docker logs --since stdout");
    same(&s.stderr, &r.stderr, "docker logs --since stderr");

    // The 100 KiB line: Scribe's json-file holds the same pieces as dockerd's (16 KiB pieces
    // without newline, the last with it), entry for entry.
    let (rp, sp) = (json_pieces(&ref_file), json_pieces(&scr_file));
    let pieces = |v: &[(String, String)]| {
        v.iter()
            .filter(|(_, l)| l.starts_with("xxxx"))
            .map(|(_, l)| l.len())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        pieces(&rp),
        [16384, 16384, 16384, 16384, 16384, 16384, 4097]
    );
    for stream in ["stdout", "stderr"] {
        let f = |v: &[(String, String)]| {
            v.iter()
                .filter(|(s, _)| s == stream)
                .map(|(_, l)| l.clone())
                .collect::<Vec<_>>()
        };
        assert!(
            f(&sp) == f(&rp),
            "{stream} entries of Scribe's json-file differ from dockerd's"
        );
    }

    // scribe logs on the node reads the same lines.
    let o = Command::new(scribe_bin())
        .args(["logs", "-n", "docker", "--log-root"])
        .arg(&plugin.served.root)
        .arg(&scr_id)
        .output()
        .expect("run scribe logs");
    assert!(o.status.success(), "{o:?}");
    same(
        &String::from_utf8_lossy(&o.stdout),
        &want_out,
        "scribe logs stdout",
    );
    same(
        &String::from_utf8_lossy(&o.stderr),
        &want_err,
        "scribe logs stderr",
    );

    // Container records: a start, then an exit at StopLogging; valid records.
    let recs = records(&plugin.dir(&scr_id));
    let events: Vec<&str> = recs.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["start", "exit"], "{recs:?}");
    assert_eq!(recs[0]["image"], DOCKER_IMAGE);
    assert_eq!(recs[0]["container_id"], scr_id.as_str());
    for r in &recs {
        scribe_events::validate_container_record(r).unwrap_or_else(|e| panic!("{e}: {r}"));
    }

    // --follow, started before the container writes, ends when it stops.
    let mut follows = Vec::new();
    for (name, driver) in [("fref", "json-file"), ("fscr", plugin.name.as_str())] {
        let o = d.docker(&[
            "create",
            "--name",
            name,
            "--network",
            "none",
            "--log-driver",
            driver,
            DOCKER_IMAGE,
            "sh",
            "-c",
            &format!("sleep 2; {PROGRAM}"),
        ]);
        o.assert_success();
        d.docker(&["start", name]).assert_success();
        follows.push((driver.to_string(), spawn_docker(&d, &["logs", "-f", name])));
    }
    let mut outs = Vec::new();
    for (driver, f) in follows {
        let t = Instant::now();
        let o = f.wait_timeout(Duration::from_secs(60));
        assert!(o.success(), "docker logs -f ({driver}): {o}");
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "follow took {:?}",
            t.elapsed()
        );
        outs.push(o);
    }
    same(
        &outs[0].stdout,
        &want_out,
        "docker logs -f (json-file) stdout",
    );
    same(
        &outs[1].stdout,
        &outs[0].stdout,
        "docker logs -f (scribe plugin) stdout",
    );
    // dockerd's own json-file follower may stop before the last piece of output that ended
    // without a newline (seen once in three runs: `no newline` missing); Scribe's ends only
    // after StopLogging, when everything is written, so it has every line.
    assert!(
        want_err.starts_with(&outs[0].stderr) && outs[0].stderr.len() + 10 >= want_err.len(),
        "docker logs -f (json-file) stderr: {:?}",
        outs[0].stderr
    );
    same(
        &outs[1].stderr,
        &want_err,
        "docker logs -f (scribe plugin) stderr",
    );

    // `docker logs` of a stopped container makes dockerd start and stop a logger around the
    // read: no extra start/exit records for it.
    assert_eq!(records(&plugin.dir(&scr_id)).len(), 2);

    for n in ["ref", "scr", "fref", "fscr"] {
        d.docker(&["rm", "-f", n]).assert_success();
    }
    let o = plugin.served.stop();
    assert_eq!(o.code, Some(0), "{o}");
    assert!(
        !plugin.served.socket.exists(),
        "the socket is removed at exit"
    );
}

#[test]
fn plugin_server_twenty_containers_every_line_in_order() {
    const N: usize = 20;
    const LINES: usize = 2000;
    let d = Dockerd::start();
    d.import_busybox();
    let plugin = Plugin::start();
    let names: Vec<String> = (0..N).map(|i| format!("many{i}")).collect();
    for n in &names {
        let o = d.docker(&[
            "run",
            "-d",
            "--name",
            n,
            "--network",
            "none",
            "--log-driver",
            &plugin.name,
            DOCKER_IMAGE,
            "sh",
            "-c",
            &format!("for i in $(seq 1 {LINES}); do echo \"{n} line $i\"; done"),
        ]);
        o.assert_success();
    }
    for n in &names {
        let o = d.docker(&["wait", n]);
        o.assert_success();
        assert_eq!(o.stdout.trim(), "0", "{n}: {o}");
    }
    for n in &names {
        let id = id_of(&d, n);
        let file = plugin.dir(&id).join(format!("{id}-json.log"));
        let want: Vec<String> = (1..=LINES).map(|i| format!("{n} line {i}\n")).collect();
        // StopLogging returned after the FIFO was read: the file is complete once the
        // container stopped (a short grace for dockerd's copier).
        procs::wait_until(Duration::from_secs(10), || {
            std::fs::read_to_string(&file).is_ok_and(|t| t.lines().count() >= LINES)
        });
        let got: Vec<String> = json_pieces(&file).into_iter().map(|(_, l)| l).collect();
        assert!(
            got == want,
            "{n}: {} lines, not the {LINES} in order",
            got.len()
        );
        let o = d.docker(&["logs", "--tail", "3", n]);
        o.assert_success();
        assert_eq!(
            o.stdout,
            want[LINES - 3..].concat(),
            "{n}: docker logs --tail 3"
        );
        let recs = records(&plugin.dir(&id));
        let events: Vec<&str> = recs.iter().map(|r| r["event"].as_str().unwrap()).collect();
        assert_eq!(events, ["start", "exit"], "{n}");
    }
    for n in &names {
        d.docker(&["rm", "-f", n]).assert_success();
    }
}
