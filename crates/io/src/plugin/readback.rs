//! Reading a container's logs back from a plugin that serves `/LogDriver.ReadLogs`.
//!
//! When a plugin's Capabilities say `ReadLogs`, the shim keeps no dual-logging cache (the logs
//! are the plugin's, as dockerd does) and leaves [`FILE`] in the container's log directory: the
//! plugin's name, its address and the StartLogging `Info` ([`Descriptor`]). `scribe logs` reads
//! it ([`Descriptor::parse`], which trusts nothing in it) and asks the plugin with
//! [`read_logs`]. The file stays after the container is deleted, as a json-file log does, so
//! its logs can still be read; retention removes the directory with it.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use super::client::{self, CallError, CallErrorKind};
use super::discovery::{validate_name, PluginAddr};
use super::frame::decode_frame;
use super::proto::{Info, ReadConfig, ReadLogsRequest, GO_ZERO_TIME, READ_LOGS};
use crate::reader::{Entry, Sink};
use crate::stream::Stream;

/// The descriptor's name in `<LogRoot>/<ns>/<id>/`.
pub const FILE: &str = "plugin-readlogs.json";

/// The largest descriptor read (an `Info` with labels and environment is a few KiB).
pub const MAX_FILE: usize = 1 << 20;

/// How long connecting to the plugin for ReadLogs may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What a reader needs to ask the plugin for a container's logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Descriptor {
    /// The plugin's name (`--log-driver`).
    pub plugin: String,
    /// `unix:///absolute/path.sock` or `tcp://host:port`, as the shim found it.
    pub address: String,
    /// The `Info` given to StartLogging (the plugin finds the container's logs by it).
    pub info: Info,
}

impl Descriptor {
    /// The descriptor of `info` logged through plugin `name` at `addr`.
    pub fn new(name: &str, addr: &PluginAddr, info: &Info) -> Descriptor {
        Descriptor {
            plugin: name.to_owned(),
            address: addr.to_string(),
            info: info.clone(),
        }
    }

    /// Parses a descriptor read from a directory a container's owner may write: the plugin
    /// name must be a valid one, the address a `unix://` absolute path without `..` or a
    /// `tcp://host:port`, and the container id not empty. Returns it and the address.
    pub fn parse(raw: &[u8]) -> Result<(Descriptor, PluginAddr), String> {
        if raw.len() > MAX_FILE {
            return Err(format!("{} bytes is too large", raw.len()));
        }
        let d: Descriptor = serde_json::from_slice(raw).map_err(|e| format!("not JSON: {e}"))?;
        validate_name(&d.plugin)?;
        let addr = parse_addr(&d.address)?;
        if d.info.container_id.is_empty() {
            return Err("Info.ContainerID is empty".into());
        }
        Ok((d, addr))
    }
}

/// Parses a descriptor's address (see [`Descriptor::parse`]).
fn parse_addr(a: &str) -> Result<PluginAddr, String> {
    if a.contains('\0') {
        return Err("address holds a NUL byte".into());
    }
    if let Some(p) = a.strip_prefix("unix://") {
        let path = PathBuf::from(p);
        if !path.is_absolute() {
            return Err(format!("address {a:?}: the socket path is not absolute"));
        }
        if path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(format!("address {a:?}: the socket path holds \"..\""));
        }
        return Ok(PluginAddr::Unix(path));
    }
    if let Some(h) = a.strip_prefix("tcp://") {
        let ok = h
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            && !h.contains(['/', ' ', '@']);
        if !ok {
            return Err(format!("address {a:?}: not tcp://host:port"));
        }
        return Ok(PluginAddr::Tcp(h.to_owned()));
    }
    Err(format!(
        "address {a:?}: neither unix:///path nor tcp://host:port"
    ))
}

/// The `ReadConfig` of a read: times as RFC 3339 with nanoseconds ([`GO_ZERO_TIME`] when
/// unbounded), `Tail` -1 for all.
pub fn read_config(
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    tail: Option<usize>,
    follow: bool,
) -> ReadConfig {
    let time = |t: Option<SystemTime>| {
        t.map_or_else(|| GO_ZERO_TIME.to_owned(), crate::timefmt::rfc3339_nano)
    };
    ReadConfig {
        since: time(since),
        until: time(until),
        tail: tail.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        follow,
    }
}

