//! `scribe records`: a container's `container.log` records (and with `--runtime` its
//! `runtime.log`), filtered by time and event, the last N, or followed until the container is
//! deleted.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::SystemTime;

use scribe_io::reader::time::parse_rfc3339;
use scribe_safefs::SafeDir;

use crate::args::Args;
use crate::lifecycle::Lifecycle;

/// One records file being read.
struct Source {
    name: &'static str,
    file: File,
    offset: u64,
    carry: Vec<u8>,
}

impl Source {
    /// The whole lines appended since the last call.
    fn lines(&mut self) -> io::Result<Vec<Vec<u8>>> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = self.file.read_at(&mut buf, self.offset)?;
            if n == 0 {
                break;
            }
            self.offset += n as u64;
            self.carry.extend_from_slice(&buf[..n]);
        }
        let mut out = Vec::new();
        let mut used = 0;
        while let Some(nl) = self.carry[used..].iter().position(|&b| b == b'\n') {
            out.push(self.carry[used..used + nl].to_vec());
            used += nl + 1;
        }
        self.carry.drain(..used);
        Ok(out)
    }
}

/// A record that passed the filters, with its time for merging.
struct Rec {
    time: SystemTime,
    line: Vec<u8>,
}

/// The records the sources gained since the last call that pass the filters, oldest first.
fn read_new(
    a: &Args,
    dir: &std::path::Path,
    sources: &mut [Source],
    warn: &mut dyn FnMut(String),
) -> Result<Vec<Rec>, String> {
    let mut batch = Vec::new();
    for s in sources {
        let path = dir.join(s.name).display().to_string();
        for l in s.lines().map_err(|e| format!("{path}: {e}"))? {
            if let Some(r) = keep(a, &path, &l, warn) {
                batch.push(r);
            }
        }
    }
    batch.sort_by_key(|r| r.time);
    Ok(batch)
}

fn keep(a: &Args, src: &str, line: &[u8], warn: &mut dyn FnMut(String)) -> Option<Rec> {
    let v: serde_json::Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => {
            warn(format!("{src}: skipping a corrupt record: {e}"));
            return None;
        }
    };
    let Some(time) = v["timestamp"].as_str().and_then(parse_rfc3339) else {
        warn(format!(
            "{src}: skipping a record without a valid timestamp"
        ));
        return None;
    };
    if a.since.is_some_and(|t| time < t) || a.until.is_some_and(|t| time > t) {
        return None;
    }
    if !a.events.is_empty() {
        let ev = v["event"].as_str().unwrap_or("");
        if !a.events.iter().any(|e| e == ev) {
            return None;
        }
    }
    Some(Rec {
        time,
        line: line.to_vec(),
    })
}

/// Runs `scribe records`; the error is the message for stderr (exit code 1).
pub fn run(a: &Args) -> Result<(), String> {
    let dir = PathBuf::from(&a.log_root)
        .join(&a.namespace)
        .join(&a.container);
    let open = || -> Result<SafeDir, String> {
        let mut d = SafeDir::open_root(std::path::Path::new(&a.log_root), false, 0o755)
            .map_err(|e| e.to_string())?;
        for c in [&a.namespace, &a.container] {
            d = d.open_dir(c).map_err(|e| e.to_string())?;
        }
        Ok(d)
    };
    let d = open().map_err(|e| {
        format!(
            "no records for container {:?} in namespace {:?}: looked in {} ({e})",
            a.container,
            a.namespace,
            dir.display()
        )
    })?;
    let mut names = vec!["container.log"];
    if a.runtime {
        names.push("runtime.log");
    }
    let mut sources = Vec::new();
    for name in names {
        match d.open_read(name) {
            Ok(file) => sources.push(Source {
                name,
                file,
                offset: 0,
                carry: Vec::new(),
            }),
            Err(e) if e.is_not_found() && a.runtime => {}
            Err(e) => return Err(format!("{e}")),
        }
    }
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut warn = |m: String| eprintln!("scribe: {m}");
    let batch = read_new(a, &dir, &mut sources, &mut warn)?;
    let skip = a.tail.map_or(0, |n| batch.len().saturating_sub(n));
    for r in &batch[skip..] {
        out.write_all(&r.line)
            .and_then(|_| out.write_all(b"\n"))
            .ok();
    }
    out.flush().ok();
    if !a.follow {
        return Ok(());
    }
    let mut life = Lifecycle::new(&dir);
    let mut stopping = life.deleted();
    loop {
        let batch = read_new(a, &dir, &mut sources, &mut warn)?;
        for r in &batch {
            if out
                .write_all(&r.line)
                .and_then(|_| out.write_all(b"\n"))
                .is_err()
            {
                return Ok(());
            }
        }
        out.flush().ok();
        if stopping {
            return Ok(());
        }
        stopping = life.deleted();
        if !stopping {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
}
