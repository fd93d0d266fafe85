//! Finding an installed Docker logging plugin by name, the way dockerd finds a legacy plugin.
//!
//! dockerd looks for a socket `<dir>/<name>.sock` or `<dir>/<name>/<name>.sock` in
//! `/run/docker/plugins` first, then for a spec file `<name>.spec` (one URL, `unix://` or
//! `tcp://`) or `<name>.json` (`{"Name", "Addr", "TLSConfig"}`), directly in or in a `<name>`
//! directory below `/etc/docker/plugins` and `/usr/lib/docker/plugins`. Scribe searches the same
//! places in the same order, or, when the runtime options set `PluginDirs`, those directories
//! instead (each searched for all four forms, sockets in every directory before spec files).
//!
//! Scribe is stricter than dockerd in two ways: a plugin name must look like one
//! ([`validate_name`]: it becomes a path component), and no entry below a search directory may
//! be a symbolic link (dockerd's `os.Stat` follows them; the shim runs as root and the search
//! directories are the admin's, so a link there is refused rather than followed). The search
//! directories themselves are opened by path: they are the admin's setting.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use scribe_safefs::{Kind, SafeDir};

/// Where dockerd looks for plugin sockets.
pub const SOCKET_DIRS: &[&str] = &["/run/docker/plugins"];
/// Where dockerd looks for plugin spec files (after the sockets).
pub const SPEC_DIRS: &[&str] = &["/etc/docker/plugins", "/usr/lib/docker/plugins"];

/// The longest plugin name accepted (it becomes a file name with a suffix).
pub const MAX_NAME_LEN: usize = 128;

/// How to reach a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PluginAddr {
    /// A unix socket path.
    Unix(PathBuf),
    /// `host:port`.
    Tcp(String),
}

impl fmt::Display for PluginAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PluginAddr::Unix(p) => write!(f, "unix://{}", p.display()),
            PluginAddr::Tcp(h) => write!(f, "tcp://{h}"),
        }
    }
}

/// Where a search looks: the socket directories, then the spec directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPath {
    /// Searched for `<name>.sock` and `<name>/<name>.sock`.
    pub socket_dirs: Vec<PathBuf>,
    /// Searched for `<name>.spec`, `<name>.json` (and the same in `<name>/`).
    pub spec_dirs: Vec<PathBuf>,
}

impl Default for SearchPath {
    /// dockerd's search path.
    fn default() -> Self {
        SearchPath {
            socket_dirs: SOCKET_DIRS.iter().map(PathBuf::from).collect(),
            spec_dirs: SPEC_DIRS.iter().map(PathBuf::from).collect(),
        }
    }
}

impl SearchPath {
    /// The search path of the runtime option `PluginDirs`: every directory is searched for
    /// sockets and spec files; empty means dockerd's.
    pub fn from_dirs(dirs: &[String]) -> SearchPath {
        if dirs.is_empty() {
            return SearchPath::default();
        }
        let dirs: Vec<PathBuf> = dirs.iter().map(PathBuf::from).collect();
        SearchPath {
            socket_dirs: dirs.clone(),
            spec_dirs: dirs,
        }
    }
}

/// Why a plugin was not found or cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// Nothing by that name in the search path (it may appear later).
    NotFound {
        /// The plugin.
        name: String,
        /// What was searched.
        searched: String,
    },
    /// Found, but unusable (bad spec file, TLS, a link): names the file.
    Invalid(String),
}

impl DiscoveryError {
    /// Whether looking again later may succeed.
    pub fn is_not_found(&self) -> bool {
        matches!(self, DiscoveryError::NotFound { .. })
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::NotFound { name, searched } => {
                write!(f, "log plugin {name:?} not found in {searched}")
            }
            DiscoveryError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// Checks a plugin name: 1 to [`MAX_NAME_LEN`] characters of `[A-Za-z0-9._-]`, starting with a
/// letter or digit (so never `.`, `..` or a path). Errors say what is wrong.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_LEN {
        return Err(format!(
            "log plugin name {name:?} must have 1 to {MAX_NAME_LEN} characters"
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "log plugin name {name:?} must start with a letter or digit"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "log plugin name {name:?} has {c:?}: only letters, digits, '.', '_' and '-' are allowed"
        ));
    }
    Ok(())
}