/// Turns the frames of a ReadLogs body into lines: a frame marked partial (or whose partial
/// metadata says it is not the last) is a piece joined with the next ones of its stream; a
/// whole entry gets back the `\n` Docker's drivers strip, unless the plugin kept it.
#[derive(Default)]
pub struct FrameLines {
    buf: Vec<u8>,
    joiner: crate::reader::partial::Joiner,
    /// Only this stream.
    pub stream: Option<Stream>,
}

impl FrameLines {
    /// Feeds body bytes; every whole line goes to `sink`. A closed sink stops (`Ok(false)`).
    pub fn feed(&mut self, data: &[u8], sink: &mut dyn Sink) -> Result<bool, String> {
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        let mut open = true;
        while let Some((e, used)) =
            decode_frame(&self.buf[pos..]).map_err(|e| format!("bad frame in the reply: {e}"))?
        {
            pos += used;
            let stream = match e.source {
                "stdout" => Stream::Stdout,
                "stderr" => Stream::Stderr,
                other => {
                    sink.warn(&format!("skipping an entry of unknown source {other:?}"));
                    continue;
                }
            };
            if self.stream.is_some_and(|s| s != stream) {
                continue;
            }
            let piece = e.partial || e.partial_meta.as_ref().is_some_and(|m| !m.last);
            let mut line = e.line.to_vec();
            if !piece && !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            let n = u64::try_from(e.time_nano).unwrap_or(0);
            let entry = Entry {
                time: SystemTime::UNIX_EPOCH + Duration::from_nanos(n),
                stream,
                line,
            };
            if let Some(l) = self.joiner.push(entry) {
                if sink.line(&l).is_err() {
                    open = false;
                    break;
                }
            }
        }
        self.buf.drain(..pos);
        Ok(open)
    }

    /// The body ended: lines still waiting for their end go out.
    pub fn finish(&mut self, sink: &mut dyn Sink) {
        if !self.buf.is_empty() {
            sink.warn(&format!(
                "the reply ended inside a frame ({} bytes skipped)",
                self.buf.len()
            ));
            self.buf.clear();
        }
        for l in self.joiner.finish() {
            if sink.line(&l).is_err() {
                break;
            }
        }
    }
}

