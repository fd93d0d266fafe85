//! The `delete` command: clean up after a shim that died (or at containerd's boot).
//!
//! containerd runs it with the bundle as working directory and gives it 5 seconds. It must
//! force-delete the container in the runtime (killing what is left), unmount the rootfs, and
//! print a protobuf `DeleteResponse` on stdout.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::SystemTime;

use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use scribe_io::childenv::{self, Child};

use crate::flags::Flags;
use crate::options::Settings;

/// The exit status reported for a container whose shim died: it was killed.
const KILLED: u32 = 128 + 9;

/// Removes the shim's socket when nobody serves it any more (a group shim that still serves
/// other containers keeps it).
fn remove_dead_socket(bundle: &std::path::Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = address.trim().trim_start_matches("unix://");
    if !path.is_empty() && std::os::unix::net::UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// Runs the `delete` command.
pub fn run(flags: &Flags) -> Result<(), String> {
    let bundle = crate::start::bundle_dir(flags)?;
    crate::service::validate_id(&flags.id)?;
    let settings = Settings::load(&bundle)?.unwrap_or_else(|| Settings::defaults(&flags.namespace));
    let mut cmd = Command::new(&settings.binary_name);
    cmd.env_clear()
        .envs(childenv::from_process(Child::Runtime))
        .arg("--root")
        .arg(&settings.root)
        .arg("--log")
        .arg(bundle.join("log.json"))
        .args(["--log-format", "json"]);
    if settings.systemd_cgroup {
        cmd.arg("--systemd-cgroup");
    }
    cmd.args(["delete", "--force", &flags.id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // A container the runtime no longer knows is fine: there is nothing left to delete.
    match cmd.status() {
        Ok(s) if !s.success() => {
            eprintln!(
                "{} delete --force {}: exited with {s} (see {})",
                settings.binary_name,
                flags.id,
                bundle.join("log.json").display()
            );
        }
        Err(e) => eprintln!("running {}: {e}", settings.binary_name),
        Ok(_) => {}
    }
    crate::mount::unmount_all(&bundle.join("rootfs"))?;
    remove_dead_socket(&bundle);
    let pid = std::fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let resp = DeleteResponse {
        pid,
        exit_status: KILLED,
        exited_at: MessageField::some(Timestamp {
            seconds: now.as_secs() as i64,
            nanos: now.subsec_nanos() as i32,
            ..Default::default()
        }),
        ..Default::default()
    };
    let bytes = resp
        .write_to_bytes()
        .map_err(|e| format!("encoding DeleteResponse: {e}"))?;
    let mut out = std::io::stdout();
    out.write_all(&bytes)
        .and_then(|_| out.flush())
        .map_err(|e| format!("writing DeleteResponse: {e}"))
}
