//! What containerd's stdio strings mean.
//!
//! `CreateTaskRequest.stdout` (and `ExecProcessRequest.stdout`) is either a plain
//! path or a URI. containerd's runc shim (`createIO` in
//! `cmd/containerd-shim-runc-v2/process/io.go`) reads it with Go's `url.Parse`:
//!
//! | string | meaning |
//! | --- | --- |
//! | empty | no stdio at all ([`StdioUri::None`]) |
//! | `/abs/path`, `fifo:///abs/path` | copy to that FIFO, or append to that regular file ([`StdioUri::Fifo`]) |
//! | `file:///abs/path` | append stdout and stderr to one file ([`StdioUri::File`]) |
//! | `binary:///abs/bin?k=v`, `binary-v2:///abs/bin?k=v` | hand the pipes to a logging binary ([`StdioUri::Binary`]) |
//!
//! Scribe is stricter than Go where Go would fail later or silently: relative
//! paths, hosts other than `localhost`, bad `%` escapes, `;` in queries and
//! unknown schemes are errors here, each with a message naming the string.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::percent;

/// A parsed stdio destination: how the shim must wire one process's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdioUri {
    /// Empty string: the process gets no stdio (runc's null IO).
    None,
    /// A plain absolute path (or `fifo://`). containerd's shim checks at copy
    /// time whether it is a FIFO (opened read+write so a restarting containerd
    /// does not SIGPIPE the container) or a regular file (opened `O_APPEND`).
    /// For a plain path the string is taken verbatim, without `%`-decoding,
    /// because containerd opens the raw string too.
    Fifo(PathBuf),
    /// `file:///path`: parents created 0755, the file 0644 `O_APPEND`, stdout
    /// and stderr both copied into it.
    File(PathBuf),
    /// `binary://` or `binary-v2://`: a logging binary gets the pipes.
    Binary(BinaryUri),
}

/// A logging binary to exec for `binary://` / `binary-v2://` stdio.
///
/// The exec contract (containerd's `NewBinaryCmd` in
/// `cmd/containerd-shim-runc-v2/process/io_util.go`, checked against current
/// containerd main): for every query key `k` with first value `v`, the binary
/// gets **two separate argv entries** `k` and `v` (not `k=v`), even when `v` is
/// empty (`?--debug` gives `["--debug", ""]`); keys starting with `env.` are
/// not arguments but environment variables (prefix stripped; `CONTAINER_ID` and
/// `CONTAINER_NAMESPACE` cannot be overridden) — a recent rule: containerd 1.x
/// (`pkg/process/utils.go`) passes `env.*` keys as arguments like any other.
/// Go iterates a map there, so the
/// argument order is unspecified; Scribe keeps the URI's order. A repeated key
/// keeps its first value, as Go's `Values[k][0]` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BinaryUri {
    /// Absolute path of the logging binary (percent-decoded).
    pub path: PathBuf,
    /// Query pairs that become arguments, in URI order, decoded, first value per key.
    pub args: Vec<(String, String)>,
    /// Query pairs with the `env.` prefix (stripped), in URI order.
    pub env: Vec<(String, String)>,
    /// `binary-v2`: readiness is one byte on fd 5 (EOF without it is a failure);
    /// for `binary`, EOF alone also means ready.
    pub v2: bool,
}

impl BinaryUri {
    /// The argument vector (without argv\[0\]) containerd would pass: each
    /// `(k, v)` of [`BinaryUri::args`] as the two entries `k`, `v`.
    pub fn argv(&self) -> Vec<String> {
        let mut argv = Vec::with_capacity(self.args.len() * 2);
        for (k, v) in &self.args {
            argv.push(k.clone());
            argv.push(v.clone());
        }
        argv
    }
}

/// Why a stdio string was refused; the message names the string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriError {
    input: String,
    reason: String,
}

impl UriError {
    fn new(input: &str, reason: impl Into<String>) -> Self {
        UriError {
            input: input.to_owned(),
            reason: reason.into(),
        }
    }

    /// The stdio string that was refused.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid stdio destination {:?}: {}",
            self.input, self.reason
        )
    }
}

impl std::error::Error for UriError {}

impl FromStr for StdioUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StdioUri::parse(s)
    }
}

