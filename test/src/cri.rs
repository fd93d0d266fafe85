//! CRI support for the e2e tests (no gRPC here; the client is `cri_client`):
//! the offline pause image, the CRI plugin configuration for containerd 1.x and 2.x
//! with the runtime under test as CRI's default runtime, image import into `k8s.io`,
//! and the CRI container-log format.
//!
//! CRI always works in containerd namespace [`CRI_NAMESPACE`], not in the instance's
//! own namespace, so the helpers here take the namespace explicitly.

use crate::cmd::{self, CmdOutput};
use crate::containerd::Containerd;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The containerd namespace CRI uses.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// The pod-sandbox image, built by `test/images/build-pause.sh`, never pulled.
pub const PAUSE_IMAGE: &str = "docker.io/library/scribe-pause:3.9";
/// Name of the runtime (handler) the CRI config declares and makes the default.
pub const CRI_RUNTIME_HANDLER: &str = "scribe";

/// Build (once per test process, under a lock file) the pause image tarball
/// `<workspace>/.cache/scribe-pause.tar` and return its path.
pub fn pause_image_tar() -> PathBuf {
    static TAR: OnceLock<PathBuf> = OnceLock::new();
    TAR.get_or_init(|| {
        if let Some(p) = std::env::var_os("SCRIBE_E2E_PAUSE_TAR").filter(|s| !s.is_empty()) {
            let p = PathBuf::from(p);
            assert!(
                p.is_file(),
                "SCRIBE_E2E_PAUSE_TAR={} does not exist",
                p.display()
            );
            return p;
        }
        let cache = crate::workspace_dir().join(".cache");
        fs::create_dir_all(&cache).expect("create .cache");
        let out = cache.join("scribe-pause.tar");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(cache.join("scribe-pause.lock"))
            .expect("open pause image lock");
        use std::os::fd::AsRawFd;
        unsafe {
            libc::flock(lock.as_raw_fd(), libc::LOCK_EX);
        }
        let script = crate::workspace_dir().join("test/images/build-pause.sh");
        let mut c = Command::new("bash");
        c.arg(&script).arg(&out).env("IMAGE_NAME", PAUSE_IMAGE);
        let o = cmd::run(c, Duration::from_secs(120));
        unsafe {
            libc::flock(lock.as_raw_fd(), libc::LOCK_UN);
        }
        assert!(o.success(), "building the pause image failed: {o}");
        out
    })
    .clone()
}

/// `(major, minor)` version of the `containerd` binary in `bin_dir`.
#[track_caller]
pub fn containerd_version(bin_dir: &Path) -> (u32, u32) {
    let mut c = Command::new(bin_dir.join("containerd"));
    c.arg("--version");
    let o = cmd::run(c, Duration::from_secs(10));
    assert!(o.success(), "containerd --version failed: {o}");
    // "containerd github.com/containerd/containerd/v2 v2.1.9 <commit>" or "... 1.6.20~ds1 ..."
    o.stdout
        .split_whitespace()
        .skip(2)
        .filter_map(|w| {
            let w = w.strip_prefix('v').unwrap_or(w);
            let mut it = w.split(['.', '~', '-', '+']);
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .next()
        .unwrap_or_else(|| panic!("cannot parse the version of containerd: {o}"))
}

/// How the runtime options reach the shim through CRI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OptionsMode {
    /// The keys inline in the runtime's `options` table: CRI 1.7+ sends the table's TOML
    /// as `runtimeoptions.v1.Options.config_body`. containerd 1.6 has no `config_body`
    /// and silently drops such keys.
    Inline,
    /// `ConfigPath = "<file>"` in the `options` table, the keys in that file: CRI (1.6+)
    /// sends `runtimeoptions.v1.Options.config_path` and the shim reads the file.
    ConfigPath,
}

impl OptionsMode {
    /// The mode that works on containerd `version`: inline from 1.7 on, else ConfigPath.
    pub fn for_version(version: (u32, u32)) -> OptionsMode {
        if version >= (1, 7) {
            OptionsMode::Inline
        } else {
            OptionsMode::ConfigPath
        }
    }
}

/// Where the CRI test keeps what it configures: `LogRoot` (Scribe's records), the
/// OCI runtime's `Root`, the CNI conf dir, the pods' log directories.
#[derive(Debug, Clone)]
pub struct CriPaths {
    pub base: PathBuf,
    /// More runtime options (TOML lines, e.g. `SystemdCgroup = true`) for every runtime.
    pub extra_options: String,
}

impl CriPaths {
    pub fn new(base: impl Into<PathBuf>) -> Self {
        CriPaths {
            base: base.into(),
            extra_options: String::new(),
        }
    }
    /// Scribe's `LogRoot`: records go to `<log_root>/k8s.io/<id>/`.
    pub fn log_root(&self) -> PathBuf {
        self.base.join("scribe-logs")
    }
    /// The OCI runtime's state root (`Root` option).
    pub fn runtime_root(&self) -> PathBuf {
        self.base.join("runc")
    }
    /// A private, empty CNI conf dir (the pods use the host network).
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.base.join("cni/net.d")
    }
    pub fn cni_bin_dir(&self) -> PathBuf {
        self.base.join("cni/bin")
    }
    /// The pods' log directories (`PodSandboxConfig.log_directory`) live under this.
    pub fn pod_logs(&self) -> PathBuf {
        self.base.join("pods")
    }
    /// The options file of [`OptionsMode::ConfigPath`].
    pub fn options_file(&self) -> PathBuf {
        self.base.join("scribe-options.toml")
    }
}