/// Finds plugin `name` in `search`. The name must have passed [`validate_name`].
pub fn find(name: &str, search: &SearchPath) -> Result<PluginAddr, DiscoveryError> {
    validate_name(name).map_err(DiscoveryError::Invalid)?;
    let sock = format!("{name}.sock");
    for dir in &search.socket_dirs {
        let Some(d) = open_search_dir(dir) else {
            continue;
        };
        for (sub, file) in [(None, sock.as_str()), (Some(name), sock.as_str())] {
            if let Some(path) = entry(&d, sub, file, Kind::Other)? {
                if is_socket(&path) {
                    return Ok(PluginAddr::Unix(path));
                }
            }
        }
    }
    for dir in &search.spec_dirs {
        let Some(d) = open_search_dir(dir) else {
            continue;
        };
        for ext in ["spec", "json"] {
            let file = format!("{name}.{ext}");
            for sub in [None, Some(name)] {
                if entry(&d, sub, &file, Kind::File)?.is_some() {
                    let dir = match sub {
                        Some(s) => d.open_dir(s).map_err(invalid)?,
                        None => d.try_clone().map_err(invalid)?,
                    };
                    let text = read_small(&dir, &file)?;
                    let path = dir.path().join(&file);
                    return if ext == "spec" {
                        parse_spec(&text, &path)
                    } else {
                        parse_json_spec(&text, &path)
                    };
                }
            }
        }
    }
    let searched = search
        .socket_dirs
        .iter()
        .chain(&search.spec_dirs)
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>();
    let mut seen = Vec::new();
    for s in searched {
        if !seen.contains(&s) {
            seen.push(s);
        }
    }
    Err(DiscoveryError::NotFound {
        name: name.to_owned(),
        searched: seen.join(", "),
    })
}

fn invalid(e: scribe_safefs::SafeFsError) -> DiscoveryError {
    DiscoveryError::Invalid(format!("log plugin discovery: {e}"))
}

fn open_search_dir(dir: &Path) -> Option<SafeDir> {
    SafeDir::open_root(dir, false, 0o755).ok()
}

/// `<d>/[sub/]file` when it exists as `want` (a file, or anything but a directory for
/// `Kind::Other`); a link at either step is an error naming it.
fn entry(
    d: &SafeDir,
    sub: Option<&str>,
    file: &str,
    want: Kind,
) -> Result<Option<PathBuf>, DiscoveryError> {
    let dir = match sub {
        None => None,
        Some(s) => match d.stat_nofollow(s) {
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(invalid(e)),
            Ok(st) if st.kind == Kind::Symlink => {
                return Err(DiscoveryError::Invalid(format!(
                    "log plugin discovery: {} is a symbolic link (refused)",
                    d.path().join(s).display()
                )))
            }
            Ok(st) if st.kind != Kind::Dir => return Ok(None),
            Ok(_) => Some(d.open_dir(s).map_err(invalid)?),
        },
    };
    let dir = dir.as_ref().unwrap_or(d);
    match dir.stat_nofollow(file) {
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(invalid(e)),
        Ok(st) if st.kind == Kind::Symlink => Err(DiscoveryError::Invalid(format!(
            "log plugin discovery: {} is a symbolic link (refused)",
            dir.path().join(file).display()
        ))),
        Ok(st) if st.kind == want => Ok(Some(dir.path().join(file))),
        Ok(_) => Ok(None),
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket())
}

fn read_small(dir: &SafeDir, file: &str) -> Result<String, DiscoveryError> {
    let f = dir.open_read(file).map_err(invalid)?;
    let mut text = String::new();
    f.take(64 * 1024).read_to_string(&mut text).map_err(|e| {
        DiscoveryError::Invalid(format!(
            "log plugin spec {}: {e}",
            dir.path().join(file).display()
        ))
    })?;
    Ok(text)
}

/// Reads a URL of a spec file: `unix:///path` or `tcp://host:port`.
pub fn parse_url(url: &str, file: &Path) -> Result<PluginAddr, DiscoveryError> {
    let bad = |why: &str| {
        DiscoveryError::Invalid(format!(
            "log plugin spec {}: address {url:?}: {why}",
            file.display()
        ))
    };
    let url = url.trim();
    if let Some(p) = url.strip_prefix("unix://") {
        if !p.starts_with('/') {
            return Err(bad("a unix socket path must be absolute"));
        }
        return Ok(PluginAddr::Unix(PathBuf::from(p)));
    }
    if let Some(h) = url.strip_prefix("tcp://") {
        let h = h.trim_end_matches('/');
        let port_ok = h
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !port_ok {
            return Err(bad("expected tcp://host:port"));
        }
        return Ok(PluginAddr::Tcp(h.to_owned()));
    }
    Err(bad("expected unix:// or tcp://"))
}

/// A `.spec` file: one URL.
pub fn parse_spec(text: &str, file: &Path) -> Result<PluginAddr, DiscoveryError> {
    parse_url(text, file)
}