impl StdioUri {
    /// Parses the `stdout`/`stderr` string of a Create or Exec request.
    pub fn parse(input: &str) -> Result<Self, UriError> {
        if input.is_empty() {
            return Ok(StdioUri::None);
        }
        if input.starts_with('/') {
            return Ok(StdioUri::Fifo(PathBuf::from(input)));
        }
        let Some((scheme, rest)) = split_scheme(input) else {
            return Err(UriError::new(
                input,
                "relative path; expected an absolute path or a fifo://, file://, binary:// or binary-v2:// URI",
            ));
        };
        let scheme = scheme.to_ascii_lowercase();
        let v2 = match scheme.as_str() {
            "fifo" | "file" => false,
            "binary" => false,
            "binary-v2" => true,
            other => {
                return Err(UriError::new(
                    input,
                    format!("unknown scheme {other:?}; supported: fifo, file, binary, binary-v2"),
                ))
            }
        };
        // Go drops the fragment before anything else.
        let rest = rest.split_once('#').map_or(rest, |(r, _)| r);
        let (hier, query) = match rest.split_once('?') {
            Some((h, q)) => (h, Some(q)),
            None => (rest, None),
        };
        let path = parse_path(input, hier)?;
        match scheme.as_str() {
            "fifo" => Ok(StdioUri::Fifo(path)),
            // Like containerd, a query on file:// is ignored.
            "file" => Ok(StdioUri::File(path)),
            _ => {
                let (args, env) = parse_query(input, query.unwrap_or(""))?;
                Ok(StdioUri::Binary(BinaryUri {
                    path,
                    args,
                    env,
                    v2,
                }))
            }
        }
    }

    /// The local path this destination names, if any (the FIFO, the file or the
    /// logging binary).
    pub fn path(&self) -> Option<&Path> {
        match self {
            StdioUri::None => None,
            StdioUri::Fifo(p) | StdioUri::File(p) => Some(p),
            StdioUri::Binary(b) => Some(&b.path),
        }
    }
}

