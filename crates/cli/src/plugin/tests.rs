//! The server against requests as dockerd sends them, a real FIFO and a socket pair.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;

use scribe_io::localfmt::{EntryRef, PartialMeta};
use scribe_io::plugin::frame::{decode_frame, encode_frame};

use super::opts::{Driver, PluginArgs};
use super::*;

fn server(root: &Path, driver: Driver) -> Server {
    Server::new(PluginArgs {
        socket: root.join("unused.sock"),
        log_root: root.join("logs"),
        namespace: "docker".into(),
        driver,
        log_opts: BTreeMap::new(),
    })
    .unwrap()
}

fn post(path: &str, body: &str) -> Request {
    Request {
        method: "POST".into(),
        path: path.into(),
        body: body.as_bytes().to_vec(),
        close: false,
    }
}

fn json(reply: Reply) -> (u16, serde_json::Value) {
    match reply {
        Reply::Json(status, body) => (status, serde_json::from_slice(&body).unwrap()),
        Reply::Stream(_) => panic!("a stream"),
    }
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

/// Opens the FIFO as dockerd does (write side, after the plugin opened it).
fn writer(path: &Path) -> std::fs::File {
    std::fs::OpenOptions::new().write(true).open(path).unwrap()
}

fn frame(source: &str, nanos: i64, line: &[u8], partial: Option<(&str, i32, bool)>) -> Vec<u8> {
    let mut out = Vec::new();
    encode_frame(
        &EntryRef {
            source,
            time_nano: nanos,
            line,
            partial: partial.is_some(),
            partial_meta: partial.map(|(id, ordinal, last)| PartialMeta { last, id, ordinal }),
        },
        &mut out,
    );
    out
}

fn start_body(fifo: &Path, id: &str, config: &str) -> String {
    format!(
        r#"{{"File":"{}","Info":{{"ContainerID":"{id}","ContainerName":"/web","ContainerImageName":"busybox","ContainerEntrypoint":"sh","ContainerArgs":["-c","echo hi"],"Config":{config},"DaemonName":"docker"}}}}"#,
        fifo.display()
    )
}

#[test]
fn activate_and_capabilities() {
    let d = tempfile::tempdir().unwrap();
    let s = server(d.path(), Driver::JsonFile);
    let (st, v) = json(s.handle(&post("/Plugin.Activate", "")));
    assert_eq!(st, 200);
    assert_eq!(v, serde_json::json!({"Implements": ["LogDriver"]}));
    let (st, v) = json(s.handle(&post("/LogDriver.Capabilities", "null")));
    assert_eq!(st, 200);
    assert_eq!(v, serde_json::json!({"Cap": {"ReadLogs": true}, "Err": ""}));
}

#[test]
fn bad_requests_get_an_err() {
    let d = tempfile::tempdir().unwrap();
    let s = server(d.path(), Driver::JsonFile);
    let (st, v) = json(s.handle(&post("/LogDriver.Nope", "{}")));
    assert_eq!(st, 404);
    assert!(v["Err"].as_str().unwrap().contains("no such method"));
    let (st, v) = json(s.handle(&post("/LogDriver.StartLogging", "{not json")));
    assert_eq!(st, 400);
    assert!(v["Err"].as_str().unwrap().contains("bad JSON"));
    let mut get = post("/Plugin.Activate", "");
    get.method = "GET".into();
    assert_eq!(json(s.handle(&get)).0, 405);
    let (st, v) = json(s.handle(&post(
        "/LogDriver.StopLogging",
        r#"{"File":"/run/docker/logging/unknown"}"#,
    )));
    assert_eq!(st, 500);
    assert!(v["Err"].as_str().unwrap().contains("not logging"));
    for hostile in ["../x", "..", "a/../../etc", "", ".x"] {
        let fifo = d.path().join("f");
        let (st, v) = json(s.handle(&post(
            "/LogDriver.StartLogging",
            &start_body(&fifo, hostile, "{}"),
        )));
        assert_eq!(st, 500, "{hostile:?}");
        assert!(
            v["Err"].as_str().unwrap().contains("refusing container id"),
            "{v}"
        );
        let rl = format!(r#"{{"Info":{{"ContainerID":"{hostile}"}},"Config":{{}}}}"#);
        assert_eq!(json(s.handle(&post("/LogDriver.ReadLogs", &rl))).0, 400);
    }
    // Nothing was created outside the log root.
    assert!(!d.path().join("x").exists());
    // A regular file is no FIFO: refused.
    let plain = d.path().join("plain");
    std::fs::write(&plain, "secret").unwrap();
    let (st, v) = json(s.handle(&post(
        "/LogDriver.StartLogging",
        &start_body(&plain, "c1", "{}"),
    )));
    assert_eq!(st, 500);
    assert!(v["Err"].as_str().unwrap().contains("not a FIFO"), "{v}");
    // An unknown log option is refused, as json-file refuses it.
    let fifo = d.path().join("f2");
    mkfifo(&fifo);
    let (st, v) = json(s.handle(&post(
        "/LogDriver.StartLogging",
        &start_body(&fifo, "c2", r#"{"bogus":"1"}"#),
    )));
    assert_eq!(st, 500);
    assert!(v["Err"].as_str().unwrap().contains("bogus"), "{v}");
}

#[test]
fn fifo_to_json_file_and_records_and_read_back() {
    let d = tempfile::tempdir().unwrap();
    let s = server(d.path(), Driver::JsonFile);
    let fifo = d.path().join("fifo1");
    mkfifo(&fifo);
    let (st, v) = json(s.handle(&post(
        "/LogDriver.StartLogging",
        &start_body(&fifo, "c1", "{}"),
    )));
    assert_eq!((st, v["Err"].as_str()), (200, Some("")));
    let mut w = writer(&fifo);
    let t0 = 1_700_000_000_000_000_000i64;
    let mut data = frame("stdout", t0, b"one", None);
    data.extend(frame("stderr", t0 + 1, b"two", None));
    data.extend(frame("stdout", t0 + 2, b"abc", Some(("p1", 1, false))));
    data.extend(frame("stdout", t0 + 2, b"def", Some(("p1", 2, true))));
    // Written in two halves, the second cutting a frame: the reader waits for the rest.
    let cut = data.len() - 3;
    w.write_all(&data[..cut]).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(50));
    w.write_all(&data[cut..]).unwrap();
    assert!(s.is_logging("c1"));
    let (st, _) = json(s.handle(&post(
        "/LogDriver.StopLogging",
        &format!(r#"{{"File":"{}"}}"#, fifo.display()),
    )));
    assert_eq!(st, 200);
    assert!(!s.is_logging("c1"));
    drop(w);
    let log = std::fs::read_to_string(d.path().join("logs/docker/c1/c1-json.log")).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let logs: Vec<&str> = lines.iter().map(|v| v["log"].as_str().unwrap()).collect();
    assert_eq!(logs, ["one\n", "two\n", "abc", "def\n"]);
    assert_eq!(lines[1]["stream"], "stderr");
    assert_eq!(lines[0]["time"], "2023-11-14T22:13:20.000000000Z");
    let recs = std::fs::read_to_string(d.path().join("logs/docker/c1/container.log")).unwrap();
    let recs: Vec<serde_json::Value> = recs
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0]["event"], "start");
    assert_eq!(recs[0]["image"], "busybox");
    assert_eq!(
        recs[0]["command"],
        serde_json::json!(["sh", "-c", "echo hi"])
    );
    assert_eq!(recs[1]["event"], "exit");
    assert_eq!(recs[1]["status"], "stopped");
    for r in &recs {
        scribe_events::validate_container_record(r).unwrap();
    }

    // ReadLogs --tail 2 over a socket pair, as dockerd asks it.
    let (a, mut b) = UnixStream::pair().unwrap();
    let req: ReadLogsRequest = serde_json::from_str(
        r#"{"Info":{"ContainerID":"c1"},"Config":{"Since":"0001-01-01T00:00:00Z","Until":"0001-01-01T00:00:00Z","Tail":2,"Follow":false}}"#,
    )
    .unwrap();
    let t = std::thread::spawn(move || {
        let mut resp = Vec::new();
        b.read_to_end(&mut resp).unwrap();
        resp
    });
    assert!(s.read_logs(&req, &a).unwrap());
    drop(a);
    let resp = t.join().unwrap();
    let text = String::from_utf8_lossy(&resp);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(text.contains("Content-Type: application/vnd.docker.plugins.v1.2+json"));
    let body = dechunk(&resp[text.find("\r\n\r\n").unwrap() + 4..]);
    let mut got = Vec::new();
    let mut pos = 0;
    while let Some((e, used)) = decode_frame(&body[pos..]).unwrap() {
        got.push((
            e.source.to_string(),
            String::from_utf8_lossy(e.line).into_owned(),
        ));
        pos += used;
    }
    assert_eq!(pos, body.len());
    // As dockerd's json-file reader gives them: the last two entries, pieces apart.
    assert_eq!(
        got,
        [
            ("stdout".to_string(), "abc".to_string()),
            ("stdout".to_string(), "def\n".to_string())
        ]
    );
}

#[test]
fn oversize_frame_is_refused_and_the_rest_discarded() {
    let d = tempfile::tempdir().unwrap();
    let s = server(d.path(), Driver::JsonFile);
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    assert_eq!(
        json(s.handle(&post(
            "/LogDriver.StartLogging",
            &start_body(&fifo, "c3", "{}")
        )))
        .0,
        200
    );
    let mut w = writer(&fifo);
    let mut data = frame("stdout", 1, b"kept", None);
    data.extend_from_slice(&u32::MAX.to_be_bytes());
    data.extend(frame("stdout", 2, b"after", None));
    w.write_all(&data).unwrap();
    let (st, _) = json(s.handle(&post(
        "/LogDriver.StopLogging",
        &format!(r#"{{"File":"{}"}}"#, fifo.display()),
    )));
    assert_eq!(st, 200);
    let log = std::fs::read_to_string(d.path().join("logs/docker/c3/c3-json.log")).unwrap();
    assert_eq!(log.lines().count(), 1, "{log}");
    assert!(log.contains("\"kept\\n\""));
    let recs = std::fs::read_to_string(d.path().join("logs/docker/c3/container.log")).unwrap();
    assert!(recs.contains("1 undecodable"), "{recs}");
}

#[test]
fn local_driver_keeps_split_lines() {
    let d = tempfile::tempdir().unwrap();
    let s = server(d.path(), Driver::Local);
    let fifo = d.path().join("fifo");
    mkfifo(&fifo);
    assert_eq!(
        json(s.handle(&post(
            "/LogDriver.StartLogging",
            &start_body(&fifo, "c4", "{}")
        )))
        .0,
        200
    );
    let mut w = writer(&fifo);
    let mut data = frame("stdout", 5, b"ab", Some(("x", 1, false)));
    data.extend(frame("stdout", 5, b"cd", Some(("x", 2, true))));
    data.extend(frame("stderr", 6, b"whole", None));
    w.write_all(&data).unwrap();
    assert_eq!(
        json(s.handle(&post(
            "/LogDriver.StopLogging",
            &format!(r#"{{"File":"{}"}}"#, fifo.display()),
        )))
        .0,
        200
    );
    // The files hold Docker's `local` records: the pieces keep one id, their ordinals and
    // the last flag.
    let bytes = std::fs::read(d.path().join("logs/docker/c4/local-logs/container.log")).unwrap();
    let entries: Vec<_> = scribe_io::localfmt::ForwardReader::new(&bytes[..])
        .map(|e| e.unwrap())
        .collect();
    assert_eq!(entries.len(), 3);
    let (a, b, c) = (&entries[0], &entries[1], &entries[2]);
    assert_eq!(
        (a.line.as_slice(), a.source.as_str()),
        (&b"ab"[..], "stdout")
    );
    assert_eq!(b.line, b"cd");
    let (ma, mb) = (
        a.partial_meta.as_ref().unwrap(),
        b.partial_meta.as_ref().unwrap(),
    );
    assert!(a.partial && b.partial);
    assert_eq!((ma.ordinal, ma.last), (1, false));
    assert_eq!((mb.ordinal, mb.last), (2, true));
    assert_eq!(ma.id, mb.id);
    assert_eq!(a.time_nano, 5);
    assert_eq!(
        (c.line.as_slice(), c.source.as_str()),
        (&b"whole"[..], "stderr")
    );
    assert!(!c.partial && c.partial_meta.is_none());
}

/// The body of a chunked response.
fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let nl = b.windows(2).position(|w| w == b"\r\n").unwrap();
        let n = usize::from_str_radix(std::str::from_utf8(&b[..nl]).unwrap(), 16).unwrap();
        b = &b[nl + 2..];
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[..n]);
        b = &b[n + 2..];
    }
}

