//! Docker's `local` log files as the shim writes them (the `local` driver's `local-logs/` and the
//! dual-logging cache `container-cached.log`): listing a log's rotated files, gunzipping them and
//! decoding their records with the shim's own format module (tests/local_driver.rs,
//! tests/reader.rs, tests/dual_logging.rs).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use scribe_io::localfmt::{self, Entry};

/// The files of a `local` log in `dir` named `base`, `base.N[.gz]`, oldest first (other names
/// are ignored).
pub fn local_files(dir: &Path, base: &str) -> Vec<PathBuf> {
    let mut gens: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
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
    gens.into_iter().map(|(_, p)| p).collect()
}

/// A file's bytes, gunzipped when it ends in `.gz`.
pub fn file_bytes(p: &Path) -> Vec<u8> {
    let f = File::open(p).unwrap_or_else(|e| panic!("open {}: {e}", p.display()));
    let mut out = Vec::new();
    let r = if p.extension().is_some_and(|e| e == "gz") {
        GzDecoder::new(f).read_to_end(&mut out)
    } else {
        let mut f = f;
        f.read_to_end(&mut out)
    };
    r.unwrap_or_else(|e| panic!("read {}: {e}", p.display()));
    out
}

/// Every record of the files, in order; each file must hold whole records only.
pub fn decode_files(files: &[PathBuf]) -> Vec<Entry> {
    let mut out = Vec::new();
    for f in files {
        let bytes = file_bytes(f);
        let mut at = 0;
        while at < bytes.len() {
            let (e, used) = localfmt::decode_record(&bytes[at..])
                .unwrap_or_else(|e| panic!("{} at byte {at}: {e}", f.display()));
            out.push(e.to_owned_entry());
            at += used;
        }
    }
    out
}

/// The text `docker logs` prints for one stream: pieces of a split line joined, a newline
/// after every whole line.
pub fn stream_text(entries: &[Entry], source: &str) -> String {
    let mut s = String::new();
    for e in entries.iter().filter(|e| e.source == source) {
        s.push_str(&String::from_utf8_lossy(&e.line));
        let last = e.partial_meta.as_ref().is_none_or(|m| m.last);
        if !e.partial || last {
            s.push('\n');
        }
    }
    s
}