/// Splits `scheme:rest` when `input` starts with a valid RFC 3986 scheme
/// (`ALPHA *( ALPHA / DIGIT / "+" / "-" / "." )`), like Go's `getScheme`.
fn split_scheme(input: &str) -> Option<(&str, &str)> {
    let colon = input.find(':')?;
    let scheme = &input[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic() {
        return None;
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) {
        return None;
    }
    Some((scheme, &input[colon + 1..]))
}

/// Decodes the hierarchical part (`//host/path` or `/path`) into an absolute path.
fn parse_path(input: &str, hier: &str) -> Result<PathBuf, UriError> {
    let raw_path = if let Some(after) = hier.strip_prefix("//") {
        let (host, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
            return Err(UriError::new(
                input,
                format!(
                    "host {host:?} is not allowed; write scheme:///absolute/path (three slashes)"
                ),
            ));
        }
        path
    } else {
        hier
    };
    if !raw_path.starts_with('/') {
        return Err(UriError::new(input, "the path must be absolute"));
    }
    let bytes =
        percent::decode(raw_path, false).map_err(|e| UriError::new(input, e.to_string()))?;
    if bytes.contains(&0) {
        return Err(UriError::new(input, "the path contains a NUL byte"));
    }
    if bytes.iter().all(|b| *b == b'/') {
        return Err(UriError::new(input, "the path names no file"));
    }
    Ok(PathBuf::from(OsStr::from_bytes(&bytes)))
}

type Pairs = Vec<(String, String)>;

/// Parses a query like Go's `url.ParseQuery`, but fails where Go would
/// silently drop a pair (bad escape, `;`).
fn parse_query(input: &str, query: &str) -> Result<(Pairs, Pairs), UriError> {
    let mut args: Pairs = Vec::new();
    let mut env: Pairs = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if pair.contains(';') {
            return Err(UriError::new(
                input,
                format!("query pair {pair:?} contains ';'; separate pairs with '&'"),
            ));
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = decode_query_part(input, k)?;
        let v = decode_query_part(input, v)?;
        let (list, key) = match k.strip_prefix("env.") {
            Some(name) => (&mut env, name.to_owned()),
            None => (&mut args, k),
        };
        if !list.iter().any(|(existing, _)| *existing == key) {
            list.push((key, v));
        }
    }
    Ok((args, env))
}

fn decode_query_part(input: &str, part: &str) -> Result<String, UriError> {
    let bytes = percent::decode(part, true)
        .map_err(|e| UriError::new(input, format!("query {part:?}: {e}")))?;
    let s = String::from_utf8(bytes).map_err(|_| {
        UriError::new(
            input,
            format!("query {part:?} is not valid UTF-8 once decoded"),
        )
    })?;
    if s.contains('\0') {
        return Err(UriError::new(
            input,
            format!("query {part:?} contains a NUL byte"),
        ));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> StdioUri {
        match StdioUri::parse(s) {
            Ok(u) => u,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn err(s: &str) -> String {
        match StdioUri::parse(s) {
            Ok(u) => panic!("{s} parsed as {u:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_is_none() {
        assert_eq!(p(""), StdioUri::None);
        assert_eq!(p("").path(), None);
    }

    #[test]
    fn plain_paths_are_fifos_taken_verbatim() {
        assert_eq!(
            p("/run/containerd/fifo/123/abc-stdout"),
            StdioUri::Fifo("/run/containerd/fifo/123/abc-stdout".into())
        );
        // No decoding of a plain path: containerd opens the raw string.
        assert_eq!(p("/tmp/a%20b"), StdioUri::Fifo("/tmp/a%20b".into()));
        assert_eq!(p("/tmp/a?b"), StdioUri::Fifo("/tmp/a?b".into()));
    }

    #[test]
    fn fifo_scheme() {
        assert_eq!(p("fifo:///run/x/out"), StdioUri::Fifo("/run/x/out".into()));
        assert_eq!(p("FIFO:///run/x%20y"), StdioUri::Fifo("/run/x y".into()));
    }

    #[test]
    fn file_scheme() {
        assert_eq!(
            p("file:///var/log/c.log"),
            StdioUri::File("/var/log/c.log".into())
        );
        assert_eq!(
            p("file://localhost/var/log/c.log"),
            StdioUri::File("/var/log/c.log".into())
        );
        assert_eq!(
            p("file:/var/log/c.log"),
            StdioUri::File("/var/log/c.log".into())
        );
        assert_eq!(
            p("file:///var/log/a%2Bb+c.log?x=1#frag"),
            StdioUri::File("/var/log/a+b+c.log".into())
        );
    }

    #[test]
    fn binary_args_in_uri_order_first_value_wins() {
        let u = p("binary:///usr/bin/logger?--log-driver=awslogs&--arg1=v%20one&flag&--arg1=ignored&b=x+y");
        let StdioUri::Binary(b) = u else {
            panic!("not binary")
        };
        assert_eq!(b.path, PathBuf::from("/usr/bin/logger"));
        assert!(!b.v2);
        assert_eq!(
            b.args,
            vec![
                ("--log-driver".into(), "awslogs".into()),
                ("--arg1".into(), "v one".into()),
                ("flag".into(), "".into()),
                ("b".into(), "x y".into()),
            ]
        );
        assert_eq!(
            b.argv(),
            vec![
                "--log-driver",
                "awslogs",
                "--arg1",
                "v one",
                "flag",
                "",
                "b",
                "x y"
            ]
        );
        assert!(b.env.is_empty());
    }

    #[test]
    fn binary_v2_and_env_pairs() {
        let u = p("binary-v2:///opt/nerdctl?_NERDCTL_INTERNAL_LOGGING=%2Fvar%2Flib%2Fnerdctl&env.LEVEL=debug");
        let StdioUri::Binary(b) = u else {
            panic!("not binary")
        };
        assert!(b.v2);
        assert_eq!(b.path, PathBuf::from("/opt/nerdctl"));
        assert_eq!(
            b.args,
            vec![(
                "_NERDCTL_INTERNAL_LOGGING".into(),
                "/var/lib/nerdctl".into()
            )]
        );
        assert_eq!(b.env, vec![("LEVEL".into(), "debug".into())]);
        assert_eq!(
            StdioUri::Binary(b.clone()).path(),
            Some(Path::new("/opt/nerdctl"))
        );
    }

    #[test]
    fn binary_without_query() {
        let StdioUri::Binary(b) = p("binary:///bin/journal") else {
            panic!()
        };
        assert!(b.args.is_empty() && b.argv().is_empty());
    }

    #[test]
    fn errors_name_the_problem() {
        assert!(err("relative/path").contains("relative path"));
        assert!(err("stdout").contains("relative path"));
        assert!(err("http:///x").contains("unknown scheme \"http\""));
        assert!(err("binary://usr/bin/x").contains("host \"usr\""));
        assert!(err("file://").contains("absolute"));
        assert!(err("file:rel").contains("absolute"));
        assert!(err("file:///").contains("names no file"));
        assert!(err("file:///a%zz").contains("percent-escape"));
        assert!(err("file:///a%00b").contains("NUL"));
        assert!(err("binary:///x?a=%").contains("percent-escape"));
        assert!(err("binary:///x?a=1;b=2").contains("';'"));
        assert!(err("binary:///x?a=%ff").contains("UTF-8"));
        assert!(err("1abc:///x").contains("relative path"));
        assert!(err("binary:///x?a=%ff").contains("\"binary:///x?a=%ff\""));
    }

    #[test]
    fn from_str_works() {
        let u: StdioUri = "file:///x".parse().unwrap();
        assert_eq!(u, StdioUri::File("/x".into()));
    }
}
