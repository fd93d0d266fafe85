//! The `start` command: find or launch the daemon that serves this container, print its address.
//!
//! containerd reads this command's stdout and stderr until EOF, so the daemon is spawned with
//! /dev/null for all three standard streams and must not inherit them; the only thing printed is
//! the address. The daemon gets the already-listening socket as fd 3, so containerd can connect
//! as soon as the address is printed.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::flags::Flags;
use crate::options::{decode_start_input, Settings};
use crate::socket::{address_of, bind_or_reuse, socket_path, Bound, SOCKET_DIR};

/// The fd the daemon finds its listening socket on.
pub const LISTEN_FD: i32 = 3;
/// Environment variable telling a re-executed shim that it is the daemon.
pub const DAEMON_ENV: &str = "SCRIBE_DAEMON";
/// Environment variable carrying containerd's pid (for oom_score_adj).
pub const PARENT_PID_ENV: &str = "SCRIBE_CONTAINERD_PID";

/// Annotations that name a shim group, in order of precedence.
const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// The bundle directory: `-bundle` when given, else the working directory containerd set.
pub fn bundle_dir(flags: &Flags) -> Result<PathBuf, String> {
    if !flags.bundle.is_empty() {
        return Ok(PathBuf::from(&flags.bundle));
    }
    std::env::current_dir().map_err(|e| format!("getcwd: {e}"))
}

/// The group id for a container: the first grouping annotation in its config.json, else its id.
pub fn group_id(bundle: &Path, id: &str) -> String {
    let Ok(data) = std::fs::read(bundle.join("config.json")) else {
        return id.to_string();
    };
    group_from_config(&data).unwrap_or_else(|| id.to_string())
}

fn group_from_config(data: &[u8]) -> Option<String> {
    let spec = crate::spec::parse(data).ok()?;
    let annotations = spec.annotations()?;
    GROUP_ANNOTATIONS
        .iter()
        .find_map(|key| annotations.get(*key).filter(|v| !v.is_empty()).cloned())
}

/// Runs the `start` command.
pub fn run(flags: &Flags) -> Result<(), String> {
    if flags.id.is_empty() || flags.namespace.is_empty() {
        return Err("start needs -id and -namespace".into());
    }
    let bundle = bundle_dir(flags)?;
    let mut stdin = Vec::new();
    std::io::stdin()
        .read_to_end(&mut stdin)
        .map_err(|e| format!("reading options from stdin: {e}"))?;
    let input = decode_start_input(&stdin, &flags.id, &flags.namespace)?;
    let mut settings = Settings::defaults(&flags.namespace);
    if let Some(any) = &input.options {
        settings.apply_any(any)?;
    }
    settings.save(&bundle)?;

    let mut grpc_address = flags.address.clone();
    let mut socket_dir = PathBuf::from(SOCKET_DIR);
    if let Some(b) = &input.bootstrap {
        if !b.containerd_grpc_address.is_empty() {
            grpc_address = b.containerd_grpc_address.clone();
        }
        if let Some(dir) = b.socket_dir.as_ref().filter(|d| !d.is_empty()) {
            socket_dir = PathBuf::from(dir);
        }
    }
    let group = group_id(&bundle, &flags.id);
    let path = socket_path(&socket_dir, &grpc_address, &flags.namespace, &group);
    match bind_or_reuse(&path).map_err(|e| format!("shim socket: {e}"))? {
        Bound::Existing => {}
        Bound::New(listener) => {
            let daemon = spawn_daemon(flags, &bundle, listener)?;
            if !settings.shim_cgroup.is_empty() {
                if let Err(e) = crate::cgroups::join(daemon, &settings.shim_cgroup) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(daemon as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    let _ = std::fs::remove_file(&path);
                    return Err(format!("moving the shim into ShimCgroup: {e}"));
                }
            }
        }
    }
    let address = address_of(&path);
    let address_file = bundle.join("address");
    std::fs::write(&address_file, &address)
        .map_err(|e| format!("writing {}: {e}", address_file.display()))?;
    let mut out = std::io::stdout();
    out.write_all(address.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| format!("printing address: {e}"))
}

fn spawn_daemon(flags: &Flags, bundle: &Path, listener: UnixListener) -> Result<u32, String> {
    let exe = std::env::current_exe().map_err(|e| format!("finding own executable: {e}"))?;
    let mut cmd = Command::new(exe);
    cmd.args(["-namespace", &flags.namespace, "-id", &flags.id])
        .args(["-address", &flags.address])
        .args(["-publish-binary", &flags.publish_binary])
        .args(["-bundle", &bundle.display().to_string()]);
    if flags.debug {
        cmd.arg("-debug");
    }
    cmd.env(DAEMON_ENV, "1")
        .env(
            PARENT_PID_ENV,
            std::os::unix::process::parent_id().to_string(),
        )
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let fd = listener.as_raw_fd();
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if fd == LISTEN_FD {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            } else if libc::dup2(fd, LISTEN_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .map_err(|e| format!("starting shim daemon: {e}"))?;
    Ok(child.id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_annotation_precedence() {
        let both = br#"{"annotations":{"io.kubernetes.cri.sandbox-id":"sb","io.containerd.runc.v2.group":"g"}}"#;
        assert_eq!(group_from_config(both).as_deref(), Some("g"));
        let cri = br#"{"annotations":{"io.kubernetes.cri.sandbox-id":"sb"}}"#;
        assert_eq!(group_from_config(cri).as_deref(), Some("sb"));
        assert_eq!(group_from_config(br#"{"annotations":{}}"#), None);
        assert_eq!(group_from_config(b"not json"), None);
        assert_eq!(
            group_from_config(br#"{"annotations":{"io.containerd.runc.v2.group":""}}"#),
            None
        );
    }
}
