//! Reading cgroup control files: every error names the file, and "absent" is told apart from
//! "broken" so optional files (memsw, memory.peak, ...) can be skipped without hiding failures.

use std::io;
use std::path::Path;

/// Wraps an I/O error with what was being done to which file.
pub fn context(e: io::Error, what: &str, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

/// An error for a file whose contents do not parse.
pub fn invalid(path: &Path, detail: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("parsing {}: {detail}", path.display()),
    )
}

/// True for the errors a vanished file or cgroup gives: ENOENT from open, ENODEV from reading a
/// kernfs file whose cgroup was removed meanwhile.
pub fn is_gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENODEV)
}

/// Reads a whole control file.
pub fn read(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map_err(|e| context(e, "reading", path))
}

/// Reads a control file that a kernel or host may lack: `Ok(None)` when it does not exist.
pub fn read_optional(path: &Path) -> io::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(context(e, "reading", path)),
    }
}

/// Parses a single-number file such as `memory.usage_in_bytes`.
pub fn parse_u64(text: &str, path: &Path) -> io::Result<u64> {
    let t = text.trim();
    t.parse()
        .map_err(|_| invalid(path, format!("{t:?} is not a number")))
}

/// Reads a single-number file; `Ok(None)` when the file does not exist.
pub fn read_u64_optional(path: &Path) -> io::Result<Option<u64>> {
    read_optional(path)?
        .map(|text| parse_u64(&text, path))
        .transpose()
}

/// A limit file's value: a number, or `max` (no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The limit in the file's unit.
    Value(u64),
    /// The file says `max`.
    Max,
}

/// Reads a limit file (`memory.max`, `pids.max`, ...); `Ok(None)` when it does not exist.
pub fn read_limit_optional(path: &Path) -> io::Result<Option<Limit>> {
    let Some(text) = read_optional(path)? else {
        return Ok(None);
    };
    if text.trim() == "max" {
        return Ok(Some(Limit::Max));
    }
    parse_u64(&text, path).map(|v| Some(Limit::Value(v)))
}

/// Parses a flat-keyed file (`memory.stat`, `cpu.stat`, `memory.events`, `memory.oom_control`):
/// one `key value` pair a line. Blank lines are skipped; anything else malformed is an error.
pub fn parse_keyed<'a>(text: &'a str, path: &Path) -> io::Result<Vec<(&'a str, u64)>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(key) = words.next() else { continue };
        let value = match (words.next(), words.next()) {
            (Some(v), None) => v,
            _ => return Err(invalid(path, format!("line {line:?} is not `key value`"))),
        };
        let value = value
            .parse()
            .map_err(|_| invalid(path, format!("value of {key:?} is not a number")))?;
        out.push((key, value));
    }
    Ok(out)
}

/// The value of one key in a flat-keyed text, if present.
pub fn keyed_value(pairs: &[(&str, u64)], key: &str) -> Option<u64> {
    pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_parses_pairs_and_rejects_garbage() {
        let p = Path::new("/x/memory.events");
        let pairs = parse_keyed("low 0\nhigh 2\n\noom_kill 7\n", p).expect("valid");
        assert_eq!(pairs, vec![("low", 0), ("high", 2), ("oom_kill", 7)]);
        assert_eq!(keyed_value(&pairs, "oom_kill"), Some(7));
        assert_eq!(keyed_value(&pairs, "oom"), None);
        let err = parse_keyed("oom_kill x\n", p).expect_err("not a number");
        assert!(err.to_string().contains("/x/memory.events"), "{err}");
        assert!(parse_keyed("a 1 2\n", p).is_err());
    }

    #[test]
    fn numbers_and_limits() {
        let p = Path::new("/x/f");
        assert_eq!(parse_u64(" 42\n", p).expect("number"), 42);
        assert!(parse_u64("max\n", p).is_err());
        assert_eq!(
            read_limit_optional(Path::new("/nonexistent/scribe/pids.max")).expect("absent"),
            None
        );
    }
}