#[test]
fn shutdown_finishes_every_session() {
    // SIGTERM's path: each FIFO is read to its end, its log written and its records closed.
    let d = tempfile::tempdir().unwrap();
    let s = server(d.path(), Driver::JsonFile);
    let mut writers = Vec::new();
    for id in ["s1", "s2"] {
        let fifo = d.path().join(format!("fifo-{id}"));
        mkfifo(&fifo);
        assert_eq!(
            json(s.handle(&post(
                "/LogDriver.StartLogging",
                &start_body(&fifo, id, "{}")
            )))
            .0,
            200
        );
        let mut w = writer(&fifo);
        let mut data = Vec::new();
        for i in 0..1000 {
            data.extend(frame("stdout", i, format!("{id} {i}").as_bytes(), None));
        }
        w.write_all(&data).unwrap();
        writers.push(w);
    }
    s.shutdown();
    assert!(!s.is_logging("s1") && !s.is_logging("s2"));
    for id in ["s1", "s2"] {
        let log = std::fs::read_to_string(d.path().join(format!("logs/docker/{id}/{id}-json.log")))
            .unwrap();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1000, "{id}");
        assert!(
            lines[999].contains(&format!("\"{id} 999\\n\"")),
            "{}",
            lines[999]
        );
        let recs =
            std::fs::read_to_string(d.path().join(format!("logs/docker/{id}/container.log")))
                .unwrap();
        assert_eq!(recs.lines().count(), 2, "{recs}");
    }
    // After shutdown no new session starts.
    let fifo = d.path().join("late");
    mkfifo(&fifo);
    let (st, v) = json(s.handle(&post(
        "/LogDriver.StartLogging",
        &start_body(&fifo, "late", "{}"),
    )));
    assert_eq!(st, 500);
    assert!(v["Err"].as_str().unwrap().contains("shutting down"));
}