/// Asks the plugin of `d` at `addr` for the container's logs with `config` and prints them into
/// `sink` (only `stream` when given) as they come; with `Follow` until the plugin ends the
/// reply (it does when the container's logging stops). Runs its own current-thread runtime:
/// call it outside any. Errors name the plugin and its address.
pub fn read_logs(
    d: &Descriptor,
    addr: &PluginAddr,
    config: ReadConfig,
    stream: Option<Stream>,
    sink: &mut dyn Sink,
) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting a runtime: {e}"))?;
    let req = ReadLogsRequest {
        info: d.info.clone(),
        config,
    };
    let body = serde_json::to_vec(&req).map_err(|e| format!("encoding ReadLogs: {e}"))?;
    let mut lines = FrameLines {
        stream,
        ..FrameLines::default()
    };
    let mut failed = None;
    let r = rt.block_on(client::call_stream(
        addr,
        READ_LOGS,
        &body,
        CONNECT_TIMEOUT,
        &mut |data: &[u8]| match lines.feed(data, sink) {
            Ok(open) => {
                sink.flush();
                open
            }
            Err(e) => {
                failed = Some(e);
                false
            }
        },
    ));
    let name = &d.plugin;
    match r {
        Ok(()) => {}
        Err(CallError {
            kind: CallErrorKind::Connect(m),
            ..
        }) => {
            return Err(format!(
                "log plugin {name:?} is unreachable at {addr}: {m} (its logs of container {} are read through it)",
                d.info.container_id
            ))
        }
        Err(e) => return Err(format!("log plugin {name:?}: {e}")),
    }
    if let Some(e) = failed {
        return Err(format!("log plugin {name:?} at {addr}: {e}"));
    }
    lines.finish(sink);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::localfmt::{EntryRef, PartialMeta};
    use crate::plugin::frame::encode_frame;

    fn raw(plugin: &str, address: &str, id: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "Plugin": plugin, "Address": address, "Info": {"ContainerID": id}
        }))
        .unwrap()
    }

    #[test]
    fn descriptor_round_trip() {
        let info = Info {
            container_id: "c1".into(),
            container_name: "/web".into(),
            ..Info::default()
        };
        let addr = PluginAddr::Unix("/run/docker/plugins/p.sock".into());
        let d = Descriptor::new("p", &addr, &info);
        let (back, a) = Descriptor::parse(&serde_json::to_vec(&d).unwrap()).unwrap();
        assert_eq!((back, a), (d, addr));
        let (_, a) = Descriptor::parse(&raw("p", "tcp://127.0.0.1:9000", "c")).unwrap();
        assert_eq!(a, PluginAddr::Tcp("127.0.0.1:9000".into()));
    }

    #[test]
    fn hostile_descriptors_are_refused() {
        for (p, a, id, want) in [
            ("p", "unix://run/p.sock", "c", "not absolute"),
            ("p", "unix:///run/../etc/p.sock", "c", ".."),
            ("p", "/run/p.sock", "c", "neither"),
            ("p", "tcp://host", "c", "host:port"),
            ("p", "tcp://a:1/x", "c", "host:port"),
            ("p", "tcp://:80", "c", "host:port"),
            ("../x", "unix:///run/p.sock", "c", ""),
            ("p", "unix:///run/p.sock", "", "ContainerID"),
        ] {
            let e = Descriptor::parse(&raw(p, a, id)).unwrap_err();
            assert!(e.contains(want), "{p} {a} {id}: {e}");
        }
        assert!(Descriptor::parse(b"[1,2]")
            .unwrap_err()
            .contains("not JSON"));
        assert!(Descriptor::parse(b"{\"Plugin\":\"p\"}").is_err());
        assert!(Descriptor::parse(&vec![b' '; MAX_FILE + 1])
            .unwrap_err()
            .contains("too large"));
    }

    #[test]
    fn read_config_from_options() {
        let c = read_config(None, None, None, false);
        assert_eq!(c, ReadConfig::default());
        assert_eq!(c.since, "0001-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::new(1_711_015_200, 5);
        let c = read_config(Some(t), Some(t + Duration::from_secs(1)), Some(10), true);
        assert_eq!(c.since, "2024-03-21T10:00:00.000000005Z");
        assert_eq!(c.until, "2024-03-21T10:00:01.000000005Z");
        assert_eq!((c.tail, c.follow), (10, true));
        assert_eq!(read_config(None, None, Some(0), false).tail, 0);
    }

    struct Vecs(Vec<Entry>);
    impl Sink for Vecs {
        fn line(&mut self, e: &Entry) -> std::io::Result<()> {
            self.0.push(e.clone());
            Ok(())
        }
        fn warn(&mut self, _: &str) {}
    }

    #[test]
    fn frames_become_lines() {
        let mut body = Vec::new();
        let f =
            |src, t, line: &'static [u8], partial, meta: Option<PartialMeta<'static>>| EntryRef {
                source: src,
                time_nano: t,
                line,
                partial,
                partial_meta: meta,
            };
        encode_frame(&f("stdout", 1, b"a\n", false, None), &mut body);
        encode_frame(&f("stderr", 2, b"no newline", false, None), &mut body);
        let m = |last| PartialMeta {
            last,
            id: "x",
            ordinal: 1,
        };
        encode_frame(&f("stdout", 3, b"pie", true, Some(m(false))), &mut body);
        encode_frame(&f("stdout", 4, b"ce", false, Some(m(true))), &mut body);
        let mut sink = Vecs(Vec::new());
        let mut fl = FrameLines::default();
        // Byte by byte: frames cut anywhere.
        for b in &body {
            assert!(fl.feed(std::slice::from_ref(b), &mut sink).unwrap());
        }
        fl.finish(&mut sink);
        let got: Vec<(Stream, &[u8])> = sink.0.iter().map(|e| (e.stream, &e.line[..])).collect();
        assert_eq!(
            got,
            vec![
                (Stream::Stdout, &b"a\n"[..]),
                (Stream::Stderr, b"no newline\n"),
                (Stream::Stdout, b"piece\n"),
            ]
        );
        assert_eq!(
            sink.0[2].time,
            SystemTime::UNIX_EPOCH + Duration::from_nanos(3)
        );
        let mut only_err = FrameLines {
            stream: Some(Stream::Stderr),
            ..FrameLines::default()
        };
        let mut sink = Vecs(Vec::new());
        only_err.feed(&body, &mut sink).unwrap();
        assert_eq!(sink.0.len(), 1);
        let mut bad = FrameLines::default();
        assert!(bad.feed(&[0xff; 8], &mut Vecs(Vec::new())).is_err());
    }
}