/// The runtime options the CRI test gives the runtime under test: `Root` (its own, so
/// nothing lands in `/run/containerd/runc/k8s.io`), and for Scribe `LogRoot`.
pub fn runtime_options_toml(runtime: &str, paths: &CriPaths) -> String {
    let mut s = format!("Root = \"{}\"\n", paths.runtime_root().display());
    if runtime == crate::SCRIBE_RUNTIME {
        s.push_str(&format!(
            "LogRoot = \"{}\"\nContainerLog = true\n",
            paths.log_root().display()
        ));
    }
    s.push_str(&paths.extra_options);
    s
}

/// The `options` table of the CRI runtime entry. With [`OptionsMode::ConfigPath`] (Scribe
/// only; runc.v2 takes `containerd.runc.v1.Options`, which has no such key) this also
/// writes [`CriPaths::options_file`].
pub fn runtime_options_table(runtime: &str, paths: &CriPaths, mode: OptionsMode) -> String {
    let opts = runtime_options_toml(runtime, paths);
    if mode == OptionsMode::ConfigPath && runtime != crate::RUNC_RUNTIME {
        fs::create_dir_all(&paths.base).expect("create CRI test dir");
        fs::write(paths.options_file(), &opts).expect("write the options file");
        format!("ConfigPath = \"{}\"\n", paths.options_file().display())
    } else {
        opts
    }
}

/// The annotations CRI passes from pods and containers to the runtime (containerd's CRI passes
/// only those its runtime entry lists: `pod_annotations` / `container_annotations`, glob patterns).
pub const ANNOTATIONS: &str = "io.scribe.log.*";

/// CRI plugin configuration (TOML to append to a `version = 2` config) for
/// containerd `version`, with `runtime` (a runtime type such as `io.containerd.scribe.v2`)
/// as the default runtime, named [`CRI_RUNTIME_HANDLER`], its options passed as `mode` says.
///
/// containerd 1.6/1.7: everything under `[plugins."io.containerd.grpc.v1.cri"]`.
/// containerd 2.x: the split plugins `io.containerd.cri.v1.images` (pinned sandbox image),
/// `io.containerd.cri.v1.runtime` (runtimes, CNI, OOM score) and `io.containerd.grpc.v1.cri`
/// (the streaming server only).
pub fn cri_config(
    version: (u32, u32),
    runtime: &str,
    paths: &CriPaths,
    mode: OptionsMode,
) -> String {
    let h = CRI_RUNTIME_HANDLER;
    let opts = runtime_options_table(runtime, paths, mode)
        .lines()
        .map(|l| format!("      {l}\n"))
        .collect::<String>();
    let conf = paths.cni_conf_dir();
    let bin = paths.cni_bin_dir();
    if version.0 >= 2 {
        format!(
            r#"[plugins."io.containerd.cri.v1.images"]
  snapshotter = "overlayfs"
  [plugins."io.containerd.cri.v1.images".pinned_images]
    sandbox = "{PAUSE_IMAGE}"

[plugins."io.containerd.cri.v1.runtime"]
  restrict_oom_score_adj = true
  enable_cdi = false
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{bin}"]
    conf_dir = "{conf}"
  [plugins."io.containerd.cri.v1.runtime".containerd]
    default_runtime_name = "{h}"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{h}]
      runtime_type = "{runtime}"
      pod_annotations = ["{ANNOTATIONS}"]
      container_annotations = ["{ANNOTATIONS}"]
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.{h}.options]
{opts}
[plugins."io.containerd.grpc.v1.cri"]
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"#,
            bin = bin.display(),
            conf = conf.display(),
        )
    } else {
        format!(
            r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "{h}"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{h}]
      runtime_type = "{runtime}"
      pod_annotations = ["{ANNOTATIONS}"]
      container_annotations = ["{ANNOTATIONS}"]
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.{h}.options]
{opts}"#,
            bin = bin.display(),
            conf = conf.display(),
        )
    }
}

/// `ctr --address <containerd> -n <ns> args...` with a timeout.
pub fn ctr_ns(c: &Containerd, ns: &str, args: &[&str], timeout: Duration) -> CmdOutput {
    let mut cmd = Command::new(c.bin_dir().join("ctr"));
    cmd.arg("--address")
        .arg(c.address())
        .arg("--namespace")
        .arg(ns)
        .args(args);
    cmd::run(cmd, timeout)
}

