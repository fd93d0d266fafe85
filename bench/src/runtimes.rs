//! The shims under comparison and how containerd finds them.

use crate::config::Config;
use crate::ctr::{run_timed, wait_child};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The Rust runc shim from crates.io that the issue names.
pub const RUST_SHIM_CRATE: &str = "containerd-runc-shim";
pub const RUST_SHIM_VERSION: &str = "0.1.1";
/// The runtime name it calls itself. containerd 1.6 maps `io.containerd.runc.v2-rs` to the binary
/// `containerd-shim-runc-v2-rs` (the last two dot-separated parts); the benchmark symlinks the
/// installed binary under that name into a directory it puts on containerd's PATH.
pub const RUST_RUNTIME: &str = "io.containerd.runc.v2-rs";
pub const RUST_LINK: &str = "containerd-shim-runc-v2-rs";

/// One runtime (shim) under comparison.
#[derive(Debug, Clone)]
pub struct Runtime {
    /// `scribe`, `go` or `rust`.
    pub key: &'static str,
    /// Column label.
    pub label: String,
    /// Runtime name given to `ctr run --runtime`.
    pub name: String,
    pub binary: PathBuf,
    pub version: String,
    /// Extra `ctr run` options for every container of this runtime.
    pub run_opts: Vec<String>,
}

/// `<binary> -v`, condensed to one line.
pub fn shim_version(binary: &Path) -> String {
    let mut c = Command::new(binary);
    c.arg("-v");
    match run_timed(c, Duration::from_secs(10)) {
        Ok(t) => {
            let text = format!("{}{}", t.stdout, t.stderr);
            let parts: Vec<&str> = text
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .collect();
            if parts.is_empty() {
                "(no output from -v)".into()
            } else {
                parts.join(" ")
            }
        }
        Err(e) => format!("(-v failed: {e:#})"),
    }
}

/// Scribe's shim, copied into `bin_dir` first so that a rebuild during the run does not mix
/// two builds in one set of figures; the caller points `SCRIBE_SHIM_BIN` at the copy.
pub fn scribe(scribe_toml: &Path, bin_dir: &Path) -> Result<Runtime> {
    let built = scribe_e2e::shim_bin();
    if !built.is_file() {
        bail!(
            "the Scribe shim {} is not built: run `cargo build --release -p containerd-shim-scribe-v2` (or `make build`)",
            built.display()
        );
    }
    let binary = bin_dir.join(scribe_e2e::SCRIBE_SHIM_NAME);
    std::fs::copy(&built, &binary)
        .with_context(|| format!("copying {} to {}", built.display(), binary.display()))?;
    let built_at = std::fs::metadata(&built)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let mut version = shim_version(&binary);
    if let Some(secs) = built_at {
        let mut date = Command::new("date");
        date.args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%d %H:%M UTC"]);
        if let Ok(t) = run_timed(date, Duration::from_secs(5)) {
            version.push_str(&format!(
                ", built {} (run from a copy of {})",
                t.stdout.trim(),
                crate::report::shown_path(&built)
            ));
        }
    }
    Ok(Runtime {
        key: "scribe",
        label: "scribe".into(),
        name: scribe_e2e::SCRIBE_RUNTIME.into(),
        version,
        binary,
        run_opts: vec![
            "--runtime-config-path".into(),
            scribe_toml.to_string_lossy().into_owned(),
        ],
    })
}

pub fn go() -> Result<Runtime> {
    let name = "containerd-shim-runc-v2";
    let binary = [
        scribe_e2e::containerd_dir().join(name),
        PathBuf::from("/usr/bin").join(name),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .with_context(|| {
        format!(
            "{name} not found beside containerd ({}) or in /usr/bin: apt-get install containerd",
            scribe_e2e::containerd_dir().display()
        )
    })?;
    Ok(Runtime {
        key: "go",
        label: "go".into(),
        name: scribe_e2e::RUNC_RUNTIME.into(),
        version: shim_version(&binary),
        binary,
        run_opts: vec![],
    })
}

/// The Rust runc shim: `--rust-shim`, else the cached install, else `cargo install` into the
/// cache (unless disallowed). `link_dir` gets the `containerd-shim-runc-v2-rs` symlink and must
/// be on containerd's PATH.
pub fn rust(cfg: &Config, cache: &Path, link_dir: &Path) -> Result<Runtime> {
    let binary = match &cfg.rust_shim {
        Some(p) => {
            if !p.is_file() {
                bail!("--rust-shim {}: no such file", p.display());
            }
            p.clone()
        }
        None => match find_installed(cache) {
            Some(p) => p,
            None if cfg.no_rust_install => bail!(
                "not installed in {} and installing is off ({}); `cargo install --version {RUST_SHIM_VERSION} {RUST_SHIM_CRATE} --root {}` or run without --quick/--no-rust-install",
                cache.display(),
                if cfg.quick { "--quick" } else { "--no-rust-install" },
                cache.display()
            ),
            None => install(cache, Duration::from_secs(cfg.rust_install_timeout))?,
        },
    };
    let binary = std::fs::canonicalize(&binary)
        .with_context(|| format!("resolving {}", binary.display()))?;
    std::fs::create_dir_all(link_dir)
        .with_context(|| format!("creating {}", link_dir.display()))?;
    let link = link_dir.join(RUST_LINK);
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(&binary, &link)
        .with_context(|| format!("symlinking {} -> {}", link.display(), binary.display()))?;
    Ok(Runtime {
        key: "rust",
        label: "rust".into(),
        name: RUST_RUNTIME.into(),
        // 0.1.1 has no -v flag.
        version: format!(
            "{RUST_SHIM_CRATE} {RUST_SHIM_VERSION} from crates.io ({})",
            binary
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ),
        binary,
        run_opts: vec![],
    })
}

/// A `containerd-shim*` binary under `<cache>/bin`.
fn find_installed(cache: &Path) -> Option<PathBuf> {
    let rd = std::fs::read_dir(cache.join("bin")).ok()?;
    let mut found: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .map(|n| n.starts_with("containerd-shim"))
                    .unwrap_or(false)
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

fn install(cache: &Path, timeout: Duration) -> Result<PathBuf> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let log_path = cache.join("install.log");
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let log2 = log
        .try_clone()
        .with_context(|| format!("duplicating {}", log_path.display()))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!(
        "scribe-bench: installing {RUST_SHIM_CRATE} {RUST_SHIM_VERSION} into {} (once; up to {} s; log {})",
        cache.display(),
        timeout.as_secs(),
        log_path.display()
    );
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "install",
        "--version",
        RUST_SHIM_VERSION,
        RUST_SHIM_CRATE,
        "--root",
    ])
    .arg(cache)
    .env("CARGO_TARGET_DIR", cache.join("target"))
    .stdin(Stdio::null())
    .stdout(log)
    .stderr(log2);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run {}", cargo.to_string_lossy()))?;
    let (status, timed_out) = wait_child(&mut child, timeout, "cargo install")?;
    if timed_out {
        bail!(
            "`cargo install {RUST_SHIM_CRATE}` took longer than {} s (see {})",
            timeout.as_secs(),
            log_path.display()
        );
    }
    if !status.success() {
        let tail = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        bail!(
            "`cargo install {RUST_SHIM_CRATE}` failed ({status}): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    // The build tree is only needed once; the binary is what is kept.
    let _ = std::fs::remove_dir_all(cache.join("target"));
    find_installed(cache).with_context(|| {
        format!(
            "`cargo install {RUST_SHIM_CRATE}` succeeded but {} holds no containerd-shim* binary",
            cache.join("bin").display()
        )
    })
}