/// A `.json` spec: `{"Name", "Addr", "TLSConfig"}`; TLS is not supported (an error says so).
pub fn parse_json_spec(text: &str, file: &Path) -> Result<PluginAddr, DiscoveryError> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Spec {
        #[serde(default)]
        addr: String,
        #[serde(default, rename = "TLSConfig")]
        tls_config: Option<serde_json::Value>,
    }
    let spec: Spec = serde_json::from_str(text)
        .map_err(|e| DiscoveryError::Invalid(format!("log plugin spec {}: {e}", file.display())))?;
    // Go marshals an unset TLSConfig as null or as an object of empty fields.
    let tls = match &spec.tls_config {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Object(o)) => o
            .values()
            .any(|v| !(v.is_null() || v == "" || v == &serde_json::Value::Bool(false))),
        Some(_) => true,
    };
    if tls {
        return Err(DiscoveryError::Invalid(format!(
            "log plugin spec {}: TLSConfig is not supported by Scribe (use a unix socket or plain tcp://)",
            file.display()
        )));
    }
    parse_url(&spec.addr, file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn search(d: &Path) -> SearchPath {
        SearchPath::from_dirs(&[d.display().to_string()])
    }

    #[test]
    fn names() {
        for good in ["loki", "elastic-logging", "a.b_c", "9x"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "..",
            ".hidden",
            "a/b",
            "../x",
            "x y",
            "ä",
            "-x",
            &"a".repeat(129),
        ] {
            let e = validate_name(bad).unwrap_err();
            assert!(e.contains("log plugin name"), "{e}");
        }
        let d = tempfile::tempdir().unwrap();
        let e = find("../etc", &search(d.path())).unwrap_err();
        assert!(!e.is_not_found(), "{e}");
    }

    #[test]
    fn sockets_before_specs_and_nested() {
        let d = tempfile::tempdir().unwrap();
        let e = find("p", &search(d.path())).unwrap_err();
        assert!(e.is_not_found());
        assert!(
            e.to_string().contains(&d.path().display().to_string()),
            "{e}"
        );
        std::fs::write(d.path().join("p.spec"), "tcp://127.0.0.1:9000\n").unwrap();
        assert_eq!(
            find("p", &search(d.path())).unwrap(),
            PluginAddr::Tcp("127.0.0.1:9000".into())
        );
        std::fs::create_dir(d.path().join("p")).unwrap();
        let sock = d.path().join("p/p.sock");
        let _l = UnixListener::bind(&sock).unwrap();
        assert_eq!(
            find("p", &search(d.path())).unwrap(),
            PluginAddr::Unix(sock)
        );
        // A regular file named .sock is not a socket: the spec file wins.
        std::fs::write(d.path().join("q.sock"), "").unwrap();
        std::fs::write(
            d.path().join("q.json"),
            r#"{"Name":"q","Addr":"unix:///run/q.sock"}"#,
        )
        .unwrap();
        assert_eq!(
            find("q", &search(d.path())).unwrap(),
            PluginAddr::Unix("/run/q.sock".into())
        );
    }

    #[test]
    fn plugin_dirs_replace_the_default_search() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(b.path().join("p.spec"), "unix:///x/p.sock").unwrap();
        let s = SearchPath::from_dirs(&[
            a.path().display().to_string(),
            b.path().display().to_string(),
        ]);
        assert_eq!(s.socket_dirs.len(), 2);
        assert!(!s
            .socket_dirs
            .contains(&PathBuf::from("/run/docker/plugins")));
        assert_eq!(find("p", &s).unwrap(), PluginAddr::Unix("/x/p.sock".into()));
        assert_eq!(SearchPath::from_dirs(&[]), SearchPath::default());
    }

    #[test]
    fn planted_links_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let _l = UnixListener::bind(other.path().join("s.sock")).unwrap();
        std::os::unix::fs::symlink(other.path().join("s.sock"), d.path().join("p.sock")).unwrap();
        let e = find("p", &search(d.path())).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::os::unix::fs::symlink(other.path(), d.path().join("q")).unwrap();
        let e = find("q", &search(d.path())).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::write(other.path().join("r.spec"), "tcp://h:1").unwrap();
        std::os::unix::fs::symlink(other.path().join("r.spec"), d.path().join("r.spec")).unwrap();
        let e = find("r", &search(d.path())).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn bad_specs_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        for (name, text, want) in [
            ("a.spec", "http://h:1", "unix:// or tcp://"),
            ("b.spec", "unix://rel/p.sock", "absolute"),
            ("c.spec", "tcp://h", "host:port"),
            ("d.json", "{", "d.json"),
            (
                "e.json",
                r#"{"Addr":"tcp://h:1","TLSConfig":{"CAFile":"/ca.pem"}}"#,
                "TLSConfig",
            ),
        ] {
            std::fs::write(d.path().join(name), text).unwrap();
            let plugin = name.split('.').next().unwrap();
            let e = find(plugin, &search(d.path())).unwrap_err().to_string();
            assert!(e.contains(want), "{name}: {e}");
            assert!(e.contains(name), "{name}: {e}");
        }
        std::fs::write(
            d.path().join("f.json"),
            r#"{"Name":"f","Addr":"tcp://h:2","TLSConfig":null}"#,
        )
        .unwrap();
        assert_eq!(
            find("f", &search(d.path())).unwrap(),
            PluginAddr::Tcp("h:2".into())
        );
    }
}