/// Import the image tarball `tar` into namespace `k8s.io` and check `name` is listed.
#[track_caller]
pub fn import_cri_image(c: &Containerd, tar: &Path, name: &str) {
    let o = ctr_ns(
        c,
        CRI_NAMESPACE,
        &["images", "import", tar.to_str().unwrap()],
        Duration::from_secs(120),
    );
    assert!(
        o.success(),
        "ctr -n k8s.io images import {} failed: {o}\n{}",
        tar.display(),
        c.log_tail(40)
    );
    let o = ctr_ns(
        c,
        CRI_NAMESPACE,
        &["images", "ls", "-q"],
        Duration::from_secs(30),
    );
    assert!(
        o.stdout_lines().iter().any(|l| l == name),
        "image {name} not listed in k8s.io after import: {o}"
    );
}

/// The bundle of task `id` in namespace `ns`.
pub fn bundle_dir_ns(c: &Containerd, ns: &str, id: &str) -> PathBuf {
    c.state()
        .join("io.containerd.runtime.v2.task")
        .join(ns)
        .join(id)
}

/// The shim socket containerd's Go shim and Scribe derive for group `group` in `ns`:
/// `/run/containerd/s/<sha256(<grpc address>/<ns>/<group>)>`.
pub fn shim_socket_ns(c: &Containerd, ns: &str, group: &str) -> PathBuf {
    use sha2::Digest;
    let key = format!("{}/{}/{}", c.address().display(), ns, group);
    let hex: String = sha2::Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    PathBuf::from(format!("/run/containerd/s/{hex}"))
}

/// One line of a CRI container log: `<RFC3339Nano> <stdout|stderr> <F|P> <text>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CriLogLine {
    pub time: String,
    pub stream: String,
    /// `F` (full line) or `P` (partial: continued by the next line of the same stream).
    pub tag: String,
    pub text: String,
}

/// Parse a CRI log file's text. Lines that do not match the format are returned as
/// errors (with their line number), so a test can show them.
pub fn parse_cri_log(text: &str) -> Result<Vec<CriLogLine>, String> {
    let mut out = Vec::new();
    for (n, l) in text.lines().enumerate() {
        let mut it = l.splitn(4, ' ');
        let (Some(time), Some(stream), Some(tag)) = (it.next(), it.next(), it.next()) else {
            return Err(format!("line {}: not in CRI format: {l:?}", n + 1));
        };
        let text = it.next().unwrap_or("");
        let time_ok = time.len() >= 20
            && time.as_bytes()[4] == b'-'
            && time.as_bytes()[10] == b'T'
            && (time.ends_with('Z') || time[19..].contains(['+', '-']));
        if !time_ok || !(stream == "stdout" || stream == "stderr") || !(tag == "F" || tag == "P") {
            return Err(format!("line {}: not in CRI format: {l:?}", n + 1));
        }
        out.push(CriLogLine {
            time: time.into(),
            stream: stream.into(),
            tag: tag.into(),
            text: text.into(),
        });
    }
    Ok(out)
}

/// Reassemble the logical lines of one stream (`P` pieces joined to the next `F`).
pub fn cri_log_messages(lines: &[CriLogLine], stream: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for l in lines.iter().filter(|l| l.stream == stream) {
        cur.push_str(&l.text);
        if l.tag == "F" {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_cri_log() {
        let t = "2024-01-02T03:04:05.123456789Z stdout F hello world\n\
                 2024-01-02T03:04:05.2Z stderr P par\n\
                 2024-01-02T03:04:05.3+00:00 stderr F tial\n\
                 2024-01-02T03:04:05.4Z stdout F \n";
        let l = parse_cri_log(t).unwrap();
        assert_eq!(l.len(), 4);
        assert_eq!(cri_log_messages(&l, "stdout"), vec!["hello world", ""]);
        assert_eq!(cri_log_messages(&l, "stderr"), vec!["partial"]);
        assert!(parse_cri_log("garbage\n").is_err());
    }

    #[test]
    fn config_mentions_the_runtime() {
        let p = CriPaths::new("/tmp/x");
        for v in [(1, 7), (2, 1)] {
            let s = cri_config(v, crate::SCRIBE_RUNTIME, &p, OptionsMode::Inline);
            assert!(
                s.contains("runtime_type = \"io.containerd.scribe.v2\""),
                "{s}"
            );
            assert!(s.contains("LogRoot = \"/tmp/x/scribe-logs\""), "{s}");
            assert!(s.contains(PAUSE_IMAGE), "{s}");
        }
        let s = cri_config((1, 6), crate::RUNC_RUNTIME, &p, OptionsMode::ConfigPath);
        assert!(!s.contains("LogRoot") && !s.contains("ConfigPath"), "{s}");
        assert_eq!(OptionsMode::for_version((1, 6)), OptionsMode::ConfigPath);
        assert_eq!(OptionsMode::for_version((2, 1)), OptionsMode::Inline);
    }
}
