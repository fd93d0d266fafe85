//! A minimal Docker logging plugin for the relay benchmark's plugin row, served from threads of
//! scribe-bench itself (as the fluentd row's receiver is): it answers Activate, Capabilities,
//! StartLogging and StopLogging on a unix socket, and for every StartLogging reads the FIFO,
//! counting `[u32 BE size][LogEntry]` frames and discarding them. The row then times the
//! shim's side of the protocol, not a real plugin's processing.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};

/// The plugin's name (the options TOML allows it and searches [`plugin_dir`]).
pub const NAME: &str = "scribebench";

/// The directory `PluginDirs` names.
pub fn plugin_dir(work: &Path) -> PathBuf {
    work.join("plugins")
}

/// The running plugin; stops (and removes its socket) when dropped.
pub struct DiscardPlugin {
    frames: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    sock: PathBuf,
}

impl DiscardPlugin {
    /// Serves `<dir>/scribebench.sock`.
    pub fn start(dir: &Path) -> Result<DiscardPlugin> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let sock = dir.join(format!("{NAME}.sock"));
        let _ = std::fs::remove_file(&sock);
        let l = UnixListener::bind(&sock).with_context(|| format!("binding {}", sock.display()))?;
        l.set_nonblocking(true)?;
        let frames = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (frames.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        let f = f.clone();
                        std::thread::spawn(move || serve(c, f));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(DiscardPlugin { frames, stop, sock })
    }

    /// Frames read from every FIFO so far.
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
}

impl Drop for DiscardPlugin {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.sock);
    }
}

/// One HTTP request per connection (the shim sends `Connection: close`); a connection that
/// sends nothing (the shim's watch) just stays open until the shim closes it.
fn serve(mut c: UnixStream, frames: Arc<AtomicU64>) {
    let _ = c.set_nonblocking(false);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let (head_end, len) = loop {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            break (p + 4, len);
        }
    };
    while buf.len() < head_end + len {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let path = String::from_utf8_lossy(&buf[..head_end])
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .to_string();
    let body: serde_json::Value =
        serde_json::from_slice(&buf[head_end..head_end + len]).unwrap_or_default();
    let reply = match path.as_str() {
        "/Plugin.Activate" => r#"{"Implements":["LogDriver"]}"#,
        "/LogDriver.Capabilities" => r#"{"Cap":{"ReadLogs":false},"Err":""}"#,
        "/LogDriver.StartLogging" => {
            if let Some(file) = body["File"].as_str() {
                let file = file.to_string();
                std::thread::spawn(move || discard(&file, frames));
            }
            r#"{"Err":""}"#
        }
        // The shim waits for the FIFO to be read empty before StopLogging; the reader ends
        // when the shim closes its end.
        _ => r#"{"Err":""}"#,
    };
    let _ = c.write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.docker.plugins.v1.2+json\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        )
        .as_bytes(),
    );
}

/// Reads the FIFO until every writer is gone, counting whole frames.
fn discard(file: &str, frames: Arc<AtomicU64>) {
    let Ok(mut f) = std::fs::File::open(file) else {
        return;
    };
    let mut buf = vec![0u8; 1 << 20];
    let (mut have, mut skip) = (0usize, 0usize);
    loop {
        let n = match f.read(&mut buf[have..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        have += n;
        let mut at = 0;
        let mut counted = 0;
        loop {
            if skip > 0 {
                let s = skip.min(have - at);
                at += s;
                skip -= s;
                if skip > 0 {
                    break;
                }
                counted += 1;
            }
            if have - at < 4 {
                break;
            }
            let size = u32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
            at += 4;
            skip = size as usize;
            if skip == 0 {
                counted += 1;
            }
        }
        frames.fetch_add(counted, Ordering::Relaxed);
        buf.copy_within(at..have, 0);
        have -= at;
    }
}
